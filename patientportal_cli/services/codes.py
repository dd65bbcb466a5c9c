"""One-time codes: activation codes (set a password; 7 days) and login security codes
(6 digits; 10 minutes; at most 5 wrong tries). A code is used once; issuing a new code
of a purpose ends the older ones of that purpose, so at most one code of each purpose is
pending per user.

A security code belongs to one login: it is issued with the hash of that login's attempt
id (``attempt_hash``), and only the holder of the attempt id may try it
(``services/portal.py``), so someone who knows only a CPR number cannot use it up.
Wrong activation codes do not end the code (80 bits cannot be guessed; the login lock
of ``services/throttle.py`` bounds the tries), so they cannot be used up by others either.

Only a hash of a code is stored, chosen so that a copy of the database does not give
the code back faster than guessing it online would:

- an activation code is 16 characters from a 32-letter alphabet (80 random bits), so a
  fast hash (SHA-256) is enough: nobody tries 2^80 candidates;
- a security code has only 10^6 possible values, so it is hashed like a password
  (argon2id with its own salt, ``services/passwords.py``): trying them all costs
  10^6 argon2 hashes, far longer than the 10 minutes the code lives
  (``benchmarks/code_guessing.py`` measures it).

Codes are made when their e-mail is delivered (``services/mail/delivery.py``), never stored
in clear, not even in the outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import OneTimeCode
from patientportal_cli.services import passwords
from patientportal_cli.vocabulary import CodeCheck

ACTIVATION = "activation"
LOGIN = "login"
LIFETIME = {ACTIVATION: timedelta(days=7), LOGIN: timedelta(minutes=10)}
MAX_ATTEMPTS = 5
_ACTIVATION_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
ACTIVATION_LENGTH = 16  # letters of 5 bits: 80 bits


def _normalize(code: str) -> str:
    return "".join(code.split()).upper().replace("-", "")


def _fast_hash(code: str) -> str:
    return hashlib.sha256(_normalize(code).encode()).hexdigest()


def _hash(purpose: str, code: str) -> str:
    if purpose == LOGIN:
        return passwords.hash_password(_normalize(code))
    return _fast_hash(code)


def _matches(purpose: str, stored: str, code: str) -> bool:
    if purpose == LOGIN:
        return passwords.verify_password(stored, _normalize(code))
    return hmac.compare_digest(stored, _fast_hash(code))


def _grouped(raw: str) -> str:
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def _new_code(purpose: str) -> str:
    if purpose == LOGIN:
        return f"{secrets.randbelow(1_000_000):06d}"
    return _grouped("".join(secrets.choice(_ACTIVATION_ALPHABET) for _ in range(ACTIVATION_LENGTH)))


def attempt_hash(attempt: str) -> str:
    """The stored form of a login's attempt id (128 random bits: a fast hash suffices)."""
    return hashlib.sha256(attempt.encode()).hexdigest()


def end_open(
    session: Session, *, user_id: int, purpose: str | None = None, now: datetime | None = None
) -> None:
    """The user's open codes (of ``purpose``, or all) end now."""
    query = select(OneTimeCode).where(
        OneTimeCode.user_id == user_id, col(OneTimeCode.used_at).is_(None)
    )
    if purpose is not None:
        query = query.where(OneTimeCode.purpose == purpose)
    now = now or utcnow()
    for old in session.exec(query):
        old.used_at = now
        session.add(old)


def issue(
    session: Session,
    *,
    user_id: int,
    purpose: str,
    clinic_id: int | None = None,
    attempt_hash: str | None = None,
) -> str:
    """A new code (returned in clear, to be mailed); older open codes of the purpose end.

    ``attempt_hash``: the login a security code belongs to (see ``attempt_hash()``)."""
    now = utcnow()
    end_open(session, user_id=user_id, purpose=purpose, now=now)
    code = _new_code(purpose)
    session.add(
        OneTimeCode(
            user_id=user_id,
            clinic_id=clinic_id,
            purpose=purpose,
            code_hash=_hash(purpose, code),
            attempt_hash=attempt_hash,
            created_at=now,
            expires_at=now + LIFETIME[purpose],
        )
    )
    session.flush()
    return code


def current(session: Session, *, user_id: int, purpose: str) -> OneTimeCode | None:
    """The open (unused) code of this purpose, if any, whether expired or not."""
    return session.exec(
        select(OneTimeCode)
        .where(
            OneTimeCode.user_id == user_id,
            OneTimeCode.purpose == purpose,
            col(OneTimeCode.used_at).is_(None),
        )
        .order_by(col(OneTimeCode.id).desc())
    ).first()


def belongs_to(row: OneTimeCode, attempt: str | None) -> bool:
    """Was the code issued for the login with this attempt id?"""
    if not attempt or not row.attempt_hash:
        return False
    return hmac.compare_digest(row.attempt_hash, attempt_hash(attempt))


def check(session: Session, *, user_id: int, purpose: str, code: str) -> CodeCheck:
    """``CodeCheck``: OK (the code is now used), NONE, EXPIRED, WRONG or EXHAUSTED.

    A wrong code counts an attempt; for a security code the fifth wrong attempt ends
    the code ('exhausted'). An activation code is never ended by wrong attempts.
    """
    row = current(session, user_id=user_id, purpose=purpose)
    now = utcnow()
    if row is None:
        return CodeCheck.NONE
    if row.expires_at <= now:
        return CodeCheck.EXPIRED
    if not _matches(purpose, row.code_hash, code):
        row.attempts += 1
        if purpose == LOGIN and row.attempts >= MAX_ATTEMPTS:
            row.used_at = now
            session.add(row)
            return CodeCheck.EXHAUSTED
        session.add(row)
        return CodeCheck.WRONG
    row.used_at = now
    session.add(row)
    return CodeCheck.OK
