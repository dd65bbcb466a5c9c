"""Online self-registration under the clinic's registration mode: rule R2.

``register`` is what the web portal does when a patient registers at a clinic:

- mode ``none``: refused with a Danish message telling the patient to contact the
  clinic; nothing is stored, nothing is audited, no mail.
- mode ``approval``: a pending ``RegistrationRequest`` in the clinic's queue (a doctor
  decides it, ``services/approvals.py``); e-mail ``request_received``. A second registration
  for the same CPR at the same clinic while one is pending is refused, not duplicated.
- mode ``open``: the user is created (origin ``self``) or, when the CPR already has a
  user, that user is linked (R1: never a second user); services granted = requested ∩
  the clinic's enabled services; e-mail ``registered``.

A self-registration acts only for the person who proves to be the patient:

- A CPR number that already has a portal user registers only inside a MitID login
  (``broker``, ``services/mitid.py``); otherwise it is refused with "log in instead"
  (the form must say that a user exists, R1) and nothing is stored but the refusal's
  audit event: no request, no link, no mail. Inside the MitID login the user keeps the
  name, e-mail and password they have (typed ones are not used, the ``password`` callback
  is not called) and every mail goes to the user's stored e-mail. A request shows the
  clinic only the name and e-mail typed (if any), never the stored ones: the user is not
  the clinic's patient until a doctor approves.
- A new user chooses a password and gives an e-mail (policy checked, stored hashed: on
  the request until a doctor approves it, then moved to the new user). They are
  usable for two-factor login only once vouched for (``services/login_rules.py``): at once
  when the registration was made inside a MitID login, else when the patient confirms
  them inside a MitID login later or a clinic sets the no-MitID flag.

A CPR already linked to the clinic is told it already has access (only inside MitID).

The refusal in mode ``none`` is the patient's Danish message (as on the portal); the
other messages are English, like the rest of the ``portal`` group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, PortalUser, RegistrationRequest
from patientportal_cli.errors import Conflict, MissingInput, Refused
from patientportal_cli.services import audit, catalog, passwords, users
from patientportal_cli.services.auth import find_clinic
from patientportal_cli.services.contact import clean_name, normalize_email
from patientportal_cli.services.cpr import normalize_cpr
from patientportal_cli.services.mail import outbox
from patientportal_cli.services.mitid import MitIdBroker
from patientportal_cli.vocabulary import Action, RequestStatus

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
    mitid: bool = False  # made inside a MitID login


def _pending_requests(*, clinic_id: int, cpr: str) -> SelectOfScalar[RegistrationRequest]:
    """The CPR number's pending requests at the clinic, oldest first."""
    return (
        select(RegistrationRequest)
        .where(
            RegistrationRequest.clinic_id == clinic_id,
            RegistrationRequest.cpr == cpr,
            RegistrationRequest.status == RequestStatus.PENDING,
        )
        .order_by(col(RegistrationRequest.id))
    )


def _pending(session: Session, *, clinic_id: int, cpr: str) -> RegistrationRequest | None:
    return session.exec(_pending_requests(clinic_id=clinic_id, cpr=cpr)).first()


LOG_IN_INSTEAD = (
    "A portal user with this CPR number already exists: log in instead. To add clinic "
    "{clinic} to it, register inside a MitID login: `patientportal portal register CPR "
    "--clinic {clinic} --login mitid`."
)
MITID_FAILED = "MitID did not confirm your identity: registration failed."
# a deactivated account (services/lifecycle.py) registers nowhere (D46): the portal's
# neutral Danish refusal, as at login (D26), never the reason
NOT_ACTIVE = "Din adgang til patientportalen er ikke aktiv. Kontakt klinikken."


def _offering(session: Session, clinic_code: str) -> Clinic:
    """The clinic, or the patient's Danish refusal when it takes no online registrations."""
    clinic = find_clinic(session, clinic_code)
    if clinic.registration_mode == "none":
        raise Refused(
            f"{clinic.name} tilbyder ikke online selv-oprettelse på {PORTAL}. Kontakt "
            "venligst klinikken, som kan oprette dig som bruger."
        )
    return clinic


def _refuse(session: Session, message: str, *, clinic: Clinic, cpr: str, **details: Any) -> Refused:
    """Audit a refused registration (nothing else is stored), commit, return the error."""
    audit.record(
        session,
        actor=ACTOR,
        clinic=clinic.code,
        action=Action.REGISTRATION_REFUSED,
        target=f"cpr:{cpr}",
        details=details,
    )
    session.commit()
    return Refused(message)


def _situation(
    session: Session, *, clinic_code: str, cpr: str, mitid: bool
) -> tuple[Clinic, PortalUser | None]:
    """The clinic and the existing user, or the refusal that applies.

    ``mitid``: the registration is made inside a MitID login for ``cpr``. Without it, a
    CPR number that has a portal user is refused ("log in instead") before anything
    else is told about it (linked here, a request waiting).
    """
    clinic = _offering(session, clinic_code)
    assert clinic.id is not None
    user = users.find_user(session, cpr)
    if user is not None and not mitid:
        raise _refuse(
            session,
            LOG_IN_INSTEAD.format(clinic=clinic.code),
            clinic=clinic,
            cpr=cpr,
            reason="existing_user_not_logged_in",
        )
    if user is not None and user.deactivated_at is not None:
        raise _refuse(session, NOT_ACTIVE, clinic=clinic, cpr=cpr, reason="not_active")
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


def _verify(session: Session, *, clinic_code: str, cpr: str, broker: MitIdBroker) -> datetime:
    """The MitID login a registration is made in: when the broker confirmed ``cpr``."""
    clinic = _offering(session, clinic_code)
    result = broker.verify(cpr)
    if not result.verified or result.cpr != cpr:
        raise _refuse(
            session,
            MITID_FAILED,
            clinic=clinic,
            cpr=cpr,
            reason="mitid_not_verified",
            broker=broker.name,
        )
    return utcnow()


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
    name: str | None = None,
    email: str | None = None,
    services: list[str] | str | None = None,
    password: Callable[[], str],
    details: Callable[[], tuple[str, str]] | None = None,
    broker: MitIdBroker | None = None,
) -> Registration:
    """Self-register ``cpr`` at the clinic, under its registration mode.

    ``services``: the services asked for (default: all the clinic offers). ``broker``:
    the registration is made inside a MitID login (``services/mitid.py``); only then may
    a CPR number that has a portal user register (its stored name, e-mail and password
    are kept; ``name``/``email`` are not used), and a new user's password and e-mail
    count as vouched for by the patient. ``name``/``email``: a new user's; when None,
    ``details`` is called for them. ``password`` and ``details`` are called only when a
    new user will be created (they may prompt: the database transaction is closed while
    they run).
    """
    cpr = normalize_cpr(cpr)
    typed = _Registrant(
        name=clean_name(name) if name is not None else None,
        email=normalize_email(email) if email is not None else None,
    )
    wanted = catalog.parse_services(services) if services is not None else None
    verified_at = None
    if broker is not None:
        verified_at = _verify(session, clinic_code=clinic_code, cpr=cpr, broker=broker)
    mitid = verified_at is not None
    clinic, user = _situation(session, clinic_code=clinic_code, cpr=cpr, mitid=mitid)
    if user is None:
        session.rollback()  # no transaction (SQLite: no write lock) while the patient types
        typed = _ask_new_user(typed, password=password, details=details)
    # The transaction that stores: look again, the world may have moved meanwhile.
    assert clinic.id is not None
    _lock_cpr(session, clinic_id=clinic.id, cpr=cpr)
    clinic, user = _situation(session, clinic_code=clinic_code, cpr=cpr, mitid=mitid)
    who = _registrant(typed, user, approval=clinic.registration_mode == "approval")
    offered = catalog.split_services(clinic.services)
    asked = wanted if wanted is not None else offered
    if clinic.registration_mode == "approval":
        return _request(
            session, clinic=clinic, cpr=cpr, who=who, asked=asked, verified_at=verified_at
        )
    granted = [s for s in asked if s in offered]
    return _open(session, clinic=clinic, cpr=cpr, who=who, granted=granted, verified_at=verified_at)


@dataclass(frozen=True)
class _Registrant:
    """Who registers: what was typed (or, for an existing user, what is used)."""

    name: str | None
    email: str | None
    password_hash: str | None = None
    user: PortalUser | None = None  # the existing user, inside a MitID login

    @property
    def recipient(self) -> tuple[str, str]:
        """The mail's address and name: an existing user's own, never a typed one."""
        if self.user is not None:
            return self.user.email, self.user.name
        return self.email or "", self.name or ""


def _ask_new_user(
    typed: _Registrant,
    *,
    password: Callable[[], str],
    details: Callable[[], tuple[str, str]] | None,
) -> _Registrant:
    """A new user's name and e-mail (``details`` for those not typed) and password
    (policy checked, hashed). May prompt: the caller has no transaction open."""
    name, email = typed.name, typed.email
    if name is None or email is None:
        if details is None:
            raise MissingInput("--name" if name is None else "--email")
        asked_name, asked_email = details()
        name = name if name is not None else clean_name(asked_name)
        email = email if email is not None else normalize_email(asked_email)
    chosen = password()
    passwords.check_policy(chosen)
    return _Registrant(name, email, passwords.hash_password(chosen))


def _registrant(typed: _Registrant, user: PortalUser | None, *, approval: bool) -> _Registrant:
    """Who registers, at the second look (``user``: the existing user then)."""
    if user is not None:
        # the patient proved who they are; their user keeps its own name, e-mail and
        # password, and is mailed at its own address only. A request shows the clinic only
        # what was typed here (the user is not this clinic's patient before approval).
        if approval:
            return _Registrant(typed.name or "", typed.email or "", user=user)
        return _Registrant(user.name, user.email, user=user)
    if typed.password_hash is None or typed.name is None or typed.email is None:
        # a user seen at the first look is gone (users are kept)
        raise Conflict("The registration could not be completed; please try again.")
    return typed


def _request(
    session: Session,
    *,
    clinic: Clinic,
    cpr: str,
    who: _Registrant,
    asked: list[str],
    verified_at: datetime | None,
) -> Registration:
    assert clinic.id is not None and who.name is not None and who.email is not None
    existing = who.user is not None
    request = RegistrationRequest(
        clinic_id=clinic.id,
        cpr=cpr,
        name=who.name,
        email=who.email,
        password_hash=who.password_hash,
        services=catalog.join_services(asked),
        mitid_verified_at=verified_at,
    )
    session.add(request)
    session.flush()
    audit.record(
        session,
        actor=ACTOR,
        clinic=clinic.code,
        action=Action.REQUEST_SUBMIT,
        target=f"request:{request.id}",
        details={
            "cpr": cpr,
            "services": asked,
            "existing_user": existing,
            "mitid": verified_at is not None,
        },
    )
    outbox.enqueue(
        session,
        to=who.recipient[0],
        template="request_received",
        clinic_id=clinic.id,
        name=who.recipient[1],
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
        mitid=verified_at is not None,
    )


def _open(
    session: Session,
    *,
    clinic: Clinic,
    cpr: str,
    who: _Registrant,
    granted: list[str],
    verified_at: datetime | None,
) -> Registration:
    linked = _link_registrant(
        session, clinic=clinic, cpr=cpr, who=who, granted=granted, verified_at=verified_at
    )
    if verified_at is not None:  # the registration was made inside a MitID login
        linked.user.mitid_verified_at = verified_at
        session.add(linked.user)
    _withdraw_pending(session, clinic=clinic, cpr=cpr)
    audit.record(
        session,
        actor=ACTOR,
        clinic=clinic.code,
        action=Action.REGISTRATION_OPEN,
        target=f"cpr:{cpr}",
        details={
            "user_created": linked.user_created,
            "services": granted,
            "mitid": verified_at is not None,
        },
    )
    # to the user's own address (a new user's is the one just given)
    outbox.to_patient(session, "registered", user=linked.user, clinic=clinic)
    session.commit()
    return Registration(
        outcome="created" if linked.user_created else "linked",
        clinic_code=clinic.code,
        clinic_name=clinic.name,
        services=granted,
        existing_user=not linked.user_created,
        mitid=verified_at is not None,
    )


def _link_registrant(
    session: Session,
    *,
    clinic: Clinic,
    cpr: str,
    who: _Registrant,
    granted: list[str],
    verified_at: datetime | None,
) -> users.Linked:
    """Create the user or link the existing one (R1); a Conflict when someone else was
    first (a link made meanwhile, or a user created meanwhile outside MitID)."""
    assert clinic.id is not None and who.name is not None and who.email is not None
    linked = users.ensure_linked(
        session,
        clinic_id=clinic.id,
        cpr=cpr,
        name=who.name,
        email=who.email,
        origin="self",
        by=ACTOR,
        services=catalog.join_services(granted),
        password_hash=who.password_hash,
        vouched_at=verified_at,
    )
    if not linked.link_created:  # a concurrent registration or a staff member was first
        raise Conflict(f"This CPR number already has access to clinic {clinic.code} on {PORTAL}.")
    if not linked.user_created and verified_at is None:  # created meanwhile by someone else
        raise Conflict("The registration could not be completed; please try again.")
    return linked


def _withdraw_pending(session: Session, *, clinic: Clinic, cpr: str) -> None:
    """A request kept from when the clinic required approval is superseded by this one."""
    assert clinic.id is not None
    for old in session.exec(_pending_requests(clinic_id=clinic.id, cpr=cpr)):
        old.status, old.decided_by, old.decided_at = RequestStatus.WITHDRAWN, ACTOR, utcnow()
        old.password_hash = None
        session.add(old)
