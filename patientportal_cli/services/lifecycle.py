"""A patient's lifecycle: deactivation and reactivation (issue 15; docs/rules.md D25-D30).

``deactivate`` takes one of four reasons:

- ``left-clinic``: the patient left this clinic. This clinic's link ends, exactly as
  ``patient unlink`` (``services/patients.py``); the account and the other clinics'
  links stay.
- ``deceased``, ``emigrated``, ``other``: the account is deactivated everywhere
  (``portal_user.deactivated_at``, ``_reason``, ``_by``). Every login of it, at every
  clinic, is refused (``services/login_rules.py`` decides: "not active"); its pending
  activation and security codes end (``outbox.end_pending_codes``); the guardianships
  and proxies held by or for the person end at every clinic
  (``delegations.end_for_person``). Staff at any clinic see the patient as "not active"
  in ``patient show``, ``access`` and ``list``; the reason is only in the audit event
  of the clinic that deactivated (D26).

Deactivating an account that is already deactivated changes nothing (the first reason
stays, D27). ``reactivate`` clears the deactivation (staff at any clinic where the
patient is linked); it does not bring back the ended delegations, codes or link (D28).
Each change writes its audit event in the same transaction; a dry run changes nothing
and is audited as ``patient.dry_run``. ``deactivate(..., commit=False)`` and
``deactivate_batch`` make the same changes in the caller's transaction without committing
it: ``patient reconcile`` commits a batch of changes at once (D41).

``deactivate_many`` is the bulk form (``patient deactivate --from``): one CPR number per
row, each row its own transaction, so a run that stops (Ctrl-C, kill) is finished by
running it again (done rows then answer "already inactive"). ``read_cprs`` reads the
rows: one CPR number per line, or a CSV file with a ``cpr`` column (D29).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from sqlmodel import Session, col, select

from patientportal_cli.db import clock
from patientportal_cli.db.models import Clinic, ClinicLink, PortalUser
from patientportal_cli.errors import InvalidInput, NotFound
from patientportal_cli.services import audit, catalog, delegations, users
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.cpr import normalize_cpr
from patientportal_cli.services.mail import outbox
from patientportal_cli.services.masking import mask_cpr
from patientportal_cli.services.users import current_clinic, lookup, target
from patientportal_cli.vocabulary import Action

DECEASED = "deceased"
EMIGRATED = "emigrated"
LEFT_CLINIC = "left-clinic"
OTHER = "other"
REASONS = (DECEASED, EMIGRATED, LEFT_CLINIC, OTHER)

# what happened to one CPR number (``Outcome.result``; the bulk report's words)
DONE = "done"
WOULD = "would"
NOT_HERE = "not a patient here"
ALREADY = "already inactive"
INVALID = "invalid"
REJECTED = frozenset({NOT_HERE, INVALID})


def check_reason(value: str) -> str:
    """One of ``REASONS`` (case-insensitive), or InvalidInput."""
    reason = value.strip().lower()
    if reason not in REASONS:
        raise InvalidInput(f"Invalid --reason {value!r}: use {', '.join(REASONS)}.")
    return reason


@dataclass(frozen=True)
class Outcome:
    """What ``deactivate`` did (or, with dry_run, would do) to one patient."""

    cpr: str
    name: str
    clinic_code: str
    reason: str
    result: str  # DONE, WOULD or ALREADY
    # delegations ended (or that would end), at any clinic
    delegations: int = 0

    @property
    def label(self) -> str:
        return f"{mask_cpr(self.cpr)} ({self.name})"


def _dry_run_event(
    session: Session, *, actor: Actor, clinic: Clinic, cpr: str, details: dict[str, Any]
) -> None:
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.PATIENT_DRY_RUN,
        target=target(cpr),
        details={"command": "deactivate", **details},
    )


def deactivate(
    session: Session,
    *,
    actor: Actor,
    cpr: str,
    reason: str,
    dry_run: bool = False,
    commit: bool = True,
) -> Outcome:
    """Deactivate this clinic's patient for ``reason`` (see the module docstring).
    Not this clinic's patient: NotFound; already deactivated: result ALREADY, nothing
    changed.

    ``commit=False``: the change is made in the caller's transaction and not committed
    (nor rolled back when nothing is to change), so that the caller can make many changes
    in one transaction and commit them together (``deactivate_batch``; not with
    ``dry_run``)."""
    reason = check_reason(reason)
    number = normalize_cpr(cpr)
    clinic = current_clinic(session, actor)
    return _deactivate(
        session,
        actor=actor,
        clinic=clinic,
        cpr=number,
        reason=reason,
        dry_run=dry_run,
        commit=commit,
    )


def deactivate_batch(
    session: Session, *, actor: Actor, changes: Iterable[tuple[str, str]]
) -> list[Outcome | None]:
    """Each (CPR number, reason) through the same rules as ``deactivate``, all in the
    caller's transaction, which the caller commits (or rolls back: then none of them
    happened). One outcome per change in order; None where the number is no longer this
    clinic's patient (unlinked meanwhile). ``patient reconcile`` applies with it (D41)."""
    clinic = current_clinic(session, actor)
    wanted = [(normalize_cpr(cpr), check_reason(reason)) for cpr, reason in changes]
    here = _patients_here(session, clinic=clinic, cprs=[cpr for cpr, _ in wanted])
    outcomes: list[Outcome | None] = []
    for cpr, reason in wanted:
        found = here.get(cpr)
        if found is None:  # not (or no longer) this clinic's patient: nothing to do
            outcomes.append(None)
            continue
        outcomes.append(
            _deactivate(
                session,
                actor=actor,
                clinic=clinic,
                cpr=cpr,
                reason=reason,
                dry_run=False,
                commit=False,
                found=found,
            )
        )
    return outcomes


def _patients_here(
    session: Session, *, clinic: Clinic, cprs: list[str]
) -> dict[str, tuple[PortalUser, ClinicLink]]:
    """``users.lookup`` for many numbers in one query: this clinic's patients among
    ``cprs`` (user, link), the users' rows taken for update (PostgreSQL, in id order,
    as ``users.locked_user``)."""
    if not cprs:
        return {}
    rows = session.exec(
        select(PortalUser, ClinicLink)
        .join(ClinicLink, col(ClinicLink.user_id) == col(PortalUser.id))
        .where(ClinicLink.clinic_id == clinic.id, col(PortalUser.cpr).in_(cprs))
        .order_by(col(PortalUser.id))
        .with_for_update(of=PortalUser)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    ).all()
    return {user.cpr: (user, link) for user, link in rows}


def _deactivate(
    session: Session,
    *,
    actor: Actor,
    clinic: Clinic,
    cpr: str,
    reason: str,
    dry_run: bool,
    commit: bool,
    found: tuple[PortalUser, ClinicLink] | None = None,
) -> Outcome:
    """``found``: the patient's (user, link) as ``_patients_here`` read them (the user's
    row already taken for update); else looked up here."""
    assert commit or not dry_run, "a dry run ends its own transaction"
    user, link = found if found is not None else lookup(session, clinic=clinic, cpr=cpr)
    if reason == LEFT_CLINIC:
        return _left_clinic(
            session,
            actor=actor,
            clinic=clinic,
            user=user,
            link=link,
            dry_run=dry_run,
            commit=commit,
        )
    if found is None:
        user = users.locked_user(session, user)
    assert user.id is not None
    outcome = Outcome(user.cpr, user.name, clinic.code, reason, DONE)
    if user.deactivated_at is not None:
        if commit:
            session.rollback()
        return _with(outcome, result=ALREADY)
    if dry_run:
        count = len(delegations.open_for_person(session, user_id=user.id))
        session.rollback()
        _dry_run_event(
            session, actor=actor, clinic=clinic, cpr=user.cpr, details={"reason": reason}
        )
        session.commit()
        return _with(outcome, result=WOULD, delegations=count)
    user.deactivated_at = clock.utcnow()
    user.deactivated_reason = reason
    user.deactivated_by = actor.username
    session.add(user)
    outbox.end_pending_codes(session, user_id=user.id, reason="the account was deactivated")
    ended = delegations.end_for_person(session, user_id=user.id, by=actor.username)
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.PATIENT_DEACTIVATE,
        target=target(user.cpr),
        details={"reason": reason, "delegations_ended": len(ended)},
    )
    if commit:
        session.commit()
    return _with(outcome, delegations=len(ended))


def _with(outcome: Outcome, **changes: Any) -> Outcome:
    return replace(outcome, **changes)


def _left_clinic(
    session: Session,
    *,
    actor: Actor,
    clinic: Clinic,
    user: PortalUser,
    link: ClinicLink,
    dry_run: bool,
    commit: bool = True,
) -> Outcome:
    """End this clinic's link (as ``patients.unlink``); the account stays."""
    outcome = Outcome(user.cpr, user.name, clinic.code, LEFT_CLINIC, WOULD if dry_run else DONE)
    if dry_run:
        session.rollback()
        _dry_run_event(
            session, actor=actor, clinic=clinic, cpr=user.cpr, details={"reason": LEFT_CLINIC}
        )
        session.commit()
        return outcome
    services = catalog.split_services(link.services)
    no_mitid = link.no_mitid
    users.forget_link(session, link, user.cpr)
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.PATIENT_DEACTIVATE,
        target=target(user.cpr),
        details={
            "reason": LEFT_CLINIC,
            "unlinked": True,
            "no_mitid": no_mitid,
            "services": services,
        },
    )
    if commit:
        session.commit()
    return outcome


@dataclass(frozen=True)
class Reactivation:
    cpr: str
    name: str
    clinic_code: str
    changed: bool  # False: it was not deactivated

    @property
    def label(self) -> str:
        return f"{mask_cpr(self.cpr)} ({self.name})"


def reactivate(session: Session, *, actor: Actor, cpr: str) -> Reactivation:
    """Clear the deactivation of this clinic's patient (a mistake); audited with what was
    cleared. Not deactivated: nothing changes (changed False)."""
    clinic = current_clinic(session, actor)
    user, _link = lookup(session, clinic=clinic, cpr=cpr)
    user = users.locked_user(session, user)
    if user.deactivated_at is None:
        session.rollback()
        return Reactivation(user.cpr, user.name, clinic.code, False)
    details = {
        "was_reason": user.deactivated_reason,
        "was_deactivated_at": user.deactivated_at.isoformat(),
        "was_deactivated_by": user.deactivated_by,
    }
    user.deactivated_at = None
    user.deactivated_reason = None
    user.deactivated_by = None
    session.add(user)
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.PATIENT_REACTIVATE,
        target=target(user.cpr),
        details=details,
    )
    session.commit()
    return Reactivation(user.cpr, user.name, clinic.code, True)


# --- many at once (patient deactivate --from) ------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of a bulk input: its line number, the text as given, and the CPR
    number in it (None when the row has none)."""

    line: int
    text: str
    cpr: str | None


def _delimiter(header: str) -> str | None:
    for candidate in (";", ",", "\t"):
        if candidate in header:
            return candidate
    return None


def read_cprs(lines: Iterable[str]) -> Iterator[Row]:
    """The rows of a bulk input, blank lines skipped: one CPR number per line, or (when
    the first line names a ``cpr`` column, ``;``, ``,`` or tab between columns) a CSV
    file whose ``cpr`` column is read. A first line that is just ``cpr`` is a header."""
    numbered = ((n, line.rstrip("\r\n")) for n, line in enumerate(lines, start=1))
    column: int | None = None
    delimiter: str | None = None
    first = True
    for n, line in numbered:
        if first:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        if first:
            first = False
            delimiter = _delimiter(line)
            names = [
                c.strip().strip('"').lower()
                for c in (next(csv.reader([line], delimiter=delimiter)) if delimiter else [line])
            ]
            if "cpr" in names:
                column = names.index("cpr")
                continue
            if delimiter is not None:
                raise InvalidInput(
                    "The input has several columns but none is named cpr: give one CPR "
                    "number per line, or a CSV file with a cpr column."
                )
        if delimiter is not None and column is not None:
            cells = next(csv.reader([line], delimiter=delimiter))
            value = cells[column].strip() if column < len(cells) else ""
        else:
            value = line.strip()
        yield Row(n, line, value or None)


@dataclass(frozen=True)
class RowResult:
    """What one bulk row came to: ``result`` is DONE, WOULD, ALREADY, NOT_HERE or
    INVALID; ``detail`` says why in one line (masked CPR numbers)."""

    line: int
    text: str
    cpr: str | None
    result: str
    detail: str

    @property
    def rejected(self) -> bool:
        return self.result in REJECTED

    def as_row(self) -> dict[str, Any]:
        return {"line": self.line, "cpr": self.cpr, "result": self.result, "detail": self.detail}


def _done_text(outcome: Outcome, *, dry_run: bool) -> str:
    if outcome.reason == LEFT_CLINIC:
        verb = "would end" if dry_run else "ended"
        return f"{verb} the link to clinic {outcome.clinic_code}"
    verb = "would be deactivated" if dry_run else "deactivated"
    ended = (
        f"; {outcome.delegations} guardianship(s)/proxies " + ("would end" if dry_run else "ended")
        if outcome.delegations
        else ""
    )
    return f"{verb} ({outcome.reason}){ended}"


def deactivate_many(
    session: Session,
    *,
    actor: Actor,
    rows: Iterable[Row],
    reason: str,
    dry_run: bool = False,
) -> Iterator[RowResult]:
    """``deactivate`` each row in turn, each its own transaction; a row that is not a
    valid CPR number or not this clinic's patient is rejected and the run goes on. The
    caller stops iterating to stop (``--max-rows``)."""
    reason = check_reason(reason)
    current_clinic(session, actor)  # not logged in to a clinic: before any row
    seen: set[str] = set()
    for row in rows:
        if row.cpr is None:
            yield RowResult(row.line, row.text, None, INVALID, "no CPR number in the row")
            continue
        try:
            number = normalize_cpr(row.cpr)
        except InvalidInput as exc:
            yield RowResult(row.line, row.text, None, INVALID, str(exc))
            continue
        if number in seen:  # done (or would be) by an earlier row of this run
            yield RowResult(row.line, row.text, number, ALREADY, "repeated row")
            continue
        seen.add(number)
        try:
            outcome = deactivate(session, actor=actor, cpr=number, reason=reason, dry_run=dry_run)
        except NotFound as exc:
            session.rollback()
            yield RowResult(row.line, row.text, number, NOT_HERE, str(exc).split(". ")[0] + ".")
            continue
        if outcome.result == ALREADY:
            text = "already deactivated; nothing changed"
        else:
            text = _done_text(outcome, dry_run=dry_run)
        yield RowResult(row.line, row.text, number, outcome.result, text)
