"""Domain errors and the one table that maps them to exit codes.

Services raise these; the CLI edge (``cli/common.py``) prints ``str(error)`` as one
line on stderr and exits with ``error.exit_code``.

Exit codes (also in the README and ``patientportal --help``):

====  =====================================================================
0     ok
1     refused or failed: not found, conflict, already decided, mode forbids it,
      database unreachable or behind, keyring missing, mail failure
2     bad usage or invalid input (also: a required value is missing and there is
      no terminal to ask on)
3     a bulk run finished with rejected rows
4     not logged in, or not allowed
130   interrupted (Ctrl-C)
====  =====================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED_ROWS = 3
EXIT_AUTH = 4
EXIT_INTERRUPTED = 130


class DomainError(Exception):
    """Base of every error a service may raise on purpose."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(DomainError):
    """A clinic, patient, request, staff member ... that does not exist (for you)."""


class Conflict(DomainError):
    """The change clashes with what is there (already exists, already linked ...)."""


class AlreadyDecided(Conflict):
    """A registration request was decided by someone else first."""


class Refused(DomainError):
    """The rules forbid it (registration mode, login method not allowed ...)."""


class DatabaseUnavailable(DomainError):
    """The database cannot be reached."""


class SchemaBehind(DomainError):
    """The database schema is older than this program."""


class KeyringUnavailable(DomainError):
    """No usable keyring backend for secrets."""


class MailError(DomainError):
    """Mail could not be delivered."""


class InvalidInput(DomainError):
    """A value given by the user is not valid (CPR, e-mail, name, mode ...)."""

    exit_code = EXIT_USAGE


class MissingInput(InvalidInput):
    """A required value was not given and there is no terminal to ask for it."""

    def __init__(self, flag: str, what: str | None = None) -> None:
        label = what or flag.lstrip("-").replace("-", " ")
        super().__init__(f"Missing {label}: pass {flag} (no terminal to ask on).")
        self.flag = flag


class RowsRejected(DomainError):
    """A bulk run finished, but some rows were rejected."""

    exit_code = EXIT_REJECTED_ROWS


class NotLoggedIn(DomainError):
    """No valid session or token."""

    exit_code = EXIT_AUTH


class Forbidden(DomainError):
    """Logged in, but the role does not allow it."""

    exit_code = EXIT_AUTH
