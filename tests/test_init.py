"""`patientportal init` on both backends: the first clinic and its admin, once; missing
flags named without a terminal; bad values refused before the password is asked.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import select

from patientportal_cli.db.models import Staff
from tests.helpers.cli import PASSWORD, Cli
from tests.helpers.db import audit_actions, db_session

INIT = (
    "init --clinic NORD --clinic-name Nordklinikken --admin anna --admin-name 'Anna Admin' "
    "--password-stdin"
)


def test_init_creates_the_first_clinic_and_admin_once(cli: Cli, db_url: str, home: Path) -> None:
    r = cli(INIT, input=PASSWORD + "\n")
    assert r.stdout == ""
    assert r.stderr == (
        "Initialised clinic NORD (Nordklinikken) with admin anna. Next: patientportal login anna\n"
    )
    with db_session(db_url, home) as s:
        anna = s.exec(select(Staff)).one()
        assert (anna.username, anna.full_name, anna.may_create_clinics) == (
            "anna",
            "Anna Admin",
            True,
        )
        assert anna.password_hash.startswith("$argon2")
        assert PASSWORD not in anna.password_hash
    assert audit_actions(db_url, home) == ["init"]
    r = cli(INIT, input=PASSWORD + "\n", expect=1)
    assert r.stderr == "Error: This database is already initialised: `init` runs only once.\n"
    r = cli("init --clinic X1 --clinic-name X --admin x1 --admin-name X", expect=1)
    assert r.stderr == "Error: This database is already initialised: `init` runs only once.\n"


def test_init_without_terminal_names_the_missing_flag(cli: Cli, db_url: str) -> None:
    r = cli("init", expect=2)
    assert r.stderr == "Error: Missing clinic: pass --clinic (no terminal to ask on).\n"
    r = cli("init --clinic NORD", expect=2)
    assert r.stderr == "Error: Missing clinic name: pass --clinic-name (no terminal to ask on).\n"
    r = cli("init --clinic NORD --clinic-name N", expect=2)
    assert r.stderr == "Error: Missing admin: pass --admin (no terminal to ask on).\n"
    r = cli("init --clinic NORD --clinic-name N --admin anna", expect=2)
    assert r.stderr == "Error: Missing admin name: pass --admin-name (no terminal to ask on).\n"
    r = cli("init --clinic NORD --clinic-name N --admin anna --admin-name A", expect=2)
    assert r.stderr == "Error: Missing password: pass --password-stdin (no terminal to ask on).\n"
    # nothing was created: init still works
    cli(INIT, input=PASSWORD + "\n")


def test_init_refuses_bad_values_before_asking_for_the_password(cli: Cli, db_url: str) -> None:
    r = cli("init --clinic 'N!' --clinic-name N --admin anna --admin-name A", expect=2)
    assert r.stderr == (
        "Error: Invalid clinic code: use 2-32 letters A-Z, digits, '-' or '_', starting with "
        "a letter or digit.\n"
    )
    r = cli("init --clinic NORD --clinic-name N --admin 'Anna B' --admin-name A", expect=2)
    assert r.stderr.startswith("Error: Invalid username: use 2-64 characters a-z")
    r = cli(["init", "--clinic", "NORD", "--clinic-name", "N\x1b[2J", "--admin", "anna"], expect=2)
    assert r.stderr == (
        "Error: Invalid name 'N\\x1b[2J': it contains the control character U+001B.\n"
    )
    r = cli(INIT, input="short\n", expect=2)
    assert r.stderr == (
        "Error: The password needs at least 8 characters, an upper-case letter, a digit.\n"
    )
    r = cli(INIT, input="\n", expect=2)
    assert r.stderr == "Error: --password-stdin: no password on stdin.\n"
    cli(INIT, input=PASSWORD + "\n")


def test_init_takes_the_clinic_from_the_global_option(cli: Cli, db_url: str) -> None:
    cli(
        "--clinic syd init --clinic-name Syd --admin anna --admin-name Anna --password-stdin",
        input=PASSWORD + "\n",
    )
    cli("login anna --password-stdin", input=PASSWORD + "\n")
    assert json.loads(cli("clinic show -o json").stdout)["code"] == "SYD"


def test_a_failed_init_leaves_no_database_behind(cli: Cli, home: Path) -> None:
    """The embedded default: a failed init removes the database file and the home
    directory it created (issue 12.7)."""
    database = home / "patientportal.db"
    r = cli("init --clinic 'N!' --clinic-name N --admin anna --admin-name A", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code")
    assert not database.exists() and not home.exists()
    r = cli("init --clinic NORD --clinic-name N --admin anna --admin-name A", expect=2)
    assert r.stderr == "Error: Missing password: pass --password-stdin (no terminal to ask on).\n"
    assert not home.exists()
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text('mail-from = "a@example.dk"\n')
    cli(INIT, input="short\n", expect=2)
    assert sorted(p.name for p in home.iterdir()) == ["config.toml"]  # the home stays
    cli(INIT, input=PASSWORD + "\n")
    assert database.is_file()
    cli(INIT, input=PASSWORD + "\n", expect=1)  # refused: an existing database stays
    assert database.is_file()
    assert cli("login anna --password-stdin", input=PASSWORD + "\n").exit_code == 0


def test_a_failed_init_on_a_configured_database(cli: Cli, db_url: str, tmp_path: Path) -> None:
    cli("init --clinic 'N!' --clinic-name N --admin anna --admin-name A", expect=2)
    assert not (tmp_path / "test.db").exists()  # the SQLite file of db_url (none on PostgreSQL)
    cli(INIT, input=PASSWORD + "\n")


def test_login_before_init_names_init(cli: Cli, home: Path) -> None:
    r = cli("login anna --password-stdin", input=PASSWORD + "\n", expect=1)
    assert r.stdout == ""
    assert r.stderr == (
        "Error: No database has been set up yet: run `patientportal init` first (or point "
        "--db at the existing database).\n"
    )
    assert not home.exists()  # and none was created by asking


def test_login_on_an_empty_schema_names_init(cli: Cli, db_url: str) -> None:
    cli("db upgrade")
    r = cli("login anna --password-stdin --print-token", input=PASSWORD + "\n", expect=1)
    assert r.stderr == (
        "Error: No database has been set up yet: run `patientportal init` first (or point "
        "--db at the existing database).\n"
    )
    cli(INIT, input=PASSWORD + "\n")
    cli("login anna --password-stdin --print-token", input=PASSWORD + "\n")
