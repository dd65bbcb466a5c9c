"""A person's CPR number changes (``patient change-cpr OLD NEW [--merge]``), rule D40.

CPR-kontoret gives a person a new number (a wrong birth date or sex corrected, a
replacement number made permanent). The portal account is one per person (R1), used at
every clinic the person is linked to, so the change moves the whole account in ONE
transaction with ONE audit event naming both numbers, and a ``cpr_change`` row:

- the account itself (``portal_user.cpr``); its links, their no-MitID flags and services
  stay with it (they point at the user id), and so do guardianships and proxies
  (``delegation`` points at user ids: nothing to move);
- pending registration requests for OLD (``registration_request.cpr``); decided ones
  are history and keep the number they were decided under;
- the link history (``link_history``: "linked before" per clinic and number);
- the login throttle of the number (``services/throttle.py`` keys it by a hash of
  ``patient:CPR``): MOVED to the new number, failures and lock alike, so a lock set
  while someone guessed the password still holds; nothing is cleared.

Afterwards both numbers find the person in ``patient log`` (``numbers_of`` and
``find_by_number``, used by ``services/accesslog.py``).

Who: an admin or a doctor of a clinic where OLD is a patient (``ROLES``). A secretary
cannot: the change rewrites the identity every clinic of the person relies on.

NEW already has a portal user: refused, unless ``merge``. A merge first computes every
conflict (different names or e-mails, both with a password, either deactivated, both
linked at one clinic with different flags, services or record e-mails, both with a
pending request at one clinic, a guardianship or proxy between the two accounts or
the same one twice) and reports them all, changing nothing (exit 1). Without conflicts
the account of NEW is kept: OLD's links, delegations, codes, mail, CPR changes and a
password it lacks move to it, OLD's account is removed, and the ``cpr_change`` row says
``merged``. Conflicts at a clinic other than the actor's are told without naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, or_, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import (
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
from patientportal_cli.errors import Conflict, InvalidInput
from patientportal_cli.services import audit, catalog, throttle
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.cpr import normalize_cpr
from patientportal_cli.services.mail import outbox
from patientportal_cli.services.masking import mask_cpr
from patientportal_cli.services.users import current_clinic, find_user, lookup, target
from patientportal_cli.vocabulary import Action, RequestStatus

ROLES = ("admin", "doctor")
THROTTLE_MOVED = "moved"
THROTTLE_NONE = "none"


@dataclass(frozen=True)
class Change:
    """What ``change_cpr`` did (or, with ``dry_run``, would do)."""

    old_cpr: str
    new_cpr: str
    name: str
    clinic_code: str
    merged: bool
    dry_run: bool
    requests_moved: int
    history_moved: int
    # the login throttle of the old number: "moved" (it had failures or a lock) or "none"
    throttle: str
    links_moved: int = 0  # a merge: links of the old account now on the kept one
    delegations_moved: int = 0  # a merge: guardianships and proxies moved


class MergeConflicts(Conflict):
    """Every reason the two accounts cannot be merged (nothing was changed): the message
    is the one-line summary; ``reasons`` holds one sentence per conflict."""

    def __init__(self, old_cpr: str, new_cpr: str, reasons: list[str]) -> None:
        super().__init__(
            f"Cannot merge {mask_cpr(old_cpr)} into {mask_cpr(new_cpr)}: {len(reasons)} "
            "conflict(s); nothing was changed."
        )
        self.reasons = reasons


def numbers_of(session: Session, user_id: int) -> set[str]:
    """Every CPR number the user has had (``cpr_change``), besides the current one."""
    rows = session.exec(
        select(CprChange.old_cpr, CprChange.new_cpr).where(CprChange.user_id == user_id)
    ).all()
    return {number for pair in rows for number in pair}


def find_by_number(session: Session, cpr: str) -> PortalUser | None:
    """The user whose CPR number is ``cpr`` now, else the one who had it before (the
    newest change from it), else None."""
    user = find_user(session, cpr)
    if user is not None:
        return user
    row = session.exec(
        select(CprChange).where(CprChange.old_cpr == cpr).order_by(col(CprChange.id).desc())
    ).first()
    return None if row is None else session.get(PortalUser, row.user_id)


@dataclass(frozen=True)
class _Moved:
    """What ``_move`` moved to NEW, and the account kept (see ``Change``)."""

    kept: PortalUser
    requests: int
    history: int
    throttle: str
    links: int
    delegations: int


def change_cpr(
    session: Session,
    *,
    actor: Actor,
    old_cpr: str,
    new_cpr: str,
    merge: bool = False,
    dry_run: bool = False,
) -> Change:
    """Move the patient OLD (linked at the actor's clinic) to the number NEW; see the
    module docstring. Raises InvalidInput (bad numbers), Forbidden (role), NotFound (OLD
    not a patient here), Conflict (NEW has a user, no ``merge``), MergeConflicts."""
    old, new = normalize_cpr(old_cpr), normalize_cpr(new_cpr)
    if old == new:
        raise InvalidInput(f"The old and the new CPR number are the same ({mask_cpr(old)}).")
    actor.require_role(*ROLES, action="change a patient's CPR number")
    clinic = current_clinic(session, actor)
    user, _ = lookup(session, clinic=clinic, cpr=old)
    user = _locked(session, user.id)
    other = _other_to_merge(session, clinic=clinic, user=user, old=old, new=new, merge=merge)
    assert user.id is not None
    moved = _move(session, user=user, other=other, old=old, new=new)
    assert moved.kept.id is not None
    session.add(
        CprChange(
            user_id=moved.kept.id,
            old_cpr=old,
            new_cpr=new,
            changed_by=actor.username,
            merged=other is not None,
        )
    )
    session.flush()
    change = Change(
        old_cpr=old,
        new_cpr=new,
        name=moved.kept.name,
        clinic_code=clinic.code,
        merged=other is not None,
        dry_run=dry_run,
        requests_moved=moved.requests,
        history_moved=moved.history,
        throttle=moved.throttle,
        links_moved=moved.links,
        delegations_moved=moved.delegations,
    )
    _audit_change(session, actor=actor, change=change)
    session.commit()
    return change


def _other_to_merge(
    session: Session, *, clinic: Clinic, user: PortalUser, old: str, new: str, merge: bool
) -> PortalUser | None:
    """NEW's portal user (locked), or None; refused without ``merge``, or when the two
    accounts have merge conflicts (rolled back, nothing changed)."""
    other = find_user(session, new)
    if other is None:
        return None
    other = _locked(session, other.id)
    if not merge:
        raise Conflict(
            f"A portal user with the CPR number {mask_cpr(new)} already exists; nothing "
            "was changed. If both are the same person, merge them with --merge (every "
            "conflict is reported before anything changes)."
        )
    reasons = merge_conflicts(session, clinic=clinic, gone=user, kept=other)
    if reasons:
        session.rollback()
        raise MergeConflicts(old, new, reasons)
    return other


def _move(
    session: Session, *, user: PortalUser, other: PortalUser | None, old: str, new: str
) -> _Moved:
    """OLD's requests, link history and throttle go to NEW; the account takes NEW, or
    (``other``) is merged into NEW's account."""
    requests = _move_requests(session, old=old, new=new)
    history = _move_history(session, old=old, new=new)
    moved = _move_throttle(session, old=old, new=new)
    links = delegations = 0
    if other is None:
        user.cpr = new
        session.add(user)
        kept = user
    else:
        links, delegations = _merge_into(session, gone=user, kept=other)
        kept = other
    return _Moved(kept, requests, history, moved, links, delegations)


def _audit_change(session: Session, *, actor: Actor, change: Change) -> None:
    """The change's audit event; a dry run rolls everything back first and records a
    dry-run event for OLD instead."""
    details = {
        "old_cpr": change.old_cpr,
        "new_cpr": change.new_cpr,
        "merged": change.merged,
        "requests_moved": change.requests_moved,
        "history_moved": change.history_moved,
        "throttle": change.throttle,
        "links_moved": change.links_moved,
        "delegations_moved": change.delegations_moved,
    }
    if change.dry_run:
        session.rollback()
        audit.record(
            session,
            actor=actor.username,
            clinic=change.clinic_code,
            action=Action.PATIENT_DRY_RUN,
            target=target(change.old_cpr),
            details={"command": "change_cpr", **details},
        )
    else:
        audit.record(
            session,
            actor=actor.username,
            clinic=change.clinic_code,
            action=Action.PATIENT_CHANGE_CPR,
            target=target(change.new_cpr),
            details=details,
        )


def _locked(session: Session, user_id: int | None) -> PortalUser:
    """The user's row, locked for this transaction (PostgreSQL; SQLite writers take
    turns), read afresh."""
    return session.exec(
        select(PortalUser)
        .where(PortalUser.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


# --- conflicts of a merge --------------------------------------------------------------


def merge_conflicts(
    session: Session, *, clinic: Clinic, gone: PortalUser, kept: PortalUser
) -> list[str]:
    """Every reason ``gone`` (OLD) and ``kept`` (NEW) cannot become one account, each one
    sentence; other clinics are not named (isolation)."""
    reasons: list[str] = []
    if gone.name != kept.name:
        reasons.append("The two accounts have different names.")
    if gone.email.casefold() != kept.email.casefold():
        reasons.append("The two accounts have different e-mail addresses.")
    if gone.password_hash and kept.password_hash:
        reasons.append(
            "Both accounts have a password; the patient can keep only one (reset one of "
            "them with `patientportal patient reset-password`)."
        )
    if gone.deactivated_at is not None or kept.deactivated_at is not None:
        reasons.append("An account is deactivated; reactivate it first.")
    reasons += _link_conflicts(session, clinic=clinic, gone=gone, kept=kept)
    reasons += _request_conflicts(session, clinic=clinic, gone=gone, kept=kept)
    reasons += _delegation_conflicts(session, clinic=clinic, gone=gone, kept=kept)
    return list(dict.fromkeys(reasons))  # once each (other clinics are not counted)


def _where(clinic: Clinic, clinic_id: int) -> str:
    return f"at clinic {clinic.code}" if clinic_id == clinic.id else "at another clinic"


def _links(session: Session, user_id: int | None) -> dict[int, ClinicLink]:
    rows = session.exec(select(ClinicLink).where(ClinicLink.user_id == user_id))
    return {row.clinic_id: row for row in rows}


def _link_conflicts(
    session: Session, *, clinic: Clinic, gone: PortalUser, kept: PortalUser
) -> list[str]:
    reasons: list[str] = []
    kept_links = _links(session, kept.id)
    for clinic_id, a in sorted(_links(session, gone.id).items()):
        b = kept_links.get(clinic_id)
        if b is None:
            continue
        where = _where(clinic, clinic_id)
        if a.no_mitid != b.no_mitid:
            reasons.append(f"Both are linked {where} with different no-MitID flags.")
        if catalog.split_services(a.services) != catalog.split_services(b.services):
            reasons.append(f"Both are linked {where} with different services.")
        if (a.record_email or "").casefold() != (b.record_email or "").casefold():
            reasons.append(f"Both are linked {where} with different record e-mails.")
    return reasons


def _request_conflicts(
    session: Session, *, clinic: Clinic, gone: PortalUser, kept: PortalUser
) -> list[str]:
    pending: dict[str, set[int]] = {gone.cpr: set(), kept.cpr: set()}
    for cpr, clinic_id in session.exec(
        select(RegistrationRequest.cpr, RegistrationRequest.clinic_id).where(
            col(RegistrationRequest.cpr).in_([gone.cpr, kept.cpr]),
            RegistrationRequest.status == RequestStatus.PENDING,
        )
    ):
        pending[cpr].add(clinic_id)
    both = sorted(pending[gone.cpr] & pending[kept.cpr])
    return [
        f"Both numbers have a pending registration request {_where(clinic, c)}; decide "
        "one of them first."
        for c in both
    ]


def _delegation_conflicts(
    session: Session, *, clinic: Clinic, gone: PortalUser, kept: PortalUser
) -> list[str]:
    ids = {gone.id, kept.id}
    rows = session.exec(
        select(Delegation).where(
            col(Delegation.revoked_at).is_(None),
            or_(col(Delegation.patient_user_id).in_(ids), col(Delegation.holder_user_id).in_(ids)),
        )
    ).all()
    reasons: list[str] = []
    seen: set[tuple[int, int, int, str]] = set()
    for row in rows:
        where = _where(clinic, row.clinic_id)
        if {row.patient_user_id, row.holder_user_id} <= ids:
            reasons.append(f"One account acts for the other {where} (a guardianship or proxy).")
            continue
        patient = kept.id if row.patient_user_id in ids else row.patient_user_id
        holder = kept.id if row.holder_user_id in ids else row.holder_user_id
        assert patient is not None and holder is not None
        key = (row.clinic_id, patient, holder, row.kind)
        if key in seen:
            reasons.append(f"Both accounts have the same {row.kind} relation {where}.")
        seen.add(key)
    return reasons


# --- moving ------------------------------------------------------------------------------


def _move_requests(session: Session, *, old: str, new: str) -> int:
    result = session.execute(
        update(RegistrationRequest)
        .where(
            col(RegistrationRequest.cpr) == old,
            col(RegistrationRequest.status) == RequestStatus.PENDING,
        )
        .values(cpr=new)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _move_history(session: Session, *, old: str, new: str) -> int:
    """Each clinic's "linked before" row of OLD becomes NEW's (united with NEW's own row
    there: the earliest first link; still linked if either is)."""
    moved = 0
    for row in session.exec(select(LinkHistory).where(LinkHistory.cpr == old)).all():
        mine = session.exec(
            select(LinkHistory).where(
                LinkHistory.clinic_id == row.clinic_id, LinkHistory.cpr == new
            )
        ).first()
        if mine is None:
            row.cpr = new
            session.add(row)
        else:
            mine.first_linked_at = min(mine.first_linked_at, row.first_linked_at)
            if row.unlinked_at is None or mine.unlinked_at is None:
                mine.unlinked_at = None
            session.add(mine)
            session.delete(row)
        moved += 1
    session.flush()
    return moved


def _move_throttle(session: Session, *, old: str, new: str) -> str:
    """The old number's failures and lock move to the new number (the stricter of the
    two where both have a row); "moved", or "none" when the old number had neither."""
    row = session.exec(
        select(LoginThrottle)
        .where(LoginThrottle.key == throttle.key(throttle.PATIENT, old))
        .with_for_update()
    ).first()
    if row is None:
        return THROTTLE_NONE
    had = bool(row.failures or row.locked_until is not None)
    mine = session.exec(
        select(LoginThrottle)
        .where(LoginThrottle.key == throttle.key(throttle.PATIENT, new))
        .with_for_update()
    ).first()
    if mine is None:
        row.key = throttle.key(throttle.PATIENT, new)
        session.add(row)
    else:
        mine.failures = max(mine.failures, row.failures)
        mine.locked_until = _later(mine.locked_until, row.locked_until)
        mine.updated_at = utcnow()
        session.add(mine)
        session.delete(row)
    session.flush()
    return THROTTLE_MOVED if had else THROTTLE_NONE


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def _merge_into(session: Session, *, gone: PortalUser, kept: PortalUser) -> tuple[int, int]:
    """Everything of ``gone`` goes to ``kept`` (no conflicts: checked before); ``gone``
    is removed. (links moved, delegations moved)."""
    assert gone.id is not None and kept.id is not None
    outbox.end_pending_codes(session, user_id=gone.id, reason="the account was merged")
    links = 0
    kept_links = _links(session, kept.id)
    for clinic_id, link in _links(session, gone.id).items():
        same = kept_links.get(clinic_id)
        if same is None:
            link.user_id = kept.id
            session.add(link)
            links += 1
        else:  # the same link twice (no conflict): keep the earlier date on kept's
            same.linked_at = min(same.linked_at, link.linked_at)
            session.add(same)
            session.delete(link)
    delegations = 0
    for column in (Delegation.patient_user_id, Delegation.holder_user_id):
        result = session.execute(
            update(Delegation).where(col(column) == gone.id).values({column.key: kept.id})  # type: ignore[attr-defined]
        )
        delegations += int(result.rowcount or 0)  # type: ignore[attr-defined]
    for model in (OneTimeCode, Outbox, CprChange):
        session.execute(
            update(model).where(col(model.user_id) == gone.id).values(user_id=kept.id)  # type: ignore[attr-defined]
        )
    if not kept.password_hash and gone.password_hash:
        kept.password_hash = gone.password_hash
        kept.credentials_vouched_at = gone.credentials_vouched_at
    kept.mitid_verified_at = _later(kept.mitid_verified_at, gone.mitid_verified_at)
    kept.last_login_at = _later(kept.last_login_at, gone.last_login_at)
    kept.created_at = min(kept.created_at, gone.created_at)
    session.add(kept)
    session.flush()
    session.delete(gone)
    session.flush()
    return links, delegations
