"""Alembic, driven from inside the package (migrations ship in ``db/migrations``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from patientportal_cli.errors import SchemaBehind

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in db/migrations/versions; a test checks it against Alembic.
HEAD = "0001"


def _config(connection: Connection):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def current(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        try:
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        except DBAPIError:
            conn.rollback()
            return None
    return str(row[0]) if row else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)


def script_head() -> str | None:
    from alembic.script import ScriptDirectory

    cfg = _config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(cfg).get_current_head()


def check(engine: Engine, *, auto_upgrade: bool, url_text: str) -> None:
    """Make sure the schema is current; migrate it when allowed (embedded SQLite)."""
    rev = current(engine)
    if rev == HEAD:
        return
    if auto_upgrade:
        upgrade(engine)
        return
    if rev is None:
        raise SchemaBehind(
            f"The database at {url_text} has no patientportal schema: run `patientportal db upgrade` "
            "(or `patientportal init` on a new installation)."
        )
    raise SchemaBehind(
        f"The database schema is at revision {rev}, this program needs {HEAD}: "
        "run `patientportal db upgrade`."
    )
