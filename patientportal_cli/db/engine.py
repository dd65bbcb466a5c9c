"""Engines and sessions for the embedded SQLite file and for PostgreSQL.

SQLite: WAL, foreign keys on every connection, a busy timeout, and every transaction
begins IMMEDIATE (one writer at a time, no deadlock-prone lock upgrades).
PostgreSQL (``postgresql+psycopg://``): the password, when the URL has none, comes
from the keyring (``patientportal config set db-password``) at connect time, when the
server asks for one: a server that lets the user in without (trust, peer, a
``~/.pgpass`` or ``PGPASSWORD`` it accepts) never loads the keyring, whose backend
discovery costs a command more than its whole database work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from patientportal_cli import keystore
from patientportal_cli.errors import DatabaseUnavailable, InvalidInput, KeyringUnavailable

DB_FILENAME = "patientportal.db"
_engines: dict[str, Engine] = {}


def default_url(home: Path) -> str:
    return f"sqlite:///{home / DB_FILENAME}"


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(
            "Invalid database URL: expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB."
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise InvalidInput(
            f"Unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL."
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe(url: str | URL) -> str:
    """The database, never its password, for messages ("the SQLite database /x.db")."""
    try:
        parsed = url if isinstance(url, URL) else parse_url(url)
    except InvalidInput:
        return "the database"
    if parsed.get_backend_name() == "sqlite":
        return f"the SQLite database {parsed.database or ':memory:'}"
    port = parsed.port or 5432
    return (
        f"the PostgreSQL database {parsed.database or ''!r} on {parsed.host or 'localhost'}:{port}"
    )


# Query parameters that carry a secret (libpq reads password= like the user info's).
SECRET_PARAMS = ("password", "sslpassword")


def url_secrets(url: URL) -> list[str]:
    """The secrets written into a URL: its password and any password= query value."""
    found = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if key.lower() in SECRET_PARAMS:
            values = value if isinstance(value, tuple) else (value,)
            found.extend(v for v in values if v)
    return found


def _without_secrets(url: URL) -> URL:
    query = {
        key: ("***" if key.lower() in SECRET_PARAMS else value) for key, value in url.query.items()
    }
    return url.set(query=query)


def safe_url(url: str) -> str:
    """The URL as text with any password (user info or query) replaced by ***."""
    try:
        text = _without_secrets(parse_url(url)).render_as_string(hide_password=True)
    except InvalidInput:
        return "(invalid URL)"
    return text.replace("=%2A%2A%2A", "=***")  # the query's *** as the user info's


def hide_secrets(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` replaced by ***."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return text
    for secret in sorted(url_secrets(parsed), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _private_sqlite_file(path: Path) -> None:
    """The database file, and its -wal/-shm/-journal, 0600 before the first connect:
    created empty (a valid SQLite database) when missing, tightened when it exists and
    belongs to this user.
    SQLite gives the -wal and -shm it creates the database file's mode."""
    from patientportal_cli import files

    files.private_dir(path.parent)
    try:
        files.open_private(path, "ab", exclusive=True).close()
    except FileExistsError:
        pass
    except OSError as exc:
        raise files.named(exc, path) from None
    for suffix in ("", "-wal", "-shm", "-journal"):  # only files this user owns
        files.make_private(path.with_name(path.name + suffix))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class _KeyringPassword:
    """``do_connect``: connect as the URL says; when the server refuses for want of a
    (right) password, take the keyring's db-password, if any, and connect with it (then
    on every later connect of the engine). Without one the server's refusal stands."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.password: str | None = None

    def __call__(
        self, dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> Any:
        if self.password is not None:
            cparams["password"] = self.password
            return None
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as exc:
            if "password" not in str(exc).lower():
                raise
            try:
                password = keystore.get("db-password", self.home)
            except KeyringUnavailable:
                raise exc from None
            if not password:
                raise
        self.password = cparams["password"] = password
        return None  # SQLAlchemy connects with the keyring's password


def get_engine(url: str, home: Path) -> Engine:
    if url in _engines:
        return _engines[url]
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and "mode" not in parsed.query:
            _private_sqlite_file(Path(parsed.database))
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(parsed, connect_args={"connect_timeout": 5}, pool_pre_ping=False)
        if not parsed.password:
            event.listen(engine, "do_connect", _KeyringPassword(home))
    _engines[url] = engine
    return engine


def dispose_all() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def ping(engine: Engine, url: str) -> None:
    """Open (and return to the pool) one connection; DatabaseUnavailable when that fails."""
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        raise connection_error(exc, url) from None


def connection_error(exc: DBAPIError, url: str) -> DatabaseUnavailable:
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    first = hide_secrets(first, url)
    if "password" in first.lower():
        first += " (set it with `patientportal config set db-password`)"
    return DatabaseUnavailable(f"Cannot connect to {describe(url)}: {first}")
