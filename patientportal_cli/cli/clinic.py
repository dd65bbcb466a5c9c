"""clinic list | show | overview | create | set-registration | services."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patientportal_cli.cli.common import ClinicOpt, Fmt, OutputOpt, command, out, staff_session
from patientportal_cli.vocabulary import RequestStatus

if TYPE_CHECKING:
    from patientportal_cli.db.models import Clinic
    from patientportal_cli.services.overview import Overview

app = typer.Typer(help="Clinic settings: registration mode and services.", no_args_is_help=True)


class Mode(StrEnum):
    none = "none"
    approval = "approval"
    open = "open"


class Pending(StrEnum):
    keep = "keep"
    reject = "reject"
    approve = "approve"


class Service(StrEnum):
    e_consultation = "e-consultation"
    booking = "booking"
    prescription_renewal = "prescription-renewal"


COLUMNS = [
    ("code", "Code"),
    ("name", "Name"),
    ("registration_mode", "Mode"),
    ("registration_label", "Registration"),
    ("services", "Services"),
]


def clinic_row(clinic: Clinic) -> dict[str, Any]:
    from patientportal_cli.services import catalog

    return {
        "code": clinic.code,
        "name": clinic.name,
        "registration_mode": clinic.registration_mode,
        "registration_label": catalog.REGISTRATION_MODES[clinic.registration_mode],
        "services": catalog.split_services(clinic.services),
        "created_at": clinic.created_at,
    }


@command(app, "list")
def list_(fmt: OutputOpt = Fmt.table) -> None:
    """The clinics you work at."""
    from patientportal_cli.services import clinics

    with staff_session() as (session, actor):
        rows = [clinic_row(c) for c in clinics.visible(session, actor=actor)]
    out(fmt).rows(rows, COLUMNS, empty="No clinics.")


@command(app, "show")
def show(
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """The current clinic's settings (pick it with --clinic)."""
    from patientportal_cli.services import clinics

    with staff_session(clinic=clinic_code) as (session, actor):
        clinic = clinics.current(session, actor=actor)
        row = clinic_row(clinic)
        row["pending_requests"] = clinics.pending_count(session, clinic.id or 0)
    out(fmt).record(row, title=f"Clinic {clinic.code}")


def _age(since: Any, now: Any) -> str:
    minutes = int((now - since).total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


def overview_json(o: Overview) -> dict[str, Any]:
    """The `clinic overview -o json` object (its shape is in README.md)."""
    verify = o.audit_verify
    return {
        "clinic": {
            "code": o.code,
            "name": o.name,
            "registration_mode": o.registration_mode,
            "registration_label": o.registration_label,
        },
        "patients": {
            "total": o.patients,
            "without_mitid": o.without_mitid,
            "activations_not_used": o.activations_not_used,
        },
        "requests": {
            "pending": o.pending_requests,
            "oldest_submitted_at": o.oldest_pending_at,
            "oldest_age_seconds": None
            if o.oldest_pending_at is None
            else int((o.now - o.oldest_pending_at).total_seconds()),
        },
        "logins_24h": {"failed": o.failed_logins_24h, "locked": o.locked_logins_24h},
        "mail": {"queued": o.mail_queued},
        "audit": {
            "last_verified_at": verify.at if verify else None,
            "verified_by": verify.actor if verify else None,
            "result": verify.result if verify else None,
            "problem": verify.problem if verify else None,
        },
        "at": o.now,
    }


def overview_fields(o: Overview) -> dict[str, Any]:
    """The lines of the overview screen."""
    from patientportal_cli.output import format_time

    oldest = (
        f" (oldest {format_time(o.oldest_pending_at)}, {_age(o.oldest_pending_at, o.now)} ago)"
        if o.oldest_pending_at is not None
        else ""
    )
    verify = o.audit_verify
    if verify is None:
        verified = "never (run `patientportal audit verify`)"
    else:
        verified = f"{format_time(verify.at)} by {verify.actor}: {verify.result}"
        if verify.problem:
            verified += f" ({verify.problem})"
    return {
        "Registration": f"{o.registration_mode} ({o.registration_label})",
        "Patients": o.patients,
        "Without MitID": o.without_mitid,
        "Activations not used": o.activations_not_used,
        "Pending requests": f"{o.pending_requests}{oldest}",
        "Failed logins, 24 h": o.failed_logins_24h,
        "Locked logins, 24 h": o.locked_logins_24h,
        "Mail queued": o.mail_queued,
        "Audit log verified": verified,
    }


@command(app, "overview")
def overview(
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """The clinic at a glance: patients, activations, requests, failed logins, mail, audit.

    Every number is the current clinic's only (pick it with --clinic).
    """
    from patientportal_cli.services import overview as overview_service

    with staff_session(clinic=clinic_code) as (session, actor):
        o = overview_service.gather(session, actor=actor)
    output = out(fmt)
    if fmt == Fmt.table:
        output.panel(f"Clinic {o.code} ({o.name})", overview_fields(o))
    elif fmt == Fmt.json:
        output.record(overview_json(o))
    else:  # one CSV row: the JSON object's fields, flattened (clinic_code, patients_total...)
        output.record(_flat(overview_json(o)))


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@command(app, "create")
def create(
    code: Annotated[str, typer.Argument(help="Clinic code, e.g. NORD.")],
    name: Annotated[str, typer.Option("--name", help="Clinic name.")],
    registration: Annotated[
        Mode,
        typer.Option("--registration", help="Online self-registration mode.", case_sensitive=False),
    ] = Mode.none,
) -> None:
    """Create a clinic (needs the right to create clinics); you become its admin."""
    from patientportal_cli.services import clinics

    with staff_session() as (session, actor):
        clinic = clinics.create(session, actor=actor, code=code, name=name, mode=registration.value)
    out().success(f"Created clinic {clinic.code} ({clinic.name}); you are its admin.")


def _ask_pending(waiting: int, may_approve: bool, reason: str | None) -> tuple[str, str | None]:
    """Ask what happens to the pending requests, and the reason when they are rejected
    (unless --reason gave it); approving them needs a doctor (services/approvals.py)."""
    from patientportal_cli import prompts

    choices = [("keep", "Keep them in the queue"), ("reject", "Reject them")]
    if may_approve:
        choices.append(("approve", "Approve them"))
    choice = prompts.select(
        f"{waiting} request(s) are pending. What should happen to them?",
        choices,
        flag="--pending",
    )
    if choice == "reject" and reason is None:
        reason = (
            prompts.text("Reason (e-mailed to the patients, may be empty):", flag="--reason")
            or None
        )
    return choice, reason


@command(app, "set-registration")
def set_registration(
    mode: Annotated[Mode, typer.Argument(help="none, approval or open.", case_sensitive=False)],
    pending: Annotated[
        Pending | None,
        typer.Option(
            "--pending",
            help="What to do with pending requests: keep, reject, approve.",
            case_sensitive=False,
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Reason e-mailed with rejections.")
    ] = None,
    clinic_code: ClinicOpt = None,
) -> None:
    """Choose how patients become users online (admin only).

    none: Ingen online selv-oprettelse; approval: Online selv-oprettelse med
    læge-godkendelse; open: Online selv-oprettelse uden læge-godkendelse.
    """
    from patientportal_cli import prompts
    from patientportal_cli.services import catalog, clinics

    choice = pending.value if pending else None
    with staff_session(clinic=clinic_code) as (session, actor):
        clinic = clinics.current(session, actor=actor)
        waiting = clinics.pending_count(session, clinic.id or 0)
        if (
            waiting
            and choice is None
            and mode.value != clinic.registration_mode
            and prompts.interactive()
        ):
            session.rollback()  # no open transaction while the person answers
            choice, reason = _ask_pending(waiting, actor.has_role("doctor"), reason)
        clinic, old, handled = clinics.set_registration(
            session, actor=actor, mode=mode.value, pending=choice, reason=reason
        )
    label = catalog.REGISTRATION_MODES[clinic.registration_mode]
    if old == clinic.registration_mode:
        out().message(f"Clinic {clinic.code} already has registration mode {old} ({label}).")
        return
    decided = {"reject": RequestStatus.REJECTED, "approve": RequestStatus.APPROVED}
    done = decided.get(choice or "", "")
    extra = f"; {handled} pending request(s) {done}" if handled else ""
    out().success(
        f"Clinic {clinic.code}: registration mode {old} -> {clinic.registration_mode} ({label}){extra}."
    )
    if handled:  # the patients' e-mails about the decisions
        from patientportal_cli.cli.mail import send_queued

        send_queued(clinic=clinic.code)


@command(app, "services")
def services(
    enable: Annotated[
        list[Service] | None,
        typer.Option("--enable", help="Offer this service (repeatable).", case_sensitive=False),
    ] = None,
    disable: Annotated[
        list[Service] | None,
        typer.Option("--disable", help="Stop offering it (repeatable).", case_sensitive=False),
    ] = None,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Show, or enable/disable (admin only), the services the clinic offers."""
    from patientportal_cli.services import catalog, clinics

    with staff_session(clinic=clinic_code) as (session, actor):
        if enable or disable:
            clinic = clinics.set_services(
                session,
                actor=actor,
                enable=[s.value for s in enable or []],
                disable=[s.value for s in disable or []],
            )
        else:
            clinic = clinics.current(session, actor=actor)
    offered = catalog.split_services(clinic.services)
    rows = [
        {"service": s, "label": label, "enabled": s in offered}
        for s, label in catalog.SERVICES.items()
    ]
    out(fmt).rows(rows, [("service", "Service"), ("label", "Label"), ("enabled", "Enabled")])
