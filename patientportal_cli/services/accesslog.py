"""Every look-up of patients' data is logged, and a patient's log can be shown.

As on sundhed.dk ("Min Log"), each time staff look at a patient's data an audit event is
written, in the transaction of the look-up, at the clinic the staff member acts for:

- one patient: ``patient.show``, ``patient.access`` and ``patient.log`` (reading the log
  is itself a look-up), target ``cpr:NUMBER``; a revealed CPR number (``--show-cpr``)
  is ``cpr.reveal`` (written where the output is rendered, naming the numbers shown);
- a listing (``patient.list``, ``no_mitid.list``, ``guardian.list``, ``proxy.list``):
  ONE event for the whole listing, with the number of patients shown, the filter and
  the format (``-o json|csv`` are exports).
  A listing that showed at most ``NAMED_AT_MOST`` patients (typically a ``--search`` for
  one person) also names their CPR numbers in ``details.cprs``, so it is in those
  patients' logs; a longer listing (the whole clinic, an export) names none: it is in the
  audit log, but not in each patient's log.

``patient_log`` shows, for a patient linked at this clinic, what was done with the
patient at this clinic and by whom: every event of this clinic whose target is the
patient, the listings and reveals that named the patient, the events about acting for
someone that name the patient as either person (``BOTH``: a guardian's or proxy's login
for the patient is in the log of the patient and of the holder), and the decisions on
the patient's registration requests. Other clinics' events are never shown.

A person whose CPR number changed (``patient change-cpr``) is found by either number,
and the log covers every number they have had (``cpr_change``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, or_, select

from patientportal_cli.db.models import AuditEvent, Clinic, PortalUser
from patientportal_cli.errors import NotFound
from patientportal_cli.services import audit, cpr_change
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.cpr import normalize_cpr
from patientportal_cli.services.masking import mask_cpr
from patientportal_cli.services.users import current_clinic, find_link, lookup, target
from patientportal_cli.vocabulary import Action

# a listing of at most this many patients names them (it is a look-up of each)
NAMED_AT_MOST = 20


def looked_up(
    session: Session,
    *,
    actor: Actor,
    action: Action,
    cpr: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Record a look-up of one patient at the actor's clinic (the caller commits)."""
    audit.record(
        session,
        actor=actor.username,
        clinic=actor.clinic_code,
        action=action,
        target=target(cpr),
        details=details,
    )


def listed(
    session: Session,
    *,
    actor: Actor,
    action: Action,
    cprs: list[str],
    filters: dict[str, Any],
    fmt: str,
    count: int | None = None,
) -> None:
    """Record one listing: how many patients it showed, with which filter and format, and
    which ones when there were few (see the module docstring). The caller commits.
    ``count`` (a streamed listing): how many were shown, when ``cprs`` holds only the
    first ones."""
    shown = len(cprs) if count is None else count
    details: dict[str, Any] = {"count": shown, "format": fmt, **filters}
    if shown <= NAMED_AT_MOST:
        details["cprs"] = sorted(cprs)
    audit.record(
        session,
        actor=actor.username,
        clinic=actor.clinic_code,
        action=action,
        target=f"clinic:{actor.clinic_code}",
        details=details,
    )


def _about(number: str) -> Any:
    """Where an event of this clinic is about the patient with CPR ``number``."""
    quoted = f'%"{number}"%'  # a JSON string in details: "cpr": "N" or "cprs": [..., "N"]
    return or_(
        col(AuditEvent.target) == target(number),
        # cpr.reveal names the numbers it showed, comma-separated
        (col(AuditEvent.action) == Action.CPR_REVEAL) & col(AuditEvent.target).contains(number),
        (col(AuditEvent.action).in_(LISTINGS + BOTH)) & col(AuditEvent.details).like(quoted),
        (col(AuditEvent.action).startswith("request.")) & col(AuditEvent.details).like(quoted),
    )


LISTINGS = (
    Action.PATIENT_LIST,
    Action.NO_MITID_LIST,
    Action.GUARDIAN_LIST,
    Action.PROXY_LIST,
)
# events about two people (services/delegations.py): target the patient, and details
# naming both ("patient", "holder"), so they are in the holder's log as well
BOTH = (
    Action.GUARDIAN_ADD,
    Action.GUARDIAN_REMOVE,
    Action.GUARDIAN_NOTICE,
    Action.PROXY_ADD,
    Action.PROXY_REVOKE,
    Action.DELEGATION_CHECK,
    Action.PORTAL_LOGIN_FOR,
)


@dataclass(frozen=True)
class LogEntry:
    """One line of ``patient log``: an audit event about the patient at this clinic."""

    at: datetime
    actor: str
    action: str
    details: dict[str, Any]  # the event's own JSON details, other patients' CPRs removed

    def as_row(self) -> dict[str, Any]:
        """The fields in order, for ``output.rows`` (keys are the field names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def patient_log(session: Session, *, actor: Actor, cpr: str, fmt: str = "table") -> list[LogEntry]:
    """Who at this clinic looked at or changed the patient, and when, newest first.

    Only for a patient linked here ("not a patient at clinic X" otherwise). Reading the
    log is a look-up too: it is recorded (``patient.log``) after the events are read, so
    it is in the log shown next time."""
    clinic = current_clinic(session, actor)
    user = _person(session, clinic, cpr)
    number = user.cpr
    rows = entries(session, clinic=clinic, user=user)
    looked_up(
        session,
        actor=actor,
        action=Action.PATIENT_LOG,
        cpr=number,
        details={"count": len(rows), "format": fmt},
    )
    session.commit()
    return rows


def entries(session: Session, *, clinic: Clinic, user: PortalUser) -> list[LogEntry]:
    """The patient's log at this clinic, newest first (not itself recorded: the caller
    records its look-up; ``patient log`` and ``patient export`` do)."""
    assert user.id is not None
    # every number the person has had (services/cpr_change.py): the whole history
    numbers = sorted({user.cpr} | cpr_change.numbers_of(session, user.id))
    query = (
        select(AuditEvent)
        .where(AuditEvent.clinic == clinic.code, or_(*(_about(n) for n in numbers)))
        .order_by(col(AuditEvent.id).desc())
    )
    return [
        LogEntry(at=event.at, actor=event.actor, action=event.action, details=_summary(event))
        for event in session.exec(query)
    ]


def find_person(session: Session, clinic: Clinic, cpr: str) -> PortalUser:
    """This clinic's patient by their CPR number now or before (see ``_person``)."""
    return _person(session, clinic, cpr)


def _person(session: Session, clinic: Clinic, cpr: str) -> PortalUser:
    """This clinic's patient by the CPR number they have now or had before (a changed
    number, ``cpr_change``); "not a patient at clinic X" otherwise."""
    number = normalize_cpr(cpr)
    user = cpr_change.find_by_number(session, number)
    if user is None or user.cpr == number:
        return lookup(session, clinic=clinic, cpr=number)[0]
    assert user.id is not None and clinic.id is not None
    if find_link(session, clinic_id=clinic.id, user_id=user.id) is None:
        raise NotFound(f"{mask_cpr(number)} is not a patient at clinic {clinic.code}.")
    return user


def _summary(event: AuditEvent) -> dict[str, Any]:
    """The event's details, without other patients' CPR numbers (a listing's or a
    reveal's): only how many there were."""
    try:
        details = json.loads(event.details)
    except ValueError:  # pragma: no cover - the log only holds JSON objects
        return {}
    if not isinstance(details, dict):  # pragma: no cover
        return {}
    details.pop("cprs", None)
    return details
