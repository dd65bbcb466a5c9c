"""audit list | verify | export."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patientportal_cli.cli.common import ClinicOpt, Fmt, OutputOpt, command, out, staff_session

if TYPE_CHECKING:
    from patientportal_cli.db.models import AuditEvent

app = typer.Typer(help="The audit log (a tamper-evident hash chain).", no_args_is_help=True)

COLUMNS = [
    ("id", "Id"),
    ("at", "When"),
    ("actor", "Who"),
    ("action", "Action"),
    ("target", "Target"),
    ("details", "Details"),
]


def event_row(event: AuditEvent) -> dict[str, Any]:
    import json

    return {
        "id": event.id,
        "at": event.at,
        "actor": event.actor,
        "clinic": event.clinic,
        "action": event.action,
        "target": event.target,
        "details": json.loads(event.details),
        "hash": event.hash,
    }


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    from datetime import UTC

    from patientportal_cli.errors import InvalidInput

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"--since {value!r}: use a date like 2026-11-01 or 2026-11-01T08:00."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@command(app, "list")
def list_(
    action: Annotated[
        str | None, typer.Option("--action", help="Only actions starting with this.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only events at or after DATE (UTC).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many (newest first).")
    ] = 100,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """The current clinic's audit events, newest first."""
    from patientportal_cli.services import audit

    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        _, code = actor.require_clinic()
        rows = [
            event_row(e)
            for e in audit.events(
                session, clinic=code, action=action, since=_since(since), limit=limit
            )
        ]
        output.rows(rows, COLUMNS, empty="No audit events.")


@command(app, "verify")
def verify(clinic_code: ClinicOpt = None) -> None:
    """Check the whole hash chain; exit 1 naming the first event that does not match."""
    from patientportal_cli.errors import DomainError
    from patientportal_cli.services import audit

    with staff_session(clinic=clinic_code) as (session, _actor):
        count, bad = audit.verify(session)
    if bad is not None:
        raise DomainError(
            f"The audit log is broken at event {bad.id} ({bad.action} at {bad.at:%Y-%m-%d %H:%M:%S}): "
            f"its hash does not match; {count} events before it are intact."
        )
    out().success(f"The audit log is intact: {count} events checked.")


@command(app, "export")
def export(
    output_file: Annotated[
        Path | None, typer.Option("--output-file", help="Write JSON Lines here instead of stdout.")
    ] = None,
    clinic_code: ClinicOpt = None,
) -> None:
    """The current clinic's events as JSON Lines, oldest first."""
    from patientportal_cli.services import audit

    output = out("json")
    with staff_session(output, clinic=clinic_code) as (session, actor):
        _, code = actor.require_clinic()
        events = list(reversed(audit.events(session, clinic=code)))
        text = output.json_lines([event_row(e) for e in events])
    if output_file:
        from patientportal_cli import files

        files.write_private(output_file, text)  # 0600: the audit trail names patients
        out().success(f"Wrote {len(events)} events to {output_file}.")
    else:
        import sys

        sys.stdout.write(text)
