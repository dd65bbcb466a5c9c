"""The append-only audit log: one hash chain per clinic, anchored by signed checkpoints.

Chains. Every event belongs to one chain: its clinic's code, or "" (the no-clinic chain:
staff logins, failed logins, locks, staff accounts). ``seq`` numbers a chain's events
from 1 without gaps, so a deleted event is reported as missing by chain and number. A
writer locks only its chain's row in ``audit_head`` (``INSERT ... ON CONFLICT DO UPDATE
... RETURNING``: one statement creates or locks it and returns the chain's newest seq and
hash), so writers at different clinics never wait on each other; on SQLite every write
transaction is exclusive anyway.

Hashing (version 2, erasable). Personal data lives only in ``target`` and ``details``.
They are covered through ``content_hash = sha256(salt | len(target):target | details)``
with a random 16-byte salt per event, and the event's hash covers the version, chain,
seq, time, actor, action, content_hash and the previous event's hash (a length-prefixed
text, cheap to build: see ``_digest_v2``). Erasing an event (``redact``) blanks target,
details and salt and keeps content_hash: the chain still verifies, and without the salt
nobody can confirm a guessed CPR number against the stored content_hash.

Version 1: events written before schema 0005 were one global chain in id order, hashed
with ``_digest_v1`` over all fields. The migration numbered them into their clinic's
chain and set each chain's head to its last version-1 event, so version-2 events
continue those chains; ``verify`` checks version-1 events with the old digest and their
global order.

Anchoring. A chain alone cannot show that its newest events were deleted, or that the
whole chain was recomputed. ``checkpoint`` stores (chain, seq, hash) signed with
HMAC-SHA256 under the audit key, which is kept outside the database (OS keyring or
environment); ``verify`` checks the signatures, that each anchored event still exists
with that hash, and resumes from the newest good anchor (incremental). Anchors also come
from an exported checkpoint file and from the heads this machine verified before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, or_, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import AuditCheckpoint, AuditEvent, Membership, Staff
from patientportal_cli.errors import DomainError, NotFound

GENESIS = "0" * 64
NO_CLINIC = ""
ERASED_TARGET = "[erased]"
ERASED_DETAILS = '{"erased": true}'
BATCH = 20_000
encode_json_string = json.encoder.encode_basestring  # type: ignore[attr-defined]


def chain_of(clinic: str | None) -> str:
    return clinic or NO_CLINIC


def label(chain: str) -> str:
    """How messages name a chain: the clinic code, or '(no clinic)'."""
    return chain or "(no clinic)"


# --- hashing -----------------------------------------------------------------------------


def at_text(at: datetime) -> str:
    """The time as hashed: UTC, 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLite's stored text)."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return f"{at:%Y-%m-%d %H:%M:%S.%f}"


def content_hash(salt: str, target: str, details: str) -> str:
    return hashlib.sha256(f"{salt}|{len(target)}:{target}|{details}".encode()).hexdigest()


def _digest_v2(
    chain: str, seq: int, at: str, actor: str, action: str, content: str, prev: str
) -> str:
    """Length prefixes keep the text unambiguous (an actor may contain '|')."""
    payload = (
        f"2|{len(chain)}:{chain}|{seq}|{at}|{len(actor)}:{actor}|{len(action)}:{action}"
        f"|{content}|{prev}"
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _digest_v1(event: AuditEvent) -> str:
    """The hash of events written before schema 0005 (one global chain)."""
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


def digest(event: AuditEvent) -> str:
    """The hash ``event`` should carry (version 2 with its salt, or version 1)."""
    if event.version == 1:
        return _digest_v1(event)
    content = (
        content_hash(event.salt, event.target, event.details)
        if event.salt is not None
        else event.content_hash or ""
    )
    return _digest_v2(
        event.chain, event.seq, at_text(event.at), event.actor, event.action, content,
        event.prev_hash,
    )  # fmt: skip


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
        hash=_digest_v2(chain, seq, at_text(at), actor, action, content, prev),
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


def redact(session: Session, *, event_ids: Sequence[int]) -> int:
    """Erase the personal data of these events (GDPR art. 17): target and details become
    the erasure marker and the salt is removed; content_hash stays, so ``verify`` still
    passes. Version-1 events (before schema 0005) hash their content directly and are
    left alone (retention removes them). Returns the number of events erased."""
    erased = 0
    ids = list(event_ids)
    for i in range(0, len(ids), 1000):
        result: Any = session.execute(
            text(
                "UPDATE audit_event SET target = :t, details = :d, salt = NULL "
                "WHERE version = 2 AND salt IS NOT NULL AND id IN :ids"
            ).bindparams(_expanding("ids")),
            {"t": ERASED_TARGET, "d": ERASED_DETAILS, "ids": ids[i : i + 1000]},
        )
        erased += result.rowcount or 0
    return erased


def _expanding(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


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


# --- the audit key and signatures ----------------------------------------------------------


def key_id(key: bytes) -> str:
    """Names a key without revealing it (16 hex digits)."""
    return hashlib.sha256(b"patientportal-audit-key-id|" + key).hexdigest()[:16]


def sign(key: bytes, chain: str, seq: int, hash_: str, created_at: str, created_by: str) -> str:
    message = (
        f"patientportal-audit-checkpoint|{len(chain)}:{chain}|{seq}|{hash_}|{created_at}"
        f"|{len(created_by)}:{created_by}"
    )
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


@dataclass
class Anchor:
    """A (chain, seq, hash) the chain must still contain."""

    chain: str
    seq: int
    hash: str
    what: str  # "checkpoint 3 of 2026-12-02 10:00", "the checkpoint file", ...
    trusted: bool  # may verify resume from it (signed with our key, or a checkpoint file)


@dataclass
class ChainResult:
    chain: str
    start_seq: int = 0  # resumed after this seq (0: from the start)
    resumed_from: str = ""
    checked: int = 0  # events hashed in this run
    end_seq: int = 0
    end_hash: str = GENESIS
    problem: str | None = None


@dataclass
class Report:
    chains: list[ChainResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    has_key: bool = False
    checkpoints_checked: int = 0  # signatures verified
    checkpoints_unchecked: int = 0  # no key, or signed with another key
    legacy_checked: int = 0  # version-1 events checked in their global order

    @property
    def checked(self) -> int:
        return sum(c.checked for c in self.chains)

    @property
    def heads(self) -> dict[str, tuple[int, str]]:
        return {c.chain: (c.end_seq, c.end_hash) for c in self.chains if c.problem is None}


def _checkpoint_anchor(cp: AuditCheckpoint, key: bytes | None, report: Report) -> Anchor | None:
    when = at_text(cp.created_at)[:16]
    what = f"checkpoint {cp.id} of {when} UTC"
    if key is None or cp.key_id != key_id(key):
        report.checkpoints_unchecked += 1
        return Anchor(cp.chain, cp.seq, cp.hash, what, trusted=False)
    expected = sign(key, cp.chain, cp.seq, cp.hash, at_text(cp.created_at), cp.created_by)
    if not hmac.compare_digest(expected, cp.signature):
        report.problems.append(
            f"Checkpoint {cp.id} ({label(cp.chain)} #{cp.seq}) is not signed by the audit "
            "key: it was changed or forged."
        )
        return None
    report.checkpoints_checked += 1
    return Anchor(cp.chain, cp.seq, cp.hash, what, trusted=True)


def file_anchors(data: Any, key: bytes | None, report: Report) -> list[Anchor]:
    """Anchors from an exported checkpoint file (``checkpoint_file_text``)."""
    from patientportal_cli.errors import InvalidInput

    try:
        entries = data["checkpoints"]
        anchors = []
        for e in entries:
            cp = AuditCheckpoint(
                id=e["id"],
                chain=str(e["chain"]),
                seq=int(e["seq"]),
                hash=str(e["hash"]),
                created_at=datetime.fromisoformat(e["created_at"]),
                created_by=str(e["created_by"]),
                key_id=str(e["key_id"]),
                signature=str(e["signature"]),
            )
            anchor = _checkpoint_anchor(cp, key, report)
            if anchor is not None:
                anchor.what = f"the checkpoint file's {label(cp.chain)} #{cp.seq}"
                anchor.trusted = True  # the file is kept where the database's writers cannot
                anchors.append(anchor)
        return anchors
    except (KeyError, TypeError, ValueError):
        raise InvalidInput(
            "The checkpoint file is not a patientportal audit checkpoint file."
        ) from None


# --- verifying ---------------------------------------------------------------------------


def _raw(session: Session) -> tuple[Any, bool]:
    connection = session.connection()
    return connection.connection.driver_connection, connection.dialect.name == "postgresql"


def _select(postgresql: bool) -> tuple[str, str]:
    """The walk's query and the one-row query of its careful path.

    The walk has the database join each version-2 event's texts the way ``content_hash``
    and ``_digest_v2`` do (SQL's length() counts characters, like Python's len()), so
    Python receives six short values per event and only hashes and compares. An event
    the fast path does not confirm (erased, version 1, or a text the two languages
    count differently) is checked again from its raw fields before anything is reported.
    """
    at = "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')" if postgresql else "at"
    mark = "%s" if postgresql else "?"
    fast = (
        "SELECT seq, CASE WHEN version = 2 AND salt IS NOT NULL THEN "
        "salt || '|' || length(target) || ':' || target || '|' || details END, "
        f"'2|' || length(chain) || ':' || chain || '|' || seq || '|' || {at} || '|' || "
        "length(actor) || ':' || actor || '|' || length(action) || ':' || action || '|', "
        f"content_hash, prev_hash, hash FROM audit_event WHERE chain = {mark} AND seq > {mark} "
        f"AND seq <= {mark} ORDER BY seq LIMIT {mark}"
    )
    one = (
        f"SELECT id, seq, version, {at}, actor, action, salt, target, details, content_hash, "
        f"prev_hash, hash FROM audit_event WHERE chain = {mark} AND seq = {mark}"
    )
    return fast, one


def _v1_hash(at: str, actor: str, clinic: str | None, action: str, target: str, details: str,
             prev: str) -> str:  # fmt: skip
    iso = datetime.fromisoformat(at).replace(tzinfo=UTC).isoformat()
    payload = json.dumps(
        [iso, actor, clinic, action, target, details, prev],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _when(at: str) -> str:
    return at[:19]


def _careful(cursor: Any, one: str, chain: str, seq: int, prev: str) -> tuple[bool, Any]:
    """Check one event from its raw fields: (matches, its row)."""
    cursor.execute(one, (chain, seq))
    row = cursor.fetchone()
    if row is None:
        return False, None
    _id, seq, version, at, actor, action, salt, target, details, stored, back, hash_ = row
    if version == 2:
        if salt is not None:
            content = content_hash(salt, target, details)
            ok = content == stored
        else:  # erased: trust the stored content hash
            content = stored
            ok = stored is not None and target == ERASED_TARGET and details == ERASED_DETAILS
        ok = (
            ok
            and back == prev
            and hash_ == _digest_v2(chain, seq, at, actor, action, content or "", prev)
        )
        return ok, row
    if version == 1:  # its link is checked in the global version-1 order
        return hash_ == _v1_hash(at, actor, chain or None, action, target, details, back), row
    return False, row


def _id_at(cursor: Any, one: str, chain: str, seq: int) -> int | None:
    cursor.execute(one, (chain, seq))
    row = cursor.fetchone()
    return None if row is None else int(row[0])


def _walk(
    cursor: Any,
    sql: tuple[str, str],
    result: ChainResult,
    prev: str,
    top: int,
    anchors: dict[int, list[Anchor]],
) -> None:
    """Check the chain's events after ``result.start_seq`` up to ``top`` in seq order."""
    fast, one = sql
    sha256 = hashlib.sha256
    c = result.chain
    name = label(c)
    expected = result.start_seq + 1
    checked = 0
    after = result.start_seq
    problem: str | None = None
    while problem is None:
        cursor.execute(fast, (c, after, top, BATCH))
        rows = cursor.fetchall()
        if not rows:
            break
        for seq, joined, prefix, stored, back, hash_ in rows:
            if seq != expected:
                before = _id_at(cursor, one, c, expected - 1) if expected > 1 else None
                id_ = _id_at(cursor, one, c, seq)
                between = f"between ids {before} and {id_}" if before else f"before id {id_}"
                which = f"#{expected}" if seq == expected + 1 else f"#{expected}-#{seq - 1}"
                verb = "is" if seq == expected + 1 else "are"
                noun = "Event" if seq == expected + 1 else "Events"
                problem = f"{noun} {name} {which} {verb} missing ({between})."
                break
            if joined is None or back != prev:
                ok = False
            else:
                content = sha256(joined.encode()).hexdigest()
                ok = content == stored and hash_ == (
                    sha256(f"{prefix}{content}|{prev}".encode()).hexdigest()
                )
            if not ok:
                ok, row = _careful(cursor, one, c, seq, prev)
                if not ok and row is None:  # deleted while this ran
                    problem = f"Event {name} #{seq} is missing."
                    break
                if not ok:
                    id_, action, at = row[0], row[5], row[3]
                    problem = (
                        f"Event {name} #{seq} (id {id_}, {action} at {_when(at)}) does not "
                        f"match its hash: it or the event before it was changed; {checked} "
                        "events before it are intact."
                    )
                    break
            if seq in anchors:
                for anchor in anchors.pop(seq):
                    if problem is None and anchor.hash != hash_:
                        problem = (
                            f"Event {name} #{seq} (id {_id_at(cursor, one, c, seq)}) is not the "
                            f"event {anchor.what} covers: the chain was rewritten."
                        )
            prev = hash_
            expected += 1
            checked += 1
            if problem is not None:
                break
        after = rows[-1][0]
        if len(rows) < BATCH:
            break
    result.checked += checked
    result.end_seq = expected - 1
    result.end_hash = prev
    result.problem = problem


def _legacy(session: Session, report: Report) -> None:
    """Version-1 events (before schema 0005): one global chain in id order. They all
    come before any version-2 event, so this reads them and stops at the first
    version-2 event."""
    raw, postgresql = _raw(session)
    at = "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')" if postgresql else "at"
    mark = "%s" if postgresql else "?"
    sql = (
        f"SELECT id, version, {at}, actor, clinic, action, target, details, prev_hash, hash "
        f"FROM audit_event WHERE id > {mark} ORDER BY id LIMIT {mark}"
    )
    prev = GENESIS
    after = 0
    batch = 100  # most databases have none: the first batch ends at a version-2 event
    cursor = raw.cursor()
    try:
        while True:
            cursor.execute(sql, (after, batch))
            rows = cursor.fetchall()
            for id_, version, at_, actor, clinic, action, target, details, back, hash_ in rows:
                if version != 1:
                    return
                if (
                    back != prev
                    or _v1_hash(at_, actor, clinic, action, target, details, back) != hash_
                ):
                    report.problems.append(
                        f"The events before schema 0005 are broken at id {id_} ({action} at "
                        f"{_when(at_)}): it does not follow the event before it."
                    )
                    return
                prev = hash_
                report.legacy_checked += 1
            if len(rows) < batch:
                return
            after = rows[-1][0]
            batch = min(batch * 10, BATCH)
    finally:
        cursor.close()


def all_chains(session: Session) -> list[str]:
    """Every chain that has a head, a checkpoint, or a clinic, and the no-clinic chain."""
    from patientportal_cli.db.models import AuditHead, Clinic

    found = {NO_CLINIC}
    found.update(session.exec(select(AuditHead.chain)))
    found.update(session.exec(select(AuditCheckpoint.chain).distinct()))
    found.update(session.exec(select(Clinic.code)))
    return sorted(found)


def verify(
    session: Session,
    *,
    chains: Iterable[str],
    full: bool = False,
    key: bytes | None = None,
    remembered: dict[str, tuple[int, str]] | None = None,
    extra: Iterable[Anchor] = (),
    report: Report | None = None,
) -> Report:
    """Check ``chains``: every event's hash and link, no gaps, each chain ending at its
    head, and every anchor (checkpoints in the database, ``extra`` ones from an exported
    file, ``remembered`` heads this machine verified) still in the chain with its hash.

    Without ``full`` each chain resumes from its newest trusted anchor (a checkpoint
    signed with ``key``, or a checkpoint file) after checking that the anchored event
    still has that hash; ``full`` checks every event and every checkpoint. Remembered
    heads are only checked, never resumed from. Problems are collected in the report
    (at most one per chain).
    """
    from patientportal_cli.db.models import AuditHead

    report = report or Report()
    report.has_key = key is not None
    chains = list(dict.fromkeys(chains))
    per_chain: dict[str, list[Anchor]] = {c: [] for c in chains}
    checkpoints = select(AuditCheckpoint).where(col(AuditCheckpoint.chain).in_(chains))
    if not full:  # each chain's newest checkpoint
        checkpoints = checkpoints.where(col(AuditCheckpoint.id).in_(_newest(session, chains)))
    for cp in session.exec(checkpoints.order_by(col(AuditCheckpoint.id))):
        anchor = _checkpoint_anchor(cp, key, report)
        if anchor is not None:
            per_chain[cp.chain].append(anchor)
    for anchor in extra:
        if anchor.chain in per_chain:
            per_chain[anchor.chain].append(anchor)
    for c, (seq, hash_) in (remembered or {}).items():
        if c in per_chain:
            per_chain[c].append(
                Anchor(c, seq, hash_, "the head verified on this machine", trusted=False)
            )
    heads = {
        h.chain: h for h in session.exec(select(AuditHead).where(col(AuditHead.chain).in_(chains)))
    }
    raw, postgresql = _raw(session)
    sql = _select(postgresql)
    point = (
        "SELECT hash FROM audit_event WHERE chain = %s AND seq = %s"
        if postgresql
        else "SELECT hash FROM audit_event WHERE chain = ? AND seq = ?"
    )
    legacy = full
    cursor = raw.cursor()
    try:
        for c in chains:
            result = ChainResult(c)
            report.chains.append(result)
            anchors = per_chain[c]
            head = heads.get(c)
            top = head.seq if head is not None else 2**62
            start: Anchor | None = None
            if not full:
                usable = [a for a in anchors if a.trusted and a.seq <= top]
                start = max(usable, key=lambda a: a.seq, default=None)
            below: dict[int, list[Anchor]] = {}
            for a in sorted(anchors, key=lambda a: not a.trusted):  # signed ones named first
                below.setdefault(a.seq, []).append(a)
            prev = GENESIS
            if start is not None:
                # the anchors at or below the resume point: still there, same hash?
                for seq in sorted(s for s in below if s <= start.seq):
                    cursor.execute(point, (c, seq))
                    row = cursor.fetchone()
                    for a in below.pop(seq):
                        if result.problem is None and (row is None or row[0] != a.hash):
                            state = "is missing" if row is None else "has changed"
                            result.problem = (
                                f"Event {label(c)} #{a.seq} {state}: {a.what} covers it."
                            )
                    if result.problem is not None:
                        break
                if result.problem is None:
                    result.start_seq, result.resumed_from = start.seq, start.what
                    prev = start.hash
            else:
                legacy = True
            if result.problem is None:
                _walk(cursor, sql, result, prev, top, below)
            if result.problem is None and below:
                seq = min(below)
                result.problem = (
                    f"Event {label(c)} #{result.end_seq + 1} and later are missing: the chain "
                    f"ends at #{result.end_seq}, but {below[seq][0].what} covers #{seq}."
                )
            if result.problem is None and head is not None and head.seq != result.end_seq:
                result.problem = (
                    f"Event {label(c)} #{result.end_seq + 1} and later are missing: the chain "
                    f"ends at #{result.end_seq}, but its head says #{head.seq}."
                )
            elif result.problem is None and head is not None and head.hash != result.end_hash:
                result.problem = (
                    f"Event {label(c)} #{head.seq} is not the chain's recorded head: "
                    "the chain was rewritten."
                )
            elif result.problem is None and head is None and result.end_seq:
                result.problem = (
                    f"The {label(c)} chain has events but no head: it was tampered with."
                )
            if result.problem is not None:
                report.problems.append(result.problem)
    finally:
        cursor.close()
    if legacy:
        _legacy(session, report)
    return report


def _newest(session: Session, chains: list[str]) -> list[int]:
    """The id of each chain's newest checkpoint."""
    from sqlalchemy import func

    rows = session.exec(
        select(func.max(AuditCheckpoint.id))
        .where(col(AuditCheckpoint.chain).in_(chains))
        .group_by(col(AuditCheckpoint.chain))
    )
    return [int(i) for i in rows if i is not None]


# --- checkpoints ---------------------------------------------------------------------------


def checkpoint(
    session: Session,
    *,
    actor: str,
    chains: Iterable[str],
    key: bytes,
    remembered: dict[str, tuple[int, str]] | None = None,
) -> tuple[Report, list[AuditCheckpoint]]:
    """Verify the chains (incrementally), then store a signed checkpoint of each one
    that has events. Refuses (DomainError, nothing stored) when a chain is broken: a
    checkpoint must never bless a tampered chain."""
    report = verify(session, chains=chains, key=key, remembered=remembered)
    if report.problems:
        raise DomainError(
            "No checkpoint written: the audit log is broken. " + " ".join(report.problems)
        )
    now = utcnow()
    stamp = at_text(now)
    kid = key_id(key)
    made = []
    for result in report.chains:
        if result.end_seq == 0:
            continue
        cp = AuditCheckpoint(
            chain=result.chain,
            seq=result.end_seq,
            hash=result.end_hash,
            created_at=now,
            created_by=actor,
            key_id=kid,
            signature=sign(key, result.chain, result.end_seq, result.end_hash, stamp, actor),
        )
        session.add(cp)
        made.append(cp)
    session.flush()
    return report, made


def checkpoint_file_text(checkpoints: list[AuditCheckpoint]) -> str:
    """The exported checkpoint file: JSON, one entry per chain."""
    return (
        json.dumps(
            {
                "format": "patientportal-audit-checkpoints",
                "version": 1,
                "checkpoints": [
                    {
                        "id": cp.id,
                        "chain": cp.chain,
                        "seq": cp.seq,
                        "hash": cp.hash,
                        "created_at": cp.created_at.isoformat(),
                        "created_by": cp.created_by,
                        "key_id": cp.key_id,
                        "signature": cp.signature,
                    }
                    for cp in checkpoints
                ],
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
