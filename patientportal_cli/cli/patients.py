"""patient: create, link, unlink, show, list, invite, unlock, access, log, update,
reset-password (the guardian and proxy groups are in cli/delegations.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patientportal_cli.cli.common import (
    ClinicOpt,
    DryRunOpt,
    Fmt,
    OutputOpt,
    YesOpt,
    command,
    out,
    staff_session,
)
from patientportal_cli.cli.completion import complete_services

if TYPE_CHECKING:
    from patientportal_cli.output import Output
    from patientportal_cli.services.patient_account import UpdateResult
    from patientportal_cli.services.patients import CareFilter, LinkResult, PatientListing

app = typer.Typer(
    help="Patients' portal users and their link to this clinic.", no_args_is_help=True
)

CprArg = Annotated[
    str, typer.Argument(metavar="CPR", help="CPR number: DDMMYY-SSSS, DDMMYY SSSS or DDMMYYSSSS.")
]
ServicesOpt = Annotated[
    str | None,
    typer.Option(
        "--services",
        help="Services to grant, comma-separated (e-consultation, booking, "
        "prescription-renewal); default: all the clinic offers.",
        autocompletion=complete_services,
    ),
]
NoMitidOpt = Annotated[
    bool,
    typer.Option(
        "--no-mitid",
        help="Patienten har ikke MitID: allow two-factor login here (needs --confirm-email-owner).",
    ),
]
ConfirmOwnerOpt = Annotated[
    bool,
    typer.Option(
        "--confirm-email-owner",
        help="Confirm that the e-mail address belongs to the patient or to a person with "
        "power of attorney (fuldmagt); needed with --no-mitid.",
    ),
]

LIST_COLUMNS = [
    ("cpr", "CPR"),
    ("name", "Name"),
    ("email", "E-mail"),
    ("activated", "Activated"),
    ("status", "Status"),
    ("no_mitid", "No MitID"),
    ("services", "Services"),
]


def _confirm_owner(
    email: str | None, *, why: str = "the no-MitID flag needs that confirmation"
) -> None:
    """Ask on a terminal that ``email`` belongs to the patient (or exit 2 without one);
    ``email`` None: the address was just typed (not shown: see ``_typed_email``)."""
    from patientportal_cli import prompts
    from patientportal_cli.errors import Refused
    from patientportal_cli.services import nomitid

    if not prompts.interactive():
        raise nomitid.confirmation_missing()
    if email is not None:
        out().message(f"E-mail address on record: {email}")
    ok = prompts.confirm(
        "Does this e-mail address belong to the patient or to a person with power of "
        "attorney (fuldmagt) to act on the patient's behalf?",
        flag="--confirm-email-owner",
    )
    if not ok:
        raise Refused(f"Not confirmed: {why}. Nothing changed.")


def _report_link(output: Output, result: LinkResult) -> None:
    from patientportal_cli.services.masking import mask_cpr

    cpr = mask_cpr(result.cpr)
    who = f"{cpr} ({result.name})" if result.name is not None else cpr
    would = "Dry run: would have " if result.dry_run else ""
    services = ", ".join(result.services) or "none"
    if result.user_created:
        output.success(
            f"{would}{'c' if would else 'C'}reated portal user {who} and linked "
            f"it to clinic {result.clinic_code} (services: {services})."
        )
    else:
        output.success(
            f"{would}{'l' if would else 'L'}inked the existing portal user {who} "
            f"to clinic {result.clinic_code} (services: {services})."
        )
    # the stored values are not told (see services/patients.py, "Disclosure")
    labels = {"name": "name", "email": "e-mail"}
    for key in result.differences:
        output.warn(
            f"the {labels.get(key, key)} given differs from the one on the existing portal "
            "user; it was not changed."
        )
    if result.no_mitid:
        address = f"the e-mail {result.email}" if result.email else "the portal user's e-mail"
        flag = "The no-MitID flag would be set" if result.dry_run else "No-MitID flag set"
        confirmed = "would be recorded as confirmed" if result.dry_run else "is confirmed"
        output.message(
            f"{flag}; {address} {confirmed} to belong to the "
            "patient or to a person with power of attorney."
        )
    if result.shared_email:
        from patientportal_cli.services import shared_email

        output.warn(shared_email.warning(result.shared_email))
    if result.invited and result.dry_run:
        output.message(f"An activation code would be e-mailed to {result.email} (valid 7 days).")
    elif result.invited:
        output.message(f"Activation code e-mailed to {result.email} (valid 7 days).")
    elif result.user_created and result.dry_run:
        output.message(
            "No activation e-mail would be sent; send one later with "
            "`patientportal patient invite CPR`."
        )
    elif result.user_created:
        output.message(
            "No activation e-mail sent; send one with `patientportal patient invite CPR`."
        )
    if result.dry_run:
        output.message("Nothing was changed.")


@command(app, "create")
def create(
    cpr: CprArg,
    name: Annotated[str | None, typer.Option("--name", help="The patient's name.")] = None,
    email: Annotated[str | None, typer.Option("--email", help="The patient's e-mail.")] = None,
    no_mitid: NoMitidOpt = False,
    confirm_email_owner: ConfirmOwnerOpt = False,
    services: ServicesOpt = None,
    no_invite: Annotated[
        bool, typer.Option("--no-invite", help="Do not e-mail an activation code.")
    ] = False,
    dry_run: DryRunOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Create the patient's portal user and link it to this clinic (R1, R8).

    A CPR number that already has a portal user is linked, never created twice; a
    different name or e-mail is reported, not overwritten. A new user gets an activation
    code by e-mail (unless --no-invite). --no-mitid sets "Patienten har ikke MitID" in
    the same step and needs --confirm-email-owner (asked on a terminal).
    """
    from patientportal_cli import prompts
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.services import catalog, patients
    from patientportal_cli.services.contact import clean_name, normalize_email
    from patientportal_cli.services.cpr import normalize_cpr

    # check what was given before asking for what was not
    number = normalize_cpr(cpr)
    if name is not None:
        clean_name(name)
    if email is not None:
        normalize_email(email)
    if services is not None:
        catalog.parse_services(services)
    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        session.rollback()  # hold no write lock while a person answers prompts
        if name is None:
            name = prompts.text("Name:", flag="--name", validate=_valid(clean_name))
        if email is None:
            email = prompts.text("E-mail:", flag="--email", validate=_valid(normalize_email))
        if no_mitid and not confirm_email_owner:
            _confirm_owner(normalize_email(email))
            confirm_email_owner = True
        result = patients.create(
            session,
            actor=actor,
            cpr=number,
            name=name,
            email=email,
            services=services,
            no_mitid=no_mitid,
            email_owner_confirmed=confirm_email_owner,
            invite=not no_invite,
            dry_run=dry_run,
        )
    _report_link(output, result)
    if not dry_run:
        send_queued(output, clinic=actor.clinic_code)


def _valid(check: Any) -> Any:
    """A questionary validator from a service check (its message, or True)."""
    from patientportal_cli.errors import InvalidInput

    def validate(value: str) -> bool | str:
        try:
            check(value)
        except InvalidInput as exc:
            return str(exc)
        return True

    return validate


def _typed_email() -> str:
    """The patient's e-mail, typed by the staff member for the no-MitID confirmation: the
    address on a user that is not linked here yet is not shown (the link checks it)."""
    from patientportal_cli import prompts
    from patientportal_cli.services import nomitid
    from patientportal_cli.services.contact import normalize_email

    if not prompts.interactive():
        raise nomitid.confirmation_missing()
    return prompts.text(
        "The patient's e-mail address (must be the portal user's):",
        flag="--confirm-email-owner",
        validate=_valid(normalize_email),
    )


@command(app, "link")
def link(
    cpr: CprArg,
    services: ServicesOpt = None,
    no_mitid: NoMitidOpt = False,
    confirm_email_owner: ConfirmOwnerOpt = False,
    dry_run: DryRunOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Link an existing portal user to this clinic (no user yet: use `patient create`).

    Before the link nothing of the user is shown (it is another clinic's patient). With
    --no-mitid on a terminal you type the patient's e-mail address and confirm it; a
    different address on the portal user is refused without showing it.
    """
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.services import patients

    output = out()
    typed: str | None = None
    with staff_session(output, clinic=clinic_code) as (session, actor):
        if no_mitid and not confirm_email_owner:
            patients.existing_user(session, actor=actor, cpr=cpr)
            typed = _typed_email()
            _confirm_owner(None)
            confirm_email_owner = True
        result = patients.link(
            session,
            actor=actor,
            cpr=cpr,
            services=services,
            no_mitid=no_mitid,
            email_owner_confirmed=confirm_email_owner,
            email=typed,
            dry_run=dry_run,
        )
    _report_link(output, result)
    if not dry_run:
        send_queued(output, clinic=actor.clinic_code)


@command(app, "unlink")
def unlink(
    cpr: CprArg,
    yes: YesOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Remove the patient's link to this clinic, with its no-MitID flag and services.

    The portal user stays (other clinics may use it). Asks for confirmation unless --yes.
    """
    from patientportal_cli import prompts
    from patientportal_cli.errors import Refused
    from patientportal_cli.services import patients

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        if not yes:
            facts = patients.summary(session, actor=actor, cpr=cpr)
            if not prompts.confirm(
                f"Unlink {facts.label} from clinic "
                f"{facts.clinic_code}? The flag and services here go with the link; the "
                "portal user stays.",
                flag="--yes",
            ):
                raise Refused("Not unlinked; nothing changed.")
        facts = patients.unlink(session, actor=actor, cpr=cpr)
    output.success(
        f"Unlinked {facts.label} from clinic {facts.clinic_code}; the portal user stays."
    )


@command(app, "show")
def show(
    cpr: CprArg,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """The patient's portal user and link to this clinic (the look-up is audited), and
    the guardians and proxies the patient has or is here, with their last day."""
    from patientportal_cli.cli.delegations import DELEGATION_COLUMNS
    from patientportal_cli.services import delegations

    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        view = delegations.show(session, actor=actor, cpr=cpr, fmt=fmt.value)
        record = view.record.as_row()
        acting = [d.as_row() for d in view.delegations]
        if fmt != Fmt.table and acting:
            record["delegations"] = acting  # present only when there are any
        output.record(record, title=f"Patient at {actor.clinic_code}")
        if fmt == Fmt.table and acting:
            output.rows(acting, DELEGATION_COLUMNS, title="Guardians and proxies")


SearchOpt = Annotated[
    str | None,
    typer.Option("--search", help="Part of the name, e-mail or CPR number."),
]
OnlyNoMitidOpt = Annotated[
    bool, typer.Option("--no-mitid", help="Only patients with the no-MitID flag.")
]
PageLimitOpt = Annotated[
    int | None,
    typer.Option(
        "--limit",
        min=1,
        help="At most N patients (a page); prints the --after value for the next one.",
    ),
]
AfterOpt = Annotated[
    str | None,
    typer.Option(
        "--after", metavar="CURSOR", help="Continue after the page that printed this value."
    ),
]
NeverActivatedOpt = Annotated[
    bool,
    typer.Option("--never-activated", help="Only patients who have not chosen a password."),
]
InactiveSinceOpt = Annotated[
    str | None,
    typer.Option(
        "--inactive-since",
        metavar="DATE",
        help="Only patients with no portal login since DATE (YYYY-MM-DD, Copenhagen), "
        "or none ever and created before it.",
    ),
]
LockedOpt = Annotated[
    bool, typer.Option("--locked", help="Only patients locked after failed logins.")
]
DeactivatedOpt = Annotated[
    bool, typer.Option("--deactivated", help="Only deactivated (not active) patients.")
]
SharedEmailOpt = Annotated[
    bool,
    typer.Option(
        "--shared-email",
        help="Only patients whose e-mail another patient here also has.",
    ),
]


@command(app, "list")
def list_(
    search: SearchOpt = None,
    no_mitid: OnlyNoMitidOpt = False,
    limit: PageLimitOpt = None,
    after: AfterOpt = None,
    never_activated: NeverActivatedOpt = False,
    inactive_since: InactiveSinceOpt = None,
    locked: LockedOpt = False,
    deactivated: DeactivatedOpt = False,
    shared_email: SharedEmailOpt = False,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """This clinic's patients, ordered by name; -o csv/json stream (any number of rows).

    The filters combine (each must hold). The listing is audited as one event (how many
    patients, the filters, the format).
    """
    from patientportal_cli.services import patients

    care = _care_filter(
        never_activated=never_activated,
        inactive_since=inactive_since,
        locked=locked,
        deactivated=deactivated,
        shared_email=shared_email,
    )
    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        listing = patients.list_patients(
            session,
            actor=actor,
            search=search,
            no_mitid_only=no_mitid,
            fmt=fmt.value,
            limit=limit,
            after=after,
            care=care,
        )
        _stream_listing(output, listing)
    if listing.next_after is not None:
        output.message(f"More patients: --after {listing.next_after}")


def _care_filter(
    *,
    never_activated: bool,
    inactive_since: str | None,
    locked: bool,
    deactivated: bool,
    shared_email: bool,
) -> CareFilter:
    """The care filters of `patient list` (--inactive-since parsed as a Copenhagen day)."""
    from patientportal_cli.services import patients

    return patients.CareFilter(
        never_activated=never_activated,
        inactive_since=(
            patients.parse_day(inactive_since, flag="--inactive-since")
            if inactive_since is not None
            else None
        ),
        locked=locked,
        deactivated=deactivated,
        shared_email=shared_email,
    )


def _stream_listing(output: Output, listing: PatientListing) -> None:
    """Stream the rows, then finish the listing (its one audit event) even if output stopped."""
    try:
        output.stream_rows(
            (row.as_row() for row in listing), LIST_COLUMNS, empty="No patients found."
        )
    finally:
        listing.finish()


@command(app, "invite")
def invite(
    cpr: CprArg,
    letter: Annotated[
        Path | None,
        typer.Option(
            "--letter",
            help="Write the code in a printed letter (Danish, 0600) instead of e-mailing it.",
        ),
    ] = None,
    clinic_code: ClinicOpt = None,
) -> None:
    """E-mail a new activation code (the older one stops working); --letter FILE writes
    it in a letter to print instead.

    Only for a patient who has not chosen a password yet; it is not a password reset.
    """
    if letter is not None:
        from patientportal_cli.cli.gdpr import invite_letter

        invite_letter(cpr, letter, clinic_code)
        return
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.services import patients

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        facts = patients.invite(session, actor=actor, cpr=cpr)
    output.success(
        f"New activation code e-mailed to {facts.email} for {facts.label}; "
        "an older code no longer works."
    )
    send_queued(output, clinic=actor.clinic_code)


@command(app, "unlock")
def unlock(
    cpr: CprArg,
    clinic_code: ClinicOpt = None,
) -> None:
    """Lift the two-factor lock after too many wrong passwords (and reset the count)."""
    from patientportal_cli.services import patients

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        facts, changed = patients.unlock(session, actor=actor, cpr=cpr)
    who = facts.label
    if changed:
        output.success(f"Unlocked {who}: the failed-login count is reset.")
    else:
        output.message(f"{who} is not locked; nothing changed.")


@command(app, "access")
def access(
    cpr: CprArg,
    for_: Annotated[
        str | None,
        typer.Option(
            "--for",
            metavar="PATIENT_CPR",
            help="Instead: can CPR act for this patient here (guardian or proxy), and until when?",
        ),
    ] = None,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Which login methods work for the patient at this clinic now, and why not, with the
    guardians and proxies the patient has or is here (the look-up is audited).

    With --for PATIENT_CPR: whether CPR may act for that patient here now, as guardian or
    proxy, through which day and for which services.
    """
    from patientportal_cli.cli.delegations import DELEGATION_COLUMNS
    from patientportal_cli.services import delegations

    output = out(fmt)
    if for_ is not None:
        with staff_session(output, clinic=clinic_code) as (session, actor):
            answer = delegations.can_act(session, actor=actor, holder_cpr=cpr, patient_cpr=for_)
            output.record(answer.as_row(), title=f"Acting for someone at {actor.clinic_code}")
        return
    with staff_session(output, clinic=clinic_code) as (session, actor):
        view = delegations.access(session, actor=actor, cpr=cpr)
        result = view.access
        acting = [d.as_row() for d in view.delegations]
        if fmt == Fmt.json:
            record = result.as_row()
            if acting:
                record["delegations"] = acting  # present only when there are any
            output.record(record)
            return
        rows = [
            {"method": label, **decision.as_dict()}
            for decision, label in ((result.mitid, "MitID"), (result.two_factor, "two-factor"))
        ]
        output.rows(rows, [("method", "Method"), ("allowed", "Allowed"), ("reason", "Reason")])
        if acting and fmt == Fmt.table:
            output.rows(acting, DELEGATION_COLUMNS, title="Guardians and proxies")


LOG_COLUMNS = [
    ("at", "When"),
    ("actor", "Who"),
    ("action", "Action"),
    ("details", "Details"),
]


@command(app, "log")
def log(
    cpr: CprArg,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Who at this clinic looked at or changed the patient, and when (newest first).

    Look-ups (show, access, this log, searches that listed the patient, revealed CPR
    numbers) and changes, from the audit log. Reading the log is logged too.
    """
    from patientportal_cli.services import accesslog
    from patientportal_cli.services.cpr import normalize_cpr
    from patientportal_cli.services.masking import mask_cpr

    number = normalize_cpr(cpr)
    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        entries = accesslog.patient_log(session, actor=actor, cpr=number, fmt=fmt.value)
        output.rows(
            [entry.as_row() for entry in entries],
            LOG_COLUMNS,
            title=f"Log of {mask_cpr(number)} at {actor.clinic_code}",
            empty="Nothing in the log yet.",
        )


@command(app, "update")
def update(
    cpr: CprArg,
    name: Annotated[str | None, typer.Option("--name", help="The patient's new name.")] = None,
    email: Annotated[
        str | None, typer.Option("--email", help="The patient's new e-mail address.")
    ] = None,
    confirm_email_owner: Annotated[
        bool,
        typer.Option(
            "--confirm-email-owner",
            help="Confirm that the new e-mail address belongs to the patient or to a person "
            "with power of attorney (fuldmagt); needed when the no-MitID flag is set here.",
        ),
    ] = False,
    dry_run: DryRunOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Correct the patient's name and/or e-mail (the portal user all clinics share).

    A new e-mail is vouched for by the clinic: security codes go to it from now on, codes
    sent to the old address stop working, and the old address gets a notice. With the
    no-MitID flag set here, the new address needs --confirm-email-owner (asked on a
    terminal); a no-MitID flag at another clinic confirmed the old address and is removed
    there.
    """
    from patientportal_cli import prompts
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.services import patient_account, patients
    from patientportal_cli.services.cpr import normalize_cpr

    number = normalize_cpr(cpr)
    name, email = patient_account.check_update(name, email)
    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        if email is not None and not confirm_email_owner and not dry_run:
            facts = patients.summary(session, actor=actor, cpr=number)
            if facts.no_mitid and facts.email.casefold() != email.casefold():
                if not prompts.interactive():
                    from patientportal_cli.services import nomitid

                    raise nomitid.confirmation_missing()
                output.message(
                    f"The no-MitID flag is set at clinic {facts.clinic_code}: security "
                    f"codes will go to the new address {email}."
                )
                _confirm_owner(None, why="the no-MitID flag here needs it for the new address")
                confirm_email_owner = True
        result = patient_account.update(
            session,
            actor=actor,
            cpr=number,
            name=name,
            email=email,
            email_owner_confirmed=confirm_email_owner,
            dry_run=dry_run,
        )
    _report_update(output, result, actor.username)
    if result.changed and not dry_run:
        send_queued(output, clinic=actor.clinic_code)


def _report_update(output: Output, result: UpdateResult, username: str) -> None:
    from patientportal_cli.services.masking import mask_cpr

    cpr = mask_cpr(result.cpr)
    if not result.changed:
        output.message(f"{cpr} ({result.name}) already has that name and e-mail; nothing changed.")
        return
    parts = []
    if "email" in result.changed:
        parts.append(f"e-mail {result.old_email} -> {result.email}")
    if "name" in result.changed:
        parts.append(f"name {result.old_name} -> {result.name}")
    lead = "Dry run: would have updated" if result.dry_run else "Updated"
    output.success(f"{lead} {cpr} at clinic {result.clinic_code}: {'; '.join(parts)}.")
    if result.shared_email:
        from patientportal_cli.services import shared_email

        output.warn(shared_email.warning(result.shared_email))
    if "email" in result.changed:
        if result.dry_run:
            if result.no_mitid_here:
                output.message(
                    f"The no-MitID flag is set at clinic {result.clinic_code}: the change "
                    "needs --confirm-email-owner (asked on a terminal)."
                )
            output.message(
                f"Would e-mail a notice to the old address {result.old_email}; codes sent "
                "there would stop working."
            )
            output.message(
                "A no-MitID flag the patient may have at other clinics confirmed the old "
                "address: it would be removed there until those clinics confirm the new one."
            )
        else:
            if result.email_owner_confirmed:
                output.message(
                    f"Recorded: {username} confirmed that {result.email} belongs to the "
                    "patient or to a person with power of attorney."
                )
            output.message(
                f"Notice e-mailed to the old address {result.old_email}; activation and "
                "security codes sent there no longer work."
            )
            output.message(
                "A no-MitID flag the patient may have at other clinics confirmed the old "
                "address: it is removed there until those clinics confirm the new one."
            )
            if not result.activated:
                output.message(
                    "The patient has not chosen a password yet: send an activation code to "
                    "the new address with `patientportal patient invite CPR`."
                )
    if result.dry_run:
        output.message("Nothing was changed.")


@command(app, "reset-password")
def reset_password(
    cpr: CprArg,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Clear the patient's password and e-mail a fresh activation code.

    The old password stops working at once; open activation and security codes end and
    any two-factor lock is lifted. The code goes to the e-mail on record (correct it
    first with `patient update` if it is wrong). Asks for confirmation unless --yes.
    """
    from patientportal_cli import prompts
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.errors import MissingInput, Refused
    from patientportal_cli.services import patient_account, patients
    from patientportal_cli.services.cpr import normalize_cpr
    from patientportal_cli.services.masking import patient_label

    number = normalize_cpr(cpr)
    if not yes and not dry_run and not prompts.interactive():
        raise MissingInput("--yes", "confirmation")
    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        if not yes and not dry_run:
            facts = patients.summary(session, actor=actor, cpr=number)
            if not prompts.confirm(
                f"Reset the password of {facts.label}? The "
                "password stops working at once and a new activation code is e-mailed to "
                f"{facts.email}.",
                flag="--yes",
            ):
                raise Refused("Not reset; nothing changed.")
        result = patient_account.reset_password(session, actor=actor, cpr=number, dry_run=dry_run)
    who = patient_label(result.cpr, result.name)
    if result.dry_run:
        output.success(
            f"Dry run: would have reset the password of {who}: "
            + ("the password would stop working, " if result.had_password else "")
            + "open activation and security codes would end and any lock would be lifted."
        )
        output.message(
            f"Would e-mail a new activation code to {result.email} "
            f"(valid {result.valid_days} days)."
        )
        output.message("Nothing was changed.")
        return
    output.success(
        f"Password reset for {who}: "
        + (
            "the old password no longer works; "
            if result.had_password
            else "no password had been chosen yet; "
        )
        + "open activation and security codes are ended and any lock is lifted."
    )
    output.message(
        f"New activation code e-mailed to {result.email} (valid {result.valid_days} days)."
    )
    send_queued(output, clinic=actor.clinic_code)
