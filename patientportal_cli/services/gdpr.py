"""A person's rights under the GDPR: access (art. 15, ``patient export``) and erasure
(art. 17, ``patient erase``). See docs/erasure.md, D43 and D44 in docs/rules.md.

Export: everything the tool holds about a patient of this clinic, as one document. The
clinic is the controller that answers; it hands over what it holds about the person,
not what other clinics hold (their links, requests, mail and logs stay theirs): the
account (without the password hash: only whether a password is set), the link here with
its flags and confirmations, the link history here, registration requests here,
delegations here where the person is the patient or the holder, the mail the clinic
sent them (template and times, never a code or a text) and the access log here. It is a
look-up like ``patient show``: any staff member of the clinic, audited
(``patient.export``, target the patient).

Erasure: once no clinic links the person, an admin of a clinic that once linked them
(``link_history``) or had a request from them removes every row carrying their data and
redacts the audit events about them (``audit.redact``: target and details erased, the
salt removed, the hash kept), so ``audit verify`` still passes. One ``patient.erase``
event records that an erasure happened, without personal data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, or_
from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import (
    AuditEvent,
    Clinic,
    ClinicLink,
    CprChange,
    Delegation,
    LinkHistory,
    LoginThrottle,
    OneTimeCode,
    Outbox,
    PortalUser,
    RegistrationRequest,
)
from patientportal_cli.errors import NotFound, Refused
from patientportal_cli.services import accesslog, audit, catalog, cpr_change, delegations, throttle
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.cpr import normalize_cpr
from patientportal_cli.services.masking import mask_cpr
from patientportal_cli.services.users import current_clinic, target
from patientportal_cli.vocabulary import Action, RequestStatus

FORMAT = "patientportal-gdpr-export"

# --- access (art. 15) ----------------------------------------------------------------


def export(session: Session, *, actor: Actor, cpr: str, fmt: str = "table") -> dict[str, Any]:
    """The person's document (see the module); the export is recorded and committed.
    CPR numbers are under ``cpr`` keys, so output masks them unless ``--show-cpr``."""
    clinic = current_clinic(session, actor)
    user = accesslog.find_person(session, clinic, cpr)
    assert user.id is not None and clinic.id is not None
    numbers = sorted({user.cpr} | cpr_change.numbers_of(session, user.id))
    link = session.exec(
        select(ClinicLink).where(ClinicLink.clinic_id == clinic.id, ClinicLink.user_id == user.id)
    ).one()
    history = session.exec(
        select(LinkHistory).where(
            LinkHistory.clinic_id == clinic.id, col(LinkHistory.cpr).in_(numbers)
        )
    ).first()
    requests = _requests(session, clinic, numbers)
    mails = _mails(session, clinic, user)
    changes = session.exec(
        select(CprChange).where(CprChange.user_id == user.id).order_by(col(CprChange.id))
    ).all()
    log = accesslog.entries(session, clinic=clinic, user=user)
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": 1,
        "exported_at": utcnow(),
        "exported_by": actor.username,
        "clinic": {"code": clinic.code, "name": clinic.name},
        "person": _person(user, changes),
        "link": _link(link, history),
        "registration_requests": [_request(r) for r in requests],
        "delegations": [
            row.as_row() for row in delegations.of_person(session, clinic=clinic, user=user)
        ],
        "mail": [_mail(m, clinic) for m in mails],
        "access_log": [entry.as_row() for entry in log],
    }
    accesslog.looked_up(
        session,
        actor=actor,
        action=Action.PATIENT_EXPORT,
        cpr=user.cpr,
        details={
            "format": fmt,
            "requests": len(requests),
            "delegations": len(document["delegations"]),
            "mail": len(mails),
            "access_log": len(log),
        },
    )
    session.commit()
    return document


def _requests(session: Session, clinic: Clinic, numbers: list[str]) -> list[RegistrationRequest]:
    """The registration requests at this clinic under any of the person's numbers."""
    return list(
        session.exec(
            select(RegistrationRequest)
            .where(
                RegistrationRequest.clinic_id == clinic.id,
                col(RegistrationRequest.cpr).in_(numbers),
            )
            .order_by(col(RegistrationRequest.id))
        ).all()
    )


def _mails(session: Session, clinic: Clinic, user: PortalUser) -> list[Outbox]:
    """The mail this clinic sent (or queued) to the person."""
    return list(
        session.exec(
            select(Outbox)
            .where(Outbox.user_id == user.id, Outbox.clinic_id == clinic.id)
            .order_by(col(Outbox.id))
        ).all()
    )


def _person(user: PortalUser, changes: Any) -> dict[str, Any]:
    return {
        "cpr": user.cpr,
        "name": user.name,
        "email": user.email,
        "password_set": user.password_hash is not None,
        "origin": user.origin,
        "created_at": user.created_at,
        "mitid_verified_at": user.mitid_verified_at,
        "credentials_vouched_at": user.credentials_vouched_at,
        "failed_logins": user.failed_logins,
        "locked_until": user.locked_until,
        "last_login_at": user.last_login_at,
        "deactivated_at": user.deactivated_at,
        "deactivated_reason": user.deactivated_reason,
        "cpr_changes": [
            {
                "cpr": c.old_cpr,
                "new_cpr_is_current": c.new_cpr == user.cpr,
                "changed_at": c.changed_at,
            }
            for c in changes
        ],
    }


def _link(link: ClinicLink, history: LinkHistory | None) -> dict[str, Any]:
    return {
        "linked_at": link.linked_at,
        "linked_by": link.linked_by,
        "first_linked_at": history.first_linked_at if history else None,
        "services": catalog.split_services(link.services),
        "record_email": link.record_email,
        "no_mitid": link.no_mitid,
        "no_mitid_changed_at": link.no_mitid_changed_at,
        "no_mitid_changed_by": link.no_mitid_changed_by,
        "email_owner_confirmed_at": link.email_owner_confirmed_at,
        "email_owner_confirmed_by": link.email_owner_confirmed_by,
        "email_owner_confirmed_email": link.email_owner_confirmed_email,
        "mitid_required_after": link.mitid_required_after,
    }


def _request(r: RegistrationRequest) -> dict[str, Any]:
    return {
        "submitted_at": r.submitted_at,
        "name": r.name,
        "email": r.email,
        "password_set": r.password_hash is not None,
        "services": catalog.split_services(r.services),
        "status": r.status,
        "decided_by": r.decided_by,
        "decided_at": r.decided_at,
        "reason": r.reason,
        "mitid_verified_at": r.mitid_verified_at,
    }


def _mail(m: Outbox, clinic: Clinic) -> dict[str, Any]:
    """A message as its template and times: never its text, arguments or a code."""
    return {
        "template": m.template,
        "clinic": clinic.code,
        "queued_at": m.created_at,
        "sent_at": m.sent_at,
        "discarded_at": m.discarded_at,
    }


# --- erasure (art. 17) ---------------------------------------------------------------


@dataclass
class Erasure:
    """What an erasure removed (or, in a dry run, would remove)."""

    cpr: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows removed
    events: int = 0  # audit events redacted
    legacy_events: int = 0  # events before schema 0005: cannot be redacted, only pruned
    dry_run: bool = False

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def erase(session: Session, *, actor: Actor, cpr: str, dry_run: bool = False) -> Erasure:
    """Erase the person (see the module). Refused while a clinic links them or a
    registration request of theirs is pending; only an admin of a clinic that once
    linked them (or had a request from them) may. One transaction."""
    _, code = actor.require_role("admin", action="erase a person's data")
    clinic = current_clinic(session, actor)
    number = normalize_cpr(cpr)
    user = cpr_change.find_by_number(session, number)
    numbers = {number}
    if user is not None:
        assert user.id is not None
        numbers |= {user.cpr} | cpr_change.numbers_of(session, user.id)
    _check_known_here(session, clinic, numbers, number)
    _check_nothing_open(session, user, numbers, number)
    result = Erasure(cpr=number, dry_run=dry_run)
    ids = _events_about(session, numbers)
    result.events = len(ids[2])
    result.legacy_events = len(ids[1])
    for table, statement in _deletions(user, numbers):
        removed = session.execute(statement)
        result.rows[table] = int(getattr(removed, "rowcount", 0) or 0)
    if dry_run:
        session.rollback()
        return result
    audit.redact(session, event_ids=ids[2])
    audit.record(
        session,
        actor=actor.username,
        clinic=code,
        action=Action.PATIENT_ERASE,
        details={"rows": result.total_rows, "events_redacted": result.events},
    )
    session.commit()
    return result


def _check_known_here(session: Session, clinic: Clinic, numbers: set[str], number: str) -> None:
    """The clinic once linked the person or had a request from them; otherwise the same
    NotFound whether or not the person exists (other clinics' patients stay unseen)."""
    linked = session.exec(
        select(func.count()).where(
            LinkHistory.clinic_id == clinic.id, col(LinkHistory.cpr).in_(numbers)
        )
    ).one()
    asked = session.exec(
        select(func.count()).where(
            RegistrationRequest.clinic_id == clinic.id, col(RegistrationRequest.cpr).in_(numbers)
        )
    ).one()
    if not linked and not asked:
        raise NotFound(
            f"{mask_cpr(number)} was never a patient at clinic {clinic.code}: only a clinic "
            "that linked the person can erase them."
        )


def _check_nothing_open(
    session: Session, user: PortalUser | None, numbers: set[str], number: str
) -> None:
    """Refused while any clinic links the person or a request of theirs is pending (by
    count: never which clinics)."""
    if user is not None:
        links = session.exec(select(func.count()).where(ClinicLink.user_id == user.id)).one()
        if links:
            where = "1 clinic" if links == 1 else f"{links} clinics"
            raise Refused(
                f"{mask_cpr(number)} is still linked at {where}: a person is erased only "
                "once no clinic links them (each clinic unlinks first)."
            )
    pending = session.exec(
        select(func.count()).where(
            col(RegistrationRequest.cpr).in_(numbers),
            RegistrationRequest.status == RequestStatus.PENDING,
        )
    ).one()
    if pending:
        what = (
            "1 pending registration request"
            if pending == 1
            else f"{pending} pending registration requests"
        )
        raise Refused(
            f"{mask_cpr(number)} has {what}: it must be decided before the person is erased."
        )


def _deletions(user: PortalUser | None, numbers: set[str]) -> list[tuple[str, Any]]:
    """Every row that carries the person's data, as (table, DELETE), children first."""
    keys = [throttle.key(throttle.PATIENT, n) for n in sorted(numbers)]
    found: list[tuple[str, Any]] = [
        ("registration_request", delete(RegistrationRequest).where(
            col(RegistrationRequest.cpr).in_(numbers))),
        ("link_history", delete(LinkHistory).where(col(LinkHistory.cpr).in_(numbers))),
        ("login_throttle", delete(LoginThrottle).where(col(LoginThrottle.key).in_(keys))),
    ]  # fmt: skip
    if user is not None:
        uid = user.id
        found += [
            ("one_time_code", delete(OneTimeCode).where(col(OneTimeCode.user_id) == uid)),
            ("outbox", delete(Outbox).where(col(Outbox.user_id) == uid)),
            ("delegation", delete(Delegation).where(
                or_(col(Delegation.patient_user_id) == uid, col(Delegation.holder_user_id) == uid))),
            ("cpr_change", delete(CprChange).where(col(CprChange.user_id) == uid)),
            ("portal_user", delete(PortalUser).where(col(PortalUser.id) == uid)),
        ]  # fmt: skip
    return found


def _events_about(session: Session, numbers: set[str]) -> tuple[list[int], list[int], list[int]]:
    """The audit events, in every chain, whose target or details name one of the numbers:
    (all, version 1, redactable). A listing or reveal that named the person among others
    is redacted whole (its other numbers go too; the event's actor, action and time stay)."""
    conditions = []
    for n in numbers:
        conditions += [
            col(AuditEvent.target) == target(n),
            col(AuditEvent.target).contains(n),
            col(AuditEvent.details).contains(json.dumps(n)),
        ]
    rows = session.exec(
        select(AuditEvent.id, AuditEvent.version, AuditEvent.salt).where(or_(*conditions))
    ).all()
    everything = [int(r[0] or 0) for r in rows]
    legacy = [int(r[0] or 0) for r in rows if r[1] == 1]
    redactable = [int(r[0] or 0) for r in rows if r[1] == 2 and r[2] is not None]
    return everything, legacy, redactable
