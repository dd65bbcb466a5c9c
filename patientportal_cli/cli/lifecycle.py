"""patient deactivate | reactivate: a patient's lifecycle (services/lifecycle.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from patientportal_cli.cli.common import ClinicOpt, DryRunOpt, Fmt, OutputOpt, out, staff_session

if TYPE_CHECKING:
    from patientportal_cli.output import Output
    from patientportal_cli.services.lifecycle import Outcome, RowResult

ROW_COLUMNS = [("line", "Line"), ("cpr", "CPR"), ("result", "Result"), ("detail", "Detail")]

CprArg = Annotated[
    str | None,
    typer.Argument(
        metavar="[CPR]", help="CPR number: DDMMYY-SSSS, DDMMYY SSSS or DDMMYYSSSS (or --from)."
    ),
]
ReasonOpt = Annotated[
    str,
    typer.Option(
        "--reason",
        metavar="deceased|emigrated|left-clinic|other",
        help="left-clinic ends this clinic's link; the others block every login everywhere.",
    ),
]
FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="FILE|-",
        help="Many patients: one CPR number per line, or a CSV with a cpr column; - reads "
        "standard input.",
    ),
]
MaxRowsOpt = Annotated[
    int | None,
    typer.Option("--max-rows", min=1, help="With --from: stop after N rows (try a few first)."),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option("--report", help="With --from: write every row's result as CSV here (0600)."),
]


def deactivate(
    cpr: CprArg = None,
    reason: ReasonOpt = "",
    from_: FromOpt = None,
    dry_run: DryRunOpt = False,
    max_rows: MaxRowsOpt = None,
    report: ReportOpt = None,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Deactivate a patient: deceased, emigrated, left-clinic or other.

    left-clinic ends this clinic's link (as `patient unlink`). deceased, emigrated and
    other deactivate the portal user: every login is refused at every clinic, pending
    codes end, and the guardianships and proxies held by or for the person end. Staff
    at other clinics see only "not active". `patient reactivate` undoes a mistake.

    --from FILE|- deactivates many (one CPR number per line, or a CSV with a cpr
    column): one result per row; exit 3 when rows were rejected (not a patient here,
    invalid). Running it again is safe.
    """
    from patientportal_cli.errors import InvalidInput
    from patientportal_cli.services import lifecycle

    if not reason:
        raise InvalidInput("Missing --reason: give deceased, emigrated, left-clinic or other.")
    lifecycle.check_reason(reason)
    if (cpr is None) == (from_ is None):
        raise InvalidInput("Give either a CPR number or --from FILE|- (not both).")
    if from_ is None and (max_rows is not None or report is not None):
        raise InvalidInput("--max-rows and --report go with --from FILE|-.")
    if from_ is not None:
        _deactivate_many(from_, reason, dry_run, max_rows, report, fmt, clinic_code)
        return
    assert cpr is not None
    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        outcome = lifecycle.deactivate(
            session, actor=actor, cpr=cpr, reason=reason, dry_run=dry_run
        )
    _report_one(output, outcome)


def _report_one(output: Output, outcome: Outcome) -> None:
    from patientportal_cli.services import lifecycle

    who = outcome.label
    if outcome.result == lifecycle.ALREADY:
        output.message(f"{who} is already deactivated; nothing changed.")
        return
    dry = outcome.result == lifecycle.WOULD
    if outcome.reason == lifecycle.LEFT_CLINIC:
        lead = "Dry run: would end" if dry else "Ended"
        output.success(
            f"{lead} the link of {who} to clinic {outcome.clinic_code} (left-clinic); the "
            "portal user stays."
        )
    else:
        lead = "Dry run: would deactivate" if dry else "Deactivated"
        verb = "would be" if dry else "is"
        output.success(
            f"{lead} {who} ({outcome.reason}): every portal login {verb} refused at every "
            "clinic, and pending codes " + ("would end." if dry else "are ended.")
        )
        if outcome.delegations:
            output.message(
                f"{outcome.delegations} guardianship(s) or proxies held by or for the "
                + ("patient would end." if dry else "patient ended.")
            )
    if dry:
        output.message("Nothing was changed.")


@contextmanager
def _source(name: str) -> Iterator[TextIO]:
    from patientportal_cli.errors import InvalidInput

    if name == "-":
        yield sys.stdin
        return
    try:
        handle = open(name, encoding="utf-8-sig", errors="replace", newline="")  # noqa: SIM115
    except OSError as exc:
        raise InvalidInput(f"Cannot read {name}: {exc.strerror or exc}.") from None
    with handle:
        yield handle


def _deactivate_many(
    source: str,
    reason: str,
    dry_run: bool,
    max_rows: int | None,
    report: Path | None,
    fmt: Fmt,
    clinic_code: str | None,
) -> None:
    import itertools

    from patientportal_cli.cli.patient_import import check_report_path
    from patientportal_cli.errors import RowsRejected
    from patientportal_cli.services import lifecycle

    if report is not None:
        check_report_path(report, source)  # before anything is read or changed
    output = out(fmt)
    results: list[RowResult] = []
    left = 0
    with _source(source) as handle, staff_session(output, clinic=clinic_code) as (session, actor):
        rows = lifecycle.read_cprs(handle)
        chosen = rows if max_rows is None else itertools.islice(rows, max_rows)
        done = lifecycle.deactivate_many(
            session, actor=actor, rows=chosen, reason=reason, dry_run=dry_run
        )

        def each() -> Iterator[dict[str, object]]:
            for result in done:
                results.append(result)
                yield result.as_row()

        output.stream_rows(each(), ROW_COLUMNS, empty="No CPR numbers in the input.")
        if max_rows is not None:
            left = sum(1 for _ in rows)
    if report is not None:
        _write_report(report, results)
        output.message(f"Every row's result written to {report}.")
    rejected = _summary(output, results, dry_run=dry_run)
    if left:
        output.message(
            f"Stopped after {max_rows} row(s) (--max-rows): {left} row(s) were left; nothing "
            "was done for them."
        )
    if rejected:
        where = f"all are in {report}" if report else "--report FILE writes every row"
        raise RowsRejected(f"{rejected} row(s) rejected ({where}); the other rows were handled.")


def _summary(output: Output, results: list[RowResult], *, dry_run: bool) -> int:
    from collections import Counter

    from patientportal_cli.services import lifecycle

    counts = Counter(r.result for r in results)
    done = counts[lifecycle.WOULD] if dry_run else counts[lifecycle.DONE]
    lead = "Dry run: would deactivate" if dry_run else "Deactivated"
    output.message(
        f"{lead} {done}; already inactive {counts[lifecycle.ALREADY]}; not a patient here "
        f"{counts[lifecycle.NOT_HERE]}; invalid {counts[lifecycle.INVALID]}."
    )
    if dry_run:
        output.message("Nothing was changed.")
    return counts[lifecycle.NOT_HERE] + counts[lifecycle.INVALID]


def _write_report(path: Path, results: list[RowResult]) -> None:
    import csv

    from patientportal_cli import files
    from patientportal_cli.errors import DomainError
    from patientportal_cli.output import spreadsheet_safe

    try:
        with files.open_private(path, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\r\n")
            writer.writerow(["line", "row", "result", "detail"])
            for r in results:
                writer.writerow(
                    [r.line, spreadsheet_safe(r.text), r.result, spreadsheet_safe(r.detail)]
                )
    except OSError as exc:
        raise DomainError(f"Cannot write the report {path}: {exc.strerror or exc}.") from None


def reactivate(
    cpr: Annotated[
        str, typer.Argument(metavar="CPR", help="CPR number: DDMMYY-SSSS or DDMMYYSSSS.")
    ],
    clinic_code: ClinicOpt = None,
) -> None:
    """Undo a deactivation made by mistake: the portal user can log in again.

    Guardianships, proxies and codes that the deactivation ended stay ended.
    """
    from patientportal_cli.services import lifecycle

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        result = lifecycle.reactivate(session, actor=actor, cpr=cpr)
    if not result.changed:
        output.message(f"{result.label} is not deactivated; nothing changed.")
        return
    output.success(
        f"Reactivated {result.label}: portal logins work again as before the deactivation. "
        "Guardianships and proxies it ended stay ended."
    )
