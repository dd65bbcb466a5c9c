"""Top-level commands: init, login, logout, whoami."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from patientportal_cli.cli.common import (
    STATE,
    ClinicOpt,
    Fmt,
    OutputOpt,
    PasswordStdinOpt,
    config,
    database,
    db_url,
    get_password,
    home,
    out,
    staff_session,
)
from patientportal_cli.cli.completion import complete_username


def _ask(value: str | None, message: str, flag: str, check: Callable[[str], str]) -> str:
    """The value given, or asked for on a terminal (asked again until ``check`` accepts
    it); ``check`` normalises it or raises InvalidInput."""
    if value:
        return check(value)
    from patientportal_cli import prompts
    from patientportal_cli.errors import InvalidInput

    def validate(text: str) -> bool | str:
        try:
            check(text)
        except InvalidInput as exc:
            return str(exc)
        return True

    return check(prompts.text(message, flag=flag, validate=validate))


def init(
    clinic: Annotated[
        str | None, typer.Option("--clinic", help="Code of the first clinic.")
    ] = None,
    clinic_name: Annotated[str | None, typer.Option("--clinic-name", help="Its name.")] = None,
    admin: Annotated[
        str | None, typer.Option("--admin", help="Username of the first admin.")
    ] = None,
    admin_name: Annotated[
        str | None, typer.Option("--admin-name", help="Full name of the admin.")
    ] = None,
    password_stdin: PasswordStdinOpt = False,
) -> None:
    """First run: create the schema, the first clinic and its first admin.

    The admin may also create further clinics. Refuses to run twice.
    """
    created = _new_sqlite_files()
    try:
        _init(clinic, clinic_name, admin, admin_name, password_stdin)
    except BaseException:
        _remove(created)  # a failed init leaves no empty database (or home) behind
        raise


def _init(
    clinic: str | None,
    clinic_name: str | None,
    admin: str | None,
    admin_name: str | None,
    password_stdin: bool,
) -> None:
    from patientportal_cli.db import migrate
    from patientportal_cli.errors import Conflict
    from patientportal_cli.services import catalog, staff
    from patientportal_cli.services.contact import clean_name

    with database(migrate=False) as session:
        engine = session.get_bind()
        if migrate.current(engine) is not None and staff.is_initialised(session):  # type: ignore[arg-type]
            raise Conflict("This database is already initialised: `init` runs only once.")
    # each value is checked as soon as it is known, before the password is asked for
    clinic = _ask(clinic or STATE.clinic, "Clinic code:", "--clinic", catalog.check_clinic_code)
    clinic_name = _ask(clinic_name, "Clinic name:", "--clinic-name", clean_name)
    admin = _ask(admin, "Admin username:", "--admin", staff.check_username)
    admin_name = _ask(admin_name, "Admin full name:", "--admin-name", clean_name)
    password = get_password(password_stdin, f"Password for {admin}:", new=True)
    with database(migrate=False) as session:
        migrate.upgrade(session.get_bind())  # type: ignore[arg-type]
        new_clinic, admin_staff = staff.init(
            session,
            clinic_code=clinic,
            clinic_name=clinic_name,
            admin=admin,
            admin_name=admin_name,
            password=password,
        )
    out().success(
        f"Initialised clinic {new_clinic.code} ({new_clinic.name}) with admin "
        f"{admin_staff.username}. Next: patientportal login {admin_staff.username}"
    )


def _new_sqlite_files() -> list[Path]:
    """What opening the database would create: the SQLite file (with its -wal, -shm and
    -journal) when it does not exist yet, and the directories above it that do not."""
    from patientportal_cli.db.engine import parse_url

    parsed = parse_url(db_url()[0])
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return []
    path = Path(parsed.database).expanduser().absolute()
    if parsed.database == ":memory:" or path.exists():
        return []
    dirs = []
    here = path.parent
    while not here.exists() and here != here.parent:
        dirs.append(here)
        here = here.parent
    return [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal")), *dirs]


def _remove(created: list[Path]) -> None:
    """Remove the files (and then the directories, if empty) in ``created``."""
    import contextlib

    from patientportal_cli.db import engine as engine_mod

    if not created:
        return
    engine_mod.dispose_all()
    for path in created:
        with contextlib.suppress(OSError):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


def login(
    username: Annotated[
        str, typer.Argument(help="Your username.", autocompletion=complete_username)
    ],
    password_stdin: PasswordStdinOpt = False,
    print_token: Annotated[
        bool,
        typer.Option(
            "--print-token", help="Print the session token instead of keeping it in the keyring."
        ),
    ] = False,
    keyring_only: Annotated[
        bool,
        typer.Option(
            "--keyring-only",
            help="Without an OS keyring, refuse rather than keep the session in a 0600 file.",
        ),
    ] = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Log in; the session (12 h) keeps the clinic you log in at (--clinic, else config's
    clinic, else your only clinic). It is kept in the OS keyring, without one in
    HOME/session-token (0600), or printed with --print-token."""
    from patientportal_cli import keystore
    from patientportal_cli.errors import KeyringUnavailable
    from patientportal_cli.services import auth

    if keyring_only and not print_token and not keystore.available():
        raise KeyringUnavailable(
            "No OS keyring to keep the session in (--keyring-only): use `patientportal "
            f"login {username} --print-token` and export PATIENTPORTAL_TOKEN."
        )
    _require_database()
    clinic = clinic_code or STATE.clinic
    default = None if clinic else config().get("clinic")
    password = get_password(password_stdin, "Password:")
    with database() as session:
        token, staff = auth.login(
            session,
            username=username.strip().lower(),
            password=password,
            clinic_code=clinic,
            default_clinic=default,
        )
    if print_token:
        out().data_line(token)
        out().message(f"Logged in as {staff.username}. Use: export PATIENTPORTAL_TOKEN=<the token>")
        return
    path = keystore.keep_session(home(), token, keyring_only=keyring_only)
    if path is not None:
        out().message(
            f"No OS keyring: the session is kept in {path} (readable only by you); "
            "`patientportal logout` removes it."
        )
    out().success(f"Logged in as {staff.username} ({staff.full_name}). The session lasts 12 hours.")


def _require_database() -> None:
    """NotFound, naming `init`, when the embedded database does not exist yet (rather than
    create an empty one and then refuse the login)."""
    from patientportal_cli.db.engine import DB_FILENAME
    from patientportal_cli.errors import NotFound

    _url, is_default = db_url()
    if is_default and not (home() / DB_FILENAME).exists():
        raise NotFound(
            "No database has been set up yet: run `patientportal init` first "
            "(or point --db at the existing database)."
        )


def logout() -> None:
    """End your login session: the one kept in the keyring (or the session file) and,
    when PATIENTPORTAL_TOKEN holds a session from `login --print-token`, that one. An API
    token in PATIENTPORTAL_TOKEN stays valid (end it with `staff token revoke ID`)."""
    import os

    from patientportal_cli import keystore
    from patientportal_cli.services import auth

    stored = keystore.stored_sessions(home())
    env_token = os.environ.get("PATIENTPORTAL_TOKEN", "").strip() or None
    if not stored and not env_token:
        out().message("Not logged in.")
        return
    outcomes = {}
    with database() as session:
        for token in {*stored, *([env_token] if env_token else [])}:
            outcomes[token] = auth.logout(session, token=token)
    if stored:
        keystore.forget_sessions(home())
    if env_token and outcomes.get(env_token) == "api":
        out().message(
            "PATIENTPORTAL_TOKEN holds an API token; it stays valid "
            "(end it with `patientportal staff token revoke ID`)."
        )
        if not stored:
            return
    out().success("Logged out.")


def whoami(
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Who is logged in, at which clinics, with which role(s)."""
    from patientportal_cli.services.catalog import show_roles

    output = out(fmt)
    with staff_session(clinic=clinic_code) as (_session, actor):
        output.record(
            {
                "username": actor.username,
                "full_name": actor.full_name,
                "clinic": actor.clinic_code,
                "role": show_roles(actor.role) if actor.role is not None else None,
                "clinics": [
                    f"{code} ({show_roles(role)})" for code, role in sorted(actor.roles.items())
                ],
                "may_create_clinics": actor.may_create_clinics,
            }
        )
