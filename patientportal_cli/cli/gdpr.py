"""patient export | erase, and the printed activation letter of `patient invite --letter`
(registered on the patient group in cli/app.py; the letter is called from cli/patients.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from patientportal_cli.cli.common import ClinicOpt, DryRunOpt, Fmt, OutputOpt, YesOpt, out

CprArg = Annotated[
    str, typer.Argument(metavar="CPR", help="CPR number: DDMMYY-SSSS, DDMMYY SSSS or DDMMYYSSSS.")
]


def export(
    cpr: CprArg,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Everything the tool holds about a patient of this clinic (GDPR art. 15): -o json
    is the machine-readable document; the table is a summary. Audited; CPR numbers
    masked unless --show-cpr."""
    from patientportal_cli.cli.common import staff_session
    from patientportal_cli.services import gdpr

    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        document = gdpr.export(session, actor=actor, cpr=cpr, fmt=fmt.value)
        if fmt == Fmt.json:
            output.record(document)
        else:
            output.record(_summary(document), title="Data held about the patient (GDPR art. 15)")
    if fmt == Fmt.table:
        output.message("The whole document: `patientportal patient export CPR -o json`.")


def _summary(document: dict[str, Any]) -> dict[str, Any]:
    person, link = document["person"], document["link"]
    flags = []
    if link["no_mitid"]:
        flags.append("no MitID")
    if link["email_owner_confirmed_at"]:
        flags.append("e-mail owner confirmed")
    return {
        "cpr": person["cpr"],
        "name": person["name"],
        "email": person["email"],
        "password_set": person["password_set"],
        "created_at": person["created_at"],
        "last_login_at": person["last_login_at"],
        "deactivated": person["deactivated_reason"] or "no",
        "clinic": document["clinic"]["code"],
        "linked_at": link["linked_at"],
        "services": link["services"],
        "flags": flags or "none",
        "registration_requests": len(document["registration_requests"]),
        "delegations": len(document["delegations"]),
        "mail": len(document["mail"]),
        "access_log": len(document["access_log"]),
    }


def erase(
    cpr: CprArg,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Erase a person no clinic links any more (GDPR art. 17): the account and every row
    with their data go, and the audit events about them are redacted (`audit verify`
    still passes). Admins of a clinic that once linked the person. Asks unless --yes."""
    from patientportal_cli import prompts
    from patientportal_cli.cli.common import staff_session
    from patientportal_cli.errors import Refused
    from patientportal_cli.services import gdpr
    from patientportal_cli.services.masking import mask_cpr

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        plan = gdpr.erase(session, actor=actor, cpr=cpr, dry_run=True)
        if dry_run:
            _report(output, plan)
            return
        if not yes and not prompts.confirm(
            f"Erase {mask_cpr(plan.cpr)}: remove {plan.total_rows} rows and redact "
            f"{plan.events} audit events? This cannot be undone.",
            flag="--yes",
        ):
            raise Refused("Nothing erased.")
        result = gdpr.erase(session, actor=actor, cpr=cpr)
    _report(output, result)


def _report(output: Any, result: Any) -> None:
    from patientportal_cli.services.masking import mask_cpr

    rows = ", ".join(f"{table} {n}" for table, n in result.rows.items() if n) or "none"
    if result.dry_run:
        output.message(
            f"Would erase {mask_cpr(result.cpr)}: would remove {result.total_rows} rows "
            f"({rows}) and redact {result.events} audit events. Nothing was changed."
        )
    else:
        output.success(
            f"Erased {mask_cpr(result.cpr)}: removed {result.total_rows} rows ({rows}) and "
            f"redacted {result.events} audit events."
        )
    if result.legacy_events:
        output.warn(
            f"{result.legacy_events} audit events from before schema 0005 name the person and "
            "cannot be redacted; `audit prune` removes them when they pass the retention period."
        )


def invite_letter(cpr: str, letter: Path, clinic_code: str | None) -> None:
    """`patient invite CPR --letter FILE`: the activation code in a printed letter (0600)
    instead of an e-mail."""
    from patientportal_cli import files
    from patientportal_cli.cli.common import staff_session
    from patientportal_cli.services import letter as letter_service

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        result = letter_service.invite_by_letter(
            session, actor=actor, cpr=cpr, write=lambda text: files.write_private(letter, text)
        )
    output.success(
        f"Wrote an activation letter for {result.facts.label} to {letter} (0600): print it and "
        f"delete the file. Its code expires {result.expires_at:%Y-%m-%d %H:%M} UTC; an older "
        "code no longer works, and no e-mail is sent."
    )
