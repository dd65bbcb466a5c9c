"""The audit log: one event per change in the change's transaction, a hash chain that
`audit verify` checks, per-clinic listing and export, and a chain that stays linear when
several processes write at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db.models import AuditEvent, Clinic
from patientportal_cli.services import audit, auth, clinics
from tests.helpers.cli import Cli
from tests.helpers.cli import Staff as StaffHelper


def session_for(db_url: str, home: Path) -> Session:
    return Session(engine_mod.get_engine(db_url, home), expire_on_commit=False)


def all_events(db_url: str, home: Path) -> list[AuditEvent]:
    with session_for(db_url, home) as s:
        return list(s.exec(select(AuditEvent).order_by(col(AuditEvent.id))))


def assert_one_linear_chain(events: list[AuditEvent]) -> None:
    """Each chain (clinic, or "" for no clinic) is numbered 1..n and linked in that order."""
    chains: dict[str, list[AuditEvent]] = {}
    for event in events:
        chains.setdefault(event.chain, []).append(event)
    for chain in chains.values():
        chain.sort(key=lambda e: e.seq)
        assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
        prev = audit.GENESIS
        for event in chain:
            assert event.prev_hash == prev, f"event {event.id} does not follow the one before"
            assert audit.digest(event) == event.hash
            prev = event.hash
        assert len({e.prev_hash for e in chain}) == len(chain)  # no two share a parent


# --- one event per change, in its transaction ----------------------------------------


def test_every_change_writes_one_event(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    before = len(all_events(db_url, home))
    steps = [
        ("staff add bo --name Bo --role doctor --password-stdin", "staff.add", "staff:bo"),
        ("staff set-role bo secretary", "staff.set_role", "staff:bo"),
        ("clinic set-registration approval", "clinic.set_registration", "clinic:NORD"),
        ("clinic services --disable booking", "clinic.services", "clinic:NORD"),
        ("staff token create --name ci", "token.create", "token:2"),
        ("staff token revoke 2", "token.revoke", "token:2"),
        ("staff disable bo", "staff.disable", "staff:bo"),
        ("clinic create SYD --name Syd", "clinic.create", "clinic:SYD"),
    ]
    for command, action, target in steps:
        cli(command, input="Bo-pass-123\n")
        events = all_events(db_url, home)
        assert len(events) == before + 1, command
        before += 1
        assert (events[-1].actor, events[-1].action, events[-1].target) == ("anna", action, target)
    # refused changes write nothing
    cli("staff set-role anna doctor --clinic NORD", expect=1)
    cli("clinic create SYD --name Again", expect=1)
    assert len(all_events(db_url, home)) == before


def test_an_event_that_cannot_be_written_undoes_the_change(
    staff: StaffHelper, db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_record = audit.record

    def record_then_fail(session: Session, **kwargs):  # noqa: ANN003, ANN202
        real_record(session, **kwargs)
        raise RuntimeError("disk full")

    with session_for(db_url, home) as s:
        actor = auth.resolve(s, token=os.environ["PATIENTPORTAL_TOKEN"], clinic_code=None)
        monkeypatch.setattr(audit, "record", record_then_fail)
        with pytest.raises(RuntimeError):
            clinics.create(s, actor=actor, code="SYD", name="Syd")
        s.rollback()
    with session_for(db_url, home) as s:
        assert s.exec(select(Clinic).where(Clinic.code == "SYD")).first() is None
    assert [e.action for e in all_events(db_url, home)] == ["init", "staff.login"]


# --- list, export --------------------------------------------------------------------


def test_audit_list_and_export(cli: Cli, staff: StaffHelper, tmp_path: Path) -> None:
    staff.add("bo", "doctor", name="Bo [bold]B[/]")
    cli("clinic set-registration open")
    listed = json.loads(cli("audit list -o json").stdout)
    assert [e["action"] for e in listed] == ["clinic.set_registration", "staff.add", "init"]
    assert listed[0]["details"] == {"from": "none", "to": "open", "pending": None, "handled": 0}
    assert listed[1]["details"] == {"new_account": True, "role": "doctor"}
    assert set(listed[0]) == {"id", "at", "actor", "clinic", "action", "target", "details", "hash"}
    assert listed[0]["at"].endswith("Z") and listed[0]["clinic"] == "NORD"
    r = cli("audit list")
    table = [line.split() for line in r.stdout.splitlines() if line.strip()]
    assert table[0] == ["Id", "When", "Who", "Action", "Target", "Details"]
    assert table[2][4:7] == ["anna", "clinic.set_registration", "clinic:NORD"]
    assert '"new_account": true' in r.stdout  # JSON values, not yes/no
    assert [e["action"] for e in json.loads(cli("audit list --action staff -o json").stdout)] == [
        "staff.add"
    ]
    assert len(json.loads(cli("audit list --limit 1 -o json").stdout)) == 1
    assert json.loads(cli("audit list --action sta__ -o json").stdout) == []  # no wildcards
    assert json.loads(cli("audit list --action % -o json").stdout) == []
    assert json.loads(cli("audit list --since 2999-01-01 -o json").stdout) == []
    assert cli("audit list --since 2999-01-01").stderr == "No audit events.\n"
    assert len(json.loads(cli("audit list --since 2000-01-01T00:00 -o json").stdout)) == 3
    r = cli("audit list --since yesterday", expect=2)
    assert r.stderr == (
        "Error: --since 'yesterday': use a date like 2026-11-01 or 2026-11-01T08:00.\n"
    )
    exported = cli("audit export").stdout.splitlines()
    assert [json.loads(line)["action"] for line in exported] == [
        "init",
        "staff.add",
        "clinic.set_registration",
    ]
    assert [json.loads(line) for line in exported] == list(reversed(listed))
    target = tmp_path / "audit.jsonl"
    r = cli(["audit", "export", "--output-file", str(target)])
    assert (r.stdout, r.stderr) == ("", f"Wrote 3 events to {target}.\n")
    assert target.read_text(encoding="utf-8").splitlines() == exported


def test_staff_see_only_their_clinics_events(cli: Cli, staff: StaffHelper) -> None:
    cli("clinic create SYD --name Syd")
    staff.add("bo", "doctor", clinic="NORD")
    cli("clinic set-registration open --clinic SYD")
    nord = json.loads(cli("audit list -o json --clinic NORD").stdout)
    syd = json.loads(cli("audit list -o json --clinic SYD").stdout)
    assert {e["clinic"] for e in nord} == {"NORD"} and {e["clinic"] for e in syd} == {"SYD"}
    assert [e["action"] for e in syd] == ["clinic.set_registration", "clinic.create"]
    staff.login("bo")
    assert json.loads(cli("audit list -o json").stdout) == nord
    r = cli("audit list --clinic SYD", expect=4)
    assert r.stderr == "Error: bo does not work at clinic SYD.\n"
    assert [json.loads(line)["clinic"] for line in cli("audit export").stdout.splitlines()] == [
        "NORD"
    ] * len(nord)
    # a login (no clinic) is in the chain but in nobody's clinic listing
    assert "staff.login" not in {e["action"] for e in nord}


# --- verify --------------------------------------------------------------------------


def test_verify_detects_a_changed_event(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    staff.add("bo", "doctor")
    cli("clinic set-registration open")
    n = len(all_events(db_url, home))
    r = cli("audit verify")
    assert r.stderr == f"The audit log is intact: {n} events checked.\n"
    staff_add = next(e for e in all_events(db_url, home) if e.action == "staff.add")
    with session_for(db_url, home) as s:
        s.execute(
            text("UPDATE audit_event SET details = :d WHERE id = :i"),
            {"d": '{"new_account": true, "role": "admin"}', "i": staff_add.id},
        )
        s.commit()
    r = cli("audit verify", expect=1)
    assert r.stderr.startswith(
        f"Error: Event NORD #{staff_add.seq} (id {staff_add.id}, staff.add at 20"
    )
    assert r.stderr.endswith(
        "does not match its hash: it or the event before it was changed; "
        f"{staff_add.seq - 1} events before it are intact.\n"
    )


def test_verify_detects_a_deleted_event(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    staff.add("bo", "doctor")
    cli("clinic set-registration open")
    events = [e for e in all_events(db_url, home) if e.chain == "NORD"]  # init, add, set
    gone, after = events[1], events[2]
    with session_for(db_url, home) as s:
        s.execute(text("DELETE FROM audit_event WHERE id = :i"), {"i": gone.id})
        s.commit()
    r = cli("audit verify", expect=1)
    assert (gone.seq, after.seq) == (2, 3)
    assert (
        r.stderr
        == f"Error: Event NORD #2 is missing (between ids {events[0].id} and {after.id}).\n"
    )
    with session_for(db_url, home) as s:
        report = audit.verify(s, chains=["NORD", ""])
    assert report.problems == [r.stderr[len("Error: ") : -1]]


def test_verify_detects_a_rehashed_but_unlinked_event(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    """Recomputing a changed event's own hash does not help: the next one points back."""
    staff.add("bo", "doctor")
    cli("clinic set-registration open")
    events = [e for e in all_events(db_url, home) if e.chain == "NORD"]  # init, add, set
    victim = events[1]
    victim.actor = "mallory"
    new_hash = audit.digest(victim)
    with session_for(db_url, home) as s:
        s.execute(
            text("UPDATE audit_event SET actor = 'mallory', hash = :h WHERE id = :i"),
            {"h": new_hash, "i": victim.id},
        )
        s.commit()
    r = cli("audit verify", expect=1)
    assert r.stderr.startswith(f"Error: Event NORD #3 (id {events[2].id}, ")


# --- concurrent writers ----------------------------------------------------------------

WRITERS = 4
EACH = 8


def _write_events(db_url: str, home: str, token: str, barrier: object) -> None:
    """A worker process: EACH API tokens (one audit event each), as fast as it can."""
    for inherited in engine_mod._engines.values():  # the parent's pool stays the parent's
        inherited.dispose(close=False)
    engine_mod._engines.clear()
    engine = engine_mod.get_engine(db_url, Path(home))
    barrier.wait()  # type: ignore[attr-defined]
    for i in range(EACH):
        with Session(engine, expire_on_commit=False) as s:
            actor = auth.resolve(s, token=token, clinic_code=None)
            auth.create_api_token(s, actor=actor, name=f"w{os.getpid()}-{i}", days=1)
    engine.dispose()


def test_the_chain_stays_linear_with_concurrent_writers(
    staff: StaffHelper, db_url: str, home: Path
) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WRITERS)
    token = os.environ["PATIENTPORTAL_TOKEN"]
    procs = [
        ctx.Process(target=_write_events, args=(db_url, str(home), token, barrier))
        for _ in range(WRITERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    events = all_events(db_url, home)
    assert sum(e.action == "token.create" for e in events) == WRITERS * EACH
    assert_one_linear_chain(events)
    with session_for(db_url, home) as s:
        report = audit.verify(s, chains=["NORD", ""], full=True)
    assert (report.checked, report.problems) == (len(events), [])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite: the service test above
def test_concurrent_cli_processes_keep_one_chain(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    """Real processes running the `patientportal` app, writing at once."""
    env = {
        **os.environ,
        "PATIENTPORTAL_HOME": str(home),
        "PATIENTPORTAL_DB_URL": db_url,
        "PATIENTPORTAL_TOKEN": os.environ["PATIENTPORTAL_TOKEN"],
    }
    script = (
        "import sys\n"
        "from patientportal_cli.cli.app import app\n"
        "for i in range(3):\n"
        "    try:\n"
        "        app(['staff', 'token', 'create', '--name', f'p{i}'], prog_name='patientportal')\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(WRITERS)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS, outputs
    assert all(out.decode().count("pp_") == 3 for out, _ in outputs)
    events = all_events(db_url, home)
    assert sum(e.action == "token.create" for e in events) == WRITERS * 3
    assert_one_linear_chain(events)
    r = cli("audit verify")
    assert r.stderr == f"The audit log is intact: {len(events)} events checked.\n"


# --- CPR numbers in the log ----------------------------------------------------------


def test_cprs_in_the_log_are_masked_and_a_reveal_is_audited(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    cprs = [f"{day:02d}0203{1000 + day}" for day in range(1, 26)]
    with session_for(db_url, home) as s:
        for cpr in cprs:
            audit.record(
                s, actor="anna", clinic="NORD", action="patient.test", target=f"patient:{cpr}"
            )
        s.commit()
    listed = json.loads(cli("audit list --action patient -o json").stdout)
    assert {e["target"] for e in listed} == {f"patient:{c[:6]}-****" for c in cprs}
    assert "cpr.reveal" not in [e.action for e in all_events(db_url, home)]
    shown = json.loads(cli("--show-cpr audit list --action patient -o json").stdout)
    assert {e["target"] for e in shown} == {f"patient:{c[:6]}-{c[6:]}" for c in cprs}
    [reveal] = [e for e in all_events(db_url, home) if e.action == "cpr.reveal"]
    assert (reveal.actor, reveal.clinic, json.loads(reveal.details)["count"]) == (
        "anna",
        "NORD",
        25,
    )
    assert reveal.target == ",".join(sorted(cprs)[:18])
    # the reveal's own target is masked for the next reader
    listed = json.loads(cli("audit list --action cpr -o json").stdout)
    assert "-****" in listed[0]["target"] and cprs[0] not in listed[0]["target"]
    r = cli("audit verify")
    assert r.stderr.startswith("The audit log is intact:")
