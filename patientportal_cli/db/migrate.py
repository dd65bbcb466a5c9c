"""Alembic, driven from inside the package (migrations ship in ``db/migrations``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from patientportal_cli.errors import SchemaBehind

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in db/migrations/versions; a test checks it against Alembic.
HEAD = "0010"


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
    from alembic.util.exc import CommandError

    rev = current(engine)
    if rev is not None and not known(rev):
        raise SchemaBehind(_unknown(rev))
    try:
        with engine.begin() as conn:
            command.upgrade(_config(conn), revision)
    except CommandError as exc:
        raise SchemaBehind(f"Cannot upgrade the schema: {exc}".splitlines()[0]) from None


def known(rev: str) -> bool:
    """Whether ``rev`` is one of this program's migrations."""
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    cfg = _config(None)  # type: ignore[arg-type]
    try:
        return ScriptDirectory.from_config(cfg).get_revision(rev) is not None
    except CommandError:
        return False


def _unknown(rev: str) -> str:
    return (
        f"The database schema is at revision {rev!r}, which this program (schema {HEAD}) "
        "does not know: it was probably migrated by a newer patientportal. Use that "
        "version, or restore a backup and run `patientportal db upgrade`."
    )


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
            f"{url_text[:1].upper()}{url_text[1:]} has no patientportal schema: run "
            "`patientportal db upgrade` (or `patientportal init` on a new installation)."
        )
    if not known(rev):
        raise SchemaBehind(_unknown(rev))
    raise SchemaBehind(
        f"The database schema is at revision {rev}, this program needs {HEAD}: "
        "run `patientportal db upgrade`."
    )
