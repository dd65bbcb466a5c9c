"""Retention of the audit log (``audit prune``, ``audit retention``; D42).

Events older than the retention period are removed from the chains the actor may prune
(an admin: their clinic's chain; staff who may create clinics, with ``--all``: every
chain, the no-clinic chain included). What stays must still verify and still show
tampering, so a prune run:

1. verifies the chains first (a prune never blesses a broken chain: refused, nothing
   removed);
2. per chain, removes the events up to the newest one older than the cutoff (seq 1..N,
   never a gap) and stores a *prune checkpoint* at N: (chain, N, hash of event N),
   signed with the audit key over its own prefix (``hashing.sign_prune``). ``verify``
   starts the chain after it: the first remaining event must link to that hash;
3. writes one ``audit.prune`` event into each pruned chain (no personal data: the
   cutoff, the last removed seq and the count), all in one transaction.

Pruning needs the audit key: an unsigned floor would let anyone who can write the table
delete a chain's oldest events and call it retention, so without the key the run is
refused. The policy is the config key ``audit-retention`` (default 2y, as sundhed.dk's
Min Log keeps the log for 2 years); ``--older-than`` may be longer, never shorter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, text
from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import AuditCheckpoint, AuditEvent
from patientportal_cli.errors import DomainError, InvalidInput, Refused
from patientportal_cli.services import audit
from patientportal_cli.services.audit.hashing import PRUNE, at_text, key_id, sign_prune
from patientportal_cli.vocabulary import Action

POLICY_KEY = "audit-retention"
DEFAULT_POLICY = "2y"
_DURATION = re.compile(r"^\s*(\d{1,5})\s*([dwmy])\s*$", re.IGNORECASE)
_UNITS = {"d": "days", "w": "weeks", "m": "months", "y": "years"}


def check_duration(value: str, *, what: str = "--older-than") -> str:
    """``value`` normalised ("2y", "730d", "8w", "24m"), or InvalidInput."""
    match = _DURATION.match(value)
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(
            f"{what} {value!r}: use a number and a unit, e.g. 2y, 24m, 104w or 730d."
        )
    return f"{int(match.group(1))}{match.group(2).lower()}"


def cutoff_of(duration: str, now: datetime) -> datetime:
    """The moment ``duration`` before ``now`` (months and years by the calendar: 2y
    before 2026-12-02 is 2024-12-02; the 29th of February becomes the 28th)."""
    amount, unit = int(duration[:-1]), duration[-1]
    if unit == "d":
        return now - timedelta(days=amount)
    if unit == "w":
        return now - timedelta(weeks=amount)
    months = amount * (12 if unit == "y" else 1)
    year, month = divmod(now.year * 12 + now.month - 1 - months, 12)
    day = now.day
    while True:
        try:
            return now.replace(year=year, month=month + 1, day=day)
        except ValueError:
            day -= 1


def describe(duration: str) -> str:
    amount, unit = int(duration[:-1]), _UNITS[duration[-1]]
    return f"{amount} {unit[:-1] if amount == 1 else unit}"


@dataclass
class ChainPrune:
    chain: str
    removed: int  # events removed (or that would be)
    through_seq: int  # the last removed event's seq
    oldest: datetime | None  # the oldest removed event's time
    newest: datetime | None  # the newest removed event's time


@dataclass
class PruneResult:
    cutoff: datetime
    older_than: str
    chains: list[ChainPrune]
    dry_run: bool
    heads: dict[str, tuple[int, str]]  # verified before the prune (for audit-verified.json)

    @property
    def removed(self) -> int:
        return sum(c.removed for c in self.chains)


def prune(
    session: Session,
    *,
    actor: str,
    chains: list[str],
    older_than: str,
    policy: str,
    key: bytes | None,
    remembered: dict[str, tuple[int, str]] | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Remove the events of ``chains`` older than ``older_than`` (see the module)."""
    older_than = check_duration(older_than)
    policy = check_duration(policy, what=POLICY_KEY)
    now = utcnow()
    cutoff = cutoff_of(older_than, now)
    if cutoff > cutoff_of(policy, now):
        raise Refused(
            f"--older-than {older_than} is shorter than the retention policy "
            f"({describe(policy)}, config key {POLICY_KEY}): events are kept that long."
        )
    if key is None and not dry_run:
        raise Refused(
            "Pruning needs the audit key, to sign the checkpoint that anchors what remains: "
            "set PATIENTPORTAL_AUDIT_KEY or run `patientportal config set audit-key`. "
            "Nothing was removed."
        )
    plans = [p for p in (_plan(session, c, cutoff) for c in chains) if p.removed]
    heads: dict[str, tuple[int, str]] = {}
    if dry_run or not plans:
        session.rollback()
        return PruneResult(cutoff, older_than, plans, dry_run, heads)
    assert key is not None
    report = audit.verify(session, chains=[p.chain for p in plans], key=key, remembered=remembered)
    if report.problems:
        raise DomainError(
            "Nothing was pruned: the audit log is broken. " + " ".join(report.problems)
        )
    for p in plans:
        _prune_chain(session, p, actor=actor, key=key, cutoff=cutoff, now=now)
        audit.record(
            session,
            actor=actor,
            clinic=p.chain or None,
            action=Action.AUDIT_PRUNE,
            details={
                "older_than": older_than,
                "cutoff": at_text(cutoff)[:19],
                "through_seq": p.through_seq,
                "removed": p.removed,
            },
        )
    session.commit()
    return PruneResult(cutoff, older_than, plans, dry_run, report.heads)


def _plan(session: Session, chain: str, cutoff: datetime) -> ChainPrune:
    """What pruning ``chain`` at ``cutoff`` removes: the remaining events before its
    first event at or after the cutoff (seq order: never a gap, and never an event
    younger than the cutoff, even if a clock once went backwards)."""
    young = session.exec(
        select(func.min(AuditEvent.seq)).where(
            AuditEvent.chain == chain, col(AuditEvent.at) >= cutoff
        )
    ).one()
    query = select(
        func.count(), func.min(AuditEvent.at), func.max(AuditEvent.at), func.max(AuditEvent.seq)
    ).where(AuditEvent.chain == chain)
    if young is not None:
        query = query.where(col(AuditEvent.seq) < young)
    count, oldest, newest, through = session.exec(query).one()
    if not count:
        return ChainPrune(chain, 0, 0, None, None)
    return ChainPrune(chain, int(count), int(through), oldest, newest)


def _prune_chain(
    session: Session,
    p: ChainPrune,
    *,
    actor: str,
    key: bytes,
    cutoff: datetime,
    now: datetime,
) -> None:
    """Remove the chain's events up to ``p.through_seq`` and anchor the rest with a
    signed prune checkpoint at the last removed event, under the chain's head lock."""
    audit.chains._lock_head(session, p.chain)  # no writer of this chain in between
    last = session.exec(
        select(AuditEvent.hash).where(AuditEvent.chain == p.chain, AuditEvent.seq == p.through_seq)
    ).one()
    session.execute(
        text("DELETE FROM audit_event WHERE chain = :c AND seq <= :s"),
        {"c": p.chain, "s": p.through_seq},
    )
    stamp = at_text(now)
    session.add(
        AuditCheckpoint(
            chain=p.chain,
            seq=p.through_seq,
            hash=last,
            created_at=now,
            created_by=actor,
            key_id=key_id(key),
            signature=sign_prune(key, p.chain, p.through_seq, last, stamp, actor, at_text(cutoff)),
            kind=PRUNE,
            cutoff=cutoff,
            removed=p.removed,
        )
    )
    session.flush()


@dataclass
class ChainRetention:
    chain: str
    events: int  # events in the chain now
    oldest: datetime | None  # the oldest remaining event
    last_prune: AuditCheckpoint | None


def retention(session: Session, *, chains: list[str]) -> list[ChainRetention]:
    """Each chain's events, oldest remaining event and last prune run."""
    found = []
    for c in chains:
        count, oldest = session.exec(
            select(func.count(), func.min(AuditEvent.at)).where(AuditEvent.chain == c)
        ).one()
        last = session.exec(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.chain == c, AuditCheckpoint.kind == PRUNE)
            .order_by(col(AuditCheckpoint.id).desc())
            .limit(1)
        ).first()
        found.append(ChainRetention(c, int(count), oldest, last))
    return found
