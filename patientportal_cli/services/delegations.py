"""Acting for someone else at a clinic: guardians of children under 15 and proxies under
a fuldmagt (docs/rules.md D19-D24).

A delegation (table ``delegation``) lets a *holder* act for a *patient* at one clinic.
Both must be portal users linked at that clinic; staff at another clinic learn nothing
of it (every look-up goes through ``users.lookup``, whose refusal is the usual
isolation message).

- **guardian** (``DelegationKind.GUARDIAN``): a parent with custody (or someone with a
  fuldmagt from the parents) acts for a child under 15. It has no stored end: it ends at
  00:00 Europe/Copenhagen on the child's 15th birthday, computed from the birth date in
  the CPR number (``services/cpr.py``, D3) at every check, so nothing has to run for it
  to end. A child born on 29 February turns 15 on 1 March (15 years after a leap year is
  never one). The guardian must be 18 or older.
- **proxy** (``DelegationKind.PROXY``): an adult (15 or older) gives a holder of 18 or
  older a fuldmagt, for some or all of the services, until a date: the last day it
  works, inclusive, in Copenhagen time (it ends at 00:00 Europe/Copenhagen the day
  after). The date is required, not in the past and at most 2 years ahead.

A delegation is *in force* when it is not revoked (``remove`` / ``revoke``), has not
ended, and both people are still linked at the clinic by the link they had when it was
made (unlinking either person, the clinic's way of deactivating a patient, ends it; a
later new link does not bring it back). It grants the services it names (None: all the
clinic offers), within what the clinic offers now and what the patient's own link
grants: acting for someone never gives more than the patient has.

Every check reads the clock through ``db.clock`` at call time (tests inject it there).
Every change and look-up is audited at the clinic with target the patient and details
naming both people (``patient`` and ``holder``), so the event is in both people's
``patient log`` (``services/accesslog.py``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlmodel import Session, col, or_, select

from patientportal_cli.db import clock
from patientportal_cli.db.models import Clinic, ClinicLink, Delegation, PortalUser
from patientportal_cli.errors import Conflict, InvalidInput, MissingInput, NotFound, Refused
from patientportal_cli.services import accesslog, audit, catalog, login_rules, patients, users
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.cpr import birth_date, normalize_cpr
from patientportal_cli.services.mail import outbox
from patientportal_cli.services.masking import mask_cpr
from patientportal_cli.services.users import current_clinic, target
from patientportal_cli.vocabulary import Action, Basis, DelegationKind

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
GUARDIAN_UNTIL_AGE = 15  # forældremyndighed over health data ends at 15
ADULT_AGE = 18
PROXY_MAX_YEARS = 2
NOTICE_DAYS = 30
EVIDENCE_MAX = 500
SYSTEM = "patientportal"  # the actor of housekeeping

# why a delegation is not in force (Standing.code)
IN_FORCE = "in_force"
REVOKED = "revoked"
ENDED = "ended"
UNLINKED = "unlinked"

STATUS_TEXT = {IN_FORCE: "in force", REVOKED: "revoked", ENDED: "ended", UNLINKED: "unlinked"}


# --- dates (pure) ------------------------------------------------------------------------


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def local_today(now: datetime) -> date:
    """The date in Copenhagen at the instant ``now``."""
    return now.astimezone(COPENHAGEN).date()


def start_of_day(day: date) -> datetime:
    """00:00 Europe/Copenhagen on ``day``, as a UTC instant."""
    return datetime.combine(day, time(0), tzinfo=COPENHAGEN).astimezone(UTC)


def birthday(born: date, years: int) -> date:
    """The ``years``-th birthday; 29 February gives 1 March in a year that is not leap."""
    try:
        return born.replace(year=born.year + years)
    except ValueError:
        return date(born.year + years, 3, 1)


def turns(cpr: str, years: int) -> datetime:
    """The instant the person with CPR number ``cpr`` turns ``years``: 00:00 Copenhagen
    on that birthday (UTC)."""
    return start_of_day(birthday(birth_date(cpr), years))


def guardian_end(child_cpr: str) -> datetime:
    """When a guardian's access ends: the start of the child's 15th birthday."""
    return turns(child_cpr, GUARDIAN_UNTIL_AGE)


def proxy_end(last_day: date) -> datetime:
    """When a proxy valid through ``last_day`` ends: 00:00 Copenhagen the day after."""
    return start_of_day(last_day + timedelta(days=1))


def last_day(ends_at: datetime) -> date:
    """The last Copenhagen day before the instant ``ends_at``."""
    return local_today(ends_at - timedelta(microseconds=1))


def parse_until(text: str, *, now: datetime) -> date:
    """``--until YYYY-MM-DD``: the last day a proxy works; not before today (Copenhagen)
    and at most ``PROXY_MAX_YEARS`` ahead; InvalidInput otherwise."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"Invalid --until {text.strip()!r}: give the last day of the fuldmagt as YYYY-MM-DD."
        ) from None
    today = local_today(now)
    try:
        latest = today.replace(year=today.year + PROXY_MAX_YEARS)
    except ValueError:  # 29 February: two years on is the 28th
        latest = date(today.year + PROXY_MAX_YEARS, 2, 28)
    if day < today:
        raise InvalidInput(
            f"--until {day.isoformat()} is in the past (today is {today.isoformat()}): a "
            "fuldmagt needs an end date from today on."
        )
    if day > latest:
        raise InvalidInput(
            f"--until {day.isoformat()} is more than {PROXY_MAX_YEARS} years ahead: the latest "
            f"end date is {latest.isoformat()} (a fuldmagt is renewed, at least every "
            f"{PROXY_MAX_YEARS} years)."
        )
    return day


_WITHIN = re.compile(r"([0-9]{1,4})d?")


def parse_within(text: str) -> timedelta:
    """``--expiring 30d`` (or ``30``): a number of days, 0-9999."""
    match = _WITHIN.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidInput(f"Invalid --expiring {text.strip()!r}: give a number of days, e.g. 30d.")
    return timedelta(days=int(match.group(1)))


def check_evidence(text: str | None, *, required: bool) -> str | None:
    """What the clinic saw (a document, its number, who showed it): whitespace
    collapsed, at most 500 characters, no control or format characters."""
    if text is None or not text.strip():
        if required:
            raise MissingInput("--evidence", "evidence of the fuldmagt")
        return None
    cleaned = " ".join(text.split())
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in cleaned):
        raise InvalidInput("Invalid --evidence: control and format characters are not allowed.")
    if len(cleaned) > EVIDENCE_MAX:
        raise InvalidInput(f"Invalid --evidence: at most {EVIDENCE_MAX} characters.")
    return cleaned


def check_basis(value: str) -> Basis:
    try:
        return Basis(value.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"Unknown basis {value.strip()!r}: use {' or '.join(b.value for b in Basis)}."
        ) from None


# --- in force --------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """Whether a delegation is in force now, until when, and why not."""

    code: str  # IN_FORCE, REVOKED, ENDED or UNLINKED
    ends_at: datetime | None  # the instant it ends (or ended); None: revoked before that

    @property
    def in_force(self) -> bool:
        return self.code == IN_FORCE


def ends_at(row: Delegation, patient: PortalUser) -> datetime:
    """The end of the delegation by its date (a guardian's: the child's 15th birthday)."""
    if row.kind == DelegationKind.GUARDIAN:
        return guardian_end(patient.cpr)
    end = _utc(row.valid_until)
    assert end is not None  # a proxy always has one
    return end


def _linked_since(link: ClinicLink | None, row: Delegation) -> bool:
    """The person has the link they had when the delegation was made."""
    if link is None:
        return False
    linked, created = _utc(link.linked_at), _utc(row.created_at)
    assert linked is not None and created is not None
    return linked <= created


def standing(
    row: Delegation,
    *,
    patient: PortalUser,
    patient_link: ClinicLink | None,
    holder_link: ClinicLink | None,
    now: datetime,
) -> Standing:
    end = ends_at(row, patient)
    if row.revoked_at is not None:
        return Standing(REVOKED, end)
    if now >= end:
        return Standing(ENDED, end)
    if not (_linked_since(patient_link, row) and _linked_since(holder_link, row)):
        return Standing(UNLINKED, end)
    return Standing(IN_FORCE, end)


def granted(row: Delegation, *, clinic: Clinic, patient_link: ClinicLink | None) -> list[str]:
    """The services the holder may use for the patient: those the delegation names (all
    the clinic offers when None), within what the clinic offers and the patient's link
    grants now."""
    offered = set(catalog.split_services(clinic.services))
    named = offered if row.services is None else set(catalog.split_services(row.services))
    own = set(catalog.split_services(patient_link.services)) if patient_link else set()
    return [s for s in catalog.SERVICES if s in named & offered & own]


@dataclass(frozen=True)
class DelegationRow:
    """One delegation as staff see it (``guardian list``, ``proxy list``, ``patient
    show``/``access``); ``as_row`` gives the fields in this order."""

    kind: str
    basis: str
    patient_cpr: str
    patient_name: str
    holder_cpr: str
    holder_name: str
    status: str  # in force, ended, unlinked, revoked
    last_day: date  # the last day it works (Copenhagen)
    ends_at: datetime  # the instant it ends (UTC)
    services: list[str]  # granted now (empty unless in force)
    evidence: str | None
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None
    notice_sent_at: datetime | None

    @property
    def in_force(self) -> bool:
        return self.status == STATUS_TEXT[IN_FORCE]

    def as_row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class _Loaded:
    row: Delegation
    patient: PortalUser
    holder: PortalUser
    patient_link: ClinicLink | None
    holder_link: ClinicLink | None


def _links(session: Session, clinic_id: int, user_ids: set[int]) -> dict[int, ClinicLink]:
    if not user_ids:
        return {}
    found = session.exec(
        select(ClinicLink).where(
            ClinicLink.clinic_id == clinic_id, col(ClinicLink.user_id).in_(user_ids)
        )
    )
    return {link.user_id: link for link in found}


def _load(session: Session, clinic: Clinic, rows: Iterable[Delegation]) -> list[_Loaded]:
    rows = list(rows)
    ids = {r.patient_user_id for r in rows} | {r.holder_user_id for r in rows}
    people = (
        {u.id: u for u in session.exec(select(PortalUser).where(col(PortalUser.id).in_(ids)))}
        if ids
        else {}
    )
    assert clinic.id is not None
    links = _links(session, clinic.id, ids)
    return [
        _Loaded(
            row=r,
            patient=people[r.patient_user_id],
            holder=people[r.holder_user_id],
            patient_link=links.get(r.patient_user_id),
            holder_link=links.get(r.holder_user_id),
        )
        for r in rows
    ]


def _row(item: _Loaded, clinic: Clinic, now: datetime) -> DelegationRow:
    state = standing(
        item.row,
        patient=item.patient,
        patient_link=item.patient_link,
        holder_link=item.holder_link,
        now=now,
    )
    assert state.ends_at is not None
    row = item.row
    return DelegationRow(
        kind=row.kind,
        basis=row.basis,
        patient_cpr=item.patient.cpr,
        patient_name=item.patient.name,
        holder_cpr=item.holder.cpr,
        holder_name=item.holder.name,
        status=STATUS_TEXT[state.code],
        last_day=last_day(state.ends_at),
        ends_at=state.ends_at,
        services=granted(row, clinic=clinic, patient_link=item.patient_link)
        if state.in_force
        else [],
        evidence=row.evidence,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        notice_sent_at=row.notice_sent_at,
    )


# --- the people ----------------------------------------------------------------------


def _person(session: Session, clinic: Clinic, cpr: str, role: str) -> tuple[PortalUser, ClinicLink]:
    """This clinic's patient ``cpr`` in the role ``role`` (e.g. "guardian"), or NotFound
    with the usual isolation message (and the hint to create or link the user)."""
    try:
        return users.lookup(session, clinic=clinic, cpr=cpr)
    except NotFound as exc:
        raise NotFound(f"{role.capitalize()} {exc}") from None


def _adult(now: datetime, holder: PortalUser, role: str) -> None:
    if now < turns(holder.cpr, ADULT_AGE):
        raise Refused(
            f"The {role} {mask_cpr(holder.cpr)} is under {ADULT_AGE}: only an adult can act "
            "for someone else. Nothing was changed."
        )


def _not_same(patient_cpr: str, holder_cpr: str, role: str, of: str) -> None:
    if patient_cpr == holder_cpr:
        raise InvalidInput(
            f"{mask_cpr(patient_cpr)} cannot be their own {role}: give the {of}'s CPR number "
            f"and the {role}'s."
        )


def _open_row(
    session: Session, *, clinic: Clinic, patient: PortalUser, holder: PortalUser, kind: str
) -> Delegation | None:
    return session.exec(
        select(Delegation).where(
            Delegation.clinic_id == clinic.id,
            Delegation.patient_user_id == patient.id,
            Delegation.holder_user_id == holder.id,
            Delegation.kind == kind,
            col(Delegation.revoked_at).is_(None),
        )
    ).first()


def _details(patient: PortalUser, holder: PortalUser, **more: Any) -> dict[str, Any]:
    """Audit details naming both people (``accesslog`` finds the event for either)."""
    return {"patient": patient.cpr, "holder": holder.cpr, **more}


def _add(
    session: Session,
    *,
    actor: Actor,
    clinic: Clinic,
    patient: PortalUser,
    holder: PortalUser,
    holder_link: ClinicLink,
    patient_link: ClinicLink,
    kind: DelegationKind,
    basis: Basis,
    services: list[str] | None,
    evidence: str | None,
    valid_until: datetime | None,
    action: Action,
    now: datetime,
) -> DelegationRow:
    assert clinic.id is not None and patient.id is not None and holder.id is not None
    parties = _Parties(clinic, patient, holder, patient_link, holder_link)
    replaced = _close_replaced(session, actor=actor, parties=parties, kind=kind, now=now)
    row = Delegation(
        clinic_id=clinic.id,
        patient_user_id=patient.id,
        holder_user_id=holder.id,
        kind=kind,
        basis=basis,
        services=catalog.join_services(services) if services is not None else None,
        evidence=evidence,
        valid_until=valid_until,
        created_by=actor.username,  # created_at: the wall clock, as the links' linked_at
    )
    session.add(row)
    session.flush()
    item = _Loaded(row, patient, holder, patient_link, holder_link)
    result = _row(item, clinic, now)
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=action,
        target=target(patient.cpr),
        details=_details(
            patient,
            holder,
            basis=basis,
            services=services,  # None: all the clinic offers
            last_day=result.last_day.isoformat(),
            evidence=evidence,
            replaced=replaced,
        ),
    )
    session.commit()
    return result


@dataclass(frozen=True)
class _Parties:
    """The clinic, the patient and the holder of a delegation being added, with their
    links there."""

    clinic: Clinic
    patient: PortalUser
    holder: PortalUser
    patient_link: ClinicLink
    holder_link: ClinicLink


def _close_replaced(
    session: Session, *, actor: Actor, parties: _Parties, kind: DelegationKind, now: datetime
) -> int | None:
    """The open row of the same patient, holder and kind: still in force, refused
    (Conflict); ended or unlinked, closed now so that the new one is the one open row
    (its id returned); None when there is none."""
    clinic, patient, holder = parties.clinic, parties.patient, parties.holder
    existing = _open_row(session, clinic=clinic, patient=patient, holder=holder, kind=kind)
    if existing is None:
        return None
    state = standing(
        existing,
        patient=patient,
        patient_link=parties.patient_link,
        holder_link=parties.holder_link,
        now=now,
    )
    if state.in_force:
        assert state.ends_at is not None
        command = "guardian remove" if kind == DelegationKind.GUARDIAN else "proxy revoke"
        raise Conflict(
            f"{mask_cpr(holder.cpr)} is already {_as(kind)} of {mask_cpr(patient.cpr)} at "
            f"clinic {clinic.code} (last day {last_day(state.ends_at).isoformat()}). To "
            f"change it, run `patientportal patient {command}` first."
        )
    # ended or unlinked: closed now, so that the new one is the one open row
    existing.revoked_at, existing.revoked_by = now, actor.username
    session.add(existing)
    session.flush()
    return existing.id


def _as(kind: str) -> str:
    return "the guardian" if kind == DelegationKind.GUARDIAN else "a proxy"


# --- guardians -----------------------------------------------------------------------


def add_guardian(
    session: Session,
    *,
    actor: Actor,
    child_cpr: str,
    guardian_cpr: str,
    basis: str,
    evidence: str | None = None,
) -> DelegationRow:
    """The guardian acts for the child at this clinic until the child's 15th birthday.

    Refused: a child of 15 or more, a guardian under 18 (Refused, exit 1); the same
    person (InvalidInput); either one not this clinic's patient (NotFound); a guardian
    already in force (Conflict)."""
    child_number, guardian_number = normalize_cpr(child_cpr), normalize_cpr(guardian_cpr)
    chosen = check_basis(basis)
    evidence = check_evidence(evidence, required=False)
    _not_same(child_number, guardian_number, "guardian", "child")
    now = clock.utcnow()
    clinic = current_clinic(session, actor)
    child, child_link = _person(session, clinic, child_number, "child")
    guardian, guardian_link = _person(session, clinic, guardian_number, "guardian")
    end = guardian_end(child.cpr)
    if now >= end:
        raise Refused(
            f"{mask_cpr(child.cpr)} turned {GUARDIAN_UNTIL_AGE} on "
            f"{birthday(birth_date(child.cpr), GUARDIAN_UNTIL_AGE).isoformat()}: from "
            f"{GUARDIAN_UNTIL_AGE} the patient decides alone, so a guardian cannot act for "
            "them. A fuldmagt from the patient works: `patientportal patient proxy add`. "
            "Nothing was changed."
        )
    _adult(now, guardian, "guardian")
    return _add(
        session,
        actor=actor,
        clinic=clinic,
        patient=child,
        holder=guardian,
        holder_link=guardian_link,
        patient_link=child_link,
        kind=DelegationKind.GUARDIAN,
        basis=chosen,
        services=None,
        evidence=evidence,
        valid_until=None,
        action=Action.GUARDIAN_ADD,
        now=now,
    )


def _close(
    session: Session,
    *,
    actor: Actor,
    patient_cpr: str,
    holder_cpr: str,
    kind: DelegationKind,
    action: Action,
) -> DelegationRow:
    patient_number, holder_number = normalize_cpr(patient_cpr), normalize_cpr(holder_cpr)
    now = clock.utcnow()
    clinic = current_clinic(session, actor)
    role = "guardian" if kind == DelegationKind.GUARDIAN else "holder"
    patient, patient_link = _person(
        session, clinic, patient_number, "child" if kind == DelegationKind.GUARDIAN else "patient"
    )
    holder, holder_link = _person(session, clinic, holder_number, role)
    row = _open_row(session, clinic=clinic, patient=patient, holder=holder, kind=kind)
    if row is None:
        raise NotFound(
            f"{mask_cpr(holder.cpr)} is not {_as(kind)} of {mask_cpr(patient.cpr)} at clinic "
            f"{clinic.code}; nothing changed."
        )
    before = _row(_Loaded(row, patient, holder, patient_link, holder_link), clinic, now)
    row.revoked_at, row.revoked_by = now, actor.username
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=action,
        target=target(patient.cpr),
        details=_details(patient, holder, was=before.status),
    )
    session.commit()
    return _row(_Loaded(row, patient, holder, patient_link, holder_link), clinic, now)


def remove_guardian(
    session: Session, *, actor: Actor, child_cpr: str, guardian_cpr: str
) -> DelegationRow:
    """End the guardian's access now (the row is kept, marked revoked)."""
    return _close(
        session,
        actor=actor,
        patient_cpr=child_cpr,
        holder_cpr=guardian_cpr,
        kind=DelegationKind.GUARDIAN,
        action=Action.GUARDIAN_REMOVE,
    )


# --- proxies -------------------------------------------------------------------------


def add_proxy(
    session: Session,
    *,
    actor: Actor,
    cpr: str,
    holder_cpr: str,
    until: str,
    evidence: str | None,
    services: str | list[str] | None = None,
) -> DelegationRow:
    """The holder acts for the patient under a fuldmagt at this clinic, for ``services``
    (None: all the clinic offers), through the day ``until`` (YYYY-MM-DD, Copenhagen)."""
    patient_number, holder_number = normalize_cpr(cpr), normalize_cpr(holder_cpr)
    evidence = check_evidence(evidence, required=True)
    now = clock.utcnow()
    day = parse_until(until, now=now)
    _not_same(patient_number, holder_number, "proxy", "patient")
    clinic = current_clinic(session, actor)
    chosen = None if services is None else patients.check_services(clinic, services)
    patient, patient_link = _person(session, clinic, patient_number, "patient")
    holder, holder_link = _person(session, clinic, holder_number, "holder")
    if now < turns(patient.cpr, GUARDIAN_UNTIL_AGE):
        raise Refused(
            f"{mask_cpr(patient.cpr)} is under {GUARDIAN_UNTIL_AGE}: a parent with custody "
            "acts for a child as its guardian (`patientportal patient guardian add`). "
            "Nothing was changed."
        )
    _adult(now, holder, "holder")
    return _add(
        session,
        actor=actor,
        clinic=clinic,
        patient=patient,
        holder=holder,
        holder_link=holder_link,
        patient_link=patient_link,
        kind=DelegationKind.PROXY,
        basis=Basis.POWER_OF_ATTORNEY,
        services=chosen,
        evidence=evidence,
        valid_until=proxy_end(day),
        action=Action.PROXY_ADD,
        now=now,
    )


def revoke_proxy(session: Session, *, actor: Actor, cpr: str, holder_cpr: str) -> DelegationRow:
    """End the proxy now (the patient withdrew the fuldmagt); the row is kept."""
    return _close(
        session,
        actor=actor,
        patient_cpr=cpr,
        holder_cpr=holder_cpr,
        kind=DelegationKind.PROXY,
        action=Action.PROXY_REVOKE,
    )


# --- listings and look-ups ---------------------------------------------------------------


def listing(
    session: Session,
    *,
    actor: Actor,
    kind: DelegationKind,
    everything: bool = False,
    expiring: str | None = None,
    fmt: str = "table",
) -> list[DelegationRow]:
    """This clinic's guardians or proxies in force (``everything``: also the ended,
    unlinked and revoked ones), by end; ``expiring``: only those in force that end
    within that many days. Audited as one listing naming both people of each row."""
    within = parse_within(expiring) if expiring is not None else None
    now = clock.utcnow()
    clinic = current_clinic(session, actor)
    query = select(Delegation).where(Delegation.clinic_id == clinic.id, Delegation.kind == kind)
    if not everything:
        query = query.where(col(Delegation.revoked_at).is_(None))
    rows = [_row(item, clinic, now) for item in _load(session, clinic, session.exec(query))]
    if not everything or within is not None:
        rows = [r for r in rows if r.in_force]
    if within is not None:
        rows = [r for r in rows if r.ends_at <= now + within]
    rows.sort(key=lambda r: (r.ends_at, r.patient_name, r.holder_name))
    named = sorted({c for r in rows for c in (r.patient_cpr, r.holder_cpr)})
    filters: dict[str, Any] = {"all": everything, "expiring": expiring}
    accesslog.listed(
        session,
        actor=actor,
        action=Action.GUARDIAN_LIST if kind == DelegationKind.GUARDIAN else Action.PROXY_LIST,
        cprs=named if len(named) <= accesslog.NAMED_AT_MOST else [],
        count=len(rows),
        filters=filters,
        fmt=fmt,
    )
    session.commit()
    return rows


def of_person(session: Session, *, clinic: Clinic, user: PortalUser) -> list[DelegationRow]:
    """The delegations at this clinic not revoked where ``user`` is the patient or the
    holder (in force, ended or unlinked), the patient's first."""
    now = clock.utcnow()
    query = select(Delegation).where(
        Delegation.clinic_id == clinic.id,
        col(Delegation.revoked_at).is_(None),
        or_(Delegation.patient_user_id == user.id, Delegation.holder_user_id == user.id),
    )
    rows = [_row(item, clinic, now) for item in _load(session, clinic, session.exec(query))]
    rows.sort(key=lambda r: (r.patient_cpr != user.cpr, r.ends_at, r.kind))
    return rows


@dataclass(frozen=True)
class PatientView:
    """``patient show``: the record and the delegations the patient is part of here."""

    record: patients.PatientRecord
    delegations: list[DelegationRow]


def show(session: Session, *, actor: Actor, cpr: str, fmt: str = "table") -> PatientView:
    """``patients.show`` (audited) and the patient's delegations at this clinic."""
    record = patients.show(session, actor=actor, cpr=cpr, fmt=fmt)
    clinic = current_clinic(session, actor)
    user = users.find_user(session, normalize_cpr(cpr))
    assert user is not None  # show found it linked here
    rows = of_person(session, clinic=clinic, user=user)
    session.rollback()
    return PatientView(record, rows)


@dataclass(frozen=True)
class AccessView:
    """``patient access``: the login decisions and the delegations here."""

    access: login_rules.LoginAccess
    delegations: list[DelegationRow]


def access(session: Session, *, actor: Actor, cpr: str) -> AccessView:
    """``patients.login_access`` (audited) and, for a patient linked here, the
    delegations the patient is part of here (none are told for a user not linked here)."""
    result = patients.login_access(session, actor=actor, cpr=cpr)
    rows: list[DelegationRow] = []
    if result.linked:
        clinic = current_clinic(session, actor)
        user = users.find_user(session, normalize_cpr(cpr))
        assert user is not None
        rows = of_person(session, clinic=clinic, user=user)
        session.rollback()
    return AccessView(result, rows)


@dataclass(frozen=True)
class ActingAnswer:
    """``patient access HOLDER --for PATIENT``: can the holder act for the patient here
    now, as what, until when, for which services."""

    holder_cpr: str
    holder_name: str
    patient_cpr: str
    patient_name: str
    allowed: bool
    kind: str | None
    basis: str | None
    last_day: date | None
    ends_at: datetime | None
    services: list[str]
    reason: str

    def as_row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _best(items: list[tuple[_Loaded, DelegationRow]]) -> tuple[_Loaded, DelegationRow] | None:
    """The delegation in force that lasts longest (a guardian and a proxy at once)."""
    live = [pair for pair in items if pair[1].in_force]
    return max(live, key=lambda pair: pair[1].ends_at) if live else None


def _between(
    session: Session, clinic: Clinic, patient: PortalUser, holder: PortalUser, now: datetime
) -> list[tuple[_Loaded, DelegationRow]]:
    """Every delegation of the holder for the patient here (revoked ones too, for the
    reason of a no), oldest first."""
    query = select(Delegation).where(
        Delegation.clinic_id == clinic.id,
        Delegation.patient_user_id == patient.id,
        Delegation.holder_user_id == holder.id,
    )
    query = query.order_by(col(Delegation.id))
    return [(item, _row(item, clinic, now)) for item in _load(session, clinic, session.exec(query))]


def can_act(session: Session, *, actor: Actor, holder_cpr: str, patient_cpr: str) -> ActingAnswer:
    """Can the holder act for the patient at this clinic now, and until when? Both must
    be this clinic's patients (NotFound otherwise). Audited (``delegation.check``)."""
    holder_number, patient_number = normalize_cpr(holder_cpr), normalize_cpr(patient_cpr)
    _not_same(patient_number, holder_number, "holder", "patient")
    now = clock.utcnow()
    clinic = current_clinic(session, actor)
    patient, _ = _person(session, clinic, patient_number, "patient")
    holder, _ = _person(session, clinic, holder_number, "holder")
    found = _between(session, clinic, patient, holder, now)
    best = _best(found)
    if best is not None:
        item, row = best
        reason = f"{row.kind} ({row.basis}) in force through {row.last_day.isoformat()}"
        answer = ActingAnswer(
            holder.cpr, holder.name, patient.cpr, patient.name, True, row.kind, row.basis,
            row.last_day, row.ends_at, row.services, reason,
        )  # fmt: skip
    else:
        if found:
            row = found[-1][1]  # the newest
            reason = (
                f"the {row.kind}'s access is {row.status} (last day {row.last_day.isoformat()})"
            )
        else:
            reason = "no guardianship or proxy here"
        answer = ActingAnswer(
            holder.cpr, holder.name, patient.cpr, patient.name, False, None, None, None, None,
            [], reason,
        )  # fmt: skip
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.DELEGATION_CHECK,
        target=target(patient.cpr),
        details=_details(patient, holder, allowed=answer.allowed),
    )
    session.commit()
    return answer


# --- the portal: acting for someone ------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What a holder logged in at a clinic may do for the patient."""

    patient_cpr: str
    patient_name: str
    kind: str
    basis: str
    last_day: date
    ends_at: datetime
    services: list[str]


NOT_ACTING = (
    "You cannot act for {cpr} at clinic {clinic}: no guardianship or proxy of yours for "
    "that person is in force there. Contact the clinic."
)


def grant_for(
    session: Session, *, clinic: Clinic, holder: PortalUser, patient_cpr: str
) -> tuple[Grant | None, str]:
    """(the grant, "ok") when a delegation of ``holder`` for the patient is in force at
    the clinic now; else (None, the exact reason for the audit log: "unknown_patient",
    "not_linked", "no_delegation", or the status of the newest one). The holder is told
    the same sentence (``NOT_ACTING``) in every case: a portal user learns nothing about
    who is a patient where."""
    number = normalize_cpr(patient_cpr)
    patient = users.find_user(session, number)
    if patient is None:
        return None, "unknown_patient"
    assert clinic.id is not None and patient.id is not None
    if users.find_link(session, clinic_id=clinic.id, user_id=patient.id) is None:
        return None, "not_linked"
    if patient.id == holder.id:
        return None, "same_person"
    found = _between(session, clinic, patient, holder, clock.utcnow())
    best = _best(found)
    if best is None:
        if not found:
            return None, "no_delegation"
        return None, found[-1][1].status.replace(" ", "_")  # the newest one's
    _, row = best
    return (
        Grant(
            patient_cpr=patient.cpr,
            patient_name=patient.name,
            kind=row.kind,
            basis=row.basis,
            last_day=row.last_day,
            ends_at=row.ends_at,
            services=row.services,
        ),
        "ok",
    )


def not_acting(patient_cpr: str, clinic: Clinic) -> str:
    return NOT_ACTING.format(cpr=mask_cpr(patient_cpr), clinic=clinic.code)


PORTAL_ACTOR = "patient"  # the actor of the portal's own events (services/portal.py)


@dataclass
class ActingFor:
    """``portal login/verify --for PATIENT``: the holder logs in under their own rules
    (services/portal.py), which calls ``check`` once the holder is authenticated as far
    as the step goes (MitID confirmed; the password right; the security code's login
    found), so that nobody learns anything of a holder's delegations without the holder's
    own login. ``check`` refuses when no delegation is in force: one
    ``portal.login_refused`` event (target the holder, the exact reason and the CPR
    number asked for), committed, and the same sentence whatever the reason; it counts
    toward no lock (the holder's own login did not fail). After a completed login,
    ``record`` writes the one event naming both people (``portal.login_for``)."""

    patient_cpr: str
    grant: Grant | None = None
    clinic_code: str | None = None  # where and who, once ``check`` passed
    holder_cpr: str | None = None

    def check(self, session: Session, user: PortalUser, clinic: Clinic, **step: Any) -> None:
        grant, reason = grant_for(session, clinic=clinic, holder=user, patient_cpr=self.patient_cpr)
        if grant is None:
            audit.record(
                session,
                actor=PORTAL_ACTOR,
                clinic=clinic.code,
                action=Action.PORTAL_LOGIN_REFUSED,
                target=target(user.cpr),
                details={
                    **step,
                    "reason": "not_acting_for",
                    "why": reason,
                    "for": self.patient_cpr,
                },
            )
            session.commit()
            raise Refused(not_acting(self.patient_cpr, clinic))
        self.grant, self.clinic_code, self.holder_cpr = grant, clinic.code, user.cpr

    def record(self, session: Session, *, method: str) -> Grant:
        """After the holder's login completed: the ``portal.login_for`` event, committed."""
        assert self.grant is not None and self.clinic_code and self.holder_cpr  # check() passed
        record_login_for(
            session,
            clinic_code=self.clinic_code,
            holder_cpr=self.holder_cpr,
            grant=self.grant,
            method=method,
        )
        session.commit()
        return self.grant


def record_login_for(
    session: Session, *, clinic_code: str, holder_cpr: str, grant: Grant, method: str
) -> None:
    """The one event of a login acting for someone: target the patient, details naming
    both (the caller commits)."""
    audit.record(
        session,
        actor=grant.kind,
        clinic=clinic_code,
        action=Action.PORTAL_LOGIN_FOR,
        target=target(grant.patient_cpr),
        details={
            "patient": grant.patient_cpr,
            "holder": holder_cpr,
            "method": method,
            "basis": grant.basis,
            "services": grant.services,
            "last_day": grant.last_day.isoformat(),
        },
    )


# --- a person deactivated (services/lifecycle.py) ------------------------------------------


def open_for_person(session: Session, *, user_id: int) -> list[Delegation]:
    """The delegations not revoked, at any clinic, held by or for the user."""
    return list(
        session.exec(
            select(Delegation).where(
                col(Delegation.revoked_at).is_(None),
                or_(Delegation.patient_user_id == user_id, Delegation.holder_user_id == user_id),
            )
        )
    )


def end_for_person(
    session: Session, *, user_id: int, by: str, clinic_id: int | None = None
) -> list[Delegation]:
    """End (revoke) every delegation held by or for the user, at every clinic, when the
    account is deactivated; each is audited at its clinic as ``guardian.remove`` or
    ``proxy.revoke`` with ``why`` "not active". At ``clinic_id`` (the clinic acting) the
    staff member ``by`` is named; elsewhere ``patientportal``, so that no other clinic
    learns who acted or where. The caller commits."""
    now = clock.utcnow()
    ended = open_for_person(session, user_id=user_id)
    for row in ended:
        clinic = session.get(Clinic, row.clinic_id)
        assert clinic is not None
        [item] = _load(session, clinic, [row])
        was = _row(item, clinic, now).status
        who = by if clinic_id is not None and row.clinic_id == clinic_id else SYSTEM
        row.revoked_at, row.revoked_by = now, who
        session.add(row)
        audit.record(
            session,
            actor=who,
            clinic=clinic.code,
            action=Action.GUARDIAN_REMOVE
            if row.kind == DelegationKind.GUARDIAN
            else Action.PROXY_REVOKE,
            target=target(item.patient.cpr),
            details=_details(item.patient, item.holder, was=was, why="not active"),
        )
    session.flush()
    return ended


# --- housekeeping: the notice before a guardian's access ends ---------------------------


def queue_notices(session: Session, *, within_days: int = NOTICE_DAYS) -> int:
    """Queue the Danish notice to each guardian whose access ends within ``within_days``
    and who has had none (every clinic; each notice in its own transaction, claimed with
    ``notice_sent_at`` so that two runs never send it twice). Returns how many."""
    now = clock.utcnow()
    horizon = now + timedelta(days=within_days)
    candidates = session.exec(
        select(Delegation.id).where(
            Delegation.kind == DelegationKind.GUARDIAN,
            col(Delegation.revoked_at).is_(None),
            col(Delegation.notice_sent_at).is_(None),
        )
    ).all()
    session.rollback()
    queued = 0
    for row_id in candidates:
        row = session.get(Delegation, row_id)
        clinic = session.get(Clinic, row.clinic_id) if row is not None else None
        if row is None or clinic is None:
            continue
        [item] = _load(session, clinic, [row])
        state = standing(
            row,
            patient=item.patient,
            patient_link=item.patient_link,
            holder_link=item.holder_link,
            now=now,
        )
        if not state.in_force or state.ends_at is None or state.ends_at > horizon:
            session.rollback()
            continue
        claimed = session.execute(
            update(Delegation)
            .where(col(Delegation.id) == row_id, col(Delegation.notice_sent_at).is_(None))
            .values(notice_sent_at=now)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            continue
        day = last_day(state.ends_at)
        outbox.to_patient(
            session,
            "guardian_ending",
            user=item.holder,
            clinic=clinic,
            child_name=item.patient.name,
            ends_on=f"{state.ends_at.astimezone(COPENHAGEN):%d.%m.%Y}",
            last_day=f"{day:%d.%m.%Y}",
        )
        audit.record(
            session,
            actor=SYSTEM,
            clinic=clinic.code,
            action=Action.GUARDIAN_NOTICE,
            target=target(item.patient.cpr),
            details=_details(item.patient, item.holder, last_day=day.isoformat()),
        )
        session.commit()
        queued += 1
    return queued
