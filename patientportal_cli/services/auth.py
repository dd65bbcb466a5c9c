"""Staff sessions and API tokens, and who is acting (the ``Actor``).

A token is ``pp_`` + 32 random bytes (urlsafe); only its sha256 is stored. A login
session lasts 12 hours; an API token (``staff token create``) lasts the days asked for.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import Session, col, func, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import ApiToken, Clinic, Membership, Staff
from patientportal_cli.errors import Conflict, Forbidden, InvalidInput, NotFound, NotLoggedIn
from patientportal_cli.services import audit, catalog, passwords, throttle
from patientportal_cli.services.contact import clean_name
from patientportal_cli.vocabulary import Action

SESSION_HOURS = 12
TOKEN_NAME_LENGTH = 100
LOGIN_FAILED = (
    "Login failed: wrong username or password, or the account is disabled or locked "
    "(5 failed logins lock it for 15 minutes)."
)


@dataclass
class Actor:
    """The logged-in staff member, and the clinic the command acts on."""

    staff_id: int
    username: str
    full_name: str
    may_create_clinics: bool
    # clinic code -> the stored role text there: one role, or several in catalogue
    # order ("admin,doctor")
    roles: dict[str, str] = field(default_factory=dict)
    clinic_id: int | None = None
    clinic_code: str | None = None
    token_id: int | None = None

    @property
    def role(self) -> str | None:
        """The stored role text at the current clinic ("doctor", "admin,doctor")."""
        return self.roles.get(self.clinic_code or "")

    @property
    def role_names(self) -> list[str]:
        """The actor's roles at the current clinic (none without a clinic)."""
        return catalog.split_roles(self.role)

    def has_role(self, name: str) -> bool:
        """Whether one of the actor's roles at the current clinic is ``name``."""
        return name in self.role_names

    def require_clinic(self) -> tuple[int, str]:
        if self.clinic_id is None or self.clinic_code is None:
            if not self.roles:
                raise Forbidden(f"{self.username} does not work at any clinic.")
            codes = ", ".join(sorted(self.roles))
            raise InvalidInput(f"You work at several clinics ({codes}): pass --clinic CODE.")
        return self.clinic_id, self.clinic_code

    def require_role(self, *allowed: str, action: str) -> tuple[int, str]:
        clinic_id, code = self.require_clinic()
        if not any(self.has_role(name) for name in allowed):
            need = " or ".join(allowed)
            article = "an" if need[0] in "aeiou" else "a"
            raise Forbidden(
                f"Only {article} {need} at clinic {code} can {action} "
                f"(you are {catalog.show_roles(self.role)})."
            )
        return clinic_id, code


def new_token() -> tuple[str, str]:
    token = "pp_" + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def find_clinic(session: Session, code: str) -> Clinic:
    """The clinic with this code; InvalidInput for a malformed code, NotFound if none."""
    code = catalog.check_clinic_code(code)
    clinic = session.exec(select(Clinic).where(Clinic.code == code)).first()
    if clinic is None:
        raise NotFound(f"No clinic with code {code!r}.")
    return clinic


def count_failure(session: Session, name: str) -> None:
    """Count a failed password check of the staff username toward its lock; the failure
    that starts a lock is audited (``staff.locked``, no clinic: a username is not any
    one clinic's)."""
    until = throttle.failure(session, kind=throttle.STAFF, name=name)
    if until is not None:
        audit.record(
            session,
            actor=name,
            action=Action.STAFF_LOCKED,
            target=f"staff:{name}",
            details={"failures": throttle.MAX_FAILURES, "locked_until": until.isoformat()},
        )


def login(
    session: Session,
    *,
    username: str,
    password: str,
    clinic_code: str | None = None,
    default_clinic: str | None = None,
) -> tuple[str, Staff]:
    """A new 12-hour session for the username and password, or NotLoggedIn(LOGIN_FAILED).

    Unknown username, wrong password, disabled account and locked username are refused
    alike: the same message, one argon2 check each (so the same time), and each counts
    toward the username's lock (5 failures lock it for 15 minutes, see services/throttle),
    whether or not the username exists. While locked even the right password is refused.

    The session keeps the clinic it was made for: ``clinic_code`` (--clinic), else
    ``default_clinic`` (config.toml) where they work, else their only clinic. That
    clinic stays theirs when they join another clinic (``clinic create``), until they
    log in with another --clinic (or pass --clinic to a command).
    """
    if session.exec(select(func.count()).select_from(Staff)).one() == 0:
        raise NotFound(
            "No database has been set up yet: run `patientportal init` first "
            "(or point --db at the existing database)."
        )
    name = username.strip().lower()[:64]
    locked = throttle.locked_until(session, kind=throttle.STAFF, name=name)
    staff = session.exec(select(Staff).where(Staff.username == name)).first()
    stored = staff.password_hash if staff is not None and staff.active else None
    matched = passwords.verify_password(stored, password)
    if locked is not None or not matched or staff is None:
        if locked is None:
            count_failure(session, name)
        audit.record(session, actor=name, action=Action.STAFF_LOGIN_FAILED)
        session.commit()
        raise NotLoggedIn(LOGIN_FAILED)
    throttle.success(session, kind=throttle.STAFF, name=name)
    clinic_id = _login_clinic(session, staff, clinic_code, default_clinic)
    token, digest = new_token()
    assert staff.id is not None
    session.add(
        ApiToken(
            staff_id=staff.id,
            token_hash=digest,
            kind="session",
            clinic_id=clinic_id,
            expires_at=utcnow() + timedelta(hours=SESSION_HOURS),
        )
    )
    audit.record(session, actor=staff.username, action=Action.STAFF_LOGIN)
    session.commit()
    return token, staff


def _login_clinic(
    session: Session, staff: Staff, clinic_code: str | None, default_clinic: str | None
) -> int | None:
    """The id of the clinic a new session keeps (see ``login``); None when they work at
    several clinics and none was chosen."""
    if clinic_code:
        clinic = find_clinic(session, clinic_code)
        _membership(session, staff, clinic)
        return clinic.id
    ids = _clinic_ids(session, staff)
    code = _fallback_clinic(ids, default_clinic)
    return ids[code] if code is not None else None


def _membership(session: Session, staff: Staff, clinic: Clinic) -> Membership:
    member = session.exec(
        select(Membership).where(Membership.staff_id == staff.id, Membership.clinic_id == clinic.id)
    ).first()
    if member is None:
        raise Forbidden(f"{staff.username} does not work at clinic {clinic.code}.")
    return member


def resolve(
    session: Session,
    *,
    token: str | None,
    clinic_code: str | None,
    default_clinic: str | None = None,
) -> Actor:
    """The actor behind a token, acting on: ``clinic_code`` (--clinic), else the clinic
    the session or token keeps (chosen at login, or the token's clinic; refused when they
    no longer work there), else ``default_clinic`` (config.toml) if they work there, else
    their only clinic (none picked for someone at several clinics). Memberships are read
    on every call, so a ``staff disable`` ends access to that clinic at once for every
    session and token."""
    row = _live_token(session, token)
    staff = _active_staff(session, row)
    actor, ids = _actor(session, staff, row)
    if clinic_code:
        code: str | None = _chosen_clinic(session, staff, ids, clinic_code)
    elif row.clinic_id is not None:
        code = _kept_clinic(session, staff, ids, row.clinic_id)
    else:
        code = _fallback_clinic(ids, default_clinic)
    if code is not None:
        actor.clinic_code, actor.clinic_id = code, ids[code]
    return actor


def _live_token(session: Session, token: str | None) -> ApiToken:
    """The token's row: NotLoggedIn when there is none, or it is unknown, revoked or
    expired."""
    if not token:
        raise NotLoggedIn("Not logged in: run `patientportal login USERNAME`.")
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).first()
    if row is None:
        raise NotLoggedIn("Your session or token is not valid: log in again.")
    if row.revoked_at is not None:
        raise NotLoggedIn("This session or token was revoked: log in again.")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise NotLoggedIn("Your session has expired: log in again.")
    return row


def _active_staff(session: Session, row: ApiToken) -> Staff:
    staff = session.get(Staff, row.staff_id)
    if staff is None or not staff.active:
        raise NotLoggedIn("This staff account is disabled.")
    return staff


def _clinic_ids(session: Session, staff: Staff) -> dict[str, int]:
    """Clinic code -> id of each clinic the staff member works at."""
    rows = session.exec(
        select(Clinic.code, Clinic.id)
        .join(Membership, col(Clinic.id) == Membership.clinic_id)
        .where(Membership.staff_id == staff.id)
    ).all()
    return {code: clinic_id for code, clinic_id in rows if clinic_id is not None}


def _actor(session: Session, staff: Staff, row: ApiToken) -> tuple[Actor, dict[str, int]]:
    """The actor (no clinic chosen yet) and the ids of their clinics by code."""
    memberships = session.exec(
        select(Membership, Clinic)
        .join(Clinic, col(Clinic.id) == Membership.clinic_id)
        .where(Membership.staff_id == staff.id)
    ).all()
    assert staff.id is not None
    actor = Actor(
        staff_id=staff.id,
        username=staff.username,
        full_name=staff.full_name,
        may_create_clinics=staff.may_create_clinics,
        roles={c.code: m.role for m, c in memberships},
        token_id=row.id,
    )
    return actor, {c.code: c.id for _, c in memberships if c.id is not None}


def _chosen_clinic(session: Session, staff: Staff, ids: dict[str, int], clinic_code: str) -> str:
    """The clinic given with --clinic: NotFound when it does not exist, Forbidden when
    they do not work there."""
    code = catalog.check_clinic_code(clinic_code)
    if code not in ids:
        find_clinic(session, code)  # NotFound when it does not exist at all
        raise Forbidden(f"{staff.username} does not work at clinic {code}.")
    return code


def _kept_clinic(session: Session, staff: Staff, ids: dict[str, int], clinic_id: int) -> str:
    """The clinic the session or token was made for; Forbidden when they no longer work
    there: never a fall back to another one (a script's token for SYD must not start
    acting at NORD)."""
    for code, known in ids.items():
        if known == clinic_id:
            return code
    bound = session.get(Clinic, clinic_id)
    where = bound.code if bound is not None else "?"
    raise Forbidden(
        f"{staff.username} no longer works at clinic {where}, the clinic this "
        "session or token was made for: pass --clinic CODE."
    )


def _fallback_clinic(ids: dict[str, int], default_clinic: str | None) -> str | None:
    """``default_clinic`` where they work there, else their only clinic, else None."""
    if default_clinic and default_clinic.strip().upper() in ids:
        return default_clinic.strip().upper()
    if len(ids) == 1:
        return next(iter(ids))
    return None


def logout(session: Session, *, token: str) -> str:
    """End a login session: 'revoked', 'already' (ended or unknown), or 'api' for an API
    token, which logout leaves valid (``staff token revoke`` ends those)."""
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).first()
    if row is None or row.revoked_at is not None:
        return "already"
    if row.kind == "api":
        return "api"
    row.revoked_at = utcnow()
    staff = session.get(Staff, row.staff_id)
    audit.record(session, actor=staff.username if staff else "?", action=Action.STAFF_LOGOUT)
    session.commit()
    return "revoked"


def create_api_token(
    session: Session, *, actor: Actor, name: str, days: int
) -> tuple[str, ApiToken]:
    if days < 1 or days > 3650:
        raise InvalidInput("--days must be between 1 and 3650.")
    name = clean_name(name)
    if len(name) > TOKEN_NAME_LENGTH:
        raise InvalidInput(f"A token name has at most {TOKEN_NAME_LENGTH} characters.")
    token, digest = new_token()
    row = ApiToken(
        staff_id=actor.staff_id,
        token_hash=digest,
        kind="api",
        name=name,
        clinic_id=actor.clinic_id,
        expires_at=utcnow() + timedelta(days=days),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor.username,
        clinic=actor.clinic_code,
        action=Action.TOKEN_CREATE,
        target=f"token:{row.id}",
        details={"name": name, "days": days},
    )
    session.commit()
    return token, row


def list_tokens(session: Session, *, actor: Actor) -> list[ApiToken]:
    return list(
        session.exec(
            select(ApiToken)
            .where(ApiToken.staff_id == actor.staff_id, ApiToken.kind == "api")
            .order_by(col(ApiToken.id))
        )
    )


def revoke_token(session: Session, *, actor: Actor, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None or row.staff_id != actor.staff_id or row.kind != "api":
        raise NotFound(f"You have no API token with id {token_id}.")
    if row.revoked_at is not None:
        raise Conflict(f"Token {token_id} is already revoked.")
    row.revoked_at = utcnow()
    audit.record(
        session,
        actor=actor.username,
        clinic=actor.clinic_code,
        action=Action.TOKEN_REVOKE,
        target=f"token:{token_id}",
    )
    session.commit()
    return row
