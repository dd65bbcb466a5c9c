"""Danish CPR numbers: parsing, validation and formatting.

Built on python-stdnum's :mod:`stdnum.dk.cpr` (``compact``, ``get_birth_date``,
``format``); this module adds the portal's rules and clear one-line messages.

Rules (docs/rules.md, D3):

- Accepted forms: ``DDMMYY-SSSS``, ``DDMMYY SSSS`` and ``DDMMYYSSSS`` (ASCII digits
  only, one optional separator, surrounding whitespace ignored). Anything else is
  refused, also Unicode digits such as Arabic-Indic ones.
- The birth date must exist and must not lie in the future. The century comes from the
  7th digit with YY: 0-3 -> 1900s; 4 or 9 -> 2000s if YY <= 36 else 1900s; 5-8 -> 2000s
  if YY <= 57 else 1800s. (This is exactly what ``stdnum.dk.cpr.get_birth_date`` does;
  the tests check it against the rule table.)
- Modulus 11 is NOT checked: numbers issued since 2007 may fail it and are valid.
- eCPR / replacement numbers (which contain letters) are refused with their own message.

CPR numbers are sensitive: error messages never contain the number (at most the
birth date, which alone does not identify a person).
"""

from __future__ import annotations

import datetime
import re

from stdnum import exceptions as stdnum_exceptions
from stdnum.dk import cpr as stdnum_cpr

from patientportal_cli.errors import InvalidInput

__all__ = ["birth_date", "format_cpr", "normalize_cpr"]

# One optional separator (hyphen or a single space) between date and serial.
# ``[0-9]`` rather than ``\d`` so that only ASCII digits match.
_CPR_INPUT = re.compile(r"[0-9]{6}[- ]?[0-9]{4}")
_NORMALIZED = re.compile(r"[0-9]{10}")

_MSG_FORMAT = "Invalid CPR number: expected 10 digits as DDMMYY-SSSS, DDMMYY SSSS or DDMMYYSSSS."
_MSG_EMPTY = "Invalid CPR number: it is empty; expected 10 digits as DDMMYY-SSSS."
_MSG_LETTERS = (
    "Invalid CPR number: the portal accepts only CPR numbers made of digits "
    "(DDMMYY-SSSS); eCPR/replacement numbers with letters are not accepted."
)
_MSG_NON_ASCII_DIGITS = (
    "Invalid CPR number: use the digits 0-9 only, as DDMMYY-SSSS "
    "(other scripts' digits are not accepted)."
)


def normalize_cpr(text: str, *, today: datetime.date | None = None) -> str:
    """Return ``text`` as a normalized 10-digit CPR number, or raise InvalidInput.

    ``today`` is the reference date for "born in the future" (default: the system date).
    """
    if not isinstance(text, str):
        raise InvalidInput(_MSG_FORMAT)
    stripped = text.strip()
    if not stripped:
        raise InvalidInput(_MSG_EMPTY)
    if _CPR_INPUT.fullmatch(stripped) is None:
        if any(ch.isalpha() for ch in stripped):
            raise InvalidInput(_MSG_LETTERS)
        if any(ch.isdigit() and not ("0" <= ch <= "9") for ch in stripped):
            raise InvalidInput(_MSG_NON_ASCII_DIGITS)
        raise InvalidInput(_MSG_FORMAT)
    number = stdnum_cpr.compact(stripped)
    born = _birth_date(number)
    reference = today if today is not None else datetime.date.today()
    if born > reference:
        raise InvalidInput(f"Invalid CPR number: the birth date {born:%d.%m.%Y} is in the future.")
    return number


def birth_date(cpr: str) -> datetime.date:
    """The birth date of a normalized (10-digit) CPR number."""
    return _birth_date(_require_normalized(cpr))


def format_cpr(cpr: str) -> str:
    """Format a normalized (10-digit) CPR number as ``DDMMYY-SSSS``."""
    return str(stdnum_cpr.format(_require_normalized(cpr)))


def _require_normalized(cpr: str) -> str:
    if not isinstance(cpr, str) or _NORMALIZED.fullmatch(cpr) is None:
        raise InvalidInput(_MSG_FORMAT)
    return cpr


def _birth_date(number: str) -> datetime.date:
    """Birth date of a 10-ASCII-digit string; InvalidInput if the date does not exist."""
    try:
        born: datetime.date = stdnum_cpr.get_birth_date(number)
    except stdnum_exceptions.ValidationError:
        # 1 January exists in every year, so this only resolves the century (7th digit).
        year = stdnum_cpr.get_birth_date("0101" + number[4:]).year
        raise InvalidInput(
            f"Invalid CPR number: {number[0:2]}.{number[2:4]}.{year} is not a real date."
        ) from None
    return born
