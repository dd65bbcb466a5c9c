"""The append-only audit log, a hash chain.

Each event stores the hash of the event before it and its own hash over its fields, so
a changed, removed or inserted event breaks the chain at that point. ``record`` is
called inside the transaction of the change it describes. On PostgreSQL a table lock
(EXCLUSIVE mode: readers still read) makes concurrent writers take turns, so the chain
stays linear; on SQLite every write transaction is already exclusive (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import AuditEvent

GENESIS = "0" * 64
encode_json_string = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _digest(event: AuditEvent) -> str:
    payload = json.dumps(
        [
            event.at.isoformat(),
            event.actor,
            event.clinic,
            event.action,
            event.target,
            event.details,
            event.prev_hash,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _lock_chain(session: Session) -> None:
    """Writers of the chain take turns (PostgreSQL): a table lock that still lets readers
    read, held to the end of the transaction. It is scoped to this schema's table, so
    databases in other schemas of the same server never wait on each other."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_event IN EXCLUSIVE MODE"))


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    clinic: str | None = None,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    _lock_chain(session)
    last = session.exec(
        select(AuditEvent.hash).order_by(col(AuditEvent.id).desc()).limit(1)
    ).first()
    event = AuditEvent(
        at=utcnow(),
        actor=actor,
        clinic=clinic,
        action=action,
        target=target,
        details=json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str),
        prev_hash=last or GENESIS,
        hash="",
    )
    event.hash = _digest(event)
    session.add(event)
    session.flush()
    return event


def events(
    session: Session,
    *,
    clinic: str | None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[AuditEvent]:
    """A clinic's events, newest first (``clinic=None``: events of no clinic)."""
    query = select(AuditEvent).where(AuditEvent.clinic == clinic)
    if action:
        query = query.where(col(AuditEvent.action).startswith(action, autoescape=True))
    if since:
        query = query.where(AuditEvent.at >= since)
    query = query.order_by(col(AuditEvent.id).desc())
    if limit:
        query = query.limit(limit)
    return list(session.exec(query))


def iter_chain(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    last_id = 0
    while True:
        rows = list(
            session.exec(
                select(AuditEvent)
                .where(col(AuditEvent.id) > last_id)
                .order_by(col(AuditEvent.id))
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id or last_id
        session.expunge_all()


def verify(session: Session) -> tuple[int, AuditEvent | None]:
    """Check the whole chain: (events checked, first event that does not match or None)."""
    prev = GENESIS
    count = 0
    for event in iter_chain(session):
        if event.prev_hash != prev or _digest(event) != event.hash:
            return count, event
        prev = event.hash
        count += 1
    return count, None


CHAIN_COLUMNS = ("at", "actor", "clinic", "action", "target", "details", "prev_hash", "hash")


def chain(session: Session, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Audit rows for many events (bulk import), hash chain computed here, not written.

    Each event is a dict with ``actor``, ``action`` and optionally ``clinic``, ``target``
    and ``details`` (as for ``record``), or ``details_json``: the details already as
    ``json.dumps(details, ensure_ascii=False, sort_keys=True)`` would write them. Takes
    the same lock as ``record`` and continues the chain from the newest event, so the
    caller must insert the rows (tuples in ``CHAIN_COLUMNS`` order), in order, in this
    transaction. The hashes are those ``record`` would compute (``verify`` cannot tell
    the two apart).
    """
    if not events:
        return []
    _lock_chain(session)
    last = session.exec(
        select(AuditEvent.hash).order_by(col(AuditEvent.id).desc()).limit(1)
    ).first()
    prev = last or GENESIS
    at = utcnow()
    encoded: dict[str | None, str] = {None: "null"}  # actor/clinic/action -> JSON

    def enc(value: str | None) -> str:
        found = encoded.get(value)
        if found is None:
            found = encoded[value] = encode_json_string(str(value))
        return found

    stamp = enc(at.isoformat())
    sha256 = hashlib.sha256
    rows: list[tuple[Any, ...]] = []
    for event in events:
        details = event.get("details_json") or json.dumps(
            event.get("details") or {}, ensure_ascii=False, sort_keys=True, default=str
        )
        actor = event["actor"]
        clinic = event.get("clinic")
        action = event["action"]
        target = event.get("target", "")
        # the same text as _digest's json.dumps([...], ensure_ascii=False,
        # separators=(",", ":")), built from the encoded strings (a test checks it)
        payload = (
            f"[{stamp},{enc(actor)},{enc(clinic)},{enc(action)},"
            f"{encode_json_string(target)},{encode_json_string(details)},"
            f"{encode_json_string(prev)}]"
        )
        digest = sha256(payload.encode("utf-8")).hexdigest()
        rows.append((at, actor, clinic, action, target, details, prev, digest))
        prev = digest
    return rows


def record_many(session: Session, events: list[dict[str, Any]]) -> int:
    """Append many events at once (see ``chain``); returns the number written."""
    rows = chain(session, events)
    if rows:
        from sqlalchemy import insert

        session.execute(
            insert(AuditEvent.__table__),  # type: ignore[attr-defined]
            [dict(zip(CHAIN_COLUMNS, row, strict=True)) for row in rows],
        )
    return len(rows)
