"""The foundation through the CLI, on both backends: init, login/logout/whoami, sessions
and tokens, staff, clinics, config. Exact output lines and exit codes.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail
from sqlalchemy import text
from sqlmodel import select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import ApiToken, AuditEvent, Staff
from tests.helpers.cli import PASSWORD, Cli, lines
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.db import db_session
from tests.helpers.memory_keyring import MemoryKeyring

INIT = (
    "init --clinic NORD --clinic-name Nordklinikken --admin anna --admin-name 'Anna Admin' "
    "--password-stdin"
)
NOT_VALID = "Error: Your session or token is not valid: log in again.\n"
LOGIN_FAILED = (
    "Error: Login failed: wrong username or password, or the account is disabled or locked "
    "(5 failed logins lock it for 15 minutes).\n"
)


def actions(db_url: str, home: Path) -> list[str]:
    with db_session(db_url, home) as s:
        return [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.id))]  # type: ignore[arg-type]


def no_keyring() -> None:
    keyring.set_keyring(fail.Keyring())


def two_clinics(cli: Cli, staff: StaffHelper) -> None:
    """anna (admin at NORD and SYD), bo (doctor at NORD, secretary at SYD)."""
    cli("clinic create SYD --name Sydklinikken")
    staff.add("bo", "doctor", clinic="NORD")
    cli("staff add bo --name Bo --role secretary --clinic SYD")


# --- init ----------------------------------------------------------------------------


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
    assert actions(db_url, home) == ["init"]
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


# --- login, logout, whoami -------------------------------------------------------------


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
    assert actions(db_url, home)[-3:] == ["staff.login_failed"] * 3


def test_login_without_a_keyring_suggests_print_token(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_keyring()
    r = cli("login anna --password-stdin", input=PASSWORD + "\n", expect=1)
    assert r.stderr == (
        "Error: No OS keyring to keep the session in: use `patientportal login anna "
        "--print-token` and export PATIENTPORTAL_TOKEN.\n"
    )
    token = cli("login anna --password-stdin --print-token", input=PASSWORD + "\n").stdout.strip()
    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    r = cli("whoami", expect=4)
    assert r.stderr == (
        "Error: Not logged in, and there is no OS keyring to keep a session in: run "
        "`patientportal login USERNAME --print-token` and export PATIENTPORTAL_TOKEN.\n"
    )
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


# --- staff ---------------------------------------------------------------------------


def test_staff_list_in_every_format(cli: Cli, staff: StaffHelper) -> None:
    staff.add("bo", "doctor", name="Bo [bold]Berg[/]")
    staff.add("cy", "secretary", name="Cy :smile: [/oops]")
    r = cli("staff list")
    assert r.stderr == ""
    assert lines(r.stdout) == [
        "Staff of NORD",
        "Username   Name                 Role        Active",
        "-",
        "anna       Anna Admin           admin       yes",
        "bo         Bo [bold]Berg[/]     doctor      yes",
        "cy         Cy :smile: [/oops]   secretary   yes",
    ]
    assert cli("staff list -o csv").stdout == (
        "username,full_name,role,active\n"
        "anna,Anna Admin,admin,yes\n"
        "bo,Bo [bold]Berg[/],doctor,yes\n"
        "cy,Cy :smile: [/oops],secretary,yes\n"
    )
    assert json.loads(cli("staff list -o json").stdout) == [
        {"username": "anna", "full_name": "Anna Admin", "role": "admin", "active": True},
        {"username": "bo", "full_name": "Bo [bold]Berg[/]", "role": "doctor", "active": True},
        {"username": "cy", "full_name": "Cy :smile: [/oops]", "role": "secretary", "active": True},
    ]


def test_staff_add(cli: Cli, staff: StaffHelper, db_url: str, home: Path) -> None:
    r = cli("staff add Bo --name 'Bo Berg' --role doctor --password-stdin", input=PASSWORD + "\n")
    assert r.stderr == "Added bo with the role doctor at clinic NORD.\n"
    r = cli("staff add bo --name 'Bo Berg' --role secretary", expect=1)
    assert r.stderr == "Error: bo already works at clinic NORD.\n"
    r = cli("staff add cy --name Cy --role secretary", expect=2)
    assert r.stderr == "Error: Missing password: pass --password-stdin (no terminal to ask on).\n"
    r = cli("staff add cy --name Cy --role secretary --password-stdin", input="abc\n", expect=2)
    assert r.stderr == (
        "Error: The password needs at least 8 characters, an upper-case letter, a digit.\n"
    )
    r = cli("staff add 'c y' --name Cy --role secretary", expect=2)
    assert r.stderr.startswith("Error: Invalid username:")
    r = cli(["staff", "add", "cy", "--name", "\x1b[2J", "--role", "doctor"], expect=2)
    assert r.stderr == "Error: Invalid name '\\x1b[2J': it contains the control character U+001B.\n"
    r = cli("staff add cy --name Cy --role boss", expect=2)
    assert r.stderr == (
        "Error: Unknown role 'boss': use admin, doctor or secretary (or several, "
        "comma-separated: admin,doctor).\n"
    )
    assert actions(db_url, home).count("staff.add") == 1
    staff.login("bo", PASSWORD)


def test_existing_user_of_another_clinic_gets_a_role_without_a_new_password(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    cli("clinic create SYD --name Syd")
    staff.add("bo", "doctor", clinic="NORD")
    r = cli("staff add BO --name 'Other Name' --role secretary --clinic SYD")
    assert r.stderr == (
        "Added the existing account bo with the role secretary at clinic SYD; its password "
        "is unchanged.\n"
    )
    with db_session(db_url, home) as s:
        bo = s.exec(select(Staff).where(Staff.username == "bo")).one()
        assert bo.full_name == "Bo"  # name and password unchanged
    staff.login("bo", PASSWORD)
    assert json.loads(cli("whoami -o json --clinic SYD").stdout)["role"] == "secretary"


def test_set_role_and_the_last_admin(cli: Cli, staff: StaffHelper, db_url: str, home: Path) -> None:
    staff.add("bo", "doctor")
    r = cli("staff set-role anna doctor", expect=1)
    assert r.stderr == "Error: anna is the last admin of clinic NORD.\n"
    r = cli("staff set-role bo admin")
    assert r.stderr == "bo is now admin at clinic NORD.\n"
    r = cli("staff set-role anna secretary")
    assert r.stderr == "anna is now secretary at clinic NORD.\n"
    r = cli("staff set-role bo doctor", expect=4)
    assert r.stderr == (
        "Error: Only an admin at clinic NORD can change staff (you are secretary).\n"
    )
    staff.login("bo")
    r = cli("staff set-role bo doctor", expect=1)
    assert r.stderr == "Error: bo is the last admin of clinic NORD.\n"
    r = cli("staff disable bo", expect=4)
    assert r.stderr == "Error: You cannot disable yourself.\n"
    r = cli("staff set-role nobody doctor", expect=1)
    assert r.stderr == "Error: No staff member 'nobody' at clinic NORD.\n"
    r = cli("staff set-role anna chief", expect=2)
    assert r.stderr.startswith("Error: Unknown role 'chief': use admin, doctor or secretary")
    assert cli("staff set-role bo admin").stderr == "bo is now admin at clinic NORD.\n"  # no-op
    with db_session(db_url, home) as s:
        roles = [
            json.loads(e.details)
            for e in s.exec(select(AuditEvent).where(AuditEvent.action == "staff.set_role"))
        ]
    assert roles == [{"from": "doctor", "to": "admin"}, {"from": "admin", "to": "secretary"}]


def test_a_disabled_admin_does_not_count_as_an_admin(cli: Cli, staff: StaffHelper) -> None:
    staff.add("bo", "admin")
    cli("staff disable bo")
    r = cli("staff set-role anna doctor", expect=1)
    assert r.stderr == "Error: anna is the last admin of clinic NORD.\n"


@pytest.mark.parametrize("role", ["doctor", "secretary"])
def test_only_admins_do_admin_work(cli: Cli, staff: StaffHelper, role: str) -> None:
    staff.add("bo", role)
    staff.add("cy", "secretary")
    staff.login("bo")
    refused = {
        "staff add dd --name D --role doctor": "add staff",
        "staff set-role cy doctor": "change staff",
        "staff disable cy": "change staff",
        "clinic set-registration open": "change the registration mode",
        "clinic services --disable booking": "change the clinic's services",
    }
    for command, what in refused.items():
        r = cli(command, expect=4)
        assert r.stderr == f"Error: Only an admin at clinic NORD can {what} (you are {role}).\n"
    r = cli("clinic create SYD --name Syd", expect=4)
    assert r.stderr == "Error: bo may not create clinics.\n"
    # what every role may do
    cli("staff list")
    cli("clinic show")
    cli("clinic services")
    cli("audit list")


def test_disable_someone_working_at_two_clinics_only_removes_the_role(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_clinics(cli, staff)
    bo = staff.login("bo", clinic="NORD")
    staff.login("anna")
    r = cli("staff disable bo --clinic SYD")
    assert r.stderr == "bo no longer works at clinic SYD.\n"
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", bo)
    who = json.loads(cli("whoami -o json").stdout)
    assert who["clinics"] == ["NORD (doctor)"]
    r = cli("whoami --clinic SYD", expect=4)
    assert r.stderr == "Error: bo does not work at clinic SYD.\n"


def test_a_disabled_account_is_not_enabled_again_by_staff_add(cli: Cli, staff: StaffHelper) -> None:
    staff.add("bo", "doctor")
    cli("staff disable bo")
    r = cli(
        "staff add bo --name Bo --role secretary --password-stdin", input="New-pass-2\n", expect=1
    )
    assert r.stderr == (
        "Error: The account bo is disabled: only staff who may create clinics can enable it "
        "again (`patientportal staff account bo --enable`).\n"
    )
    r = cli("login bo --password-stdin --print-token", input="New-pass-2\n", expect=4)
    assert r.stderr == LOGIN_FAILED
    # anna may create clinics: she enables the account; bo keeps his own password
    assert cli("staff account bo --enable").stderr == "bo: enabled.\n"
    r = cli("staff add bo --name Bo --role secretary")
    assert r.stderr == (
        "Added the existing account bo with the role secretary at clinic NORD; its password "
        "is unchanged.\n"
    )
    staff.login("bo", PASSWORD)
    assert json.loads(cli("whoami -o json").stdout)["role"] == "secretary"


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


# --- clinics -------------------------------------------------------------------------


def test_clinic_list_and_show_with_danish_labels(cli: Cli, staff: StaffHelper) -> None:
    cli("clinic create syd --name 'Syd [bold]klinik[/] :smile:' --registration approval")
    r = cli("clinic list")
    assert lines(r.stdout) == [
        "Code   Name                          Mode       Registration                                  Services",
        "-",
        "NORD   Nordklinikken                 none       Ingen online selv-oprettelse                  e-consultation, booking, prescription-renewal",
        "SYD    Syd [bold]klinik[/] :smile:   approval   Online selv-oprettelse med læge-godkendelse   e-consultation, booking, prescription-renewal",
    ]
    assert cli("clinic list -o csv").stdout.splitlines()[0] == (
        "code,name,registration_mode,registration_label,services"
    )
    r = cli("clinic show --clinic SYD")
    shown = lines(r.stdout)
    assert shown[0] == "Clinic SYD"
    assert shown[1:6] == [
        "code                SYD",
        "name                Syd [bold]klinik[/] :smile:",
        "registration mode   approval",
        "registration label  Online selv-oprettelse med læge-godkendelse",
        "services            e-consultation, booking, prescription-renewal",
    ]
    assert shown[6].startswith("created at          20") and shown[6].endswith(" UTC")
    assert shown[7] == "pending requests    0"
    data = json.loads(cli("clinic show -o json --clinic NORD").stdout)
    assert data["registration_label"] == "Ingen online selv-oprettelse"
    assert data["services"] == ["e-consultation", "booking", "prescription-renewal"]
    assert data["created_at"].endswith("Z")


def test_clinic_create(cli: Cli, staff: StaffHelper, db_url: str, home: Path) -> None:
    r = cli("clinic create syd --name Sydklinikken")
    assert r.stderr == "Created clinic SYD (Sydklinikken); you are its admin.\n"
    r = cli("clinic create SYD --name Again", expect=1)
    assert r.stderr == "Error: A clinic with code SYD already exists.\n"
    r = cli("clinic create 'S Y D' --name X", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")
    r = cli("clinic create ÆBLE --name X", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")
    r = cli("clinic create OEST --name X --registration sometimes", expect=2)
    assert "'sometimes' is not one of 'none', 'approval', 'open'" in r.stderr
    assert actions(db_url, home)[-1] == "clinic.create"
    assert json.loads(cli("whoami -o json --clinic SYD").stdout)["role"] == "admin"


def test_clinic_codes_given_with_clinic(cli: Cli, staff: StaffHelper) -> None:
    r = cli("clinic show --clinic 'bad code!'", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")
    r = cli("--clinic x clinic show", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")
    r = cli("clinic show --clinic NOPE", expect=1)
    assert r.stderr == "Error: No clinic with code 'NOPE'.\n"
    cli("clinic create SYD --name Syd")
    staff.add("bo", "doctor", clinic="NORD")
    staff.login("bo")
    r = cli("clinic show --clinic SYD", expect=4)
    assert r.stderr == "Error: bo does not work at clinic SYD.\n"
    r = cli("staff list --clinic syd", expect=4)
    assert r.stderr == "Error: bo does not work at clinic SYD.\n"


def test_staff_of_several_clinics_must_pick_one(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("clinic create SYD --name Syd")
    for command in ("clinic show", "staff list", "audit list", "clinic set-registration open"):
        r = cli(command, expect=2)
        assert r.stderr == "Error: You work at several clinics (NORD, SYD): pass --clinic CODE.\n"
    assert json.loads(cli("--clinic syd clinic show -o json").stdout)["code"] == "SYD"
    monkeypatch.setenv("PATIENTPORTAL_CLINIC", "SYD")
    assert json.loads(cli("clinic show -o json").stdout)["code"] == "SYD"
    monkeypatch.delenv("PATIENTPORTAL_CLINIC")
    cli("config set clinic nord")  # the default clinic from config.toml
    assert json.loads(cli("clinic show -o json").stdout)["code"] == "NORD"
    assert json.loads(cli("clinic show -o json --clinic SYD").stdout)["code"] == "SYD"
    staff.login("anna", clinic="SYD")  # the clinic chosen at login comes first
    assert json.loads(cli("clinic show -o json").stdout)["code"] == "SYD"
    cli("config set clinic OEST")  # a default where one does not work is passed over
    staff.login("anna")
    r = cli("clinic show", expect=2)
    assert r.stderr == "Error: You work at several clinics (NORD, SYD): pass --clinic CODE.\n"


def test_set_registration(cli: Cli, staff: StaffHelper, db_url: str, home: Path) -> None:
    r = cli("clinic set-registration approval")
    assert r.stderr == (
        "Clinic NORD: registration mode none -> approval "
        "(Online selv-oprettelse med læge-godkendelse).\n"
    )
    r = cli("clinic set-registration approval")
    assert r.stderr == (
        "Clinic NORD already has registration mode approval "
        "(Online selv-oprettelse med læge-godkendelse).\n"
    )
    r = cli("clinic set-registration open")
    assert r.stderr == (
        "Clinic NORD: registration mode approval -> open "
        "(Online selv-oprettelse uden læge-godkendelse).\n"
    )
    r = cli("clinic set-registration sometimes", expect=2)
    assert "'sometimes' is not one of 'none', 'approval', 'open'" in r.stderr
    r = cli("clinic set-registration none --pending maybe", expect=2)
    assert "'maybe' is not one of 'keep', 'reject', 'approve'" in r.stderr
    with db_session(db_url, home) as s:
        changes = [
            json.loads(e.details)
            for e in s.exec(
                select(AuditEvent).where(AuditEvent.action == "clinic.set_registration")
            )
        ]
    assert changes == [
        {"from": "none", "to": "approval", "pending": None, "handled": 0},
        {"from": "approval", "to": "open", "pending": None, "handled": 0},
    ]


def test_clinic_services(cli: Cli, staff: StaffHelper, db_url: str, home: Path) -> None:
    assert lines(cli("clinic services").stdout) == [
        "Service                Label             Enabled",
        "-",
        "e-consultation         E-konsultation    yes",
        "booking                Tidsbestilling    yes",
        "prescription-renewal   Receptfornyelse   yes",
    ]
    r = cli("clinic services --disable booking --disable e-consultation -o csv")
    assert r.stdout == (
        "service,label,enabled\n"
        "e-consultation,E-konsultation,no\n"
        "booking,Tidsbestilling,no\n"
        "prescription-renewal,Receptfornyelse,yes\n"
    )
    r = cli("clinic services --enable booking -o json")
    assert [s["service"] for s in json.loads(r.stdout) if s["enabled"]] == [
        "booking",
        "prescription-renewal",
    ]
    r = cli("clinic services --enable booking --disable booking", expect=2)
    assert r.stderr == "Error: Service 'booking' cannot be both enabled and disabled.\n"
    r = cli("clinic services --enable massage", expect=2)
    assert "'massage' is not one of" in r.stderr
    cli("clinic services --enable booking")  # no change: no audit event
    assert actions(db_url, home).count("clinic.services") == 2


# --- config --------------------------------------------------------------------------


def test_config_set_show_unset(cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = cli("config set smtp-host mail.example.dk")
    assert r.stderr == "smtp-host = mail.example.dk\n"
    assert cli("config set smtp-starttls No").stderr == "smtp-starttls = no\n"
    assert cli("config set clinic nord").stderr == "clinic = NORD\n"
    assert (home / "config.toml").read_text() == (
        '"clinic" = "NORD"\n"smtp-host" = "mail.example.dk"\n"smtp-starttls" = "no"\n'
    )
    monkeypatch.setenv("PATIENTPORTAL_SMTP_HOST", "env.example.dk")
    r = cli("config show -o json")
    shown = {row["key"]: row for row in json.loads(r.stdout)}
    assert r.stderr == f"Config file: {home / 'config.toml'}\n"
    assert (shown["smtp-host"]["value"], shown["smtp-host"]["source"]) == (
        "env.example.dk",
        "PATIENTPORTAL_SMTP_HOST",
    )
    assert (shown["clinic"]["value"], shown["clinic"]["source"]) == ("NORD", "config.toml")
    assert (shown["smtp-port"]["value"], shown["smtp-port"]["source"]) == ("", "")
    assert shown["db-password"]["value"] == "(not set)"
    r = cli("config show")
    assert "smtp-host        env.example.dk" in r.stdout
    assert cli("config unset smtp-host").stderr == "smtp-host removed.\n"
    assert cli("config unset smtp-host").stderr == "smtp-host was not set.\n"
    assert "smtp-host" not in (home / "config.toml").read_text()


def test_config_refuses_bad_keys_and_values(cli: Cli, home: Path) -> None:
    r = cli("config set colour blue", expect=2)
    assert r.stderr == (
        "Error: Unknown setting 'colour'. Known settings: db-url, clinic, mail-transport, "
        "mail-from, smtp-host, smtp-port, smtp-username, smtp-starttls, db-password, "
        "smtp-password, audit-key.\n"
    )
    bad = {
        "smtp-port 70000": "Error: Invalid smtp-port '70000': use a number from 1 to 65535.\n",
        "smtp-port abc": "Error: Invalid smtp-port 'abc': use a number from 1 to 65535.\n",
        "smtp-starttls maybe": "Error: Invalid smtp-starttls 'maybe': use yes or no.\n",
        "mail-transport pigeon": "Error: Unknown mail-transport 'pigeon': use maildir or smtp.\n",
        "db-url mysql://x@y/z": "Error: Unsupported database 'mysql': use SQLite or PostgreSQL.\n",
        "smtp-host ''": "Error: Empty value for smtp-host: use `patientportal config unset smtp-host`.\n",
        "smtp-host": "Error: Missing VALUE: patientportal config set smtp-host VALUE\n",
    }
    for args, message in bad.items():
        assert cli(f"config set {args}", expect=2).stderr == message
    r = cli("config set clinic 'a b'", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")
    r = cli("config set db-url postgresql+psycopg://pp:Hemmelig1@db.example/pp", expect=2)
    assert r.stderr == (
        "Error: The database URL holds a password, which config.toml must not keep: set the "
        "URL without it and run `patientportal config set db-password`.\n"
    )
    assert not (home / "config.toml").exists()


def test_secrets_go_to_the_keyring_only(
    cli: Cli, home: Path, memory_keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli("config set db-password Hemmelig1", expect=2)
    assert r.stderr == (
        "Error: Secrets are never given as arguments: run `patientportal config set "
        "db-password` and type it, or pass --value-stdin.\n"
    )
    r = cli("config set smtp-password", expect=2)
    assert r.stderr == (
        "Error: Missing smtp-password: pass --value-stdin (no terminal to ask on).\n"
    )
    r = cli("config set db-password --value-stdin", input="Hemmelig1\n")
    assert r.stderr == "db-password stored in the OS keyring.\n"
    cli("config set smtp-password --value-stdin", input="Smtp-Hemmelig2\n")
    assert memory_keyring.store[("patientportal-cli", f"db-password@{home}")] == "Hemmelig1"
    assert not (home / "config.toml").exists()
    cli("config set smtp-host mail.example.dk")
    monkeypatch.setenv("PATIENTPORTAL_DB_URL", "postgresql+psycopg://pp:Env-secret9@db/pp")
    for fmt in ("table", "json", "csv"):
        r = cli(f"config show -o {fmt}")
        for secret in ("Hemmelig1", "Smtp-Hemmelig2", "Env-secret9"):
            assert secret not in r.stdout + r.stderr
    shown = {row["key"]: row["value"] for row in json.loads(cli("config show -o json").stdout)}
    assert shown["db-password"] == shown["smtp-password"] == "(set, in keyring)"
    assert shown["db-url"] == "postgresql+psycopg://pp:***@db/pp"
    assert "Hemmelig" not in (home / "config.toml").read_text()
    assert cli("config unset db-password").stderr == "db-password removed.\n"
    assert cli("config unset db-password").stderr == "db-password was not set.\n"
    assert ("patientportal-cli", f"db-password@{home}") not in memory_keyring.store


def test_config_without_a_keyring(cli: Cli, home: Path) -> None:
    no_keyring()
    r = cli("config set db-password --value-stdin", input="Hemmelig1\n", expect=1)
    assert r.stderr == (
        "Error: No usable OS keyring was found to keep secrets in: install and unlock a "
        "keyring backend (e.g. GNOME Keyring, KWallet, or `pip install keyrings.alt`), or "
        "give the database password to PostgreSQL's client through PGPASSWORD or "
        "~/.pgpass.\n"
    )
    r = cli("config set smtp-password", expect=1)  # refused before anything is asked
    assert r.stderr == (
        "Error: No usable OS keyring was found to keep secrets in: install and unlock a "
        "keyring backend (e.g. GNOME Keyring, KWallet, or `pip install keyrings.alt`).\n"
    )
    assert cli("config unset smtp-password", expect=1).stderr.count("\n") == 1
    shown = {row["key"]: row["value"] for row in json.loads(cli("config show -o json").stdout)}
    assert shown["db-password"] == "(no keyring available)"
    assert cli("config set smtp-host h.example").stderr == "smtp-host = h.example\n"


# --- the error edge ------------------------------------------------------------------


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
