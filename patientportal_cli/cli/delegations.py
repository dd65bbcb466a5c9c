"""patient guardian add | list | remove and patient proxy add | list | revoke: who may act
for whom at this clinic (services/delegations.py; registered under `patient` in
cli/app.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from patientportal_cli.cli.common import ClinicOpt, Fmt, OutputOpt, command, out, staff_session
from patientportal_cli.cli.completion import complete_services
from patientportal_cli.vocabulary import Basis

if TYPE_CHECKING:
    from patientportal_cli.services.delegations import DelegationRow

guardian_app = typer.Typer(
    help="Guardians of children under 15 (forældremyndighed): a guardian acts for the "
    "child in the portal until the child's 15th birthday.",
    no_args_is_help=True,
)
proxy_app = typer.Typer(
    help="Proxies under a fuldmagt: a patient lets another adult act for them in the portal, "
    "for some or all services, until an end date (at most 2 years ahead).",
    no_args_is_help=True,
)

CPR_HELP = "DDMMYY-SSSS, DDMMYY SSSS or DDMMYYSSSS."
ChildArg = Annotated[
    str, typer.Argument(metavar="CHILD_CPR", help=f"The child's CPR number: {CPR_HELP}")
]
PatientArg = Annotated[
    str, typer.Argument(metavar="CPR", help=f"The patient's CPR number: {CPR_HELP}")
]
GuardianOpt = Annotated[
    str,
    typer.Option(
        "--guardian", metavar="CPR", help="The guardian's CPR number (a portal user linked here)."
    ),
]
HolderOpt = Annotated[
    str,
    typer.Option(
        "--holder", metavar="CPR", help="The proxy's CPR number (a portal user linked here)."
    ),
]
AllOpt = Annotated[
    bool,
    typer.Option(
        "--all", help="Also those that ended, were revoked or whose people were unlinked."
    ),
]

GUARDIAN_COLUMNS = [
    ("patient_cpr", "Child"),
    ("patient_name", "Child's name"),
    ("holder_cpr", "Guardian"),
    ("holder_name", "Guardian's name"),
    ("basis", "Basis"),
    ("last_day", "Last day"),
    ("status", "Status"),
    ("notice_sent_at", "Notice sent"),
]
PROXY_COLUMNS = [
    ("patient_cpr", "Patient"),
    ("patient_name", "Patient's name"),
    ("holder_cpr", "Proxy"),
    ("holder_name", "Proxy's name"),
    ("services", "Services"),
    ("last_day", "Last day"),
    ("status", "Status"),
]
# patient show / patient access: the delegations a patient is part of here
DELEGATION_COLUMNS = [
    ("kind", "Kind"),
    ("patient_cpr", "Acted for"),
    ("patient_name", "Name"),
    ("holder_cpr", "Acting"),
    ("holder_name", "Name"),
    ("basis", "Basis"),
    ("last_day", "Last day"),
    ("status", "Status"),
    ("services", "Services"),
]


def _who(cpr: str, name: str) -> str:
    from patientportal_cli.services.masking import patient_label

    return patient_label(cpr, name)


def _services(row: DelegationRow) -> str:
    return ", ".join(row.services) or "none"


@command(guardian_app, "add")
def guardian_add(
    child: ChildArg,
    guardian: GuardianOpt,
    basis: Annotated[
        Basis,
        typer.Option(
            "--basis", help="forældremyndighed (custody), or fuldmagt from the custodians."
        ),
    ],
    evidence: Annotated[
        str | None, typer.Option("--evidence", help="What the clinic saw (document, number).")
    ] = None,
    clinic_code: ClinicOpt = None,
) -> None:
    """Let a guardian act for a child under 15 at this clinic.

    Both are portal users linked here (`patient create` / `patient link`); the guardian
    is 18 or older. The access ends by itself at 00:00 (Copenhagen) on the child's 15th
    birthday; `patientportal housekeeping` e-mails the guardian 30 days before.
    """
    from patientportal_cli.services import delegations

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        row = delegations.add_guardian(
            session,
            actor=actor,
            child_cpr=child,
            guardian_cpr=guardian,
            basis=basis.value,
            evidence=evidence,
        )
    output.success(
        f"Guardian added: {_who(row.holder_cpr, row.holder_name)} acts for "
        f"{_who(row.patient_cpr, row.patient_name)} at clinic {actor.clinic_code} "
        f"({row.basis}) through {row.last_day.isoformat()}; it ends by itself on the child's "
        "15th birthday."
    )
    output.message(f"Services: {_services(row)}.")


@command(guardian_app, "list")
def guardian_list(
    expiring: Annotated[
        str | None,
        typer.Option("--expiring", metavar="DAYS", help="Only those ending within DAYS, e.g. 30d."),
    ] = None,
    everything: AllOpt = False,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """This clinic's guardians in force, the soonest to end first (audited as one listing)."""
    from patientportal_cli.services import delegations
    from patientportal_cli.vocabulary import DelegationKind

    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        rows = delegations.listing(
            session,
            actor=actor,
            kind=DelegationKind.GUARDIAN,
            everything=everything,
            expiring=expiring,
            fmt=fmt.value,
        )
        output.rows(
            [r.as_row() for r in rows],
            GUARDIAN_COLUMNS,
            title=f"Guardians at {actor.clinic_code}",
            empty="No guardians.",
        )


@command(guardian_app, "remove")
def guardian_remove(
    child: ChildArg,
    guardian: GuardianOpt,
    clinic_code: ClinicOpt = None,
) -> None:
    """End a guardian's access to a child now (the record is kept)."""
    from patientportal_cli.services import delegations

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        row = delegations.remove_guardian(
            session, actor=actor, child_cpr=child, guardian_cpr=guardian
        )
    output.success(
        f"Guardian removed: {_who(row.holder_cpr, row.holder_name)} no longer acts for "
        f"{_who(row.patient_cpr, row.patient_name)} at clinic {actor.clinic_code}."
    )


@command(proxy_app, "add")
def proxy_add(
    cpr: PatientArg,
    holder: HolderOpt,
    until: Annotated[
        str,
        typer.Option(
            "--until",
            metavar="YYYY-MM-DD",
            help="The last day the fuldmagt works (Copenhagen time): from today, at most 2 "
            "years ahead.",
        ),
    ],
    evidence: Annotated[
        str, typer.Option("--evidence", help="The fuldmagt the clinic saw (document, number).")
    ],
    services: Annotated[
        str | None,
        typer.Option(
            "--services",
            help="Services the proxy may use, comma-separated (e-consultation, booking, "
            "prescription-renewal); default: all the clinic offers.",
            autocompletion=complete_services,
        ),
    ] = None,
    clinic_code: ClinicOpt = None,
) -> None:
    """Let a proxy act for an adult patient (15 or older) under a fuldmagt at this clinic.

    Both are portal users linked here; the proxy is 18 or older. It ends after the
    --until day, when revoked (`patient proxy revoke`), or when either person is
    unlinked from the clinic.
    """
    from patientportal_cli.services import delegations

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        row = delegations.add_proxy(
            session,
            actor=actor,
            cpr=cpr,
            holder_cpr=holder,
            until=until,
            evidence=evidence,
            services=services,
        )
    output.success(
        f"Proxy added: {_who(row.holder_cpr, row.holder_name)} acts for "
        f"{_who(row.patient_cpr, row.patient_name)} at clinic {actor.clinic_code} under a "
        f"fuldmagt through {row.last_day.isoformat()}."
    )
    output.message(f"Services: {_services(row)}.")


@command(proxy_app, "list")
def proxy_list(
    everything: AllOpt = False,
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """This clinic's proxies in force, the soonest to end first (audited as one listing)."""
    from patientportal_cli.services import delegations
    from patientportal_cli.vocabulary import DelegationKind

    output = out(fmt)
    with staff_session(output, clinic=clinic_code) as (session, actor):
        rows = delegations.listing(
            session, actor=actor, kind=DelegationKind.PROXY, everything=everything, fmt=fmt.value
        )
        output.rows(
            [r.as_row() for r in rows],
            PROXY_COLUMNS,
            title=f"Proxies at {actor.clinic_code}",
            empty="No proxies.",
        )


@command(proxy_app, "revoke")
def proxy_revoke(
    cpr: PatientArg,
    holder: HolderOpt,
    clinic_code: ClinicOpt = None,
) -> None:
    """End a proxy now, e.g. when the patient withdraws the fuldmagt (the record is kept)."""
    from patientportal_cli.services import delegations

    output = out()
    with staff_session(output, clinic=clinic_code) as (session, actor):
        row = delegations.revoke_proxy(session, actor=actor, cpr=cpr, holder_cpr=holder)
    output.success(
        f"Proxy revoked: {_who(row.holder_cpr, row.holder_name)} no longer acts for "
        f"{_who(row.patient_cpr, row.patient_name)} at clinic {actor.clinic_code}."
    )
