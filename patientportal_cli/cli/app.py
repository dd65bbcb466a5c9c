"""The root command: global options, and the command groups registered. Nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patientportal_cli.cli import (
    approvals,
    audit,
    auth,
    clinic,
    config,
    cpr_change,
    db,
    delegations,
    demo,
    gdpr,
    housekeeping,
    lifecycle,
    mail,
    nomitid,
    patient_import,
    patients,
    portal,
    reconcile,
    registration,
    retention,
    staff,
)
from patientportal_cli.cli.common import STATE, command
from patientportal_cli.cli.completion import complete_clinic

HELP = """Administer patients' logins on the Patientportal.

Exit codes: 0 ok; 1 refused or failed (not found, conflict, already decided, mode
forbids it); 2 bad usage or invalid input; 3 bulk run finished with rejected rows;
4 not logged in or not allowed; 130 interrupted.
"""

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from patientportal_cli import __version__

        typer.echo(f"patientportal {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db_url: Annotated[
        str | None,
        typer.Option("--db", envvar="PATIENTPORTAL_DB_URL", help="Database URL.", show_envvar=True),
    ] = None,
    clinic_code: Annotated[
        str | None,
        typer.Option(
            "--clinic",
            envvar="PATIENTPORTAL_CLINIC",
            help="Clinic code to act on.",
            autocompletion=complete_clinic,
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="PATIENTPORTAL_HOME", help="Config and data directory."),
    ] = None,
    show_cpr: Annotated[
        bool, typer.Option("--show-cpr", help="Show full CPR numbers (written to the audit log).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    STATE.db_url = db_url or None
    STATE.clinic = clinic_code or None
    STATE.home = home.expanduser().resolve() if home else None
    STATE.show_cpr = show_cpr
    private_files(ctx)


def private_files(ctx: typer.Context) -> None:
    """Every command runs under umask 077 (restored when it ends), warns once when the
    home directory is open to other users, and removes spools left by killed runs."""
    import os

    from patientportal_cli import files
    from patientportal_cli.cli.common import home

    previous = os.umask(files.UMASK)
    ctx.call_on_close(lambda: os.umask(previous))
    here = home()
    warning = files.home_warning(here)
    if warning:
        typer.echo(warning, err=True)
    files.sweep_spools(here)


# Every command and group is registered here. A group module declares its own commands
# with ``@command(app, ...)``; commands kept in a module of their own are added below.
command(app, "init")(auth.init)
command(app, "login")(auth.login)
command(app, "logout")(auth.logout)
command(app, "whoami")(auth.whoami)
command(app, "demo")(demo.demo)
command(app, "housekeeping")(housekeeping.housekeeping)
command(patients.app, "import")(patient_import.import_)
command(patients.app, "deactivate")(lifecycle.deactivate)
command(patients.app, "reactivate")(lifecycle.reactivate)
command(patients.app, "change-cpr")(cpr_change.change_cpr)
command(patients.app, "reconcile")(reconcile.reconcile)
command(portal.app, "register")(registration.register)
command(audit.app, "prune")(retention.prune)
command(patients.app, "export")(gdpr.export)
command(patients.app, "erase")(gdpr.erase)
command(audit.app, "retention")(retention.retention_)
app.add_typer(config.app, name="config")
app.add_typer(db.app, name="db")
app.add_typer(clinic.app, name="clinic")
app.add_typer(staff.app, name="staff")
app.add_typer(audit.app, name="audit")
patients.app.add_typer(delegations.guardian_app, name="guardian")
patients.app.add_typer(delegations.proxy_app, name="proxy")
app.add_typer(patients.app, name="patient")
app.add_typer(nomitid.app, name="no-mitid")
app.add_typer(mail.app, name="mail")
app.add_typer(portal.app, name="portal")
app.add_typer(approvals.app, name="requests")


def main() -> None:
    app(prog_name="patientportal")
