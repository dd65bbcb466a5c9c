"""portal register: online self-registration under the clinic's registration mode (R2).

The command belongs to the ``portal`` group; ``cli/app.py`` registers it there.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from patientportal_cli.cli.common import (
    STATE,
    ClinicOpt,
    PasswordStdinOpt,
    database,
    get_password,
    out,
)
from patientportal_cli.cli.completion import complete_services

if TYPE_CHECKING:
    from patientportal_cli.services.registration import Registration


class Login(StrEnum):
    mitid = "mitid"


def _ask(value: str | None, message: str, flag: str, what: str) -> str:
    if value is not None:
        return value
    from patientportal_cli import prompts

    return prompts.text(message, flag=flag, what=what)


NameOpt = Annotated[str | None, typer.Option("--name", help="The patient's full name.")]
EmailOpt = Annotated[str | None, typer.Option("--email", help="The patient's e-mail address.")]
ServicesOpt = Annotated[
    str | None,
    typer.Option(
        "--services",
        help="Services asked for, comma-separated: e-consultation, booking, "
        "prescription-renewal (default: all the clinic offers).",
        autocompletion=complete_services,
    ),
]
LoginOpt = Annotated[
    Login | None,
    typer.Option(
        "--login",
        help="Register inside a MitID login (simulated): needed when the CPR number "
        "already has a portal user.",
        case_sensitive=False,
    ),
]


def register(
    cpr: Annotated[str, typer.Argument(help="The patient's CPR number (DDMMYY-SSSS).")],
    clinic_code: ClinicOpt = None,
    name: NameOpt = None,
    email: EmailOpt = None,
    services: ServicesOpt = None,
    password_stdin: PasswordStdinOpt = False,
    login: LoginOpt = None,
) -> None:
    """Register as a patient online at a clinic, as its registration mode allows.

    none: refused (contact the clinic); nothing is stored. approval: a request waits for
    a doctor (`patientportal requests`). open: the portal user is created at once. A new
    user gives a name and e-mail and chooses a password (at least 8 characters with upper
    case, lower case and a digit; asked twice, or read from stdin with --password-stdin);
    they work for two-factor login once vouched for (registered with --login mitid, or
    confirmed in a later MitID login, or the clinic's no-MitID flag).

    A CPR number that already has a portal user registers only with `--login mitid`
    (otherwise: refused, log in instead; nothing changes). The existing user is then
    linked (open) or a request made (approval) and keeps their own name, e-mail and
    password: --name, --email and a --password-stdin line are not used.
    """
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.services import mitid, registration
    from patientportal_cli.services.cpr import normalize_cpr

    number = normalize_cpr(cpr)  # before asking anything else
    code = clinic_code or STATE.clinic or _ask(None, "Clinic code:", "--clinic", "clinic code")
    output = out()

    def details() -> tuple[str, str]:  # asked only when a new user will be created
        return (
            _ask(name, "Your full name:", "--name", "name"),
            _ask(email, "Your e-mail address:", "--email", "e-mail address"),
        )

    with database() as session:
        done = registration.register(
            session,
            clinic_code=code,
            cpr=number,
            name=name,
            email=email,
            services=services,
            password=lambda: get_password(password_stdin, "Choose a password:", new=True),
            details=details,
            broker=mitid.broker() if login is Login.mitid else None,
        )
    output.success(_registered_text(done))
    send_queued(output, clinic=done.clinic_code)


def _registered_text(done: Registration) -> str:
    """What the registration did: a request sent, a user created, or a user linked."""
    granted = ", ".join(done.services) or "none"
    where = f"clinic {done.clinic_code} ({done.clinic_name})"
    if done.outcome == "requested":
        who = "the existing portal user" if done.existing_user else "a new portal user"
        return (
            f"Registration request {done.request_id} sent to {where} for {who}: a doctor "
            f"approves or rejects it, and the answer is e-mailed. Services asked for: {granted}."
        )
    if done.outcome == "created" and done.mitid:
        return (
            f"Portal user created and linked to {where} inside your MitID login; "
            f"services: {granted}. Your password and e-mail work for two-factor login."
        )
    if done.outcome == "created":
        return (
            f"Portal user created and linked to {where}; services: {granted}. The first "
            "login needs MitID, where you confirm your password and e-mail (or the "
            "clinic's no-MitID flag)."
        )
    return (
        f"Your portal user is now linked to {where} (its name, e-mail and password are "
        f"unchanged); services: {granted}."
    )
