"""Failed logins and the lock that follows, per login name, for names that exist or not.

A login name is a staff username (kind ``staff``) or a patient's CPR number (kind
``patient``). Five failures in a row lock the name for 15 minutes; a success resets the
count. The row is kept by a hash of kind and name, and is kept for names that belong to
nobody too, so the lock behaves the same whether or not the name exists and tells
nobody which names do. Staff lift a lock with ``staff unlock`` / ``patient unlock``.

Each call takes the row for update (created if missing, safely under concurrency), so
two failures at the same moment both count.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, text
from sqlmodel import Session, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import LoginThrottle

MAX_FAILURES = 5
LOCK_MINUTES = 15
LOCK = timedelta(minutes=LOCK_MINUTES)
STAFF = "staff"
PATIENT = "patient"


_UPDATED_AT = LoginThrottle.__table__.c.updated_at.type  # type: ignore[attr-defined]


def key(kind: str, name: str) -> str:
    return hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row(session: Session, kind: str, name: str) -> LoginThrottle:
    """The name's row, locked for this transaction (created when missing)."""
    digest = key(kind, name)
    # plain SQL that SQLite and PostgreSQL both take (as audit_head's upsert), so no
    # dialect module is imported at start-up for it
    session.execute(
        text(
            "INSERT INTO login_throttle (key, failures, updated_at) "
            "VALUES (:key, 0, :at) ON CONFLICT (key) DO NOTHING"
        ).bindparams(bindparam("at", type_=_UPDATED_AT)),
        {"key": digest, "at": utcnow()},
    )
    row = session.exec(
        select(LoginThrottle)
        .where(LoginThrottle.key == digest)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return row


def _peek(session: Session, kind: str, name: str) -> LoginThrottle | None:
    return session.exec(select(LoginThrottle).where(LoginThrottle.key == key(kind, name))).first()


def locked_until(
    session: Session, *, kind: str, name: str, now: datetime | None = None
) -> datetime | None:
    """The end of the name's lock (UTC), or None when it is not locked now."""
    row = _peek(session, kind, name)
    until = _utc(row.locked_until) if row is not None else None
    if until is None or until <= _utc(now or utcnow()):  # type: ignore[operator]
        return None
    return until


def hold(session: Session, *, kind: str, name: str, now: datetime | None = None) -> datetime | None:
    """Take the name's row for this transaction (created when missing), so parallel
    attempts for one name take turns and none slips past a lock being set; returns the
    end of the lock (UTC) when it is locked now."""
    until = _utc(_row(session, kind, name).locked_until)
    if until is None or until <= _utc(now or utcnow()):  # type: ignore[operator]
        return None
    return until


def failure(
    session: Session, *, kind: str, name: str, now: datetime | None = None
) -> datetime | None:
    """Count a failed login; returns the end of the lock when this failure locked it."""
    now = now or utcnow()
    row = _row(session, kind, name)
    row.failures += 1
    row.updated_at = now
    until = None
    if row.failures >= MAX_FAILURES:
        row.failures = 0
        row.locked_until = until = now + LOCK
    session.add(row)
    session.flush()
    return until


def failures(session: Session, *, kind: str, name: str) -> int:
    row = _peek(session, kind, name)
    return 0 if row is None else row.failures


def success(session: Session, *, kind: str, name: str) -> None:
    """A login passed this step: the count starts again (no row is made for it)."""
    row = _peek(session, kind, name)
    if row is not None and (row.failures or row.locked_until is not None):
        row.failures = 0
        row.updated_at = utcnow()
        session.add(row)
        session.flush()


def clear(session: Session, *, kind: str, name: str) -> tuple[int, datetime | None]:
    """Lift the lock and the count (staff's unlock): what there was (failures, lock end)."""
    row = _peek(session, kind, name)
    if row is None:
        return 0, None
    was = (row.failures, _utc(row.locked_until))
    row.failures = 0
    row.locked_until = None
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return was
