"""patient import: many patients from a CSV or JSON Lines file, in two phases."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patientportal_cli import files
from patientportal_cli.cli.common import (
    ClinicOpt,
    DryRunOpt,
    Fmt,
    OutputOpt,
    YesOpt,
    home,
    out,
    staff_session,
)
from patientportal_cli.services.importing import BATCH_SIZE

if TYPE_CHECKING:
    from patientportal_cli.output import Output
    from patientportal_cli.services.importing.apply import Applied
    from patientportal_cli.services.importing.plan import Plan

PLAN_LINES = [
    ("create", "create user and link"),
    ("link", "link existing user"),
    ("set_flag", "set no-MitID flag"),
    ("already", "already linked (nothing to do)"),
    ("duplicate", "repeated rows (same data)"),
    ("rejected", "rejected"),
]


def import_(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help="CSV (as Excel writes it) or JSON Lines file; - reads standard input.",
        ),
    ],
    file_format: Annotated[
        str | None,
        typer.Option(
            "--format", help="csv or jsonl (default: from the file's extension, else csv)."
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding", help="Text encoding (default: UTF-8, with or without BOM, else cp1252)."
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option("--delimiter", help="CSV delimiter: ';', ',' or tab (default: detected)."),
    ] = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write the rejected rows (line, row, reason) as CSV here."),
    ] = None,
    no_invite: Annotated[
        bool, typer.Option("--no-invite", help="Do not e-mail activation codes to new users.")
    ] = False,
    no_send: Annotated[
        bool,
        typer.Option(
            "--no-send",
            help="Queue the e-mails but do not deliver them now (later: patientportal mail send).",
        ),
    ] = False,
    confirm_email_owner: Annotated[
        bool,
        typer.Option(
            "--confirm-email-owner",
            help="Confirm, for every row with the no-MitID flag, that the e-mail address "
            "belongs to the patient or to a person with power of attorney (fuldmagt).",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", hidden=True, min=1, max=50_000)
    ] = BATCH_SIZE,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Create or link many patients from a file (columns: cpr, name, email, and
    optionally no_mitid and services; Danish headers work too).

    Phase one reads and checks every row and prints the plan; --dry-run stops there.
    Phase two asks for confirmation (or --yes), then applies the rows in batches, each
    batch one transaction. Running the same file again changes nothing; a run that was
    interrupted finishes when run again. Exit code 0: every row applied or already there;
    3: some rows were rejected; 2: the file could not be read.
    """
    from patientportal_cli import prompts
    from patientportal_cli.errors import Refused, RowsRejected
    from patientportal_cli.services.importing import apply as apply_mod
    from patientportal_cli.services.importing import plan as plan_mod
    from patientportal_cli.services.importing.reader import open_import

    output = out(fmt)
    say = output.message
    if report is not None:
        check_report_path(report, file)  # before anything is read or written
    spool = ExitStack()  # HOME/spool/RUN: the spool of both phases, removed at the end
    spool_dir = spool.enter_context(files.spool(home()))
    try:
        source = open_import(
            file, format=file_format, encoding=encoding, delimiter=delimiter, spool_dir=spool_dir
        )
    except BaseException:
        spool.close()
        raise
    for notice in source.notices:
        output.message("Note: " + notice)
    applied: Applied | None = None
    with spool, source, staff_session(output, clinic=clinic_code) as (session, actor):
        clinic_id, _ = actor.require_clinic()
        ctx = plan_mod.context(
            session,
            clinic_id=clinic_id,
            actor=actor.username,
            confirm_email_owner=confirm_email_owner,
            invite=not no_invite,
            source=source.name,
        )
        with _progress("Checking rows", None) as advance:
            plan = plan_mod.make_plan(
                session,
                source=source,
                ctx=ctx,
                batch_size=batch_size,
                on_progress=advance,
                spool_dir=spool_dir,
            )
        with plan:
            counts = plan.counts
            if counts.rows == 0:
                output.message(f"{source.name} has a header but no rows: nothing to import.")
                _finish(output, fmt, plan, None, report, dry_run)
                return
            _show_plan(say, plan)
            todo = counts.to_apply()
            if dry_run or todo == 0:
                if todo == 0 and not dry_run:
                    say(f"Nothing to change: no row needs a change at clinic {ctx.clinic_code}.")
                if dry_run:
                    say("Dry run: nothing was changed.")
                _finish(output, fmt, plan, None, report, dry_run)
                if counts.rejected:
                    raise RowsRejected(_rejected_text(counts.rejected, report, dry_run))
                return
            if not yes and not prompts.confirm(
                f"Apply {todo} change(s) at clinic {ctx.clinic_code}?", flag="--yes"
            ):
                raise Refused("Not confirmed; nothing was imported.")
            with _progress("Importing", todo) as advance:
                applied = apply_mod.apply_plan(session, plan, on_progress=advance)
            _show_applied(say, plan, applied)
            _finish(output, fmt, plan, applied, report, dry_run)
            rejected = counts.rejected + applied.rejected
    if applied is None:  # pragma: no cover - every other path returned or raised
        return
    if applied.mails and not no_send:
        from patientportal_cli.cli.mail import send_queued

        sent, _failed = send_queued(output, clinic=ctx.clinic_code)
        if sent:
            output.message(f"E-mails sent: {sent}.")
    elif applied.mails:
        output.message(
            f"E-mails queued: {applied.mails}; deliver them with `patientportal mail send`."
        )
    if rejected:
        raise RowsRejected(_rejected_text(rejected, report, False))


def _rejected_text(count: int, report: Path | None, dry_run: bool) -> str:
    where = f"all are in {report}" if report else "--report FILE writes them all"
    if dry_run:
        return f"{count} row(s) would be rejected ({where})."
    return f"{count} row(s) rejected ({where}); the other rows were handled."


def _show_plan(say: Callable[[str], None], plan: Plan) -> None:
    source, counts = plan.source, plan.counts
    how = source.format.upper()
    if source.format == "csv":
        from patientportal_cli.services.importing.reader import describe_delimiter

        how += f", {source.encoding}, {describe_delimiter(source.delimiter)}"
    say(
        f"Import plan for clinic {plan.ctx.clinic_code}: {source.name} ({how}), {counts.rows} row(s)"
    )
    width = max(len(label) for _, label in PLAN_LINES)
    for key, label in PLAN_LINES:
        say(f"  {label:<{width}}  {getattr(counts, key):>8}")
    if counts.differences:
        say(
            f"  {counts.differences} existing user(s) have another name or e-mail in the file; "
            "the portal keeps theirs (R1)."
        )
    if counts.rejected:
        first = plan.first_rejections()
        say(f"Rejected rows (first {len(first)} of {counts.rejected}):")
        for rejection in first:
            say(f"  line {rejection.line}: {rejection.reason}")


def _show_applied(say: Callable[[str], None], plan: Plan, applied: Applied) -> None:
    say(
        f"Done at clinic {plan.ctx.clinic_code}: {applied.created} created, {applied.linked} "
        f"linked, {applied.flags_set} flag(s) set, {applied.already} already there."
    )
    if applied.invitations:
        say(f"Activation e-mails queued: {applied.invitations}.")
    if applied.rejected:
        say(f"Rejected while applying: {applied.rejected} (changed by someone else meanwhile).")


def _finish(
    output: Output,
    fmt: Fmt,
    plan: Plan,
    applied: Applied | None,
    report: Path | None,
    dry_run: bool,
) -> None:
    if report is not None:
        written = _write_report(report, plan)
        output.message(f"Rejected rows written to {report}: {written}.")
    if fmt == Fmt.table:
        return
    summary = _summary(plan, applied, report, dry_run)
    if fmt == Fmt.json:
        output._json(summary)
    else:
        flat = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
        flat.update({f"plan_{k}": v for k, v in summary["plan"].items()})
        if summary["applied"]:
            flat.update({f"applied_{k}": v for k, v in summary["applied"].items()})
        output.record(flat)


def _summary(
    plan: Plan, applied: Applied | None, report: Path | None, dry_run: bool
) -> dict[str, Any]:
    source, counts = plan.source, plan.counts
    return {
        "file": source.name,
        "format": source.format,
        "encoding": source.encoding,
        "delimiter": source.delimiter if source.format == "csv" else None,
        "clinic": plan.ctx.clinic_code,
        "dry_run": dry_run,
        "rows": counts.rows,
        "plan": {
            "create": counts.create,
            "link": counts.link,
            "set_flag": counts.set_flag,
            "already": counts.already,
            "duplicates": counts.duplicate,
            "rejected": counts.rejected,
            "differences": counts.differences,
        },
        "applied": None
        if applied is None
        else {
            "created": applied.created,
            "linked": applied.linked,
            "flags_set": applied.flags_set,
            "already": applied.already,
            "rejected": applied.rejected,
            "invitations_queued": applied.invitations,
            "mails_queued": applied.mails,
        },
        "rejected": counts.rejected + (applied.rejected if applied else 0),
        "rejected_rows": [{"line": r.line, "reason": r.reason} for r in plan.first_rejections()],
        "report": str(report) if report else None,
    }


def check_report_path(report: Path, source: str) -> None:
    """Refuse (exit 2) a ``--report`` that is the input file or cannot be written, before
    phase one: the report is written at the end, after the changes were made."""
    import os

    from patientportal_cli.errors import InvalidInput

    if source != "-":
        try:
            same = report.exists() and os.path.samefile(report, source)
        except OSError:
            same = False
        if same:
            raise InvalidInput(
                f"--report {report} is the file being imported; the report would overwrite "
                "it. Give the report another name."
            )
    if report.is_dir():
        raise InvalidInput(
            f"--report {report} is a folder; give a file name, e.g. {report / 'afviste.csv'}."
        )
    folder = report.parent
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise InvalidInput(f"Cannot write the report {report}: {folder} {problem}.")
    if not os.access(report if report.exists() else folder, os.W_OK):
        where = report if report.exists() else f"the folder {folder}"
        raise InvalidInput(f"Cannot write the report {report}: no permission to write {where}.")


def _write_report(path: Path, plan: Plan) -> int:
    import csv

    from patientportal_cli.errors import InvalidInput
    from patientportal_cli.output import spreadsheet_safe

    delimiter = plan.source.delimiter if plan.source.format == "csv" else ","
    count = 0
    try:
        with files.open_private(path, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle, delimiter=delimiter, lineterminator="\r\n")
            writer.writerow(["line", "row", "reason"])
            for rejection in plan.rejections(with_text=True):
                writer.writerow(
                    [
                        rejection.line,
                        spreadsheet_safe(rejection.text or ""),
                        spreadsheet_safe(rejection.reason),
                    ]
                )
                count += 1
    except OSError as exc:
        import errno

        from patientportal_cli.errors import DomainError

        text = f"Cannot write the report {path}: {exc.strerror or exc}."
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
            raise DomainError(text) from None  # the disk, not the --report given: exit 1
        raise InvalidInput(text) from None
    return count


@contextmanager
def _progress(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda _done: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[Any] = [SpinnerColumn(), TextColumn(label)]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    else:
        columns += [TextColumn("{task.completed} rows")]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=total is None) as bar:
        task = bar.add_task(label, total=total)

        def advance(done: int) -> None:
            bar.update(task, completed=done)

        yield advance
