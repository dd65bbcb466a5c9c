"""A bulk import killed (SIGKILL) in the middle finishes when run again; two imports of
the same file at the same time create every patient once (real processes, both backends).
"""

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
from tests.helpers.csv_files import patients_csv
from tests.helpers.db import counts, scalar

N = 6000
BATCH = 100


def _env(db_url: str, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATIENTPORTAL_HOME=str(home),
        PATIENTPORTAL_DB_URL=db_url,
        PATIENTPORTAL_TOKEN=os.environ["PATIENTPORTAL_TOKEN"],
    )
    return env


def _import(path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "patientportal_cli",
        "patient",
        "import",
        str(path),
        "--yes",
        "--no-send",
        "--batch-size",
        str(BATCH),
        *extra,
    ]


def _users(db_url: str, home: Path) -> int:
    """Committed users, read without taking SQLite's write lock (the app's sessions begin
    IMMEDIATE, which would make this reader wait for the importer's batches)."""
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
                return int(conn.execute("SELECT count(*) FROM portal_user").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
    return int(scalar(db_url, home, "SELECT count(*) FROM portal_user") or 0)


def _check_complete(cli: Cli, db_url: str, home: Path, n: int) -> None:
    c = counts(db_url, home)
    assert c == {
        "users": n,
        "links": n,
        "history": n,
        "codes": 0,  # --no-send: each code is made when its queued e-mail is delivered
        "outbox": n,
        "create_events": n,
        "distinct_create_targets": n,
        "users_without_link": 0,
        "duplicate_cprs": 0,
    }
    assert "The audit log is intact" in cli("audit verify").stderr


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_finishes(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    path = patients_csv(tmp_path / "many.csv", N)
    env = _env(db_url, home)
    proc = subprocess.Popen(
        _import(path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    done = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = _users(db_url, home)
            if done >= 3 * BATCH:
                break
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    partial = counts(db_url, home)
    assert 0 < partial["users"] < N
    # whole batches only: every user has its link, code, mail and audit event
    assert partial["users"] % BATCH == 0
    assert partial["users_without_link"] == 0
    assert partial["create_events"] == partial["users"] == partial["outbox"]

    again = subprocess.run(_import(path), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"already linked (nothing to do)  {partial['users']:>8}" in again.stderr
    _check_complete(cli, db_url, home, N)

    third = subprocess.run(_import(path), env=env, capture_output=True, text=True)
    assert third.returncode == 0
    assert "Nothing to change: no row needs a change at clinic NORD." in third.stderr
    _check_complete(cli, db_url, home, N)


@pytest.mark.slow
def test_two_imports_of_the_same_file_at_once(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    n = 2000
    path = patients_csv(tmp_path / "same.csv", n)
    env = _env(db_url, home)
    procs = [
        subprocess.Popen(
            _import(path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    for code, err in results:
        assert code == 0, err
    _check_complete(cli, db_url, home, n)


def test_unique_violation_in_a_batch_falls_back_to_row_by_row(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    """A batch planned on stale facts (another run created a user meanwhile) fails on the
    unique CPR; it is rolled back and done row by row, linking the existing user (R1)."""
    from patientportal_cli.services.importing import apply as apply_mod
    from patientportal_cli.services.importing import plan as plan_mod

    cli(["clinic", "create", "SYD", "--name", "Sydklinikken"])
    cli(
        [
            "patient",
            "create",
            "010203-1234",
            "--name",
            "Ida",
            "--email",
            "ida@example.dk",
            "--clinic",
            "SYD",
            "--no-invite",
        ]
    )
    calls = {"n": 0}

    def stale(session, ctx, rows):  # noqa: ANN001, ANN202
        result = plan_mod.classify(session, ctx, rows)
        calls["n"] += 1
        if calls["n"] == 1:  # the first batch believes Ida does not exist yet
            result.create = result.create + result.link
            result.link = []
            result.existing = {}
        return result

    monkeypatch.setattr(apply_mod, "classify", stale)
    path = tmp_path / "p.csv"
    path.write_text(
        "cpr,name,email\n010203-1234,Ida,ida@example.dk\n020304-2345,Bo,bo@example.dk\n"
    )
    r = cli(["patient", "import", str(path), "--yes", "--no-send", "--clinic", "NORD"])
    assert "Done at clinic NORD: 1 created, 1 linked, 0 flag(s) set, 0 already there." in r.stderr
    assert calls["n"] == 3  # the batch, then each of its two rows
    c = counts(db_url, home)
    assert (c["users"], c["links"], c["duplicate_cprs"], c["users_without_link"]) == (2, 3, 0, 0)
    assert "The audit log is intact" in cli("audit verify").stderr
