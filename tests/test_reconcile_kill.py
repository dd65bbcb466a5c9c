"""A `patient reconcile` killed (SIGKILL) while applying has made whole changes only, and
finishes when run again; a third run plans nothing (real processes, both backends)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.helpers.cli import Cli, Staff
from tests.helpers.csv_files import patients_csv, valid_cprs
from tests.helpers.db import scalar

N = 1200

ENDED = "SELECT count(*) FROM audit_event WHERE action = 'patient.deactivate'"
FACTS = {
    "links": "SELECT count(*) FROM clinic_link",
    "ended": ENDED,
    "unlinked_history": "SELECT count(*) FROM link_history WHERE unlinked_at IS NOT NULL",
    "users": "SELECT count(*) FROM portal_user",
    "deactivated": "SELECT count(*) FROM portal_user WHERE deactivated_at IS NOT NULL",
    "runs": "SELECT count(*) FROM audit_event WHERE action = 'patient.reconcile'",
}


def _reconcile(path: Path) -> list[str]:
    return [sys.executable, "-m", "patientportal_cli", "patient", "reconcile", str(path), "--yes"]


def _ended(db_url: str, home: Path) -> int:
    """Changes committed so far, read without taking SQLite's write lock."""
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
                return int(conn.execute(ENDED).fetchone()[0])
        except sqlite3.OperationalError:
            return 0
    return int(scalar(db_url, home, ENDED) or 0)


def _facts(db_url: str, home: Path) -> dict[str, int]:
    return {k: int(scalar(db_url, home, q) or 0) for k, q in FACTS.items()}


@pytest.mark.slow
def test_sigkill_while_applying_then_rerun_finishes_and_a_third_run_plans_nothing(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    cli(["patient", "import", str(patients_csv(tmp_path / "all.csv", N)), "--yes", "--no-invite"])
    kept = valid_cprs(1)[0]  # the first patient stays on the list; the others leave
    listing = tmp_path / "liste.csv"
    listing.write_text(f"cpr;status\n{kept};01\n", encoding="utf-8")
    env = dict(os.environ)

    proc = subprocess.Popen(
        _reconcile(listing), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if _ended(db_url, home) >= 20:
                break
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the reconcile finished before it was killed"
    partial = _facts(db_url, home)
    # whole changes only: each ended link has its audit event and its history row
    assert 0 < partial["ended"] < N - 1
    assert partial["links"] + partial["ended"] == N
    assert partial["unlinked_history"] == partial["ended"]
    assert (partial["users"], partial["deactivated"], partial["runs"]) == (N, 0, 0)

    again = subprocess.run(_reconcile(listing), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    left = N - 1 - partial["ended"]
    assert f"  {'not on the list: left-clinic':<33}  {left:>8}\n" in again.stderr
    assert f"Done at clinic NORD: 0 deactivated (0 deceased, 0 emigrated), {left} left" in (
        again.stderr
    )
    assert _facts(db_url, home) == {
        "links": 1,
        "ended": N - 1,
        "unlinked_history": N - 1,
        "users": N,
        "deactivated": 0,
        "runs": 1,
    }

    third = subprocess.run(_reconcile(listing), env=env, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr
    assert third.stderr.endswith("Nothing to change: the list agrees with clinic NORD.\n")
    assert _facts(db_url, home)["ended"] == N - 1
    assert "The audit log is intact" in cli("audit verify").stderr
