"""`patientportal staff` on both backends: list, add, roles and the last admin, disabling
someone, only admins doing admin work. Exact output lines and exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from patientportal_cli.db.models import AuditEvent, Staff
from tests.helpers.cli import LOGIN_FAILED, PASSWORD, Cli, lines
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.db import audit_actions, db_session
from tests.helpers.people import two_clinics


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
    assert audit_actions(db_url, home).count("staff.add") == 1
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
