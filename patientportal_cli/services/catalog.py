"""The fixed vocabularies of the domain: registration modes, roles, services."""

from __future__ import annotations

import re

from patientportal_cli.errors import InvalidInput

CLINIC_CODE_RE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")

# mode -> the label the source document uses
REGISTRATION_MODES: dict[str, str] = {
    "none": "Ingen online selv-oprettelse",
    "approval": "Online selv-oprettelse med læge-godkendelse",
    "open": "Online selv-oprettelse uden læge-godkendelse",
}
ROLES: dict[str, str] = {
    "admin": "clinic settings and staff",
    "doctor": "may approve self-registrations",
    "secretary": "patients and the no-MitID flag",
}
SERVICES: dict[str, str] = {
    "e-consultation": "E-konsultation",
    "booking": "Tidsbestilling",
    "prescription-renewal": "Receptfornyelse",
}


def check_clinic_code(code: str) -> str:
    """A clinic code, upper-cased: 2-32 of A-Z, 0-9, '-', '_' (InvalidInput otherwise)."""
    norm = code.strip().upper()
    if not CLINIC_CODE_RE.match(norm):
        raise InvalidInput(
            "Invalid clinic code: use 2-32 letters A-Z, digits, '-' or '_', starting with a "
            "letter or digit."
        )
    return norm


def check_mode(mode: str) -> str:
    mode = mode.strip().lower()
    if mode not in REGISTRATION_MODES:
        raise InvalidInput(f"Unknown registration mode {mode!r}: use none, approval or open.")
    return mode


def check_role(role: str) -> str:
    role = role.strip().lower()
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}: use admin, doctor or secretary.")
    return role


def parse_services(value: str | list[str] | None) -> list[str]:
    """'booking,e-consultation' or a list of such -> checked names in catalogue order."""
    if value is None:
        return []
    parts = value if isinstance(value, list) else [value]
    names = {p.strip().lower() for part in parts for p in part.split(",") if p.strip()}
    unknown = sorted(names - SERVICES.keys())
    if unknown:
        raise InvalidInput(
            f"Unknown service {unknown[0]!r}: use {', '.join(SERVICES)} (comma-separated)."
        )
    return [s for s in SERVICES if s in names]


def join_services(names: list[str] | set[str]) -> str:
    return ",".join(s for s in SERVICES if s in names)


def split_services(stored: str | None) -> list[str]:
    return [s for s in (stored or "").split(",") if s]
