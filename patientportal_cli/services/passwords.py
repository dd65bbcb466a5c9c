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
    from argon2.exceptions import InvalidHashError, VerificationError

    if not password_hash:
        return False
    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> None:
    """Spend the time a real check would, so unknown users cannot be told apart."""
    verify_password(_dummy_hash(), password)


@cache
def _dummy_hash() -> str:
    return hash_password("Dummy-password-1")
