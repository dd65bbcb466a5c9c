"""Two commands creating the same new CPR at the same moment (docs/rules.md R1).

They end with one portal user, linked to both clinics (or to the one clinic once), and
no traceback: the loser of the race for the user links the winner's user; the loser of
the race for the link is told "already linked". Shown with real parallel processes on
PostgreSQL, and with threads that start together at a barrier (separate connections)
on both databases.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlmodel import Session

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.errors import Conflict
from patientportal_cli.services import auth, patients
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import db_session, linked_clinics, users_with_cpr


def _cpr(i: int) -> str:
    return f"0{(i % 9) + 1}0190{i:04d}"  # 0X0190-NNNN: valid dates, distinct numbers


def _race(db_url: str, home: Path, token: str, clinics: tuple[str, str], cpr: str) -> list[str]:
    """Both threads call patients.create for ``cpr`` at once; their outcomes."""
    engine = engine_mod.get_engine(db_url, home)
    barrier = threading.Barrier(2, timeout=60)
    outcomes: list[str] = []

    def worker(clinic: str) -> None:
        with Session(engine, expire_on_commit=False) as session:
            actor = auth.resolve(session, token=token, clinic_code=clinic)
            session.rollback()  # hold no lock at the barrier (SQLite: one writer)
            barrier.wait()
            try:
                result = patients.create(
                    session,
                    actor=actor,
                    cpr=cpr,
                    name="Samtidig Patient",
                    email="samtidig@example.dk",
                    invite=False,
                )
                outcomes.append("created" if result.user_created else "linked")
            except Conflict as exc:
                assert str(exc).endswith(f"is already linked to clinic {clinic}.")
                outcomes.append("already linked")
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                outcomes.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(c,)) for c in clinics]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def test_threads_create_the_same_cpr_at_once(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli("clinic create SYD --name Syd")
    token = os.environ["PATIENTPORTAL_TOKEN"]
    for i in range(8):
        cpr = _cpr(i)
        assert _race(db_url, home, token, ("NORD", "SYD"), cpr) == ["created", "linked"]
        with db_session(db_url, home) as s:
            assert len(users_with_cpr(s, cpr)) == 1
            assert linked_clinics(s, cpr) == ["NORD", "SYD"]
    for i in range(8, 16):
        cpr = _cpr(i)
        assert _race(db_url, home, token, ("NORD", "NORD"), cpr) == ["already linked", "created"]
        with db_session(db_url, home) as s:
            assert len(users_with_cpr(s, cpr)) == 1
            assert linked_clinics(s, cpr) == ["NORD"]


def test_processes_create_the_same_cpr_at_once(
    cli: Cli, staff: Staff, db_url: str, backend: str, home: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite writers take turns (BEGIN IMMEDIATE); the thread test covers it")
    cli("clinic create SYD --name Syd")
    env = {**os.environ, "PATIENTPORTAL_DEBUG": ""}
    pairs = [(_cpr(i), ("NORD", "SYD")) for i in range(3)] + [
        (_cpr(i), ("NORD", "NORD")) for i in range(3, 6)
    ]
    procs = []
    for cpr, clinics in pairs:
        for clinic in clinics:
            args = [
                sys.executable, "-m", "patientportal_cli", "--clinic", clinic,
                "patient", "create", cpr, "--name", "Samtidig Patient",
                "--email", "samtidig@example.dk",
            ]  # fmt: skip
            procs.append(
                (
                    cpr,
                    clinic,
                    subprocess.Popen(
                        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    ),
                )
            )
    results: dict[str, list[tuple[int, str]]] = {}
    for cpr, _clinic, proc in procs:
        out, err = proc.communicate(timeout=120)
        assert "Traceback" not in out + err and "Unexpected" not in err, err
        results.setdefault(cpr, []).append((proc.returncode, err.splitlines()[0]))
    with db_session(db_url, home) as s:
        for cpr, clinics in pairs:
            assert len(users_with_cpr(s, cpr)) == 1
            outcome = sorted(results[cpr])
            masked = f"{cpr[:6]}-****"
            if clinics == ("NORD", "SYD"):
                assert linked_clinics(s, cpr) == ["NORD", "SYD"]
                assert [code for code, _ in outcome] == [0, 0]
                firsts = sorted(line.split(" ")[0] for _, line in outcome)
                assert firsts == ["Created", "Linked"], outcome
            else:
                assert linked_clinics(s, cpr) == ["NORD"]
                assert outcome[0][0] == 0 and outcome[0][1].startswith("Created portal user")
                assert outcome[1] == (1, f"Error: {masked} is already linked to clinic NORD.")
