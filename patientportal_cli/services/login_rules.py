"""Which login methods a patient can use at a clinic now, and why not (R4, R5, R7).

The rule (docs/rules.md, D1 and D2; docs/rule-map.md names its tests). The no-MitID flag it
reads is set and cleared in ``services/nomitid.py``; the portal's logins
(``services/portal.py``) ask this module and nothing else.

- A deactivated account (``user.deactivated_at``, ``services/lifecycle.py``) is refused
  every login at every clinic where it is linked, with the reason "not active" only
  (D26); the portal shows a neutral refusal. A clinic the user is not linked to still
  learns only "not linked here".
- MitID login at clinic C is allowed iff the user is linked to C. (It records the
  verification; it needs no password, and the two-factor lock does not apply to it.)
- Two-factor login (CPR + password + e-mailed security code) at C is allowed iff the user
  is linked to C, AND is activated (has a password), AND is not locked (five failed
  logins of the CPR number, ``services/throttle.py``), AND its password and e-mail are
  vouched for (``user.credentials_vouched_at``: a clinic created the user, or the
  patient confirmed or replaced them inside a MitID login, or a clinic set the no-MitID
  flag confirming the e-mail; a MitID login alone does not vouch for what someone may
  have chosen at self-registration in the patient's name), AND either the link to C has
  the no-MitID flag, OR the user verified with MitID after the flag was last removed at C
  (``link.mitid_required_after``) - or, when the flag was never removed there, verified
  with MitID at all.

When a method is refused, the reason lists every condition that fails, in plain words,
joined by "; ". ``Decision.code`` names the first failing condition, for callers that
pick their own message (the portal shows the Danish R5 text for ``mitid_required``).

The portal's two-factor steps are decided here too: ``two_factor_login`` (CPR + password)
and ``security_code_step`` (the code), and ``refusal`` says which answer a refused step
gets. The portal checks the lock of the CPR number first (``services/throttle.py``, before
any password is checked) and then only applies what these decide.
The reason for a user not linked here is only "not linked here": nothing about the
user's other clinics, activation or lock is told to a clinic the patient does not use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import ClinicLink, PortalUser
from patientportal_cli.services import throttle, users

OK = "ok"
NOT_LINKED = "not_linked"
NOT_ACTIVATED = "not_activated"
LOCKED = "locked"
MITID_REQUIRED = "mitid_required"
NOT_VOUCHED = "credentials_not_vouched"
UNKNOWN_USER = "unknown_user"
WRONG_PASSWORD = "wrong_password"
NOT_ACTIVE = "not_active"  # a deactivated account (services/lifecycle.py)

# The answers of a refused two-factor step (``refusal``): LOGIN_FAILED is one message for
# every failure of CPR number + password, counted toward the lock, so it tells nobody who
# is a user; MITID_REQUIRED is the Danish R5 text.
LOGIN_FAILED = "login_failed"
# NOT_ACTIVE is its own answer: the portal's neutral Danish refusal, which never says why
CREDENTIAL_FAILURES = frozenset({UNKNOWN_USER, NOT_ACTIVATED, WRONG_PASSWORD, NOT_LINKED})

REASON_NOT_LINKED = "not linked here"
REASON_NOT_ACTIVE = "not active"
REASON_NOT_ACTIVATED = "not activated (the patient has not chosen a password yet)"
REASON_NOT_VOUCHED = (
    "the password and e-mail chosen at self-registration are not confirmed yet (the "
    "patient confirms or replaces them in a MitID login, or the clinic sets the no-MitID "
    "flag confirming the e-mail)"
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    code: str  # OK or the first failing condition

    def as_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "reason": self.reason}


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _when(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def locked_until(
    session: Session, user: PortalUser, *, now: datetime | None = None
) -> datetime | None:
    """The end of the login lock of the user's CPR number (``services/throttle.py``),
    when it is locked now."""
    return throttle.locked_until(session, kind=throttle.PATIENT, name=user.cpr, now=now)


def not_active(user: PortalUser | None) -> bool:
    """A deactivated account (``services/lifecycle.py``): every login of it, at every
    clinic, is refused with the reason "not active" (never why)."""
    return user is not None and user.deactivated_at is not None


def mitid_decision(link: ClinicLink | None, user: PortalUser | None = None) -> Decision:
    if link is None:
        return Decision(False, REASON_NOT_LINKED, NOT_LINKED)
    if not_active(user):
        return Decision(False, REASON_NOT_ACTIVE, NOT_ACTIVE)
    return Decision(True, "linked here; a MitID login also records the verification", OK)


def verified_since_flag_removed(user: PortalUser, link: ClinicLink) -> bool:
    """True when a MitID verification counts at this link (see the module docstring)."""
    verified = _utc(user.mitid_verified_at)
    if verified is None:
        return False
    required_after = _utc(link.mitid_required_after)
    return required_after is None or verified > required_after


def two_factor_decision(
    user: PortalUser,
    link: ClinicLink | None,
    *,
    now: datetime | None = None,
    locked: datetime | None = None,
) -> Decision:
    """``locked``: the end of the login lock (``locked_until``), if any."""
    if link is None:
        return Decision(False, REASON_NOT_LINKED, NOT_LINKED)
    if not_active(user):
        return Decision(False, REASON_NOT_ACTIVE, NOT_ACTIVE)
    failing: list[tuple[str, str]] = []
    if not user.password_hash:
        failing.append((NOT_ACTIVATED, REASON_NOT_ACTIVATED))
    until = _utc(locked)
    if until is not None and until > (now or utcnow()):
        failing.append(
            (
                LOCKED,
                f"locked until {_when(until)} after too many failed logins "
                "(staff can run `patient unlock`)",
            )
        )
    if user.credentials_vouched_at is None:
        failing.append((NOT_VOUCHED, REASON_NOT_VOUCHED))
    if not link.no_mitid and not verified_since_flag_removed(user, link):
        required_after = _utc(link.mitid_required_after)
        if required_after is not None:
            why = (
                "two-factor needs the no-MitID flag or a MitID verification since the flag "
                f"was last removed ({_when(required_after)})"
            )
        else:
            why = (
                "two-factor needs the no-MitID flag or a MitID verification (the patient "
                "has not verified with MitID)"
            )
        failing.append((MITID_REQUIRED, why))
    if failing:
        return Decision(False, "; ".join(text for _, text in failing), failing[0][0])
    if link.no_mitid:
        return Decision(True, "the no-MitID flag is set here", OK)
    verified = _utc(user.mitid_verified_at)
    assert verified is not None
    return Decision(True, f"verified with MitID at {_when(verified)}", OK)


def _link(session: Session, *, clinic_id: int, user: PortalUser) -> ClinicLink | None:
    assert user.id is not None
    return users.find_link(session, clinic_id=clinic_id, user_id=user.id)


def two_factor_allowed(session: Session, *, clinic_id: int, user: PortalUser) -> tuple[bool, str]:
    """(allowed, reason) for a two-factor login of ``user`` at the clinic now."""
    decision = two_factor_decision(
        user,
        _link(session, clinic_id=clinic_id, user=user),
        locked=locked_until(session, user),
    )
    return decision.allowed, decision.reason


def two_factor_login(
    user: PortalUser | None, link: ClinicLink | None, *, password_right: bool
) -> Decision:
    """The first two-factor step, CPR number + password, once the caller has found the
    CPR number not locked and checked the password (exactly once, a dummy check when
    there is no password to check). ``code`` is the first failing of: a user has the CPR
    number, it is activated, the password is right, it is linked here (each
    ``CREDENTIAL_FAILURES``), then the rest of ``two_factor_decision``."""
    if user is None:
        return Decision(False, "no user has this CPR number", UNKNOWN_USER)
    if not user.password_hash:
        return Decision(False, REASON_NOT_ACTIVATED, NOT_ACTIVATED)
    if not password_right:
        return Decision(False, "wrong password", WRONG_PASSWORD)
    if link is None:
        return Decision(False, REASON_NOT_LINKED, NOT_LINKED)
    return two_factor_decision(user, link)


def security_code_step(user: PortalUser, link: ClinicLink) -> Decision:
    """The security-code step, for the user and link the code was sent for, with the CPR
    number not locked: ``two_factor_decision`` again (a flag removed since the code was
    sent ends it, R7); every refusal here is ``MITID_REQUIRED``, with every reason, but
    that of a deactivated account (``NOT_ACTIVE``)."""
    decision = two_factor_decision(user, link)
    if decision.allowed or decision.code == NOT_ACTIVE:
        return decision
    return Decision(False, decision.reason, MITID_REQUIRED)


def refusal(decision: Decision) -> str | None:
    """The answer to a refused two-factor step: ``LOGIN_FAILED`` for
    ``CREDENTIAL_FAILURES``, ``NOT_ACTIVE`` for a deactivated account (told only after
    the right password), else ``MITID_REQUIRED``; None when it is allowed."""
    if decision.allowed:
        return None
    if decision.code == NOT_ACTIVE:
        return NOT_ACTIVE
    return LOGIN_FAILED if decision.code in CREDENTIAL_FAILURES else MITID_REQUIRED


@dataclass(frozen=True)
class LoginAccess:
    """Which login methods work for a user at a clinic now, and why not."""

    mitid: Decision
    two_factor: Decision

    @property
    def linked(self) -> bool:
        """Whether the user is linked at the clinic asked about."""
        return self.mitid.code != NOT_LINKED

    def as_row(self) -> dict[str, Any]:
        """``{"mitid": {"allowed", "reason"}, "two_factor": {"allowed", "reason"}}``."""
        return {"mitid": self.mitid.as_dict(), "two_factor": self.two_factor.as_dict()}


def login_access(session: Session, *, clinic_id: int, user: PortalUser) -> LoginAccess:
    """Both decisions for the user at the clinic (``LoginAccess``)."""
    link = _link(session, clinic_id=clinic_id, user=user)
    return LoginAccess(
        mitid=mitid_decision(link, user),
        two_factor=two_factor_decision(user, link, locked=locked_until(session, user)),
    )
