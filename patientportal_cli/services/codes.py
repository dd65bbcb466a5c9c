"""One-time codes: activation codes (set a password; 7 days) and login security codes
(6 digits; 10 minutes; at most 5 wrong tries). Only a hash of a code is stored; a code
is used once; issuing a new code of a purpose ends the older ones of that purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import OneTimeCode

ACTIVATION = "activation"
LOGIN = "login"
LIFETIME = {ACTIVATION: timedelta(days=7), LOGIN: timedelta(minutes=10)}
MAX_ATTEMPTS = 5
_ACTIVATION_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().replace("-", "").encode()).hexdigest()


def _new_code(purpose: str) -> str:
    if purpose == LOGIN:
        return f"{secrets.randbelow(1_000_000):06d}"
    raw = "".join(secrets.choice(_ACTIVATION_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def issue(session: Session, *, user_id: int, purpose: str, clinic_id: int | None = None) -> str:
    """A new code (returned in clear, to be mailed); older open codes of the purpose end."""
    now = utcnow()
    for old in session.exec(
        select(OneTimeCode).where(
            OneTimeCode.user_id == user_id,
            OneTimeCode.purpose == purpose,
            col(OneTimeCode.used_at).is_(None),
        )
    ):
        old.used_at = now
        session.add(old)
    code = _new_code(purpose)
    session.add(
        OneTimeCode(
            user_id=user_id,
            clinic_id=clinic_id,
            purpose=purpose,
            code_hash=_hash(code),
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


def check(session: Session, *, user_id: int, purpose: str, code: str) -> str:
    """'ok' (the code is now used), 'none', 'expired', 'wrong' or 'exhausted'.

    A wrong code counts an attempt; the fifth wrong attempt ends the code.
    """
    row = current(session, user_id=user_id, purpose=purpose)
    now = utcnow()
    if row is None:
        return "none"
    if row.expires_at <= now:
        return "expired"
    if not hmac.compare_digest(row.code_hash, _hash(code)):
        row.attempts += 1
        if row.attempts >= MAX_ATTEMPTS:
            row.used_at = now
            session.add(row)
            return "exhausted"
        session.add(row)
        return "wrong"
    row.used_at = now
    session.add(row)
    return "ok"


def new_activation_codes(count: int) -> list[tuple[str, str]]:
    """``count`` fresh activation codes as (code in clear, its stored hash), for bulk use.

    The same alphabet and form as ``issue`` (XXXX-XXXX); 8 random bytes per code, each
    taken modulo 32 (256 is a multiple of 32, so every letter is equally likely).
    """
    raw = secrets.token_bytes(8 * count)
    letters = _ACTIVATION_ALPHABET.encode()
    table = bytes(letters[b % 32] for b in range(256))
    text = raw.translate(table).decode()
    result = []
    for i in range(0, 8 * count, 8):
        code = f"{text[i : i + 4]}-{text[i + 4 : i + 8]}"
        result.append((code, _hash(code)))
    return result
