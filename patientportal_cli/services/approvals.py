"""The clinic's approval queue of self-registrations: rule R3.

Only a doctor at the clinic approves or rejects a request. Approving creates the user
(origin ``self``, with the password the patient chose when registering; vouched for only
when the request was made inside a MitID login) or, when the CPR already has a user,
links that user (R1: never a second user; the existing password, name and e-mail are
kept, and the approval is mailed to the user's own e-mail, never to an address the
request typed: a request made before the user existed speaks for nobody). The services granted default to the requested ones the clinic
offers; the doctor may choose others among those the clinic offers. Rejecting may carry
a reason; the patient is e-mailed either way (the reason included when given).

Exactly once: a decision is a conditional ``UPDATE ... WHERE id = :id AND status =
'pending'``, and only the transaction whose update changed the row (row count 1) goes
on to create/link and e-mail. On PostgreSQL a second doctor's update waits for the
first one's row lock, then finds the row no longer pending (row count 0) and is told
who decided it and when (``AlreadyDecided``, exit 1). On SQLite every write transaction
is exclusive, so the second one starts after the first has committed and sees the same.

The password hash a self-registrant chose is kept on the request only while it is
pending: it moves to the new user on approval and is removed from the request on every
decision.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, update
from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import (
    Clinic,
    ClinicLink,
    LinkHistory,
    PortalUser,
    RegistrationRequest,
)
from patientportal_cli.errors import AlreadyDecided, Forbidden, InvalidInput, NotFound
from patientportal_cli.services import audit, catalog, users
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.mail import outbox
from patientportal_cli.vocabulary import Action, RequestStatus

STATUSES = tuple(RequestStatus)
LIST_STATUSES = (*STATUSES, "all")
MAX_REASON = 1000
_CHUNK = 500


@dataclass
class RequestInfo:
    """A request and what the queue shows about its CPR at this clinic."""

    request: RegistrationRequest
    existing_user: bool  # a portal user with this CPR exists (approval links it)
    linked_before: bool  # this clinic linked this CPR before, and it was unlinked since
    linked_now: bool  # the CPR is linked to this clinic now (approval changes nothing)
    offered: list[str] = field(default_factory=list)  # the clinic's services now
    # approved, and its approval created the portal user (the user was made at or after
    # the decision, in the approval's transaction), so "existing" would mislead
    user_created: bool = False

    @property
    def requested(self) -> list[str]:
        return catalog.split_services(self.request.services)

    @property
    def grantable(self) -> list[str]:
        """What approving without --services grants: requested ∩ offered."""
        return [s for s in self.requested if s in self.offered]


@dataclass
class ReviewOutcome:
    request_id: int
    status: RequestStatus  # approved | rejected
    decided_by: str
    decided_at: datetime
    cpr: str
    name: str
    email: str
    services: list[str] = field(default_factory=list)
    user_created: bool = False
    link_created: bool = False
    reason: str | None = None


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "an unknown time"


def clean_reason(reason: str | None) -> str | None:
    """The rejection reason: trimmed, line breaks kept, at most 1000 characters."""
    if reason is None:
        return None
    text = reason.replace("\r\n", "\n").replace("\r", "\n").strip()
    for ch in text:
        if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise InvalidInput(
                f"Invalid reason: it contains the control character U+{ord(ch):04X}."
            )
    if len(text) > MAX_REASON:
        raise InvalidInput(
            f"Invalid reason: it is {len(text)} characters long; at most {MAX_REASON} are allowed."
        )
    return text or None


# --- looking -------------------------------------------------------------------------


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _infos(
    session: Session, clinic: Clinic, requests: list[RegistrationRequest]
) -> list[RequestInfo]:
    existing: dict[str, datetime] = {}  # CPR -> when its portal user was created
    before: set[str] = set()
    linked: set[str] = set()
    for part in _chunks(r.cpr for r in requests):
        existing.update(
            session.exec(
                select(PortalUser.cpr, PortalUser.created_at).where(col(PortalUser.cpr).in_(part))
            ).all()
        )
        before.update(
            session.exec(
                select(LinkHistory.cpr).where(
                    LinkHistory.clinic_id == clinic.id,
                    col(LinkHistory.cpr).in_(part),
                    col(LinkHistory.unlinked_at).is_not(None),
                )
            )
        )
        linked.update(
            session.exec(
                select(PortalUser.cpr)
                .join(ClinicLink, col(ClinicLink.user_id) == PortalUser.id)
                .where(ClinicLink.clinic_id == clinic.id, col(PortalUser.cpr).in_(part))
            )
        )
    offered = catalog.split_services(clinic.services)
    return [
        RequestInfo(
            request=r,
            existing_user=r.cpr in existing,
            linked_before=r.cpr in before,
            linked_now=r.cpr in linked,
            offered=offered,
            user_created=_created_by_approval(r, existing.get(r.cpr)),
        )
        for r in requests
    ]


def _created_by_approval(request: RegistrationRequest, user_created_at: datetime | None) -> bool:
    """Whether the request's approval created the portal user: approving stamps
    ``decided_at`` first and creates the user after, in the same transaction; a user who
    existed before was created before the decision."""
    if request.status != RequestStatus.APPROVED or user_created_at is None:
        return False
    if request.decided_at is None:
        return False
    return _utc(user_created_at) >= _utc(request.decided_at)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def list_requests(
    session: Session, *, actor: Actor, status: str = RequestStatus.PENDING
) -> list[RequestInfo]:
    """The clinic's requests: pending first, then oldest first."""
    if status not in LIST_STATUSES:
        raise InvalidInput(f"Unknown status {status!r}: use {', '.join(LIST_STATUSES)}.")
    clinic = users.current_clinic(session, actor)
    query = select(RegistrationRequest).where(RegistrationRequest.clinic_id == clinic.id)
    if status != "all":
        query = query.where(RegistrationRequest.status == status)
    query = query.order_by(
        case((col(RegistrationRequest.status) == RequestStatus.PENDING, 0), else_=1),
        col(RegistrationRequest.submitted_at),
        col(RegistrationRequest.id),
    )
    return _infos(session, clinic, list(session.exec(query)))


def pending_ids(session: Session, *, clinic_id: int) -> list[int]:
    """The ids of the clinic's pending requests, lowest first (for TAB completion)."""
    query = (
        select(RegistrationRequest.id)
        .where(
            RegistrationRequest.clinic_id == clinic_id,
            RegistrationRequest.status == RequestStatus.PENDING,
        )
        .order_by(col(RegistrationRequest.id))
    )
    return [i for i in session.exec(query) if i is not None]


def _find(session: Session, clinic: Clinic, request_id: int) -> RegistrationRequest:
    request = session.exec(
        select(RegistrationRequest)
        .where(col(RegistrationRequest.id) == request_id)
        .execution_options(populate_existing=True)
    ).first()
    if request is None or request.clinic_id != clinic.id:
        raise NotFound(f"No registration request {request_id} at clinic {clinic.code}.")
    return request


def get_request(session: Session, *, actor: Actor, request_id: int) -> RequestInfo:
    clinic = users.current_clinic(session, actor)
    return _infos(session, clinic, [_find(session, clinic, request_id)])[0]


# --- deciding ------------------------------------------------------------------------


def _claim(
    session: Session,
    *,
    clinic: Clinic,
    request_id: int,
    status: RequestStatus,
    by: str,
    reason: str | None,
) -> RegistrationRequest | None:
    """The conditional update that makes a decision happen once; None if not pending."""
    result = session.exec(
        update(RegistrationRequest)
        .where(
            col(RegistrationRequest.id) == request_id,
            col(RegistrationRequest.clinic_id) == clinic.id,
            col(RegistrationRequest.status) == RequestStatus.PENDING,
        )
        .values(status=status, decided_by=by, decided_at=utcnow(), reason=reason)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    return _find(session, clinic, request_id)


def _already(session: Session, clinic: Clinic, request_id: int) -> AlreadyDecided:
    session.rollback()
    request = _find(session, clinic, request_id)
    return AlreadyDecided(
        f"Request {request_id} was already {request.status} by {request.decided_by or '?'} "
        f"at {when(request.decided_at)}."
    )


def _decide(
    session: Session,
    *,
    actor: Actor,
    clinic: Clinic,
    request_id: int,
    decision: str,
    services: list[str] | None = None,
    reason: str | None = None,
    via: str = "requests",
) -> ReviewOutcome | None:
    """Decide one request in the caller's transaction (no commit); None if not pending."""
    status = RequestStatus.APPROVED if decision == "approve" else RequestStatus.REJECTED
    request = _claim(
        session,
        clinic=clinic,
        request_id=request_id,
        status=status,
        by=actor.username,
        reason=reason if decision == "reject" else None,
    )
    if request is None:
        return None
    if decision == "approve":
        effect = _approve_claimed(session, request, actor=actor, clinic=clinic, services=services)
    else:
        effect = _reject_claimed(session, request)
    request.password_hash = None  # moved to the new user, or no longer needed
    session.add(request)
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.REQUEST_APPROVE if decision == "approve" else Action.REQUEST_REJECT,
        target=f"request:{request_id}",
        details={"cpr": request.cpr, "via": via, **effect.details},
    )
    outbox.enqueue(
        session,
        to=effect.recipient[0],
        template=f"request_{status}",
        clinic_id=clinic.id,
        name=effect.recipient[1],
        clinic_name=clinic.name,
        **effect.mail,
    )
    return _outcome(request, status=status, by=actor.username, effect=effect)


@dataclass
class _Effect:
    """What a decision did, for its audit event and its mail."""

    recipient: tuple[str, str]  # e-mail, name
    details: dict[str, Any]
    mail: dict[str, Any]
    services: list[str] = field(default_factory=list)  # granted (approve)
    user_created: bool = False
    link_created: bool = False


def _outcome(
    request: RegistrationRequest, *, status: RequestStatus, by: str, effect: _Effect
) -> ReviewOutcome:
    assert request.id is not None and request.decided_at is not None
    return ReviewOutcome(
        request_id=request.id,
        status=status,
        decided_by=by,
        decided_at=request.decided_at,
        cpr=request.cpr,
        name=request.name,
        email=request.email,
        reason=request.reason,
        services=effect.services,
        user_created=effect.user_created,
        link_created=effect.link_created,
    )


def _approve_claimed(
    session: Session,
    request: RegistrationRequest,
    *,
    actor: Actor,
    clinic: Clinic,
    services: list[str] | None,
) -> _Effect:
    """Create or link the user (R1) with the services granted."""
    assert clinic.id is not None
    offered = catalog.split_services(clinic.services)
    requested = catalog.split_services(request.services)
    grant = services if services is not None else [s for s in requested if s in offered]
    linked = users.ensure_linked(
        session,
        clinic_id=clinic.id,
        cpr=request.cpr,
        name=request.name,
        email=request.email,
        origin="self",
        by=actor.username,
        services=catalog.join_services(grant),
        password_hash=request.password_hash,
        vouched_at=request.mitid_verified_at,
    )
    if linked.user_created and request.mitid_verified_at is not None:
        linked.user.mitid_verified_at = request.mitid_verified_at  # registered in MitID
        session.add(linked.user)
    recipient = (request.email, request.name)
    if not linked.user_created:
        # The request may have been made by anyone before this user existed: what it
        # typed is not used, and the mail goes only to the user's own address.
        recipient = (linked.user.email, linked.user.name)
    if not linked.link_created:  # linked meanwhile (by staff): the link is left as it is
        grant = catalog.split_services(linked.link.services)
    details = {
        "services": grant,
        "user_created": linked.user_created,
        "link_created": linked.link_created,
        "differences": sorted(linked.differences),
        "mitid": request.mitid_verified_at is not None,
    }
    return _Effect(
        recipient,
        details,
        {"services": grant},
        services=grant,
        user_created=linked.user_created,
        link_created=linked.link_created,
    )


def _reject_claimed(session: Session, request: RegistrationRequest) -> _Effect:
    """Nothing changes but the request; the mail goes to the patient's own address when
    the request was made inside MitID and the CPR number has a user."""
    recipient = (request.email, request.name)
    existing = users.find_user(session, request.cpr)
    if existing is not None and request.mitid_verified_at is not None:
        recipient = (existing.email, existing.name)  # the patient's own address
    return _Effect(recipient, {"reason": request.reason}, {"reason": request.reason})


def _chosen_services(clinic: Clinic, services: list[str] | str | None) -> list[str] | None:
    if services is None:
        return None
    chosen = catalog.parse_services(services)
    offered = catalog.split_services(clinic.services)
    missing = [s for s in chosen if s not in offered]
    if missing:
        offers = ", ".join(offered) or "no services"
        raise InvalidInput(
            f"Clinic {clinic.code} does not offer {missing[0]} (it offers {offers})."
        )
    return chosen


def _decide_one(
    session: Session,
    *,
    actor: Actor,
    clinic: Clinic,
    request_id: int,
    decision: str,
    services: list[str] | None = None,
    reason: str | None = None,
) -> ReviewOutcome:
    """Decide one request of the clinic and commit; NotFound when it is not there,
    AlreadyDecided when it is no longer pending."""
    _find(session, clinic, request_id)
    decided = _decide(
        session,
        actor=actor,
        clinic=clinic,
        request_id=request_id,
        decision=decision,
        services=services,
        reason=reason,
    )
    if decided is None:
        raise _already(session, clinic, request_id)
    session.commit()
    return decided


def approve(
    session: Session,
    *,
    actor: Actor,
    request_id: int,
    services: list[str] | str | None = None,
) -> ReviewOutcome:
    """Approve one request (doctors only); ``services`` overrides the default grant."""
    actor.require_role("doctor", action="approve registration requests")
    clinic = users.current_clinic(session, actor)
    chosen = _chosen_services(clinic, services)
    return _decide_one(
        session,
        actor=actor,
        clinic=clinic,
        request_id=request_id,
        decision="approve",
        services=chosen,
    )


def reject(
    session: Session, *, actor: Actor, request_id: int, reason: str | None = None
) -> ReviewOutcome:
    """Reject one request (doctors only); the reason, when given, is e-mailed."""
    actor.require_role("doctor", action="reject registration requests")
    clinic = users.current_clinic(session, actor)
    reason = clean_reason(reason)
    return _decide_one(
        session,
        actor=actor,
        clinic=clinic,
        request_id=request_id,
        decision="reject",
        reason=reason,
    )


def settle_pending(session: Session, *, actor: Actor, decision: str, reason: str | None) -> int:
    """Approve or reject every pending request of the clinic, in the caller's transaction.

    Called by ``clinics.set_registration`` when the mode changes (it commits). Approving
    needs a doctor; as that command is for admins, it succeeds only for someone who is
    both there (roles "admin,doctor"); otherwise a doctor approves the queue first, or
    the admin keeps or rejects it. Rejecting is part of the admin's mode change. Requests a
    doctor decides at the same moment are skipped, not decided twice. Returns how many
    were decided here.
    """
    if decision not in ("approve", "reject"):
        raise InvalidInput(f"Unknown decision {decision!r}: use approve or reject.")
    clinic = users.current_clinic(session, actor)
    if decision == "approve" and not actor.has_role("doctor"):
        raise Forbidden(
            f"Approving the pending requests while changing the mode needs both the admin "
            f"and the doctor role at clinic {clinic.code} (you are "
            f"{catalog.show_roles(actor.role)}): let a doctor approve them with "
            "`patientportal requests approve ID...` or `requests review`, or pass --pending "
            "keep or --pending reject."
        )
    reason = clean_reason(reason) if decision == "reject" else None
    if session.get_bind().dialect.name == "postgresql":
        # lock order clinic -> requests -> audit chain, as in a mode change without requests
        session.exec(select(Clinic).where(col(Clinic.id) == clinic.id).with_for_update()).one()
    pending = session.exec(
        select(RegistrationRequest.id)
        .where(
            RegistrationRequest.clinic_id == clinic.id,
            RegistrationRequest.status == RequestStatus.PENDING,
        )
        .order_by(col(RegistrationRequest.submitted_at), col(RegistrationRequest.id))
    ).all()
    handled = 0
    for request_id in pending:
        assert request_id is not None
        decided = _decide(
            session,
            actor=actor,
            clinic=clinic,
            request_id=request_id,
            decision=decision,
            reason=reason,
            via="clinic.set_registration",
        )
        handled += decided is not None
    return handled
