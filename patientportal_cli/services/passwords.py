"""Password hashing (argon2) and the password policy.

Policy (as the real portal's patient guide states, and used for staff too): at least 8
characters, with an upper-case letter, a lower-case letter and a digit.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from patientportal_cli.errors import InvalidInput

MIN_LENGTH = 8


@cache
def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


def check_policy(password: str) -> None:
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"at least {MIN_LENGTH} characters")
    if not any(c.isupper() for c in password):
        problems.append("an upper-case letter")
    if not any(c.islower() for c in password):
        problems.append("a lower-case letter")
    if not any(c.isdigit() for c in password):
        problems.append("a digit")
    if problems:
        raise InvalidInput("The password needs " + ", ".join(problems) + ".")


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches the stored hash. Exactly one argon2 computation runs
    on every path: with no usable stored hash (none, or not an argon2 hash) the password
    is checked against a dummy hash of the same parameters, so a missing account, an
    account without a password and a wrong password take the same time."""
    from argon2.exceptions import InvalidHashError, VerificationError

    usable = bool(password_hash) and str(password_hash).startswith("$argon2")
    try:
        matched = bool(_hasher().verify(password_hash if usable else _dummy_hash(), password))
    except (VerificationError, InvalidHashError):
        return False
    return matched and usable


def dummy_verify(password: str) -> None:
    """Spend the time a real check would, so unknown users cannot be told apart."""
    verify_password(None, password)


def _dummy_hash() -> str:
    """A hash that matches no password, with the hasher's own parameters (the production
    ones, or the cheap ones tests use), made without hashing anything: checking against
    it costs one argon2 computation, the same as a real check, and building it costs
    nothing (hashing a dummy password on first use made the first refusal of an unknown
    user one argon2 computation slower than that of a wrong password)."""
    import base64

    hasher = _hasher()
    kind = str(getattr(hasher.type, "name", "ID")).lower()

    def b64(n: int) -> str:
        return base64.b64encode(b"\0" * n).decode().rstrip("=")

    return (
        f"$argon2{kind}$v=19$m={hasher.memory_cost},t={hasher.time_cost},"
        f"p={hasher.parallelism}${b64(hasher.salt_len)}${b64(hasher.hash_len)}"
    )
