"""What every command module shares: global state, option aliases, the error edge, and
opening the database / the staff session.

This module must stay cheap to import (only typer and the standard library at module
level): heavy imports happen inside the functions, so ``--help`` and TAB completion
stay fast.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from patientportal_cli.cli.completion import complete_clinic
from patientportal_cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    DomainError,
    InvalidInput,
)

if TYPE_CHECKING:
    from sqlmodel import Session

    from patientportal_cli.config import Config
    from patientportal_cli.output import Output
    from patientportal_cli.services.auth import Actor


@dataclass
class State:
    home: Path | None = None
    db_url: str | None = None
    clinic: str | None = None
    show_cpr: bool = False


STATE = State()


class Fmt(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


# --- option aliases (Annotated) ------------------------------------------------------
OutputOpt = Annotated[
    Fmt,
    typer.Option(
        "--output",
        "-o",
        help="table (default), json or csv; data only on stdout.",
        case_sensitive=False,
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
]


# --- the error edge ------------------------------------------------------------------
F = TypeVar("F", bound=Callable[..., Any])


def debug() -> bool:
    return os.environ.get("PATIENTPORTAL_DEBUG", "") not in ("", "0")


def _external_error(exc: Exception) -> DomainError | None:
    """Errors from libraries that are the user's situation, not our bug."""
    if isinstance(exc, OSError) and exc.filename is not None:  # read-only home, full disk
        return DomainError(f"Cannot use {exc.filename}: {exc.strerror or exc}.")
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

        from patientportal_cli.db.engine import connection_error

        if isinstance(exc, DBAPIError) and exc.connection_invalidated or _is_connect_error(exc):
            try:
                url = db_url()[0]
            except DomainError:
                url = STATE.db_url or ""
            return connection_error(exc, url)  # type: ignore[arg-type]
        if isinstance(exc, IntegrityError):  # a unique key taken by a change made meanwhile
            return DomainError(
                "The change clashes with a change saved at the same moment: run the command "
                "again to see where things stand."
            )
        busy = ("database is locked", "deadlock detected", "could not serialize")
        if isinstance(exc, OperationalError) and any(b in str(exc).lower() for b in busy):
            return DomainError("The database is busy with other changes: try again.")
        storage = ("database or disk is full", "readonly database", "disk i/o error")
        if isinstance(exc, OperationalError) and any(b in str(exc).lower() for b in storage):
            from patientportal_cli.db.engine import describe

            try:
                where = describe(db_url()[0])
            except DomainError:
                where = "the database"
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            return DomainError(f"Cannot write to {where}: {reason}.")
    return None


def _is_connect_error(exc: Exception) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError) and "connect" in str(exc).lower()


def handle_errors(func: F) -> F:
    """Domain errors -> one line on stderr and their exit code; Ctrl-C -> 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from patientportal_cli import output

        try:
            return func(*args, **kwargs)
        except DomainError as exc:
            if debug():
                raise
            output.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            output.error("Interrupted.")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if debug():
                raise
            mapped = _external_error(exc)
            if mapped is not None:
                output.error(str(mapped))
                raise typer.Exit(mapped.exit_code) from None
            output.error(
                f"Unexpected {type(exc).__name__}: {exc}".splitlines()[0]
                + " (set PATIENTPORTAL_DEBUG=1 for details)"
            )
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


def command(app: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """``@app.command`` with the error edge around it."""

    def decorator(func: F) -> F:
        app.command(name, **kwargs)(handle_errors(func))
        return func

    return decorator


# --- config, output ------------------------------------------------------------------
def home() -> Path:
    from patientportal_cli.config import default_home

    return STATE.home or default_home()


def config() -> Config:
    from patientportal_cli import config as config_mod

    return config_mod.load(home())


def out(fmt: Fmt | str = Fmt.table) -> Output:
    from patientportal_cli.output import Output

    return Output(fmt=fmt.value if isinstance(fmt, Fmt) else fmt, show_cpr=STATE.show_cpr)


def read_password_stdin() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise InvalidInput("--password-stdin: no password on stdin.")
    return password


def get_password(password_stdin: bool, message: str = "Password:", *, new: bool = False) -> str:
    if password_stdin:
        return read_password_stdin()
    from patientportal_cli import prompts

    if new:
        from patientportal_cli.services.passwords import check_policy

        return prompts.new_password(message, check=check_policy)
    return prompts.password(message)


# --- database ------------------------------------------------------------------------
def db_url() -> tuple[str, bool]:
    """(URL, is the embedded default)."""
    from patientportal_cli.db.engine import default_url

    url = STATE.db_url or config().get("db-url")
    if url:
        return url, False
    return default_url(home()), True


@contextmanager
def database(*, migrate: bool = True) -> Iterator[Session]:
    """A session on the configured database, schema checked (embedded default: migrated)."""
    from sqlalchemy.exc import DBAPIError
    from sqlmodel import Session

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.db import migrate as migrate_mod

    url, is_default = db_url()
    engine = engine_mod.get_engine(url, home())
    engine_mod.ping(engine, url)
    try:
        if migrate:
            migrate_mod.check(engine, auto_upgrade=is_default, url_text=engine_mod.describe(url))
        with Session(engine, expire_on_commit=False) as session:
            yield session
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_connect_error(exc):
            raise engine_mod.connection_error(exc, url) from None
        raise


def session_token() -> str | None:
    token = os.environ.get("PATIENTPORTAL_TOKEN", "").strip()
    if token:
        return token
    from patientportal_cli import keystore

    stored = keystore.stored_sessions(home())  # the keyring's, else the session file's
    return stored[0] if stored else None


@contextmanager
def staff_session(
    output: Output | None = None, *, clinic: str | None = None
) -> Iterator[tuple[Session, Actor]]:
    """The database and the logged-in staff member (exit 4 when not logged in).

    ``clinic`` (a command's own --clinic) overrides the global one. When ``output`` is
    given, a CPR reveal (``--show-cpr``) it renders is audited.
    """
    from patientportal_cli.services import auth

    if clinic:
        STATE.clinic = clinic
    default = None if STATE.clinic else config().get("clinic")  # config.toml's default

    token = session_token()
    with database() as session:
        actor = auth.resolve(session, token=token, clinic_code=STATE.clinic, default_clinic=default)
        if output is not None:
            output.on_reveal = functools.partial(_audit_reveal, session, actor)
        yield session, actor


def _audit_reveal(session: Session, actor: Actor, cprs: list[str]) -> None:
    from patientportal_cli.services import audit
    from patientportal_cli.vocabulary import Action

    audit.record(
        session,
        actor=actor.username,
        clinic=actor.clinic_code,
        action=Action.CPR_REVEAL,
        target=",".join(cprs[:18]),  # fits the 200 characters of a target; count has all
        details={"count": len(cprs), "command": " ".join(sys.argv[1:3])},
    )
    session.commit()


ClinicOpt = Annotated[
    str | None,
    typer.Option(
        "--clinic",
        help="Clinic code to act on (same as the global --clinic).",
        autocompletion=complete_clinic,
    ),
]
