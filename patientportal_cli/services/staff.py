"""Staff members, their roles at clinics, and the first run (``init``)."""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import Session, col, func, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import ApiToken, Clinic, Membership, Staff
from patientportal_cli.errors import Conflict, Forbidden, InvalidInput, NotFound
from patientportal_cli.services import audit, auth, catalog, clinics, passwords, throttle
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.contact import clean_name
from patientportal_cli.vocabulary import Action

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


def check_username(username: str) -> str:
    norm = username.strip().lower()
    if not USERNAME_RE.match(norm):
        raise InvalidInput(
            "Invalid username: use 2-64 characters a-z, digits, '.', '-' or '_', starting "
            "with a letter or digit."
        )
    return norm


def is_initialised(session: Session) -> bool:
    return session.exec(select(func.count()).select_from(Staff)).one() > 0


def init(
    session: Session,
    *,
    clinic_code: str,
    clinic_name: str,
    admin: str,
    admin_name: str,
    password: str,
) -> tuple[Clinic, Staff]:
    """First run: the first clinic and its first admin, who may also create clinics."""
    if is_initialised(session):
        raise Conflict("This database is already initialised: `init` runs only once.")
    username = check_username(admin)
    passwords.check_policy(password)
    clinic = clinics.new_clinic(session, code=clinic_code, name=clinic_name)
    staff = Staff(
        username=username,
        full_name=clean_name(admin_name),
        password_hash=passwords.hash_password(password),
        may_create_clinics=True,
    )
    session.add(staff)
    session.flush()
    assert staff.id is not None and clinic.id is not None
    session.add(Membership(staff_id=staff.id, clinic_id=clinic.id, role="admin"))
    audit.record(
        session,
        actor=username,
        clinic=clinic.code,
        action=Action.INIT,
        target=f"clinic:{clinic.code}",
        details={"admin": username, "clinic_name": clinic.name},
    )
    session.commit()
    return clinic, staff


def members(session: Session, *, actor: Actor) -> list[tuple[Staff, str]]:
    clinic_id, _ = actor.require_clinic()
    rows = session.exec(
        select(Staff, Membership.role)
        .join(Membership, col(Membership.staff_id) == Staff.id)
        .where(Membership.clinic_id == clinic_id)
        .order_by(col(Staff.username))
    ).all()
    return [(s, r) for s, r in rows]


def _find(session: Session, username: str) -> Staff | None:
    return session.exec(select(Staff).where(Staff.username == username.strip().lower())).first()


def _membership(session: Session, staff_id: int, clinic_id: int) -> Membership | None:
    return session.exec(
        select(Membership).where(Membership.staff_id == staff_id, Membership.clinic_id == clinic_id)
    ).first()


def add(
    session: Session,
    *,
    actor: Actor,
    username: str,
    full_name: str,
    role: str,
    password: str | None,
) -> tuple[Staff, bool]:
    """Add a staff member to the current clinic. Returns (staff, created).

    A username that already exists (someone working at another clinic) only gets a
    membership here: the account's password, name, enabled state and
    ``may_create_clinics`` stay as they are (``password`` is ignored), since the account
    is not this clinic's. A disabled account is refused: only staff who may create
    clinics enable it again (``account``).
    """
    clinic_id, code = actor.require_role("admin", action="add staff")
    username = check_username(username)
    role = catalog.parse_roles(role)
    staff = _find(session, username)
    created = staff is None
    if staff is None:
        if password is None:
            raise InvalidInput("A new staff member needs a password.")
        passwords.check_policy(password)
        staff = Staff(
            username=username,
            full_name=clean_name(full_name),
            password_hash=passwords.hash_password(password),
        )
        session.add(staff)
        session.flush()
    elif not staff.active:
        raise Conflict(
            f"The account {username} is disabled: only staff who may create clinics can "
            f"enable it again (`patientportal staff account {username} --enable`)."
        )
    assert staff.id is not None
    if _membership(session, staff.id, clinic_id) is not None:
        raise Conflict(f"{username} already works at clinic {code}.")
    session.add(Membership(staff_id=staff.id, clinic_id=clinic_id, role=role))
    audit.record(
        session,
        actor=actor.username,
        clinic=code,
        action=Action.STAFF_ADD,
        target=f"staff:{username}",
        details={"role": role, "new_account": created},
    )
    session.commit()
    return staff, created


def _is_admin(role: str) -> bool:
    return "admin" in catalog.split_roles(role)


def _admin_count(session: Session, clinic_id: int) -> int:
    """Active staff of the clinic whose roles there include admin (checked here rather
    than in SQL, as a membership may hold several roles: "admin,doctor")."""
    roles = session.exec(
        select(Membership.role)
        .join(Staff, col(Staff.id) == Membership.staff_id)
        .where(Membership.clinic_id == clinic_id, Staff.active)
    ).all()
    return sum(_is_admin(role) for role in roles)


def _member_here(session: Session, actor: Actor, username: str) -> tuple[Staff, Membership, str]:
    clinic_id, code = actor.require_role("admin", action="change staff")
    # Changes to a clinic's staff take turns (the clinic row is locked to the end of the
    # transaction), so two admins demoting each other at once cannot leave no admin.
    session.exec(select(Clinic.id).where(Clinic.id == clinic_id).with_for_update()).first()
    staff = _find(session, username)
    member = _membership(session, staff.id, clinic_id) if staff and staff.id else None
    if staff is None or member is None:
        raise NotFound(f"No staff member {username!r} at clinic {code}.")
    return staff, member, code


def set_role(session: Session, *, actor: Actor, username: str, role: str) -> Membership:
    """Give a staff member these roles at the current clinic (one role, or several
    comma-separated: "admin,doctor"), replacing the roles they had there."""
    role = catalog.parse_roles(role)
    staff, member, code = _member_here(session, actor, username)
    if member.role == role:
        session.rollback()  # nothing changes, nothing to audit
        return member
    if (
        _is_admin(member.role)
        and not _is_admin(role)
        and _admin_count(session, member.clinic_id) <= 1
    ):
        raise Conflict(f"{staff.username} is the last admin of clinic {code}.")
    old = member.role
    member.role = role
    audit.record(
        session,
        actor=actor.username,
        clinic=code,
        action=Action.STAFF_SET_ROLE,
        target=f"staff:{staff.username}",
        details={"from": old, "to": role},
    )
    session.commit()
    return member


def _revoke_all(session: Session, staff_id: int | None, *, keep: int | None = None) -> int:
    """Revoke every live session and API token of the account (but ``keep``)."""
    count = 0
    for token in session.exec(
        select(ApiToken).where(ApiToken.staff_id == staff_id, col(ApiToken.revoked_at).is_(None))
    ):
        if token.id != keep:
            token.revoked_at = utcnow()
            session.add(token)
            count += 1
    return count


def disable(session: Session, *, actor: Actor, username: str) -> str:
    """Take a staff member off this clinic. Returns 'disabled' or 'removed'.

    The membership here ends, and with it at once the access to this clinic of every
    session and token of theirs. Someone who then works at no clinic is disabled (cannot
    log in, sessions and tokens revoked) - except staff who may create clinics, whose
    account is not a clinic's to switch off. Enabling a disabled account again is for
    staff who may create clinics (``account``), not for any clinic.
    """
    staff, member, code = _member_here(session, actor, username)
    if staff.id == actor.staff_id:
        raise Forbidden("You cannot disable yourself.")
    if _is_admin(member.role) and _admin_count(session, member.clinic_id) <= 1:
        raise Conflict(f"{staff.username} is the last admin of clinic {code}.")
    others = session.exec(
        select(func.count()).select_from(Membership).where(Membership.staff_id == staff.id)
    ).one()
    session.delete(member)
    outcome = "removed"
    if others <= 1 and not staff.may_create_clinics:
        staff.active = False
        outcome = "disabled"
        _revoke_all(session, staff.id)
    audit.record(
        session,
        actor=actor.username,
        clinic=code,
        action=Action.STAFF_DISABLE,
        target=f"staff:{staff.username}",
        details={"outcome": outcome},
    )
    session.commit()
    return outcome


def unlock(session: Session, *, actor: Actor, username: str) -> tuple[int, datetime | None]:
    """Lift the login lock (and the count of failed logins) of a staff member of this
    clinic (admin only). Returns what there was: (failures, end of the lock or None)."""
    staff, _member, code = _member_here(session, actor, username)
    until = throttle.locked_until(session, kind=throttle.STAFF, name=staff.username)
    failures, _ = throttle.clear(session, kind=throttle.STAFF, name=staff.username)
    if until is None and not failures:
        session.rollback()  # nothing changes, nothing to audit
        return 0, None
    audit.record(
        session,
        actor=actor.username,
        clinic=code,
        action=Action.STAFF_UNLOCK,
        target=f"staff:{staff.username}",
        details={"failures": failures, "locked_until": until.isoformat() if until else None},
    )
    session.commit()
    return failures, until


def change_own_password(session: Session, *, actor: Actor, current: str, new: str) -> None:
    """The account holder changes their own password; the current one is checked first
    (a wrong one counts toward the login lock, and while locked none is accepted)."""
    staff = session.get(Staff, actor.staff_id)
    assert staff is not None
    locked = throttle.locked_until(session, kind=throttle.STAFF, name=staff.username)
    if not passwords.verify_password(staff.password_hash, current) or locked is not None:
        if locked is None:
            auth.count_failure(session, staff.username)
        audit.record(
            session,
            actor=staff.username,
            action=Action.STAFF_PASSWORD_FAILED,
            clinic=actor.clinic_code,
        )
        session.commit()
        raise Forbidden(
            "The current password is wrong (or the account is locked after 5 failed logins)."
        )
    passwords.check_policy(new)
    staff.password_hash = passwords.hash_password(new)
    throttle.success(session, kind=throttle.STAFF, name=staff.username)
    ended = _revoke_all_sessions(session, staff.id, keep=actor.token_id)
    audit.record(
        session,
        actor=staff.username,
        clinic=actor.clinic_code,
        action=Action.STAFF_PASSWORD,
        target=f"staff:{staff.username}",
        details={"by": "self", "sessions_ended": ended},
    )
    session.commit()


def _revoke_all_sessions(session: Session, staff_id: int | None, *, keep: int | None) -> int:
    """End the account's other login sessions (API tokens stay: scripts hold them)."""
    count = 0
    for token in session.exec(
        select(ApiToken).where(
            ApiToken.staff_id == staff_id,
            ApiToken.kind == "session",
            col(ApiToken.revoked_at).is_(None),
        )
    ):
        if token.id != keep:
            token.revoked_at = utcnow()
            session.add(token)
            count += 1
    return count


def require_account_admin(actor: Actor) -> None:
    """Only staff who may create clinics change accounts as a whole."""
    if not actor.may_create_clinics:
        raise Forbidden(
            f"Only staff who may create clinics can change an account as a whole "
            f"({actor.username} may not)."
        )


def account(
    session: Session,
    *,
    actor: Actor,
    username: str,
    enable: bool | None = None,
    may_create_clinics: bool | None = None,
    password: str | None = None,
) -> dict[str, object]:
    """Change a staff account as a whole (staff who may create clinics only): enable or
    disable it, give or take ``may_create_clinics``, set a new password (which ends all
    its sessions and API tokens). Returns the changes (field -> new value; a password
    change as ``password: "set"``); nothing changed is not audited."""
    require_account_admin(actor)
    if enable is None and may_create_clinics is None and password is None:
        raise InvalidInput(
            "Nothing to change: give --enable, --disable, --may-create-clinics, "
            "--no-may-create-clinics or --new-password."
        )
    name = check_username(username)
    staff = session.exec(select(Staff).where(Staff.username == name).with_for_update()).first()
    if staff is None:
        raise NotFound(f"No staff account {name!r}.")
    if staff.id == actor.staff_id:
        raise Forbidden(
            "You cannot change your own account here: use `patientportal staff password` "
            "for your password; another who may create clinics changes the rest."
        )
    changes: dict[str, object] = {}
    if enable is not None and staff.active != enable:
        staff.active = enable
        changes["active"] = enable
    if may_create_clinics is not None and staff.may_create_clinics != may_create_clinics:
        staff.may_create_clinics = may_create_clinics
        changes["may_create_clinics"] = may_create_clinics
    if password is not None:
        passwords.check_policy(password)
        staff.password_hash = passwords.hash_password(password)
        changes["password"] = "set"
    if not changes:
        session.rollback()
        return changes
    revoked = 0
    if changes.get("active") is False or "password" in changes:
        revoked = _revoke_all(session, staff.id)
    session.add(staff)
    audit.record(
        session,
        actor=actor.username,
        clinic=actor.clinic_code,
        action=Action.STAFF_ACCOUNT,
        target=f"staff:{staff.username}",
        details={**changes, "tokens_revoked": revoked},
    )
    session.commit()
    return changes


def usernames_starting(
    session: Session, prefix: str, *, limit: int, clinic_code: str | None = None
) -> list[str]:
    """Usernames beginning with ``prefix`` (literally: ``_`` and ``%`` are no
    wildcards), in order (for TAB completion); with ``clinic_code`` (any case), only those
    of the staff at that clinic (none for an unknown code)."""
    query = select(Staff.username).where(col(Staff.username).startswith(prefix, autoescape=True))
    if clinic_code is not None:
        query = (
            query.join(Membership, col(Membership.staff_id) == Staff.id)
            .join(Clinic, col(Clinic.id) == Membership.clinic_id)
            .where(col(Clinic.code) == clinic_code.strip().upper())
        )
    return list(session.exec(query.order_by(col(Staff.username)).limit(limit)))


def username_exists(session: Session, username: str) -> bool:
    return _find(session, username) is not None


def needs_password(session: Session, username: str) -> bool:
    """Whether ``add`` needs a password: only for a new account (an existing one keeps
    its own)."""
    return _find(session, username) is None
