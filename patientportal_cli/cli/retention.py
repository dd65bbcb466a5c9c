"""audit prune | retention (registered on the audit group in cli/app.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from patientportal_cli.cli.common import ClinicOpt, DryRunOpt, Fmt, OutputOpt, config, out

if TYPE_CHECKING:
    from sqlmodel import Session

    from patientportal_cli.services.auth import Actor

AllOpt = Annotated[
    bool,
    typer.Option(
        "--all", help="Every chain, the no-clinic chain included (staff who may create clinics)."
    ),
]


def _policy() -> str:
    from patientportal_cli.services import retention

    return config().get(retention.POLICY_KEY) or retention.DEFAULT_POLICY


def _prune_chains(session: Session, actor: Actor, all_chains: bool) -> list[str]:
    """An admin prunes their clinic's chain; --all (staff who may create clinics) every
    chain, the no-clinic chain (logins of staff of every clinic) included."""
    from patientportal_cli.errors import Forbidden
    from patientportal_cli.services import audit

    if all_chains:
        if not actor.may_create_clinics:
            raise Forbidden(
                "Only staff who may create clinics can use --all (every chain, the no-clinic "
                "chain included)."
            )
        return audit.all_chains(session)
    _, code = actor.require_role("admin", action="prune the audit log")
    return [code]


def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Remove events older than this (e.g. 2y, 730d); default: the retention "
            "policy (config key audit-retention, 2y). Never shorter than the policy.",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    all_chains: AllOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Remove audit events past the retention period; a signed checkpoint at the last
    removed event keeps `audit verify` passing (needs the audit key)."""
    from patientportal_cli.cli.audit import _audit_key, _memory, _remember
    from patientportal_cli.cli.common import staff_session
    from patientportal_cli.services import audit, retention

    policy = _policy()
    key = _audit_key(create=False)
    with staff_session(clinic=clinic_code) as (session, actor):
        chains = _prune_chains(session, actor, all_chains)
        result = retention.prune(
            session,
            actor=actor.username,
            chains=chains,
            older_than=older_than or policy,
            policy=policy,
            key=key,
            remembered=_memory(),
            dry_run=dry_run,
        )
    output = out()
    cutoff = result.cutoff.strftime("%Y-%m-%d %H:%M UTC")
    if not result.chains:
        output.message(f"No audit events older than {cutoff} ({result.older_than}).")
        return
    if not dry_run:
        _remember(result.heads)
    for c in result.chains:
        verb = "Would remove" if dry_run else "Removed"
        span = f"{c.oldest:%Y-%m-%d} to {c.newest:%Y-%m-%d}" if c.oldest and c.newest else ""
        output.message(
            f"{verb} {c.removed} events of {audit.label(c.chain)} (#{c.through_seq} and "
            f"older, {span})."
        )
    if dry_run:
        output.message(f"Dry run: nothing removed (events older than {cutoff}).")
    else:
        output.success(
            f"Pruned {result.removed} events older than {cutoff}; a signed prune checkpoint "
            "anchors what remains."
        )


def retention_(
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """The retention policy, and each chain's events and last prune run."""
    from patientportal_cli.cli.audit import _chains
    from patientportal_cli.cli.common import staff_session
    from patientportal_cli.services import audit, retention

    policy = _policy()
    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        chains = _chains(session, actor, False, admin=False)
        found = retention.retention(session, chains=chains)
    rows = [
        {
            "chain": audit.label(r.chain),
            "events": r.events,
            "oldest": r.oldest,
            "last_prune": r.last_prune.created_at if r.last_prune else None,
            "pruned_by": r.last_prune.created_by if r.last_prune else None,
            "cutoff": r.last_prune.cutoff if r.last_prune else None,
            "removed": r.last_prune.removed if r.last_prune else None,
            "through_seq": r.last_prune.seq if r.last_prune else None,
        }
        for r in found
    ]
    if fmt == Fmt.json:
        output.record({"policy": policy, "chains": rows})
        return
    if fmt == Fmt.table:
        output.message(
            f"Retention policy: {retention.describe(policy)} ({policy}; config key "
            f"{retention.POLICY_KEY}). `audit prune` removes older events."
        )
    output.rows(
        rows,
        [
            ("chain", "Chain"),
            ("events", "Events"),
            ("oldest", "Oldest event"),
            ("last_prune", "Last prune"),
            ("pruned_by", "By"),
            ("cutoff", "Cutoff"),
            ("removed", "Removed"),
            ("through_seq", "Through #"),
        ],
    )
