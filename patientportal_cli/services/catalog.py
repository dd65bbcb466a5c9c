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


def parse_roles(value: str) -> str:
    """'doctor,admin' (one role, or several comma-separated) -> 'admin,doctor': the
    checked names in catalogue order, as ``membership.role`` stores them."""
    names = {p.strip().lower() for p in value.split(",") if p.strip()}
    if not names:
        raise InvalidInput(
            "No role given: use admin, doctor or secretary (or several: admin,doctor)."
        )
    unknown = sorted(names - ROLES.keys())
    if unknown:
        raise InvalidInput(
            f"Unknown role {unknown[0]!r}: use admin, doctor or secretary (or several, "
            "comma-separated: admin,doctor)."
        )
    return ",".join(r for r in ROLES if r in names)


def split_roles(stored: str | None) -> list[str]:
    """The role names in a stored role text ('admin,doctor' -> ['admin', 'doctor'])."""
    return [r for r in (stored or "").split(",") if r]


def show_roles(stored: str | None) -> str:
    """A stored role text as people read it: 'admin,doctor' -> 'admin, doctor'."""
    return ", ".join(split_roles(stored))


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
