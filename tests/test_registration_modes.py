"""`portal register` under each registration mode (rule R2), on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from patientportal_cli.errors import Conflict, Refused
from patientportal_cli.services import mitid, passwords, registration
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import audit_events, db_session, links, requests, users
from tests.helpers.mail import mail_to
from tests.helpers.people import CPR, NUMBER, PW, register, set_mode

NONE_REFUSAL = (
    "Error: Nordklinikken tilbyder ikke online selv-oprettelse på Patientportalen. Kontakt "
    "venligst klinikken, som kan oprette dig som bruger.\n"
)
REQUESTED = (
    "Registration request 1 sent to clinic NORD (Nordklinikken) for a new portal user: a "
    "doctor approves or rejects it, and the answer is e-mailed. Services asked for: "
    "e-consultation, booking, prescription-renewal.\n"
)


def test_mode_none_refuses_in_danish_and_stores_nothing(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    r = register(cli, expect=1)
    assert (r.stdout, r.stderr) == ("", NONE_REFUSAL)
    with db_session(db_url, home) as session:
        assert users(session) == []
        assert requests(session) == []
        assert audit_events(session, "request.") == audit_events(session, "registration.") == []
    assert not (home / "maildir").exists()


def test_mode_approval_makes_one_pending_request_and_mails_the_patient(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "approval")
    r = register(cli)
    assert (r.stdout, r.stderr) == ("", REQUESTED)
    with db_session(db_url, home) as session:
        assert users(session) == []
        [req] = requests(session)
        assert (req.cpr, req.name, req.email, req.status) == (
            NUMBER,
            "Jens Hansen",
            "jens@example.dk",
            "pending",
        )
        assert req.services == "e-consultation,booking,prescription-renewal"
        assert passwords.verify_password(req.password_hash, PW)  # hashed, never plain
        assert req.password_hash != PW
        [event] = audit_events(session, "request.submit")
        assert (event.actor, event.clinic, event.target) == ("patient", "NORD", "request:1")
    [(subject, text)] = mail_to(home, "jens@example.dk")
    assert subject == "Vi har modtaget din anmodning – Nordklinikken"
    assert "afventer nu godkendelse af en læge" in text
    assert NUMBER not in text and CPR not in text

    # a second registration while the first is pending is told so, not duplicated
    r = register(cli, name="Jens H.", expect=1)
    with db_session(db_url, home) as session:
        [req] = requests(session)
        when = req.submitted_at.strftime("%Y-%m-%d %H:%M")
    assert r.stderr == (
        f"Error: A registration request for this CPR number (request 1, submitted {when} UTC) "
        "is already waiting for a doctor at clinic NORD; the patient is e-mailed when it is "
        "decided.\n"
    )
    assert len(mail_to(home, "jens@example.dk")) == 1


def test_mode_open_creates_the_user_with_requested_services_the_clinic_offers(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "open")
    cli("clinic services --disable prescription-renewal")
    r = register(cli, services="prescription-renewal,booking")
    assert (r.stdout, r.stderr) == (
        "",
        "Portal user created and linked to clinic NORD (Nordklinikken); services: booking. "
        "The first login needs MitID, where you confirm your password and e-mail (or the "
        "clinic's no-MitID flag).\n",
    )
    with db_session(db_url, home) as session:
        [user] = users(session)
        assert (user.cpr, user.name, user.email, user.origin) == (
            NUMBER,
            "Jens Hansen",
            "jens@example.dk",
            "self",
        )
        assert passwords.verify_password(user.password_hash, PW)
        assert links(session) == [(NUMBER, "booking")]
        assert requests(session) == []
        [event] = audit_events(session, "registration.open")
        assert (event.actor, event.target) == ("patient", f"cpr:{NUMBER}")
    [(subject, text)] = mail_to(home, "jens@example.dk")
    assert subject == "Du er nu tilknyttet Nordklinikken på Patientportalen"
    assert "Ved første login kræves verificering med MitID" in text

    # the same CPR again: without a login, only "log in instead" (nothing about this clinic)
    r = register(cli, expect=1)
    assert r.stderr.startswith("Error: A portal user with this CPR number already exists")
    # inside MitID: it already has access here
    r = register(cli, expect=1, mitid=True)
    assert r.stderr == (
        "Error: This CPR number already has access to clinic NORD on Patientportalen: log in "
        "with `patientportal portal login`.\n"
    )


def test_open_without_services_grants_all_the_clinic_offers(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "open")
    cli("clinic services --disable booking")
    register(cli)
    with db_session(db_url, home) as session:
        assert links(session) == [(NUMBER, "e-consultation,prescription-renewal")]


def test_existing_user_is_linked_not_duplicated_and_keeps_its_password(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "open")
    cli("clinic create SYD --name Sydklinikken --registration open")
    register(cli)  # at NORD, a new user with PW
    # at SYD, inside MitID: no password is asked (none on stdin, no terminal); the other
    # name/e-mail given are not used
    r = register(
        cli,
        clinic="SYD",
        name="Jens Other",
        email="other@example.dk",
        password=None,
        mitid=True,
    )
    assert r.stderr == (
        "Your portal user is now linked to clinic SYD (Sydklinikken) (its name, e-mail and "
        "password are unchanged); services: e-consultation, booking, prescription-renewal.\n"
    )
    with db_session(db_url, home) as session:
        [user] = users(session)
        assert (user.name, user.email) == ("Jens Hansen", "jens@example.dk")
        assert passwords.verify_password(user.password_hash, PW)
        assert len(links(session, "SYD")) == 1
        [event] = audit_events(session, "registration.open")[1:]
        assert event.clinic == "SYD"
        assert '"user_created": false' in event.details
        assert '"mitid": true' in event.details
    assert mail_to(home, "other@example.dk") == []  # only the user's own address is mailed
    subjects = [subject for subject, _ in mail_to(home, "jens@example.dk")]
    assert subjects[-1] == "Du er nu tilknyttet Sydklinikken på Patientportalen"


def test_existing_user_in_approval_mode_becomes_a_link_request(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "open")
    cli("clinic create SYD --name Sydklinikken --registration approval")
    register(cli)
    r = register(cli, clinic="SYD", password=None, mitid=True)
    assert r.stderr.startswith(
        "Registration request 1 sent to clinic SYD (Sydklinikken) for the existing portal user"
    )
    with db_session(db_url, home) as session:
        [req] = requests(session)
        assert req.password_hash is None  # the existing user keeps theirs
        assert len(users(session)) == 1


def test_open_registration_withdraws_a_request_kept_from_approval_mode(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "approval")
    register(cli)
    set_mode(cli, "open", "--pending", "keep")
    register(cli)
    with db_session(db_url, home) as session:
        [req] = requests(session)
        assert (req.status, req.decided_by, req.password_hash) == ("withdrawn", "patient", None)
        assert len(users(session)) == 1


INVALID = [
    (
        {"cpr": "010203-12345"},
        "Invalid CPR number: expected 10 digits as DDMMYY-SSSS, DDMMYY SSSS or DDMMYYSSSS.",
    ),
    ({"cpr": "310203-1234"}, "Invalid CPR number"),  # no 31 February: the CPR module's text
    ({"email": "not-an-address"}, "Invalid e-mail address 'not-an-address':"),
    ({"name": "Jens\x1b[2J"}, "Invalid name 'Jens\\x1b[2J': it contains the control"),
    ({"services": "booking,teleportation"}, "Unknown service 'teleportation'"),
    (
        {"password": "short"},
        "The password needs at least 8 characters, an upper-case letter, a digit.",
    ),
]


def test_invalid_input_exits_2_and_stores_nothing(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "approval")
    for args, message in INVALID:
        r = register(cli, **args, expect=2)  # type: ignore[arg-type]
        assert r.stderr.startswith("Error: " + message), (args, r.stderr)
        assert r.stderr.count("\n") == 1
    with db_session(db_url, home) as session:
        assert requests(session) == []
        assert users(session) == []


def test_missing_values_without_a_terminal_exit_2(cli: Cli, staff: Staff) -> None:
    set_mode(cli, "open")
    r = register(cli, password=None, expect=2)
    assert r.stderr == "Error: Missing password: pass --password-stdin (no terminal to ask on).\n"
    r = cli(["portal", "register", CPR, "--clinic", "NORD", "--email", "a@example.dk"], expect=2)
    assert r.stderr == "Error: Missing name: pass --name (no terminal to ask on).\n"
    r = cli(["portal", "register", CPR, "--name", "Jens", "--email", "a@example.dk"], expect=2)
    assert r.stderr == "Error: Missing clinic code: pass --clinic (no terminal to ask on).\n"


def test_unknown_clinic_exits_1(cli: Cli, staff: Staff) -> None:
    r = register(cli, clinic="NOPE", expect=1)
    assert r.stderr == "Error: No clinic with code 'NOPE'.\n"


def test_text_is_stored_and_shown_literally(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "approval")
    name = "[bold red]Robert'); DROP TABLE portal_user;--"
    register(cli, name=name)
    r = cli("requests list -o json")
    assert f'"name": "{name}"' in r.stdout
    r = cli("requests list")
    assert "[bold red]Robert');" in r.stdout


# --- the service, directly ------------------------------------------------------------
def _never() -> str:
    raise AssertionError("the password must not be asked")


def test_service_does_not_ask_an_existing_user_for_a_password(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    set_mode(cli, "open")
    register(cli)
    cli("clinic create SYD --name Sydklinikken --registration approval")
    with db_session(db_url, home) as session:
        with pytest.raises(Refused, match="already exists: log in instead"):
            registration.register(  # not inside a MitID login
                session,
                clinic_code="SYD",
                cpr=CPR,
                name="Jens Hansen",
                email="jens@example.dk",
                password=_never,
            )
        done = registration.register(
            session,
            clinic_code="syd",
            cpr=CPR,
            name="Jens Hansen",
            email="jens@example.dk",
            services=["booking"],
            password=_never,
            broker=mitid.broker(),
        )
        assert (done.outcome, done.existing_user, done.services) == ("requested", True, ["booking"])
        with pytest.raises(Conflict):
            registration.register(
                session,
                clinic_code="SYD",
                cpr=NUMBER,
                name="Jens Hansen",
                email="jens@example.dk",
                password=_never,
                broker=mitid.broker(),
            )
        with pytest.raises(Conflict):  # already linked at NORD
            registration.register(
                session,
                clinic_code="NORD",
                cpr=NUMBER,
                name="Jens Hansen",
                email="jens@example.dk",
                password=_never,
                broker=mitid.broker(),
            )


def test_service_refuses_mode_none_before_asking_for_a_password(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    with db_session(db_url, home) as session, pytest.raises(Refused):
        registration.register(
            session,
            clinic_code="NORD",
            cpr=CPR,
            name="Jens Hansen",
            email="jens@example.dk",
            password=_never,
        )
