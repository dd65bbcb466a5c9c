"""Calling the services directly (no CLI): an actor for a staff member, adding staff."""

from __future__ import annotations

from sqlmodel import Session

from patientportal_cli.services import auth, staff
from patientportal_cli.services.auth import Actor
from tests.helpers.cli import PASSWORD


def actor_for(s: Session, username: str, clinic: str | None = None) -> Actor:
    """Log ``username`` in (password PASSWORD) and resolve the session to an actor."""
    token, _ = auth.login(s, username=username, password=PASSWORD, clinic_code=clinic)
    return auth.resolve(s, token=token, clinic_code=clinic)


def add_staff(s: Session, admin: Actor, username: str, role: str) -> None:
    """``admin`` adds ``username`` in ``role`` with the password PASSWORD."""
    staff.add(
        s, actor=admin, username=username, full_name=username.title(), role=role, password=PASSWORD
    )
