"""A self-registration acts only for the person who proves to be the patient (both backends).

An account takeover, step by step through the `patientportal` command: someone
self-registers a stranger's CPR number with their own password and e-mail; another
clinic links that user; the real patient logs in with MitID there. The attacker's
two-factor login must fail (no code mailed), because a MitID login alone vouches for
nothing. And a CPR number that has a portal user registers only inside a MitID login.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from sqlmodel import col, select

from patientportal_cli import prompts
from patientportal_cli.db.models import AuditEvent, Outbox, RegistrationRequest
from patientportal_cli.services import passwords
from patientportal_cli.services.portal import MITID_REQUIRED
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import db_session, link_row, user_row
from tests.helpers.mail import Inbox
from tests.helpers.people import staff_creates_patient
from tests.helpers.portal import attempt_of

CPR = "050575-1234"
NUMBER = "0505751234"
ATTACKER = "attacker@evil.example"
VICTIM = "victim@example.dk"
EVIL_PW = "Evil-pass1"
PW = "Patient-pass1"
REFUSED = f"Error: {MITID_REQUIRED}\n"
LOG_IN_INSTEAD = (
    "Error: A portal user with this CPR number already exists: log in instead. To add "
    "clinic SYD to it, register inside a MitID login: `patientportal portal register CPR "
    "--clinic SYD --login mitid`.\n"
)
NOT_CONFIRMED = (
    "Warning: The password and e-mail chosen at registration (a***@evil.example) are not "
    "confirmed: "
    "two-factor login stays closed until you confirm them (`patientportal portal login CPR "
    "--clinic NORD --method mitid --confirm-credentials`) or replace them (`--email NEW "
    "--new-password-stdin`).\n"
)


def attacker_registers(cli: Cli, *, clinic: str = "SYD", expect: int = 0) -> Any:
    return cli(
        ["portal", "register", CPR, "--clinic", clinic, "--name", "Victim"]
        + ["--email", ATTACKER, "--password-stdin"],
        input=EVIL_PW + "\n",
        expect=expect,
    )


def two_factor(cli: Cli, *, clinic: str = "NORD", password: str = EVIL_PW, expect: int = 1) -> Any:
    return cli(
        f"portal login {CPR} --clinic {clinic} --method two-factor --password-stdin",
        input=password + "\n",
        expect=expect,
    )


def mitid(
    cli: Cli,
    *extra: str,
    clinic: str = "NORD",
    input: str | None = None,  # noqa: A002
    expect: int = 0,
) -> Any:
    return cli(
        ["portal", "login", CPR, "--clinic", clinic, "--method", "mitid", *extra],
        input=input,
        expect=expect,
    )


def code_rows(db_url: str, home: Path) -> list[tuple[str, str]]:
    """(recipient, template) of every queued or sent mail that carries a code."""
    with db_session(db_url, home) as session:
        rows = session.exec(
            select(Outbox).where(col(Outbox.template).in_(["security_code", "activation"]))
        ).all()
        return [(r.recipient, r.template) for r in rows]


def mail_to(home: Path, address: str) -> list[str]:
    """Subjects of the delivered mail to ``address``."""
    return [str(m["Subject"]) for m in Inbox(home).all() if address in str(m["To"])]


@pytest.fixture
def syd_open(staff: Staff) -> Staff:
    """NORD (approval off) and SYD, an open clinic; anna is admin at both."""
    staff.cli("clinic create SYD --name Sydklinikken --registration open")
    return staff


# --- the takeover, step by step --------------------------------------------------------


def test_the_takeover_fails_at_the_attackers_login(
    cli: Cli, syd_open: Staff, db_url: str, home: Path
) -> None:
    r = attacker_registers(cli)
    assert r.stderr.startswith("Portal user created and linked to clinic SYD (Sydklinikken)")
    cli(f"patient link {CPR} --clinic NORD")  # staff at NORD link the (existing) user
    r = mitid(cli)  # the real patient, no confirmation
    assert r.stderr == "Logged in with MitID (simulated) at clinic NORD.\n" + NOT_CONFIRMED
    for clinic in ("NORD", "SYD"):
        r = two_factor(cli, clinic=clinic)
        assert r.stderr == REFUSED, clinic
        assert r.stdout == ""
    r = cli(f"portal verify {CPR} --clinic NORD --attempt {'A' * 22} --code 123456", expect=1)
    assert "Logged in" not in r.stderr
    assert code_rows(db_url, home) == []
    assert not [s for s in mail_to(home, ATTACKER) if "sikkerhedskode" in s.lower()]
    with db_session(db_url, home) as session:
        user = user_row(session, NUMBER)
        assert user.credentials_vouched_at is None and user.mitid_verified_at is not None
        refusals = session.exec(
            select(AuditEvent).where(AuditEvent.action == "portal.login_refused")
        ).all()
        assert len(refusals) == 2
        assert all("not confirmed yet" in e.details for e in refusals)
    # the clinic sees why
    data = json.loads(cli(f"patient access {CPR} --clinic NORD -o json").stdout)
    assert data["two_factor"]["allowed"] is False
    assert (
        "the password and e-mail chosen at self-registration are not confirmed yet"
        in (data["two_factor"]["reason"])
    )


def test_the_real_patient_replaces_the_credentials_inside_mitid(
    cli: Cli, syd_open: Staff, db_url: str, home: Path
) -> None:
    attacker_registers(cli)
    cli(f"patient link {CPR} --clinic NORD")
    r = mitid(cli, "--email", VICTIM, "--new-password-stdin", input=PW + "\n")
    assert r.stderr == (
        "Logged in with MitID (simulated) at clinic NORD.\n"
        "New e-mail and password set: two-factor login can use them (codes go to "
        "v***@example.dk).\n"
    )
    # the attacker's password no longer works anywhere; the patient's does, at NORD
    for clinic in ("NORD", "SYD"):
        r = two_factor(cli, clinic=clinic)
        assert r.stderr == "Error: Login failed: wrong CPR number or password.\n"
    r = two_factor(cli, password=PW, expect=0)
    code = Inbox(home).security_code(VICTIM)
    cli(f"portal verify {CPR} --clinic NORD --attempt {attempt_of(r.stderr)} --code {code}")
    assert code_rows(db_url, home) == [(VICTIM, "security_code")]
    with db_session(db_url, home) as session:
        user = user_row(session, NUMBER)
        assert user.email == VICTIM and user.credentials_vouched_at is not None
        [event] = session.exec(
            select(AuditEvent).where(AuditEvent.action == "portal.credentials_replaced")
        ).all()
        assert json.loads(event.details) == {"method": "mitid", "email_changed": True}


def test_confirming_the_credentials_makes_them_usable(
    cli: Cli, syd_open: Staff, db_url: str, home: Path
) -> None:
    """A patient who registered themselves (here: at SYD) confirms in a MitID login."""
    cli(
        ["portal", "register", CPR, "--clinic", "SYD", "--name", "Vera", "--email", VICTIM]
        + ["--password-stdin"],
        input=PW + "\n",
    )
    two_factor(cli, clinic="SYD", password=PW)  # not yet: R5 message
    r = mitid(cli, "--confirm-credentials", clinic="SYD")
    assert r.stderr == (
        "Logged in with MitID (simulated) at clinic SYD.\n"
        "Password and e-mail confirmed: two-factor login can use them.\n"
    )
    r = two_factor(cli, clinic="SYD", password=PW, expect=0)
    assert "A security code was e-mailed to v***@example.dk" in r.stderr
    # asked once only: the next MitID login has nothing to confirm
    r = mitid(cli, "--confirm-credentials", clinic="SYD")
    assert r.stderr == (
        "Logged in with MitID (simulated) at clinic SYD.\n"
        "The password and e-mail were already confirmed: nothing changed.\n"
    )


def test_a_clinic_created_user_is_not_asked(cli: Cli, staff: Staff) -> None:
    staff_creates_patient(cli, cpr=CPR, name="Vera", email=VICTIM)
    assert mitid(cli).stderr == "Logged in with MitID (simulated) at clinic NORD.\n"


def test_the_no_mitid_flag_vouches_for_the_confirmed_email(
    cli: Cli, syd_open: Staff, db_url: str, home: Path
) -> None:
    """R5/R6: a patient without MitID gets two-factor login through the clinic's flag."""
    cli(
        ["portal", "register", CPR, "--clinic", "SYD", "--name", "Vera", "--email", VICTIM]
        + ["--password-stdin"],
        input=PW + "\n",
    )
    cli(f"no-mitid set {CPR} --confirm-email-owner --clinic SYD")
    two_factor(cli, clinic="SYD", password=PW, expect=0)
    with db_session(db_url, home) as session:
        assert user_row(session, NUMBER).credentials_vouched_at is not None


def test_credentials_on_a_terminal(cli: Cli, syd_open: Staff, db_url: str, home: Path) -> None:
    attacker_registers(cli)
    cli(f"patient link {CPR} --clinic NORD")
    down, enter = "\x1b[B", "\r"
    with create_pipe_input() as pipe:
        # "No: choose a new e-mail and password now", then the e-mail and the password twice
        for text in (down + enter, VICTIM + enter, PW + enter, PW + enter):
            pipe.send_text(text)
        with prompts.use_io(pipe, DummyOutput()):
            r = mitid(cli)
    assert r.stderr == (
        "Your portal user has a password and the e-mail a***@evil.example, chosen when it "
        "was registered online. They work for two-factor login only once you confirm them "
        "here.\n"
        "Logged in with MitID (simulated) at clinic NORD.\n"
        "New e-mail and password set: two-factor login can use them (codes go to "
        "v***@example.dk).\n"
    )
    with db_session(db_url, home) as session:
        user = user_row(session, NUMBER)
        assert user.email == VICTIM
        assert user.password_hash and passwords.verify_password(user.password_hash, PW)


def test_credential_options_are_checked_first(cli: Cli, syd_open: Staff) -> None:
    attacker_registers(cli)
    r = cli(
        f"portal login {CPR} --clinic SYD --method two-factor --confirm-credentials",
        expect=2,
    )
    assert r.stderr == (
        "Error: --confirm-credentials, --email and --new-password-stdin go with --method mitid.\n"
    )
    r = mitid(cli, "--email", VICTIM, clinic="SYD", expect=2)
    assert r.stderr == (
        "Error: Replacing the credentials needs both --email NEW and --new-password-stdin.\n"
    )
    r = cli(
        ["portal", "login", CPR, "--clinic", "SYD", "--method", "mitid"]
        + ["--email", VICTIM, "--new-password-stdin"],
        input="short\n",
        expect=2,
    )
    assert r.stderr.startswith("Error: The password needs at least 8 characters")
    r = cli(
        ["portal", "login", CPR, "--clinic", "SYD", "--method", "mitid"]
        + ["--confirm-credentials", "--email", VICTIM],
        expect=2,
    )
    assert r.stderr.startswith("Error: --confirm-credentials keeps the password and e-mail;")


# --- registering a CPR number that has a portal user ---------------------------------


def test_anonymous_registration_of_an_existing_user_is_refused(
    cli: Cli, syd_open: Staff, db_url: str, home: Path
) -> None:
    staff_creates_patient(cli, cpr=CPR, name="Vera", email=VICTIM)
    before = len(Inbox(home).all())
    r = attacker_registers(cli, expect=1)
    assert r.stderr == LOG_IN_INSTEAD
    cli("clinic set-registration approval --clinic SYD")
    r = attacker_registers(cli, expect=1)
    assert r.stderr == LOG_IN_INSTEAD
    assert len(Inbox(home).all()) == before  # no mail at all
    assert mail_to(home, ATTACKER) == []
    with db_session(db_url, home) as session:
        assert session.exec(select(RegistrationRequest)).all() == []
        user = user_row(session, NUMBER)
        assert (user.name, user.email) == ("Vera", VICTIM)
        with pytest.raises(Exception, match="No row was found"):
            link_row(session, NUMBER, "SYD")
        refused = session.exec(
            select(AuditEvent).where(AuditEvent.action == "registration.refused")
        ).all()
        assert [json.loads(e.details)["reason"] for e in refused] == [
            "existing_user_not_logged_in"
        ] * 2


def test_registering_inside_mitid_links_and_mails_the_stored_address(
    cli: Cli, syd_open: Staff, db_url: str, home: Path
) -> None:
    staff_creates_patient(cli, cpr=CPR, name="Vera", email=VICTIM)
    r = cli(
        ["portal", "register", CPR, "--clinic", "SYD", "--login", "mitid"]
        + ["--name", "Somebody", "--email", ATTACKER]
    )
    assert r.stderr == (
        "Your portal user is now linked to clinic SYD (Sydklinikken) (its name, e-mail and "
        "password are unchanged); services: e-consultation, booking, prescription-renewal.\n"
    )
    assert mail_to(home, ATTACKER) == []
    assert mail_to(home, VICTIM)[-1] == "Du er nu tilknyttet Sydklinikken på Patientportalen"
    with db_session(db_url, home) as session:
        assert link_row(session, NUMBER, "SYD").linked_by == "patient"
        user = user_row(session, NUMBER)
        assert (user.name, user.email) == ("Vera", VICTIM)


def test_a_new_user_registered_inside_mitid_is_vouched_for(
    cli: Cli, syd_open: Staff, db_url: str, home: Path
) -> None:
    r = cli(
        ["portal", "register", CPR, "--clinic", "SYD", "--login", "mitid"]
        + ["--name", "Vera", "--email", VICTIM, "--password-stdin"],
        input=PW + "\n",
    )
    assert r.stderr.startswith(
        "Portal user created and linked to clinic SYD (Sydklinikken) inside your MitID login"
    )
    two_factor(cli, clinic="SYD", password=PW, expect=0)


def _doctor_at_syd(staff: Staff) -> None:
    staff.add("bo", "doctor", name="Dr Bo", clinic="SYD")
    staff.login("bo", clinic="SYD")


def test_a_request_made_before_the_user_existed_links_nobody_else(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """Approval mode: the anonymous request for a then-unknown CPR number is approved
    after a clinic created the real patient: the request's password and e-mail are not
    used, and only the patient's own address is mailed."""
    cli("clinic create SYD --name Sydklinikken --registration approval")
    attacker_registers(cli)
    staff_creates_patient(cli, cpr=CPR, name="Vera", email=VICTIM)
    _doctor_at_syd(staff)
    r = cli("requests approve 1")
    assert r.exit_code == 0
    assert [s for s in mail_to(home, ATTACKER) if "godkendt" in s.lower()] == []
    assert any("godkendt" in s.lower() for s in mail_to(home, VICTIM))
    for clinic in ("NORD", "SYD"):
        assert two_factor(cli, clinic=clinic).stderr == (
            "Error: Login failed: wrong CPR number or password.\n"
        )
    assert ("attacker@evil.example", "security_code") not in code_rows(db_url, home)
    with db_session(db_url, home) as session:
        assert user_row(session, NUMBER).email == VICTIM


def test_a_request_made_inside_mitid_for_an_existing_user(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli("clinic create SYD --name Sydklinikken --registration approval")
    staff_creates_patient(cli, cpr=CPR, name="Vera", email=VICTIM)
    r = cli(["portal", "register", CPR, "--clinic", "SYD", "--login", "mitid"])
    assert r.stderr.startswith(
        "Registration request 1 sent to clinic SYD (Sydklinikken) for the existing portal user"
    )
    _doctor_at_syd(staff)
    cli("requests approve 1")
    with db_session(db_url, home) as session:
        [request] = session.exec(select(RegistrationRequest)).all()
        assert request.mitid_verified_at is not None
        # the request shows SYD nothing of the user (not SYD's patient before approval)
        assert (request.name, request.email, request.password_hash) == ("", "", None)
        assert link_row(session, NUMBER, "SYD").clinic_id is not None
    subjects = mail_to(home, VICTIM)  # a Maildir has no order
    assert "Vi har modtaget din anmodning – Sydklinikken" in subjects
    assert "Din anmodning er godkendt – Sydklinikken" in subjects


# --- the import vouches as a clinic does ---------------------------------------------


@contextmanager
def _csv(tmp: Path, rows: str) -> Iterator[Path]:
    path = tmp / "patients.csv"
    path.write_text("cpr,name,email,no_mitid\n" + rows, encoding="utf-8")
    yield path


def test_import_vouches_for_created_users_and_flagged_existing_ones(
    cli: Cli, syd_open: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    cli(
        ["portal", "register", CPR, "--clinic", "SYD", "--name", "Vera", "--email", VICTIM]
        + ["--password-stdin"],
        input=PW + "\n",
    )
    rows = f"{CPR},Vera,{VICTIM},ja\n010203-1234,Jens,jens@example.dk,\n"
    with _csv(tmp_path, rows) as path:
        cli(f"patient import {path} --clinic NORD --confirm-email-owner --no-invite --yes")
    with db_session(db_url, home) as session:
        assert user_row(session, NUMBER).credentials_vouched_at is not None
        assert user_row(session, "0102031234").credentials_vouched_at is not None
    two_factor(cli, clinic="NORD", password=PW, expect=0)


def test_portal_help_says_mitid_is_simulated(cli: Cli) -> None:
    text = " ".join(cli("portal --help").stdout.split())
    assert "MitID is SIMULATED in this tool: it accepts any valid CPR number" in text
