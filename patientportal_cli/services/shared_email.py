"""Two patients of one clinic with one e-mail address (issue 15 point 8, docs/rules.md D31).

Whoever reads a shared mailbox receives both patients' activation and security codes:
for a no-MitID patient that is a login. So ``patient create``, ``patient update
--email``, ``no-mitid set`` and ``patient import`` warn when the e-mail is already the
e-mail of another portal user linked at this clinic, compared case-insensitively
(``lower(email)``, index ``ix_portal_user_email_lower``). The warning gives the number
of other patients, never who they are. ``no-mitid set`` also asks for a confirmation
(``--confirm-shared-email``); nothing else is refused.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from patientportal_cli.db.models import ClinicLink, PortalUser
from patientportal_cli.errors import InvalidInput

CONFIRM_FLAG = "--confirm-shared-email"


def others_here(session: Session, *, clinic_id: int, email: str, user_id: int | None) -> int:
    """How many other portal users linked at the clinic have ``email`` (any case)."""
    query = (
        select(func.count())
        .select_from(PortalUser)
        .join(ClinicLink, col(ClinicLink.user_id) == PortalUser.id)
        .where(ClinicLink.clinic_id == clinic_id, func.lower(PortalUser.email) == email.lower())
    )
    if user_id is not None:
        query = query.where(PortalUser.id != user_id)
    return int(session.exec(query).one())


def warning(count: int) -> str:
    """The warning's text (``output.warn`` puts "Warning: " before it)."""
    patients = "patient" if count == 1 else "patients"
    return f"this e-mail is also used by {count} other {patients} here."


class SharedEmailUnconfirmed(InvalidInput):
    """``no-mitid set`` for a shared e-mail without ``--confirm-shared-email`` (exit 2)."""

    def __init__(self, count: int) -> None:
        patients = "patient" if count == 1 else "patients"
        super().__init__(
            f"This e-mail is also used by {count} other {patients} here, who would receive "
            f"this patient's security codes: pass {CONFIRM_FLAG} to set the flag anyway."
        )
        self.count = count
