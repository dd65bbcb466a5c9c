"""db upgrade | current | check (Alembic)."""

from __future__ import annotations

import typer

from patientportal_cli.cli.common import command, database, out

app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@command(app, "upgrade")
def upgrade() -> None:
    """Bring the database schema up to date."""
    from patientportal_cli.db import migrate

    with database(migrate=False) as session:
        engine = session.get_bind()
        before = migrate.current(engine)  # type: ignore[arg-type]
        migrate.upgrade(engine)  # type: ignore[arg-type]
    if before == migrate.HEAD:
        out().message(f"Already at the newest schema ({migrate.HEAD}).")
    else:
        out().success(f"Upgraded the schema from {before or 'empty'} to {migrate.HEAD}.")


@command(app, "current")
def current() -> None:
    """Print the schema revision of the database."""
    from patientportal_cli.db import migrate

    with database(migrate=False) as session:
        rev = migrate.current(session.get_bind())  # type: ignore[arg-type]
    out().data_line(rev or "none")


@command(app, "check")
def check() -> None:
    """Exit 0 when the schema is current, 1 (with the remedy) when it is behind."""
    from patientportal_cli.cli.common import db_url
    from patientportal_cli.db import migrate
    from patientportal_cli.db.engine import describe

    with database(migrate=False) as session:
        where = describe(db_url()[0])
        migrate.check(session.get_bind(), auto_upgrade=False, url_text=where)  # type: ignore[arg-type]
    out().success(f"The schema is current ({migrate.HEAD}).")
