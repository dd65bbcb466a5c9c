"""Staff powers stop at the clinic, and staff logins lock without telling who exists.

Each attack is replayed through the ``patientportal`` command on SQLite and PostgreSQL:
an admin of one clinic taking over a disabled account through ``staff add``, clinic
admins changing accounts as a whole, a disabled membership still reachable through a
session or token, and unlimited password guessing. Exact messages and exit codes.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import ApiToken, AuditEvent, Clinic, LoginThrottle, Membership
from patientportal_cli.db.models import Staff as StaffRow
from patientportal_cli.services import throttle
from tests.helpers.cli import LOGIN_FAILED, PASSWORD, Cli
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.db import db_session

EVE_PASSWORD = "Eves-pass-1"
NOT_ACCOUNT_ADMIN = (
    "Error: Only staff who may create clinics can change an account as a whole (eve may not).\n"
)


def account(db_url: str, home: Path, username: str) -> StaffRow:
    with db_session(db_url, home) as s:
        return s.exec(select(StaffRow).where(StaffRow.username == username)).one()


def clinics_of(db_url: str, home: Path, username: str) -> list[str]:
    with db_session(db_url, home) as s:
        return sorted(
            s.exec(
                select(Clinic.code)
                .join(Membership, col(Membership.clinic_id) == Clinic.id)
                .join(StaffRow, col(StaffRow.id) == Membership.staff_id)
                .where(StaffRow.username == username)
            ).all()
        )


def events(db_url: str, home: Path, action: str) -> list[dict[str, Any]]:
    with db_session(db_url, home) as s:
        rows = s.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.id))
        ).all()
        return [
            {
                "actor": e.actor,
                "clinic": e.clinic,
                "target": e.target,
                "details": json.loads(e.details),
            }
            for e in rows
        ]


def login_fails(cli: Cli, username: str, password: str) -> None:
    r = cli(f"login {username} --password-stdin --print-token", input=password + "\n", expect=4)
    assert (r.stdout, r.stderr) == ("", LOGIN_FAILED)


def eve_at_bbb(cli: Cli, staff: StaffHelper) -> None:
    """Clinics NORD (anna, who may create clinics) and BBB; eve is admin at BBB only.
    anna is then logged in for NORD."""
    cli("clinic create BBB --name Bbb")
    staff.add("eve", "admin", clinic="BBB")
    staff.login("anna", clinic="NORD")


def root_who_may_create_clinics(cli: Cli, staff: StaffHelper) -> None:
    staff.add("root", "admin", clinic="NORD")
    r = cli("staff account root --may-create-clinics")
    assert r.stderr == "root: may create clinics.\n"


# --- staff add cannot take an account over ---------------------------------------------


def test_eve_cannot_take_over_a_disabled_account_with_staff_add(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    """A takeover attempt: Eve, admin at BBB only, adds `root` (disabled, may create
    clinics) with a password of her choosing."""
    eve_at_bbb(cli, staff)
    root_who_may_create_clinics(cli, staff)
    assert cli("staff account root --disable").stderr == (
        "root: disabled (its sessions and tokens are revoked).\n"
    )
    before = account(db_url, home, "root")
    staff.login("eve")
    r = cli(
        "staff add root --name Root --role secretary --password-stdin --clinic BBB",
        input=EVE_PASSWORD + "\n",
        expect=1,
    )
    assert r.stderr == (
        "Error: The account root is disabled: only staff who may create clinics can enable it "
        "again (`patientportal staff account root --enable`).\n"
    )
    after = account(db_url, home, "root")
    assert (after.password_hash, after.active, after.may_create_clinics) == (
        before.password_hash,
        False,
        True,
    )
    assert clinics_of(db_url, home, "root") == ["NORD"]
    login_fails(cli, "root", EVE_PASSWORD)
    login_fails(cli, "root", PASSWORD)  # disabled: not even root's own password
    # nor can Eve enable it, give herself the right to create clinics, or set a password
    staff.login("eve")
    for args in (
        "staff account root --enable",
        "staff account eve --may-create-clinics",
        "staff account root --new-password --password-stdin",
    ):
        r = cli(args, input=EVE_PASSWORD + "\n", expect=4)
        assert r.stderr == NOT_ACCOUNT_ADMIN
    r = cli("clinic create EVIL --name Evil", expect=4)
    assert r.stderr == "Error: eve may not create clinics.\n"
    assert events(db_url, home, "staff.account")[-1]["details"] == {
        "active": False,
        "tokens_revoked": 0,
    }


def test_adding_an_existing_account_never_touches_its_password_or_rights(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    """The takeover sequence step by step: root (who may create clinics) is disabled at
    NORD, his only clinic; Eve, admin at BBB only, adds root with her password. root
    gets a role at BBB and nothing else changes: Eve's password does not log in as root,
    and Eve still cannot create clinics. (A clinic's disable does not switch off the
    account of staff who may create clinics: it is not the clinic's.)"""
    eve_at_bbb(cli, staff)
    staff.add("root", "admin", clinic="NORD")
    with db_session(db_url, home) as s:  # as an older version's data has it: no command for it
        row = s.exec(select(StaffRow).where(StaffRow.username == "root")).one()
        row.may_create_clinics = True
        s.add(row)
        s.commit()
    assert cli("staff disable root").stderr == "root no longer works at clinic NORD.\n"
    before = account(db_url, home, "root")
    staff.login("eve")
    r = cli(
        "staff add root --name 'Eve Was Here' --role admin --password-stdin --clinic BBB",
        input=EVE_PASSWORD + "\n",
    )
    assert r.stderr == (
        "Added the existing account root with the role admin at clinic BBB; its password "
        "is unchanged.\n"
    )
    r = cli("clinic create EVIL --name Evil", expect=4)
    assert r.stderr == "Error: eve may not create clinics.\n"
    after = account(db_url, home, "root")
    assert (after.password_hash, after.full_name, after.active, after.may_create_clinics) == (
        before.password_hash,
        "Root",
        True,
        True,
    )
    login_fails(cli, "root", EVE_PASSWORD)
    staff.login("root")  # root's own password still works
    assert events(db_url, home, "staff.add")[-1] == {
        "actor": "eve",
        "clinic": "BBB",
        "target": "staff:root",
        "details": {"new_account": False, "role": "admin"},
    }


def test_an_account_disabled_at_its_only_clinic_is_not_enabled_by_another_clinic(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    eve_at_bbb(cli, staff)
    staff.add("bo", "doctor")
    assert cli("staff disable bo").stderr == (
        "bo is disabled; their sessions and tokens are revoked.\n"
    )
    before = account(db_url, home, "bo")
    staff.login("eve")
    r = cli("staff add bo --name Bo --role doctor --clinic BBB", expect=1)  # none asked
    assert r.stderr.startswith("Error: The account bo is disabled: only staff who may create")
    r = cli(
        "staff add bo --name Bo --role doctor --password-stdin --clinic BBB",
        input=EVE_PASSWORD + "\n",
        expect=1,
    )
    assert r.stderr.startswith("Error: The account bo is disabled: only staff who may create")
    assert account(db_url, home, "bo").password_hash == before.password_hash
    assert clinics_of(db_url, home, "bo") == []
    login_fails(cli, "bo", EVE_PASSWORD)
    # staff who may create clinics enable it; bo's own password works again, and the
    # clinic that disabled him adds him back
    staff.login("anna", clinic="NORD")
    assert cli("staff account bo --enable").stderr == "bo: enabled.\n"
    assert cli("staff account bo --enable").stderr == "Nothing changed for bo.\n"
    cli("staff add bo --name Bo --role doctor")
    staff.login("bo")


def test_account_changes_are_for_staff_who_may_create_clinics_and_audited(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eve_at_bbb(cli, staff)
    staff.add("bo", "doctor")
    bo_session = staff.login("bo")
    bo_api = cli("staff token create --name job").stdout.strip()
    staff.login("anna", clinic="NORD")
    r = cli("staff account bo", expect=2)
    assert r.stderr == (
        "Error: Nothing to change: give --enable, --disable, --may-create-clinics, "
        "--no-may-create-clinics or --new-password.\n"
    )
    r = cli("staff account bo --password-stdin", input="X\n", expect=2)
    assert r.stderr == "Error: --password-stdin goes with --new-password.\n"
    r = cli("staff account ghost --enable", expect=1)
    assert r.stderr == "Error: No staff account 'ghost'.\n"
    r = cli("staff account anna --disable", expect=4)
    assert r.stderr == (
        "Error: You cannot change your own account here: use `patientportal staff password` "
        "for your password; another who may create clinics changes the rest.\n"
    )
    r = cli("staff account bo --new-password --password-stdin", input="weak\n", expect=2)
    assert r.stderr.startswith("Error: The password needs")
    r = cli("staff account bo --new-password --password-stdin", input="Fresh-pass-7\n")
    assert r.stderr == "bo: has a new password (its sessions and tokens are revoked).\n"
    for token in (bo_session, bo_api):
        monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)
        r = cli("whoami", expect=4)
        assert r.stderr == "Error: This session or token was revoked: log in again.\n"
    login_fails(cli, "bo", PASSWORD)
    staff.login("bo", "Fresh-pass-7")
    staff.login("anna", clinic="NORD")
    r = cli("staff account bo --may-create-clinics --disable")
    assert r.stderr == "bo: disabled (its sessions and tokens are revoked); may create clinics.\n"
    recorded = events(db_url, home, "staff.account")
    assert [e["details"] for e in recorded] == [
        {"password": "set", "tokens_revoked": 2},
        {"active": False, "may_create_clinics": True, "tokens_revoked": 1},
    ]
    assert all(e["actor"] == "anna" and e["target"] == "staff:bo" for e in recorded)
    assert "Fresh-pass-7" not in json.dumps(recorded)
    # a clinic admin who may not create clinics
    staff.login("eve")
    r = cli("staff account bo --enable", expect=4)
    assert r.stderr == NOT_ACCOUNT_ADMIN


def test_staff_change_their_own_password_with_the_current_one(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staff.add("bo", "doctor")
    other = staff.login("bo")
    staff.login("bo")  # the session this change is made in
    r = cli("staff password --password-stdin", input="Wrong-pass-1\nNew-pass-22\n", expect=4)
    assert r.stderr == (
        "Error: The current password is wrong (or the account is locked after 5 failed logins).\n"
    )
    r = cli("staff password --password-stdin", input=f"{PASSWORD}\nweak\n", expect=2)
    assert r.stderr.startswith("Error: The password needs")
    r = cli("staff password --password-stdin", input=f"{PASSWORD}\nNew-pass-22\n")
    assert r.stderr == "Your password is changed; your other login sessions have ended.\n"
    cli("whoami")  # this session goes on
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", other)
    assert cli("whoami", expect=4).stderr == (
        "Error: This session or token was revoked: log in again.\n"
    )
    login_fails(cli, "bo", PASSWORD)
    staff.login("bo", "New-pass-22")
    assert [e["details"] for e in events(db_url, home, "staff.password")] == [
        {"by": "self", "sessions_ended": 1}
    ]
    assert [e["actor"] for e in events(db_url, home, "staff.password_failed")] == ["bo"]


# --- staff disable ends access at that clinic, for sessions and tokens -----------------


def test_disable_ends_access_to_that_clinic_for_every_session_and_token(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("clinic create SYD --name Syd")
    staff.add("bo", "doctor", clinic="NORD")
    cli("staff add bo --name Bo --role secretary --clinic SYD")
    bound = staff.login("bo", clinic="SYD")  # a keyring-style session made for SYD
    bound_api = cli("staff token create --name syd-job").stdout.strip()  # made for SYD too
    free = staff.login("bo")  # bo works at two clinics: this one is for none
    free_api = cli("staff token create --name any-job").stdout.strip()
    staff.login("anna", clinic="NORD")
    assert cli("staff disable bo --clinic SYD").stderr == "bo no longer works at clinic SYD.\n"
    for token in (bound, bound_api, free, free_api):
        monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)
        r = cli("staff list --clinic SYD", expect=4)
        assert r.stderr == "Error: bo does not work at clinic SYD.\n"
        # still good where bo still works
        who = json.loads(cli("whoami -o json --clinic NORD").stdout)
        assert (who["clinic"], who["clinics"]) == ("NORD", ["NORD (doctor)"])
    for token in (bound, bound_api):  # never silently moved over to another clinic
        monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)
        r = cli("staff list", expect=4)
        assert r.stderr == (
            "Error: bo no longer works at clinic SYD, the clinic this session or token was "
            "made for: pass --clinic CODE.\n"
        )
    for token in (free, free_api):  # now bo's only clinic
        monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)
        assert json.loads(cli("whoami -o json").stdout)["clinic"] == "NORD"


def test_a_clinic_disabling_its_only_staff_member_who_may_create_clinics_removes_only_the_role(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    root_who_may_create_clinics(cli, staff)
    root = staff.login("root")
    staff.login("anna", clinic="NORD")
    assert cli("staff disable root").stderr == "root no longer works at clinic NORD.\n"
    assert account(db_url, home, "root").active
    with db_session(db_url, home) as s:
        assert s.exec(select(ApiToken).where(col(ApiToken.revoked_at).is_not(None))).all() == []
    staff.login("root")
    who = json.loads(cli("whoami -o json").stdout)
    assert (who["clinics"], who["may_create_clinics"]) == ([], True)
    assert root != os.environ["PATIENTPORTAL_TOKEN"]


# --- lockout -------------------------------------------------------------------------


def test_five_failed_logins_lock_a_username_whether_or_not_it_exists(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    staff.add("bo", "doctor")
    staff.add("cy", "doctor")
    cli("staff disable cy")
    for user in ("bo", "nobody", "cy"):
        for _ in range(5):
            login_fails(cli, user, "Wrong-pass-1")
        login_fails(cli, user, PASSWORD)  # locked: even the right password is refused
    locks = events(db_url, home, "staff.locked")
    assert [(e["actor"], e["target"], e["clinic"]) for e in locks] == [
        ("bo", "staff:bo", None),
        ("nobody", "staff:nobody", None),
        ("cy", "staff:cy", None),
    ]
    assert all(e["details"]["failures"] == 5 for e in locks)
    assert len(events(db_url, home, "staff.login_failed")) == 18
    # an admin of bo's clinic lifts the lock
    staff.login("anna", clinic="NORD")
    assert cli("staff unlock bo").stderr == "bo is unlocked.\n"
    assert cli("staff unlock bo").stderr == "bo was not locked.\n"
    r = cli("staff unlock nobody", expect=1)
    assert r.stderr == "Error: No staff member 'nobody' at clinic NORD.\n"
    [unlock] = events(db_url, home, "staff.unlock")
    assert (unlock["actor"], unlock["clinic"], unlock["target"]) == ("anna", "NORD", "staff:bo")
    assert unlock["details"]["failures"] == 0 and unlock["details"]["locked_until"]
    staff.login("bo")
    # a success starts the count again; four failures are not a lock
    for _ in range(4):
        login_fails(cli, "bo", "Wrong-pass-1")
    staff.login("bo")
    for _ in range(4):
        login_fails(cli, "bo", "Wrong-pass-1")
    staff.login("bo")
    # the lock ends by itself after 15 minutes
    for _ in range(5):
        login_fails(cli, "bo", "Wrong-pass-1")
    login_fails(cli, "bo", PASSWORD)
    with db_session(db_url, home) as s:
        row = s.exec(
            select(LoginThrottle).where(LoginThrottle.key == throttle.key(throttle.STAFF, "bo"))
        ).one()
        row.locked_until = utcnow() - timedelta(seconds=1)
        s.add(row)
        s.commit()
    staff.login("bo")


def test_unlock_is_for_admins_of_a_clinic_the_account_works_at(
    cli: Cli, staff: StaffHelper
) -> None:
    eve_at_bbb(cli, staff)
    staff.add("bo", "doctor")
    staff.add("cy", "secretary")
    for _ in range(5):
        login_fails(cli, "bo", "Wrong-pass-1")
    staff.login("eve")
    r = cli("staff unlock bo --clinic BBB", expect=1)
    assert r.stderr == "Error: No staff member 'bo' at clinic BBB.\n"
    staff.login("cy")
    r = cli("staff unlock bo", expect=4)
    assert r.stderr == (
        "Error: Only an admin at clinic NORD can change staff (you are secretary).\n"
    )
    login_fails(cli, "bo", PASSWORD)
    staff.login("anna", clinic="NORD")
    for _ in range(2):
        login_fails(cli, "cy", "Wrong-pass-1")
    assert cli("staff unlock cy").stderr == "cy was not locked; 2 failed logins forgotten.\n"
    cli("staff unlock bo")
    staff.login("bo")
