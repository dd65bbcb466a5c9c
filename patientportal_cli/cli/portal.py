"""portal: the patient's side of the portal, as the web portal would do it (demos, support, tests).

These commands need no staff login: they act as the patient. MitID is simulated
(``services/mitid.py``); everything else (passwords, codes, e-mail, audit) is real.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

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
from patientportal_cli.errors import InvalidInput

app = typer.Typer(
    help="The patient's side of the portal (register, activate, login, verify). MitID is "
    "SIMULATED in this tool: it accepts any valid CPR number without a real identity check "
    "(for demos, support and tests); a real MitID broker would replace it behind "
    "services/mitid.py.",
    no_args_is_help=True,
)


class Method(StrEnum):
    mitid = "mitid"
    two_factor = "two-factor"


ONLY_MITID = "--confirm-credentials, --email and --new-password-stdin go with --method mitid."

CprArg = Annotated[str, typer.Argument(help="The patient's CPR number (DDMMYY-SSSS).")]
ForOpt = Annotated[
    str | None,
    typer.Option(
        "--for",
        metavar="PATIENT_CPR",
        help="Act for this patient, as their guardian or proxy at the clinic (you log in "
        "as yourself).",
    ),
]


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


MethodOpt = Annotated[
    Method | None,
    typer.Option(
        "--method",
        help="mitid, or two-factor (password + e-mailed code).",
        case_sensitive=False,
    ),
]
ConfirmCredentialsOpt = Annotated[
    bool,
    typer.Option(
        "--confirm-credentials",
        help="mitid: confirm that the password and e-mail chosen at self-registration "
        "are yours (they become usable for two-factor login).",
    ),
]
NewEmailOpt = Annotated[
    str | None,
    typer.Option(
        "--email",
        help="mitid: replace the e-mail chosen at self-registration (with --new-password-stdin).",
    ),
]
NewPasswordStdinOpt = Annotated[
    bool,
    typer.Option(
        "--new-password-stdin",
        help="mitid: replace the password chosen at self-registration, read from the "
        "first line of stdin (with --email).",
    ),
]


@command(app, "login")
def login(
    cpr: CprArg,
    clinic_code: ClinicOpt = None,
    method: MethodOpt = None,
    password_stdin: PasswordStdinOpt = False,
    confirm_credentials: ConfirmCredentialsOpt = False,
    new_email: NewEmailOpt = None,
    new_password_stdin: NewPasswordStdinOpt = False,
    for_: ForOpt = None,
) -> None:
    """Log in as the patient, with MitID (simulated) or two-factor login.

    two-factor: checks the password, e-mails a 6-digit security code (valid 10 minutes),
    then asks for it on a terminal; without a terminal it ends after sending (exit 0),
    printing the attempt id of this login, and the code is given with `patientportal
    portal verify --attempt ID`. Two-factor login is allowed only when the clinic has
    set "Patienten har ikke MitID", or after a MitID login since the clinic last removed
    that flag. Five failed attempts (passwords or codes) lock login for 15 minutes.

    mitid: a password and e-mail chosen at self-registration are usable for two-factor
    login only once the patient vouches for them inside a MitID login: confirm them
    (--confirm-credentials) or replace them (--email NEW --new-password-stdin); on a
    terminal it is asked. A MitID login without either leaves them unusable.

    --for PATIENT_CPR: log in as yourself, as above, and act for that patient, while you
    are their guardian or proxy at the clinic (checked at login and at `portal verify`,
    which needs the same --for).
    """
    if method is Method.two_factor and (confirm_credentials or new_email or new_password_stdin):
        raise InvalidInput(ONLY_MITID)
    fixed = _credentials_answer(confirm_credentials, new_email, new_password_stdin)
    number = _cpr(cpr)
    acting = _acting(number, for_)
    clinic = _clinic(clinic_code)
    if (method or _ask_method()) is Method.mitid:
        _login_mitid(number, clinic, fixed, acting)
    else:
        if fixed is not None:
            raise InvalidInput(ONLY_MITID)
        _login_two_factor(number, clinic, password_stdin, acting)


def _acting(number: str, for_: str | None) -> Any:
    """``delegations.ActingFor`` of --for (None without it); exit 2 for a bad CPR number
    or the holder's own."""
    if for_ is None:
        return None
    from patientportal_cli.services.delegations import ActingFor

    patient = _cpr(for_)
    if patient == number:
        raise InvalidInput("--for names the patient you act for: someone else than yourself.")
    return ActingFor(patient)


def _report_acting(acting: Any, *, method: str) -> None:
    """The one event naming both people, and the line naming the patient."""
    from patientportal_cli.services.masking import patient_label

    with database() as session:
        grant = acting.record(session, method=method)
    services = ", ".join(grant.services) or "none"
    out().success(
        f"Acting for {patient_label(grant.patient_cpr, grant.patient_name)} as {grant.kind} "
        f"({grant.basis}) through {grant.last_day.isoformat()}; services: {services}."
    )


def _ask_method() -> Method:
    """MitID or two-factor, asked (exit 2 without a terminal: --method)."""
    from patientportal_cli import prompts

    return Method(
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


def _credentials_answer(confirm: bool, email: str | None, new_password: bool) -> Any:
    """The answer the options give (credentials.Answer), None without them; checked
    before anything is done (exit 2)."""
    from patientportal_cli.cli.common import read_password_stdin
    from patientportal_cli.services import credentials

    if not (confirm or email is not None or new_password):
        return None
    if confirm and (email is not None or new_password):
        raise InvalidInput(
            "--confirm-credentials keeps the password and e-mail; --email with "
            "--new-password-stdin replaces them: give one or the other."
        )
    if confirm:
        return credentials.Answer(credentials.CONFIRM)
    if email is None or not new_password:
        raise InvalidInput(
            "Replacing the credentials needs both --email NEW and --new-password-stdin."
        )
    return credentials.Answer(credentials.REPLACE, email, read_password_stdin()).checked()


def _ask_credentials(question: Any) -> Any:
    """On a terminal: are this password and e-mail yours? (credentials.Answer)"""
    from patientportal_cli import prompts
    from patientportal_cli.services import credentials, passwords
    from patientportal_cli.services.contact import normalize_email

    what = "a password and the e-mail" if question.has_password else "the e-mail"
    out().message(
        f"Your portal user has {what} {question.email}, chosen when it was registered "
        "online. They work for two-factor login only once you confirm them here."
    )
    choice = prompts.select(
        "Are this password and e-mail yours?",
        [
            (credentials.CONFIRM, "Yes, they are mine"),
            (credentials.REPLACE, "No: choose a new e-mail and password now"),
            (credentials.LATER, "Not now (two-factor login stays closed)"),
        ],
        flag="--confirm-credentials",
        what="confirmation of the password and e-mail",
    )
    if choice != credentials.REPLACE:
        return credentials.Answer(choice)

    def valid_email(text: str) -> bool | str:
        try:
            normalize_email(text)
        except InvalidInput as exc:
            return str(exc)
        return True

    email = prompts.text(
        "Your e-mail address:", flag="--email", what="e-mail address", validate=valid_email
    )
    password = prompts.new_password(
        "New password:", flag="--new-password-stdin", check=passwords.check_policy
    )
    return credentials.Answer(credentials.REPLACE, email, password).checked()


def _login_mitid(number: str, clinic: str, fixed: Any, acting: Any = None) -> None:
    from patientportal_cli import prompts
    from patientportal_cli.services import credentials, mitid, portal

    asked: list[Any] = []
    answered: list[Any] = []

    def answer(question: Any) -> Any:
        asked.append(question)
        given = fixed
        if given is None:
            given = (
                _ask_credentials(question)
                if prompts.interactive()
                else credentials.Answer(credentials.LATER)
            )
        answered.append(given)
        return given

    with database() as session:
        portal.login_mitid(
            session,
            cpr=number,
            clinic_code=clinic,
            broker=mitid.broker(),
            credentials=answer,
            acting=acting.check if acting else None,
        )
    code = clinic.strip().upper()
    output = out()
    output.success(f"Logged in with MitID (simulated) at clinic {code}.")
    if acting is not None:
        _report_acting(acting, method="mitid")
    if not asked:
        if fixed is not None:
            output.message("The password and e-mail were already confirmed: nothing changed.")
        return
    action = answered[0].action
    if action == credentials.CONFIRM:
        output.success("Password and e-mail confirmed: two-factor login can use them.")
    elif action == credentials.REPLACE:
        output.success(
            "New e-mail and password set: two-factor login can use them (codes go to "
            f"{_masked_email(answered[0].email)})."
        )
    else:
        output.warn(
            f"The password and e-mail chosen at registration ({asked[0].email}) are not "
            "confirmed: two-factor login stays closed until you confirm them (`patientportal "
            f"portal login CPR --clinic {code} --method mitid --confirm-credentials`) or "
            "replace them (`--email NEW --new-password-stdin`)."
        )


def _login_two_factor(number: str, clinic: str, password_stdin: bool, acting: Any = None) -> None:
    from patientportal_cli import prompts
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.errors import MailError
    from patientportal_cli.services import portal

    password = get_password(password_stdin, "Password:")
    output = out()
    with database() as session:
        sent = portal.start_two_factor(
            session,
            cpr=number,
            clinic_code=clinic,
            password=password,
            acting=acting.check if acting else None,
        )
    send_queued(output, clinic=clinic)
    with database() as session:
        arrived = portal.delivered(session, message_id=sent.message_id)
    finish = (
        f"`patientportal portal verify CPR --clinic {sent.clinic.code} "
        f"--attempt {sent.attempt} --code CODE{' --for PATIENT_CPR' if acting else ''}`"
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
                    session,
                    cpr=number,
                    clinic_code=clinic,
                    code=given,
                    attempt=sent.attempt,
                    acting=acting.check if acting else None,
                )
        except portal.WrongCode as exc:
            if exc.tries_left <= 0:
                raise
            output.warn(str(exc))
            continue
        break
    output.success("Logged in.")
    if acting is not None:
        _report_acting(acting, method="two-factor")


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
    for_: ForOpt = None,
) -> None:
    """Finish a two-factor login with the security code from the e-mail.

    The code can be tried only with the attempt id of the login it was sent for. Exit 1
    when the code is wrong (5 wrong tries end it), expired, already used or not this
    login's; every wrong try counts toward the lock (5 failed attempts: 15 minutes).
    With --for PATIENT_CPR the login acts for that patient, when you are still their
    guardian or proxy at the clinic.
    """
    from patientportal_cli import prompts
    from patientportal_cli.services import portal

    number = _cpr(cpr)
    acting = _acting(number, for_)
    clinic = _clinic(clinic_code)
    login_attempt = (
        attempt
        if attempt is not None
        else prompts.text(
            "Attempt id (printed by `portal login`):", flag="--attempt", what="attempt id"
        )
    )
    given = code or prompts.text("Security code from the e-mail:", flag="--code", what="code")
    with database() as session:
        portal.verify_code(
            session,
            cpr=number,
            clinic_code=clinic,
            code=given,
            attempt=login_attempt,
            acting=acting.check if acting else None,
        )
    out().success("Logged in.")
    if acting is not None:
        _report_acting(acting, method="two-factor")


def _masked_email(email: str) -> str:
    from patientportal_cli.services.portal import mask_email

    return mask_email(email)


def _masked(cpr: str) -> str:
    from patientportal_cli.output import mask_cpr

    return mask_cpr(cpr)
