"""The fixed words the code stores and compares: request statuses, code check outcomes,
audit action names, and the kinds and bases of delegations, in one place so a typo is a
mypy error rather than a silent mismatch.

Each is a ``StrEnum``: a member *is* its string (``RequestStatus.PENDING == "pending"``,
``str()``, f-strings and ``json.dumps`` give the plain value), so what is stored in the
database, hashed into the audit chain and printed is the same as with string literals.
Import-light (the standard library only): ``db/``, ``services/`` and ``cli/`` use it,
and ``cli/`` modules may import it at startup.
``tests/test_vocabulary.py`` fails when an audit action is written as a literal elsewhere.
"""

from __future__ import annotations

from enum import StrEnum


class RequestStatus(StrEnum):
    """``registration_request.status``: a request is decided (or withdrawn) once."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # replaced by a newer request for the same CPR and clinic


class CodeCheck(StrEnum):
    """What ``services.codes.check`` found for an entered one-time code."""

    OK = "ok"  # it matched and is now used
    NONE = "none"  # no current code of that purpose
    WRONG = "wrong"  # it did not match (one try counted)
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"  # a security code's last wrong try: the code has ended


class Action(StrEnum):
    """``audit_event.action``: every kind of event the tool writes, ``subject.verb``.

    ``audit list --action`` filters by prefix (``patient.`` for all patient events)."""

    INIT = "init"

    CLINIC_CREATE = "clinic.create"
    CLINIC_SET_REGISTRATION = "clinic.set_registration"
    CLINIC_SERVICES = "clinic.services"

    STAFF_ADD = "staff.add"
    STAFF_SET_ROLE = "staff.set_role"
    STAFF_DISABLE = "staff.disable"
    STAFF_UNLOCK = "staff.unlock"
    STAFF_ACCOUNT = "staff.account"
    STAFF_PASSWORD = "staff.password"
    STAFF_PASSWORD_FAILED = "staff.password_failed"
    STAFF_LOGIN = "staff.login"
    STAFF_LOGIN_FAILED = "staff.login_failed"
    STAFF_LOCKED = "staff.locked"
    STAFF_LOGOUT = "staff.logout"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"

    PATIENT_CREATE = "patient.create"
    PATIENT_LINK = "patient.link"
    PATIENT_UNLINK = "patient.unlink"
    PATIENT_UPDATE = "patient.update"
    PATIENT_INVITE = "patient.invite"
    PATIENT_UNLOCK = "patient.unlock"
    PATIENT_RESET_PASSWORD = "patient.reset_password"
    PATIENT_IMPORT = "patient.import"
    PATIENT_DRY_RUN = "patient.dry_run"
    PATIENT_CHANGE_CPR = "patient.change_cpr"  # services/cpr_change.py
    PATIENT_RECONCILE = "patient.reconcile"  # services/reconcile.py: one per run
    # a patient's lifecycle (services/lifecycle.py)
    PATIENT_DEACTIVATE = "patient.deactivate"
    PATIENT_REACTIVATE = "patient.reactivate"
    # look-ups (services/accesslog.py)
    PATIENT_SHOW = "patient.show"
    PATIENT_ACCESS = "patient.access"
    PATIENT_LIST = "patient.list"
    PATIENT_LOG = "patient.log"
    CPR_REVEAL = "cpr.reveal"
    # a person's data under GDPR (services/gdpr.py) and the printed letter
    PATIENT_EXPORT = "patient.export"
    PATIENT_ERASE = "patient.erase"
    PATIENT_LETTER = "patient.letter"
    # retention (services/retention.py)
    AUDIT_PRUNE = "audit.prune"

    NO_MITID_SET = "no_mitid.set"
    NO_MITID_CLEAR = "no_mitid.clear"
    NO_MITID_LIST = "no_mitid.list"

    REGISTRATION_OPEN = "registration.open"
    REGISTRATION_REFUSED = "registration.refused"
    REQUEST_SUBMIT = "request.submit"
    REQUEST_APPROVE = "request.approve"
    REQUEST_REJECT = "request.reject"

    PORTAL_ACTIVATE = "portal.activate"
    PORTAL_ACTIVATE_FAILED = "portal.activate_failed"
    PORTAL_LOGIN = "portal.login"
    PORTAL_LOGIN_FAILED = "portal.login_failed"
    PORTAL_LOGIN_REFUSED = "portal.login_refused"
    PORTAL_LOGIN_LOCKED = "portal.login_locked"
    PORTAL_LOGIN_CODE_SENT = "portal.login_code_sent"
    PORTAL_CREDENTIALS_CONFIRMED = "portal.credentials_confirmed"
    PORTAL_CREDENTIALS_REPLACED = "portal.credentials_replaced"
    # acting for someone else (services/delegations.py): each names both people
    PORTAL_LOGIN_FOR = "portal.login_for"
    GUARDIAN_ADD = "guardian.add"
    GUARDIAN_REMOVE = "guardian.remove"
    GUARDIAN_LIST = "guardian.list"
    GUARDIAN_NOTICE = "guardian.notice"
    PROXY_ADD = "proxy.add"
    PROXY_REVOKE = "proxy.revoke"
    PROXY_LIST = "proxy.list"
    DELEGATION_CHECK = "delegation.check"


class DelegationKind(StrEnum):
    """``delegation.kind``: who acts for whom (services/delegations.py)."""

    GUARDIAN = "guardian"  # for a child under 15; ends on the 15th birthday
    PROXY = "proxy"  # a fuldmagt from an adult; ends on its end date or when revoked


class Basis(StrEnum):
    """``delegation.basis``: the legal ground a clinic recorded (``--basis``)."""

    CUSTODY = "forældremyndighed"  # parental custody
    POWER_OF_ATTORNEY = "fuldmagt"
