"""Online self-registration under the clinic's registration mode: rule R2.

``register`` is what the web portal does when a patient registers at a clinic:

- mode ``none``: refused with a Danish message telling the patient to contact the
  clinic; nothing is stored, nothing is audited, no mail.
- mode ``approval``: a pending ``RegistrationRequest`` in the clinic's queue (a doctor
  decides it, ``services/queue.py``); e-mail ``request_received``. A second registration
  for the same CPR at the same clinic while one is pending is refused, not duplicated.
- mode ``open``: the user is created (origin ``self``) or, when the CPR already has a
  user, that user is linked (R1: never a second user); services granted = requested ∩
  the clinic's enabled services; e-mail ``registered``.

A CPR already linked to the clinic is told it already has access. A new user chooses a
password when registering (policy checked, stored hashed: on the request until a doctor
approves it, then moved to the new user). A CPR that already has a portal user is not
asked for a password at all: the existing user keeps the password (and name and e-mail)
they have; the ``password`` callback is not called. Identity is confirmed by MitID at
the first login (R5), as for every self-registration.

The refusal in mode ``none`` is the patient's Danish message (as on the portal); the
other messages are English, like the rest of the ``portal`` group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, PortalUser, RegistrationRequest
from patientportal_cli.errors import Conflict, Refused
from patientportal_cli.services import audit, catalog, outbox, passwords, users
from patientportal_cli.services.auth import find_clinic
from patientportal_cli.services.contact import clean_name, normalize_email
from patientportal_cli.services.cpr import normalize_cpr

ACTOR = "patient"
PORTAL = "Patientportalen"


@dataclass
class Registration:
    """What a registration did. ``outcome``: requested | created | linked."""

    outcome: str
    clinic_code: str
    clinic_name: str
    services: list[str] = field(default_factory=list)
    request_id: int | None = None
    existing_user: bool = False


def _pending(session: Session, *, clinic_id: int, cpr: str) -> RegistrationRequest | None:
    return session.exec(
        select(RegistrationRequest)
        .where(
            RegistrationRequest.clinic_id == clinic_id,
            RegistrationRequest.cpr == cpr,
            RegistrationRequest.status == "pending",
        )
        .order_by(col(RegistrationRequest.id))
    ).first()


def _situation(session: Session, *, clinic_code: str, cpr: str) -> tuple[Clinic, PortalUser | None]:
    """The clinic and the existing user, or the refusal that applies."""
    clinic = find_clinic(session, clinic_code)
    assert clinic.id is not None
    if clinic.registration_mode == "none":
        raise Refused(
            f"{clinic.name} tilbyder ikke online selv-oprettelse på {PORTAL}. Kontakt "
            "venligst klinikken, som kan oprette dig som bruger."
        )
    user = users.find_user(session, cpr)
    link = None
    if user is not None and user.id is not None:
        link = users.find_link(session, clinic_id=clinic.id, user_id=user.id)
    if link is not None:
        raise Conflict(
            f"This CPR number already has access to clinic {clinic.code} on {PORTAL}: log "
            "in with `patientportal portal login`."
        )
    if clinic.registration_mode == "approval":
        waiting = _pending(session, clinic_id=clinic.id, cpr=cpr)
        if waiting is not None:
            raise Conflict(
                f"A registration request for this CPR number (request {waiting.id}, "
                f"submitted {waiting.submitted_at.strftime('%Y-%m-%d %H:%M')} UTC) is already "
                f"waiting for a doctor at clinic {clinic.code}; the patient is e-mailed when it "
                "is decided."
            )
    return clinic, user


def _lock_cpr(session: Session, *, clinic_id: int, cpr: str) -> None:
    """PostgreSQL: registrations of one CPR at one clinic take turns (no duplicate request).

    SQLite needs nothing: every write transaction there is already exclusive.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:a, :b)"),
            {"a": clinic_id, "b": int(cpr) % 2_147_483_647},
        )


def register(
    session: Session,
    *,
    clinic_code: str,
    cpr: str,
    name: str,
    email: str,
    services: list[str] | str | None = None,
    password: Callable[[], str],
) -> Registration:
    """Self-register ``cpr`` at the clinic, under its registration mode.

    ``services``: the services asked for (default: all the clinic offers). ``password``
    is called only when a new user will be created (it may prompt: the database
    transaction is closed while it runs).
    """
    cpr = normalize_cpr(cpr)
    name = clean_name(name)
    email = normalize_email(email)
    wanted = catalog.parse_services(services) if services is not None else None

    clinic, user = _situation(session, clinic_code=clinic_code, cpr=cpr)
    clinic_id = clinic.id
    assert clinic_id is not None
    password_hash: str | None = None
    if user is None:
        session.rollback()  # no transaction (SQLite: no write lock) while the patient types
        chosen = password()
        passwords.check_policy(chosen)
        password_hash = passwords.hash_password(chosen)

    # The transaction that stores: look again, the world may have moved meanwhile.
    _lock_cpr(session, clinic_id=clinic_id, cpr=cpr)
    clinic, user = _situation(session, clinic_code=clinic_code, cpr=cpr)
    if user is not None:
        password_hash = None  # an existing user keeps the password they have
    elif password_hash is None:  # a user seen at the first look is gone (users are kept)
        raise Conflict("The registration could not be completed; please try again.")
    offered = catalog.split_services(clinic.services)
    asked = wanted if wanted is not None else offered
    if clinic.registration_mode == "approval":
        return _request(
            session,
            clinic=clinic,
            cpr=cpr,
            name=name,
            email=email,
            asked=asked,
            password_hash=password_hash,
            existing=user is not None,
        )
    return _open(
        session,
        clinic=clinic,
        cpr=cpr,
        name=name,
        email=email,
        granted=[s for s in asked if s in offered],
        password_hash=password_hash,
    )


def _request(
    session: Session,
    *,
    clinic: Clinic,
    cpr: str,
    name: str,
    email: str,
    asked: list[str],
    password_hash: str | None,
    existing: bool,
) -> Registration:
    assert clinic.id is not None
    request = RegistrationRequest(
        clinic_id=clinic.id,
        cpr=cpr,
        name=name,
        email=email,
        password_hash=password_hash,
        services=catalog.join_services(asked),
    )
    session.add(request)
    session.flush()
    audit.record(
        session,
        actor=ACTOR,
        clinic=clinic.code,
        action="request.submit",
        target=f"request:{request.id}",
        details={"cpr": cpr, "services": asked, "existing_user": existing},
    )
    outbox.enqueue(
        session,
        to=email,
        template="request_received",
        clinic_id=clinic.id,
        name=name,
        clinic_name=clinic.name,
    )
    session.commit()
    return Registration(
        outcome="requested",
        clinic_code=clinic.code,
        clinic_name=clinic.name,
        services=asked,
        request_id=request.id,
        existing_user=existing,
    )


def _open(
    session: Session,
    *,
    clinic: Clinic,
    cpr: str,
    name: str,
    email: str,
    granted: list[str],
    password_hash: str | None,
) -> Registration:
    assert clinic.id is not None
    linked = users.ensure_linked(
        session,
        clinic_id=clinic.id,
        cpr=cpr,
        name=name,
        email=email,
        origin="self",
        by=ACTOR,
        services=catalog.join_services(granted),
        password_hash=password_hash,
    )
    if not linked.link_created:  # a concurrent registration or a staff member was first
        raise Conflict(f"This CPR number already has access to clinic {clinic.code} on {PORTAL}.")
    # A request kept from when the clinic required approval is superseded by this one.
    for old in session.exec(
        select(RegistrationRequest).where(
            RegistrationRequest.clinic_id == clinic.id,
            RegistrationRequest.cpr == cpr,
            RegistrationRequest.status == "pending",
        )
    ):
        old.status, old.decided_by, old.decided_at = "withdrawn", ACTOR, utcnow()
        old.password_hash = None
        session.add(old)
    audit.record(
        session,
        actor=ACTOR,
        clinic=clinic.code,
        action="registration.open",
        target=f"cpr:{cpr}",
        details={
            "user_created": linked.user_created,
            "services": granted,
            "differences": sorted(linked.differences),
        },
    )
    outbox.enqueue(
        session,
        to=email,
        template="registered",
        clinic_id=clinic.id,
        name=name,
        clinic_name=clinic.name,
    )
    session.commit()
    return Registration(
        outcome="created" if linked.user_created else "linked",
        clinic_code=clinic.code,
        clinic_name=clinic.name,
        services=granted,
        existing_user=not linked.user_created,
    )
