"""Contact details of patients: e-mail addresses and names.

E-mail syntax is checked by email-validator (no DNS look-ups). Names are cleaned of
extra whitespace and refused when they contain control or format characters; any other
text is a valid name (markup-looking text or SQL metacharacters are just characters,
and rendering them literally is the output layer's job).

Error messages are always one line: echoed input is truncated and non-printable
characters (and backslashes) are shown as escapes (``\\x1b``, ``\\n``, ``\\u202e``).
"""

from __future__ import annotations

import unicodedata

from patientportal_cli.errors import InvalidInput

__all__ = ["MAX_NAME_LENGTH", "clean_name", "normalize_email"]

MAX_NAME_LENGTH = 200
_ECHO_LIMIT = 60
_REASON_LIMIT = 200

# Control (Cc), format (Cf, e.g. U+202E RIGHT-TO-LEFT OVERRIDE), surrogate (Cs) and
# line/paragraph separators (Zl, Zp): none of these belongs in a name, and each could
# break a one-line display or trick a terminal.
_FORBIDDEN_NAME_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def normalize_email(text: str) -> str:
    """Return the normalized e-mail address, or raise InvalidInput.

    Surrounding whitespace is ignored. The domain is lower-cased (and IDNA-normalized);
    the local part keeps its case, as mail servers may treat it case-sensitively.
    """
    if not isinstance(text, str):
        raise InvalidInput("Invalid e-mail address: expected text.")
    candidate = text.strip()
    from email_validator import validate_email  # 15-30 ms: only where an address is given

    try:
        validated = validate_email(candidate, check_deliverability=False)
    except ValueError as error:  # EmailNotValidError, and any UnicodeError on odd input
        reason = _one_line(str(error), _REASON_LIMIT) or "not a valid address."
        raise InvalidInput(
            f"Invalid e-mail address '{_one_line(candidate, _ECHO_LIMIT)}': {reason}"
        ) from None
    return str(validated.normalized)


def clean_name(text: str) -> str:
    """Return the cleaned name, or raise InvalidInput.

    Surrounding whitespace is stripped, internal runs of whitespace become one space and
    the result is NFC-normalized (so "e" + combining accent equals "é"). Refused: empty,
    longer than MAX_NAME_LENGTH characters, or containing control/format characters.
    """
    if not isinstance(text, str):
        raise InvalidInput("Invalid name: expected text.")
    stripped = text.strip()
    for ch in stripped:
        if unicodedata.category(ch) in _FORBIDDEN_NAME_CATEGORIES:
            raise InvalidInput(
                f"Invalid name '{_one_line(stripped, _ECHO_LIMIT)}': it contains the "
                f"control character U+{ord(ch):04X}."
            )
    name = unicodedata.normalize("NFC", " ".join(stripped.split()))
    if not name:
        raise InvalidInput("Invalid name: it is empty.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"Invalid name '{_one_line(name, _ECHO_LIMIT)}': it is {len(name)} characters "
            f"long; at most {MAX_NAME_LENGTH} are allowed."
        )
    return name


def _one_line(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with non-printable characters escaped."""
    cut = text[:limit]
    escaped = "".join(ch if ch.isprintable() and ch != "\\" else repr(ch)[1:-1] for ch in cut)
    return escaped + ("..." if len(text) > limit else "")
