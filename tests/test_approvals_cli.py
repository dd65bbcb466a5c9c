"""The approval queue (rule R3): requests list | show | approve | reject, both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from patientportal_cli.cli.app import app
from patientportal_cli.cli.common import STATE
from patientportal_cli.services import passwords
from patientportal_cli.services import users as users_service
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import audit_events, db_session, links, requests, users
from tests.helpers.mail import mail_to
from tests.helpers.people import NUMBER, PW, add_doctor, register, set_mode

ROOT = Path(__file__).resolve().parents[1]


def three_requests(cli: Cli) -> None:
    set_mode(cli, "approval")
    register(cli, "010203-1234", name="Anne", email="anne@example.dk")
    register(cli, "020304-2345", name="Bent", email="bent@example.dk", services="booking")
    register(cli, "030405-3456", name="Carl", email="carl@example.dk")


def ids(cli: Cli, *args: str) -> list[int]:
    return [row["id"] for row in json.loads(cli(["requests", "list", "-o", "json", *args]).stdout)]


def when(db_url: str, home: Path, request_id: int) -> str:
    with db_session(db_url, home) as session:
        req = [r for r in requests(session) if r.id == request_id][0]
        assert req.decided_at is not None
        return req.decided_at.strftime("%Y-%m-%d %H:%M UTC")


def test_list_pending_first_then_oldest_first(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    r = cli("requests list")
    assert (r.stdout, r.stderr) == ("", "No pending registration requests at clinic NORD.\n")
    three_requests(cli)
    add_doctor(staff)
    cli("requests approve 1")
    assert ids(cli) == [2, 3]
    assert ids(cli, "--status", "all") == [2, 3, 1]
    assert ids(cli, "--status", "approved") == [1]
    assert ids(cli, "--status", "rejected") == []

    [row] = json.loads(cli("requests list -o json --status approved").stdout)
    assert row == {
        "id": 1,
        "submitted_at": row["submitted_at"],
        "cpr": "010203-****",
        "name": "Anne",
        "email": "anne@example.dk",
        "user": "created",  # approving created it (issue 12.7: not "existing")
        "existing_user": True,
        "user_created": True,
        "services": ["e-consultation", "booking", "prescription-renewal"],
        "linked_before": False,
        "linked_now": True,
        "status": "approved",
        "decided_by": "bo",
        "decided_at": row["decided_at"],
        "reason": None,
    }
    r = cli("requests list -o csv")
    assert r.stdout.splitlines()[0] == (
        "id,submitted_at,cpr,name,email,user,services,linked_before,status"
    )
    assert r.stdout.splitlines()[1].startswith("2,")
    assert ",020304-****,Bent,bent@example.dk,new,booking,no,pending" in r.stdout
    r = cli("requests list --status all")
    [line] = [x for x in r.stdout.splitlines() if "Anne" in x]
    assert " created " in line and " existing " not in line


def test_list_marks_a_cpr_this_clinic_linked_before(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "open")
    register(cli)
    with db_session(db_url, home) as session:  # staff unlink the patient (the R1 primitive)
        user = users(session)[0]
        assert user.id is not None
        link = users_service.find_link(session, clinic_id=1, user_id=user.id)
        assert link is not None
        users_service.forget_link(session, link, user.cpr)
        session.commit()
    set_mode(cli, "approval")
    register(cli, password=None, mitid=True)  # an existing user: no password asked
    [row] = json.loads(cli("requests list -o json").stdout)
    assert (row["user"], row["linked_before"], row["linked_now"]) == ("existing", True, False)
    r = cli("requests list")
    line = [x for x in r.stdout.splitlines() if "Jens Hansen" in x][0]
    assert " existing " in line and " yes " in line


def test_show_and_unknown_ids(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    three_requests(cli)
    cli("clinic services --disable booking")
    r = cli("requests show 2 -o json")
    data = json.loads(r.stdout)
    assert (data["id"], data["services"], data["grant_by_default"]) == (2, ["booking"], [])
    r = cli("requests show 1")
    assert "grant by default  e-consultation, prescription-renewal" in r.stdout
    r = cli("requests show 99", expect=1)
    assert r.stderr == "Error: No registration request 99 at clinic NORD.\n"
    # another clinic's request is not found either
    cli("clinic create SYD --name Sydklinikken --registration approval")
    register(cli, "040506-4567", clinic="SYD", name="Dorte", email="dorte@example.dk")
    r = cli("--clinic NORD requests show 4", expect=1)
    assert r.stderr == "Error: No registration request 4 at clinic NORD.\n"
    r = cli("--clinic SYD requests show 4 -o json")
    assert json.loads(r.stdout)["name"] == "Dorte"


def test_only_doctors_decide(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    three_requests(cli)
    r = cli("requests approve 1", expect=4)
    assert r.stderr == (
        "Error: Only a doctor at clinic NORD can approve registration requests (you are admin).\n"
    )
    staff.add("sis", "secretary")
    staff.login("sis")
    r = cli("requests reject 1 --reason nope", expect=4)
    assert r.stderr == (
        "Error: Only a doctor at clinic NORD can reject registration requests (you are "
        "secretary).\n"
    )
    assert ids(cli) == [1, 2, 3]  # secretaries see the queue
    with db_session(db_url, home) as session:
        assert {r.status for r in requests(session)} == {"pending"}
        assert (
            audit_events(session, "request.approve")
            == audit_events(session, "request.reject")
            == []
        )


def test_approve_creates_the_user_with_the_chosen_password_and_mails(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    three_requests(cli)
    add_doctor(staff)
    r = cli("requests approve 1")
    assert (r.stdout, r.stderr) == (
        "",
        "Request 1 approved: portal user created for 010203-**** and linked; services: "
        "e-consultation, booking, prescription-renewal.\n",
    )
    with db_session(db_url, home) as session:
        [user] = users(session)
        assert (user.cpr, user.name, user.email, user.origin) == (
            NUMBER,
            "Anne",
            "anne@example.dk",
            "self",
        )
        assert passwords.verify_password(user.password_hash, PW)
        assert requests(session)[0].password_hash is None  # moved to the user
        [event] = audit_events(session, "request.approve")
        assert (event.actor, event.clinic, event.target) == ("bo", "NORD", "request:1")
        assert '"user_created": true' in event.details
    mails = mail_to(home, "anne@example.dk")
    assert [s for s, _ in mails] == [
        "Vi har modtaget din anmodning – Nordklinikken",
        "Din anmodning er godkendt – Nordklinikken",
    ]
    text = mails[1][1]
    assert "Du har adgang til:\n  - E-konsultation\n  - Tidsbestilling\n  - Receptfornyelse" in text

    # again: exactly once
    r = cli("requests approve 1", expect=1)
    assert r.stderr == (
        f"Error: Request 1 was already approved by bo at {when(db_url, home, 1)}.\n"
    )


def test_approve_with_chosen_services(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    three_requests(cli)
    cli("clinic services --disable prescription-renewal")
    add_doctor(staff)
    r = cli("requests approve 1 --services booking,prescription-renewal", expect=2)
    assert r.stderr == (
        "Error: Clinic NORD does not offer prescription-renewal (it offers e-consultation, "
        "booking).\n"
    )
    r = cli("requests approve 1 --services bogus", expect=2)
    assert r.stderr.startswith("Error: Unknown service 'bogus'")
    cli("requests approve 1 --services booking")
    cli("requests approve 3")  # default: requested ∩ offered
    with db_session(db_url, home) as session:
        assert links(session) == [
            ("0102031234", "booking"),
            ("0304053456", "e-consultation,booking"),
        ]
        assert requests(session)[1].status == "pending"


def test_approve_links_an_existing_user_without_a_second_user(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "open")
    cli("clinic create SYD --name Sydklinikken --registration approval")
    register(cli)  # a user at NORD
    # an anonymous request made now would be refused ("log in instead"); inside MitID the
    # typed name and e-mail are only shown to the clinic, never used for the user or mail
    register(cli, clinic="SYD", name="J. Hansen", email="j@example.dk", password=None, mitid=True)
    add_doctor(staff, login=False, clinic="NORD")
    add_doctor(staff, clinic="SYD")  # bo works at both clinics
    r = cli("requests approve 1")
    assert r.stderr == (
        "Request 1 approved: the existing portal user of 010203-**** linked; services: "
        "e-consultation, booking, prescription-renewal.\n"
    )
    with db_session(db_url, home) as session:
        [user] = users(session)
        assert (user.name, user.email) == ("Jens Hansen", "jens@example.dk")  # kept
        assert passwords.verify_password(user.password_hash, PW)
        assert len(links(session, "SYD")) == 1 and len(links(session, "NORD")) == 1
    assert mail_to(home, "j@example.dk") == []
    [(subject, _)] = [m for m in mail_to(home, "jens@example.dk") if "godkendt" in m[0]]
    assert subject == "Din anmodning er godkendt – Sydklinikken"
    [row] = json.loads(cli("requests list -o json --status all").stdout)
    assert (row["user"], row["existing_user"], row["user_created"]) == ("existing", True, False)


def test_approve_when_staff_linked_the_patient_meanwhile(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "approval")
    register(cli)
    set_mode(cli, "open", "--pending", "keep")
    cli("clinic create SYD --name Sydklinikken --registration open")
    register(cli, clinic="SYD")  # the user now exists (made at SYD)
    with db_session(db_url, home) as session:  # ... and NORD's staff link it by hand
        user = users(session)[0]
        users_service.link_user(session, clinic_id=1, user=user, by="anna", services="booking")
        session.commit()
    add_doctor(staff, clinic="NORD")
    r = cli("requests approve 1")
    assert r.stderr == (
        "Request 1 approved: 010203-**** was already linked to the clinic (its services are "
        "unchanged: booking).\n"
    )


def test_reject_with_and_without_reason(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    three_requests(cli)
    add_doctor(staff)
    r = cli(["requests", "reject", "1", "--reason", "Vi kender dig ikke [bold]endnu[/bold]"])
    assert r.stderr == "Request 1 rejected: the reason was e-mailed.\n"
    r = cli("requests reject 2")
    assert r.stderr == "Request 2 rejected: the patient was e-mailed (no reason).\n"
    [(subject, text)] = mail_to(home, "anne@example.dk")[1:]
    assert subject == "Svar på din anmodning – Nordklinikken"
    assert "Begrundelse: Vi kender dig ikke [bold]endnu[/bold]" in text
    [(_, text)] = mail_to(home, "bent@example.dk")[1:]
    assert "Begrundelse" not in text
    with db_session(db_url, home) as session:
        assert users(session) == []
        first, second, _ = requests(session)
        assert (first.status, first.reason, first.decided_by) == (
            "rejected",
            "Vi kender dig ikke [bold]endnu[/bold]",
            "bo",
        )
        assert first.password_hash is None and second.password_hash is None
        assert [e.target for e in audit_events(session, "request.reject")] == [
            "request:1",
            "request:2",
        ]
    r = cli("requests approve 1", expect=1)
    assert r.stderr == f"Error: Request 1 was already rejected by bo at {when(db_url, home, 1)}.\n"
    r = cli(["requests", "reject", "3", "--reason", "bad\x1b[2Jreason"], expect=2)
    assert r.stderr == "Error: Invalid reason: it contains the control character U+001B.\n"


def test_several_ids_each_decided_on_its_own(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    three_requests(cli)
    add_doctor(staff)
    cli("requests reject 2")
    r = cli("requests approve 1 2 99 3 1", expect=1)
    assert r.stderr == (
        "Request 1 approved: portal user created for 010203-**** and linked; services: "
        "e-consultation, booking, prescription-renewal.\n"
        f"Error: Request 2 was already rejected by bo at {when(db_url, home, 2)}.\n"
        "Error: No registration request 99 at clinic NORD.\n"
        "Request 3 approved: portal user created for 030405-**** and linked; services: "
        "e-consultation, booking, prescription-renewal.\n"
    )
    assert ids(cli) == []
    assert len(mail_to(home, "carl@example.dk")) == 2  # received + approved, sent at the end


def test_request_ids_complete_on_tab(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    three_requests(cli)
    cli("clinic create SYD --name Sydklinikken --registration approval")
    register(cli, "040506-4567", clinic="SYD", name="Dorte", email="dorte@example.dk")
    add_doctor(staff, clinic="NORD")
    cli("requests approve 2")
    base = {k: v for k, v in os.environ.items() if not k.startswith("_")}
    base.update(
        _PATIENTPORTAL_COMPLETE="complete_bash",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )

    def complete(words: str, **extra: str) -> list[str]:
        """As bash asks: in this process (fast), like a subprocess would."""
        env = {**base, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
        STATE.db_url = STATE.home = STATE.clinic = None  # as in a fresh process
        r = CliRunner().invoke(app, [], env={**env, **extra}, prog_name="patientportal")
        assert r.exit_code == 0, r
        return r.stdout.split()

    assert complete("patientportal requests approve ") == ["1", "3"]
    assert complete("patientportal requests reject 3") == ["3"]
    assert complete("patientportal requests show --clinic SYD ") == []  # bo is not at SYD
    anna = staff.login("anna")  # admin at both clinics
    assert complete("patientportal requests show --clinic SYD ", PATIENTPORTAL_TOKEN=anna) == ["4"]
    assert complete("patientportal --clinic syd requests approve ", PATIENTPORTAL_TOKEN=anna) == [
        "4"
    ]
    assert complete("patientportal requests approve ", PATIENTPORTAL_TOKEN=anna) == []  # which?
    assert complete("patientportal requests approve ", PATIENTPORTAL_TOKEN="pp_bogus") == []
    assert complete("patientportal requests approve ", PATIENTPORTAL_DB_URL="bogus://x") == []

    # once as the shell really does it: a separate process
    env = {**base, "COMP_WORDS": "patientportal requests approve ", "COMP_CWORD": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "patientportal_cli"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert (proc.returncode, proc.stdout.split()) == (0, ["1", "3"]), proc
