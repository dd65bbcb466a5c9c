"""One login per person shared by every clinic (R1), and setting the no-MitID flag: only
with the e-mail owner confirmed (R6), or with the user's creation in one step (R8). End
to end on both backends.

Each drives the `patientportal` command: the staff side (`patient ...`, `no-mitid ...`)
and the patient's side (`portal ...`), reading the codes from the mail as delivered to
the default Maildir. (R4, R5 and R7: tests/scenarios/test_logins_with_and_without_mitid.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import Cli, Staff, terminal
from tests.helpers.db import db_session, events, link_of, linked_clinics, users_with_cpr
from tests.helpers.mail import ACTIVATION_CODE, Inbox
from tests.helpers.people import second_clinic
from tests.helpers.portal import attempt_of

CPR = "120376-4321"
NUMBER = "1203764321"
PW = "Patient-pass1"


def activate(cli: Cli, inbox: Inbox, email: str, clinic: str = "NORD") -> None:
    code = inbox.activation_code(email, alone=True)
    cli(f"portal activate {CPR} --clinic {clinic} --code {code} --password-stdin", input=PW + "\n")


def two_factor_login(cli: Cli, inbox: Inbox, email: str, clinic: str = "NORD") -> None:
    sent = cli(
        f"portal login {CPR} --clinic {clinic} --method two-factor --password-stdin",
        input=PW + "\n",
    )
    code = inbox.security_code(email, alone=True)
    attempt = attempt_of(sent.stderr)
    r = cli(f"portal verify {CPR} --clinic {clinic} --attempt {attempt} --code {code}")
    assert r.stderr == "Logged in.\n"


def test_rule_r1_one_login_per_cpr_shared_by_clinics(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """R1: the patient is created once; a second clinic creating the same CPR links the
    existing user, and differences in name/e-mail are reported, not written."""
    inbox = Inbox(home)
    r = cli(["patient", "create", CPR, "--name", "Karen Holm", "--email", "karen@example.dk"])
    assert r.stderr == (
        "Created portal user 120376-**** (Karen Holm) and linked it to clinic NORD "
        "(services: e-consultation, booking, prescription-renewal).\n"
        "Activation code e-mailed to karen@example.dk (valid 7 days).\n"
    )
    activate(cli, inbox, "karen@example.dk")

    second_clinic(cli, staff)
    staff.login("sara")
    r = cli(
        ["patient", "create", CPR, "--name", "Karen H. Holm", "--email", "k.holm@example.dk",
         "--services", "booking"]
    )  # fmt: skip
    assert r.stdout == ""
    assert r.stderr == (
        "Linked the existing portal user 120376-**** (Karen Holm) to clinic SYD "
        "(services: booking).\n"
        "Warning: the e-mail given differs from the one on the existing portal user; it was "
        "not changed.\n"
        "Warning: the name given differs from the one on the existing portal user; it was "
        "not changed.\n"
    )
    assert inbox.new_to("karen@example.dk") == []  # an existing user gets no new code
    assert inbox.new_to("k.holm@example.dk") == []
    r = cli(
        ["patient", "create", CPR, "--name", "Karen Holm", "--email", "karen@example.dk"], expect=1
    )
    assert r.stderr == "Error: 120376-**** is already linked to clinic SYD.\n"

    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, NUMBER)
        assert (user.name, user.email, user.origin) == ("Karen Holm", "karen@example.dk", "clinic")
        assert user.password_hash is not None  # the one activation counts everywhere
        assert linked_clinics(s, NUMBER) == ["NORD", "SYD"]
        syd = link_of(s, NUMBER, "SYD")
        assert syd is not None and syd.record_email == "k.holm@example.dk"
        [(action, clinic, target, actor, details)] = events(s, "patient.create")[1:]
        assert (action, clinic, target, actor) == ("patient.create", "SYD", f"cpr:{NUMBER}", "sara")
        assert details["user_created"] is False
        assert details["differences"] == ["email", "name"]  # which fields, not the values

    shown = json.loads(cli(f"patient show {CPR} -o json").stdout)
    assert (shown["clinic"], shown["activated"], shown["services"]) == ("SYD", True, ["booking"])
    # one login, both clinics: MitID works at each; it is one user
    r = cli(f"portal login {CPR} --clinic SYD --method mitid")
    assert r.stderr == "Logged in with MitID (simulated) at clinic SYD.\n"
    r = cli(f"portal login {CPR} --clinic NORD --method mitid")
    assert r.stderr == "Logged in with MitID (simulated) at clinic NORD.\n"
    # after a MitID verification, two-factor works at both without any flag
    for clinic in ("NORD", "SYD"):
        two_factor_login(cli, inbox, "karen@example.dk", clinic)


def test_rule_r6_setting_the_flag_needs_the_email_owner_confirmation(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """R6: the flag makes the clinic answer for the e-mail address; setting it needs the
    explicit confirmation, recorded with who and when (and which address)."""
    inbox = Inbox(home)
    cli(["patient", "create", CPR, "--name", "Karen Holm", "--email", "karen@example.dk"])
    activate(cli, inbox, "karen@example.dk")
    staff.add("sofie", "secretary")
    staff.login("sofie")

    r = cli(f"no-mitid set {CPR}", expect=2)  # a script without the flag
    assert r.stderr == (
        "Error: Missing confirmation that the e-mail address belongs to the patient or to a "
        "person with power of attorney: pass --confirm-email-owner (no terminal to ask on).\n"
    )
    with terminal("n"):
        r = cli(f"no-mitid set {CPR}", expect=1)
    assert r.stderr.endswith("Error: Not confirmed: the flag was not set.\n")
    r = cli(
        f"portal login {CPR} --clinic NORD --method two-factor --password-stdin",
        input=PW + "\n",
        expect=1,
    )
    assert "MitID" in r.stderr  # R5's message: still not allowed

    with terminal("y"):
        r = cli(f"no-mitid set {CPR}")
    assert r.stderr == (
        "Patient: 120376-**** (Karen Holm)\n"
        "E-mail address on record: karen@example.dk\n"
        "No-MitID flag set for 120376-**** (Karen Holm) at clinic NORD: two-factor login is "
        "allowed here.\n"
        "Recorded: sofie confirmed that karen@example.dk belongs to the patient or to a "
        "person with power of attorney.\n"
    )
    [(subject, _)] = inbox.new_to("karen@example.dk")
    assert subject == "Login uden MitID hos Nordklinikken"

    shown = json.loads(cli(f"patient show {CPR} -o json").stdout)
    assert shown["email_owner_confirmed_by"] == "sofie"
    assert shown["email_owner_confirmed_email"] == "karen@example.dk"
    assert shown["email_owner_confirmed_at"] is not None
    audit = json.loads(cli("audit list --action no_mitid -o json").stdout)
    [event] = audit
    assert (event["actor"], event["action"], event["target"]) == (
        "sofie",
        "no_mitid.set",
        "cpr:120376-****",
    )
    assert event["details"]["email"] == "karen@example.dk"
    assert event["details"]["email_owner_confirmed_by"] == "sofie"
    assert event["details"]["email_owner_confirmed_at"] == shown[
        "email_owner_confirmed_at"
    ].replace("Z", "+00:00")
    assert "power of attorney (fuldmagt)" in event["details"]["confirmed"]

    two_factor_login(cli, inbox, "karen@example.dk")
    with db_session(db_url, home) as s:
        link = link_of(s, NUMBER, "NORD")
        assert link is not None and link.email_owner_confirmed_by == "sofie"


def test_rule_r8_create_and_flag_in_one_step(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """R8: the clinic creates the user and ticks "Patienten har ikke MitID" in the same
    step; the patient activates from the e-mail and logs in with two-factor at once,
    never having used MitID."""
    inbox = Inbox(home)
    r = cli(
        ["patient", "create", CPR, "--name", "Karen Holm", "--email", "karen@example.dk",
         "--no-mitid", "--confirm-email-owner"]
    )  # fmt: skip
    assert r.stderr == (
        "Created portal user 120376-**** (Karen Holm) and linked it to clinic NORD "
        "(services: e-consultation, booking, prescription-renewal).\n"
        "No-MitID flag set; the e-mail karen@example.dk is confirmed to belong to the "
        "patient or to a person with power of attorney.\n"
        "Activation code e-mailed to karen@example.dk (valid 7 days).\n"
    )
    with db_session(db_url, home) as s:
        # one transaction: the user, the link, the flag and the confirmation together
        link = link_of(s, NUMBER, "NORD")
        assert link is not None and link.no_mitid is True
        assert link.email_owner_confirmed_by == "anna"
        assert [e[0] for e in events(s, "patient.") + events(s, "no_mitid.")] == [
            "patient.create",
            "no_mitid.set",
        ]
    access = json.loads(cli(f"patient access {CPR} -o json").stdout)
    assert access["two_factor"] == {
        "allowed": False,
        "reason": "not activated (the patient has not chosen a password yet)",
    }
    mails = dict(inbox.new_to("karen@example.dk"))
    assert sorted(mails) == [
        "Din bruger på Patientportalen – aktiveringskode",
        "Login uden MitID hos Nordklinikken",
    ]
    [code] = ACTIVATION_CODE.findall(mails["Din bruger på Patientportalen – aktiveringskode"])
    cli(f"portal activate {CPR} --clinic NORD --code {code} --password-stdin", input=PW + "\n")
    assert json.loads(cli(f"patient access {CPR} -o json").stdout) == {
        "mitid": {
            "allowed": True,
            "reason": "linked here; a MitID login also records the verification",
        },
        "two_factor": {"allowed": True, "reason": "the no-MitID flag is set here"},
    }
    two_factor_login(cli, inbox, "karen@example.dk")
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, NUMBER)
        assert user.mitid_verified_at is None  # never needed MitID
