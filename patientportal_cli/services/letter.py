"""The printed activation letter (``patient invite CPR --letter FILE``; D45).

For a patient without e-mail on the day: the clinic prints a Danish letter with its
name, the activation code, the code's expiry and the steps, and hands or posts it.

- The letter replaces the e-mail: no activation e-mail is sent, queued ones are
  discarded ("replaced by a printed letter"), and the older code stops working.
- The code is issued in the command's transaction, as delivery does for an e-mailed
  code (``codes.issue``: only its hash is stored); the text is handed to ``write``
  (the command writes the file 0600) before anything is committed, so a letter that
  could not be written leaves no code.
- The letter shows no CPR number ("dit CPR-nummer"); the audit event
  (``patient.letter``) says a letter was written and when its code expires, never the
  code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session

from patientportal_cli.db.models import Clinic
from patientportal_cli.errors import Refused
from patientportal_cli.services import audit, codes
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.mail import outbox
from patientportal_cli.services.mail.texts import PORTAL
from patientportal_cli.services.masking import mask_cpr
from patientportal_cli.services.users import (
    PatientFacts,
    current_clinic,
    link_facts,
    lookup,
    target,
)
from patientportal_cli.vocabulary import Action

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
MONTHS = (
    "januar", "februar", "marts", "april", "maj", "juni",
    "juli", "august", "september", "oktober", "november", "december",
)  # fmt: skip


@dataclass(frozen=True)
class LetterResult:
    facts: PatientFacts
    expires_at: datetime


def danish_time(at: datetime) -> str:
    """'9. december 2026 kl. 16.40' in Copenhagen time."""
    local = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(COPENHAGEN)
    return f"{local.day}. {MONTHS[local.month - 1]} {local.year} kl. {local:%H.%M}"


def text(*, name: str, clinic: Clinic, code: str, expires_at: datetime, today: datetime) -> str:
    """The letter: plain text, polite Danish, no CPR number."""
    local_today = (today if today.tzinfo else today.replace(tzinfo=UTC)).astimezone(COPENHAGEN)
    date_line = f"{local_today.day}. {MONTHS[local_today.month - 1]} {local_today.year}"
    lines = [
        clinic.name,
        "",
        f"{date_line}",
        "",
        f"Til {name}",
        "",
        f"Din bruger på {PORTAL} – aktiveringskode",
        "",
        f"Kære {name}",
        "",
        f"{clinic.name} har oprettet dig som bruger på {PORTAL}. For at tage din bruger i "
        "brug skal du vælge en adgangskode. Det gør du med denne aktiveringskode:",
        "",
        f"    {code}",
        "",
        f"Koden kan bruges én gang og udløber {danish_time(expires_at)}.",
        "",
        "Sådan gør du:",
        f"  1. Gå til {PORTAL}, og vælg at aktivere din bruger.",
        "  2. Indtast dit CPR-nummer og aktiveringskoden ovenfor.",
        "  3. Vælg en adgangskode på mindst 8 tegn med både store og små bogstaver og",
        "     mindst ét tal.",
        "  4. Log derefter ind med dit CPR-nummer og din adgangskode.",
        "",
        "Med kommandolinjen gøres trin 1-3 sådan:",
        f"    patientportal portal activate DIT-CPR-NUMMER --clinic {clinic.code} --code {code}",
        "",
        "Hvis koden er udløbet, kan klinikken give dig en ny. Gem ikke brevet sammen med "
        "noget, der viser dit CPR-nummer, og smid det ud, når du har valgt din adgangskode.",
        "",
        "Venlig hilsen",
        clinic.name,
    ]
    return "\n".join(lines) + "\n"


def invite_by_letter(
    session: Session, *, actor: Actor, cpr: str, write: Callable[[str], None]
) -> LetterResult:
    """A new activation code in a letter, handed to ``write`` (see the module)."""
    clinic = current_clinic(session, actor)
    user, link_row = lookup(session, clinic=clinic, cpr=cpr)
    assert user.id is not None
    if user.deactivated_at is not None:
        raise Refused(
            f"{mask_cpr(user.cpr)} is not active: no activation code is made. If that is a "
            "mistake, run `patientportal patient reactivate CPR` first."
        )
    if user.password_hash:
        raise Refused(
            f"{mask_cpr(user.cpr)} is already activated (has chosen a password); an activation "
            "code cannot replace a password the patient chose."
        )
    outbox.end_pending_codes(
        session,
        user_id=user.id,
        reason="replaced by a printed letter",
        purpose=codes.ACTIVATION,
    )
    code = codes.issue(session, user_id=user.id, purpose=codes.ACTIVATION, clinic_id=clinic.id)
    issued = codes.current(session, user_id=user.id, purpose=codes.ACTIVATION)
    assert issued is not None
    expires_at = issued.expires_at
    write(
        text(
            name=user.name, clinic=clinic, code=code, expires_at=expires_at, today=issued.created_at
        )
    )
    audit.record(
        session,
        actor=actor.username,
        clinic=clinic.code,
        action=Action.PATIENT_LETTER,
        target=target(user.cpr),
        details={"letter": "written", "expires_at": expires_at},
    )
    session.commit()
    return LetterResult(link_facts(user, link_row, clinic), expires_at)
