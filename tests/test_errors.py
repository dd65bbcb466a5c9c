"""How errors met midway through a command are reported: one line each, with the exit code."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_database_errors_met_midway_are_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from sqlalchemy.exc import IntegrityError, OperationalError

    from patientportal_cli.cli import common

    def failing(exc: Exception):  # noqa: ANN202
        @common.handle_errors
        def command() -> None:
            raise exc

        with pytest.raises(typer.Exit) as ended:
            command()
        return ended.value.exit_code, capsys.readouterr().err

    monkeypatch.setattr(common.STATE, "db_url", None)  # the embedded default
    monkeypatch.setattr(common.STATE, "home", home)
    unique = IntegrityError("INSERT", {}, Exception("duplicate key value (cpr)=(0102031234)"))
    assert failing(unique) == (
        1,
        "Error: The change clashes with a change saved at the same moment: run the command "
        "again to see where things stand.\n",
    )
    locked = OperationalError("UPDATE", {}, Exception("database is locked"))
    assert failing(locked) == (1, "Error: The database is busy with other changes: try again.\n")
    gone = OperationalError("SELECT", {}, Exception("could not connect to server"))
    assert failing(gone) == (
        1,
        f"Error: Cannot connect to the SQLite database {home / 'patientportal.db'}: could not "
        "connect to server\n",
    )
    assert failing(ZeroDivisionError("division by zero")) == (
        1,
        "Error: Unexpected ZeroDivisionError: division by zero (set PATIENTPORTAL_DEBUG=1 for "
        "details)\n",
    )
