"""The patient's side of the portal: activation, MitID login, two-factor login (R4, R5, R7).

What the web portal would do when a patient acts, so that support staff, demos and the
end-to-end tests can play the patient. Every attempt is written to the audit log with
actor ``patient``, the clinic's code and target ``cpr:<number>``:

- ``activate``: the activation code from the e-mail (7 days, single use) and a new
  password (the password policy). The user must be linked to the clinic.
- ``login_mitid``: MitID (``services/mitid.py``) confirms the CPR number; allowed for a
  user linked to the clinic; records ``mitid_verified_at``.
- ``start_two_factor``: CPR + password, then a 6-digit security code is e-mailed
  (10 minutes, single use, 5 wrong tries). Allowed only under the rule of DESIGN §1
  (``services.access.two_factor_allowed``); otherwise the Danish message of R5. Five
  wrong passwords in a row lock two-factor login for 15 minutes (staff can unlock); a
  correct password resets the count. A locked login is refused before the password is
  checked, so guessing cannot go on during the lock.
- ``verify_code``: the security code; ends the login.

Unknown CPR numbers, users not yet activated and wrong passwords get the same message,
so the login does not tell who is a user (the audit log has the exact reason).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, ClinicLink, Outbox, PortalUser
from patientportal_cli.errors import InvalidInput, Refused
from patientportal_cli.services import access, audit, codes, outbox, passwords
from patientportal_cli.services.auth import find_clinic
from patientportal_cli.services.cpr import normalize_cpr
from patientportal_cli.services.mitid import MitIdBroker
from patientportal_cli.services.users import find_link

ACTOR = "patient"
MAX_FAILED_LOGINS = 5
LOCK_MINUTES = 15
CODE_MINUTES = int(codes.LIFETIME[codes.LOGIN].total_seconds() // 60)
ACTIVATION_DAYS = codes.LIFETIME[codes.ACTIVATION].days

# R5: printed exactly as it stands (the tests assert it).
MITID_REQUIRED = (
    "Ved første login kræves verificering med MitID for at bekræfte din identitet. "
    "Kontakt klinikken, hvis du ikke har MitID."
)
LOGIN_FAILED = "Login failed: wrong CPR number or password."
NOT_LINKED = "You are not a portal user at clinic {clinic}: contact the clinic."
NO_CODE = (
    "There is no valid security code (it was used or replaced by a newer one): "
    "log in again to get a new code."
)
SECURITY_CODE_RE = re.compile(r"[0-9]{6}")


class WrongCode(Refused):
    """A wrong code that may be tried again (``tries_left`` > 0)."""

    def __init__(self, message: str, tries_left: int) -> None:
        super().__init__(message)
        self.tries_left = tries_left


@dataclass
class CodeSent:
    """The password was right and a security code is on its way."""

    user: PortalUser
    clinic: Clinic
    email: str  # masked, for the message
    minutes: int
    message_id: int  # the outbox row of the mail with the code


def mask_email(email: str) -> str:
    """``s***@example.dk``: enough to recognise one's own address, not to read it."""
    local, at, domain = email.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def _target(cpr: str) -> str:
    return f"cpr:{cpr}"


def _record(session: Session, *, clinic: Clinic, cpr: str, action: str, **details: Any) -> None:
    audit.record(
        session,
        actor=ACTOR,
        clinic=clinic.code,
        action=action,
        target=_target(cpr),
        details=details,
    )


def _fail(session: Session, error: Exception) -> Exception:
    """Commit what the attempt changed (counters, audit) and hand back the error to raise."""
    session.commit()
    return error


def _refused(
    session: Session, message: str, /, *, clinic: Clinic, cpr: str, action: str, **details: Any
) -> Exception:
    """Audit a refused or failed attempt, commit, and hand back Refused(message) to raise."""
    _record(session, clinic=clinic, cpr=cpr, action=action, **details)
    return _fail(session, Refused(message))


def _locked(user: PortalUser, now: datetime) -> bool:
    return access.locked_until(user, now=now) is not None


def _locked_message(user: PortalUser) -> str:
    assert user.locked_until is not None
    until = f"{user.locked_until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return (
        f"Two-factor login is locked until {until} after {MAX_FAILED_LOGINS} wrong "
        "passwords: try again later, or ask the clinic to unlock it."
    )


def _user_for_update(session: Session, cpr: str) -> PortalUser | None:
    """The user, its row locked for this transaction (PostgreSQL; SQLite is serial)."""
    return session.exec(select(PortalUser).where(PortalUser.cpr == cpr).with_for_update()).first()


# --- activation --------------------------------------------------------------------------


def activate(
    session: Session, *, cpr: str, clinic_code: str, code: str, password: str
) -> PortalUser:
    """Check the activation code and set the password (also ends a lock)."""
    number = normalize_cpr(cpr)
    clinic = find_clinic(session, clinic_code)
    passwords.check_policy(password)
    if not code.strip():
        raise InvalidInput("The activation code is empty: pass --code as in the e-mail.")
    user = _user_for_update(session, number)
    link = None if user is None or user.id is None else _link(session, clinic, user)
    if user is None or link is None:
        _record(
            session, clinic=clinic, cpr=number, action="portal.activate_failed", reason="not_linked"
        )
        raise _fail(
            session,
            Refused(
                f"No portal user with this CPR number is linked to clinic {clinic.code}: "
                "check the CPR number and the clinic code."
            ),
        )
    assert user.id is not None
    result = codes.check(session, user_id=user.id, purpose=codes.ACTIVATION, code=code)
    if result != "ok":
        _record(session, clinic=clinic, cpr=number, action="portal.activate_failed", reason=result)
        raise _fail(session, _activation_error(session, user.id, result))
    user.password_hash = passwords.hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)
    _record(session, clinic=clinic, cpr=number, action="portal.activate")
    session.commit()
    return user


def _activation_error(session: Session, user_id: int, result: str) -> Refused:
    ask = "ask the clinic to send a new one"
    if result == "expired":
        return Refused(
            f"The activation code has expired (codes are valid for {ACTIVATION_DAYS} days): {ask}."
        )
    if result == "wrong":
        left = _tries_left(session, user_id, codes.ACTIVATION)
        return WrongCode(f"Wrong activation code ({_tries(left)} left).", left)
    if result == "exhausted":
        return Refused(
            f"Wrong activation code; after {codes.MAX_ATTEMPTS} wrong tries it no longer "
            f"works: {ask}."
        )
    return Refused(
        "The activation code is no longer valid (it was already used or replaced by a "
        f"newer one): {ask}."
    )


def _tries_left(session: Session, user_id: int, purpose: str) -> int:
    row = codes.current(session, user_id=user_id, purpose=purpose)
    return 0 if row is None else max(codes.MAX_ATTEMPTS - row.attempts, 0)


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def _link(session: Session, clinic: Clinic, user: PortalUser) -> ClinicLink | None:
    assert clinic.id is not None and user.id is not None
    return find_link(session, clinic_id=clinic.id, user_id=user.id)


# --- MitID ---------------------------------------------------------------------------------


def login_mitid(session: Session, *, cpr: str, clinic_code: str, broker: MitIdBroker) -> PortalUser:
    """Log in with MitID: always allowed for a linked user; records the verification."""
    number = normalize_cpr(cpr)
    clinic = find_clinic(session, clinic_code)
    result = broker.verify(number)
    if not result.verified or result.cpr != number:
        raise _refused(
            session,
            "MitID did not confirm your identity: login failed.",
            clinic=clinic,
            cpr=number,
            action="portal.login_failed",
            method="mitid",
            reason="mitid_not_verified",
            broker=broker.name,
        )
    user = _user_for_update(session, number)
    link = None if user is None else _link(session, clinic, user)
    if user is None or link is None:
        raise _refused(
            session,
            NOT_LINKED.format(clinic=clinic.code),
            clinic=clinic,
            cpr=number,
            action="portal.login_refused",
            method="mitid",
            reason="not_linked",
            broker=broker.name,
        )
    user.mitid_verified_at = utcnow()
    session.add(user)
    _record(
        session,
        clinic=clinic,
        cpr=number,
        action="portal.login",
        method="mitid",
        broker=broker.name,
    )
    session.commit()
    return user


# --- two-factor ----------------------------------------------------------------------------


def start_two_factor(session: Session, *, cpr: str, clinic_code: str, password: str) -> CodeSent:
    """Check CPR + password and the R4/R5/R7 rule; e-mail a security code (outbox)."""
    number = normalize_cpr(cpr)
    clinic = find_clinic(session, clinic_code)
    now = utcnow()
    user = _user_for_update(session, number)

    def failed(reason: str, **details: Any) -> Exception:
        return _refused(
            session,
            LOGIN_FAILED,
            clinic=clinic,
            cpr=number,
            action="portal.login_failed",
            method="two-factor",
            reason=reason,
            **details,
        )

    if user is None:
        passwords.dummy_verify(password)
        raise failed("unknown_user")
    if _locked(user, now):
        raise _refused(
            session,
            _locked_message(user),
            clinic=clinic,
            cpr=number,
            action="portal.login_locked",
            method="two-factor",
            locked_until=user.locked_until,
        )
    if not user.password_hash:
        passwords.dummy_verify(password)
        raise failed("not_activated")
    if not passwords.verify_password(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + timedelta(minutes=LOCK_MINUTES)
            user.failed_logins = 0
            session.add(user)
            raise _refused(
                session,
                f"{LOGIN_FAILED} After {MAX_FAILED_LOGINS} wrong passwords, two-factor "
                f"login is locked for {LOCK_MINUTES} minutes.",
                clinic=clinic,
                cpr=number,
                action="portal.login_failed",
                method="two-factor",
                reason="wrong_password",
                locked_until=user.locked_until,
            )
        session.add(user)
        raise failed("wrong_password", failed_logins=user.failed_logins)
    user.failed_logins = 0
    session.add(user)

    link = _link(session, clinic, user)
    if link is None:
        raise _refused(
            session,
            NOT_LINKED.format(clinic=clinic.code),
            clinic=clinic,
            cpr=number,
            action="portal.login_refused",
            method="two-factor",
            reason="not_linked",
        )
    assert clinic.id is not None and user.id is not None
    allowed, reason = access.two_factor_allowed(session, clinic_id=clinic.id, user=user)
    if not allowed:
        raise _refused(
            session,
            MITID_REQUIRED,
            clinic=clinic,
            cpr=number,
            action="portal.login_refused",
            method="two-factor",
            reason="mitid_required",
            why=reason,
        )

    message = outbox.enqueue(
        session,
        to=user.email,
        template="security_code",
        clinic_id=clinic.id,
        user_id=user.id,
        name=user.name,
        minutes=CODE_MINUTES,
        clinic_name=clinic.name,
    )
    assert message.id is not None
    _record(
        session, clinic=clinic, cpr=number, action="portal.login_code_sent", method="two-factor"
    )
    session.commit()
    return CodeSent(
        user=user,
        clinic=clinic,
        email=mask_email(user.email),
        minutes=CODE_MINUTES,
        message_id=message.id,
    )


def delivered(session: Session, *, message_id: int) -> bool:
    """Has the outbox message been sent (after ``send_queued``)?"""
    message = session.get(Outbox, message_id)
    return message is not None and message.sent_at is not None


def verify_code(session: Session, *, cpr: str, clinic_code: str, code: str) -> PortalUser:
    """The security code of a two-factor login: the last step of the login."""
    number = normalize_cpr(cpr)
    clinic = find_clinic(session, clinic_code)
    entered = code.strip().replace(" ", "")
    if not SECURITY_CODE_RE.fullmatch(entered):
        raise InvalidInput("The security code is the 6 digits from the e-mail.")
    now = utcnow()
    user = _user_for_update(session, number)
    link = None if user is None else _link(session, clinic, user)

    def refused(message: str, action: str = "portal.login_failed", **details: Any) -> Exception:
        return _refused(
            session,
            message,
            clinic=clinic,
            cpr=number,
            action=action,
            method="two-factor",
            step="security_code",
            **details,
        )

    if user is None or link is None:
        raise refused(NO_CODE, reason="no_code")
    assert user.id is not None and clinic.id is not None
    if _locked(user, now):
        raise refused(
            _locked_message(user), action="portal.login_locked", locked_until=user.locked_until
        )
    allowed, reason = access.two_factor_allowed(session, clinic_id=clinic.id, user=user)
    if not allowed:
        raise refused(
            MITID_REQUIRED, action="portal.login_refused", reason="mitid_required", why=reason
        )
    row = codes.current(session, user_id=user.id, purpose=codes.LOGIN)
    if row is None or (row.clinic_id is not None and row.clinic_id != clinic.id):
        raise refused(NO_CODE, reason="no_code")
    result = codes.check(session, user_id=user.id, purpose=codes.LOGIN, code=entered)
    if result == "ok":
        _record(session, clinic=clinic, cpr=number, action="portal.login", method="two-factor")
        session.commit()
        return user
    if result == "wrong":
        left = _tries_left(session, user.id, codes.LOGIN)
        _record(
            session,
            clinic=clinic,
            cpr=number,
            action="portal.login_failed",
            method="two-factor",
            step="security_code",
            reason="wrong_code",
            tries_left=left,
        )
        raise _fail(session, WrongCode(f"Wrong security code ({_tries(left)} left).", left))
    if result == "exhausted":
        raise refused(
            f"Wrong security code; after {codes.MAX_ATTEMPTS} wrong tries it no longer works: "
            "log in again to get a new code.",
            reason="code_exhausted",
        )
    if result == "expired":
        raise refused(
            f"The security code has expired (codes are valid for {CODE_MINUTES} minutes): "
            "log in again to get a new code.",
            reason="code_expired",
        )
    raise refused(NO_CODE, reason="no_code")
