"""no-mitid: set | clear | list (the "Patienten har ikke MitID" flag at this clinic)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from patientportal_cli.cli.common import ClinicOpt, Fmt, OutputOpt, command, out, staff_session

if TYPE_CHECKING:
    from sqlmodel import Session

    from patientportal_cli.output import Output
    from patientportal_cli.services.auth import Actor
    from patientportal_cli.services.users import PatientFacts

app = typer.Typer(
    help='The "Patienten har ikke MitID" flag: two-factor login at this clinic without MitID.',
    no_args_is_help=True,
)

CprArg = Annotated[
    str, typer.Argument(metavar="CPR", help="CPR number: DDMMYY-SSSS, DDMMYY SSSS or DDMMYYSSSS.")
]


ConfirmEmailOwnerOpt = Annotated[
    bool,
    typer.Option(
        "--confirm-email-owner",
        help="Confirm, without being asked, that the e-mail address on record belongs "
        "to the patient or to a person with power of attorney (fuldmagt).",
    ),
]
ConfirmSharedEmailOpt = Annotated[
    bool,
    typer.Option(
        "--confirm-shared-email",
        help="Set the flag even though other patients here have the same e-mail "
        "(asked on a terminal).",
    ),
]


@command(app, "set")
def set_(
    cpr: CprArg,
    confirm_email_owner: ConfirmEmailOwnerOpt = False,
    confirm_shared_email: ConfirmSharedEmailOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Set the flag: the patient may log in here with two-factor login (R4, R6).

    Shows the e-mail address on record (the security codes go to it) and asks you to
    confirm that it belongs to the patient or to a person with power of attorney; the
    clinic is responsible for that. Who confirmed, when and which address are recorded.
    Without a terminal, pass --confirm-email-owner. An e-mail that other patients here
    also have is asked about too (without a terminal: --confirm-shared-email).
    """
    from patientportal_cli import prompts
    from patientportal_cli.services import nomitid, patients

    if not confirm_email_owner and not prompts.interactive():
        raise nomitid.confirmation_missing()
    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        confirmed_email = None
        if not confirm_email_owner:
            facts = patients.summary(session, actor=actor, cpr=cpr)
            if facts.no_mitid:
                output.message(_already_flagged(facts))
                return
            confirmed_email = _confirm_email_owner(output, facts)
        facts, changed, shared = _set_flag(
            output,
            session,
            actor,
            cpr=cpr,
            confirmed_email=confirmed_email,
            shared_email_confirmed=confirm_shared_email,
        )
    if not changed:
        output.message(_already_flagged(facts))
        return
    _report_set(output, facts, shared, actor)


def _set_flag(
    output: Output,
    session: Session,
    actor: Actor,
    *,
    cpr: str,
    confirmed_email: str | None,
    shared_email_confirmed: bool,
) -> tuple[PatientFacts, bool, int]:
    """Set the flag; on a terminal, an unconfirmed shared e-mail is asked about, then set."""
    from patientportal_cli import prompts
    from patientportal_cli.services import nomitid
    from patientportal_cli.services.shared_email import SharedEmailUnconfirmed

    try:
        return nomitid.set_flag(
            session,
            actor=actor,
            cpr=cpr,
            confirmed_email=confirmed_email,
            shared_email_confirmed=shared_email_confirmed,
        )
    except SharedEmailUnconfirmed as exc:
        if not prompts.interactive():
            raise
        _confirm_shared(output, exc.count)
        facts, changed, _shared = nomitid.set_flag(
            session,
            actor=actor,
            cpr=cpr,
            confirmed_email=confirmed_email,
            shared_email_confirmed=True,
        )
        return facts, changed, 0  # warned before the question


def _report_set(output: Output, facts: PatientFacts, shared: int, actor: Actor) -> None:
    """Say the flag is set, warn of a shared e-mail, say what was recorded, send the mail."""
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.services.shared_email import warning

    output.success(
        f"No-MitID flag set for {facts.label} at clinic {facts.clinic_code}: two-factor login "
        "is allowed here."
    )
    if shared:
        output.warn(warning(shared))
    output.message(
        f"Recorded: {actor.username} confirmed that {facts.email} belongs to the patient "
        "or to a person with power of attorney."
    )
    send_queued(output, clinic=actor.clinic_code)


def _confirm_shared(output: Output, count: int) -> None:
    """Warn about the shared e-mail and ask whether to set the flag anyway."""
    from patientportal_cli import prompts
    from patientportal_cli.errors import Refused
    from patientportal_cli.services.shared_email import warning

    output.warn(warning(count))
    if not prompts.confirm(
        "Whoever reads that mailbox would receive this patient's security codes. Set the "
        "no-MitID flag anyway?",
        flag="--confirm-shared-email",
    ):
        raise Refused("Not confirmed: the flag was not set.")


def _already_flagged(facts: PatientFacts) -> str:
    return (
        f"{facts.label} already has the no-MitID flag at clinic {facts.clinic_code}; "
        "nothing changed."
    )


def _confirm_email_owner(output: Output, facts: PatientFacts) -> str:
    """Show the address the codes go to and ask who it belongs to; the address confirmed."""
    from patientportal_cli import prompts
    from patientportal_cli.errors import Refused

    output.message(f"Patient: {facts.label}")
    output.message(f"E-mail address on record: {facts.email}")
    if facts.record_email and facts.record_email.casefold() != facts.email.casefold():
        output.message(
            f"(The clinic's record card has {facts.record_email}; the security "
            "codes go to the address above.)"
        )
    if not prompts.confirm(
        "Does this e-mail address belong to the patient or to a person with power "
        "of attorney (fuldmagt) to act on the patient's behalf?",
        flag="--confirm-email-owner",
    ):
        raise Refused("Not confirmed: the flag was not set.")
    return facts.email


@command(app, "clear")
def clear(
    cpr: CprArg,
    clinic_code: ClinicOpt = None,
) -> None:
    """Remove the flag: the patient must verify with MitID at the next login here (R7)."""
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.services import nomitid

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        facts, changed = nomitid.clear_flag(session, actor=actor, cpr=cpr)
    who = facts.label
    if not changed:
        output.message(
            f"{who} does not have the no-MitID flag at clinic {facts.clinic_code}; nothing changed."
        )
        return
    output.success(
        f"No-MitID flag removed for {who} at clinic {facts.clinic_code}: MitID is "
        "required at the next login here."
    )
    send_queued(output, clinic=actor.clinic_code)


@command(app, "list")
def list_(
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """This clinic's patients with the flag, with who set it and the address confirmed."""
    from patientportal_cli.services import nomitid

    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        flagged = nomitid.list_flagged(session, actor=actor, fmt=fmt.value)
        output.rows(
            [patient.as_row() for patient in flagged],
            [
                ("cpr", "CPR"),
                ("name", "Name"),
                ("email", "E-mail"),
                ("set_at", "Set"),
                ("set_by", "By"),
                ("email_owner_confirmed_email", "E-mail confirmed"),
            ],
            empty="No patients with the no-MitID flag.",
        )
