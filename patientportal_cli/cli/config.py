"""config show | set KEY VALUE | unset KEY (secrets go to the keyring, never printed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patientportal_cli.cli.common import Fmt, OutputOpt, command, config, home, out
from patientportal_cli.cli.completion import complete_setting

app = typer.Typer(help="Settings in config.toml; secrets in the OS keyring.", no_args_is_help=True)


@command(app, "show")
def show(fmt: OutputOpt = Fmt.table) -> None:
    """Show the settings (secrets only as set / not set)."""
    from patientportal_cli import keystore
    from patientportal_cli.config import SECRETS, SETTINGS, display_value
    from patientportal_cli.errors import KeyringUnavailable

    cfg = config()
    rows = [
        {
            "key": k,
            "value": display_value(k, cfg.get(k)),
            "source": cfg.source(k),
            "description": help_text,
        }
        for k, help_text in SETTINGS.items()
    ]
    for key, help_text in SECRETS.items():
        try:
            state = "(set, in keyring)" if keystore.get(key, home()) else "(not set)"
        except KeyringUnavailable:
            state = "(no keyring available)"
        source = "keyring" if state.startswith("(set") else ""
        rows.append({"key": key, "value": state, "source": source, "description": help_text})
    out(fmt).rows(
        rows,
        [("key", "Key"), ("value", "Value"), ("source", "From"), ("description", "Description")],
    )
    out().message(f"Config file: {cfg.path}")


@command(app, "path")
def path(fmt: OutputOpt = Fmt.table) -> None:
    """Where the data goes: the home directory, config.toml, the database and the session
    file (used only without an OS keyring)."""
    import os

    from patientportal_cli import keystore
    from patientportal_cli.cli.common import STATE, db_url
    from patientportal_cli.db.engine import parse_url, safe_url

    cfg = config()
    url, is_default = db_url()
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        database = str(Path(parsed.database).expanduser().absolute())
    else:
        database = safe_url(url)
    if is_default:
        source = "default"
    elif STATE.db_url:  # --db, or its environment variable
        env = os.environ.get("PATIENTPORTAL_DB_URL")
        source = "PATIENTPORTAL_DB_URL" if env == STATE.db_url else "--db"
    else:
        source = cfg.source("db-url")
    out(fmt).record(
        {
            "home": str(home()),
            "config_file": str(cfg.path),
            "database": database,
            "database_from": source,
            "session_file": str(keystore.session_file(home())),
        }
    )


@command(app, "set")
def set_(
    key: Annotated[str, typer.Argument(help="Setting name.", autocompletion=complete_setting)],
    value: Annotated[
        str | None, typer.Argument(help="Value (secrets: omit it and you are asked).")
    ] = None,
    value_stdin: Annotated[
        bool, typer.Option("--value-stdin", help="Read a secret's value from stdin.")
    ] = False,
) -> None:
    """Set a setting; db-password and smtp-password are asked for and kept in the keyring."""
    from patientportal_cli import keystore, prompts
    from patientportal_cli.config import SECRETS, check_key
    from patientportal_cli.errors import InvalidInput

    check_key(key)
    if key in SECRETS:
        if value is not None:
            raise InvalidInput(
                f"Secrets are never given as arguments: run `patientportal config set {key}` "
                "and type it, or pass --value-stdin."
            )
        from patientportal_cli.cli.common import read_password_stdin

        keystore.require(key)  # before anything is typed
        secret = (
            read_password_stdin()
            if value_stdin
            else prompts.password(f"{key}:", flag="--value-stdin", what=key)
        )
        keystore.set(key, home(), secret)
        out().success(f"{key} stored in the OS keyring.")
        return
    if value is None:
        raise InvalidInput(f"Missing VALUE: patientportal config set {key} VALUE")
    stored = config().set(key, value)
    out().success(f"{key} = {stored}")


@command(app, "unset")
def unset(key: Annotated[str, typer.Argument(autocompletion=complete_setting)]) -> None:
    """Remove a setting (or delete a secret from the keyring)."""
    from patientportal_cli import keystore
    from patientportal_cli.config import SECRETS, check_key

    check_key(key)
    removed = keystore.delete(key, home()) if key in SECRETS else config().unset(key)
    out().message(f"{key} removed." if removed else f"{key} was not set.")
