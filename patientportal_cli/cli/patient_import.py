"""patient import: many patients from a CSV or JSON Lines file, in two phases."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
from patientportal_cli.cli.completion import (
    complete_delimiter,
    complete_encoding,
    complete_import_format,
)
from patientportal_cli.services.importing import BATCH_SIZE

if TYPE_CHECKING:
    from sqlmodel import Session

    from patientportal_cli.output import Output
    from patientportal_cli.services.auth import Actor
    from patientportal_cli.services.importing.apply import Applied
    from patientportal_cli.services.importing.plan import Plan
    from patientportal_cli.services.importing.reader import ImportFile

PLAN_LINES = [
    ("create", "create user and link"),
    ("link", "link existing user"),
    ("set_flag", "set no-MitID flag, link exists"),
    ("already", "already linked (nothing to do)"),
    ("duplicate", "repeated rows (same data)"),
    ("rejected", "rejected"),
]


FileArg = Annotated[
    str,
    typer.Argument(
        metavar="FILE|-",
        help="CSV (as Excel writes it) or JSON Lines file; - reads standard input.",
    ),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="csv or jsonl (default: from the file's extension, else csv).",
        autocompletion=complete_import_format,
    ),
]
EncodingOpt = Annotated[
    str | None,
    typer.Option(
        "--encoding",
        help="Text encoding (default: UTF-8, with or without BOM, else cp1252).",
        autocompletion=complete_encoding,
    ),
]
DelimiterOpt = Annotated[
    str | None,
    typer.Option(
        "--delimiter",
        help="CSV delimiter: ';', ',' or tab (default: detected).",
        autocompletion=complete_delimiter,
    ),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option("--report", help="Write the rejected rows (line, row, reason) as CSV here."),
]
NoInviteOpt = Annotated[
    bool, typer.Option("--no-invite", help="Do not e-mail activation codes to new users.")
]
NoSendOpt = Annotated[
    bool,
    typer.Option(
        "--no-send",
        help="Queue the e-mails but do not deliver them now (later: patientportal mail send).",
    ),
]
ConfirmEmailOwnerOpt = Annotated[
    bool,
    typer.Option(
        "--confirm-email-owner",
        help="Confirm, for every row with the no-MitID flag, that the e-mail address "
        "belongs to the patient or to a person with power of attorney (fuldmagt).",
    ),
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", hidden=True, min=1, max=50_000)]


def import_(
    file: FileArg,
    file_format: FormatOpt = None,
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    report: ReportOpt = None,
    no_invite: NoInviteOpt = False,
    no_send: NoSendOpt = False,
    confirm_email_owner: ConfirmEmailOwnerOpt = False,
    batch_size: BatchSizeOpt = BATCH_SIZE,
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
    from patientportal_cli.errors import RowsRejected

    output = out(fmt)
    if report is not None:
        check_report_path(report, file)  # before anything is read or written
    run = _Run(output, fmt, report, dry_run)
    with (
        _open_source(output, file, file_format, encoding, delimiter) as (source, spool_dir),
        staff_session(output, clinic=clinic_code) as (session, actor),
        _make_plan(
            session,
            actor,
            source,
            spool_dir,
            confirm_email_owner=confirm_email_owner,
            invite=not no_invite,
            batch_size=batch_size,
        ) as plan,
    ):
        if plan.counts.rows == 0:
            output.message(f"{source.name} has a header but no rows: nothing to import.")
            run.finish(plan, None)
            return
        _show_plan(output.message, plan)
        if dry_run or plan.counts.to_apply() == 0:
            _end_without_changes(run, plan)
            return
        _confirm(plan, yes)
        applied = _apply(session, output, plan)
        run.finish(plan, applied)
    _send(output, plan, applied, no_send)
    rejected = plan.counts.rejected + applied.rejected
    if rejected:
        raise RowsRejected(rejected_text(rejected, report, False))


@contextmanager
def _open_source(
    output: Output, file: str, file_format: str | None, encoding: str | None, delimiter: str | None
) -> Iterator[tuple[ImportFile, Path]]:
    """The import file opened, and HOME/spool/RUN: the spool of both phases; both are
    removed at the end."""
    from patientportal_cli import files
    from patientportal_cli.services.importing.reader import open_import

    with files.spool(home()) as spool_dir:
        source = open_import(
            file, format=file_format, encoding=encoding, delimiter=delimiter, spool_dir=spool_dir
        )
        with source:
            for notice in source.notices:
                output.message("Note: " + notice)
            yield source, spool_dir


def _make_plan(
    session: Session,
    actor: Actor,
    source: ImportFile,
    spool_dir: Path,
    *,
    confirm_email_owner: bool,
    invite: bool,
    batch_size: int,
) -> Plan:
    """Phase one: read and check every row, with a progress bar."""
    from patientportal_cli.services.importing import plan as plan_mod

    clinic_id, _ = actor.require_clinic()
    ctx = plan_mod.context(
        session,
        clinic_id=clinic_id,
        actor=actor.username,
        confirm_email_owner=confirm_email_owner,
        invite=invite,
        source=source.name,
    )
    with _progress("Checking rows", None) as advance:
        return plan_mod.make_plan(
            session,
            source=source,
            ctx=ctx,
            batch_size=batch_size,
            on_progress=advance,
            spool_dir=spool_dir,
        )


def _end_without_changes(run: _Run, plan: Plan) -> None:
    """--dry-run, or no row needs a change: say so, finish; exit 3 when rows were rejected."""
    from patientportal_cli.errors import RowsRejected

    if run.dry_run:
        run.output.message("Dry run: nothing was changed.")
    else:
        run.output.message(
            f"Nothing to change: no row needs a change at clinic {plan.ctx.clinic_code}."
        )
    run.finish(plan, None)
    if plan.counts.rejected:
        raise RowsRejected(rejected_text(plan.counts.rejected, run.report, run.dry_run))


def _confirm(plan: Plan, yes: bool) -> None:
    """Phase two starts only when confirmed (or --yes)."""
    from patientportal_cli import prompts
    from patientportal_cli.errors import Refused

    if not yes and not prompts.confirm(
        f"Apply {plan.counts.to_apply()} change(s) at clinic {plan.ctx.clinic_code}?",
        flag="--yes",
    ):
        raise Refused("Not confirmed; nothing was imported.")


def _apply(session: Session, output: Output, plan: Plan) -> Applied:
    """Phase two: the plan's rows in batches, with a progress bar; then what was done."""
    from patientportal_cli.services.importing import apply as apply_mod

    with _progress("Importing", plan.counts.to_apply()) as advance:
        applied = apply_mod.apply_plan(session, plan, on_progress=advance)
    _show_applied(output.message, plan, applied)
    return applied


def _send(output: Output, plan: Plan, applied: Applied, no_send: bool) -> None:
    """Deliver the e-mails the import queued, unless --no-send."""
    if not applied.mails:
        return
    if no_send:
        output.message(
            f"E-mails queued: {applied.mails}; deliver them with `patientportal mail send`."
        )
        return
    from patientportal_cli.cli.mail import send_queued

    sent, _failed = send_queued(output, clinic=plan.ctx.clinic_code)
    if sent:
        output.message(f"E-mails sent: {sent}.")


def rejected_text(count: int, report: Path | None, dry_run: bool) -> str:
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
    if counts.shared_email:
        rows = "row has an e-mail" if counts.shared_email == 1 else "rows have an e-mail"
        say(
            f"Warning: {counts.shared_email} {rows} also used by another patient here (not "
            "refused; --report FILE names the rows)."
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


@dataclass(frozen=True)
class _Run:
    """What the end of a run needs from the command line."""

    output: Output
    fmt: Fmt
    report: Path | None
    dry_run: bool

    def finish(self, plan: Plan, applied: Applied | None) -> None:
        """Write --report, and the summary for --output json or csv."""
        if self.report is not None:
            written = _write_report(self.report, plan) - plan.counts.shared_email
            self.output.message(f"Rejected rows written to {self.report}: {written}.")
        if self.fmt == Fmt.table:
            return
        summary = _summary(plan, applied, self.report, self.dry_run)
        if self.fmt == Fmt.json:
            self.output._json(summary)
        else:
            flat = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
            flat.update({f"plan_{k}": v for k, v in summary["plan"].items()})
            if summary["applied"]:
                flat.update({f"applied_{k}": v for k, v in summary["applied"].items()})
            self.output.record(flat)


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
            "shared_email": counts.shared_email,
        },
        "applied": None
        if applied is None
        else {
            "created": applied.created,
            "linked": applied.linked,
            "flags_set": applied.flags_set,
            "already": applied.already,
            "rejected_while_applying": applied.rejected,
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

    from patientportal_cli import files
    from patientportal_cli.errors import InvalidInput
    from patientportal_cli.output import spreadsheet_safe

    delimiter = plan.source.delimiter if plan.source.format == "csv" else ","
    count = 0
    try:
        with files.open_private(path, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle, delimiter=delimiter, lineterminator="\r\n")
            writer.writerow(["line", "row", "reason"])
            for rejection in plan.report_rows():
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
