"""Staff correct what a patient registered: ``patient update`` and ``patient reset-password``.

Both act on a patient linked at the actor's clinic only (another clinic's patient is
"not a patient at clinic X", as everywhere); both are audited at this clinic.

``update`` (name and/or e-mail of the shared portal user; one user per CPR number):

- An e-mail entered by staff is vouched for: ``credentials_vouched_at`` becomes now (the
  security codes then go to an address the clinic entered). The link's record-card
  e-mail here becomes the new address too.
- Where the no-MitID flag is set at this clinic, the new address needs the e-mail-owner
  confirmation; it is recorded on the link (who, when, which address) as ``no-mitid set``
  does.
- The no-MitID flag at OTHER clinics was confirmed for the old address, and that
  confirmation does not cover an address those clinics never saw. So there the flag is
  removed as by ``no-mitid clear`` (MitID required at the next login there, until that
  clinic confirms the new address with ``no-mitid set``), audited at that clinic with the
  actor ``patientportal`` (not the staff member, whose username would tell that clinic
  where else the patient is). The staff member here is told the same sentence whether or
  not there was such a flag, so nothing about other clinics is disclosed either way.
- Every open activation or security code ends (they were mailed to the old address), and
  queued mail that would issue such a code when delivered is discarded.
- The old address gets a Danish notice (``email_changed``) with the new address masked,
  greeting the name that was on the user until now (a corrected name is not sent there).
- A change of name only updates the name (no mail). A value equal to the stored one (an
  e-mail equal ignoring case) is no change; nothing to change: no audit event.

``reset_password``: the password is cleared, open codes end, queued code mail is
discarded, the lock (per user, and the login throttle of the CPR number) is lifted, and
a fresh activation code goes to the e-mail on record (``credentials_vouched_at`` is not
touched: the code goes to the address already there). The portal keeps no patient
sessions in this tool; the codes are the only thing in flight.

``dry_run``: nothing changes; a ``patient.dry_run`` event records the look-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, ClinicLink, PortalUser
from patientportal_cli.errors import InvalidInput, Refused
from patientportal_cli.services import audit, codes, nomitid, shared_email, throttle
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.contact import clean_name, normalize_email
from patientportal_cli.services.mail import outbox
from patientportal_cli.services.masking import mask_cpr, mask_email
from patientportal_cli.services.users import current_clinic, locked_user, lookup, target
from patientportal_cli.vocabulary import Action

# who removes another clinic's no-MitID flag when the e-mail changes (see the docstring)
SYSTEM_ACTOR = "patientportal"
NOTHING_TO_UPDATE = "Nothing to update: give --name and/or --email."


@dataclass
class UpdateResult:
    """What ``update`` did (or, with dry_run, would do)."""

    cpr: str
    name: str  # after the change
    email: str  # after the change
    old_name: str
    old_email: str
    clinic_code: str
    changed: list[str] = field(default_factory=list)  # "name", "email"
    no_mitid_here: bool = False
    email_owner_confirmed: bool = False
    activated: bool = False
    dry_run: bool = False
    # other patients linked here with the new e-mail (services/shared_email.py)
    shared_email: int = 0


@dataclass
class ResetResult:
    """What ``reset_password`` did (or, with dry_run, would do)."""

    cpr: str
    name: str
    email: str
    clinic_code: str
    had_password: bool
    valid_days: int
    dry_run: bool = False


def check_update(name: str | None, email: str | None) -> tuple[str | None, str | None]:
    """The cleaned name and e-mail (InvalidInput, exit 2, for bad or no values)."""
    if name is None and email is None:
        raise InvalidInput(NOTHING_TO_UPDATE)
    return (
        clean_name(name) if name is not None else None,
        normalize_email(email) if email is not None else None,
    )


def update(
    session: Session,
    *,
    actor: Actor,
    cpr: str,
    name: str | None = None,
    email: str | None = None,
    email_owner_confirmed: bool = False,
    dry_run: bool = False,
) -> UpdateResult:
    """Change the name and/or e-mail of this clinic's patient (see the module docstring).

    ``email_owner_confirmed``: the staff member confirmed that the NEW address belongs to
    the patient (needed when the no-MitID flag is set here; else MissingInput, exit 2).
    """
    new_name, new_email = check_update(name, email)
    clinic = current_clinic(session, actor)
    user, link = lookup(session, clinic=clinic, cpr=cpr)
    user = locked_user(session, user)
    result = _planned(
        user,
        link,
        clinic=clinic,
        name=new_name,
        email=new_email,
        email_owner_confirmed=email_owner_confirmed,
        dry_run=dry_run,
    )
    if "email" in result.changed:
        assert clinic.id is not None
        result.shared_email = shared_email.others_here(
            session, clinic_id=clinic.id, email=result.email, user_id=user.id
        )
    if not result.changed:
        session.rollback()
        return result
    if dry_run:
        session.rollback()
        _record(
            session,
            actor,
            clinic,
            user,
            Action.PATIENT_DRY_RUN,
            command="update",
            fields=result.changed,
        )
        session.commit()
        return result
    if "email" in result.changed and link.no_mitid and not email_owner_confirmed:
        session.rollback()
        raise nomitid.confirmation_missing()
    _apply_update(session, actor=actor, clinic=clinic, user=user, link=link, result=result)
    session.commit()
    return result


def _apply_update(
    session: Session,
    *,
    actor: Actor,
    clinic: Clinic,
    user: PortalUser,
    link: ClinicLink,
    result: UpdateResult,
) -> None:
    """The planned name and/or e-mail change, and its audit event (not committed)."""
    details: dict[str, Any] = {"fields": result.changed}
    if "name" in result.changed:
        details["name"] = {"old": user.name, "new": result.name}
        user.name = result.name
    if "email" in result.changed:
        details |= _change_email(
            session, actor=actor, clinic=clinic, user=user, link=link, result=result
        )
    session.add(user)
    _record(session, actor, clinic, user, Action.PATIENT_UPDATE, **details)


def _planned(
    user: PortalUser,
    link: ClinicLink,
    *,
    clinic: Clinic,
    name: str | None,
    email: str | None,
    email_owner_confirmed: bool,
    dry_run: bool,
) -> UpdateResult:
    """What would change: a value equal to the stored one (an e-mail ignoring case) is
    no change."""
    changed: list[str] = []
    if email is not None and email.casefold() != user.email.casefold():
        changed.append("email")
    if name is not None and name != user.name:
        changed.append("name")
    return UpdateResult(
        cpr=user.cpr,
        name=name if "name" in changed and name else user.name,
        email=email if "email" in changed and email else user.email,
        old_name=user.name,
        old_email=user.email,
        clinic_code=clinic.code,
        changed=changed,
        no_mitid_here=link.no_mitid,
        email_owner_confirmed="email" in changed and link.no_mitid and email_owner_confirmed,
        activated=bool(user.password_hash),
        dry_run=dry_run,
    )


def _record(
    session: Session, actor: Actor, clinic: Clinic, user: PortalUser, action: Action, **details: Any
) -> None:
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=action,
        target=target(user.cpr),
        details=details,
    )


def _change_email(
    session: Session,
    *,
    actor: Actor,
    clinic: Clinic,
    user: PortalUser,
    link: ClinicLink,
    result: UpdateResult,
) -> dict[str, Any]:
    """Set the new e-mail, vouched for (and confirmed here where the flag is set); end
    the open codes, clear stale flags elsewhere, tell the old address. Returns the audit
    details."""
    now = utcnow()
    details: dict[str, Any] = {"email": {"old": user.email, "new": result.email}}
    user.email = result.email
    user.credentials_vouched_at = now
    details["credentials_vouched_at"] = now.isoformat()
    link.record_email = result.email
    if link.no_mitid:
        link.email_owner_confirmed_at = now
        link.email_owner_confirmed_by = actor.username
        link.email_owner_confirmed_email = result.email
        details["email_owner_confirmed"] = {
            "by": actor.username,
            "at": now.isoformat(),
            "email": result.email,
            "confirmed": nomitid.STATEMENT,
        }
    session.add(link)
    assert user.id is not None
    outbox.end_pending_codes(
        session,
        user_id=user.id,
        reason="the clinic changed the patient's e-mail",
    )
    clear_stale_flags(session, user=user, here=clinic)
    outbox.enqueue(
        session,
        to=result.old_email,
        template="email_changed",
        clinic_id=clinic.id,
        user_id=user.id,
        name=result.old_name,  # the name the holder of the old address knows
        clinic_name=clinic.name,
        new_email=mask_email(result.email),
    )
    return details


def clear_stale_flags(session: Session, *, user: PortalUser, here: Clinic) -> None:
    """Remove the no-MitID flag at clinics other than ``here`` whose confirmation is not
    for the user's (new) e-mail; each is audited at its own clinic (see the module
    docstring). For any path that changes ``user.email``; the caller commits."""
    now = utcnow()
    rows = session.exec(
        select(ClinicLink, Clinic)
        .join(Clinic, col(Clinic.id) == ClinicLink.clinic_id)
        .where(
            ClinicLink.user_id == user.id,
            ClinicLink.clinic_id != here.id,
            col(ClinicLink.no_mitid).is_(True),
        )
    )
    for link, clinic in rows:
        confirmed = link.email_owner_confirmed_email
        if confirmed is not None and confirmed.casefold() == user.email.casefold():
            continue
        previous = {
            "email_owner_confirmed_by": link.email_owner_confirmed_by,
            "email_owner_confirmed_at": (
                link.email_owner_confirmed_at.isoformat() if link.email_owner_confirmed_at else None
            ),
            "email_owner_confirmed_email": confirmed,
        }
        link.no_mitid = False
        link.no_mitid_changed_at = now
        link.no_mitid_changed_by = SYSTEM_ACTOR
        link.mitid_required_after = now
        link.email_owner_confirmed_at = None
        link.email_owner_confirmed_by = None
        link.email_owner_confirmed_email = None
        session.add(link)
        audit.record(
            session,
            actor=SYSTEM_ACTOR,
            clinic=clinic.code,
            action=Action.NO_MITID_CLEAR,
            target=target(user.cpr),
            details={
                "reason": "email_changed",
                "explanation": "the portal user's e-mail was changed; the confirmation was "
                "for the previous address",
                "mitid_required_after": now.isoformat(),
                "previous": previous,
            },
        )


def reset_password(
    session: Session, *, actor: Actor, cpr: str, dry_run: bool = False
) -> ResetResult:
    """Clear the password, end open codes and any lock, and mail a fresh activation code
    to the e-mail on record (see the module docstring)."""
    clinic = current_clinic(session, actor)
    user, _ = lookup(session, clinic=clinic, cpr=cpr)
    user = locked_user(session, user)
    assert user.id is not None
    if user.deactivated_at is not None:  # services/lifecycle.py: no codes for it (D25)
        session.rollback()
        raise Refused(
            f"{mask_cpr(user.cpr)} is not active: no activation code is sent. If that is a "
            "mistake, run `patientportal patient reactivate CPR` first."
        )
    valid_days = codes.LIFETIME[codes.ACTIVATION].days
    result = ResetResult(
        cpr=user.cpr,
        name=user.name,
        email=user.email,
        clinic_code=clinic.code,
        had_password=bool(user.password_hash),
        valid_days=valid_days,
        dry_run=dry_run,
    )
    if dry_run:
        session.rollback()
        _record(session, actor, clinic, user, Action.PATIENT_DRY_RUN, command="reset-password")
        session.commit()
        return result
    user.password_hash = None
    session.add(user)
    failures, until = throttle.clear(session, kind=throttle.PATIENT, name=user.cpr)
    outbox.end_pending_codes(
        session, user_id=user.id, reason="the clinic reset the patient's password"
    )
    outbox.activation(session, user=user, clinic=clinic, reset=True)
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.PATIENT_RESET_PASSWORD,
        target=target(user.cpr),
        details={
            "email": user.email,
            "had_password": result.had_password,
            "lock": {
                "failed_logins": failures,
                "locked_until": until.isoformat() if until else None,
            },
        },
    )
    session.commit()
    return result
