"""patient change-cpr: a person's CPR number changes (services/cpr_change.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from patientportal_cli.cli.common import ClinicOpt, DryRunOpt, YesOpt, out, staff_session

if TYPE_CHECKING:
    from patientportal_cli.output import Output
    from patientportal_cli.services.cpr_change import Change

OldArg = Annotated[str, typer.Argument(metavar="OLD", help="The patient's CPR number until now.")]
NewArg = Annotated[str, typer.Argument(metavar="NEW", help="The patient's new CPR number.")]
MergeOpt = Annotated[
    bool,
    typer.Option(
        "--merge",
        help="NEW already has a portal user and is the same person: unite the two accounts "
        "(every conflict is reported first; nothing changes while there is one).",
    ),
]


def change_cpr(
    old: OldArg,
    new: NewArg,
    merge: MergeOpt = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Move a patient of this clinic to a new CPR number (CPR-kontoret's change).

    The account moves at every clinic the patient uses, with its links, no-MitID flags,
    services, guardianships and proxies, pending registration requests, link history
    and failed-login count, in one transaction with one audit event. Afterwards
    `patient log` finds the patient's whole history by either number. Only an admin or
    a doctor may do it. Asks for confirmation unless --yes.
    """
    from patientportal_cli import prompts
    from patientportal_cli.errors import MissingInput, Refused
    from patientportal_cli.services import cpr_change, patients
    from patientportal_cli.services.cpr import normalize_cpr
    from patientportal_cli.services.masking import mask_cpr

    old_number, new_number = normalize_cpr(old), normalize_cpr(new)
    if not yes and not dry_run and not prompts.interactive():
        raise MissingInput("--yes", "confirmation")
    output = out()
    what = "Merge" if merge else "Change"
    with staff_session(output, clinic=clinic_code) as (session, actor):
        if not yes and not dry_run:
            facts = patients.summary(session, actor=actor, cpr=old_number)
            if not prompts.confirm(
                f"{what} {facts.label}: the CPR number becomes {mask_cpr(new_number)} at "
                "every clinic the patient uses?",
                flag="--yes",
            ):
                raise Refused("Not confirmed; nothing was changed.")
        try:
            change = cpr_change.change_cpr(
                session,
                actor=actor,
                old_cpr=old_number,
                new_cpr=new_number,
                merge=merge,
                dry_run=dry_run,
            )
        except cpr_change.MergeConflicts as exc:
            for reason in exc.reasons:
                output.message(f"  conflict: {reason}")
            raise
    _report(output, change)


def _report(output: Output, change: Change) -> None:
    from patientportal_cli.services.cpr_change import THROTTLE_MOVED
    from patientportal_cli.services.masking import mask_cpr

    old, new = mask_cpr(change.old_cpr), mask_cpr(change.new_cpr)
    would = "would be " if change.dry_run else ""
    if change.merged:
        head = f"{old} {would}merged into {new} ({change.name}): one account"
    else:
        head = f"CPR number {old} {would}changed to {new} ({change.name})"
    prefix = "Dry run: " if change.dry_run else ""
    output.success(f"{prefix}{head}, at every clinic the patient uses.")
    moved = "would move" if change.dry_run else "moved"
    if change.merged:
        output.message(
            f"Links {moved} to the kept account: {change.links_moved}; guardianships and "
            f"proxies {moved}: {change.delegations_moved}."
        )
    output.message(
        f"Pending registration requests {moved}: {change.requests_moved}; link history rows "
        f"{moved}: {change.history_moved}."
    )
    if change.throttle == THROTTLE_MOVED:
        output.message(f"The failed-login count and any lock {moved} to the new number.")
    else:
        output.message("No failed logins or lock on the old number: nothing to move.")
    if change.dry_run:
        output.message("Nothing was changed.")
    else:
        output.message(
            f"`patientportal patient log` finds the patient's history by {old} and by {new}."
        )
