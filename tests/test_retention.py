"""Retention (D42): `audit prune --older-than` removes old events and leaves a signed
prune checkpoint, so `audit verify` (incremental and --full) still passes and still
finds tampering with what remains; `audit retention` shows the policy and the last run.
Both backends, through the command."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db.models import AuditEvent
from patientportal_cli.services import audit
from patientportal_cli.services.audit import chains as audit_chains
from tests.helpers.cli import PASSWORD, Cli, lines
from tests.helpers.cli import Staff as StaffHelper

KEY = "test-audit-key-0123456789"


@pytest.fixture(autouse=True)
def audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATIENTPORTAL_AUDIT_KEY", KEY)


def session_for(db_url: str, home: Path) -> Session:
    return Session(engine_mod.get_engine(db_url, home), expire_on_commit=False)


def old_events(db_url: str, home: Path, n: int) -> None:
    """``n`` events at NORD, at the audit clock's time."""
    with session_for(db_url, home) as s:
        for i in range(n):
            audit.record(s, actor="anna", clinic="NORD", action="test.event", target=f"t{i}")
        s.commit()


def chain_events(db_url: str, home: Path, chain: str = "NORD") -> list[AuditEvent]:
    with session_for(db_url, home) as s:
        return list(
            s.exec(
                select(AuditEvent).where(AuditEvent.chain == chain).order_by(col(AuditEvent.seq))
            )
        )


def sql(db_url: str, home: Path, statement: str, **params: object) -> None:
    with session_for(db_url, home) as s:
        s.execute(text(statement), params)
        s.commit()


@pytest.fixture
def aged(cli: Cli, db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Set up 3 years ago (the audit clock turned back): NORD's init events and 5 more;
    anna's login (no-clinic chain). Then 3 events of today. Returns the seq of NORD's
    last old event."""
    then = datetime.now(UTC) - timedelta(days=3 * 365)
    with monkeypatch.context() as m:
        m.setattr(audit_chains, "utcnow", lambda: then)
        cli(
            "init --clinic NORD --clinic-name Nordklinikken --admin anna --admin-name 'Anna "
            "Admin' --password-stdin",
            input=PASSWORD + "\n",
        )
        StaffHelper(cli, monkeypatch).login("anna")
        old_events(db_url, home, 5)
    token = os.environ["PATIENTPORTAL_TOKEN"]
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)
    last_old = len(chain_events(db_url, home))
    old_events(db_url, home, 3)
    return last_old


def test_prune_removes_old_events_and_verify_still_passes(
    cli: Cli, aged: int, db_url: str, home: Path
) -> None:
    total = len(chain_events(db_url, home))
    r = cli("audit prune --dry-run")
    assert r.stdout == ""
    found = lines(r.stderr)
    assert found[0].startswith(f"Would remove {aged} events of NORD (#{aged} and older, ")
    assert found[1].startswith("Dry run: nothing removed (events older than ")
    assert len(chain_events(db_url, home)) == total
    r = cli("audit prune")
    assert lines(r.stderr)[0].startswith(f"Removed {aged} events of NORD (#{aged} and older, ")
    assert lines(r.stderr)[1].startswith(f"Pruned {aged} events older than ")
    remaining = chain_events(db_url, home)
    assert [e.seq for e in remaining][0] == aged + 1
    assert remaining[-1].action == "audit.prune"
    assert remaining[-1].target == ""
    assert f'"removed": {aged}' in remaining[-1].details
    for args in ("audit verify", "audit verify --full"):
        r = cli(args)
        assert "The audit log is intact" in r.stderr
        assert f"Pruned (audit retention): events up to NORD #{aged} were removed." in r.stderr
    # nothing more is old enough
    r = cli("audit prune")
    assert r.stderr.startswith("No audit events older than ")


def test_prune_keeps_tampering_visible(cli: Cli, aged: int, db_url: str, home: Path) -> None:
    cli("audit checkpoint")
    cli("audit prune")
    remaining = chain_events(db_url, home)
    first = remaining[0]
    # the first remaining event deleted: it must link to the prune checkpoint's hash
    sql(db_url, home, "DELETE FROM audit_event WHERE id = :i", i=first.id)
    (home / "audit-verified.json").unlink()
    for args in ("audit verify", "audit verify --full"):
        r = cli(args, expect=1)
        assert r.stderr == (
            f"Error: Event NORD #{aged + 1} is missing (before id {remaining[1].id}).\n"
        )


def test_prune_then_an_altered_event_is_detected(
    cli: Cli, aged: int, db_url: str, home: Path
) -> None:
    cli("audit prune")
    first = chain_events(db_url, home)[0]
    sql(db_url, home, "UPDATE audit_event SET actor = 'mallory' WHERE id = :i", i=first.id)
    r = cli("audit verify --full", expect=1)
    assert r.stderr.startswith(f"Error: Event NORD #{aged + 1} (id {first.id}, test.event at ")
    assert "does not match its hash" in r.stderr


def test_deleting_old_events_without_a_prune_checkpoint_is_detected(
    cli: Cli, aged: int, db_url: str, home: Path
) -> None:
    """What someone with table access cannot do: call a deletion retention."""
    sql(db_url, home, "DELETE FROM audit_event WHERE chain = 'NORD' AND seq <= :s", s=aged)
    r = cli("audit verify --full", expect=1)
    assert r.stderr.startswith(f"Error: Events NORD #1-#{aged} are missing (before id ")


def test_a_forged_prune_checkpoint_is_detected(
    cli: Cli, aged: int, db_url: str, home: Path
) -> None:
    cli("audit prune")
    # moving the floor up (to hide deleting more) breaks the signature
    sql(db_url, home, "UPDATE audit_checkpoint SET seq = seq + 1 WHERE kind = 'prune'")
    r = cli("audit verify --full", expect=1)
    assert "is not signed by the audit key: it was changed or forged." in r.stderr
    # an ordinary checkpoint turned into a prune checkpoint: its signature does not pass
    sql(db_url, home, "UPDATE audit_checkpoint SET seq = seq - 1 WHERE kind = 'prune'")
    sql(db_url, home, "DELETE FROM audit_checkpoint WHERE kind = 'prune'")
    cli("audit checkpoint", expect=1)  # the chain is broken without its floor
    r = cli("audit verify --full", expect=1)
    assert r.stderr.startswith(f"Error: Events NORD #1-#{aged} are missing")


def test_prune_without_the_audit_key_is_refused(
    cli: Cli, aged: int, db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PATIENTPORTAL_AUDIT_KEY")
    total = len(chain_events(db_url, home))
    r = cli("audit prune", expect=1)
    assert r.stderr == (
        "Error: Pruning needs the audit key, to sign the checkpoint that anchors what "
        "remains: set PATIENTPORTAL_AUDIT_KEY or run `patientportal config set audit-key`. "
        "Nothing was removed.\n"
    )
    assert len(chain_events(db_url, home)) == total
    # a dry run needs no key
    assert cli("audit prune --dry-run").stderr.startswith(f"Would remove {aged} events")


def test_older_than_is_checked(cli: Cli, aged: int, db_url: str, home: Path) -> None:
    r = cli("audit prune --older-than 30d", expect=1)
    assert r.stderr == (
        "Error: --older-than 30d is shorter than the retention policy (2 years, config key "
        "audit-retention): events are kept that long.\n"
    )
    r = cli("audit prune --older-than 2x", expect=2)
    assert r.stderr == (
        "Error: --older-than '2x': use a number and a unit, e.g. 2y, 24m, 104w or 730d.\n"
    )
    # longer than the policy: allowed (nothing is 4 years old)
    assert cli("audit prune --older-than 4y").stderr.startswith("No audit events older than ")
    # longer than the policy, shorter than their age: the 3-year-old events go
    assert cli("audit prune --older-than 1000d").stderr.startswith(f"Removed {aged} events")


def test_the_policy_is_a_config_key(cli: Cli, aged: int, db_url: str, home: Path) -> None:
    r = cli("config set audit-retention 5x", expect=2)
    assert r.stderr == (
        "Error: audit-retention '5x': use a number and a unit, e.g. 2y, 24m, 104w or 730d.\n"
    )
    cli("config set audit-retention 4y")
    assert cli("audit prune").stderr.startswith("No audit events older than ")
    cli("audit prune --older-than 3y", expect=1)
    cli("config set audit-retention 1y")
    r = cli("audit retention")
    assert lines(r.stderr)[0] == (
        "Retention policy: 1 year (1y; config key audit-retention). `audit prune` removes "
        "older events."
    )
    cli("audit prune")
    r = cli("audit retention -o json")
    import json

    data = json.loads(r.stdout)
    assert data["policy"] == "1y"
    nord = [c for c in data["chains"] if c["chain"] == "NORD"][0]
    assert nord["removed"] == aged
    assert nord["through_seq"] == aged
    assert nord["pruned_by"] == "anna"
    none = [c for c in data["chains"] if c["chain"] == "(no clinic)"][0]
    assert none["last_prune"] is None


def test_who_may_prune(cli: Cli, aged: int, db_url: str, home: Path, monkeypatch) -> None:
    staff = StaffHelper(cli, monkeypatch)
    staff.add("sofie", "secretary")
    staff.login("sofie")
    r = cli("audit prune", expect=4)
    assert "admin" in r.stderr
    r = cli("audit prune --all", expect=4)
    assert r.stderr == (
        "Error: Only staff who may create clinics can use --all (every chain, the no-clinic "
        "chain included).\n"
    )
    staff.login("anna")
    r = cli("audit prune --all --dry-run")
    found = lines(r.stderr)
    assert found[0].startswith("Would remove 1 events of (no clinic) (#1 and older, ")
    assert found[1].startswith(f"Would remove {aged} events of NORD")


def test_prune_all_takes_the_no_clinic_chain_too(cli: Cli, aged: int) -> None:
    r = cli("audit prune --all")
    found = lines(r.stderr)
    assert found[0].startswith("Removed 1 events of (no clinic) (#1 and older, ")
    assert found[1].startswith(f"Removed {aged} events of NORD")
    for args in ("audit verify --all", "audit verify --all --full"):
        r = cli(args)
        assert "The audit log is intact" in r.stderr
        assert "(no clinic) #1, NORD #" in r.stderr


def test_migration_0009_keeps_checkpoints_and_chains_verifiable(db_url: str, home: Path) -> None:
    """A database at 0008 with events and a signed checkpoint, upgraded: the checkpoint
    becomes kind "checkpoint" and still verifies, and so does the chain."""
    from patientportal_cli.db import migrate
    from patientportal_cli.services.audit.hashing import at_text, key_id, sign

    engine = engine_mod.get_engine(db_url, home)
    migrate.upgrade(engine, "0008")
    old_events(db_url, home, 4)
    head = chain_events(db_url, home)[-1]
    now = datetime.now(UTC)
    with session_for(db_url, home) as s:
        s.execute(
            text(
                "INSERT INTO audit_checkpoint (chain, seq, hash, created_at, created_by, key_id, "
                "signature) VALUES ('NORD', :s, :h, :t, 'anna', :k, :sig)"
            ),
            {
                "s": head.seq,
                "h": head.hash,
                "t": now,
                "k": key_id(KEY.encode()),
                "sig": sign(KEY.encode(), "NORD", head.seq, head.hash, at_text(now), "anna"),
            },
        )
        s.commit()
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.HEAD
    with session_for(db_url, home) as s:
        kinds = s.execute(text("SELECT kind, cutoff, removed FROM audit_checkpoint")).all()
        assert [tuple(k) for k in kinds] == [("checkpoint", None, None)]
        report = audit.verify(s, chains=["NORD"], full=True, key=KEY.encode())
    assert report.problems == []
    assert report.checkpoints_checked == 1
