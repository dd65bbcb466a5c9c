"""The chains: appending events (``record``, and ``chain``/``record_many`` for many at
once, as the bulk import does) under a lock on the chain's head, and reading them back."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, or_, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import AuditCheckpoint, AuditEvent, Membership, Staff
from patientportal_cli.errors import NotFound
from patientportal_cli.services.audit.hashing import at_text, content_hash, digest_v2

GENESIS = "0" * 64
NO_CLINIC = ""


def chain_of(clinic: str | None) -> str:
    return clinic or NO_CLINIC


def label(chain: str) -> str:
    """How messages name a chain: the clinic code, or '(no clinic)'."""
    return chain or "(no clinic)"


# --- writing -----------------------------------------------------------------------------


def _lock_head(session: Session, chain: str) -> tuple[int, str]:
    """Create or lock the chain's head row (to the end of the transaction); its seq, hash."""
    row = session.execute(
        text(
            "INSERT INTO audit_head (chain, seq, hash, updated_at) VALUES (:c, 0, :g, :t) "
            "ON CONFLICT (chain) DO UPDATE SET updated_at = excluded.updated_at "
            "RETURNING seq, hash"
        ),
        {"c": chain, "g": GENESIS, "t": at_text(utcnow())},
    ).one()
    return int(row[0]), str(row[1])


def _set_head(session: Session, chain: str, seq: int, hash_: str) -> None:
    session.execute(
        text("UPDATE audit_head SET seq = :s, hash = :h WHERE chain = :c"),
        {"s": seq, "h": hash_, "c": chain},
    )


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    clinic: str | None = None,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the clinic's chain (``clinic=None``: the no-clinic chain), in
    the caller's transaction. ``action``: a ``vocabulary.Action`` member (the code writes
    no other; a plain ``str`` here lets tests exercise the chain with any text)."""
    chain = chain_of(clinic)
    seq, prev = _lock_head(session, chain)
    seq += 1
    at = utcnow()
    details_text = json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str)
    salt = secrets.token_hex(16)
    content = content_hash(salt, target, details_text)
    event = AuditEvent(
        at=at,
        actor=actor,
        clinic=clinic,
        action=action,
        target=target,
        details=details_text,
        prev_hash=prev,
        hash=digest_v2(chain, seq, at_text(at), actor, action, content, prev),
        chain=chain,
        seq=seq,
        version=2,
        salt=salt,
        content_hash=content,
    )
    session.add(event)
    session.flush()
    _set_head(session, chain, seq, event.hash)
    return event


CHAIN_COLUMNS = (
    "at",
    "actor",
    "clinic",
    "action",
    "target",
    "details",
    "prev_hash",
    "hash",
    "chain",
    "seq",
    "version",
    "salt",
    "content_hash",
)


def chain(session: Session, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Audit rows for many events (bulk import), hashes computed here, not written.

    Each event is a dict with ``actor``, ``action`` and optionally ``clinic``, ``target``
    and ``details`` (as for ``record``), or ``details_json``: the details already as
    ``json.dumps(details, ensure_ascii=False, sort_keys=True)`` would write them. Locks
    the head of every chain involved (in sorted order) and moves it past these events,
    so the caller must insert the rows (tuples in ``CHAIN_COLUMNS`` order, first column
    the time) in this transaction. The hashes are those ``record`` would compute.
    """
    if not events:
        return []
    heads = {c: _lock_head(session, c) for c in sorted({chain_of(e.get("clinic")) for e in events})}
    at = utcnow()
    stamp = at_text(at)
    salts = os.urandom(16 * len(events)).hex()
    sha256 = hashlib.sha256
    prefix = {c: f"2|{len(c)}:{c}|" for c in heads}
    rows: list[tuple[Any, ...]] = []
    for i, event in enumerate(events):
        details = event.get("details_json") or json.dumps(
            event.get("details") or {}, ensure_ascii=False, sort_keys=True, default=str
        )
        actor = event["actor"]
        clinic = event.get("clinic")
        action = event["action"]
        target = event.get("target", "")
        c = clinic or NO_CLINIC
        seq, prev = heads[c]
        seq += 1
        salt = salts[32 * i : 32 * i + 32]
        content = sha256(f"{salt}|{len(target)}:{target}|{details}".encode()).hexdigest()
        digest_ = sha256(
            f"{prefix[c]}{seq}|{stamp}|{len(actor)}:{actor}|{len(action)}:{action}"
            f"|{content}|{prev}".encode()
        ).hexdigest()
        rows.append(
            (at, actor, clinic, action, target, details, prev, digest_, c, seq, 2, salt, content)
        )
        heads[c] = (seq, digest_)
    for c, (seq, hash_) in heads.items():
        _set_head(session, c, seq, hash_)
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


# --- reading -----------------------------------------------------------------------------


def events(
    session: Session,
    *,
    clinic: str | None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    after: int | None = None,
    staff: str | None = None,
) -> list[AuditEvent]:
    """A clinic's events, newest first (``clinic=None``: events of no clinic).

    ``after``: only events older than that id (the next page of a listing).
    ``staff``: only that staff member's own events (they are the actor), here and in the
    no-clinic chain (logins, failed logins, locks, password and token events); NotFound
    unless they have a membership at ``clinic``.
    """
    if staff is not None:
        name = staff.strip().lower()
        member = session.exec(
            select(Staff.id)
            .join(Membership, col(Membership.staff_id) == Staff.id)
            .where(Staff.username == name, Membership.clinic_id == _clinic_id(session, clinic))
        ).first()
        if member is None:
            raise NotFound(f"No staff member {name!r} works at clinic {clinic}.")
        query = select(AuditEvent).where(
            AuditEvent.actor == name,
            or_(AuditEvent.clinic == clinic, col(AuditEvent.clinic).is_(None)),
        )
    else:
        query = select(AuditEvent).where(AuditEvent.clinic == clinic)
    if action:
        query = query.where(col(AuditEvent.action).startswith(action, autoescape=True))
    if since:
        query = query.where(AuditEvent.at >= since)
    if after is not None:
        query = query.where(col(AuditEvent.id) < after)
    query = query.order_by(col(AuditEvent.id).desc())
    if limit:
        query = query.limit(limit)
    return list(session.exec(query))


def _clinic_id(session: Session, code: str | None) -> int | None:
    from patientportal_cli.db.models import Clinic

    return session.exec(select(Clinic.id).where(Clinic.code == code)).first()


def all_chains(session: Session) -> list[str]:
    """Every chain that has a head, a checkpoint, or a clinic, and the no-clinic chain."""
    from patientportal_cli.db.models import AuditHead, Clinic

    found = {NO_CLINIC}
    found.update(session.exec(select(AuditHead.chain)))
    found.update(session.exec(select(AuditCheckpoint.chain).distinct()))
    found.update(session.exec(select(Clinic.code)))
    return sorted(found)
