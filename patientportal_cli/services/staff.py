"""Staff members, their roles at clinics, and the first run (``init``)."""

from __future__ import annotations

import re

from sqlmodel import Session, col, func, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import ApiToken, Clinic, Membership, Staff
from patientportal_cli.errors import Conflict, Forbidden, InvalidInput, NotFound
from patientportal_cli.services import audit, catalog, clinics, passwords
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.contact import clean_name

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
        action="init",
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

    A username that already exists (someone working at another clinic) gets a role at
    this clinic; their password and name stay as they are. A disabled account is
    enabled again, with the new password given (its old password is not revived).
    """
    clinic_id, code = actor.require_role("admin", action="add staff")
    username = check_username(username)
    role = catalog.parse_roles(role)
    staff = _find(session, username)
    created = staff is None
    reactivated = False
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
        if password is None:
            raise InvalidInput(
                f"{username} was disabled: enabling the account needs a new password."
            )
        passwords.check_policy(password)
        staff.password_hash = passwords.hash_password(password)
        staff.active = True
        reactivated = True
    assert staff.id is not None
    if _membership(session, staff.id, clinic_id) is not None:
        raise Conflict(f"{username} already works at clinic {code}.")
    session.add(Membership(staff_id=staff.id, clinic_id=clinic_id, role=role))
    audit.record(
        session,
        actor=actor.username,
        clinic=code,
        action="staff.add",
        target=f"staff:{username}",
        details={"role": role, "new_account": created, "reactivated": reactivated},
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
        action="staff.set_role",
        target=f"staff:{staff.username}",
        details={"from": old, "to": role},
    )
    session.commit()
    return member


def disable(session: Session, *, actor: Actor, username: str) -> str:
    """Take a staff member off this clinic. Returns 'disabled' or 'removed'.

    Someone who works only here is disabled (cannot log in, tokens revoked); someone who
    also works at other clinics loses only their role here.
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
    if others <= 1:
        staff.active = False
        outcome = "disabled"
        for token in session.exec(
            select(ApiToken).where(
                ApiToken.staff_id == staff.id, col(ApiToken.revoked_at).is_(None)
            )
        ):
            token.revoked_at = utcnow()
    audit.record(
        session,
        actor=actor.username,
        clinic=code,
        action="staff.disable",
        target=f"staff:{staff.username}",
        details={"outcome": outcome},
    )
    session.commit()
    return outcome


def username_exists(session: Session, username: str) -> bool:
    return _find(session, username) is not None


def needs_password(session: Session, username: str) -> bool:
    """Whether ``add`` needs a password: a new account, or a disabled one enabled again."""
    staff = _find(session, username)
    return staff is None or not staff.active
