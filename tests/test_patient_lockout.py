"""Patient lockouts that tell nobody who exists, and security codes nobody else can use up
(both backends, through the `patientportal` command).

- Code burning: someone who knows only the CPR number cannot use up the patient's
  pending security code (a code can be tried only with its login's attempt id).
- Unlimited code tries: wrong security codes count toward the same lock as wrong
  passwords, and a fresh code (a new login) does not start the count again.
- Enumeration: an unknown CPR number, a user not activated, a user not linked to the
  clinic (even with the right password) and a wrong password get the same output, exit
  code and lock; so do the refusals of `portal activate`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.cli import Cli, Result, Staff
from tests.helpers.mail import Inbox
from tests.helpers.people import self_registers, set_no_mitid, staff_creates_patient, unlock
from tests.helpers.portal import attempt_of

CPR = "240694-4321"
EMAIL = "sofie@example.dk"
PW = "Patient-pass1"
LOGIN_FAILED = "Error: Login failed: wrong CPR number or password.\n"
NOT_VALID = "Error: The security code is not valid for this login: log in again to get a new code."
NOW_LOCKED = "After 5 failed attempts, login is locked for 15 minutes.\n"
LOCKED = re.compile(
    r"^Error: Login is locked until \d{4}-\d\d-\d\d \d\d:\d\d UTC after 5 failed attempts: "
    r"try again later, or ask the clinic to unlock it\.\n$"
)


def login(
    cli: Cli, cpr: str = CPR, password: str = PW, clinic: str = "NORD", **kw: int | None
) -> Result:
    return cli(
        f"portal login {cpr} --clinic {clinic} --method two-factor --password-stdin",
        input=password + "\n",
        **kw,
    )


def verify(
    cli: Cli, code: str, attempt: str | None, cpr: str = CPR, expect: int | None = 0
) -> Result:
    with_attempt = ["--attempt", attempt] if attempt is not None else []
    return cli(
        ["portal", "verify", cpr, "--clinic", "NORD", *with_attempt, "--code", code], expect=expect
    )


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


@pytest.fixture
def inbox(staff: Staff, home: Path) -> Inbox:
    """An activated patient with the no-MitID flag at NORD: two-factor login works."""
    self_registers(staff.cli, cpr=CPR, name="Sofie Berg", email=EMAIL, password=PW)
    set_no_mitid(staff.cli, cpr=CPR, on=True)
    return Inbox(home)


# --- code burning ---------------------------------------------------------------------


def test_knowing_only_the_cpr_number_does_not_use_up_the_code(cli: Cli, inbox: Inbox) -> None:
    attempt = attempt_of(login(cli).stderr)
    code = inbox.security_code(EMAIL)
    # the attacker: no attempt id, or a made-up one; even the right code does not work
    for guess, their_attempt in (
        (wrong(code), "guessed-attempt-id-0000"),
        (code, "guessed-attempt-id-0000"),
        (wrong(code), attempt[::-1]),
        (code, ""),
    ):
        assert verify(cli, guess, their_attempt, expect=1).stderr == NOT_VALID + "\n"
    # the patient's code still works (4 failures: not locked yet)
    assert verify(cli, code, attempt).stderr == "Logged in.\n"


def test_a_missing_attempt_id_is_bad_usage(cli: Cli, inbox: Inbox) -> None:
    attempt = attempt_of(login(cli).stderr)
    code = inbox.security_code(EMAIL)
    r = verify(cli, code, None, expect=2)
    assert r.stderr == "Error: Missing attempt id: pass --attempt (no terminal to ask on).\n"
    assert verify(cli, code, attempt).stderr == "Logged in.\n"


# --- unlimited code tries -------------------------------------------------------------


def test_fresh_codes_do_not_reset_the_count(cli: Cli, inbox: Inbox) -> None:
    attempt = attempt_of(login(cli).stderr)
    code = inbox.security_code(EMAIL)
    for left in ("4 tries", "3 tries", "2 tries", "1 try"):
        r = verify(cli, wrong(code), attempt, expect=1)
        assert r.stderr == f"Error: Wrong security code ({left} left).\n"
    # a new login with the right password: a fresh code, but not 5 fresh tries
    attempt = attempt_of(login(cli).stderr)
    code = inbox.security_code(EMAIL)
    assert verify(cli, wrong(code), attempt, expect=1).stderr == f"{NOT_VALID} {NOW_LOCKED}"
    assert LOCKED.match(verify(cli, code, attempt, expect=1).stderr)
    assert LOCKED.match(login(cli, expect=1).stderr)


def test_five_mixed_wrong_passwords_and_codes_lock(cli: Cli, inbox: Inbox) -> None:
    for _ in range(2):
        assert login(cli, password="Wrong-pass1", expect=1).stderr == LOGIN_FAILED
    attempt = attempt_of(login(cli).stderr)
    code = inbox.security_code(EMAIL)
    for left in ("2 tries", "1 try"):
        r = verify(cli, wrong(code), attempt, expect=1)
        assert r.stderr == f"Error: Wrong security code ({left} left).\n"
    r = login(cli, password="Wrong-pass1", expect=1)
    assert r.stderr == LOGIN_FAILED.replace("\n", " ") + NOW_LOCKED
    assert LOCKED.match(login(cli, expect=1).stderr)  # even the right password
    assert LOCKED.match(verify(cli, code, attempt, expect=1).stderr)
    assert inbox.no_security_code(EMAIL)
    # staff lift the lock; a completed login starts the count again
    unlock(cli, CPR)
    attempt = attempt_of(login(cli).stderr)
    assert verify(cli, inbox.security_code(EMAIL), attempt).stderr == "Logged in.\n"
    for _ in range(4):
        login(cli, password="Wrong-pass1", expect=1)
    assert login(cli, password="Wrong-pass1", expect=1).stderr.endswith(NOW_LOCKED)


# --- enumeration ----------------------------------------------------------------------


def _same_for_all(runs: dict[str, list[Result]]) -> list[tuple[int, str, str]]:
    """The runs of every case, with the lock's end time blanked; asserts they are equal."""

    def shape(r: Result) -> tuple[int, str, str]:
        blank = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "<time> UTC", r.stderr)
        return r.exit_code, r.stdout, blank

    shapes = {case: [shape(r) for r in results] for case, results in runs.items()}
    first, *others = shapes.values()
    for case, seen in shapes.items():
        assert seen == first, (case, seen, first)
    assert others  # more than one case was compared
    return first


def test_login_refusals_do_not_tell_who_exists(cli: Cli, staff: Staff, home: Path) -> None:
    cli("clinic create SYD --name Syd")
    self_registers(cli, cpr="0101901111", name="Ann", email="ann@example.dk", password=PW)
    set_no_mitid(cli, cpr="0101901111", on=True)
    staff_creates_patient(cli, cpr="0202902222", name="Bo", email="bo@example.dk", no_mitid=True)
    self_registers(
        cli, cpr="0303903333", name="Cai", email="cai@example.dk", password=PW, clinic="SYD"
    )
    cases = {
        "wrong password": ("010190-1111", "Wrong-pass1"),
        "unknown CPR": ("040490-4444", PW),
        "not activated": ("020290-2222", PW),
        "not linked here (right password)": ("030390-3333", PW),
    }
    runs = {
        case: [login(cli, cpr, password, expect=None) for _ in range(6)]
        for case, (cpr, password) in cases.items()
    }
    outcome = _same_for_all(runs)
    assert outcome == [
        *[(1, "", LOGIN_FAILED)] * 4,
        (1, "", LOGIN_FAILED.replace("\n", " ") + NOW_LOCKED),
        (
            1,
            "",
            "Error: Login is locked until <time> UTC after 5 failed attempts: try again "
            "later, or ask the clinic to unlock it.\n",
        ),
    ]
    assert Inbox(home).new_with("@example.dk", "sikkerhedskode") == []


def test_verify_does_not_tell_who_exists(cli: Cli, inbox: Inbox) -> None:
    login(cli)  # a code is pending for CPR; an attacker has no attempt id
    runs = {
        "pending code": [verify(cli, "123456", "x" * 22, expect=None) for _ in range(6)],
        "unknown CPR": [
            verify(cli, "123456", "x" * 22, cpr="050590-5555", expect=None) for _ in range(6)
        ],
    }
    outcome = _same_for_all(runs)
    assert outcome[:5] == [*[(1, "", NOT_VALID + "\n")] * 4, (1, "", f"{NOT_VALID} {NOW_LOCKED}")]


ACTIVATION_FAILED = (
    "Error: Activation failed: wrong CPR number, clinic or activation code (a code works "
    "once, for 7 days; the clinic can send a new one).\n"
)


def test_activation_refusals_do_not_tell_who_exists(cli: Cli, staff: Staff, home: Path) -> None:
    inbox = Inbox(home)
    cli("clinic create SYD --name Syd")
    staff_creates_patient(cli, cpr="0101901111", name="Ann", email="ann@example.dk")
    ann = inbox.activation_code("ann@example.dk")
    staff_creates_patient(cli, cpr="0202902222", name="Bo", email="bo@example.dk", clinic="SYD")
    bo = inbox.activation_code("bo@example.dk")
    made_up = "AAAA-BBBB-CCCC-DDDD"
    cases = {
        "wrong code": ("010190-1111", made_up if ann != made_up else "DDDD-CCCC-BBBB-AAAA"),
        "unknown CPR": ("040490-4444", ann),
        "not linked here (right code)": ("020290-2222", bo),
    }

    def activate(cpr: str, code: str) -> Result:
        return cli(
            f"portal activate {cpr} --clinic NORD --code {code} --password-stdin",
            input=PW + "\n",
            expect=None,
        )

    runs = {case: [activate(*args) for _ in range(6)] for case, args in cases.items()}
    outcome = _same_for_all(runs)
    assert outcome[:5] == [
        *[(1, "", ACTIVATION_FAILED)] * 4,
        (1, "", ACTIVATION_FAILED.replace("\n", " ") + NOW_LOCKED),
    ]
    assert LOCKED.match(outcome[5][2].replace("<time>", "2026-01-01 00:00"))
    # nobody used up Ann's code: after the lock is lifted it still works
    unlock(cli, "010190-1111")
    r = activate("010190-1111", ann)
    assert (r.exit_code, r.stderr) == (
        0,
        "Password set for 010190-****: you can now log in at clinic NORD "
        "(`patientportal portal login`).\n",
    )
