"""Checking one import row's values: the same rules as the single-patient commands,
with fast paths for the common case.

A bulk import checks hundreds of thousands of values, and the general validators
(``cpr.normalize_cpr``, ``contact.normalize_email``, ``contact.clean_name``) cost 4-40 us
each. The fast paths here give the same answer for the common shapes and hand anything
else to those validators (which also produce every error message):

- CPR: the century of a two-digit year depends only on YY and the 7th digit; it is
  asked of ``cpr.birth_date`` (python-stdnum's rule) once per pair and remembered, and
  the date is then checked with ``datetime.date``. Anything that fails goes to
  ``normalize_cpr`` for its message.
- E-mail: a plain ASCII dot-atom local part plus a domain; the domain is checked once
  (by email-validator) and remembered.
- Name: printable text without doubled spaces that is already NFC needs no cleaning.

``tests/test_import_validate.py`` checks each fast path against the general validator.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from typing import Any

from patientportal_cli.errors import InvalidInput
from patientportal_cli.services import catalog
from patientportal_cli.services.contact import MAX_NAME_LENGTH, clean_name, normalize_email
from patientportal_cli.services.cpr import birth_date, normalize_cpr

_CPR = re.compile(r"\s*([0-9]{6})[- ]?([0-9]{4})\s*")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL = re.compile(rf"\s*(({_ATEXT}(?:\.{_ATEXT})*)@([A-Za-z0-9.-]+))\s*")
_DOMAIN_CACHE_LIMIT = 10_000
TRUE_WORDS = frozenset({"yes", "ja", "1", "x", "true", "y", "j"})
FALSE_WORDS = frozenset({"", "no", "nej", "0", "false", "n"})
# Danish labels of the services, so a Danish spreadsheet may use them
_SERVICE_WORDS = {label.lower(): name for name, label in catalog.SERVICES.items()}


class Validator:
    """Per-import caches; one instance per import run (``today`` is fixed at creation)."""

    def __init__(self) -> None:
        self._today = datetime.date.today()
        self._years: dict[str, int] = {}  # "YY" + 7th digit -> birth year
        self._domains: dict[str, str | None] = {}

    # --- CPR ------------------------------------------------------------------------
    def cpr(self, value: Any) -> str:
        m = _CPR.fullmatch(value) if type(value) is str else None
        if m is None:
            return normalize_cpr(_text(value, "CPR number"))  # raises, or an odd valid form
        digits = m.group(1) + m.group(2)
        key = digits[4:7]
        year = self._years.get(key) or self._century(key)
        try:
            born: datetime.date | None = datetime.date(year, int(digits[2:4]), int(digits[0:2]))
        except ValueError:
            born = None
        if born is None or born > self._today:
            return normalize_cpr(digits)  # raises with the message
        return digits

    def _century(self, yy_digit: str) -> int:
        """The birth year for YY and the 7th digit, by ``stdnum`` (via ``cpr``)."""
        year = birth_date("0101" + yy_digit + "000").year
        self._years[yy_digit] = year
        return year

    # --- e-mail ---------------------------------------------------------------------
    def email(self, value: Any) -> str:
        m = _EMAIL.fullmatch(value) if type(value) is str else None
        if m is None or len(m.group(2)) > 64 or len(m.group(1)) > 254:
            return normalize_email(_text(value, "e-mail address"))
        given = m.group(3)
        normalized = self._domains.get(given, "")
        if normalized == "":
            try:
                normalized = normalize_email("x@" + given).partition("@")[2]
            except InvalidInput:
                normalized = None
            if len(self._domains) < _DOMAIN_CACHE_LIMIT:
                self._domains[given] = normalized
        if normalized is None:
            return normalize_email(value)  # raises with the message
        if normalized == given:
            return m.group(1)
        return f"{m.group(2)}@{normalized}"

    # --- name -----------------------------------------------------------------------
    @staticmethod
    def name(value: Any) -> str:
        if type(value) is str:
            stripped = value.strip()
            if (
                stripped
                and stripped.isprintable()
                and "  " not in stripped
                and len(stripped) <= MAX_NAME_LENGTH
                and (stripped.isascii() or unicodedata.is_normalized("NFC", stripped))
            ):
                return stripped
        return clean_name(_text(value, "name"))


def flag(value: Any) -> bool:
    """The no-MitID column: yes/no/ja/nej/1/0/x/blank (and JSON true/false)."""
    if value == "" or value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidInput(
        f"Invalid no-MitID value {_echo(str(value))}: use yes/no, ja/nej, 1/0, x or leave it blank."
    )


def services(value: Any, offered: list[str]) -> str | None:
    """The services column: None when blank (the clinic's default), else the stored form."""
    if value is None or value == "":
        return None
    parts = [str(v) for v in value] if isinstance(value, list) else re.split(r"[,|+/]", str(value))
    words = [p.strip().lower() for p in parts if p.strip()]
    if not words:
        return None
    names = catalog.parse_services([_SERVICE_WORDS.get(w, w) for w in words])
    missing = [n for n in names if n not in offered]
    if missing:
        raise InvalidInput(
            f"The clinic does not offer {', '.join(missing)} (it offers "
            f"{', '.join(offered) or 'no services'})."
        )
    return catalog.join_services(names)


def _text(value: Any, what: str) -> str:
    if value is None:
        raise InvalidInput(f"The {what} is missing.")
    if not isinstance(value, str):
        raise InvalidInput(f"The {what} must be text (in JSON: a string in quotes).")
    return value


def _echo(text: str) -> str:
    cut = text[:40]
    return repr(cut + ("..." if len(text) > 40 else ""))
