"""The Danish e-mails the portal sends to patients.

Every function returns ``(subject, body)``: plain text, polite Danish, signed with the
clinic's name. No text ever contains the patient's CPR number (e-mail is not a secure
channel); where a command needs it, the text says "dit CPR-nummer". Text the patient or
the clinic entered (names, reasons) goes into the body as it is: the mail is plain
text, so nothing in it is interpreted. Subjects are kept to one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from patientportal_cli.services.catalog import SERVICES

PORTAL = "Patientportalen"


def _one_line(text: str) -> str:
    """For subjects: control characters and line breaks become single spaces."""
    cleaned = "".join(" " if not ch.isprintable() else ch for ch in text)
    return " ".join(cleaned.split())


def _days(n: int) -> str:
    return f"{n} dag" if n == 1 else f"{n} dage"


def _minutes(n: int) -> str:
    return f"{n} minut" if n == 1 else f"{n} minutter"


def _mail(
    subject: str, greeting_name: str, paragraphs: list[str], signature: str
) -> tuple[str, str]:
    body = "\n\n".join([f"Kære {greeting_name}", *paragraphs, f"Venlig hilsen\n{signature}"])
    return _one_line(subject), body + "\n"


def activation(
    *,
    name: str,
    clinic_name: str,
    code: str,
    valid_days: int = 7,
    clinic_code: str | None = None,
    reset: bool = False,
) -> tuple[str, str]:
    """The clinic created a portal user: choose a password with this activation code.
    ``reset``: the clinic reset the password (``patient reset-password``) instead."""
    clinic_option = f" --clinic {clinic_code}" if clinic_code else ""
    if reset:
        subject = f"Din adgangskode til {PORTAL} er nulstillet – aktiveringskode"
        opening = [
            f"{clinic_name} har nulstillet din adgangskode til {PORTAL}. Din hidtidige "
            "adgangskode virker ikke længere.",
            "Du skal derfor vælge en ny adgangskode. Det gør du med denne aktiveringskode:",
        ]
    else:
        subject = f"Din bruger på {PORTAL} – aktiveringskode"
        opening = [
            f"{clinic_name} har oprettet dig som bruger på {PORTAL}.",
            "For at tage din bruger i brug skal du vælge en adgangskode. "
            "Det gør du med denne aktiveringskode:",
        ]
    return _mail(
        subject,
        name,
        [
            *opening,
            f"    {code}",
            f"Aktiveringskoden er gyldig i {_days(valid_days)} og kan kun bruges én gang. "
            f"Indtast den på {PORTAL} sammen med dit CPR-nummer, og vælg derefter din "
            "adgangskode. Med kommandolinjen gøres det sådan:\n"
            f"    patientportal portal activate DIT-CPR-NUMMER{clinic_option} --code {code}",
            "Adgangskoden skal være på mindst 8 tegn og indeholde både store og små "
            "bogstaver samt mindst ét tal.",
            "Hvis aktiveringskoden er udløbet, kan klinikken sende dig en ny. Hvis du ikke "
            f"kender til denne {'nulstilling' if reset else 'oprettelse'}, bedes du kontakte "
            "klinikken.",
        ],
        clinic_name,
    )


def security_code(
    *, name: str, code: str, minutes: int = 10, clinic_name: str | None = None
) -> tuple[str, str]:
    """The 6-digit security code of a two-factor login."""
    return _mail(
        f"Din sikkerhedskode til {PORTAL}",
        name,
        [
            f"Her er din sikkerhedskode til to-faktor-login på {PORTAL}:",
            f"    {code}",
            f"Sikkerhedskoden er gyldig i {_minutes(minutes)} og kan kun bruges én gang.",
            "Hvis det ikke er dig, der er ved at logge ind, skal du ikke bruge koden. "
            "Skift da din adgangskode, og kontakt klinikken.",
        ],
        clinic_name or PORTAL,
    )


def registered(*, name: str, clinic_name: str) -> tuple[str, str]:
    """Open registration: the patient is now a user and linked to the clinic."""
    return _mail(
        f"Du er nu tilknyttet {clinic_name} på {PORTAL}",
        name,
        [
            f"Tak for din tilmelding. Du er nu oprettet som bruger på {PORTAL} og "
            f"tilknyttet {clinic_name}.",
            "Ved første login kræves verificering med MitID for at bekræfte din identitet. "
            "Hvis du ikke har MitID, bedes du kontakte klinikken.",
        ],
        clinic_name,
    )


def request_received(*, name: str, clinic_name: str) -> tuple[str, str]:
    """Approval mode: the request waits for a doctor."""
    return _mail(
        f"Vi har modtaget din anmodning – {clinic_name}",
        name,
        [
            f"Vi har modtaget din anmodning om at blive tilknyttet {clinic_name} på {PORTAL}.",
            "Anmodningen afventer nu godkendelse af en læge i klinikken. Du får besked på "
            "mail, når den er behandlet.",
        ],
        clinic_name,
    )


def request_approved(*, name: str, clinic_name: str, services: list[str]) -> tuple[str, str]:
    """A doctor approved the request; ``services`` are catalogue names (Danish labels
    are shown, in catalogue order)."""
    chosen = set(services)
    labels = [label for key, label in SERVICES.items() if key in chosen]
    labels += [s for s in services if s not in SERVICES]  # never drop one silently
    if labels:
        granted = "Du har adgang til:\n" + "\n".join(f"  - {label}" for label in labels)
    else:
        granted = "Klinikken har endnu ikke givet adgang til nogen funktioner."
    return _mail(
        f"Din anmodning er godkendt – {clinic_name}",
        name,
        [
            f"Din anmodning om at blive tilknyttet {clinic_name} på {PORTAL} er godkendt.",
            granted,
            "Ved første login kræves verificering med MitID for at bekræfte din identitet. "
            "Hvis du ikke har MitID, bedes du kontakte klinikken.",
        ],
        clinic_name,
    )


def request_rejected(*, name: str, clinic_name: str, reason: str | None) -> tuple[str, str]:
    """A doctor rejected the request, perhaps with a reason."""
    paragraphs = [
        f"Din anmodning om at blive tilknyttet {clinic_name} på {PORTAL} er desværre "
        "ikke blevet godkendt."
    ]
    if reason and reason.strip():
        paragraphs.append(f"Begrundelse: {reason.strip()}")
    paragraphs.append("Har du spørgsmål, er du velkommen til at kontakte klinikken.")
    return _mail(f"Svar på din anmodning – {clinic_name}", name, paragraphs, clinic_name)


def no_mitid_set(*, name: str, clinic_name: str) -> tuple[str, str]:
    """The clinic set "Patienten har ikke MitID": two-factor login is now possible."""
    return _mail(
        f"Login uden MitID hos {clinic_name}",
        name,
        [
            f"{clinic_name} har registreret, at du ikke har MitID.",
            f"Du kan derfor logge ind på klinikkens {PORTAL} med to-faktor-login: Du "
            "indtaster dit CPR-nummer og din adgangskode, efterfulgt af en sikkerhedskode, "
            "som sendes til denne mailadresse, hver gang du logger ind.",
            "Hvis du ikke kender til denne ændring, bedes du straks kontakte klinikken.",
        ],
        clinic_name,
    )


def no_mitid_cleared(*, name: str, clinic_name: str) -> tuple[str, str]:
    """The flag was removed: the next login at this clinic needs MitID."""
    return _mail(
        f"MitID kræves ved næste login hos {clinic_name}",
        name,
        [
            f"{clinic_name} har fjernet registreringen af, at du ikke har MitID.",
            f"Ved dit næste login på klinikkens {PORTAL} skal du derfor verificere dig med "
            "MitID. Indtil da kan du ikke logge ind med to-faktor-login hos klinikken.",
            "Har du spørgsmål, er du velkommen til at kontakte klinikken.",
        ],
        clinic_name,
    )


def email_changed(*, name: str, clinic_name: str, new_email: str) -> tuple[str, str]:
    """To the OLD address: the clinic changed the portal user's e-mail address.
    ``new_email`` is the new address masked (``s***@example.dk``), never in full."""
    return _mail(
        f"Din e-mailadresse på {PORTAL} er ændret",
        name,
        [
            f"{clinic_name} har ændret e-mailadressen på din bruger på {PORTAL} til "
            f"{new_email}. Beskeder og sikkerhedskoder fra {PORTAL} sendes fremover dertil, "
            "og ikke længere til denne adresse.",
            "Aktiverings- og sikkerhedskoder, der er sendt til denne adresse, virker ikke længere.",
            "Hvis du ikke kender til denne ændring, bedes du straks kontakte klinikken.",
        ],
        clinic_name,
    )


def guardian_ending(
    *, name: str, clinic_name: str, child_name: str, ends_on: str, last_day: str
) -> tuple[str, str]:
    """To a guardian, 30 days ahead: acting for the child ends on the 15th birthday
    (``ends_on``, dd.mm.yyyy; ``last_day`` the day before)."""
    return _mail(
        f"Din adgang på vegne af {child_name} ophører snart – {clinic_name}",
        name,
        [
            f"Du kan i dag handle på vegne af {child_name} hos {clinic_name} på {PORTAL}. "
            f"Den adgang ophører den {ends_on}, når {child_name} fylder 15 år. Den sidste "
            f"dag, du har adgang, er {last_day}.",
            "Fra 15 år bestemmer den unge selv over sine helbredsoplysninger og logger ind "
            "med sit eget MitID.",
            "Hvis den unge ønsker, at du fortsat skal kunne hjælpe, kan den unge give dig en "
            "fuldmagt. Kontakt klinikken for at få den registreret.",
            "Har du spørgsmål, er du velkommen til at kontakte klinikken.",
        ],
        clinic_name,
    )


# template name -> the function that writes it. The outbox stores a message as its
# template and arguments (never a code) and ``render`` writes it at delivery.
TEMPLATES: dict[str, Callable[..., tuple[str, str]]] = {
    "activation": activation,
    "security_code": security_code,
    "registered": registered,
    "request_received": request_received,
    "request_approved": request_approved,
    "request_rejected": request_rejected,
    "no_mitid_set": no_mitid_set,
    "no_mitid_cleared": no_mitid_cleared,
    "email_changed": email_changed,
    "guardian_ending": guardian_ending,
}
# templates that carry a one-time code, made at delivery: template -> the code's purpose
# (``services/codes.py``)
CODE_TEMPLATES = {"activation": "activation", "security_code": "login"}
# what a subject is written with before the code exists (no subject contains a code)
_NO_CODE = "\u2026"


def render(template: str, args: dict[str, Any], code: str | None = None) -> tuple[str, str]:
    """(subject, body) of a stored intent; ``code`` for the templates in CODE_TEMPLATES."""
    write = TEMPLATES[template]
    if template in CODE_TEMPLATES:
        return write(**args, code=code if code is not None else _NO_CODE)
    return write(**args)


def transport_test() -> tuple[str, str]:
    """``mail test``: shows that the configured transport works (Danish and English)."""
    subject = f"Testmail fra {PORTAL} / test message"
    body = (
        "Dette er en testmail fra patientportal. Hvis du kan læse den, virker "
        "mailafsendelsen.\n\n"
        "This is a test message from patientportal. If you can read it, mail delivery "
        "works.\n"
    )
    return subject, body
