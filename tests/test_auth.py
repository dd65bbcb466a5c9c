"""Staff login, logout and whoami on both backends: the session in the keyring, printed
tokens, API tokens, expired/revoked/unknown tokens (exit 4), sessions bound to a clinic.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import ApiToken
from tests.helpers.cli import LOGIN_FAILED, PASSWORD, Cli, lines
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.db import audit_actions, db_session
from tests.helpers.memory_keyring import MemoryKeyring, no_keyring
from tests.helpers.people import two_clinics

NOT_VALID = "Error: Your session or token is not valid: log in again.\n"


def test_login_keeps_the_session_in_the_keyring(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch, memory_keyring, home: Path
) -> None:
    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    r = cli("login anna --password-stdin", input=PASSWORD + "\n")
    assert r.stdout == ""
    assert r.stderr == "Logged in as anna (Anna Admin). The session lasts 12 hours.\n"
    [(service, user)] = list(memory_keyring.store)
    assert (service, user) == ("patientportal-cli", f"session@{home}")
    assert memory_keyring.store[(service, user)].startswith("pp_")
    r = cli("whoami")
    assert lines(r.stdout) == [
        "username            anna",
        "full name           Anna Admin",
        "clinic              NORD",
        "role                admin",
        "clinics             NORD (admin)",
        "may create clinics  yes",
    ]
    r = cli("logout")
    assert r.stderr == "Logged out.\n"
    assert memory_keyring.store == {}
    r = cli("whoami", expect=4)
    assert r.stderr == "Error: Not logged in: run `patientportal login USERNAME`.\n"
    assert cli("logout").stderr == "Not logged in.\n"


def test_login_print_token(cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    r = cli("login ANNA --password-stdin --print-token", input=PASSWORD + "\n")
    token = r.stdout.strip()
    assert r.stdout == token + "\n" and token.startswith("pp_") and len(token) > 40
    assert r.stderr == "Logged in as anna. Use: export PATIENTPORTAL_TOKEN=<the token>\n"
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)
    assert json.loads(cli("whoami -o json").stdout) == {
        "username": "anna",
        "full_name": "Anna Admin",
        "clinic": "NORD",
        "role": "admin",
        "clinics": ["NORD (admin)"],
        "may_create_clinics": True,
    }


def test_wrong_password_unknown_and_disabled_users_get_the_same_message(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    staff.add("bo", "doctor")
    cli("staff disable bo")
    for user, password in [("anna", "Wrong-pass1"), ("nobody", PASSWORD), ("bo", PASSWORD)]:
        r = cli(f"login {user} --password-stdin --print-token", input=password + "\n", expect=4)
        assert r.stdout == ""
        assert r.stderr == LOGIN_FAILED
    assert audit_actions(db_url, home)[-3:] == ["staff.login_failed"] * 3


def test_login_keyring_only_without_a_keyring_suggests_print_token(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    no_keyring()
    r = cli("login anna --password-stdin --keyring-only", input=PASSWORD + "\n", expect=1)
    assert r.stderr == (
        "Error: No OS keyring to keep the session in (--keyring-only): use `patientportal "
        "login anna --print-token` and export PATIENTPORTAL_TOKEN.\n"
    )
    assert not (home / "session-token").exists()
    token = cli("login anna --password-stdin --print-token", input=PASSWORD + "\n").stdout.strip()
    assert not (home / "session-token").exists()
    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    r = cli("whoami", expect=4)
    assert r.stderr == "Error: Not logged in: run `patientportal login USERNAME`.\n"
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)
    cli("whoami")
    r = cli("logout")  # ends the PATIENTPORTAL_TOKEN session; no keyring needed
    assert r.stderr == "Logged out.\n"
    r = cli("whoami", expect=4)
    assert r.stderr == "Error: This session or token was revoked: log in again.\n"


def test_no_session_expired_revoked_and_unknown_tokens_exit_4(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch, db_url: str, home: Path
) -> None:
    token = staff.login("anna")
    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    for command in ("whoami", "clinic show", "staff list", "audit list", "clinic list"):
        r = cli(command, expect=4)
        assert r.stderr == "Error: Not logged in: run `patientportal login USERNAME`.\n"
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", "pp_nonsense")
    assert cli("whoami", expect=4).stderr == NOT_VALID
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)
    with db_session(db_url, home) as s:
        row = s.exec(select(ApiToken).where(ApiToken.token_hash == _hash(token))).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
        s.commit()
    r = cli("whoami", expect=4)
    assert r.stderr == "Error: Your session has expired: log in again.\n"
    # an API token is revoked by its owner
    staff.login("anna")
    api = cli("staff token create --name ci").stdout.strip()
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", api)
    cli("whoami")
    [row] = json.loads(cli("staff token list -o json").stdout)
    cli(f"staff token revoke {row['id']}")
    r = cli("whoami", expect=4)
    assert r.stderr == "Error: This session or token was revoked: log in again.\n"


def _hash(token: str) -> str:
    from patientportal_cli.services.auth import token_hash

    return token_hash(token)


def test_disabled_staff_lose_their_sessions(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch, db_url: str, home: Path
) -> None:
    staff.add("bo", "doctor")
    staff.add("cy", "secretary")
    bo = staff.login("bo")
    cy = staff.login("cy")
    staff.login("anna")
    r = cli("staff disable bo")
    assert r.stderr == "bo is disabled; their sessions and tokens are revoked.\n"
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", bo)
    assert cli("whoami", expect=4).stderr == (
        "Error: This session or token was revoked: log in again.\n"
    )
    # an account switched off behind the program's back: its live token no longer works
    with db_session(db_url, home) as s:
        s.execute(text("UPDATE staff SET active = false WHERE username = 'cy'"))
        s.commit()
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", cy)
    assert cli("whoami", expect=4).stderr == "Error: This staff account is disabled.\n"


def test_login_with_clinic_binds_the_session(cli: Cli, staff: StaffHelper) -> None:
    two_clinics(cli, staff)
    staff.login("bo", clinic="syd")
    who = json.loads(cli("whoami -o json").stdout)
    assert (who["clinic"], who["role"]) == ("SYD", "secretary")
    assert who["clinics"] == ["NORD (doctor)", "SYD (secretary)"]
    # --clinic still picks another of one's clinics
    assert json.loads(cli("whoami -o json --clinic NORD").stdout)["role"] == "doctor"
    r = cli("--clinic ZZZ login bo --password-stdin --print-token", input=PASSWORD + "\n", expect=1)
    assert r.stderr == "Error: No clinic with code 'ZZZ'.\n"


def test_api_tokens(cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch) -> None:
    r = cli("staff token list")
    assert (r.stdout, r.stderr) == ("", "No API tokens.\n")
    r = cli("staff token create --name 'nightly [red]job[/]' --days 30")
    token = r.stdout.strip()
    assert r.stdout == token + "\n" and token.startswith("pp_")
    assert r.stderr == (
        "Token 2 (nightly [red]job[/]) valid for 30 days. It is shown only this once.\n"
    )
    [row] = json.loads(cli("staff token list -o json").stdout)
    assert row["id"] == 2 and row["name"] == "nightly [red]job[/]"
    assert row["revoked_at"] is None and row["expires_at"].endswith("Z")
    assert token not in cli("staff token list -o json").stdout
    r = cli("staff token list")
    assert lines(r.stdout)[0].split() == ["Id", "Name", "Created", "Expires", "Revoked"]
    assert lines(r.stdout)[2].startswith("2    nightly [red]job[/]   ")
    r = cli("staff token create --days 0", expect=2)
    assert r.stderr == "Error: --days must be between 1 and 3650.\n"
    r = cli("staff token revoke 1", expect=1)  # anna's login session is not an API token
    assert r.stderr == "Error: You have no API token with id 1.\n"
    staff.add("bo", "doctor")
    staff.login("bo")
    r = cli("staff token revoke 2", expect=1)  # anna's token, not bo's
    assert r.stderr == "Error: You have no API token with id 2.\n"
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)  # the API token itself works
    assert json.loads(cli("whoami -o json").stdout)["username"] == "anna"
    assert cli("staff token revoke 2").stderr == "Token 2 revoked.\n"
    staff.login("anna")
    r = cli("staff token revoke 2", expect=1)
    assert r.stderr == "Error: Token 2 is already revoked.\n"
    assert json.loads(cli("staff token list -o json").stdout)[0]["revoked_at"] is not None


def test_logout_revokes_the_keyring_session_and_leaves_an_api_token_valid(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    api_token = cli("staff token create --name nightly").stdout.strip()
    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    cli("login anna --password-stdin", input=PASSWORD + "\n")
    [session_token] = memory_keyring.store.values()
    assert cli("logout").stderr == "Logged out.\n"
    assert memory_keyring.store == {}
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", session_token)
    r = cli("whoami", expect=4)  # revoked in the database, not only forgotten locally
    assert r.stderr == "Error: This session or token was revoked: log in again.\n"
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", api_token)
    r = cli("logout")
    assert r.stderr == (
        "PATIENTPORTAL_TOKEN holds an API token; it stays valid "
        "(end it with `patientportal staff token revoke ID`).\n"
    )
    cli("whoami")
