"""patient reconcile: the clinic's patient list as the source of truth, in two phases
(services/reconcile.py); file handling, progress bar and --report as `patient import`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patientportal_cli.cli.common import (
    ClinicOpt,
    DryRunOpt,
    Fmt,
    OutputOpt,
    YesOpt,
    out,
    staff_session,
)
from patientportal_cli.cli.patient_import import (
    DelimiterOpt,
    EncodingOpt,
    _progress,
    _write_report,
    check_report_path,
    rejected_text,
)

if TYPE_CHECKING:
    from sqlmodel import Session

    from patientportal_cli.output import Output
    from patientportal_cli.services.auth import Actor
    from patientportal_cli.services.reconcile import Applied, Plan

FileArg = Annotated[
    str,
    typer.Argument(
        metavar="FILE|-",
        help="The clinic's patient list: CSV with a cpr column and optionally a status "
        "column (CPR status codes); - reads standard input.",
    ),
]

ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report",
        help="Write the rows to look at (line, row, reason) as CSV here: rejected and "
        "reported rows, then the patients whose link ends (line 0).",
    ),
]

PLAN_LINES = [
    ("on_list", "on the list (nothing to do)"),
    ("deceased", "deceased (90): deactivate"),
    ("emigrated", "emigrated (80): deactivate"),
    ("already", "already deactivated"),
    ("left_clinic", "not on the list: left-clinic"),
    ("held", "not on the list: kept (see below)"),
    ("not_here", "not a patient here (reported)"),
    ("review", "to review (reported)"),
    ("duplicate", "repeated rows (same status)"),
    ("rejected", "rejected"),
]


def reconcile(
    file: FileArg,
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    report: ReportOpt = None,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Reconcile this clinic's patients with its patient list (the region's
    patientfortegnelse): a CSV file with a cpr column and optionally a status column.

    Phase one reads every row and prints the plan: patients linked here but not on the
    list leave the clinic (left-clinic: this clinic's link ends); status 90 (deceased)
    and 80 (emigrated) deactivate the account; rows of people who are not patients here
    and statuses to review (20, 30, 50, 60, 70) are reported; invalid rows are rejected.
    --dry-run stops there. Phase two asks for confirmation (or --yes) and applies the
    changes in batches, each batch in one transaction (a killed run leaves whole batches
    done; running it again finishes the rest). Running the same list again changes nothing. Exit
    code 0: done or nothing to do; 3: some rows were rejected; 2: the file could not be
    read (or has no valid row).
    """
    from patientportal_cli import files
    from patientportal_cli.cli.common import home
    from patientportal_cli.errors import RowsRejected
    from patientportal_cli.services import reconcile as service
    from patientportal_cli.services.importing.reader import open_import

    output = out(fmt)
    if report is not None:
        check_report_path(report, file)  # before anything is read or written
    with files.spool(home()) as spool_dir:
        source = open_import(
            file,
            format="csv",
            encoding=encoding,
            delimiter=delimiter,
            spool_dir=spool_dir,
            layout=service.LAYOUT,
        )
        with source, staff_session(output, clinic=clinic_code) as (session, actor):
            for notice in source.notices:
                output.message("Note: " + notice)
            with _progress("Checking rows", None) as advance:
                plan = service.make_plan(session, actor=actor, source=source, on_progress=advance)
            _show_plan(output.message, plan)
            applied = _apply(output, session, actor, plan, dry_run=dry_run, yes=yes)
            if report is not None:
                _report_rows(output, report, plan)
            _summary(output, fmt, plan, applied, report, dry_run)
    if plan.counts.rejected:
        raise RowsRejected(rejected_text(plan.counts.rejected, report, dry_run))


def _apply(
    output: Output, session: Session, actor: Actor, plan: Plan, *, dry_run: bool, yes: bool
) -> Applied | None:
    """Phase two: confirm and apply the plan's changes (None: a dry run, or nothing to do)."""
    from patientportal_cli.services import reconcile as service

    if not dry_run and plan.counts.to_apply():
        _confirm(plan, yes)
        with _progress("Applying", plan.counts.to_apply()) as advance:
            applied = service.apply_plan(session, actor=actor, plan=plan, on_progress=advance)
        _show_applied(output.message, plan, applied)
        return applied
    if dry_run:
        output.message("Dry run: nothing was changed.")
    else:
        output.message(f"Nothing to change: the list agrees with clinic {plan.clinic_code}.")
    return None


def _report_rows(output: Output, report: Path, plan: Plan) -> None:
    """Write the rows to look at (--report) and say how many."""
    written = _write_report(report, plan)  # type: ignore[arg-type]
    output.message(f"Rows to look at written to {report}: {written}.")


def _confirm(plan: Plan, yes: bool) -> None:
    from patientportal_cli import prompts
    from patientportal_cli.errors import Refused

    if not yes and not prompts.confirm(
        f"Apply {plan.counts.to_apply()} change(s) at clinic {plan.clinic_code}?",
        flag="--yes",
    ):
        raise Refused("Not confirmed; nothing was changed.")


def _show_plan(say: Callable[[str], None], plan: Plan) -> None:
    from patientportal_cli.services.importing.reader import describe_delimiter

    source, counts = plan.source, plan.counts
    say(
        f"Reconcile plan for clinic {plan.clinic_code}: {source.name} (CSV, {source.encoding}, "
        f"{describe_delimiter(source.delimiter)}), {counts.rows} row(s); {counts.linked} "
        "patient(s) linked here"
    )
    width = max(len(label) for _, label in PLAN_LINES)
    for key, label in PLAN_LINES:
        if key == "held" and not counts.held:
            continue
        say(f"  {label:<{width}}  {getattr(counts, key):>8}")
    if counts.held:
        say(
            f"  {counts.held} patient(s) not on the list keep their link: the list has rows "
            "with unreadable CPR numbers, so it cannot tell who is missing. Fix those rows "
            "and run again."
        )
    if counts.rejected:
        first = plan.first_rejected()
        say(f"Rejected rows (first {len(first)} of {counts.rejected}):")
        for rejection in first:
            say(f"  line {rejection.line}: {rejection.reason}")
    reported = counts.not_here + counts.review
    if reported:
        first = plan.first_reported()
        say(f"Reported rows (first {len(first)} of {reported}):")
        for rejection in first:
            say(f"  line {rejection.line}: {rejection.reason}")


def _show_applied(say: Callable[[str], None], plan: Plan, applied: Applied) -> None:
    say(
        f"Done at clinic {plan.clinic_code}: {applied.deceased + applied.emigrated} "
        f"deactivated ({applied.deceased} deceased, {applied.emigrated} emigrated), "
        f"{applied.left_clinic} left the clinic, {applied.meanwhile} already done meanwhile."
    )
    if applied.delegations_ended:
        say(f"Guardianships and proxies ended: {applied.delegations_ended}.")


def _summary(
    output: Output,
    fmt: Fmt,
    plan: Plan,
    applied: Applied | None,
    report: Path | None,
    dry_run: bool,
) -> None:
    """The run as data, for --output json or csv (table: the messages say it all)."""
    if fmt == Fmt.table:
        return
    data: dict[str, Any] = {
        "file": plan.source.name,
        "clinic": plan.clinic_code,
        "dry_run": dry_run,
        "rows": plan.counts.rows,
        "plan": plan.counts.as_dict(),
        "applied": applied.as_dict() if applied else None,
        "rejected": plan.counts.rejected,
        "report": str(report) if report else None,
    }
    if fmt == Fmt.json:
        output._json(data)
        return
    flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
    flat.update({f"plan_{k}": v for k, v in data["plan"].items()})
    if applied is not None:
        flat.update({f"applied_{k}": v for k, v in data["applied"].items()})
    output.record(flat)
