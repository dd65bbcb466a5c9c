"""A smoke run of benchmarks/scale.py with tiny N on PostgreSQL, so the script cannot rot.

Builds 2,000 users at 40 clinics, runs every measurement once or a few times and checks
that each table is printed; the figures themselves are not asserted (not a timed test).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.db import PG_BASE, require_pg

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "scale.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_benchmark"] = module
    spec.loader.exec_module(module)
    return module


def test_scale_benchmark_runs_with_small_n(capsys: pytest.CaptureFixture[str]) -> None:
    require_pg()
    scale = _script()
    argv = ["-n", "2000", "--clinics", "40", "--runs", "3", "--command-runs", "1"]
    argv += ["--warmup", "0", "--new-events", "100", "--db", PG_BASE]
    assert scale.main(argv) == 0
    out = capsys.readouterr().out
    assert "database: 2,000 users, 41 clinics" in out
    for line in (
        "service calls (in-process), 3 runs each",
        "patient list --limit 50",
        "requests list (500 pending)",
        "audit list --limit 50",
        "completion: --clinic K1<TAB>",
        "python -c 'import sqlmodel'",
        "audit verify --all after 100 new",
        "patient list -o csv at K0001:",
        "EXPLAIN (ANALYZE, BUFFERS)",
    ):
        assert line in out, line
    assert "audit events" in out and "10,000 audit events" in out
