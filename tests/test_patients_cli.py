"""`patient create | link | unlink | show | list | invite | unlock | access` (both backends).

Exact output and exit codes; bad input (CPR, e-mail, names with markup or control
characters, unknown CPR, double link, unlink of a patient not linked).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.helpers.cli import Cli, Staff, terminal
from tests.helpers.db import db_session, events, link_of, users_with_cpr
from tests.helpers.mail import Inbox

ALL = "e-consultation, booking, prescription-renewal"
CREATED = (
    "Created portal user 010203-**** (Ida Hansen) and linked it to clinic NORD "
    f"(services: {ALL}).\n"
)
INVITED = "Activation code e-mailed to ida@example.dk (valid 7 days).\n"


def create_ida(cli: Cli, *extra: str, expect: int = 0):  # noqa: ANN201
    return cli(
        [
            "patient",
            "create",
            "010203-1234",
            "--name",
            "Ida Hansen",
            "--email",
            "ida@example.dk",
            *extra,
        ],
        expect=expect,
    )


# --- create --------------------------------------------------------------------------


def test_create_new_user_links_and_mails_activation_code(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    r = create_ida(cli)
    assert r.stdout == ""
    assert r.stderr == CREATED + INVITED
    code = Inbox(home).activation_code("ida@example.dk", alone=True)
    assert len(code) == 19  # XXXX-XXXX-XXXX-XXXX: 80 bits
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, "0102031234")
        assert (user.name, user.email, user.origin, user.password_hash) == (
            "Ida Hansen",
            "ida@example.dk",
            "clinic",
            None,
        )
        link = link_of(s, "0102031234", "NORD")
        assert link is not None
        assert (link.record_email, link.services, link.linked_by, link.no_mitid) == (
            "ida@example.dk",
            "e-consultation,booking,prescription-renewal",
            "anna",
            False,
        )
        [event] = events(s, "patient.")
        assert event[:4] == ("patient.create", "NORD", "cpr:0102031234", "anna")
        assert event[4]["user_created"] is True and event[4]["invited"] is True


def test_dry_run_says_what_it_would_do_in_the_conditional(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """A dry run mails nothing and sets no flag, and says so (issue 12.4)."""
    r = create_ida(cli, "--no-mitid", "--confirm-email-owner", "--dry-run")
    assert r.stderr == (
        f"Dry run: would have created portal user 010203-**** (Ida Hansen) and linked it to "
        f"clinic NORD (services: {ALL}).\n"
        "The no-MitID flag would be set; the e-mail ida@example.dk would be recorded as "
        "confirmed to belong to the patient or to a person with power of attorney.\n"
        "An activation code would be e-mailed to ida@example.dk (valid 7 days).\n"
        "Nothing was changed.\n"
    )
    assert Inbox(home).new() == []
    cli(["clinic", "create", "SYD", "--name", "Sydklinikken"])
    create_ida(cli, "--clinic", "SYD", "--no-invite")
    r = cli(["patient", "link", "010203-1234", "--clinic", "NORD", "--dry-run"])
    assert r.stderr == (
        "Dry run: would have linked the existing portal user 010203-**** to clinic NORD "
        f"(services: {ALL}).\n"
        "Nothing was changed.\n"
    )
    with db_session(db_url, home) as s:
        assert link_of(s, "0102031234", "NORD") is None


def test_create_accepts_every_cpr_form(cli: Cli, staff: Staff) -> None:
    for form, stored in [
        ("0102031234", "0102031234"),
        ("010203 1235", "0102031235"),
        (" 010203-1236 ", "0102031236"),
    ]:
        r = cli(
            [
                "patient",
                "create",
                form,
                "--name",
                "Ida Hansen",
                "--email",
                "ida@example.dk",
                "--no-invite",
            ]
        )
        assert r.stderr.startswith("Created portal user 010203-**** (Ida Hansen)")
        r = cli(["--show-cpr", "patient", "show", stored[:6] + "-" + stored[6:], "-o", "json"])
        assert json.loads(r.stdout)["cpr"] == stored[:6] + "-" + stored[6:]


def test_create_no_invite_services_and_dry_run(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    r = create_ida(cli, "--services", "booking, e-consultation", "--no-invite", "--dry-run")
    assert r.stderr == (
        "Dry run: would have created portal user 010203-**** (Ida Hansen) and linked it to "
        "clinic NORD (services: e-consultation, booking).\n"
        "No activation e-mail would be sent; send one later with "
        "`patientportal patient invite CPR`.\n"
        "Nothing was changed.\n"
    )
    with db_session(db_url, home) as s:
        assert users_with_cpr(s, "0102031234") == []
        # only the look-up is audited, nothing that a create would write
        assert events(s, "patient.") == [
            (
                "patient.dry_run",
                "NORD",
                "cpr:0102031234",
                "anna",
                {"command": "create", "user_exists": False},
            )
        ]
    r = create_ida(cli, "--services", "booking", "--no-invite")
    assert r.stderr == (
        "Created portal user 010203-**** (Ida Hansen) and linked it to clinic NORD "
        "(services: booking).\n"
        "No activation e-mail sent; send one with `patientportal patient invite CPR`.\n"
    )
    assert Inbox(home).new() == []


def test_create_services_must_be_offered_by_the_clinic(cli: Cli, staff: Staff) -> None:
    cli("clinic services --disable booking", expect=0)
    r = create_ida(cli, "--services", "booking", expect=2)
    assert r.stderr == (
        "Error: Clinic NORD does not offer booking: choose among e-consultation, "
        "prescription-renewal.\n"
    )
    r = create_ida(cli, "--services", "massage", expect=2)
    assert r.stderr.startswith("Error: Unknown service 'massage'")
    r = create_ida(cli, "--no-invite")  # default: what the clinic offers
    assert "(services: e-consultation, prescription-renewal)" in r.stderr


def test_create_existing_user_already_linked_here(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    create_ida(cli)
    r = create_ida(cli, expect=1)
    assert r.stderr == "Error: 010203-**** is already linked to clinic NORD.\n"
    with db_session(db_url, home) as s:
        assert len(users_with_cpr(s, "0102031234")) == 1


def test_create_refuses_bad_cpr(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    soon = date.today() + timedelta(days=40)
    cases = [
        (
            "0102031",
            "Invalid CPR number: expected 10 digits as DDMMYY-SSSS, DDMMYY SSSS or DDMMYYSSSS.",
        ),
        ("01020312345", "Invalid CPR number: expected 10 digits"),
        ("01-02-03-1234", "Invalid CPR number: expected 10 digits"),
        ("310203-1234", "Invalid CPR number: 31.02.1903 is not a real date."),
        ("010203-12A4", "Invalid CPR number: the portal accepts only CPR numbers made of digits"),
        ("EKSEMPEL12", "Invalid CPR number: the portal accepts only CPR numbers made of digits"),
        (
            f"{soon:%d%m%y}-4123",
            f"Invalid CPR number: the birth date {soon:%d.%m.%Y} is in the future.",
        ),
        ("", "Invalid CPR number: it is empty"),
    ]
    for cpr, message in cases:
        for command in (
            ["patient", "create", cpr, "--name", "Ida", "--email", "ida@example.dk"],
            ["patient", "link", cpr],
            ["patient", "show", cpr],
            ["patient", "unlink", cpr, "--yes"],
            ["no-mitid", "set", cpr, "--confirm-email-owner"],
        ):
            r = cli(command, expect=2)
            assert r.stderr.startswith("Error: " + message), (command, r.stderr)
            assert r.stderr.count("\n") == 1
    with db_session(db_url, home) as s:
        assert events(s, "patient.") == []


def test_create_refuses_bad_names(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    cases = [
        (
            "Ida\x1b[2J",
            "Error: Invalid name 'Ida\\x1b[2J': it contains the control character U+001B.\n",
        ),
        (
            "Ida\nHansen",
            "Error: Invalid name 'Ida\\nHansen': it contains the control character U+000A.\n",
        ),
        (
            "Ida\u202eHansen",
            "Error: Invalid name 'Ida\\u202eHansen': it contains the control character U+202E.\n",
        ),
        ("   ", "Error: Invalid name: it is empty.\n"),
        (
            "x" * 201,
            "Error: Invalid name '"
            + "x" * 60
            + "...': it is 201 characters long; at most 200 are allowed.\n",
        ),
    ]
    for name, message in cases:
        r = cli(
            ["patient", "create", "010203-1234", "--name", name, "--email", "ida@example.dk"],
            expect=2,
        )
        assert r.stderr == message
    with db_session(db_url, home) as s:
        assert users_with_cpr(s, "0102031234") == []


def test_markup_and_sql_in_names_are_kept_and_shown_literally(cli: Cli, staff: Staff) -> None:
    name = "[bold red]Robert'); DROP TABLE portal_user;--[/] :smile:"
    r = cli(
        [
            "patient",
            "create",
            "010203-1234",
            "--name",
            name,
            "--email",
            "bob@example.dk",
            "--no-invite",
        ]
    )
    assert f"(the name {name})" not in r.stderr
    assert f"010203-**** ({name})" in r.stderr
    r = cli("patient show 010203-1234")
    assert name in r.stdout
    r = cli("patient list -o json")
    assert json.loads(r.stdout)[0]["name"] == name
    r = cli("patient list -o csv")
    assert r.stdout.splitlines()[1].startswith(f'010203-****,"{name}"') or name in r.stdout


def test_create_refuses_bad_email(cli: Cli, staff: Staff, home: Path) -> None:
    for bad in [
        "ida",
        "ida@",
        "ida@exa mple.dk",
        "<ida@example.dk>",
        "ida@@example.dk",
        "ida@example.dk\x1b[2J",
    ]:
        r = cli(["patient", "create", "010203-1234", "--name", "Ida", "--email", bad], expect=2)
        assert r.stderr.startswith("Error: Invalid e-mail address '")
        assert r.stderr.count("\n") == 1
        assert "\x1b" not in r.stderr
    assert Inbox(home).new() == []


def test_create_without_terminal_names_the_missing_flag(cli: Cli, staff: Staff) -> None:
    r = cli("patient create 010203-1234 --email ida@example.dk", expect=2)
    assert r.stderr == "Error: Missing name: pass --name (no terminal to ask on).\n"
    r = cli("patient create 010203-1234 --name Ida", expect=2)
    assert r.stderr == "Error: Missing email: pass --email (no terminal to ask on).\n"


def test_create_asks_for_name_and_email_on_a_terminal(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    with terminal("Ida Hansen\r", "ida@example.dk\r"):
        r = cli("patient create 010203-1234 --no-invite")
    assert r.stderr.startswith(CREATED)
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, "0102031234")
        assert (user.name, user.email) == ("Ida Hansen", "ida@example.dk")


def test_create_without_login_exits_4(
    cli: Cli, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", "pp_nonsense")
    r = create_ida(cli, expect=4)
    assert r.stderr == "Error: Your session or token is not valid: log in again.\n"


# --- link / unlink -------------------------------------------------------------------


def test_link_needs_an_existing_user(cli: Cli, staff: Staff) -> None:
    r = cli("patient link 010203-1234", expect=1)
    assert r.stderr == (
        "Error: No portal user has the CPR number 010203-****: create the patient with "
        "`patientportal patient create CPR --name NAME --email EMAIL`.\n"
    )


def test_link_existing_user_and_double_link(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    create_ida(cli, "--no-invite")
    cli("clinic create SYD --name Sydklinikken")
    r = cli("--clinic SYD patient link 0102031234 --services booking")
    assert r.stderr == (
        "Linked the existing portal user 010203-**** (Ida Hansen) to clinic SYD (services: booking).\n"
    )
    r = cli("--clinic SYD patient link 0102031234", expect=1)
    assert r.stderr == "Error: 010203-**** is already linked to clinic SYD.\n"
    with db_session(db_url, home) as s:
        link = link_of(s, "0102031234", "SYD")
        assert link is not None and link.record_email == "ida@example.dk"
        assert [e[:4] for e in events(s, "patient.link")] == [
            ("patient.link", "SYD", "cpr:0102031234", "anna")
        ]


def test_unlink_confirms_and_keeps_the_user(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    create_ida(cli, "--no-invite", "--no-mitid", "--confirm-email-owner")
    r = cli("patient unlink 010203-1234", expect=2)
    assert r.stderr == "Error: Missing confirmation: pass --yes (no terminal to ask on).\n"
    with terminal("n"):
        r = cli("patient unlink 010203-1234", expect=1)
    assert r.stderr == "Error: Not unlinked; nothing changed.\n"
    with terminal("y"):
        r = cli("patient unlink 010203-1234")
    assert r.stderr == (
        "Unlinked 010203-**** (Ida Hansen) from clinic NORD; the portal user stays.\n"
    )
    with db_session(db_url, home) as s:
        assert len(users_with_cpr(s, "0102031234")) == 1
        assert link_of(s, "0102031234", "NORD") is None
        [event] = events(s, "patient.unlink")
        assert event[4] == {
            "no_mitid": True,
            "services": ["e-consultation", "booking", "prescription-renewal"],
        }
    # linking again starts without the flag (it went with the link)
    cli("patient link 010203-1234")
    assert json.loads(cli("patient show 010203-1234 -o json").stdout)["no_mitid"] is False


def test_unlink_of_a_patient_not_linked(cli: Cli, staff: Staff) -> None:
    r = cli("patient unlink 010203-1234 --yes", expect=1)
    assert r.stderr == (
        "Error: 010203-**** is not a patient at clinic NORD, and no portal user has this CPR "
        "number; create one with `patientportal patient create CPR --name NAME --email EMAIL`.\n"
    )
    create_ida(cli, "--no-invite")
    cli("patient unlink 010203-1234 -y")
    r = cli("patient unlink 010203-1234 -y", expect=1)
    assert r.stderr == (
        "Error: 010203-**** is not a patient at clinic NORD. A portal user with this CPR "
        "number exists; link it to the clinic with `patientportal patient link CPR`.\n"
    )


# --- show / list ---------------------------------------------------------------------


def test_show_json_and_table(cli: Cli, staff: Staff) -> None:
    create_ida(cli, "--no-invite", "--services", "booking")
    data = json.loads(cli("patient show 010203-1234 -o json").stdout)
    assert set(data) == {
        "cpr", "name", "email", "record_email", "origin", "activated", "status",
        "mitid_verified_at", "clinic", "linked_at", "linked_by", "services", "no_mitid", "no_mitid_changed_at",
        "no_mitid_changed_by", "email_owner_confirmed_by", "email_owner_confirmed_at",
        "email_owner_confirmed_email", "mitid_required_after", "failed_logins",
        "locked_until", "created_at",
    }  # fmt: skip
    assert data["cpr"] == "010203-****"
    assert (data["name"], data["email"], data["origin"], data["activated"]) == (
        "Ida Hansen", "ida@example.dk", "clinic", False,
    )  # fmt: skip
    assert data["services"] == ["booking"]
    assert data["no_mitid"] is False and data["locked_until"] is None
    table = cli("patient show 010203-1234").stdout
    assert "Patient at NORD" in table and "010203-****" in table and "0102031234" not in table


def test_show_cpr_reveals_and_is_audited(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    create_ida(cli, "--no-invite")
    r = cli("--show-cpr patient show 010203-1234 -o json")
    assert json.loads(r.stdout)["cpr"] == "010203-1234"
    with db_session(db_url, home) as s:
        [reveal] = events(s, "cpr.reveal")
        assert reveal[1:4] == ("NORD", "0102031234", "anna")


def test_list_search_filter_order(cli: Cli, staff: Staff) -> None:
    for cpr, name, mail in [
        ("020304-1111", "Øjvind Åberg", "oa@example.dk"),
        ("010203-1234", "Ida Hansen", "ida@example.dk"),
        ("111111-2222", "bo berg", "bo@Berg.dk"),
    ]:
        cli(["patient", "create", cpr, "--name", name, "--email", mail, "--no-invite"])
    cli("no-mitid set 111111-2222 --confirm-email-owner")

    def names(args: str) -> list[str]:
        return [row["name"] for row in json.loads(cli(f"patient list -o json {args}").stdout)]

    assert names("") == ["Ida Hansen", "bo berg", "Øjvind Åberg"]  # by name (code points)
    assert names("--search øjvind") == ["Øjvind Åberg"]
    assert names("--search BERG") == ["bo berg", "Øjvind Åberg"]
    assert names("--search 0102") == ["Ida Hansen"]
    assert names("--search 203-12") == ["Ida Hansen"]
    assert names("--search 50%") == []
    assert names("--search _") == []
    assert names("--no-mitid") == ["bo berg"]
    assert names("--no-mitid --search ida") == []
    r = cli("patient list -o csv --search ida")
    assert r.stdout == (
        "cpr,name,email,activated,status,no_mitid,services\n"
        "010203-****,Ida Hansen,ida@example.dk,no,active,no,"
        '"e-consultation, booking, prescription-renewal"\n'
    )
    r = cli("patient list --search nobody")
    assert (r.stdout, r.stderr) == ("", "No patients found.\n")


# --- invite / unlock -----------------------------------------------------------------


def test_invite_new_code_old_one_stops_working(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    inbox = Inbox(home)
    create_ida(cli)
    first = inbox.activation_code("ida@example.dk", alone=True)
    r = cli("patient invite 010203-1234")
    assert r.stderr == (
        "New activation code e-mailed to ida@example.dk for 010203-**** (Ida Hansen); an "
        "older code no longer works.\n"
    )
    second = inbox.activation_code("ida@example.dk", alone=True)
    assert first != second
    from patientportal_cli.services import codes

    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, "0102031234")
        assert user.id is not None
        assert codes.check(s, user_id=user.id, purpose=codes.ACTIVATION, code=first) == "wrong"
        assert codes.check(s, user_id=user.id, purpose=codes.ACTIVATION, code=second) == "ok"
        s.rollback()
        assert [e[0] for e in events(s, "patient.")] == ["patient.create", "patient.invite"]


def test_invite_refuses_an_activated_user(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    create_ida(cli, "--no-invite")
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, "0102031234")
        user.password_hash = "set"
        s.add(user)
        s.commit()
    r = cli("patient invite 010203-1234", expect=1)
    assert r.stderr == (
        "Error: 010203-**** is already activated (has chosen a password); an activation code "
        "cannot replace a password the patient chose.\n"
    )


def test_unlock(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    create_ida(cli, "--no-invite")
    r = cli("patient unlock 010203-1234")
    assert r.stderr == "010203-**** (Ida Hansen) is not locked; nothing changed.\n"
    login = "portal login 010203-1234 --clinic NORD --method two-factor --password-stdin"
    for n in (1, 2, 3, 4):  # not activated: the failures count all the same
        cli(login, input="Some-pass1\n", expect=1)
        assert json.loads(cli("patient show 010203-1234 -o json").stdout)["failed_logins"] == n
    r = cli(login, input="Some-pass1\n", expect=1)
    assert r.stderr.endswith("After 5 failed attempts, login is locked for 15 minutes.\n")
    data = json.loads(cli("patient show 010203-1234 -o json").stdout)
    assert data["failed_logins"] == 0 and data["locked_until"] is not None
    access = json.loads(cli("patient access 010203-1234 -o json").stdout)["two_factor"]
    assert "locked until" in access["reason"]
    r = cli("patient unlock 010203-1234")
    assert r.stderr == "Unlocked 010203-**** (Ida Hansen): the failed-login count is reset.\n"
    data = json.loads(cli("patient show 010203-1234 -o json").stdout)
    assert (data["failed_logins"], data["locked_until"]) == (0, None)
    assert cli(login, input="Some-pass1\n", expect=1).stderr == (
        "Error: Login failed: wrong CPR number or password.\n"
    )
    with db_session(db_url, home) as s:
        [event] = events(s, "patient.unlock")
        assert event[2] == "cpr:0102031234" and event[4]["failed_logins"] == 0
        assert event[4]["locked_until"] is not None


# --- access --------------------------------------------------------------------------


def test_access_json_shape_and_table(cli: Cli, staff: Staff) -> None:
    create_ida(cli, "--no-invite")
    data = json.loads(cli("patient access 010203-1234 -o json").stdout)
    assert data == {
        "mitid": {
            "allowed": True,
            "reason": "linked here; a MitID login also records the verification",
        },
        "two_factor": {
            "allowed": False,
            "reason": "not activated (the patient has not chosen a password yet); two-factor "
            "needs the no-MitID flag or a MitID verification (the patient has not verified "
            "with MitID)",
        },
    }
    table = cli("patient access 010203-1234").stdout
    assert "MitID" in table and "two-factor" in table and "not activated" in table


def test_access_for_unknown_and_unlinked_cpr(cli: Cli, staff: Staff) -> None:
    r = cli("patient access 010203-1234 -o json", expect=1)
    assert r.stdout == ""
    assert r.stderr.startswith(
        "Error: 010203-**** is not a patient at clinic NORD, and no portal user"
    )
    create_ida(cli, "--no-invite")
    cli("clinic create SYD --name Syd")
    data = json.loads(cli("--clinic SYD patient access 010203-1234 -o json").stdout)
    assert data == {
        "mitid": {"allowed": False, "reason": "not linked here"},
        "two_factor": {"allowed": False, "reason": "not linked here"},
    }
