"""The append-only audit log, a hash chain.

Each event stores the hash of the event before it and its own hash over its fields, so
a changed, removed or inserted event breaks the chain at that point. ``record`` is
called inside the transaction of the change it describes. On PostgreSQL a transaction
advisory lock makes concurrent writers take turns, so the chain stays linear; on
SQLite every write transaction is already exclusive (BEGIN IMMEDIATE).
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
_LOCK_KEY = 7_305_001  # arbitrary, constant: the audit chain's advisory lock


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


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    clinic: str | None = None,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
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
        query = query.where(col(AuditEvent.action).startswith(action))
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
