"""Portal users and their links to clinics: rule R1 (one login per CPR, shared).

A user is created once per CPR; creating one that exists links the existing user. Two
processes creating the same CPR at once: the loser's insert fails on the unique CPR
inside a savepoint, and it links the winner's user instead. (On PostgreSQL the loser's
insert waits for the winner's transaction, then fails; on SQLite writers take turns.)

It also holds the lookup of "this clinic's patient" that every patient command uses:
another clinic's patient is "not a patient at clinic X"; the only thing told about a
CPR number that is not the clinic's own is whether a portal user exists (so that staff
can link it), never which clinics it is linked to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, ClinicLink, LinkHistory, PortalUser
from patientportal_cli.errors import NotFound, Refused
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.cpr import normalize_cpr
from patientportal_cli.services.masking import mask_cpr, patient_label


@dataclass
class Linked:
    user: PortalUser
    link: ClinicLink
    user_created: bool
    link_created: bool
    # field -> (value on the existing user, value given); reported, never overwritten
    differences: dict[str, tuple[str, str]] = field(default_factory=dict)


def find_user(session: Session, cpr: str) -> PortalUser | None:
    return session.exec(select(PortalUser).where(PortalUser.cpr == cpr)).first()


def find_link(session: Session, *, clinic_id: int, user_id: int) -> ClinicLink | None:
    return session.exec(
        select(ClinicLink).where(ClinicLink.clinic_id == clinic_id, ClinicLink.user_id == user_id)
    ).first()


def get_or_create_user(
    session: Session,
    *,
    cpr: str,
    name: str,
    email: str,
    origin: str,
    password_hash: str | None = None,
    vouched_at: datetime | None = None,
) -> tuple[PortalUser, bool]:
    """(user, created). Safe against a concurrent creation of the same CPR.

    A user a clinic creates (origin ``clinic``) has vouched-for credentials at once (the
    clinic typed the e-mail); a self-registered one only from ``vouched_at`` (given when
    the registration was made inside a MitID login), else not until the patient confirms
    them in a MitID login or a clinic sets the no-MitID flag (``services/login_rules.py``).
    """
    existing = find_user(session, cpr)
    if existing is not None:
        return existing, False
    if vouched_at is None and origin == "clinic":
        vouched_at = utcnow()
    user = PortalUser(
        cpr=cpr,
        name=name,
        email=email,
        origin=origin,
        password_hash=password_hash,
        credentials_vouched_at=vouched_at,
    )
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        winner = find_user(session, cpr)
        if winner is None:
            raise
        return winner, False
    return user, True


NOT_ACTIVE_LINK = (
    "The portal user with this CPR number is not active: it cannot be linked. If that is "
    "a mistake, a clinic where the patient is linked can reactivate it "
    "(`patientportal patient reactivate CPR`)."
)


def refuse_if_not_active(user: PortalUser) -> None:
    """A deactivated account (``services/lifecycle.py``) gets no new link at any clinic
    (D46): Refused, saying neither why nor where."""
    if user.deactivated_at is not None:
        raise Refused(NOT_ACTIVE_LINK)


def _lock_for_link(session: Session, user: PortalUser) -> PortalUser:
    """The user's row again, FOR SHARE on PostgreSQL: a link and a deactivation
    (``lifecycle``, FOR UPDATE) of one person take turns, so the link sees it."""
    return session.exec(
        select(PortalUser)
        .where(PortalUser.id == user.id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    ).one()


def link_user(
    session: Session,
    *,
    clinic_id: int,
    user: PortalUser,
    by: str,
    services: str,
    record_email: str | None = None,
) -> tuple[ClinicLink, bool]:
    """(link, created). Safe against a concurrent link of the same pair. A new link to a
    deactivated account is refused (``refuse_if_not_active``)."""
    assert user.id is not None
    existing = find_link(session, clinic_id=clinic_id, user_id=user.id)
    if existing is not None:
        return existing, False
    refuse_if_not_active(_lock_for_link(session, user))
    link = ClinicLink(
        clinic_id=clinic_id,
        user_id=user.id,
        linked_by=by,
        services=services,
        record_email=record_email,
    )
    try:
        with session.begin_nested():
            session.add(link)
            session.flush()
    except IntegrityError:
        winner = find_link(session, clinic_id=clinic_id, user_id=user.id)
        if winner is None:
            raise
        return winner, False
    _remember_link(session, clinic_id=clinic_id, cpr=user.cpr)
    return link, True


def _remember_link(session: Session, *, clinic_id: int, cpr: str) -> None:
    seen = session.exec(
        select(LinkHistory).where(LinkHistory.clinic_id == clinic_id, LinkHistory.cpr == cpr)
    ).first()
    if seen is None:
        try:
            with session.begin_nested():
                session.add(LinkHistory(clinic_id=clinic_id, cpr=cpr))
                session.flush()
        except IntegrityError:
            pass
    elif seen.unlinked_at is not None:
        seen.unlinked_at = None
        session.add(seen)


def forget_link(session: Session, link: ClinicLink, cpr: str) -> None:
    """Remove a link (its flag and services go with it); the history keeps 'linked before'."""
    seen = session.exec(
        select(LinkHistory).where(LinkHistory.clinic_id == link.clinic_id, LinkHistory.cpr == cpr)
    ).first()
    if seen is not None:
        seen.unlinked_at = utcnow()
        session.add(seen)
    session.delete(link)
    session.flush()


def ensure_linked(
    session: Session,
    *,
    clinic_id: int,
    cpr: str,
    name: str,
    email: str,
    origin: str,
    by: str,
    services: str,
    password_hash: str | None = None,
    vouched_at: datetime | None = None,
) -> Linked:
    """Create the user (or find the existing one, R1) and link it to the clinic."""
    user, user_created = get_or_create_user(
        session,
        cpr=cpr,
        name=name,
        email=email,
        origin=origin,
        password_hash=password_hash,
        vouched_at=vouched_at,
    )
    differences: dict[str, tuple[str, str]] = {}
    if not user_created:
        if user.name != name:
            differences["name"] = (user.name, name)
        if user.email.casefold() != email.casefold():
            differences["email"] = (user.email, email)
    link, link_created = link_user(
        session, clinic_id=clinic_id, user=user, by=by, services=services, record_email=email
    )
    return Linked(user, link, user_created, link_created, differences)


# --- this clinic's patient (isolation) ------------------------------------------------

CREATE_HINT = "patientportal patient create CPR --name NAME --email EMAIL"
LINK_HINT = "patientportal patient link CPR"


def target(cpr: str) -> str:
    """The audit target of a patient (output masks it)."""
    return f"cpr:{cpr}"


def current_clinic(session: Session, actor: Actor) -> Clinic:
    clinic_id, code = actor.require_clinic()
    clinic = session.get(Clinic, clinic_id)
    if clinic is None:  # pragma: no cover - the actor was resolved from this row
        raise NotFound(f"No clinic with code {code!r}.")
    return clinic


def not_a_patient(cpr: str, clinic: Clinic, *, user_exists: bool) -> NotFound:
    """The isolation message: never names the clinics a user is linked to."""
    if user_exists:
        return NotFound(
            f"{mask_cpr(cpr)} is not a patient at clinic {clinic.code}. A portal user with "
            f"this CPR number exists; link it to the clinic with `{LINK_HINT}`."
        )
    return NotFound(
        f"{mask_cpr(cpr)} is not a patient at clinic {clinic.code}, and no portal user has "
        f"this CPR number; create one with `{CREATE_HINT}`."
    )


def lookup(session: Session, *, clinic: Clinic, cpr: str) -> tuple[PortalUser, ClinicLink]:
    """This clinic's patient (user and link), or NotFound (see ``not_a_patient``)."""
    number = normalize_cpr(cpr)
    user = find_user(session, number)
    if user is None:
        raise not_a_patient(number, clinic, user_exists=False)
    assert user.id is not None and clinic.id is not None
    link = find_link(session, clinic_id=clinic.id, user_id=user.id)
    if link is None:
        raise not_a_patient(number, clinic, user_exists=True)
    return user, link


@dataclass(frozen=True)
class PatientFacts:
    """What a confirmation or a result message about a patient here needs."""

    cpr: str
    name: str
    email: str
    record_email: str | None
    no_mitid: bool
    clinic_code: str

    @property
    def label(self) -> str:
        """``010203-**** (Karen Holm)``: the masked CPR number and the name."""
        return patient_label(self.cpr, self.name)


def link_facts(user: PortalUser, link: ClinicLink, clinic: Clinic) -> PatientFacts:
    """The ``PatientFacts`` of this clinic's patient (user and link)."""
    return PatientFacts(
        cpr=user.cpr,
        name=user.name,
        email=user.email,
        record_email=link.record_email,
        no_mitid=link.no_mitid,
        clinic_code=clinic.code,
    )


def locked_user(session: Session, user: PortalUser) -> PortalUser:
    """The user's row read again and locked for this transaction (PostgreSQL ``FOR
    UPDATE``; SQLite writers are serial), so that two changes of one person take turns
    and the second sees what the first did."""
    return session.exec(
        select(PortalUser)
        .where(PortalUser.id == user.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
