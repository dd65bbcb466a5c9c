"""The "Patienten har ikke MitID" flag on a patient's link to a clinic (R4, R6, R7, R8).

This module sets and clears the flag. What the flag allows at login is decided in
``services/login_rules.py`` (``two_factor_decision``), applied by ``services/portal.py``.

- Setting the flag lets the patient log in at this clinic with two-factor login (R4). It
  makes the clinic responsible that the e-mail address belongs to the patient or to a
  person with power of attorney (fuldmagt), so it needs that explicit confirmation (R6).
  The address confirmed is the portal user's e-mail, the one the security codes are
  sent to; it also vouches for credentials chosen at self-registration
  (``portal_user.credentials_vouched_at``, see ``services/login_rules.py``). Who confirmed,
  when, and which address are stored on the link and in the audit log.
- Clearing the flag sets ``mitid_required_after`` to now: two-factor login at this clinic
  is refused until the patient has verified with MitID again (R7). The old confirmation
  is cleared with the flag (the audit log keeps it).
- The patient is told by e-mail either way (Danish texts in ``services/mail/texts.py``).
- Setting a flag that is set, or clearing one that is not, changes nothing (exit 0 with
  a message in the CLI; no audit event, no mail).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, ClinicLink, PortalUser
from patientportal_cli.errors import Conflict, MissingInput
from patientportal_cli.services import audit, shared_email
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.mail import outbox
from patientportal_cli.services.masking import mask_cpr
from patientportal_cli.services.users import (
    PatientFacts,
    current_clinic,
    link_facts,
    lookup,
    target,
)
from patientportal_cli.vocabulary import Action

CONFIRM_FLAG = "--confirm-email-owner"
STATEMENT = (
    "the e-mail address belongs to the patient or to a person with power of attorney "
    "(fuldmagt) to act on the patient's behalf"
)


def confirmation_missing() -> MissingInput:
    return MissingInput(
        CONFIRM_FLAG,
        "confirmation that the e-mail address belongs to the patient or to a person with "
        "power of attorney",
    )


def apply_flag(
    session: Session,
    *,
    actor: Actor,
    clinic: Clinic,
    user: PortalUser,
    link: ClinicLink,
    shared: int = 0,
) -> None:
    """Set the flag with the e-mail-owner confirmation, audit it and queue the mail.

    The caller has the confirmation for ``user.email`` and commits. ``shared``: how many
    other patients here have the e-mail, confirmed by the staff member (audited).
    """
    now = utcnow()
    link.no_mitid = True
    link.no_mitid_changed_at = now
    link.no_mitid_changed_by = actor.username
    link.email_owner_confirmed_at = now
    link.email_owner_confirmed_by = actor.username
    link.email_owner_confirmed_email = user.email
    session.add(link)
    vouches = user.credentials_vouched_at is None
    if vouches:
        # the clinic vouches for the address the codes go to (R6): the password chosen at
        # self-registration is usable for two-factor login from now on
        user.credentials_vouched_at = now
        session.add(user)
    outbox.to_patient(session, "no_mitid_set", user=user, clinic=clinic)
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.NO_MITID_SET,
        target=target(user.cpr),
        details={
            "email_owner_confirmed_by": actor.username,
            "email_owner_confirmed_at": now.isoformat(),
            "email": user.email,
            "record_email": link.record_email,
            "confirmed": STATEMENT,
            "credentials_vouched": vouches,
        }
        | ({"shared_email_confirmed": shared} if shared else {}),
    )


def set_flag(
    session: Session,
    *,
    actor: Actor,
    cpr: str,
    confirmed_email: str | None = None,
    shared_email_confirmed: bool = False,
) -> tuple[PatientFacts, bool, int]:
    """Set the flag, the e-mail-owner confirmation given: (facts, changed, how many other
    patients here have the same e-mail).

    ``confirmed_email`` is the address shown to the staff member when they confirmed on
    a terminal (refused if it changed since); None (``--confirm-email-owner``): the
    address on record, which the flag's help text tells them they confirm. An e-mail
    that other patients here also have needs ``shared_email_confirmed``
    (``shared_email.SharedEmailUnconfirmed``, exit 2, otherwise; D31)."""
    clinic = current_clinic(session, actor)
    user, link = lookup(session, clinic=clinic, cpr=cpr)
    facts = link_facts(user, link, clinic)
    if link.no_mitid:
        session.rollback()
        return facts, False, 0
    assert clinic.id is not None
    shared = shared_email.others_here(
        session, clinic_id=clinic.id, email=user.email, user_id=user.id
    )
    if shared and not shared_email_confirmed:
        session.rollback()
        raise shared_email.SharedEmailUnconfirmed(shared)
    if confirmed_email is not None and user.email.casefold() != confirmed_email.casefold():
        session.rollback()
        raise Conflict(
            f"The e-mail of {mask_cpr(user.cpr)} changed while you confirmed it (now "
            f"{user.email}); nothing was changed, run the command again."
        )
    apply_flag(session, actor=actor, clinic=clinic, user=user, link=link, shared=shared)
    session.commit()
    return replace(facts, no_mitid=True), True, shared


def clear_flag(session: Session, *, actor: Actor, cpr: str) -> tuple[PatientFacts, bool]:
    """Remove the flag: MitID is required at the next login here (R7). (facts, changed)."""
    clinic = current_clinic(session, actor)
    user, link = lookup(session, clinic=clinic, cpr=cpr)
    facts = link_facts(user, link, clinic)
    if not link.no_mitid:
        session.rollback()
        return facts, False
    now = utcnow()
    confirmed = {
        "email_owner_confirmed_by": link.email_owner_confirmed_by,
        "email_owner_confirmed_at": (
            link.email_owner_confirmed_at.isoformat() if link.email_owner_confirmed_at else None
        ),
        "email_owner_confirmed_email": link.email_owner_confirmed_email,
    }
    link.no_mitid = False
    link.no_mitid_changed_at = now
    link.no_mitid_changed_by = actor.username
    link.mitid_required_after = now
    link.email_owner_confirmed_at = None
    link.email_owner_confirmed_by = None
    link.email_owner_confirmed_email = None
    session.add(link)
    outbox.to_patient(session, "no_mitid_cleared", user=user, clinic=clinic)
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.NO_MITID_CLEAR,
        target=target(user.cpr),
        details={"mitid_required_after": now.isoformat(), "previous": confirmed},
    )
    session.commit()
    return replace(facts, no_mitid=False), True


@dataclass(frozen=True)
class FlaggedPatient:
    """One row of ``nomitid list``: a patient with the flag here, who set it, and the
    address confirmed."""

    cpr: str
    name: str
    email: str
    set_at: datetime | None
    set_by: str | None
    email_owner_confirmed_email: str | None

    def as_row(self) -> dict[str, Any]:
        """The fields in order, for ``output.rows`` (keys are the field names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def iter_flagged(session: Session, *, actor: Actor, batch: int = 500) -> Iterator[FlaggedPatient]:
    """This clinic's patients with the flag, ordered by name."""
    clinic = current_clinic(session, actor)
    query = (
        select(PortalUser, ClinicLink)
        .join(ClinicLink, col(ClinicLink.user_id) == PortalUser.id)
        .where(ClinicLink.clinic_id == clinic.id, col(ClinicLink.no_mitid).is_(True))
        .order_by(col(PortalUser.name), col(PortalUser.cpr))
        .execution_options(yield_per=batch)
    )
    for user, link in session.exec(query):
        yield FlaggedPatient(
            cpr=user.cpr,
            name=user.name,
            email=user.email,
            set_at=link.no_mitid_changed_at,
            set_by=link.no_mitid_changed_by,
            email_owner_confirmed_email=link.email_owner_confirmed_email,
        )


def list_flagged(session: Session, *, actor: Actor, fmt: str = "table") -> list[FlaggedPatient]:
    """``iter_flagged`` as a list; the listing is audited as ONE ``no_mitid.list`` event."""
    from patientportal_cli.services import accesslog

    rows = list(iter_flagged(session, actor=actor))
    accesslog.listed(
        session,
        actor=actor,
        action=Action.NO_MITID_LIST,
        cprs=[r.cpr for r in rows],
        filters={},
        fmt=fmt,
    )
    session.commit()
    return rows
