"""requests list | show | approve | reject | review: the clinic's approval queue (R3)."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patientportal_cli.cli.common import ClinicOpt, Fmt, OutputOpt, command, out, staff_session
from patientportal_cli.cli.completion import complete_request, complete_services
from patientportal_cli.vocabulary import RequestStatus

if TYPE_CHECKING:
    from sqlmodel import Session

    from patientportal_cli.output import Output
    from patientportal_cli.services.approvals import RequestInfo, ReviewOutcome

app = typer.Typer(
    help="The approval queue: online self-registrations waiting for a doctor.",
    no_args_is_help=True,
)


class Status(StrEnum):
    pending = RequestStatus.PENDING.value
    approved = RequestStatus.APPROVED.value
    rejected = RequestStatus.REJECTED.value
    withdrawn = RequestStatus.WITHDRAWN.value
    all = "all"


IdsArg = Annotated[
    list[int],
    typer.Argument(help="Request ids (see `requests list`).", autocompletion=complete_request),
]
ServicesOpt = Annotated[
    str | None,
    typer.Option(
        "--services",
        help="Services to grant, comma-separated (default: requested ones the clinic offers).",
        autocompletion=complete_services,
    ),
]


# --- rendering -----------------------------------------------------------------------
LIST_COLUMNS = [
    ("id", "Id"),
    ("submitted_at", "Submitted"),
    ("cpr", "CPR"),
    ("name", "Name"),
    ("email", "E-mail"),
    ("user", "User"),
    ("services", "Services asked for"),
    ("linked_before", "Linked before"),
    ("status", "Status"),
]


def request_row(info: RequestInfo) -> dict[str, Any]:
    r = info.request
    return {
        "id": r.id,
        "submitted_at": r.submitted_at,
        "cpr": r.cpr,
        "name": r.name,
        "email": r.email,
        "user": _user_label(info),
        "existing_user": info.existing_user,
        "user_created": info.user_created,
        "services": info.requested,
        "linked_before": info.linked_before,
        "linked_now": info.linked_now,
        "status": r.status,
        "decided_by": r.decided_by,
        "decided_at": r.decided_at,
        "reason": r.reason,
    }


def _user_label(info: RequestInfo) -> str:
    """created (this request's approval created the portal user), existing or new."""
    if info.user_created:
        return "created"
    return "existing" if info.existing_user else "new"


def _services(names: list[str]) -> str:
    return ", ".join(names) or "none"


def _approved_text(d: ReviewOutcome) -> str:
    from patientportal_cli.output import mask_cpr

    who = mask_cpr(d.cpr)
    if d.user_created:
        what = f"portal user created for {who} and linked"
    elif d.link_created:
        what = f"the existing portal user of {who} linked"
    else:
        return (
            f"Request {d.request_id} approved: {who} was already linked to the clinic (its "
            f"services are unchanged: {_services(d.services)})."
        )
    return f"Request {d.request_id} approved: {what}; services: {_services(d.services)}."


def _rejected_text(d: ReviewOutcome) -> str:
    mailed = "the reason was e-mailed" if d.reason else "the patient was e-mailed (no reason)"
    return f"Request {d.request_id} rejected: {mailed}."


# --- commands ------------------------------------------------------------------------
@command(app, "list")
def list_(
    status: Annotated[
        Status,
        typer.Option(
            "--status", help="pending (default), approved, rejected, all.", case_sensitive=False
        ),
    ] = Status.pending,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """The clinic's registration requests: pending first, oldest first.

    "User" tells whether the CPR number already has a portal user (approving links it)
    or a new one is created; "Linked before" marks a CPR this clinic linked before and
    unlinked since.
    """
    from patientportal_cli.services import approvals

    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        rows = [
            request_row(i) for i in approvals.list_requests(session, actor=actor, status=status)
        ]
        what = "" if status is Status.all else f"{status.value} "
        output.rows(
            rows,
            LIST_COLUMNS,
            title=f"Registration requests at {actor.clinic_code} ({status.value})",
            empty=f"No {what}registration requests at clinic {actor.clinic_code}.",
        )


@command(app, "show")
def show(
    request_id: Annotated[int, typer.Argument(help="Request id.", autocompletion=complete_request)],
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """One registration request, and what approving it would grant."""
    from patientportal_cli.services import approvals

    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        info = approvals.get_request(session, actor=actor, request_id=request_id)
        row = request_row(info)
        row["grant_by_default"] = info.grantable
        output.record(row, title=f"Registration request {request_id}")


def _decide_each(ids: list[int], clinic_code: str | None, decide: Any, text: Any) -> None:
    """Decide each id in its own transaction; report each; exit 1 if any failed."""
    from patientportal_cli import output as output_mod
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.errors import Conflict, NotFound

    output = out()
    failed = 0
    clinic: str | None = None
    try:
        with staff_session(output, clinic=clinic_code) as (session, actor):
            clinic = actor.clinic_code
            for request_id in dict.fromkeys(ids):
                try:
                    decided = decide(session, actor, request_id)
                except (NotFound, Conflict) as exc:  # this one only; the others go on
                    output_mod.error(str(exc))
                    failed += 1
                    continue
                output.success(text(decided))
    finally:
        if clinic:
            send_queued(output, clinic=clinic)
    if failed:
        raise typer.Exit(1)


@command(app, "approve")
def approve(
    request_ids: IdsArg,
    services: ServicesOpt = None,
    clinic_code: ClinicOpt = None,
) -> None:
    """Approve requests (doctors only): create or link the portal user, e-mail the patient.

    A CPR number that already has a portal user is linked (no second user; its password
    is kept). Exit 1 when a request was already decided (by whom and when is told).
    """
    from patientportal_cli.services import approvals

    def decide(session: Session, actor: Any, request_id: int) -> ReviewOutcome:
        return approvals.approve(session, actor=actor, request_id=request_id, services=services)

    _decide_each(request_ids, clinic_code, decide, _approved_text)


@command(app, "reject")
def reject(
    request_ids: IdsArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why; e-mailed to the patient.")
    ] = None,
    clinic_code: ClinicOpt = None,
) -> None:
    """Reject requests (doctors only); the patient is e-mailed, with the reason if given."""
    from patientportal_cli.services import approvals

    def decide(session: Session, actor: Any, request_id: int) -> ReviewOutcome:
        return approvals.reject(session, actor=actor, request_id=request_id, reason=reason)

    _decide_each(request_ids, clinic_code, decide, _rejected_text)


# --- review --------------------------------------------------------------------------
REVIEW_HINT = (
    "`requests review` needs a terminal: list the queue with `patientportal requests list`, "
    "then decide with `patientportal requests approve ID...` or `patientportal requests "
    "reject ID... --reason TEXT`."
)


@command(app, "review")
def review(clinic_code: ClinicOpt = None) -> None:
    """Go through the pending requests one at a time (doctors only; needs a terminal).

    For each: approve, approve with fewer services, reject (asks the reason), skip, or
    quit. A summary is printed at the end.
    """
    from patientportal_cli import prompts
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.errors import InvalidInput

    if not prompts.interactive():
        raise InvalidInput(REVIEW_HINT)
    output = out()
    counts = {"approved": 0, "rejected": 0, "skipped": 0, "gone": 0, "left": 0}
    clinic: str | None = None
    try:
        with staff_session(output, clinic=clinic_code) as (session, actor):
            clinic = actor.clinic_code
            _review(session, actor, output, counts)
    finally:
        if counts["approved"] or counts["rejected"]:
            send_queued(output, clinic=clinic)
    if sum(counts.values()):
        parts = [
            f"{counts['approved']} approved",
            f"{counts['rejected']} rejected",
            f"{counts['skipped']} skipped",
        ]
        if counts["gone"]:
            parts.append(f"{counts['gone']} decided by someone else meanwhile")
        if counts["left"]:
            parts.append(f"{counts['left']} not reviewed")
        output.message("Summary: " + ", ".join(parts) + ".")


def _review(session: Session, actor: Any, output: Output, counts: dict[str, int]) -> None:
    from patientportal_cli.services import approvals

    actor.require_role("doctor", action="review registration requests")
    ids = [i.request.id or 0 for i in approvals.list_requests(session, actor=actor)]
    session.rollback()
    if not ids:
        output.message(f"No pending registration requests at clinic {actor.clinic_code}.")
        return
    for n, request_id in enumerate(ids, 1):
        info = approvals.get_request(session, actor=actor, request_id=request_id)
        # read everything now: nothing may load during the prompt
        request, fields, grantable = info.request, _review_fields(info), info.grantable
        status, decided_by = request.status, request.decided_by
        session.rollback()  # no transaction (SQLite: no write lock) while the doctor thinks
        if status != RequestStatus.PENDING:
            output.message(f"Request {request_id} was {status} by {decided_by} meanwhile.")
            counts["gone"] += 1
            continue
        output.panel(f"Request {request_id} ({n} of {len(ids)})", fields)
        choice, services = _ask_decision(grantable, output)
        if choice == "quit":
            counts["left"] += len(ids) - n + 1
            return
        if choice == "skip":
            counts["skipped"] += 1
            continue
        counts[_decide(session, actor, output, request_id, choice, services)] += 1


def _review_fields(info: RequestInfo) -> dict[str, Any]:
    """What the doctor sees of a request while deciding."""
    r = info.request
    return {
        "submitted_at": r.submitted_at,
        "cpr": r.cpr,
        "name": r.name,
        "email": r.email,
        "user": "existing" if info.existing_user else "new",
        "linked_before": info.linked_before,
        "services_asked_for": info.requested,
        "clinic_offers": info.offered,
    }


def _ask_decision(grantable: list[str], output: Output) -> tuple[str, list[str] | None]:
    """approve, fewer (only when something can be granted; with the services ticked),
    reject, skip or quit. "Approve with fewer services" with every service unticked is
    refused, and the decision asked again: approving with no services is a plain
    "Approve" where the clinic offers none of the requested ones, never an accident."""
    from patientportal_cli import prompts

    choices = [("approve", f"Approve (services: {_services(grantable)})")]
    if grantable:
        choices.append(("fewer", "Approve with fewer services"))
    choices += [("reject", "Reject"), ("skip", "Skip"), ("quit", "Quit")]
    while True:
        choice = prompts.select("Decision:", choices, flag="requests approve/reject")
        if choice != "fewer":
            return choice, None
        services = prompts.checkbox(
            "Services to grant (space toggles, enter accepts):",
            [(s, s, True) for s in grantable],
            flag="--services",
        )
        if services:
            return choice, services
        output.warn("No service ticked: tick at least one, or choose Reject or Skip.")


def _decide(
    session: Session,
    actor: Any,
    output: Output,
    request_id: int,
    choice: str,
    services: list[str] | None,
) -> str:
    """Reject (asks the reason) or approve (``services``: those ticked, None: the
    default); the count it adds to: approved, rejected, or gone (decided by someone else
    meanwhile)."""
    from patientportal_cli import prompts
    from patientportal_cli.errors import Conflict, NotFound
    from patientportal_cli.services import approvals

    try:
        if choice == "reject":
            reason = prompts.text(
                "Reason (e-mailed to the patient; may be empty):", flag="--reason"
            )
            decided = approvals.reject(
                session, actor=actor, request_id=request_id, reason=reason or None
            )
            output.success(_rejected_text(decided))
            return "rejected"
        decided = approvals.approve(session, actor=actor, request_id=request_id, services=services)
        output.success(_approved_text(decided))
        return "approved"
    except (NotFound, Conflict) as exc:
        output.warn(str(exc))
        return "gone"
