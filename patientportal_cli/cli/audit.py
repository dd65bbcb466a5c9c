"""audit list | verify | checkpoint | export."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patientportal_cli.cli.common import (
    ClinicOpt,
    Fmt,
    OutputOpt,
    command,
    home,
    out,
    staff_session,
)
from patientportal_cli.cli.completion import complete_username

if TYPE_CHECKING:
    from sqlmodel import Session

    from patientportal_cli.db.models import AuditEvent
    from patientportal_cli.services.audit import Anchor, Report
    from patientportal_cli.services.auth import Actor

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
    staff: Annotated[
        str | None,
        typer.Option(
            "--staff",
            help="Only this staff member's events here and their logins, failed logins, "
            "locks and account events (admins).",
            autocompletion=complete_username,
        ),
    ] = None,
    after: Annotated[
        int | None,
        typer.Option("--after", min=1, help="Only events older than this id (the next page)."),
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
        if staff is not None:
            _, code = actor.require_role("admin", action="see a staff member's logins")
        else:
            _, code = actor.require_clinic()
        rows = [
            event_row(e)
            for e in audit.events(
                session,
                clinic=code,
                action=action,
                since=_since(since),
                limit=limit,
                after=after,
                staff=staff,
            )
        ]
        output.rows(rows, COLUMNS, empty="No audit events.")


# --- anchoring: the audit key, checkpoints, verify ---------------------------------------

KEY_ENV = "PATIENTPORTAL_AUDIT_KEY"
MEMORY = "audit-verified.json"


def _audit_key(*, create: bool) -> bytes | None:
    """The audit key: PATIENTPORTAL_AUDIT_KEY, else the keyring's audit-key (created
    there when ``create`` and missing)."""
    import os

    from patientportal_cli import keystore
    from patientportal_cli.errors import KeyringUnavailable

    value = os.environ.get(KEY_ENV, "").strip()
    if value:
        return value.encode()
    try:
        stored = keystore.get("audit-key", home())
    except KeyringUnavailable:
        if create:
            raise
        return None
    if stored:
        return stored.encode()
    if not create:
        return None
    import secrets

    keystore.set("audit-key", home(), secrets.token_hex(32))
    out().message(
        f"Created the audit key and stored it in the OS keyring (audit-key for {home()}). "
        "Keep a copy where the database's administrators cannot reach it: checkpoints "
        f"can only be checked with it (`{KEY_ENV}` or `patientportal config set audit-key`)."
    )
    return _audit_key(create=False)


def _database_name() -> str:
    from sqlalchemy.engine import make_url

    from patientportal_cli.cli.common import db_url

    return make_url(db_url()[0]).render_as_string(hide_password=True)


def _memory() -> dict[str, tuple[int, str]]:
    """The chain heads verified on this machine for this database (HOME/audit-verified.json)."""
    import json

    from patientportal_cli.errors import DomainError

    path = home() / MEMORY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        heads = data.get(_database_name(), {})
        return {str(c): (int(v[0]), str(v[1])) for c, v in heads.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise DomainError(
            f"{path} is not readable: remove it (audit verify --full checks everything)."
        ) from None


def _remember(heads: dict[str, tuple[int, str]]) -> None:
    import json

    from patientportal_cli import files

    path = home() / MEMORY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    entry = data.setdefault(_database_name(), {})
    for chain, (seq, hash_) in heads.items():
        entry[chain] = [seq, hash_]
    files.private_dir(home())
    files.write_private(path, json.dumps(data, indent=1, sort_keys=True) + "\n", atomic=True)


def _chains(session: Session, actor: Actor, all_chains: bool, *, admin: bool) -> list[str]:
    from patientportal_cli.errors import Forbidden
    from patientportal_cli.services import audit

    if all_chains:
        if not actor.may_create_clinics:
            raise Forbidden(
                "Only staff who may create clinics can use --all (every clinic's chain)."
            )
        return audit.all_chains(session)
    if admin:
        _, code = actor.require_role("admin", action="write audit checkpoints")
    elif actor.clinic_code is None and actor.roles:  # every clinic where the actor works
        return [*sorted(actor.roles), audit.NO_CLINIC]
    else:
        _, code = actor.require_clinic()
    return [code, audit.NO_CLINIC]


AllOpt = Annotated[
    bool,
    typer.Option("--all", help="Every clinic's chain (staff who may create clinics)."),
]


@command(app, "checkpoint")
def checkpoint(
    output_file: Annotated[
        Path | None,
        typer.Option("--output-file", help="Also export the checkpoint as JSON (0600) here."),
    ] = None,
    all_chains: AllOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Verify, then sign each chain's head with the audit key (an anchor for `audit verify`)."""
    from patientportal_cli.services import audit

    with staff_session(clinic=clinic_code) as (session, actor):
        chains = _chains(session, actor, all_chains, admin=True)
        key = _audit_key(create=True)
        assert key is not None
        report, made = audit.checkpoint(
            session, actor=actor.username, chains=chains, key=key, remembered=_memory()
        )
        session.commit()
        text = audit.checkpoint_file_text(made)
    _remember(report.heads)
    where = ", ".join(f"{audit.label(cp.chain)} #{cp.seq}" for cp in made) or "no events yet"
    out().success(f"Checkpoint written: {where}.")
    if output_file:
        from patientportal_cli import files

        files.write_private(output_file, text)
        out().message(
            f"Exported it to {output_file}: keep it where the database's writers cannot change it."
        )


FullOpt = Annotated[
    bool, typer.Option("--full", help="Check every event and checkpoint from the start.")
]
CheckpointFileOpt = Annotated[
    Path | None,
    typer.Option("--checkpoint-file", help="Also check against an exported checkpoint."),
]


@command(app, "verify")
def verify(
    full: FullOpt = False,
    checkpoint_file: CheckpointFileOpt = None,
    all_chains: AllOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Check the clinic's chain (without --clinic: every clinic where you work) and the
    no-clinic chain; exit 1 naming what is wrong.

    Resumes from the newest signed checkpoint (or the head verified on this machine);
    --full checks everything.
    """
    from patientportal_cli.services import audit

    report = audit.Report()
    key = _audit_key(create=False)
    extra = []
    if checkpoint_file is not None:
        extra = audit.file_anchors(_read_json(checkpoint_file), key, report)
    _verify_and_record(
        report,
        key=key,
        extra=extra,
        full=full,
        all_chains=all_chains,
        clinic_code=clinic_code,
    )
    _fail_on_problems(report)
    _remember(report.heads)
    _report_verified(report, key)


def _verify_and_record(
    report: Report,
    *,
    key: bytes | None,
    extra: list[Anchor],
    full: bool,
    all_chains: bool,
    clinic_code: str | None,
) -> None:
    """Verify the chains in one session and record the run (for clinic overview)."""
    from patientportal_cli.services import audit

    with staff_session(clinic=clinic_code) as (session, actor):
        chains = _chains(session, actor, all_chains, admin=False)
        audit.verify(
            session,
            chains=chains,
            full=full,
            key=key,
            remembered=_memory(),
            extra=extra,
            report=report,
        )
        from patientportal_cli.services.audit import runs

        runs.record_verify(  # for clinic overview: when, by whom, the result
            session, actor=actor.username, chains=chains, report=report, full=full
        )
        session.commit()


def _fail_on_problems(report: Report) -> None:
    """Print every problem but the last, and exit 1 naming the last."""
    from patientportal_cli.errors import DomainError

    if report.problems:
        from patientportal_cli import output as output_mod

        for problem in report.problems[:-1]:
            output_mod.error(problem)
        raise DomainError(report.problems[-1])


def _report_verified(report: Report, key: bytes | None) -> None:
    """The success line, what was pruned or resumed, and which signatures went unchecked."""
    from patientportal_cli.services import audit

    output = out()
    output.success(f"The audit log is intact: {report.checked} events checked.")
    resumed = [c for c in report.chains if c.start_seq and c.start_seq != c.pruned_to]
    pruned = [c for c in report.chains if c.pruned_to]
    if pruned:  # audit prune removed the older events; its signed checkpoint anchors the rest
        points = ", ".join(f"{audit.label(c.chain)} #{c.pruned_to}" for c in pruned)
        output.message(f"Pruned (audit retention): events up to {points} were removed.")
    if resumed:
        points = ", ".join(f"{audit.label(c.chain)} #{c.start_seq}" for c in resumed)
        output.message(f"Resumed after {points} (checked before; --full checks everything).")
    if key is None and report.checkpoints_unchecked:
        output.warn(
            f"no audit key here, so the signatures of {report.checkpoints_unchecked} "
            "checkpoints were not checked "
            f"(set {KEY_ENV} or run `patientportal config set audit-key`)."
        )
    elif key is not None and report.checkpoints_unchecked:
        output.warn(
            f"{report.checkpoints_unchecked} checkpoints signed with another audit key "
            "were not checked."
        )


def _read_json(path: Path) -> Any:
    import json

    from patientportal_cli.errors import InvalidInput

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"--checkpoint-file: no file {path}.") from None
    except ValueError:
        raise InvalidInput(
            "The checkpoint file is not a patientportal audit checkpoint file."
        ) from None


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
