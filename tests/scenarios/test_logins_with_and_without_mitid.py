"""Which patients log in with a password and a mailed code, and which need MitID, end to
end on both backends: with the no-MitID flag two-factor login works (R4); without it
the first login needs MitID (R5); once the flag is removed, MitID again (R7).

Each scenario drives the `patientportal` command on the staff side and on the patient's
side (`portal ...`), and reads the activation and security codes from the mail as it
was delivered (the default Maildir under the home directory).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import Cli, Staff
from tests.helpers.db import db_session, link_row, portal_events, user_row
from tests.helpers.mail import Inbox
from tests.helpers.people import self_registers, set_no_mitid, staff_creates_patient
from tests.helpers.portal import ATTEMPT_ID, attempt_of

CPR = "150580-1234"
NUMBER = "1505801234"
EMAIL = "mette@example.dk"
PW = "Patient-pass1"
MITID_MESSAGE = (
    "Error: Ved første login kræves verificering med MitID for at bekræfte din identitet. "
    "Kontakt klinikken, hvis du ikke har MitID.\n"
)
CODE_SENT = (
    "A security code was e-mailed to m***@example.dk (valid 10 minutes).\n"
    "No terminal to ask for it: give it with `patientportal portal verify CPR --clinic NORD "
    "--attempt ID --code CODE`.\n"
)
NOT_VALID = (
    "Error: The security code is not valid for this login: log in again to get a new code.\n"
)
ATTEMPTS: list[str] = []  # the attempt ids of this test's two-factor logins, newest last


def two_factor(cli: Cli, expect: int = 0, password: str = PW) -> str:
    """A two-factor login at NORD: its output, with the attempt id (kept) shown as ID."""
    r = cli(
        f"portal login {CPR} --clinic NORD --method two-factor --password-stdin",
        input=password + "\n",
        expect=expect,
    )
    assert r.stdout == ""
    return _attempt_as_id(r.stderr)


def _attempt_as_id(text: str) -> str:
    if ATTEMPT_ID.search(text):
        ATTEMPTS.append(attempt_of(text))
    return ATTEMPT_ID.sub("--attempt ID ", text)


@pytest.fixture(autouse=True)
def _fresh_attempts() -> None:
    ATTEMPTS.clear()


def verify(cli: Cli, code: str, expect: int = 0, clinic: str = "NORD") -> str:
    """`portal verify` with the newest login's attempt id."""
    r = cli(
        f"portal verify {CPR} --clinic {clinic} --attempt {ATTEMPTS[-1]} --code {code}",
        expect=expect,
    )
    assert r.stdout == ""
    return r.stderr


def full_two_factor_login(cli: Cli, inbox: Inbox) -> None:
    assert two_factor(cli) == CODE_SENT
    assert verify(cli, inbox.security_code(EMAIL)) == "Logged in.\n"


def test_rule_r4_no_mitid_patient_logs_in_with_two_factor(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """R4: staff create the patient with "Patienten har ikke MitID"; the patient
    activates the user from the e-mail and logs in with password + e-mailed code."""
    inbox = Inbox(home)
    staff_creates_patient(cli, cpr=NUMBER, name="Mette Hansen", email=EMAIL, no_mitid=True)
    code = inbox.activation_code(EMAIL)

    r = cli(f"portal activate {CPR} --clinic NORD --code {code} --password-stdin", input=PW + "\n")
    assert r.stderr == (
        "Password set for 150580-****: you can now log in at clinic NORD "
        "(`patientportal portal login`).\n"
    )
    assert NUMBER not in r.stdout + r.stderr

    full_two_factor_login(cli, inbox)
    # a security code is sent at every login, and each one works once
    assert two_factor(cli) == CODE_SENT
    second = inbox.security_code(EMAIL)
    assert verify(cli, second) == "Logged in.\n"
    assert verify(cli, second, expect=1) == NOT_VALID

    with db_session(db_url, home) as session:
        assert user_row(session, NUMBER).mitid_verified_at is None  # no MitID involved
        events = [e[0] for e in portal_events(session)]
        target = {e[2] for e in portal_events(session)}
    assert events == [
        "portal.activate",
        "portal.login_code_sent",
        "portal.login",
        "portal.login_code_sent",
        "portal.login",
        "portal.login_failed",
    ]
    assert target == {f"cpr:{NUMBER}"}


def test_rule_r5_self_registered_patient_needs_mitid_until_the_clinic_sets_the_flag(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """R5: a self-registered patient without the flag is told (in Danish) that the first
    login needs MitID; after the clinic sets the flag, two-factor login works."""
    inbox = Inbox(home)
    self_registers(cli, cpr=NUMBER, name="Mette Hansen", email=EMAIL, password=PW)

    assert two_factor(cli, expect=1) == MITID_MESSAGE
    assert inbox.no_security_code(EMAIL)  # no security code was sent

    set_no_mitid(cli, cpr=NUMBER, on=True)
    full_two_factor_login(cli, inbox)

    with db_session(db_url, home) as session:
        events = [(e[0], e[1]) for e in portal_events(session)]
    assert events == [
        ("portal.login_refused", "NORD"),
        ("portal.login_code_sent", "NORD"),
        ("portal.login", "NORD"),
    ]


def test_rule_r5_staff_created_patient_without_flag_gets_the_mitid_message(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """R5 for a patient the clinic created without the flag: same message, same cure."""
    inbox = Inbox(home)
    staff_creates_patient(cli, cpr=NUMBER, name="Mette Hansen", email=EMAIL)
    code = inbox.activation_code(EMAIL)
    cli(f"portal activate {CPR} --clinic NORD --code {code} --password-stdin", input=PW + "\n")

    assert two_factor(cli, expect=1) == MITID_MESSAGE
    # a MitID login is the other way in; it also makes two-factor possible (docs/rules.md D1)
    r = cli(f"portal login {CPR} --clinic NORD --method mitid")
    assert r.stderr == "Logged in with MitID (simulated) at clinic NORD.\n"
    full_two_factor_login(cli, inbox)


def test_rule_r7_removing_the_flag_requires_mitid_at_the_next_login(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """R7: after the clinic removes the flag, two-factor is refused there until the
    patient logs in with MitID; a MitID login after the removal allows it again."""
    inbox = Inbox(home)
    staff_creates_patient(cli, cpr=NUMBER, name="Mette Hansen", email=EMAIL, no_mitid=True)
    code = inbox.activation_code(EMAIL)
    cli(f"portal activate {CPR} --clinic NORD --code {code} --password-stdin", input=PW + "\n")
    # a MitID login BEFORE the flag is removed does not count
    cli(f"portal login {CPR} --clinic NORD --method mitid")
    full_two_factor_login(cli, inbox)

    set_no_mitid(cli, cpr=NUMBER, on=False)
    assert two_factor(cli, expect=1) == MITID_MESSAGE
    assert inbox.no_security_code(EMAIL)
    assert access(cli) == (True, False)  # what the staff see agrees
    with db_session(db_url, home) as session:
        removed_at = link_row(session, NUMBER).mitid_required_after
        verified_at = user_row(session, NUMBER).mitid_verified_at
    assert removed_at is not None and verified_at is not None and verified_at < removed_at

    r = cli(f"portal login {CPR} --clinic NORD --method mitid")
    assert r.stderr == "Logged in with MitID (simulated) at clinic NORD.\n"
    with db_session(db_url, home) as session:
        verified_at = user_row(session, NUMBER).mitid_verified_at
    assert verified_at is not None and verified_at > removed_at

    assert access(cli) == (True, True)
    full_two_factor_login(cli, inbox)


def access(cli: Cli) -> tuple[bool, bool]:
    """`patient access -o json` at NORD: (MitID allowed, two-factor allowed)."""
    data = json.loads(cli(f"patient access {CPR} -o json").stdout)
    return data["mitid"]["allowed"], data["two_factor"]["allowed"]


def test_rule_r7_a_pending_security_code_stops_working_when_the_flag_is_removed(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """R7 between the two steps: the code was sent, then the clinic removed the flag."""
    inbox = Inbox(home)
    self_registers(cli, cpr=NUMBER, name="Mette Hansen", email=EMAIL, password=PW)
    set_no_mitid(cli, cpr=NUMBER, on=True)
    assert two_factor(cli) == CODE_SENT
    code = inbox.security_code(EMAIL)

    set_no_mitid(cli, cpr=NUMBER, on=False)
    assert verify(cli, code, expect=1) == MITID_MESSAGE


def test_rule_r7_is_per_clinic(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    """The flag is per clinic link: removing it at NORD leaves SYD's flag working, and a
    code sent for SYD does not log in at NORD."""
    inbox = Inbox(home)
    cli("clinic create SYD --name 'Sydklinikken'")
    self_registers(cli, cpr=NUMBER, name="Mette Hansen", email=EMAIL, password=PW)
    # SYD links the existing user (a second self-registration would need her login)
    cli(
        ["patient", "create", NUMBER, "--name", "Mette Hansen", "--email", EMAIL, "--clinic", "SYD"]
    )
    for clinic in ("NORD", "SYD"):
        set_no_mitid(cli, cpr=NUMBER, on=True, clinic=clinic)

    set_no_mitid(cli, cpr=NUMBER, on=False, clinic="NORD")
    assert two_factor(cli, expect=1) == MITID_MESSAGE
    r = cli(
        f"portal login {CPR} --clinic SYD --method two-factor --password-stdin", input=PW + "\n"
    )
    assert _attempt_as_id(r.stderr) == CODE_SENT.replace("--clinic NORD", "--clinic SYD")
    code = inbox.security_code(EMAIL)
    set_no_mitid(cli, cpr=NUMBER, on=True, clinic="NORD")
    assert verify(cli, code, expect=1) == NOT_VALID
    assert verify(cli, code, clinic="SYD") == "Logged in.\n"
