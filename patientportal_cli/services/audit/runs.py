"""Verify runs: each `audit verify` leaves one ``audit_verify_run`` row for each clinic
chain it checked, saying when, by whom, how many events it hashed and the result, so
`clinic overview` (on any machine) can say when the clinic's log was last verified and
whether it was intact.

The rows are kept outside the hash chains on purpose: an event appended to the chain
would change what the next run checks, and appending to a chain whose head was
tampered with is exactly what cannot be done safely. So a row is a record, not a proof:
whoever can write the database can write a row too; the proof is running `audit verify`.
A failed run is recorded as well (``result`` "failed", with its first problem). The
no-clinic chain gets no row: it is checked with every clinic and belongs to none.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from patientportal_cli.db.models import AuditVerifyRun
from patientportal_cli.services.audit.chains import NO_CLINIC
from patientportal_cli.services.audit.verification import Report

INTACT = "intact"
FAILED = "failed"


def record_verify(
    session: Session, *, actor: str, chains: list[str], report: Report, full: bool
) -> None:
    """One row per clinic chain of ``chains`` (flushed, not committed)."""
    checked = {c.chain: c for c in report.chains}
    for chain in chains:
        if chain == NO_CLINIC:
            continue
        result = checked.get(chain)
        problem = None
        if report.problems:
            problem = (result.problem if result is not None else None) or report.problems[0]
        session.add(
            AuditVerifyRun(
                chain=chain,
                actor=actor,
                result=FAILED if report.problems else INTACT,
                checked=result.checked if result is not None else 0,
                full=full,
                problem=problem,
            )
        )
    session.flush()


def last_verify(session: Session, *, clinic: str) -> AuditVerifyRun | None:
    """The clinic chain's newest recorded run (one look-up in the (chain, id) index)."""
    return session.exec(
        select(AuditVerifyRun)
        .where(AuditVerifyRun.chain == clinic)
        .order_by(col(AuditVerifyRun.id).desc())
        .limit(1)
    ).first()
