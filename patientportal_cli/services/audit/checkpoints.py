"""Checkpoints: after a clean ``verify``, each chain's (seq, hash) signed with the audit
key and stored, so a later ``verify`` can tell that newest events were deleted or the
whole chain recomputed; and the file they are exported to."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlmodel import Session

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import AuditCheckpoint
from patientportal_cli.errors import DomainError
from patientportal_cli.services.audit.hashing import at_text, key_id, sign
from patientportal_cli.services.audit.verification import Report, verify


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
