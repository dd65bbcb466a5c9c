"""`clinic overview`: one clinic's state at a glance, gathered by bounded queries.

Every number is this clinic's only, and each is one query that an index narrows to
this clinic's rows (its links, its pending requests, its queued mail, its chain's
events of the last 24 hours): none reads a table whole, so the screen stays fast at
national scale (``README.md``, "Clinic overview", has the plans on PostgreSQL).

- patients: the clinic's links (``clinic_link``), deactivated accounts included;
- without MitID: those links with the no-MitID flag;
- activations not used: patients linked here who have no password yet and an
  activation code that is neither used nor expired;
- pending requests, and when the oldest was submitted;
- failed patient logins (``portal.login_failed`` events at this clinic) in the last
  24 hours, and the CPR numbers whose login they locked (a lock is written with the
  failure that sets it, ``services/portal.py``); numbers of nobody count too;
- mail waiting: this clinic's outbox messages neither sent nor discarded;
- the newest recorded `audit verify` run of the clinic's chain (``services/audit/runs.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, distinct
from sqlmodel import Session, col, func, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import (
    AuditEvent,
    AuditVerifyRun,
    Clinic,
    ClinicLink,
    OneTimeCode,
    Outbox,
    PortalUser,
    RegistrationRequest,
)
from patientportal_cli.services import catalog, codes
from patientportal_cli.services.audit import runs
from patientportal_cli.services.auth import Actor
from patientportal_cli.vocabulary import Action, RequestStatus

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Overview:
    code: str
    name: str
    registration_mode: str
    registration_label: str
    patients: int
    without_mitid: int
    activations_not_used: int
    pending_requests: int
    oldest_pending_at: datetime | None
    failed_logins_24h: int
    locked_logins_24h: int
    mail_queued: int
    audit_verify: AuditVerifyRun | None
    now: datetime


def gather(session: Session, *, actor: Actor) -> Overview:
    """The current clinic's overview (any role at the clinic may see it)."""
    clinic_id, code = actor.require_clinic()
    clinic = session.get(Clinic, clinic_id)
    assert clinic is not None
    now = utcnow()
    patients, without_mitid = _patients(session, clinic_id)
    pending, oldest = _pending(session, clinic_id)
    failed, locked = _failed_logins(session, code, since=now - WINDOW)
    return Overview(
        code=clinic.code,
        name=clinic.name,
        registration_mode=clinic.registration_mode,
        registration_label=catalog.REGISTRATION_MODES[clinic.registration_mode],
        patients=patients,
        without_mitid=without_mitid,
        activations_not_used=_activations(session, clinic_id, now),
        pending_requests=pending,
        oldest_pending_at=oldest,
        failed_logins_24h=failed,
        locked_logins_24h=locked,
        mail_queued=_mail_queued(session, clinic_id),
        audit_verify=runs.last_verify(session, clinic=code),
        now=now,
    )


def _patients(session: Session, clinic_id: int) -> tuple[int, int]:
    """Links here, and those with the no-MitID flag (the clinic_id index, one pass)."""
    total, flagged = session.exec(
        select(func.count(), func.count().filter(col(ClinicLink.no_mitid).is_(True))).where(
            ClinicLink.clinic_id == clinic_id
        )
    ).one()
    return int(total), int(flagged)


def _activations(session: Session, clinic_id: int, now: datetime) -> int:
    """Patients linked here without a password who hold an open activation code.

    Driven by the clinic's links (its clinic_id index), each user by primary key, and
    the code looked up per user without a password (the one_time_code user_id index).
    The code is a subquery with LIMIT 1 on purpose: as a plain EXISTS, PostgreSQL may
    start from every open activation code in the country instead (seen at 1M users:
    6 s instead of 1.2 s for the largest clinic)."""
    open_code = (
        select(OneTimeCode.id)
        .where(
            OneTimeCode.user_id == PortalUser.id,
            OneTimeCode.purpose == codes.ACTIVATION,
            col(OneTimeCode.used_at).is_(None),
            OneTimeCode.expires_at > now,
        )
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(func.count())
        .select_from(ClinicLink)
        .join(PortalUser, col(PortalUser.id) == ClinicLink.user_id)
        .where(ClinicLink.clinic_id == clinic_id, col(PortalUser.password_hash).is_(None))
        .where(open_code.is_not(None))
    )
    return int(session.exec(query).one())


def _pending(session: Session, clinic_id: int) -> tuple[int, datetime | None]:
    count, oldest = session.exec(
        select(func.count(), func.min(RegistrationRequest.submitted_at)).where(
            RegistrationRequest.clinic_id == clinic_id,
            RegistrationRequest.status == RequestStatus.PENDING,
        )
    ).one()
    return int(count), oldest


def _failed_logins(session: Session, code: str, *, since: datetime) -> tuple[int, int]:
    """Failed patient logins at the clinic since ``since``, and the CPR numbers a failure
    locked (its event carries ``locked_until``).

    Only the chain's events after ``since`` are read, through the (chain, seq) index: a
    chain's events are numbered in the order they are written, so they are the events
    after the chain's newest one before ``since`` (found by reading the chain backwards
    from its head). Filtering the whole table by time would read every clinic's events
    of the day."""
    before = (
        select(AuditEvent.seq)
        .where(AuditEvent.chain == code, AuditEvent.at < since)
        .order_by(col(AuditEvent.seq).desc())
        .limit(1)
        .scalar_subquery()
    )
    locking = col(AuditEvent.details).contains('"locked_until"', autoescape=True)
    failed, locked = session.exec(
        select(
            func.count(), func.count(distinct(case((locking, AuditEvent.target), else_=None)))
        ).where(
            AuditEvent.chain == code,
            AuditEvent.seq > func.coalesce(before, 0),
            AuditEvent.action == Action.PORTAL_LOGIN_FAILED,
            AuditEvent.at >= since,
        )
    ).one()
    return int(failed), int(locked)


def _mail_queued(session: Session, clinic_id: int) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(Outbox)
            .where(
                Outbox.clinic_id == clinic_id,
                col(Outbox.sent_at).is_(None),
                col(Outbox.discarded_at).is_(None),
            )
        ).one()
    )
