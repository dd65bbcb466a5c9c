"""The audit log as evidence: per-clinic chains anchored by signed checkpoints.

Each attack on the table is a test (on both backends): deleting the newest event, the
newest 3, all events; changing an actor and recomputing every hash after it; deleting
event 20 (reported as missing); reordering; inserting. Also: incremental verify reads
only the new events, the audit key, redaction (erasure) keeps the chain verifiable,
a database migrated from schema 0004 with events, and `audit list --staff/--after`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db import migrate
from patientportal_cli.db.models import AuditEvent
from patientportal_cli.services import audit
from tests.helpers.cli import Cli
from tests.helpers.cli import Staff as StaffHelper

KEY = "test-audit-key-0123456789"


@pytest.fixture(autouse=True)
def audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATIENTPORTAL_AUDIT_KEY", KEY)


def session_for(db_url: str, home: Path) -> Session:
    return Session(engine_mod.get_engine(db_url, home), expire_on_commit=False)


def chain_events(db_url: str, home: Path, chain: str = "NORD") -> list[AuditEvent]:
    with session_for(db_url, home) as s:
        return list(
            s.exec(
                select(AuditEvent).where(AuditEvent.chain == chain).order_by(col(AuditEvent.seq))
            )
        )


def add_events(db_url: str, home: Path, n: int, clinic: str | None = "NORD") -> None:
    with session_for(db_url, home) as s:
        for i in range(n):
            audit.record(s, actor="anna", clinic=clinic, action="test.event", target=f"t{i}")
        s.commit()


def sql(db_url: str, home: Path, statement: str, **params: object) -> None:
    with session_for(db_url, home) as s:
        s.execute(text(statement), params)
        s.commit()


def rehash_from(db_url: str, home: Path, seq: int, chain: str = "NORD") -> None:
    """What an attacker with write access and this program's source can do: recompute
    every hash of the chain from ``seq`` on, and its head."""
    with session_for(db_url, home) as s:
        rows = list(
            s.exec(
                select(AuditEvent).where(AuditEvent.chain == chain).order_by(col(AuditEvent.seq))
            )
        )
        prev = audit.GENESIS
        for event in rows:
            if event.seq >= seq:
                event.prev_hash = prev
                event.hash = audit.digest(event)
                s.add(event)
            prev = event.hash
        s.flush()
        last = rows[-1] if rows else None
        s.execute(
            text("UPDATE audit_head SET seq = :s, hash = :h WHERE chain = :c"),
            {"s": last.seq if last else 0, "h": last.hash if last else audit.GENESIS, "c": chain},
        )
        s.commit()


def fix_head(db_url: str, home: Path, chain: str = "NORD") -> None:
    rehash_from(db_url, home, 10**9, chain)


# --- truncation ----------------------------------------------------------------------------


@pytest.mark.parametrize("deleted", [1, 3])
def test_deleting_the_newest_events_is_detected(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path, deleted: int, tmp_path: Path
) -> None:
    add_events(db_url, home, 10)
    cp_file = tmp_path / "cp.json"
    cli(["audit", "checkpoint", "--output-file", str(cp_file)])
    exported = cp_file.read_text()
    events = chain_events(db_url, home)
    n = len(events)
    for event in events[-deleted:]:
        sql(db_url, home, "DELETE FROM audit_event WHERE id = :i", i=event.id)
    r = cli("audit verify", expect=1)  # this machine verified up to #n (audit checkpoint)
    assert r.stderr.startswith(f"Error: Event NORD #{n} is missing: checkpoint 1 of 20")
    (home / "audit-verified.json").unlink()
    sql(db_url, home, "DELETE FROM audit_checkpoint")
    # without fixing the head: the head still names the newest event
    r = cli("audit verify", expect=1)
    assert r.stderr == (
        f"Error: Event NORD #{n - deleted + 1} and later are missing: the chain ends at "
        f"#{n - deleted}, but its head says #{n}.\n"
    )
    # the attacker tidies the head and the checkpoints: a checkpoint file still knows
    fix_head(db_url, home)
    assert cli("audit verify").exit_code == 0
    (home / "audit-verified.json").unlink()
    cp_file.write_text(exported)
    for full in ([], ["--full"]):
        r = cli(["audit", "verify", *full, "--checkpoint-file", str(cp_file)], expect=1)
        assert r.stderr == (
            f"Error: Event NORD #{n - deleted + 1} and later are missing: the chain ends at "
            f"#{n - deleted}, but the checkpoint file's NORD #{n} covers #{n}.\n"
        )


def test_deleting_every_event_is_detected(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path, tmp_path: Path
) -> None:
    cp_file = tmp_path / "cp.json"
    cli(["audit", "checkpoint", "--output-file", str(cp_file)])
    assert oct(cp_file.stat().st_mode & 0o777) == "0o600"
    sql(db_url, home, "DELETE FROM audit_event")
    sql(db_url, home, "DELETE FROM audit_head")
    r = cli("audit verify", expect=1)
    assert r.stderr.startswith("Error: Event NORD #1 is missing: checkpoint 1 of ")
    assert "\nError: Event (no clinic) #1 is missing: checkpoint 2 of " in r.stderr
    # the checkpoints deleted too: the checkpoint file and this machine's memory remain
    sql(db_url, home, "DELETE FROM audit_checkpoint")
    r = cli("audit verify", expect=1)
    assert r.stderr.startswith(
        "Error: Event NORD #1 and later are missing: the chain ends at #0, but the head "
        "verified on this machine covers #"
    )
    (home / "audit-verified.json").unlink()
    r = cli(["audit", "verify", "--checkpoint-file", str(cp_file)], expect=1)
    assert r.stderr.startswith("Error: Event NORD #1 is missing: the checkpoint file's NORD #")


# --- rewriting -----------------------------------------------------------------------------


def test_a_recomputed_chain_is_detected_by_the_signed_checkpoint(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    add_events(db_url, home, 6)
    cli("audit checkpoint")
    anchored = len(chain_events(db_url, home))
    add_events(db_url, home, 2)
    victim = chain_events(db_url, home)[3]
    sql(db_url, home, "UPDATE audit_event SET actor = 'mallory' WHERE id = :i", i=victim.id)
    rehash_from(db_url, home, victim.seq)
    with session_for(db_url, home) as s:  # every hash and link is consistent again ...
        problems = audit.verify(s, chains=["NORD"], full=True, key=None).problems
    assert len(problems) == 1 and "is not the event checkpoint 1 of " in problems[0]
    (home / "audit-verified.json").unlink()  # ... only the checkpoint tells
    r = cli("audit verify", expect=1)
    assert r.stderr.startswith(f"Error: Event NORD #{anchored} has changed: checkpoint 1 of 20")
    r = cli("audit verify --full", expect=1)
    assert r.stderr.startswith(f"Error: Event NORD #{anchored} (id ")
    assert "is not the event checkpoint 1 of 20" in r.stderr
    # changing the checkpoint too needs the key
    rehashed = chain_events(db_url, home)[anchored - 1].hash
    sql(db_url, home, "UPDATE audit_checkpoint SET hash = :h WHERE chain = 'NORD'", h=rehashed)
    r = cli("audit verify", expect=1)
    assert r.stderr == (
        f"Error: Checkpoint 1 (NORD #{anchored}) is not signed by the audit key: it was changed "
        "or forged.\n"
    )


def test_a_missing_event_is_named_by_chain_and_number(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    add_events(db_url, home, 25)
    events = chain_events(db_url, home)
    e19, e20, e21 = events[18], events[19], events[20]
    assert e20.seq == 20
    sql(db_url, home, "DELETE FROM audit_event WHERE id = :i", i=e20.id)
    r = cli("audit verify", expect=1)
    assert r.stderr == f"Error: Event NORD #20 is missing (between ids {e19.id} and {e21.id}).\n"
    for event in events[20:22]:
        sql(db_url, home, "DELETE FROM audit_event WHERE id = :i", i=event.id)
    r = cli("audit verify", expect=1)
    assert r.stderr == (
        f"Error: Events NORD #20-#22 are missing (between ids {e19.id} and {events[22].id}).\n"
    )


def test_reordered_events_are_detected(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    add_events(db_url, home, 5)
    events = chain_events(db_url, home)
    a, b = events[2], events[3]
    sql(db_url, home, "UPDATE audit_event SET seq = -1 WHERE id = :i", i=a.id)
    sql(db_url, home, "UPDATE audit_event SET seq = :s WHERE id = :i", s=a.seq, i=b.id)
    sql(db_url, home, "UPDATE audit_event SET seq = :s WHERE id = :i", s=b.seq, i=a.id)
    r = cli("audit verify", expect=1)
    assert r.stderr.startswith(f"Error: Event NORD #{a.seq} (id {b.id}, test.event at ")


def test_inserted_events_are_detected(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    add_events(db_url, home, 5)
    cli("audit checkpoint")
    events = chain_events(db_url, home)
    n = len(events)
    # in the middle: the later events move up one, the forged one is hashed properly
    sql(db_url, home, "UPDATE audit_event SET seq = seq + 1000 WHERE chain = 'NORD' AND seq > 3")
    sql(db_url, home, "UPDATE audit_event SET seq = seq - 999 WHERE chain = 'NORD' AND seq > 1000")
    forged = AuditEvent(
        at=events[2].at, actor="mallory", clinic="NORD", action="staff.add", target="staff:m",
        prev_hash=events[2].hash, hash="", chain="NORD", seq=4, version=2, salt="00" * 16,
    )  # fmt: skip
    forged.content_hash = audit.content_hash(forged.salt or "", forged.target, forged.details)
    forged.hash = audit.digest(forged)
    with session_for(db_url, home) as s:
        s.add(forged)
        s.commit()
    r = cli("audit verify --full", expect=1)
    assert r.stderr.startswith(f"Error: Event NORD #5 (id {events[3].id}, test.event at ")
    # rehashing everything after it is the recomputed-chain attack: the checkpoint knows
    rehash_from(db_url, home, 5)
    r = cli("audit verify", expect=1)
    assert r.stderr.startswith(f"Error: Event NORD #{n} has changed: checkpoint 1 of 20")


def test_an_event_appended_behind_the_heads_back_is_detected(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    add_events(db_url, home, 2)
    last = chain_events(db_url, home)[-1]
    sql(
        db_url,
        home,
        "INSERT INTO audit_event (at, actor, clinic, action, target, details, prev_hash, hash, "
        "chain, seq, version) SELECT at, actor, clinic, action, target, details, hash, :h, "
        "chain, seq + 1, 2 FROM audit_event WHERE id = :i",
        h="f" * 64,
        i=last.id,
    )
    # the head is read first and walked to: verify checks what the head covers ...
    r = cli("audit verify")
    assert r.stderr.startswith("The audit log is intact:")
    fix_head(db_url, home)  # ... and a head moved over the forged event meets its hash
    r = cli("audit verify", expect=1)
    assert r.stderr.startswith(f"Error: Event NORD #{last.seq + 1} (id ")


# --- incremental verify --------------------------------------------------------------------


def test_verify_resumes_from_the_newest_checkpoint(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    add_events(db_url, home, 5)
    r = cli("audit verify")
    total = len(chain_events(db_url, home)) + len(chain_events(db_url, home, ""))
    assert r.stderr == f"The audit log is intact: {total} events checked.\n"
    cli("audit checkpoint")
    add_events(db_url, home, 7)
    add_events(db_url, home, 2, clinic=None)
    r = cli("audit verify")
    nord = len(chain_events(db_url, home)) - 7
    nothing = len(chain_events(db_url, home, "")) - 2
    assert r.stderr == (
        "The audit log is intact: 9 events checked.\n"
        f"Resumed after NORD #{nord}, (no clinic) #{nothing} (checked before; --full checks "
        "everything).\n"
    )
    with session_for(db_url, home) as s:
        report = audit.verify(s, chains=["NORD", ""], key=KEY.encode())
        assert (report.checked, report.checkpoints_checked) == (9, 2)
        assert [c.start_seq for c in report.chains] == [nord, nothing]
        assert audit.verify(s, chains=["NORD", ""], full=True, key=KEY.encode()).checked == (
            total + 9
        )
    assert cli("audit verify --full").stderr == (
        f"The audit log is intact: {total + 9} events checked.\n"
    )
    # a change below the checkpoint is found by --full
    first = chain_events(db_url, home)[1]
    sql(db_url, home, "UPDATE audit_event SET action = 'x' WHERE id = :i", i=first.id)
    assert cli("audit verify").exit_code == 0
    r = cli("audit verify --full", expect=1)
    assert r.stderr.startswith(f"Error: Event NORD #2 (id {first.id}, x at ")


def test_without_the_key_checkpoints_are_not_checked(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("audit checkpoint")
    monkeypatch.delenv("PATIENTPORTAL_AUDIT_KEY")
    r = cli("audit verify")
    n = len(chain_events(db_url, home)) + len(chain_events(db_url, home, ""))
    assert r.stderr == (
        f"The audit log is intact: {n} events checked.\n"
        "Warning: no audit key here, so the signatures of 2 checkpoints were not checked "
        "(set PATIENTPORTAL_AUDIT_KEY or run `patientportal config set audit-key`).\n"
    )
    monkeypatch.setenv("PATIENTPORTAL_AUDIT_KEY", "another-key")
    r = cli("audit verify")
    assert r.stderr.endswith(
        "Warning: 2 checkpoints signed with another audit key were not checked.\n"
    )


def test_the_audit_key_is_created_in_the_keyring_once(
    cli: Cli, staff: StaffHelper, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from patientportal_cli import keystore

    monkeypatch.delenv("PATIENTPORTAL_AUDIT_KEY")
    r = cli("audit checkpoint")
    assert r.stderr.startswith(
        f"Created the audit key and stored it in the OS keyring (audit-key for {home}). "
    )
    key = keystore.get("audit-key", home)
    assert key and len(key) == 64
    r = cli("audit checkpoint")
    assert r.stderr.startswith("Checkpoint written: NORD #")
    assert keystore.get("audit-key", home) == key
    assert "audit-key" in cli("config show -o json").stdout


def test_who_may_write_checkpoints_and_verify_everything(
    cli: Cli, staff: StaffHelper, db_url: str
) -> None:
    cli("clinic create SYD --name Syd")
    staff.add("bo", "doctor", clinic="NORD")
    staff.login("bo")
    r = cli("audit checkpoint", expect=4)
    assert r.stderr == (
        "Error: Only an admin at clinic NORD can write audit checkpoints (you are doctor).\n"
    )
    assert cli("audit verify").exit_code == 0
    r = cli("audit verify --all", expect=4)
    assert r.stderr == (
        "Error: Only staff who may create clinics can use --all (every clinic's chain).\n"
    )
    staff.login("anna")
    r = cli("audit checkpoint --all")
    assert r.stderr.startswith("Checkpoint written: (no clinic) #")
    assert r.stderr.endswith(", NORD #2, SYD #1.\n")
    assert cli("audit verify --all").stderr.startswith("The audit log is intact: 0 events")


# --- erasure -------------------------------------------------------------------------------


def test_redacted_events_still_verify(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    with session_for(db_url, home) as s:
        event = audit.record(
            s, actor="anna", clinic="NORD", action="patient.create", target="cpr:0102031234",
            details={"email": "a@example.dk"},
        )  # fmt: skip
        s.commit()
    add_events(db_url, home, 2)
    with session_for(db_url, home) as s:
        assert event.id is not None
        assert audit.redact(s, event_ids=[event.id]) == 1
        assert audit.redact(s, event_ids=[event.id]) == 0  # already erased
        s.commit()
    with session_for(db_url, home) as s:
        stored = s.get(AuditEvent, event.id)
        assert stored is not None
        assert (stored.target, stored.details, stored.salt) == (
            audit.ERASED_TARGET,
            audit.ERASED_DETAILS,
            None,
        )
    assert "0102031234" not in cli("audit list -o json").stdout
    assert cli("audit verify --full").stderr.startswith("The audit log is intact:")
    # erasure is not a way to change an event: the rest is still covered
    sql(db_url, home, "UPDATE audit_event SET details = '{}' WHERE id = :i", i=event.id)
    r = cli("audit verify --full", expect=1)
    assert r.stderr.startswith(f"Error: Event NORD #{event.seq} (id {event.id}, ")


# --- migration from schema 0004 -------------------------------------------------------------


def test_a_database_with_events_migrates_and_stays_verifiable(
    cli: Cli, db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events written by the old code (one global chain, the old digest) become version 1
    in their clinic's chain; new events continue each chain; all of it verifies, and a
    changed old event is still found."""
    from datetime import UTC, datetime, timedelta

    engine = engine_mod.get_engine(db_url, home)
    migrate.upgrade(engine, "0004")
    prev = audit.GENESIS
    start = datetime(2026, 1, 1, 8, tzinfo=UTC)
    rows = []
    for i, clinic in enumerate(["NORD", None, "SYD", "NORD", "NORD", None, "SYD"]):
        event = AuditEvent(
            at=start + timedelta(minutes=i, microseconds=0 if i == 2 else 1234),
            actor="anna",
            clinic=clinic,
            action="old.event",
            target=f"cpr:010203{1000 + i}",
            details=json.dumps({"i": i, "navn": "Søren"}, ensure_ascii=False),
            prev_hash=prev,
            hash="",
        )
        event.hash = audit._digest_v1(event)
        prev = event.hash
        rows.append(event)
    with engine.begin() as conn:
        for e in rows:
            conn.execute(
                text(
                    "INSERT INTO audit_event (at, actor, clinic, action, target, details, "
                    "prev_hash, hash) VALUES (:at, :actor, :clinic, :action, :target, "
                    ":details, :prev_hash, :hash)"
                ).bindparams(at=e.at),
                {k: getattr(e, k) for k in ("actor", "clinic", "action", "target", "details",
                                            "prev_hash", "hash")},
            )  # fmt: skip
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.HEAD
    migrated = [(e.chain, e.seq, e.version) for e in chain_events(db_url, home)]
    assert migrated == [("NORD", 1, 1), ("NORD", 2, 1), ("NORD", 3, 1)]
    with session_for(db_url, home) as s:
        report = audit.verify(s, chains=audit.all_chains(s), full=True)
        assert (report.problems, report.checked, report.legacy_checked) == ([], 7, 7)
        audit.record(s, actor="anna", clinic="NORD", action="new.event")
        audit.record(s, actor="anna", clinic=None, action="new.event")
        s.commit()
        nord = chain_events(db_url, home)
        assert (nord[-1].seq, nord[-1].version, nord[-1].prev_hash) == (4, 2, nord[-2].hash)
        report = audit.verify(s, chains=audit.all_chains(s), full=True)
        assert (report.problems, report.checked) == ([], 9)
    sql(db_url, home, "UPDATE audit_event SET target = 'cpr:x' WHERE id = :i", i=3)
    with session_for(db_url, home) as s:
        report = audit.verify(s, chains=audit.all_chains(s), full=True)
    assert report.problems[0].startswith("Event SYD #1 (id 3, old.event at 2026-01-01 08:02:00)")
    assert report.problems[-1].startswith(
        "The events before schema 0005 are broken at id 3 (old.event at 2026-01-01 08:02:00)"
    )


# --- staff logins in the listing --------------------------------------------------------------


def test_admins_see_a_staff_members_logins(cli: Cli, staff: StaffHelper, db_url: str) -> None:
    cli("clinic create SYD --name Syd")
    staff.add("bo", "doctor", clinic="NORD")
    staff.add("syd-eve", "admin", clinic="SYD")
    cli("login bo --password-stdin --print-token", input="wrong\n", expect=4)
    staff.login("bo")
    cli("staff token create --name ci")
    staff.login("syd-eve")
    cli("clinic set-registration open")  # at SYD
    staff.login("anna", clinic="NORD")
    listed = json.loads(cli("audit list --staff bo -o json").stdout)
    assert [(e["action"], e["clinic"]) for e in listed] == [
        ("token.create", "NORD"),
        ("staff.login", None),
        ("staff.login_failed", None),
    ]
    assert {e["actor"] for e in listed} == {"bo"}
    r = cli("audit list --staff syd-eve", expect=1)  # works only at SYD
    assert r.stderr == "Error: No staff member 'syd-eve' works at clinic NORD.\n"
    r = cli("audit list --staff nobody", expect=1)
    assert r.stderr == "Error: No staff member 'nobody' works at clinic NORD.\n"
    staff.login("bo")
    r = cli("audit list --staff bo", expect=4)
    assert r.stderr == (
        "Error: Only an admin at clinic NORD can see a staff member's logins (you are doctor).\n"
    )


def test_listings_page_with_after(cli: Cli, staff: StaffHelper, db_url: str, home: Path) -> None:
    add_events(db_url, home, 7)
    first = json.loads(cli("audit list --limit 3 -o json").stdout)
    second = json.loads(cli(f"audit list --limit 3 --after {first[-1]['id']} -o json").stdout)
    everything = json.loads(cli("audit list -o json").stdout)
    assert first + second == everything[:6]
    assert cli("audit list --after 1").stderr == "No audit events.\n"
    assert cli("audit list --after 0", expect=2).exit_code == 2


def test_a_bad_checkpoint_file_is_one_line(cli: Cli, staff: StaffHelper, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"checkpoints": [{"chain": 1}]}')
    r = cli(["audit", "verify", "--checkpoint-file", str(bad)], expect=2)
    assert r.stderr == "Error: The checkpoint file is not a patientportal audit checkpoint file.\n"
    r = cli(["audit", "verify", "--checkpoint-file", str(tmp_path / "none.json")], expect=2)
    assert r.stderr == f"Error: --checkpoint-file: no file {tmp_path / 'none.json'}.\n"
    assert os.environ["PATIENTPORTAL_AUDIT_KEY"] == KEY
