"""Patients at a clinic: create, link, unlink, show, list, invite, unlock, access (R1, R8).

Every function acts on the actor's current clinic only. Isolation: another clinic's
patient is "not a patient at clinic X", and the message is the same whichever (or
however many) other clinics the patient uses. The one thing staff learn about a CPR
number that is not theirs is whether a portal user exists, so that they can link it.

Choices made where the design is silent (also in the README):

- ``create`` for a CPR that already has a user links that user (R1); a name or e-mail
  that differs is reported (which field, never the stored value), never written. The
  link's ``record_email`` (the e-mail on this clinic's record card) is the e-mail given.
- Disclosure: until a user is linked here, staff learn only that it exists. A dry run
  (which links nothing) and a refusal never carry the stored name or e-mail of a user
  not linked here; the audit log records which fields differed, not their values. A dry
  run is audited as ``patient.dry_run`` (what was checked, and whether a user exists).
- ``create`` sends an activation code only to a user it created (and not with
  ``invite=False``); linking an existing user sends nothing.
- ``--no-mitid`` with an existing user whose e-mail differs from the one given is
  refused (nothing changes): security codes go to the user's e-mail, so that is the
  address the clinic must confirm. Link first, check the address, then ``no-mitid set``.
- ``invite`` (a new activation code; the older one stops working) only for users who
  have not chosen a password yet. It is not a password reset: an activated user is
  refused, as an e-mailed code must not replace a password the patient chose.
- ``unlock`` clears the failed-login count and the lock of the patient's CPR number
  (``services/throttle.py``, the one count of failed patient logins); when there is
  nothing to clear it changes nothing and writes no audit event.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, tuple_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, ClinicLink, LoginThrottle, PortalUser
from patientportal_cli.errors import Conflict, InvalidInput, NotFound, Refused
from patientportal_cli.services import (
    accesslog,
    audit,
    catalog,
    login_rules,
    nomitid,
    shared_email,
    throttle,
    users,
)
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.contact import clean_name, normalize_email
from patientportal_cli.services.cpr import normalize_cpr
from patientportal_cli.services.mail import outbox
from patientportal_cli.services.masking import mask_cpr
from patientportal_cli.services.users import (
    CREATE_HINT,
    current_clinic,
    link_facts,
    lookup,
    not_a_patient,
    target,
)
from patientportal_cli.vocabulary import Action


def check_services(clinic: Clinic, value: str | list[str] | None) -> list[str]:
    """Services to grant: all the clinic offers (None), or a subset of them."""
    offered = catalog.split_services(clinic.services)
    if value is None:
        return offered
    chosen = catalog.parse_services(value)
    extra = [s for s in chosen if s not in offered]
    if extra:
        choices = ", ".join(offered) if offered else "none (it offers no services)"
        raise InvalidInput(
            f"Clinic {clinic.code} does not offer {extra[0]}: choose among {choices}."
        )
    return chosen


ACTIVE = "active"
NOT_ACTIVE = "not active"


def status(user: PortalUser) -> str:
    """What staff at every clinic see of an account: "active", or "not active" when it
    is deactivated (``services/lifecycle.py``), never why (D26)."""
    return NOT_ACTIVE if user.deactivated_at is not None else ACTIVE


def _same_email(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


# --- create and link -----------------------------------------------------------------


@dataclass
class LinkResult:
    """What ``create`` / ``link`` did (or, with dry_run, would do)."""

    cpr: str
    # None: not told (a dry run for a user not linked here: not this clinic's patient)
    name: str | None
    email: str | None
    clinic_code: str
    user_created: bool
    services: list[str]
    no_mitid: bool = False
    invited: bool = False
    dry_run: bool = False
    # fields ("email", "name") where the existing user differs from what was given;
    # reported without the stored values, never written
    differences: list[str] = field(default_factory=list)
    # other patients linked here with the user's e-mail (services/shared_email.py)
    shared_email: int = 0


def _refuse_unconfirmable(cpr: str, user: PortalUser, email: str) -> None:
    """--no-mitid for an existing user is confirmed for the address codes go to. The
    refusal does not tell the stored address (the user is not linked here)."""
    if not _same_email(user.email, email):
        raise Refused(
            f"The portal user {mask_cpr(cpr)} has another e-mail than the one given "
            f"({email}); security codes go to the user's e-mail, so the no-MitID flag "
            "cannot be confirmed for the address given. Nothing was changed: link the "
            "patient without --no-mitid, check the address with the patient, then run "
            "`patientportal no-mitid set CPR`."
        )


def _check_existing(
    session: Session, *, clinic: Clinic, cpr: str, email: str, no_mitid: bool
) -> None:
    """A user with this CPR number may be linked here only when not linked here already,
    active (D46) and, for the no-MitID flag, with an e-mail that can be confirmed."""
    assert clinic.id is not None
    existing = users.find_user(session, cpr)
    if existing is None:
        return
    assert existing.id is not None
    if users.find_link(session, clinic_id=clinic.id, user_id=existing.id) is not None:
        raise already_linked(cpr, clinic)
    users.refuse_if_not_active(existing)  # D46
    if no_mitid:
        _refuse_unconfirmable(cpr, existing, email)


def _check_race(
    session: Session,
    *,
    linked: users.Linked,
    clinic: Clinic,
    cpr: str,
    email: str,
    no_mitid: bool,
) -> None:
    """What a concurrent command may have done between the checks and the link: linked
    the user here first, or created the user with another e-mail."""
    if not linked.link_created:
        session.rollback()
        raise already_linked(cpr, clinic)
    if no_mitid and not linked.user_created:
        try:
            _refuse_unconfirmable(cpr, linked.user, email)
        except Refused:
            session.rollback()
            raise


def create(
    session: Session,
    *,
    actor: Actor,
    cpr: str,
    name: str,
    email: str,
    services: str | list[str] | None = None,
    no_mitid: bool = False,
    email_owner_confirmed: bool = False,
    invite: bool = True,
    dry_run: bool = False,
) -> LinkResult:
    """Create the portal user (origin clinic) and link it here, or link the existing
    user (R1). ``no_mitid`` sets the flag in the same transaction (R8) and needs
    ``email_owner_confirmed`` (R6). Already linked here: Conflict."""
    number = normalize_cpr(cpr)
    name = clean_name(name)
    email = normalize_email(email)
    clinic = current_clinic(session, actor)
    granted = check_services(clinic, services)
    if no_mitid and not email_owner_confirmed:
        raise nomitid.confirmation_missing()
    assert clinic.id is not None
    _check_existing(session, clinic=clinic, cpr=number, email=email, no_mitid=no_mitid)
    linked = users.ensure_linked(
        session,
        clinic_id=clinic.id,
        cpr=number,
        name=name,
        email=email,
        origin="clinic",
        by=actor.username,
        services=catalog.join_services(granted),
    )
    _check_race(session, linked=linked, clinic=clinic, cpr=number, email=email, no_mitid=no_mitid)
    shared = shared_email.others_here(
        session, clinic_id=clinic.id, email=linked.user.email, user_id=linked.user.id
    )
    result = _finish_link(
        session,
        actor=actor,
        clinic=clinic,
        linked=linked,
        action=Action.PATIENT_CREATE,
        no_mitid=no_mitid,
        invite=invite and linked.user_created and not linked.user.password_hash,
        dry_run=dry_run,
    )
    result.shared_email = shared
    return result


def link(
    session: Session,
    *,
    actor: Actor,
    cpr: str,
    services: str | list[str] | None = None,
    no_mitid: bool = False,
    email_owner_confirmed: bool = False,
    email: str | None = None,
    dry_run: bool = False,
) -> LinkResult:
    """Link an existing portal user to this clinic (no user: NotFound, use ``create``).

    ``email``: the address the staff member confirmed for ``no_mitid`` (typed, as the
    user's stored address is not shown before the link); refused when it is not the
    user's."""
    number = normalize_cpr(cpr)
    clinic = current_clinic(session, actor)
    granted = check_services(clinic, services)
    if no_mitid and not email_owner_confirmed:
        raise nomitid.confirmation_missing()
    user = users.find_user(session, number)
    if user is None:
        raise no_user(number)
    assert clinic.id is not None and user.id is not None
    if users.find_link(session, clinic_id=clinic.id, user_id=user.id) is not None:
        raise already_linked(number, clinic)
    users.refuse_if_not_active(user)  # D46
    if no_mitid and email is not None:
        _refuse_unconfirmable(number, user, normalize_email(email))
    linked = users.ensure_linked(
        session,
        clinic_id=clinic.id,
        cpr=number,
        name=user.name,
        email=user.email,
        origin="clinic",
        by=actor.username,
        services=catalog.join_services(granted),
    )
    if not linked.link_created:
        session.rollback()
        raise already_linked(number, clinic)
    return _finish_link(
        session,
        actor=actor,
        clinic=clinic,
        linked=linked,
        action=Action.PATIENT_LINK,
        no_mitid=no_mitid,
        invite=False,
        dry_run=dry_run,
    )


def existing_user(session: Session, *, actor: Actor, cpr: str) -> str:
    """Before ``link``'s confirmation prompt: that a user exists and is not linked here
    yet (its CPR number only: nothing else of a user that is not this clinic's patient);
    ends the read transaction."""
    number = normalize_cpr(cpr)
    clinic = current_clinic(session, actor)
    user = users.find_user(session, number)
    if user is None:
        raise no_user(number)
    assert clinic.id is not None and user.id is not None
    if users.find_link(session, clinic_id=clinic.id, user_id=user.id) is not None:
        raise already_linked(number, clinic)
    users.refuse_if_not_active(user)  # D46: before the confirmation prompt
    number = user.cpr
    session.rollback()  # do not hold a write lock (SQLite) while a person answers
    return number


def no_user(cpr: str) -> NotFound:
    return NotFound(
        f"No portal user has the CPR number {mask_cpr(cpr)}: create the patient with `{CREATE_HINT}`."
    )


def already_linked(cpr: str, clinic: Clinic) -> Conflict:
    return Conflict(f"{mask_cpr(cpr)} is already linked to clinic {clinic.code}.")


def _finish_link(
    session: Session,
    *,
    actor: Actor,
    clinic: Clinic,
    linked: users.Linked,
    action: Action,
    no_mitid: bool,
    invite: bool,
    dry_run: bool,
) -> LinkResult:
    """What ``create`` and ``link`` end with: the result, the activation mail, the audit
    event and the no-MitID flag; a dry run then undoes all of it and is audited as such."""
    user, link_row = linked.user, linked.link
    assert user.id is not None and clinic.id is not None
    result = _link_result(clinic, linked, no_mitid=no_mitid, invite=invite, dry_run=dry_run)
    if invite:
        _send_activation(session, user=user, clinic=clinic)
    _audit_link(session, actor=actor, clinic=clinic, linked=linked, action=action, result=result)
    if no_mitid:
        nomitid.apply_flag(session, actor=actor, clinic=clinic, user=user, link=link_row)
    if dry_run:
        _undo_dry_run(session, actor=actor, clinic=clinic, action=action, result=result)
    session.commit()
    return result


def _link_result(
    clinic: Clinic, linked: users.Linked, *, no_mitid: bool, invite: bool, dry_run: bool
) -> LinkResult:
    user = linked.user
    # a dry run links nothing: an existing user stays another clinic's, so untold
    told = linked.user_created or not dry_run
    return LinkResult(
        cpr=user.cpr,
        name=user.name if told else None,
        email=user.email if told else None,
        clinic_code=clinic.code,
        user_created=linked.user_created,
        services=catalog.split_services(linked.link.services),
        no_mitid=no_mitid,
        invited=invite,
        dry_run=dry_run,
        differences=sorted(linked.differences),
    )


def _audit_link(
    session: Session,
    *,
    actor: Actor,
    clinic: Clinic,
    linked: users.Linked,
    action: Action,
    result: LinkResult,
) -> None:
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=action,
        target=target(result.cpr),
        details={
            "user_created": linked.user_created,
            "services": result.services,
            "record_email": linked.link.record_email,
            "no_mitid": result.no_mitid,
            "invited": result.invited,
            "differences": result.differences,
        },
    )


def _undo_dry_run(
    session: Session, *, actor: Actor, clinic: Clinic, action: Action, result: LinkResult
) -> None:
    """Roll the link back and audit only that it was checked (``patient.dry_run``); the
    user may be gone with the rollback, so its CPR number comes from ``result``."""
    session.rollback()
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.PATIENT_DRY_RUN,
        target=target(result.cpr),
        details={
            "command": action.removeprefix("patient."),
            "user_exists": not result.user_created,
        },
    )


def _send_activation(session: Session, *, user: PortalUser, clinic: Clinic) -> None:
    assert user.id is not None
    outbox.activation(session, user=user, clinic=clinic)


# --- one patient ---------------------------------------------------------------------


def summary(session: Session, *, actor: Actor, cpr: str) -> users.PatientFacts:
    """A few facts for a confirmation prompt; ends the read transaction."""
    clinic = current_clinic(session, actor)
    user, link_row = lookup(session, clinic=clinic, cpr=cpr)
    facts = link_facts(user, link_row, clinic)
    session.rollback()  # do not hold a write lock (SQLite) while a person answers
    return facts


def unlink(session: Session, *, actor: Actor, cpr: str) -> users.PatientFacts:
    """Remove this clinic's link (its flag and services go with it); the user stays.
    The facts are those from before the link went."""
    clinic = current_clinic(session, actor)
    user, link_row = lookup(session, clinic=clinic, cpr=cpr)
    facts = link_facts(user, link_row, clinic)
    services = catalog.split_services(link_row.services)
    users.forget_link(session, link_row, user.cpr)
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.PATIENT_UNLINK,
        target=target(user.cpr),
        details={"no_mitid": facts.no_mitid, "services": services},
    )
    session.commit()
    return facts


@dataclass(frozen=True)
class PatientRecord:
    """User + this clinic's link, as one flat record; ``as_row`` gives it with stable
    snake_case keys in this order (the ``patient show`` output). The failed logins and
    lock are those of the CPR number (``services/throttle.py``)."""

    cpr: str
    name: str
    email: str
    record_email: str | None
    origin: str
    activated: bool
    status: str
    mitid_verified_at: datetime | None
    clinic: str
    linked_at: datetime
    linked_by: str
    services: list[str]
    no_mitid: bool
    no_mitid_changed_at: datetime | None
    no_mitid_changed_by: str | None
    email_owner_confirmed_by: str | None
    email_owner_confirmed_at: datetime | None
    email_owner_confirmed_email: str | None
    mitid_required_after: datetime | None
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime

    def as_row(self) -> dict[str, Any]:
        """The fields in order, for ``output.record`` (keys are the field names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def record(
    session: Session, user: PortalUser, link_row: ClinicLink, clinic: Clinic
) -> PatientRecord:
    """The ``PatientRecord`` of this clinic's patient (user and link)."""
    return PatientRecord(
        cpr=user.cpr,
        name=user.name,
        email=user.email,
        record_email=link_row.record_email,
        origin=user.origin,
        activated=bool(user.password_hash),
        status=status(user),
        mitid_verified_at=user.mitid_verified_at,
        clinic=clinic.code,
        linked_at=link_row.linked_at,
        linked_by=link_row.linked_by,
        services=catalog.split_services(link_row.services),
        no_mitid=link_row.no_mitid,
        no_mitid_changed_at=link_row.no_mitid_changed_at,
        no_mitid_changed_by=link_row.no_mitid_changed_by,
        email_owner_confirmed_by=link_row.email_owner_confirmed_by,
        email_owner_confirmed_at=link_row.email_owner_confirmed_at,
        email_owner_confirmed_email=link_row.email_owner_confirmed_email,
        mitid_required_after=link_row.mitid_required_after,
        failed_logins=throttle.failures(session, kind=throttle.PATIENT, name=user.cpr),
        locked_until=login_rules.locked_until(session, user),
        created_at=user.created_at,
    )


def show(session: Session, *, actor: Actor, cpr: str, fmt: str = "table") -> PatientRecord:
    """The patient's record here; the look-up is audited (``patient.show``)."""
    clinic = current_clinic(session, actor)
    user, link_row = lookup(session, clinic=clinic, cpr=cpr)
    row = record(session, user, link_row, clinic)
    accesslog.looked_up(
        session, actor=actor, action=Action.PATIENT_SHOW, cpr=user.cpr, details={"format": fmt}
    )
    session.commit()
    return row


def login_access(session: Session, *, actor: Actor, cpr: str) -> login_rules.LoginAccess:
    """``login_rules.login_access`` for a CPR at this clinic. A user not linked here gets
    "not linked here" (a user exists); no user at all: NotFound. Audited
    (``patient.access``, with whether the user is linked here)."""
    number = normalize_cpr(cpr)
    clinic = current_clinic(session, actor)
    user = users.find_user(session, number)
    if user is None:
        raise not_a_patient(number, clinic, user_exists=False)
    assert clinic.id is not None
    result = login_rules.login_access(session, clinic_id=clinic.id, user=user)
    linked = result.linked
    accesslog.looked_up(
        session, actor=actor, action=Action.PATIENT_ACCESS, cpr=number, details={"linked": linked}
    )
    session.commit()
    return result


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def make_cursor(name: str, user_id: int) -> str:
    """The ``--after`` value that continues a listing after the row (name, user id)."""
    raw = json.dumps([name, user_id], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def parse_cursor(text: str) -> tuple[str, int]:
    """(name, user id) from an ``--after`` value, or InvalidInput."""
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
        name, user_id = json.loads(raw.decode("utf-8"))
        if isinstance(name, str) and isinstance(user_id, int) and not isinstance(user_id, bool):
            return name, user_id
    except (ValueError, TypeError, UnicodeDecodeError):
        pass
    raise InvalidInput(
        "Invalid --after value: use the one a previous `patientportal patient list "
        "--limit N` printed."
    )


@dataclass(frozen=True)
class CareFilter:
    """``patient list``'s filters for accounts that need care (issue 15, D30); every one
    given must hold. ``inactive_since``: no portal login since this instant, or never
    one and created before it."""

    never_activated: bool = False
    inactive_since: datetime | None = None
    locked: bool = False
    deactivated: bool = False
    shared_email: bool = False

    def given(self) -> dict[str, Any]:
        """The filters given, for the listing's audit event."""
        values = {
            "never_activated": self.never_activated,
            "inactive_since": self.inactive_since.isoformat() if self.inactive_since else None,
            "locked": self.locked,
            "deactivated": self.deactivated,
            "shared_email": self.shared_email,
        }
        return {k: v for k, v in values.items() if v}

    def where(self, query: Any, clinic_id: int) -> Any:
        """``query`` (of PortalUser joined with this clinic's links) narrowed in SQL."""
        if self.never_activated:
            query = query.where(col(PortalUser.password_hash).is_(None))
        if self.deactivated:
            query = query.where(col(PortalUser.deactivated_at).is_not(None))
        if self.inactive_since is not None:
            cutoff = self.inactive_since
            query = query.where(
                or_(
                    col(PortalUser.last_login_at) < cutoff,
                    and_(
                        col(PortalUser.last_login_at).is_(None),
                        col(PortalUser.created_at) < cutoff,
                    ),
                )
            )
        if self.shared_email:
            other, other_link = aliased(PortalUser), aliased(ClinicLink)
            query = query.where(
                select(other.id)
                .join(other_link, col(other_link.user_id) == other.id)
                .where(
                    other_link.clinic_id == clinic_id,
                    func.lower(other.email) == func.lower(PortalUser.email),
                    other.id != PortalUser.id,
                )
                .exists()
            )
        return query


def parse_day(text: str, *, flag: str) -> datetime:
    """``YYYY-MM-DD`` as the instant its day starts in Copenhagen (in UTC)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"Invalid {flag} {text!r}: give a date as YYYY-MM-DD.") from None
    start = datetime.combine(day, time(0, 0), tzinfo=ZoneInfo("Europe/Copenhagen"))
    return start.astimezone(UTC)


def _locked_keys(session: Session) -> set[str]:
    """The throttle keys locked now (``services/throttle.py``): a handful at most."""
    now = utcnow()
    found = session.exec(
        select(LoginThrottle.key).where(col(LoginThrottle.locked_until) > now)
    ).all()
    return set(found)


def iter_patients(
    session: Session,
    *,
    actor: Actor,
    search: str | None = None,
    no_mitid_only: bool = False,
    after: tuple[str, int] | None = None,
    batch: int = 1000,
    care: CareFilter | None = None,
) -> Iterator[tuple[PortalUser, ClinicLink]]:
    """This clinic's patients, ordered by name (then user id), in keyset batches.

    Each batch is its own query (``(name, id) > last row's``, index on portal_user
    (name, id)), so memory stays constant, nothing holds a cursor open between
    batches and a commit in between (a CPR reveal's audit event) does no harm.
    ``after`` starts after that (name, user id). ``search`` matches a part of the name
    or e-mail (case-insensitive, also for æ, ø, å on SQLite) or, when it is made of
    digits (a hyphen or space allowed), a part of the CPR number. ``care``: only the
    accounts that need care (``CareFilter``).
    """
    clinic = current_clinic(session, actor)  # now, not at the first row
    return _batches(session, clinic, search, no_mitid_only, after, batch, care or CareFilter())


def _batches(
    session: Session,
    clinic: Clinic,
    search: str | None,
    no_mitid_only: bool,
    key: tuple[str, int] | None,
    batch: int,
    care: CareFilter,
) -> Iterator[tuple[PortalUser, ClinicLink]]:
    needle = _fold(search.strip()) if search and search.strip() else None
    digits = needle.replace("-", "").replace(" ", "") if needle else None
    if digits is not None and not digits.isdigit():
        digits = None
    assert clinic.id is not None
    locked = _locked_keys(session) if care.locked else None
    while True:
        query = (
            select(PortalUser, ClinicLink)
            .join(ClinicLink, col(ClinicLink.user_id) == PortalUser.id)
            .where(ClinicLink.clinic_id == clinic.id)
        )
        if no_mitid_only:
            query = query.where(col(ClinicLink.no_mitid).is_(True))
        query = care.where(query, clinic.id)
        if key is not None:
            query = query.where(
                tuple_(col(PortalUser.name), col(PortalUser.id)) > tuple_(key[0], key[1])
            )
        query = query.order_by(col(PortalUser.name), col(PortalUser.id)).limit(batch)
        found = session.exec(query).all()
        for user, link_row in found:
            assert user.id is not None
            key = (user.name, user.id)
            if needle is not None and not (
                needle in _fold(user.name)
                or needle in _fold(user.email)
                or (digits is not None and digits in user.cpr)
            ):
                continue
            if locked is not None and throttle.key(throttle.PATIENT, user.cpr) not in locked:
                continue
            yield user, link_row
        if len(found) < batch:
            return
        batch = max(batch, 1000)


class PatientListing:
    """A listing being streamed (``list_patients``): iterate it for the rows, then
    call ``finish`` to write its one audit event and commit."""

    def __init__(
        self,
        session: Session,
        *,
        actor: Actor,
        matches: Iterator[tuple[PortalUser, ClinicLink]],
        limit: int | None,
        filters: dict[str, Any],
        fmt: str,
    ) -> None:
        self._session, self._actor, self._matches = session, actor, matches
        self._limit, self._filters, self._fmt = limit, filters, fmt
        self.count = 0
        self._named: list[str] = []  # the first NAMED_AT_MOST + 1 CPR numbers shown
        self.next_after: str | None = None  # set when --limit stopped before the end
        self._finished = False

    def __iter__(self) -> Iterator[PatientRow]:
        last: tuple[str, int] | None = None
        for user, link_row in self._matches:
            if self._limit is not None and self.count >= self._limit:
                assert last is not None
                self.next_after = make_cursor(*last)
                return
            assert user.id is not None
            last = (user.name, user.id)
            self.count += 1
            if len(self._named) <= accesslog.NAMED_AT_MOST:
                self._named.append(user.cpr)
            yield list_row(user, link_row)

    def finish(self) -> None:
        """Audit the listing as ONE ``patient.list`` event (how many rows were shown,
        also when the output stopped early; the filter; the format) and commit."""
        if self._finished:
            return
        self._finished = True
        accesslog.listed(
            self._session,
            actor=self._actor,
            action=Action.PATIENT_LIST,
            cprs=self._named if self.count <= accesslog.NAMED_AT_MOST else [],
            count=self.count,
            filters=self._filters,
            fmt=self._fmt,
        )
        self._session.commit()


def list_patients(
    session: Session,
    *,
    actor: Actor,
    search: str | None = None,
    no_mitid_only: bool = False,
    fmt: str = "table",
    limit: int | None = None,
    after: str | None = None,
    care: CareFilter | None = None,
) -> PatientListing:
    """This clinic's patients ordered by name, streamed (``iter_patients``): at most
    ``limit`` of them, after the ``after`` cursor (``make_cursor`` of the last row of
    the previous page; ``next_after`` has it for the next one). The caller iterates the
    listing, then calls ``finish`` (the audit event, see ``accesslog.listed``)."""
    if limit is not None and limit < 1:
        raise InvalidInput("--limit must be 1 or more.")
    start = parse_cursor(after) if after is not None else None
    filters: dict[str, Any] = {"search": search, "no_mitid": no_mitid_only}
    if care is not None:
        filters.update(care.given())
    if limit is not None:
        filters["limit"] = limit
    if after is not None:
        filters["after"] = True
    first = 1000 if limit is None else min(limit + 1, 1000)
    matches = iter_patients(
        session,
        actor=actor,
        search=search,
        no_mitid_only=no_mitid_only,
        after=start,
        batch=first,
        care=care,
    )
    return PatientListing(
        session, actor=actor, matches=matches, limit=limit, filters=filters, fmt=fmt
    )


@dataclass(frozen=True)
class PatientRow:
    """One row of ``patient list``."""

    cpr: str
    name: str
    email: str
    record_email: str | None
    activated: bool
    status: str
    no_mitid: bool
    services: list[str]
    linked_at: datetime

    def as_row(self) -> dict[str, Any]:
        """The fields in order, for ``output.stream_rows`` (keys are the field names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def list_row(user: PortalUser, link_row: ClinicLink) -> PatientRow:
    return PatientRow(
        cpr=user.cpr,
        name=user.name,
        email=user.email,
        record_email=link_row.record_email,
        activated=bool(user.password_hash),
        status=status(user),
        no_mitid=link_row.no_mitid,
        services=catalog.split_services(link_row.services),
        linked_at=link_row.linked_at,
    )


def invite(session: Session, *, actor: Actor, cpr: str) -> users.PatientFacts:
    """A new activation code e-mailed to a user who has no password yet; the older code
    stops working. An activated user is refused (this is not a password reset)."""
    clinic = current_clinic(session, actor)
    user, link_row = lookup(session, clinic=clinic, cpr=cpr)
    if user.deactivated_at is not None:
        raise Refused(
            f"{mask_cpr(user.cpr)} is not active: no activation code is sent. If that is a "
            "mistake, run `patientportal patient reactivate CPR` first."
        )
    if user.password_hash:
        raise Refused(
            f"{mask_cpr(user.cpr)} is already activated (has chosen a password); an activation "
            "code cannot replace a password the patient chose."
        )
    _send_activation(session, user=user, clinic=clinic)
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.PATIENT_INVITE,
        target=target(user.cpr),
        details={"email": user.email},
    )
    session.commit()
    return link_facts(user, link_row, clinic)


def unlock(session: Session, *, actor: Actor, cpr: str) -> tuple[users.PatientFacts, bool]:
    """Clear the failed-login count and the login lock of the patient's CPR number
    (``services/throttle.py``): (facts, changed)."""
    clinic = current_clinic(session, actor)
    user, link_row = lookup(session, clinic=clinic, cpr=cpr)
    facts = link_facts(user, link_row, clinic)
    failed_logins = throttle.failures(session, kind=throttle.PATIENT, name=user.cpr)
    failures, was_until = throttle.clear(session, kind=throttle.PATIENT, name=user.cpr)
    if failures == 0 and was_until is None:
        session.rollback()
        return facts, False
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.PATIENT_UNLOCK,
        target=target(user.cpr),
        details={"failed_logins": failed_logins, "locked_until": was_until},
    )
    session.commit()
    return facts, True
