"""portal: the patient's side of the portal, as the web portal would do it (demos, support, tests).

These commands need no staff login: they act as the patient. MitID is simulated
(``services/mitid.py``); everything else (passwords, codes, e-mail, audit) is real.
"""

from __future__ import annotations

from enum import StrEnum
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

app = typer.Typer(
    help="The patient's side of the portal (register, activate, login, verify).",
    no_args_is_help=True,
)


class Method(StrEnum):
    mitid = "mitid"
    two_factor = "two-factor"


CprArg = Annotated[str, typer.Argument(help="The patient's CPR number (DDMMYY-SSSS).")]


def _clinic(clinic_code: str | None) -> str:
    """The command's --clinic, else the global one, else asked (exit 2 without a terminal)."""
    code = clinic_code or STATE.clinic
    if code:
        return code
    from patientportal_cli import prompts

    return prompts.text("Clinic code:", flag="--clinic", what="clinic code")


def _cpr(cpr: str) -> str:
    from patientportal_cli.services.cpr import normalize_cpr

    return normalize_cpr(cpr)


@command(app, "activate")
def activate(
    cpr: CprArg,
    clinic_code: ClinicOpt = None,
    code: Annotated[
        str | None, typer.Option("--code", help="The activation code from the e-mail.")
    ] = None,
    password_stdin: PasswordStdinOpt = False,
) -> None:
    """Choose a password with the activation code from the e-mail (valid 7 days, once).

    The password needs at least 8 characters with an upper-case letter, a lower-case
    letter and a digit. It is asked twice on a terminal, or read from stdin with
    --password-stdin.
    """
    from patientportal_cli import prompts
    from patientportal_cli.services import portal

    number = _cpr(cpr)
    clinic = _clinic(clinic_code)
    given = code or prompts.text(
        "Activation code from the e-mail:", flag="--code", what="activation code"
    )
    password = get_password(password_stdin, "New password:", new=True)
    with database() as session:
        user = portal.activate(
            session, cpr=number, clinic_code=clinic, code=given, password=password
        )
    out().success(
        f"Password set for {_masked(user.cpr)}: you can now log in at clinic "
        f"{clinic.strip().upper()} (`patientportal portal login`)."
    )


@command(app, "login")
def login(
    cpr: CprArg,
    clinic_code: ClinicOpt = None,
    method: Annotated[
        Method | None,
        typer.Option("--method", help="mitid, or two-factor (password + e-mailed code)."),
    ] = None,
    password_stdin: PasswordStdinOpt = False,
) -> None:
    """Log in as the patient, with MitID (simulated) or two-factor login.

    two-factor: checks the password, e-mails a 6-digit security code (valid 10 minutes),
    then asks for it on a terminal; without a terminal it ends after sending (exit 0),
    printing the attempt id of this login, and the code is given with `patientportal
    portal verify --attempt ID`. Two-factor login is allowed only when the clinic has
    set "Patienten har ikke MitID", or after a MitID login since the clinic last removed
    that flag. Five failed attempts (passwords or codes) lock login for 15 minutes.
    """
    from patientportal_cli import prompts

    number = _cpr(cpr)
    clinic = _clinic(clinic_code)
    chosen = method or Method(
        prompts.select(
            "Login method:",
            [
                (Method.mitid.value, "MitID"),
                (Method.two_factor.value, "Two-factor (password + code)"),
            ],
            flag="--method",
            what="login method",
        )
    )
    if chosen is Method.mitid:
        _login_mitid(number, clinic)
    else:
        _login_two_factor(number, clinic, password_stdin)


def _login_mitid(number: str, clinic: str) -> None:
    from patientportal_cli.services import mitid, portal

    with database() as session:
        portal.login_mitid(session, cpr=number, clinic_code=clinic, broker=mitid.broker())
    out().success(f"Logged in with MitID (simulated) at clinic {clinic.strip().upper()}.")


def _login_two_factor(number: str, clinic: str, password_stdin: bool) -> None:
    from patientportal_cli import prompts
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.errors import MailError
    from patientportal_cli.services import portal

    password = get_password(password_stdin, "Password:")
    output = out()
    with database() as session:
        sent = portal.start_two_factor(session, cpr=number, clinic_code=clinic, password=password)
    send_queued(output, clinic=clinic)
    with database() as session:
        arrived = portal.delivered(session, message_id=sent.message_id)
    finish = (
        f"`patientportal portal verify CPR --clinic {sent.clinic.code} "
        f"--attempt {sent.attempt} --code CODE`"
    )
    if not arrived:
        raise MailError(
            "The security code could not be e-mailed; it stays queued and is sent by "
            f"`patientportal mail send` (valid {sent.minutes} minutes). Then give it with "
            f"{finish}."
        )
    output.message(f"A security code was e-mailed to {sent.email} (valid {sent.minutes} minutes).")
    if not prompts.interactive():
        output.message(f"No terminal to ask for it: give it with {finish}.")
        return
    while True:
        given = prompts.text("Security code from the e-mail:", flag="--code", what="code")
        try:
            with database() as session:
                portal.verify_code(
                    session, cpr=number, clinic_code=clinic, code=given, attempt=sent.attempt
                )
        except portal.WrongCode as exc:
            if exc.tries_left <= 0:
                raise
            output.warn(str(exc))
            continue
        break
    output.success("Logged in.")


@command(app, "verify")
def verify(
    cpr: CprArg,
    clinic_code: ClinicOpt = None,
    code: Annotated[
        str | None, typer.Option("--code", help="The 6-digit security code from the e-mail.")
    ] = None,
    attempt: Annotated[
        str | None,
        typer.Option(
            "--attempt",
            help="The attempt id `portal login` printed: only that login may try its code.",
        ),
    ] = None,
) -> None:
    """Finish a two-factor login with the security code from the e-mail.

    The code can be tried only with the attempt id of the login it was sent for. Exit 1
    when the code is wrong (5 wrong tries end it), expired, already used or not this
    login's; every wrong try counts toward the lock (5 failed attempts: 15 minutes).
    """
    from patientportal_cli import prompts
    from patientportal_cli.services import portal

    number = _cpr(cpr)
    clinic = _clinic(clinic_code)
    login_attempt = attempt or prompts.text(
        "Attempt id (printed by `portal login`):", flag="--attempt", what="attempt id"
    )
    given = code or prompts.text("Security code from the e-mail:", flag="--code", what="code")
    with database() as session:
        portal.verify_code(
            session, cpr=number, clinic_code=clinic, code=given, attempt=login_attempt
        )
    out().success("Logged in.")


def _masked(cpr: str) -> str:
    from patientportal_cli.output import mask_cpr

    return mask_cpr(cpr)
