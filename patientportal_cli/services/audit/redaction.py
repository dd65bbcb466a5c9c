"""Erasure (GDPR art. 17): an event's personal data goes, its place in the chain stays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

ERASED_TARGET = "[erased]"
ERASED_DETAILS = '{"erased": true}'


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
