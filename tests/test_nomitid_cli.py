"""`no-mitid set | clear | list` and `patient create/link --no-mitid` (both backends)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from patientportal_cli.errors import Conflict
from tests.helpers.cli import Cli, Staff, terminal
from tests.helpers.db import db_session, events, link_of, users_with_cpr
from tests.helpers.mail import Inbox

MISSING = (
    "Error: Missing confirmation that the e-mail address belongs to the patient or to a "
    "person with power of attorney: pass --confirm-email-owner (no terminal to ask on).\n"
)
QUESTION_LINES = "Patient: 010203-**** (Ida Hansen)\nE-mail address on record: ida@example.dk\n"
SET = (
    "No-MitID flag set for 010203-**** (Ida Hansen) at clinic NORD: two-factor login is "
    "allowed here.\n"
    "Recorded: anna confirmed that ida@example.dk belongs to the patient or to a person "
    "with power of attorney.\n"
)


@pytest.fixture
def ida(cli: Cli, staff: Staff) -> None:
    cli("patient create 010203-1234 --name 'Ida Hansen' --email ida@example.dk --no-invite")


def test_set_needs_the_confirmation(cli: Cli, ida: None, db_url: str, home: Path) -> None:
    r = cli("no-mitid set 010203-1234", expect=2)
    assert r.stderr == MISSING
    with terminal("n"):
        r = cli("no-mitid set 010203-1234", expect=1)
    assert r.stderr == QUESTION_LINES + "Error: Not confirmed: the flag was not set.\n"
    with db_session(db_url, home) as s:
        link = link_of(s, "0102031234", "NORD")
        assert link is not None and link.no_mitid is False
        assert events(s, "no_mitid.") == []
    assert Inbox(home).new() == []


def test_set_on_a_terminal_records_who_when_which_email(
    cli: Cli, ida: None, db_url: str, home: Path
) -> None:
    inbox = Inbox(home)
    with terminal("y"):
        r = cli("no-mitid set 010203-1234")
    assert r.stdout == ""
    assert r.stderr == QUESTION_LINES + SET
    with db_session(db_url, home) as s:
        link = link_of(s, "0102031234", "NORD")
        assert link is not None
        assert link.no_mitid is True
        assert link.email_owner_confirmed_by == "anna"
        assert link.email_owner_confirmed_email == "ida@example.dk"
        assert link.email_owner_confirmed_at is not None
        assert link.no_mitid_changed_by == "anna"
        [event] = events(s, "no_mitid.")
        action, clinic, target, actor, details = event
        assert (action, clinic, target, actor) == ("no_mitid.set", "NORD", "cpr:0102031234", "anna")
        assert details["email"] == "ida@example.dk"
        assert details["email_owner_confirmed_by"] == "anna"
        assert "power of attorney (fuldmagt)" in details["confirmed"]
    [(subject, body)] = inbox.new_to("ida@example.dk")
    assert subject == "Login uden MitID hos Nordklinikken"
    assert "to-faktor-login" in body and "0102031234" not in body
    shown = json.loads(cli("patient show 010203-1234 -o json").stdout)
    assert shown["no_mitid"] is True
    assert shown["email_owner_confirmed_by"] == "anna"
    assert shown["email_owner_confirmed_email"] == "ida@example.dk"


def test_set_twice_and_clear_twice_change_nothing_the_second_time(
    cli: Cli, ida: None, db_url: str, home: Path
) -> None:
    inbox = Inbox(home)
    cli("no-mitid set 010203-1234 --confirm-email-owner")
    inbox.new()
    r = cli("no-mitid set 010203-1234 --confirm-email-owner")
    assert r.stderr == (
        "010203-**** (Ida Hansen) already has the no-MitID flag at clinic NORD; nothing changed.\n"
    )
    r = cli("no-mitid clear 010203-1234")
    assert r.stderr == (
        "No-MitID flag removed for 010203-**** (Ida Hansen) at clinic NORD: MitID is required "
        "at the next login here.\n"
    )
    [(subject, _)] = inbox.new_to("ida@example.dk")
    assert subject == "MitID kræves ved næste login hos Nordklinikken"
    r = cli("no-mitid clear 010203-1234")
    assert r.stderr == (
        "010203-**** (Ida Hansen) does not have the no-MitID flag at clinic NORD; nothing changed.\n"
    )
    assert inbox.new() == []
    with db_session(db_url, home) as s:
        assert [e[0] for e in events(s, "no_mitid.")] == ["no_mitid.set", "no_mitid.clear"]
        link = link_of(s, "0102031234", "NORD")
        assert link is not None and link.no_mitid is False
        assert link.mitid_required_after is not None
        assert link.email_owner_confirmed_by is None  # the confirmation went with the flag
        clear = events(s, "no_mitid.clear")[0][4]
        assert clear["previous"]["email_owner_confirmed_by"] == "anna"


def test_clear_makes_mitid_required_again(cli: Cli, ida: None, db_url: str, home: Path) -> None:
    """R7 at the level of `patient access`: a MitID verification from before the flag was
    removed does not count; one after it does."""
    from patientportal_cli.db.clock import utcnow

    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, "0102031234")
        user.password_hash = "x"
        user.mitid_verified_at = utcnow()
        s.add(user)
        s.commit()
    access = json.loads(cli("patient access 010203-1234 -o json").stdout)
    assert access["two_factor"]["allowed"] is True  # verified, the flag never removed
    assert access["two_factor"]["reason"].startswith("verified with MitID at ")
    cli("no-mitid set 010203-1234 --confirm-email-owner")
    access = json.loads(cli("patient access 010203-1234 -o json").stdout)
    assert access["two_factor"] == {"allowed": True, "reason": "the no-MitID flag is set here"}
    cli("no-mitid clear 010203-1234")
    access = json.loads(cli("patient access 010203-1234 -o json").stdout)
    assert access["two_factor"]["allowed"] is False
    assert access["two_factor"]["reason"].startswith(
        "two-factor needs the no-MitID flag or a MitID verification since the flag was last "
        "removed ("
    )
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, "0102031234")
        user.mitid_verified_at = utcnow()
        s.add(user)
        s.commit()
    access = json.loads(cli("patient access 010203-1234 -o json").stdout)
    assert access["two_factor"]["allowed"] is True
    assert access["two_factor"]["reason"].startswith("verified with MitID at ")


def test_list(cli: Cli, ida: None) -> None:
    r = cli("no-mitid list")
    assert (r.stdout, r.stderr) == ("", "No patients with the no-MitID flag.\n")
    cli("patient create 020304-1111 --name 'Bo Berg' --email bo@example.dk --no-invite")
    cli("no-mitid set 020304-1111 --confirm-email-owner")
    cli("no-mitid set 010203-1234 --confirm-email-owner")
    rows = json.loads(cli("no-mitid list -o json").stdout)
    assert [(r["cpr"], r["name"], r["set_by"], r["email_owner_confirmed_email"]) for r in rows] == [
        ("020304-****", "Bo Berg", "anna", "bo@example.dk"),
        ("010203-****", "Ida Hansen", "anna", "ida@example.dk"),
    ]
    assert set(rows[0]) == {
        "cpr",
        "name",
        "email",
        "set_at",
        "set_by",
        "email_owner_confirmed_email",
    }
    r = cli("no-mitid list -o csv")
    assert r.stdout.splitlines()[0] == "cpr,name,email,set_at,set_by,email_owner_confirmed_email"


def test_create_with_no_mitid_needs_the_confirmation(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    r = cli("patient create 010203-1234 --name Ida --email ida@example.dk --no-mitid", expect=2)
    assert r.stderr == MISSING
    with terminal("n"):
        r = cli("patient create 010203-1234 --name Ida --email ida@example.dk --no-mitid", expect=1)
    assert r.stderr == (
        "E-mail address on record: ida@example.dk\n"
        "Error: Not confirmed: the no-MitID flag needs that confirmation. Nothing changed.\n"
    )
    with db_session(db_url, home) as s:
        assert users_with_cpr(s, "0102031234") == []
    with terminal("y"):
        r = cli("patient create 010203-1234 --name Ida --email ida@example.dk --no-mitid")
    assert "No-MitID flag set; the e-mail ida@example.dk is confirmed" in r.stderr


def test_no_mitid_for_an_existing_user_with_another_email_is_refused(
    cli: Cli, ida: None, db_url: str, home: Path
) -> None:
    cli("clinic create SYD --name Syd")
    r = cli(
        "--clinic SYD patient create 010203-1234 --name 'Ida Hansen' --email ida@other.dk "
        "--no-mitid --confirm-email-owner",
        expect=1,
    )
    assert r.stderr == (
        "Error: The portal user 010203-**** has another e-mail than the one "
        "given (ida@other.dk); security codes go to the user's e-mail, so the no-MitID flag "
        "cannot be confirmed for the address given. Nothing was changed: link the patient "
        "without --no-mitid, check the address with the patient, then run "
        "`patientportal no-mitid set CPR`.\n"
    )
    with db_session(db_url, home) as s:
        assert link_of(s, "0102031234", "SYD") is None
    # the same address (case aside) is fine, and no second user appears
    r = cli(
        "--clinic SYD patient create 010203-1234 --name 'Ida Hansen' --email IDA@Example.dk "
        "--no-mitid --confirm-email-owner"
    )
    assert r.stderr.startswith("Linked the existing portal user 010203-**** (Ida Hansen)")
    with db_session(db_url, home) as s:
        assert len(users_with_cpr(s, "0102031234")) == 1
        syd = link_of(s, "0102031234", "SYD")
        nord = link_of(s, "0102031234", "NORD")
        assert syd is not None and syd.no_mitid is True
        assert nord is not None and nord.no_mitid is False  # the flag is per clinic link


def test_link_with_no_mitid_asks_for_the_email_without_showing_the_users(
    cli: Cli, ida: None
) -> None:
    """Before the link the user is another clinic's patient: its e-mail is not shown; the
    staff member types the patient's address, and another one is refused untold."""
    cli("clinic create SYD --name Syd")
    with terminal("ida@other.dk\r", "y"):
        r = cli("--clinic SYD patient link 010203-1234 --no-mitid", expect=1)
    assert "ida@example.dk" not in r.stdout + r.stderr
    assert r.stderr.startswith("Error: The portal user 010203-**** has another e-mail than")
    with terminal("IDA@example.dk\r", "y"):
        r = cli("--clinic SYD patient link 010203-1234 --no-mitid")
    assert r.stderr.startswith("Linked the existing portal user 010203-**** (Ida Hansen)")
    assert json.loads(cli("--clinic SYD patient show 010203-1234 -o json").stdout)["no_mitid"]


def test_set_refuses_when_the_email_changed_meanwhile(
    cli: Cli, ida: None, db_url: str, home: Path
) -> None:
    from patientportal_cli.services import auth, nomitid

    with db_session(db_url, home) as s:
        actor = auth.resolve(s, token=os.environ["PATIENTPORTAL_TOKEN"], clinic_code=None)
        with pytest.raises(Conflict, match="changed while you confirmed it"):
            nomitid.set_flag(s, actor=actor, cpr="0102031234", confirmed_email="old@example.dk")
        link = link_of(s, "0102031234", "NORD")
        assert link is not None and link.no_mitid is False
