"""Clinics: creation, the registration mode (R2) and the services offered."""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from patientportal_cli.db.models import Clinic, Membership, RegistrationRequest
from patientportal_cli.errors import Conflict, Forbidden, InvalidInput, MissingInput
from patientportal_cli.services import audit, catalog
from patientportal_cli.services.auth import Actor, find_clinic
from patientportal_cli.services.contact import clean_name
from patientportal_cli.vocabulary import Action, RequestStatus

PENDING_CHOICES = ("keep", "reject", "approve")
check_code = catalog.check_clinic_code


def new_clinic(
    session: Session, *, code: str, name: str, mode: str = "none", services: str | None = None
) -> Clinic:
    code = check_code(code)
    if session.exec(select(Clinic).where(Clinic.code == code)).first() is not None:
        raise Conflict(f"A clinic with code {code} already exists.")
    clinic = Clinic(
        code=code,
        name=clean_name(name),
        registration_mode=catalog.check_mode(mode),
        services=services
        if services is not None
        else catalog.join_services(list(catalog.SERVICES)),
    )
    session.add(clinic)
    session.flush()
    return clinic


def create(session: Session, *, actor: Actor, code: str, name: str, mode: str = "none") -> Clinic:
    """A new clinic; the creator becomes its first admin."""
    if not actor.may_create_clinics:
        raise Forbidden(f"{actor.username} may not create clinics.")
    clinic = new_clinic(session, code=code, name=name, mode=mode)
    assert clinic.id is not None
    session.add(Membership(staff_id=actor.staff_id, clinic_id=clinic.id, role="admin"))
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.CLINIC_CREATE,
        target=f"clinic:{clinic.code}",
        details={"name": clinic.name, "registration_mode": clinic.registration_mode},
    )
    session.commit()
    return clinic


def codes_starting(session: Session, prefix: str, *, limit: int) -> list[str]:
    """Clinic codes beginning with ``prefix`` (literally: ``_`` and ``%`` are no
    wildcards), in order (for TAB completion)."""
    query = (
        select(Clinic.code)
        .where(col(Clinic.code).startswith(prefix, autoescape=True))
        .order_by(col(Clinic.code))
        .limit(limit)
    )
    return list(session.exec(query))


def visible(session: Session, *, actor: Actor) -> list[Clinic]:
    """The clinics the actor works at (all clinics for one who may create clinics)."""
    query = select(Clinic).order_by(col(Clinic.code))
    if not actor.may_create_clinics:
        query = query.where(col(Clinic.id).in_([*_member_clinic_ids(session, actor)]))
    return list(session.exec(query))


def _member_clinic_ids(session: Session, actor: Actor) -> list[int]:
    return list(
        session.exec(select(Membership.clinic_id).where(Membership.staff_id == actor.staff_id))
    )


def current(session: Session, *, actor: Actor, code: str | None = None) -> Clinic:
    if code:
        clinic = find_clinic(session, code)
        if clinic.code not in actor.roles and not actor.may_create_clinics:
            raise Forbidden(f"{actor.username} does not work at clinic {clinic.code}.")
        return clinic
    clinic_id, _ = actor.require_clinic()
    found = session.get(Clinic, clinic_id)
    assert found is not None
    return found


def pending_count(session: Session, clinic_id: int) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(RegistrationRequest)
            .where(
                RegistrationRequest.clinic_id == clinic_id,
                RegistrationRequest.status == RequestStatus.PENDING,
            )
        ).one()
    )


def set_registration(
    session: Session,
    *,
    actor: Actor,
    mode: str,
    pending: str | None = None,
    reason: str | None = None,
) -> tuple[Clinic, str, int]:
    """Change the registration mode. Returns (clinic, old mode, pending requests handled).

    Pending requests are handled by ``services.approvals.settle_pending`` when ``pending`` is
    reject or approve; with pending requests and no choice, ``MissingInput``.
    """
    mode = catalog.check_mode(mode)
    clinic_id, code = actor.require_role("admin", action="change the registration mode")
    if pending is not None and pending not in PENDING_CHOICES:
        raise InvalidInput(f"Unknown --pending choice {pending!r}: use keep, reject or approve.")
    clinic = session.get(Clinic, clinic_id)
    assert clinic is not None
    old = clinic.registration_mode
    if mode == old:
        return clinic, old, 0  # nothing changes, nothing to audit
    waiting = pending_count(session, clinic_id)
    handled = 0
    if waiting and pending is None:
        raise MissingInput("--pending", f"choice for the {waiting} pending request(s)")
    if waiting and pending in ("reject", "approve"):
        from patientportal_cli.services import approvals

        handled = approvals.settle_pending(session, actor=actor, decision=pending, reason=reason)
    clinic.registration_mode = mode
    session.add(clinic)
    audit.record(
        session,
        actor=actor.username,
        clinic=code,
        action=Action.CLINIC_SET_REGISTRATION,
        target=f"clinic:{code}",
        details={"from": old, "to": mode, "pending": pending, "handled": handled},
    )
    session.commit()
    return clinic, old, handled


def set_services(
    session: Session, *, actor: Actor, enable: list[str], disable: list[str]
) -> Clinic:
    clinic_id, code = actor.require_role("admin", action="change the clinic's services")
    both = set(enable) & set(disable)
    if both:
        raise InvalidInput(f"Service {sorted(both)[0]!r} cannot be both enabled and disabled.")
    clinic = session.get(Clinic, clinic_id)
    assert clinic is not None
    before = catalog.split_services(clinic.services)
    after = (set(before) | set(enable)) - set(disable)
    clinic.services = catalog.join_services(after)
    if before != catalog.split_services(clinic.services):
        audit.record(
            session,
            actor=actor.username,
            clinic=code,
            action=Action.CLINIC_SERVICES,
            target=f"clinic:{code}",
            details={"from": before, "to": catalog.split_services(clinic.services)},
        )
    session.commit()
    return clinic
