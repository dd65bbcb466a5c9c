"""Exactly once (rule R3): doctors deciding the same request at the same moment.

Two kinds of race, on SQLite and PostgreSQL:

1. Held transactions, in this process: doctor A's approval has made its conditional
   UPDATE but not committed; doctor B then rejects the same request on another
   connection. On PostgreSQL the test waits until B's backend is blocked on A's row lock
   (``pg_stat_activity.wait_event_type = 'Lock'``), then lets A commit: B's UPDATE finds
   the row no longer pending (row count 0) and B is told who decided it and when. On
   SQLite B waits for A's exclusive write transaction and then sees the same.
2. Real processes: four `patientportal requests approve/reject` processes, started
   together through a gate, decide the same six requests in different orders. Every
   request ends with exactly one decision, one audit event, one decision e-mail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db.models import Outbox
from patientportal_cli.errors import AlreadyDecided
from patientportal_cli.services import approvals, auth
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import audit_events, db_session, links, requests, users
from tests.helpers.people import add_doctor, register, set_mode

ROOT = Path(__file__).resolve().parents[1]
GUARD_SECONDS = 60  # a hang guard only: no assertion depends on timing


def _actor(db_url: str, home: Path, token: str) -> auth.Actor:
    with db_session(db_url, home) as session:
        return auth.resolve(session, token=token, clinic_code="NORD")


class HeldCommit:
    """Let a session do everything up to its commit, then wait there until released."""

    def __init__(self, session: Session) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        real = session.commit

        def commit() -> None:
            self.reached.set()
            assert self.release.wait(GUARD_SECONDS), "never released"
            real()

        session.commit = commit  # type: ignore[method-assign]


def _two_sessions(db_url: str, home: Path, backend: str) -> tuple[Session, Session, int | None]:
    """Two doctors' sessions on their own connections; the PostgreSQL backend pid of B."""
    engine = engine_mod.get_engine(db_url, home)
    conn_b = engine.connect()
    pid = None
    if backend == "postgresql":
        pid = conn_b.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn_b.rollback()
    return (
        Session(engine, expire_on_commit=False),
        Session(bind=conn_b, expire_on_commit=False),
        pid,
    )


def _wait_until_blocked(db_url: str, home: Path, pid: int) -> None:
    """PostgreSQL: until backend ``pid`` waits for a lock (B is queued behind A)."""
    with engine_mod.get_engine(db_url, home).connect() as conn:
        deadline = time.monotonic() + GUARD_SECONDS
        while time.monotonic() < deadline:
            state = conn.execute(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).scalar()
            conn.rollback()
            if state == "Lock":
                return
            time.sleep(0.01)
    pytest.fail("the second doctor's UPDATE never waited for the first one's row lock")


def test_second_doctor_waits_for_the_first_and_is_told_who_decided(
    cli: Cli, staff: Staff, db_url: str, backend: str, home: Path
) -> None:
    set_mode(cli, "approval")
    register(cli)
    add_doctor(staff, "bo", login=False)
    add_doctor(staff, "cy", login=False)
    bo = _actor(db_url, home, staff.login("bo"))
    cy = _actor(db_url, home, staff.login("cy"))

    session_a, session_b, pid = _two_sessions(db_url, home, backend)
    held = HeldCommit(session_a)
    outcome: dict[str, Any] = {}

    def doctor_a() -> None:
        outcome["a"] = approvals.approve(session_a, actor=bo, request_id=1)

    def doctor_b() -> None:
        try:
            outcome["b"] = approvals.reject(session_b, actor=cy, request_id=1, reason="late")
        except AlreadyDecided as exc:
            outcome["b"] = exc

    a = threading.Thread(target=doctor_a)
    a.start()
    assert held.reached.wait(GUARD_SECONDS)  # A's UPDATE is done, A has not committed
    b = threading.Thread(target=doctor_b)
    b.start()
    try:
        if pid is not None:
            _wait_until_blocked(db_url, home, pid)
    finally:
        held.release.set()
    a.join(GUARD_SECONDS)
    b.join(GUARD_SECONDS)
    session_a.close()
    session_b.close()
    session_b.bind.close()  # type: ignore[union-attr]

    assert outcome["a"].status == "approved"
    assert isinstance(outcome["b"], AlreadyDecided)
    with db_session(db_url, home) as session:
        [req] = requests(session)
        assert (req.status, req.decided_by, req.reason) == ("approved", "bo", None)
        assert req.decided_at is not None
        assert str(outcome["b"]) == (
            f"Request 1 was already approved by bo at "
            f"{req.decided_at.strftime('%Y-%m-%d %H:%M UTC')}."
        )
        assert len(users(session)) == 1 and len(links(session)) == 1
        assert [e.actor for e in audit_events(session, "request.approve")] == ["bo"]
        assert audit_events(session, "request.reject") == []
        templates = session.exec(select(Outbox.template).order_by(col(Outbox.id))).all()
        assert templates == ["request_received", "request_approved"]


def test_mode_change_skips_a_request_a_doctor_is_deciding(
    cli: Cli, staff: Staff, db_url: str, backend: str, home: Path
) -> None:
    """The admin rejects all pending requests while a doctor approves one of them."""
    set_mode(cli, "approval")
    register(cli, "010203-1234", name="Anne", email="anne@example.dk")
    register(cli, "020304-2345", name="Bent", email="bent@example.dk")
    add_doctor(staff, "bo", login=False)
    anna = _actor(db_url, home, staff.login("anna"))
    bo = _actor(db_url, home, staff.login("bo"))

    from patientportal_cli.services import clinics

    session_a, session_b, pid = _two_sessions(db_url, home, backend)
    held = HeldCommit(session_a)
    outcome: dict[str, Any] = {}

    a = threading.Thread(
        target=lambda: outcome.update(a=approvals.approve(session_a, actor=bo, request_id=1))
    )
    a.start()
    assert held.reached.wait(GUARD_SECONDS)
    b = threading.Thread(
        target=lambda: outcome.update(
            b=clinics.set_registration(
                session_b, actor=anna, mode="none", pending="reject", reason="closed"
            )
        )
    )
    b.start()
    try:
        if pid is not None:
            _wait_until_blocked(db_url, home, pid)
    finally:
        held.release.set()
    a.join(GUARD_SECONDS)
    b.join(GUARD_SECONDS)
    session_a.close()
    session_b.close()
    session_b.bind.close()  # type: ignore[union-attr]

    assert outcome["a"].status == "approved"
    clinic, old, handled = outcome["b"]
    assert (clinic.registration_mode, old, handled) == ("none", "approval", 1)
    with db_session(db_url, home) as session:
        first, second = requests(session)
        assert (first.status, first.decided_by) == ("approved", "bo")
        assert (second.status, second.decided_by, second.reason) == ("rejected", "anna", "closed")
        assert [e.target for e in audit_events(session, "request.")][-2:] == [
            "request:1",
            "request:2",
        ]


def test_two_registrations_of_one_cpr_at_once_make_one_request(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """Both pass the first look (nothing pending) and meet while choosing a password;
    the second look, under the per-CPR lock (PostgreSQL) or the exclusive write
    transaction (SQLite), lets exactly one of them store a request."""
    from patientportal_cli.errors import Conflict
    from patientportal_cli.services import registration

    set_mode(cli, "approval")
    engine = engine_mod.get_engine(db_url, home)
    both_asked = threading.Barrier(2, timeout=GUARD_SECONDS)
    outcome: list[Any] = []

    def patient(email: str) -> None:
        def password() -> str:
            both_asked.wait()  # both have seen "no pending request" by now
            return "Patient-pass1"

        with Session(engine, expire_on_commit=False) as session:
            try:
                outcome.append(
                    registration.register(
                        session,
                        clinic_code="NORD",
                        cpr="010203-1234",
                        name="Jens Hansen",
                        email=email,
                        password=password,
                    ).outcome
                )
            except Conflict as exc:
                outcome.append(str(exc))

    threads = [threading.Thread(target=patient, args=(f"jens{n}@example.dk",)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD_SECONDS)
    assert sorted(o == "requested" for o in outcome) == [False, True], outcome
    assert any(o.startswith("A registration request for this CPR number") for o in outcome)
    with db_session(db_url, home) as session:
        assert len(requests(session)) == 1


# --- real processes ----------------------------------------------------------------------
DRIVER = """
import os, sys, time
from patientportal_cli.cli.app import app  # imported before the gate: start together
gate = sys.argv[1]
while not os.path.exists(gate):
    time.sleep(0.002)
app(sys.argv[2:], prog_name="patientportal")
"""

RUNS = [
    ("bo", ["requests", "approve", "1", "2", "3", "4", "5", "6"]),
    ("cy", ["requests", "reject", "6", "5", "4", "3", "2", "1", "--reason", "late"]),
    ("cy", ["requests", "approve", "2", "4", "6", "1", "3", "5"]),
    ("bo", ["requests", "reject", "5", "3", "1", "6", "4", "2"]),
]


@pytest.mark.slow
def test_parallel_processes_decide_each_request_exactly_once(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    set_mode(cli, "approval")
    for n in range(1, 7):
        register(cli, f"0{n}0203-123{n}", name=f"Patient {n}", email=f"p{n}@example.dk")
    add_doctor(staff, "bo", login=False)
    add_doctor(staff, "cy", login=False)
    tokens = {who: staff.login(who) for who in ("bo", "cy")}

    gate = tmp_path / "gate"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PATIENTPORTAL_", "_"))}
    base.update(
        PATIENTPORTAL_HOME=str(home),
        PATIENTPORTAL_DB_URL=db_url,
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        COLUMNS="200",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(gate), *args],
            env={**base, "PATIENTPORTAL_TOKEN": tokens[who]},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who, args in RUNS
    ]
    gate.touch()
    results = [p.communicate(timeout=300) for p in procs]
    lines = [line for _, err in results for line in err.splitlines()]

    decided = [line for line in lines if line.startswith("Request ")]
    already = [line for line in lines if " was already " in line]
    assert len(decided) == 6, lines  # one decision per request, over all processes
    assert len(already) == 4 * 6 - 6, lines  # every other attempt was told
    assert len(lines) == 24, lines  # nothing else: no deadlock, no error
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == (1 if " was already " in err else 0), err

    with db_session(db_url, home) as session:
        reqs = requests(session)
        assert {r.status for r in reqs} <= {"approved", "rejected"}
        approve_events = audit_events(session, "request.approve")
        reject_events = audit_events(session, "request.reject")
        assert len(approve_events) + len(reject_events) == 6
        for r in reqs:
            [event] = [e for e in approve_events + reject_events if e.target == f"request:{r.id}"]
            assert (
                event.action
                == {"approved": "request.approve", "rejected": "request.reject"}[r.status]
            )
            assert event.actor == r.decided_by
            assert r.password_hash is None
        approved = [r for r in reqs if r.status == "approved"]
        assert len(users(session)) == len(links(session)) == len(approved)
        mail = session.exec(select(Outbox.recipient, Outbox.template)).all()
        for r in reqs:
            mine = sorted(t for to, t in mail if to == r.email)
            assert mine == sorted(["request_received", f"request_{r.status}"])
