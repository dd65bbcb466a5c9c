"""portal register: online self-registration under the clinic's registration mode (R2).

Adds the ``register`` command to the ``portal`` group (``cli/app.py`` imports this
module so that the command is registered).
"""

from __future__ import annotations

from typing import Annotated

import typer

from patientportal_cli.cli.common import (
    STATE,
    ClinicOpt,
    PasswordStdinOpt,
    command,
    database,
    get_password,
    out,
)
from patientportal_cli.cli.portal import app


def _ask(value: str | None, message: str, flag: str, what: str) -> str:
    if value is not None:
        return value
    from patientportal_cli import prompts

    return prompts.text(message, flag=flag, what=what)


@command(app, "register")
def register(
    cpr: Annotated[str, typer.Argument(help="The patient's CPR number (DDMMYY-SSSS).")],
    clinic_code: ClinicOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="The patient's full name.")] = None,
    email: Annotated[
        str | None, typer.Option("--email", help="The patient's e-mail address.")
    ] = None,
    services: Annotated[
        str | None,
        typer.Option(
            "--services",
            help="Services asked for, comma-separated: e-consultation, booking, "
            "prescription-renewal (default: all the clinic offers).",
        ),
    ] = None,
    password_stdin: PasswordStdinOpt = False,
) -> None:
    """Register as a patient online at a clinic, as its registration mode allows.

    none: refused (contact the clinic); nothing is stored. approval: a request waits for
    a doctor (`patientportal requests`). open: the portal user is created at once, or an
    existing user (same CPR) linked. A new user chooses a password (at least 8
    characters with upper case, lower case and a digit; asked twice, or read from stdin
    with --password-stdin). A CPR number that already has a portal user is not asked for
    one: the existing user keeps their password (a --password-stdin line is not read).
    """
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.services import registration
    from patientportal_cli.services.cpr import normalize_cpr

    number = normalize_cpr(cpr)  # before asking anything else
    code = clinic_code or STATE.clinic or _ask(None, "Clinic code:", "--clinic", "clinic code")
    given_name = _ask(name, "Your full name:", "--name", "name")
    given_email = _ask(email, "Your e-mail address:", "--email", "e-mail address")
    output = out()
    with database() as session:
        done = registration.register(
            session,
            clinic_code=code,
            cpr=number,
            name=given_name,
            email=given_email,
            services=services,
            password=lambda: get_password(password_stdin, "Choose a password:", new=True),
        )
    granted = ", ".join(done.services) or "none"
    where = f"clinic {done.clinic_code} ({done.clinic_name})"
    if done.outcome == "requested":
        who = "the existing portal user" if done.existing_user else "a new portal user"
        output.success(
            f"Registration request {done.request_id} sent to {where} for {who}: a doctor "
            f"approves or rejects it, and the answer is e-mailed. Services asked for: {granted}."
        )
    elif done.outcome == "created":
        output.success(
            f"Portal user created and linked to {where}; services: {granted}. The first "
            "login needs MitID (or the clinic's no-MitID flag)."
        )
    else:
        output.success(
            f"The existing portal user is now linked to {where} (password unchanged); "
            f"services: {granted}."
        )
    send_queued(output, clinic=done.clinic_code)
