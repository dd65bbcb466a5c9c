"""Verifying the chains: every event's hash and link, no gaps, each chain ending at its
head, and every anchor (a signed checkpoint, an exported checkpoint file, a head this
machine verified before) still in its chain with its hash."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlmodel import Session, col, select

from patientportal_cli.db.models import AuditCheckpoint, AuditHead
from patientportal_cli.services.audit.chains import GENESIS, label
from patientportal_cli.services.audit.hashing import (
    PRUNE,
    at_text,
    content_hash,
    digest_v1_fields,
    digest_v2,
    key_id,
    sign,
    sign_prune,
)
from patientportal_cli.services.audit.redaction import ERASED_DETAILS, ERASED_TARGET

BATCH = 20_000  # events per query of the walk


@dataclass
class Anchor:
    """A (chain, seq, hash) the chain must still contain."""

    chain: str
    seq: int
    hash: str
    what: str  # "checkpoint 3 of 2026-12-02 10:00", "the checkpoint file", ...
    trusted: bool  # may verify resume from it (signed with our key, or a checkpoint file)
    floor: bool = False  # a prune checkpoint: the events up to it were removed


@dataclass
class ChainResult:
    chain: str
    start_seq: int = 0  # resumed after this seq (0: from the start)
    resumed_from: str = ""
    checked: int = 0  # events hashed in this run
    end_seq: int = 0
    end_hash: str = GENESIS
    problem: str | None = None
    pruned_to: int = 0  # the chain starts after this seq: older events were pruned


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
    floor = cp.kind == PRUNE
    what = f"{'prune ' if floor else ''}checkpoint {cp.id} of {when} UTC"
    if key is None or cp.key_id != key_id(key):
        report.checkpoints_unchecked += 1
        return Anchor(cp.chain, cp.seq, cp.hash, what, trusted=False, floor=floor)
    if floor:
        cutoff = at_text(cp.cutoff) if cp.cutoff is not None else ""
        expected = sign_prune(
            key, cp.chain, cp.seq, cp.hash, at_text(cp.created_at), cp.created_by, cutoff
        )
    else:
        expected = sign(key, cp.chain, cp.seq, cp.hash, at_text(cp.created_at), cp.created_by)
    if not hmac.compare_digest(expected, cp.signature):
        report.problems.append(
            f"Checkpoint {cp.id} ({label(cp.chain)} #{cp.seq}) is not signed by the audit "
            "key: it was changed or forged."
        )
        return None
    report.checkpoints_checked += 1
    return Anchor(cp.chain, cp.seq, cp.hash, what, trusted=True, floor=floor)


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
    report = report or Report()
    report.has_key = key is not None
    chains = list(dict.fromkeys(chains))
    anchors = _anchors(session, chains, full, key, remembered or {}, extra, report)
    heads = _heads(session, chains)
    raw, postgresql = _raw(session)
    sql = _sql(postgresql)
    legacy = full
    cursor = raw.cursor()
    try:
        for c in chains:
            result = ChainResult(c)
            report.chains.append(result)
            if not _verify_chain(cursor, sql, result, anchors[c], heads.get(c), full=full):
                legacy = True  # checked from the start: the version-1 events too
            if result.problem is not None:
                report.problems.append(result.problem)
    finally:
        cursor.close()
    if legacy:
        _legacy(session, report, pruned=any(c.pruned_to for c in report.chains))
    return report


def _anchors(
    session: Session,
    chains: list[str],
    full: bool,
    key: bytes | None,
    remembered: dict[str, tuple[int, str]],
    extra: Iterable[Anchor],
    report: Report,
) -> dict[str, list[Anchor]]:
    """Each chain's anchors: its checkpoints in the database (without ``full`` only the
    newest), the ``extra`` ones, and the head this machine remembers."""
    per_chain: dict[str, list[Anchor]] = {c: [] for c in chains}
    checkpoints = select(AuditCheckpoint).where(col(AuditCheckpoint.chain).in_(chains))
    if not full:  # each chain's newest checkpoint, and its newest prune checkpoint (floor)
        newest = _newest(session, chains) + _newest(session, chains, kind=PRUNE)
        checkpoints = checkpoints.where(col(AuditCheckpoint.id).in_(newest))
    for cp in session.exec(checkpoints.order_by(col(AuditCheckpoint.id))):
        anchor = _checkpoint_anchor(cp, key, report)
        if anchor is not None:
            per_chain[cp.chain].append(anchor)
    for anchor in extra:
        if anchor.chain in per_chain:
            per_chain[anchor.chain].append(anchor)
    for c, (seq, hash_) in remembered.items():
        if c in per_chain:
            per_chain[c].append(
                Anchor(c, seq, hash_, "the head verified on this machine", trusted=False)
            )
    return per_chain


def _newest(session: Session, chains: list[str], kind: str | None = None) -> list[int]:
    """The id of each chain's newest checkpoint (of ``kind``, or any)."""
    from sqlalchemy import func

    query = select(func.max(AuditCheckpoint.id)).where(col(AuditCheckpoint.chain).in_(chains))
    if kind is not None:
        query = query.where(AuditCheckpoint.kind == kind)
    rows = session.exec(query.group_by(col(AuditCheckpoint.chain)))
    return [int(i) for i in rows if i is not None]


def _heads(session: Session, chains: list[str]) -> dict[str, AuditHead]:
    query = select(AuditHead).where(col(AuditHead.chain).in_(chains))
    return {h.chain: h for h in session.exec(query)}


def _verify_chain(
    cursor: Any,
    sql: _Sql,
    result: ChainResult,
    anchors: list[Anchor],
    head: AuditHead | None,
    *,
    full: bool,
) -> bool:
    """Check one chain into ``result``: from its resume point (none with ``full``), its
    anchors below that point, its events, then its anchors above and its head. True
    when it resumed from an anchor or started after pruned events."""
    top = head.seq if head is not None else 2**62
    floor, anchors, result.problem = _floor(anchors)
    if result.problem is not None:
        return False
    start = None if full else _resume_point(anchors, top)
    below = _by_seq(anchors)
    prev = GENESIS
    if floor is not None and start is None:  # the first remaining event links to it
        result.start_seq, result.resumed_from = floor.seq, floor.what
        prev = floor.hash
    if floor is not None:
        result.pruned_to = floor.seq
    if start is not None:
        result.problem = _check_passed_anchors(cursor, sql, result.chain, start, below)
        if result.problem is None:
            result.start_seq, result.resumed_from = start.seq, start.what
            prev = start.hash
    if result.problem is None:
        _walk(cursor, sql, result, prev, top, below)
    if result.problem is None:
        result.problem = _end_problem(result, below, head)
    return start is not None or floor is not None


def _floor(anchors: list[Anchor]) -> tuple[Anchor | None, list[Anchor], str | None]:
    """The chain's floor (its newest prune checkpoint: the events up to it were removed
    by ``audit prune``), the anchors above it, and a problem: an anchor on the floor's
    own event with another hash. Anchors below the floor covered removed events."""
    floors = [a for a in anchors if a.floor]
    if not floors:
        return None, anchors, None
    floor = max(floors, key=lambda a: a.seq)
    for a in anchors:
        if a.seq == floor.seq and a.hash != floor.hash:
            return (
                floor,
                [],
                f"Event {label(a.chain)} #{a.seq} has changed: {a.what} covers it, "
                f"and {floor.what} says otherwise.",
            )
    return floor, [a for a in anchors if a.seq > floor.seq], None


def _resume_point(anchors: list[Anchor], top: int) -> Anchor | None:
    """The newest trusted anchor at or below the head."""
    usable = [a for a in anchors if a.trusted and a.seq <= top]
    return max(usable, key=lambda a: a.seq, default=None)


def _by_seq(anchors: list[Anchor]) -> dict[int, list[Anchor]]:
    """The anchors by the seq they cover, signed ones first (named first in a problem)."""
    below: dict[int, list[Anchor]] = {}
    for a in sorted(anchors, key=lambda a: not a.trusted):
        below.setdefault(a.seq, []).append(a)
    return below


def _check_passed_anchors(
    cursor: Any, sql: _Sql, chain: str, start: Anchor, below: dict[int, list[Anchor]]
) -> str | None:
    """The anchors at or below the resume point (taken out of ``below``): is each
    anchored event still there, with the same hash? The problem, if any."""
    for seq in sorted(s for s in below if s <= start.seq):
        cursor.execute(sql.point, (chain, seq))
        row = cursor.fetchone()
        for a in below.pop(seq):
            if row is None or row[0] != a.hash:
                state = "is missing" if row is None else "has changed"
                return f"Event {label(chain)} #{a.seq} {state}: {a.what} covers it."
    return None


def _end_problem(
    result: ChainResult, below: dict[int, list[Anchor]], head: AuditHead | None
) -> str | None:
    """After the walk: an anchor it never reached, or a head the chain does not end at."""
    name, end = label(result.chain), result.end_seq
    if below:
        seq = min(below)
        return (
            f"Event {name} #{end + 1} and later are missing: the chain ends at #{end}, but "
            f"{below[seq][0].what} covers #{seq}."
        )
    if head is None:
        if end:
            return f"The {name} chain has events but no head: it was tampered with."
        return None
    if head.seq != end:
        return (
            f"Event {name} #{end + 1} and later are missing: the chain ends at #{end}, but "
            f"its head says #{head.seq}."
        )
    if head.hash != result.end_hash:
        return (
            f"Event {name} #{head.seq} is not the chain's recorded head: the chain was rewritten."
        )
    return None


# --- the walk over a chain's events ------------------------------------------------------


class _Sql(NamedTuple):
    """A verify run's queries (DB-API, on the driver's cursor)."""

    fast: str  # the walk: a batch of events, each as the texts it hashes
    one: str  # one event's raw fields, for the careful path and messages
    point: str  # one event's hash, for an anchor below the resume point


def _raw(session: Session) -> tuple[Any, bool]:
    connection = session.connection()
    return connection.connection.driver_connection, connection.dialect.name == "postgresql"


def _sql(postgresql: bool) -> _Sql:
    """The walk's query, the one-row query of its careful path, and the hash of one event.

    The walk has the database join each version-2 event's texts the way ``content_hash``
    and ``digest_v2`` do (SQL's length() counts characters, like Python's len()), so
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
    point = f"SELECT hash FROM audit_event WHERE chain = {mark} AND seq = {mark}"
    return _Sql(fast, one, point)


def _walk(
    cursor: Any,
    sql: _Sql,
    result: ChainResult,
    prev: str,
    top: int,
    anchors: dict[int, list[Anchor]],
) -> None:
    """Check the chain's events after ``result.start_seq`` up to ``top`` in seq order:
    each in turn is the next seq, matches its hash (the fast path, else ``_recheck``)
    and any anchor on it; stops at the first problem."""
    sha256 = hashlib.sha256
    c = result.chain
    first = expected = result.start_seq + 1
    problem: str | None = None
    for rows in _batches(cursor, sql.fast, c, result.start_seq, top):
        for seq, joined, prefix, stored, back, hash_ in rows:
            if seq != expected:
                problem = _gap(cursor, sql, c, expected, seq)
                break
            if joined is None or back != prev:
                ok = False
            else:
                content = sha256(joined.encode()).hexdigest()
                ok = content == stored and hash_ == (
                    sha256(f"{prefix}{content}|{prev}".encode()).hexdigest()
                )
            if not ok:
                problem = _recheck(cursor, sql, c, seq, prev, intact=expected - first)
                if problem is not None:
                    break
            if seq in anchors:
                problem = _anchor_problem(cursor, sql, c, seq, hash_, anchors.pop(seq))
            prev = hash_
            expected += 1
            if problem is not None:
                break
        if problem is not None:
            break
    result.checked += expected - first
    result.end_seq = expected - 1
    result.end_hash = prev
    result.problem = problem


def _batches(cursor: Any, fast: str, chain: str, after: int, top: int) -> Iterator[list[Any]]:
    """The walk's rows, ``BATCH`` at a time (fetched whole: the walk queries between)."""
    while True:
        cursor.execute(fast, (chain, after, top, BATCH))
        rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        if len(rows) < BATCH:
            return
        after = rows[-1][0]


def _gap(cursor: Any, sql: _Sql, chain: str, expected: int, seq: int) -> str:
    """The walk expected ``expected`` and found ``seq``: the events between are missing."""
    before = _id_at(cursor, sql, chain, expected - 1) if expected > 1 else None
    id_ = _id_at(cursor, sql, chain, seq)
    between = f"between ids {before} and {id_}" if before else f"before id {id_}"
    which = f"#{expected}" if seq == expected + 1 else f"#{expected}-#{seq - 1}"
    verb = "is" if seq == expected + 1 else "are"
    noun = "Event" if seq == expected + 1 else "Events"
    return f"{noun} {label(chain)} {which} {verb} missing ({between})."


def _recheck(cursor: Any, sql: _Sql, chain: str, seq: int, prev: str, *, intact: int) -> str | None:
    """An event the fast path did not confirm, checked from its raw fields (``_careful``):
    the problem, or None when it is fine."""
    ok, row = _careful(cursor, sql.one, chain, seq, prev)
    if ok:
        return None
    if row is None:  # deleted while this ran
        return f"Event {label(chain)} #{seq} is missing."
    id_, action, at = row[0], row[5], row[3]
    return (
        f"Event {label(chain)} #{seq} (id {id_}, {action} at {_when(at)}) does not "
        f"match its hash: it or the event before it was changed; {intact} "
        "events before it are intact."
    )


def _anchor_problem(
    cursor: Any, sql: _Sql, chain: str, seq: int, hash_: str, anchors: list[Anchor]
) -> str | None:
    """An anchor on this event whose hash is not the event's: the chain was rewritten."""
    for anchor in anchors:
        if anchor.hash != hash_:
            return (
                f"Event {label(chain)} #{seq} (id {_id_at(cursor, sql, chain, seq)}) is not "
                f"the event {anchor.what} covers: the chain was rewritten."
            )
    return None


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
            and hash_ == digest_v2(chain, seq, at, actor, action, content or "", prev)
        )
        return ok, row
    if version == 1:  # its link is checked in the global version-1 order
        return hash_ == digest_v1_fields(
            at, actor, chain or None, action, target, details, back
        ), row
    return False, row


def _id_at(cursor: Any, sql: _Sql, chain: str, seq: int) -> int | None:
    cursor.execute(sql.one, (chain, seq))
    row = cursor.fetchone()
    return None if row is None else int(row[0])


def _legacy(session: Session, report: Report, *, pruned: bool = False) -> None:
    """Version-1 events (before schema 0005): one global chain in id order. They all
    come before any version-2 event, so this reads them and stops at the first
    version-2 event. ``pruned``: old events were removed (``audit prune``), so the first
    remaining version-1 event links to one that is gone."""
    raw, postgresql = _raw(session)
    at = "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')" if postgresql else "at"
    mark = "%s" if postgresql else "?"
    sql = (
        f"SELECT id, version, {at}, actor, clinic, action, target, details, prev_hash, hash "
        f"FROM audit_event WHERE id > {mark} ORDER BY id LIMIT {mark}"
    )
    prev: str | None = None if pruned else GENESIS
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
                if (prev is not None and back != prev) or digest_v1_fields(
                    at_, actor, clinic, action, target, details, back
                ) != hash_:
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
