"""The patient's side of the portal: activation, MitID login, two-factor login (R4, R5, R7).

What the web portal would do when a patient acts, so that support staff, demos and the
end-to-end tests can play the patient. Every attempt is written to the audit log with
actor ``patient``, the clinic's code and target ``cpr:<number>``:

- ``activate``: the activation code from the e-mail (7 days, single use) and a new
  password (the password policy). The user must be linked to the clinic.
- ``login_mitid``: MitID (``services/mitid.py``) confirms the CPR number; allowed for a
  user linked to the clinic; records ``mitid_verified_at``.
- ``start_two_factor``: CPR + password, then a 6-digit security code is e-mailed
  (10 minutes, single use) for this login only: the caller gets an attempt id, and the
  code can be tried only with it. ``services.login_rules`` decides whether the login
  goes on and which refusal applies (``two_factor_login``, ``refusal``: docs/rules.md
  D1); the portal applies it (the Danish message of R5 for ``mitid_required``).
- ``verify_code``: the attempt id and the security code; ends the login (the rule is
  decided again: ``login_rules.security_code_step``).

Lock (``services/throttle.py``, kind ``patient``, name the 10-digit CPR number): every
failed step - wrong password, wrong activation code, wrong security code or attempt id,
and the same for an unknown CPR number, a user not activated or not linked to the
clinic - counts; the fifth in a row locks login and activation for that CPR number for
15 minutes, whether or not a user has it. Only a completed login or activation starts
the count again (a right password alone does not, or fresh codes would give endless
code tries). A locked CPR number is refused before anything is checked; staff lift the
lock with ``patient unlock``. MitID login is not subject to the lock.

No refusal tells who is a user: unknown CPR numbers, users not activated or not linked
to the clinic and wrong passwords (or activation codes) get the same message, the same
count and the same lock message, and cost the same (exactly one argon2 check per login
attempt: ``passwords.dummy_verify`` where there is no password to check; activation
refusals check no password at all). The audit log has the exact reason.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, ClinicLink, OneTimeCode, Outbox, PortalUser
from patientportal_cli.errors import InvalidInput, Refused
from patientportal_cli.services import audit, codes, login_rules, passwords, throttle
from patientportal_cli.services import credentials as credentials_mod
from patientportal_cli.services.auth import find_clinic
from patientportal_cli.services.cpr import normalize_cpr
from patientportal_cli.services.mail import outbox
from patientportal_cli.services.masking import mask_email
from patientportal_cli.services.mitid import MitIdBroker
from patientportal_cli.services.users import find_link
from patientportal_cli.vocabulary import Action, CodeCheck

ACTOR = "patient"
MAX_FAILED_LOGINS = throttle.MAX_FAILURES
LOCK_MINUTES = throttle.LOCK_MINUTES
CODE_MINUTES = int(codes.LIFETIME[codes.LOGIN].total_seconds() // 60)
ACTIVATION_DAYS = codes.LIFETIME[codes.ACTIVATION].days

# R5: printed exactly as it stands (the tests assert it).
MITID_REQUIRED = (
    "Ved første login kræves verificering med MitID for at bekræfte din identitet. "
    "Kontakt klinikken, hvis du ikke har MitID."
)
LOGIN_FAILED = "Login failed: wrong CPR number or password."
ACTIVATION_FAILED = (
    "Activation failed: wrong CPR number, clinic or activation code (a code works "
    f"once, for {ACTIVATION_DAYS} days; the clinic can send a new one)."
)
CODE_NOT_VALID = "The security code is not valid for this login: log in again to get a new code."
NOW_LOCKED = (
    f"After {MAX_FAILED_LOGINS} failed attempts, login is locked for {LOCK_MINUTES} minutes."
)
NOT_LINKED = "You are not a portal user at clinic {clinic}: contact the clinic."
# a deactivated account (services/lifecycle.py): neutral, never why
NOT_ACTIVE = "Din adgang til patientportalen er ikke aktiv. Kontakt klinikken."
SECURITY_CODE_RE = re.compile(r"[0-9]{6}")


# ``acting``: the caller's further condition (acting for someone, ``portal login --for``:
# ``delegations.ActingFor.check``), called with (session, user, clinic, **step) once the
# user is authenticated as far as the step goes; it raises to refuse.
Acting = Callable[..., None]


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
    attempt: str  # the login's attempt id: only it can try the code (not stored in clear)


def _target(cpr: str) -> str:
    return f"cpr:{cpr}"


def _record(session: Session, *, clinic: Clinic, cpr: str, action: Action, **details: Any) -> None:
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
    session: Session, message: str, /, *, clinic: Clinic, cpr: str, action: Action, **details: Any
) -> Exception:
    """Audit a refused or failed attempt, commit, and hand back Refused(message) to raise."""
    _record(session, clinic=clinic, cpr=cpr, action=action, **details)
    return _fail(session, Refused(message))


def _refuse_when_locked(session: Session, /, *, clinic: Clinic, cpr: str, **details: Any) -> None:
    """Refuse a step tried while the CPR number is locked, before anything is checked.
    Holds the lock's row until the attempt commits: parallel attempts for one CPR number
    take turns."""
    until = throttle.hold(session, kind=throttle.PATIENT, name=cpr)
    if until is not None:
        raise _refused_locked(session, until, clinic=clinic, cpr=cpr, **details)


def _locked_message(until: datetime) -> str:
    return (
        f"Login is locked until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC after "
        f"{MAX_FAILED_LOGINS} failed attempts: try again later, or ask the clinic to unlock it."
    )


def _refused_locked(
    session: Session, until: datetime, /, *, clinic: Clinic, cpr: str, **details: Any
) -> Exception:
    """A step tried while the CPR number is locked: refused before anything is checked."""
    return _refused(
        session,
        _locked_message(until),
        clinic=clinic,
        cpr=cpr,
        action=Action.PORTAL_LOGIN_LOCKED,
        locked_until=until,
        **details,
    )


def _failure(
    session: Session,
    message: str,
    /,
    *,
    clinic: Clinic,
    cpr: str,
    action: Action,
    wrong_code: int | None = None,
    generic: str | None = None,
    **details: Any,
) -> Exception:
    """A failed step: counts toward the CPR number's lock (user or not), audited, committed.

    The fifth failure in a row gets ``generic`` (else ``message``) and the lock, the
    same for everyone. A
    wrong security code (``wrong_code``: the code's own tries left) that does not lock
    is a ``WrongCode`` with the tries left before either the code ends or the lock."""
    until = throttle.failure(session, kind=throttle.PATIENT, name=cpr)
    if until is not None:
        return _refused(
            session,
            f"{generic or message} {NOW_LOCKED}",
            clinic=clinic,
            cpr=cpr,
            action=action,
            locked_until=until,
            **details,
        )
    if wrong_code is None:
        return _refused(session, message, clinic=clinic, cpr=cpr, action=action, **details)
    left = min(
        wrong_code,
        MAX_FAILED_LOGINS - throttle.failures(session, kind=throttle.PATIENT, name=cpr),
    )
    _record(session, clinic=clinic, cpr=cpr, action=action, tries_left=left, **details)
    return _fail(session, WrongCode(f"Wrong security code ({_tries(left)} left).", left))


def _user_for_update(session: Session, cpr: str) -> PortalUser | None:
    """The user, its row locked for this transaction (PostgreSQL; SQLite is serial)."""
    return session.exec(select(PortalUser).where(PortalUser.cpr == cpr).with_for_update()).first()


# --- activation --------------------------------------------------------------------------


def activate(
    session: Session, *, cpr: str, clinic_code: str, code: str, password: str
) -> PortalUser:
    """Check the activation code and set the password.

    Every refusal (unknown CPR number, not linked to the clinic, wrong, used or expired
    code) is ``ACTIVATION_FAILED`` and counts toward the lock; the refusals do the same
    work (the new password is hashed only on success). Success resets the count."""
    number = normalize_cpr(cpr)
    clinic = find_clinic(session, clinic_code)
    passwords.check_policy(password)
    if not code.strip():
        raise InvalidInput("The activation code is empty: pass --code as in the e-mail.")
    _refuse_when_locked(session, clinic=clinic, cpr=number, step="activation")
    user = _user_for_update(session, number)
    link = None if user is None or user.id is None else _link(session, clinic, user)
    if user is None or link is None:
        reason = "unknown_user" if user is None else "not_linked"
    elif login_rules.not_active(user):  # neutral: the same answer as a wrong code
        reason = login_rules.NOT_ACTIVE
    else:
        assert user.id is not None
        reason = codes.check(session, user_id=user.id, purpose=codes.ACTIVATION, code=code)
    if reason != CodeCheck.OK:
        raise _failure(
            session,
            ACTIVATION_FAILED,
            clinic=clinic,
            cpr=number,
            action=Action.PORTAL_ACTIVATE_FAILED,
            reason=reason,
        )
    assert user is not None
    user.password_hash = passwords.hash_password(password)
    session.add(user)
    throttle.success(session, kind=throttle.PATIENT, name=number)
    _record(session, clinic=clinic, cpr=number, action=Action.PORTAL_ACTIVATE)
    session.commit()
    return user


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def _link(session: Session, clinic: Clinic, user: PortalUser) -> ClinicLink | None:
    assert clinic.id is not None and user.id is not None
    return find_link(session, clinic_id=clinic.id, user_id=user.id)


# --- MitID ---------------------------------------------------------------------------------


def login_mitid(
    session: Session,
    *,
    cpr: str,
    clinic_code: str,
    broker: MitIdBroker,
    credentials: Callable[[credentials_mod.Question], credentials_mod.Answer] | None = None,
    acting: Acting | None = None,
) -> PortalUser:
    """Log in with MitID: always allowed for a linked user; records the verification.

    A MitID login vouches for nothing: when the user's password and e-mail are not
    vouched for (chosen at self-registration), ``credentials`` is asked, after the login
    is recorded and outside the transaction, and its answer recorded
    (``services/credentials.py``); without it they stay as they are.
    """
    number = normalize_cpr(cpr)
    clinic = find_clinic(session, clinic_code)
    via = {"method": "mitid", "broker": broker.name}
    _require_mitid_confirms(session, broker, clinic=clinic, cpr=number, **via)
    user = _mitid_user(session, clinic=clinic, cpr=number, **via)
    if acting is not None:
        acting(session, user, clinic, **via)
    user.mitid_verified_at = user.last_login_at = utcnow()
    session.add(user)
    _record(session, clinic=clinic, cpr=number, action=Action.PORTAL_LOGIN, **via)
    asked = credentials_mod.question(user) if credentials_mod.unvouched(user) else None
    session.commit()
    if asked is None or credentials is None:
        return user
    return _ask_credentials(session, credentials, asked, clinic=clinic, cpr=number)


def _require_mitid_confirms(
    session: Session, broker: MitIdBroker, /, *, clinic: Clinic, cpr: str, **via: Any
) -> None:
    """Refuse the login unless MitID confirms this very CPR number."""
    result = broker.verify(cpr)
    if not result.verified or result.cpr != cpr:
        raise _refused(
            session,
            "MitID did not confirm your identity: login failed.",
            clinic=clinic,
            cpr=cpr,
            action=Action.PORTAL_LOGIN_FAILED,
            reason="mitid_not_verified",
            **via,
        )


def _mitid_user(session: Session, /, *, clinic: Clinic, cpr: str, **via: Any) -> PortalUser:
    """The user MitID confirmed, when ``login_rules.mitid_decision`` allows it here."""
    user = _user_for_update(session, cpr)
    link = None if user is None else _link(session, clinic, user)
    decision = login_rules.mitid_decision(link, user)
    if decision.code == login_rules.NOT_ACTIVE:
        raise _refused(
            session,
            NOT_ACTIVE,
            clinic=clinic,
            cpr=cpr,
            action=Action.PORTAL_LOGIN_REFUSED,
            reason=login_rules.NOT_ACTIVE,
            **via,
        )
    if user is None or not decision.allowed:
        raise _refused(
            session,
            NOT_LINKED.format(clinic=clinic.code),
            clinic=clinic,
            cpr=cpr,
            action=Action.PORTAL_LOGIN_REFUSED,
            reason=login_rules.NOT_LINKED,
            **via,
        )
    return user


def _ask_credentials(
    session: Session,
    credentials: Callable[[credentials_mod.Question], credentials_mod.Answer],
    asked: credentials_mod.Question,
    /,
    *,
    clinic: Clinic,
    cpr: str,
) -> PortalUser:
    """Ask about the unvouched credentials (may prompt: no transaction is open) and
    record the answer."""
    answer = credentials(asked)
    user = _user_for_update(session, cpr)
    assert user is not None  # users are kept
    credentials_mod.apply(session, user=user, clinic=clinic, asked=asked, answer=answer)
    session.commit()
    return user


# --- two-factor ----------------------------------------------------------------------------


def start_two_factor(
    session: Session, *, cpr: str, clinic_code: str, password: str, acting: Acting | None = None
) -> CodeSent:
    """Check CPR + password and the R4/R5/R7 rule; e-mail a security code (outbox) that
    only the returned attempt id can try.

    Unknown CPR number, not activated, not linked to the clinic (even with the right
    password) and a wrong password: ``LOGIN_FAILED``, counted toward the lock, after
    exactly one argon2 check each."""
    number = normalize_cpr(cpr)
    clinic = find_clinic(session, clinic_code)
    _refuse_when_locked(session, clinic=clinic, cpr=number, method="two-factor")
    user = _user_for_update(session, number)
    right = _password_right(user, password)
    link = None if user is None else _link(session, clinic, user)
    decision = login_rules.two_factor_login(user, link, password_right=right)
    _apply(session, decision, clinic=clinic, cpr=number, method="two-factor")
    assert user is not None
    if acting is not None:
        acting(session, user, clinic, method="two-factor")
    # The password was right; the count goes on until the code is too (see the module).
    return _send_security_code(session, user=user, clinic=clinic, cpr=number)


def _password_right(user: PortalUser | None, password: str) -> bool:
    """Exactly one argon2 check, whether or not there is a password to check."""
    if user is not None and user.password_hash:
        return passwords.verify_password(user.password_hash, password)
    passwords.dummy_verify(password)
    return False


def _apply(
    session: Session, decision: login_rules.Decision, /, *, clinic: Clinic, cpr: str, **step: Any
) -> None:
    """Refuse the step as ``login_rules.refusal`` says, when the decision refuses it."""
    answer = login_rules.refusal(decision)
    if answer == login_rules.LOGIN_FAILED:
        raise _failure(
            session,
            LOGIN_FAILED,
            clinic=clinic,
            cpr=cpr,
            action=Action.PORTAL_LOGIN_FAILED,
            reason=decision.code,
            **step,
        )
    if answer == login_rules.NOT_ACTIVE:
        raise _refused(
            session,
            NOT_ACTIVE,
            clinic=clinic,
            cpr=cpr,
            action=Action.PORTAL_LOGIN_REFUSED,
            reason=login_rules.NOT_ACTIVE,
            **step,
        )
    if answer == login_rules.MITID_REQUIRED:
        raise _refused(
            session,
            MITID_REQUIRED,
            clinic=clinic,
            cpr=cpr,
            action=Action.PORTAL_LOGIN_REFUSED,
            reason=login_rules.MITID_REQUIRED,
            why=decision.reason,
            **step,
        )


def _send_security_code(
    session: Session, *, user: PortalUser, clinic: Clinic, cpr: str
) -> CodeSent:
    """Queue the mail with a new security code for a new attempt id, and commit."""
    assert user.id is not None
    # at most one security code per user: a newer login ends the older one, whether its
    # mail is still queued or its code was issued
    outbox.end_pending_codes(
        session, user_id=user.id, reason="replaced by a newer login", purpose=codes.LOGIN
    )
    attempt = secrets.token_urlsafe(16)
    message = outbox.to_patient(
        session,
        "security_code",
        user=user,
        clinic=clinic,
        minutes=CODE_MINUTES,
        **{outbox.ATTEMPT: codes.attempt_hash(attempt)},
    )
    assert message.id is not None
    _record(
        session, clinic=clinic, cpr=cpr, action=Action.PORTAL_LOGIN_CODE_SENT, method="two-factor"
    )
    session.commit()
    return CodeSent(
        user=user,
        clinic=clinic,
        email=mask_email(user.email),
        minutes=CODE_MINUTES,
        message_id=message.id,
        attempt=attempt,
    )


def delivered(session: Session, *, message_id: int) -> bool:
    """Has the outbox message been sent (after ``send_queued``)?"""
    message = session.get(Outbox, message_id)
    return message is not None and message.sent_at is not None


CODE_STEP: dict[str, Any] = {"method": "two-factor", "step": "security_code"}


def verify_code(
    session: Session,
    *,
    cpr: str,
    clinic_code: str,
    code: str,
    attempt: str | None,
    acting: Acting | None = None,
) -> PortalUser:
    """The security code of a two-factor login, with the login's attempt id: the last step.

    Without the attempt id of the login the pending code was sent for (or for an unknown
    CPR number, a user not linked here, no pending code) the answer is ``CODE_NOT_VALID``,
    the pending code is not touched, and the try counts toward the lock. With it, a
    wrong code counts too (toward the code's 5 tries and the lock)."""
    number = normalize_cpr(cpr)
    clinic = find_clinic(session, clinic_code)
    entered = _security_code(code)
    _refuse_when_locked(session, clinic=clinic, cpr=number, **CODE_STEP)
    user, link, row = _pending_code(session, clinic=clinic, cpr=number, attempt=attempt)
    _apply(
        session, login_rules.security_code_step(user, link), clinic=clinic, cpr=number, **CODE_STEP
    )
    if acting is not None:
        acting(session, user, clinic, **CODE_STEP)
    _check_code(session, user=user, row=row, entered=entered, clinic=clinic, cpr=number)
    throttle.success(session, kind=throttle.PATIENT, name=number)
    user.last_login_at = utcnow()  # patient list --inactive-since
    session.add(user)
    _record(session, clinic=clinic, cpr=number, action=Action.PORTAL_LOGIN, method="two-factor")
    session.commit()
    return user


def _security_code(code: str) -> str:
    """The 6 digits typed (spaces allowed), or InvalidInput."""
    entered = code.strip().replace(" ", "")
    if not SECURITY_CODE_RE.fullmatch(entered):
        raise InvalidInput("The security code is the 6 digits from the e-mail.")
    return entered


def _code_failed(
    session: Session, message: str, reason: str, /, *, clinic: Clinic, cpr: str, **details: Any
) -> Exception:
    """A failed security-code try: ``_failure`` of the code step."""
    return _failure(
        session,
        message,
        clinic=clinic,
        cpr=cpr,
        action=Action.PORTAL_LOGIN_FAILED,
        reason=reason,
        **CODE_STEP,
        **details,
    )


def _pending_code(
    session: Session, *, clinic: Clinic, cpr: str, attempt: str | None
) -> tuple[PortalUser, ClinicLink, OneTimeCode]:
    """The user, its link here and its pending security code, which this login's attempt
    id may try here; else ``CODE_NOT_VALID``, counted, the code untouched."""
    user = _user_for_update(session, cpr)
    link = None if user is None else _link(session, clinic, user)
    row = None
    if user is not None and link is not None:
        assert user.id is not None
        row = codes.current(session, user_id=user.id, purpose=codes.LOGIN)
    if user is None or link is None or row is None:
        reason = "unknown_user" if user is None else "not_linked" if link is None else "no_code"
        raise _code_failed(session, CODE_NOT_VALID, reason, clinic=clinic, cpr=cpr)
    if not codes.belongs_to(row, attempt):
        raise _code_failed(session, CODE_NOT_VALID, "other_attempt", clinic=clinic, cpr=cpr)
    if row.clinic_id is not None and row.clinic_id != clinic.id:
        raise _code_failed(session, CODE_NOT_VALID, "other_clinic", clinic=clinic, cpr=cpr)
    return user, link, row


def _check_code(
    session: Session, *, user: PortalUser, row: OneTimeCode, entered: str, clinic: Clinic, cpr: str
) -> None:
    """Try the entered code (``codes.check``); refuse unless it is right."""
    assert user.id is not None
    result = codes.check(session, user_id=user.id, purpose=codes.LOGIN, code=entered)
    if result == CodeCheck.OK:
        return
    if result == CodeCheck.WRONG:
        left = max(codes.MAX_ATTEMPTS - row.attempts, 0)
        raise _code_failed(
            session, CODE_NOT_VALID, "wrong_code", clinic=clinic, cpr=cpr, wrong_code=left
        )
    if result == CodeCheck.EXHAUSTED:
        raise _code_failed(
            session,
            f"Wrong security code; after {codes.MAX_ATTEMPTS} wrong tries it no longer works: "
            "log in again to get a new code.",
            "code_exhausted",
            clinic=clinic,
            cpr=cpr,
            generic=CODE_NOT_VALID,
        )
    if result == CodeCheck.EXPIRED:
        raise _refused(
            session,
            f"The security code has expired (codes are valid for {CODE_MINUTES} minutes): "
            "log in again to get a new code.",
            clinic=clinic,
            cpr=cpr,
            action=Action.PORTAL_LOGIN_FAILED,
            reason="code_expired",
            **CODE_STEP,
        )
    raise _code_failed(session, CODE_NOT_VALID, "no_code", clinic=clinic, cpr=cpr)
