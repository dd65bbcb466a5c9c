"""The `portal` commands: exact output and exit codes, prompts, bad input (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from sqlmodel import select

from patientportal_cli import prompts
from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import OneTimeCode
from patientportal_cli.services import throttle
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import db_session
from tests.helpers.mail import Inbox
from tests.helpers.people import self_registers, set_no_mitid, staff_creates_patient, unlock
from tests.helpers.portal import attempt_of, code_sent

CPR = "240694-4321"
NUMBER = "2406944321"
EMAIL = "sofie@example.dk"
PW = "Patient-pass1"
LOGIN = f"portal login {CPR} --clinic NORD --method two-factor --password-stdin"
LOGIN_FAILED = "Error: Login failed: wrong CPR number or password.\n"
ACTIVATION_FAILED = (
    "Error: Activation failed: wrong CPR number, clinic or activation code (a code works "
    "once, for 7 days; the clinic can send a new one).\n"
)
NOT_VALID = "Error: The security code is not valid for this login: log in again to get a new code."
NOW_LOCKED = "After 5 failed attempts, login is locked for 15 minutes.\n"


@pytest.fixture
def flagged(staff: Staff, db_url: str, home: Path) -> Inbox:
    """An activated patient with the no-MitID flag; the inbox of the delivered mail."""
    self_registers(staff.cli, cpr=NUMBER, name="Sofie Berg", email=EMAIL, password=PW)
    set_no_mitid(staff.cli, cpr=NUMBER, on=True)
    return Inbox(home)


@pytest.fixture
def invited(staff: Staff, db_url: str, home: Path) -> str:
    """A patient created by staff; returns the activation code from the delivered mail."""
    staff_creates_patient(staff.cli, cpr=NUMBER, name="Sofie Berg", email=EMAIL)
    return Inbox(home).activation_code(EMAIL)


@contextmanager
def terminal() -> Iterator[Any]:
    """Prompts answered from a pipe, as if typed on a terminal."""
    with create_pipe_input() as pipe, prompts.use_io(pipe, DummyOutput()):
        yield pipe


def no_full_cpr(*texts: str) -> None:
    for text in texts:
        assert NUMBER not in text and CPR not in text


# --- activate ------------------------------------------------------------------------------


def test_activate_with_password_from_stdin(cli: Cli, invited: str) -> None:
    r = cli(f"portal activate {CPR} --clinic NORD --code {invited} --password-stdin", input=PW)
    assert (r.stdout, r.stderr) == (
        "",
        "Password set for 240694-****: you can now log in at clinic NORD "
        "(`patientportal portal login`).\n",
    )


def test_activate_asks_the_password_twice_on_a_terminal(cli: Cli, invited: str) -> None:
    with terminal() as pipe:
        pipe.send_text(f"{PW}\r{PW}\r")
        r = cli(f"portal activate {CPR} --clinic NORD --code {invited}")
    assert r.stderr.endswith("you can now log in at clinic NORD (`patientportal portal login`).\n")


def test_activate_asks_for_missing_clinic_and_code_on_a_terminal(cli: Cli, invited: str) -> None:
    with terminal() as pipe:
        pipe.send_text(f"nord\r{invited}\r{PW}\r{PW}\r")
        r = cli(f"portal activate {CPR}")
    assert r.stderr.startswith("Password set for 240694-****")


def test_activate_code_is_single_use(cli: Cli, invited: str) -> None:
    args = f"portal activate {CPR} --clinic NORD --code {invited} --password-stdin"
    cli(args, input=PW)
    r = cli(args, input="Another-pass2", expect=1)
    assert r.stderr == ACTIVATION_FAILED


def test_activate_with_an_expired_code(cli: Cli, invited: str, db_url: str, home: Path) -> None:
    with db_session(db_url, home) as session:
        row = session.exec(select(OneTimeCode)).one()
        row.expires_at = utcnow() - timedelta(minutes=1)
        session.add(row)
        session.commit()
    r = cli(
        f"portal activate {CPR} --clinic NORD --code {invited} --password-stdin",
        input=PW,
        expect=1,
    )
    assert r.stderr == ACTIVATION_FAILED


def test_activate_with_a_wrong_code(cli: Cli, invited: str) -> None:
    wrong = "AAAA-AAAA" if invited != "AAAA-AAAA" else "BBBB-BBBB"
    args = f"portal activate {CPR} --clinic NORD --code {wrong} --password-stdin"
    for _ in range(4):  # wrong codes do not end the code (nobody else can use it up)
        assert cli(args, input=PW, expect=1).stderr == ACTIVATION_FAILED
    cli(f"portal activate {CPR} --clinic NORD --code {invited} --password-stdin", input=PW)


POLICY_CASES = [
    ("Short1a", "at least 8 characters"),
    ("lowercase-only1", "an upper-case letter"),
    ("UPPERCASE-ONLY1", "a lower-case letter"),
    ("No-digits-here", "a digit"),
    ("short", "at least 8 characters, an upper-case letter, a digit"),
]


def test_activate_refuses_a_password_against_the_policy(cli: Cli, invited: str) -> None:
    args = f"portal activate {CPR} --clinic NORD --code {invited} --password-stdin"
    for password, needs in POLICY_CASES:
        r = cli(args, input=password + "\n", expect=2)
        assert r.stderr == f"Error: The password needs {needs}.\n"
    cli(args, input=PW + "\n")  # the code still works


def test_activate_without_a_password_and_no_terminal(cli: Cli, invited: str) -> None:
    r = cli(f"portal activate {CPR} --clinic NORD --code {invited}", expect=2)
    assert r.stderr == "Error: Missing password: pass --password-stdin (no terminal to ask on).\n"
    r = cli(f"portal activate {CPR} --clinic NORD --password-stdin", input=PW, expect=2)
    assert r.stderr == ("Error: Missing activation code: pass --code (no terminal to ask on).\n")
    r = cli(f"portal activate {CPR} --code {invited} --password-stdin", input=PW, expect=2)
    assert r.stderr == "Error: Missing clinic code: pass --clinic (no terminal to ask on).\n"


def test_activate_bad_cpr_and_unknown_clinic(cli: Cli, invited: str) -> None:
    r = cli(
        f"portal activate 310299-1234 --clinic NORD --code {invited} --password-stdin",
        input=PW,
        expect=2,
    )
    assert r.stderr == "Error: Invalid CPR number: 31.02.1999 is not a real date.\n"
    r = cli(
        f"portal activate {CPR} --clinic NOPE --code {invited} --password-stdin", input=PW, expect=1
    )
    assert r.stderr == "Error: No clinic with code 'NOPE'.\n"


def test_activate_at_a_clinic_the_patient_does_not_use(cli: Cli, invited: str) -> None:
    cli("clinic create SYD --name Syd")
    r = cli(
        f"portal activate {CPR} --clinic SYD --code {invited} --password-stdin", input=PW, expect=1
    )
    assert r.stderr == ACTIVATION_FAILED


# --- login: MitID ----------------------------------------------------------------------------


def test_login_with_mitid(cli: Cli, flagged: Inbox) -> None:
    r = cli(f"portal login {CPR} --clinic nord --method mitid")
    assert (r.stdout, r.stderr) == ("", "Logged in with MitID (simulated) at clinic NORD.\n")


def test_login_with_mitid_not_linked(cli: Cli, staff: Staff) -> None:
    r = cli(f"portal login {CPR} --clinic NORD --method mitid", expect=1)
    assert r.stderr == "Error: You are not a portal user at clinic NORD: contact the clinic.\n"


def test_login_method_missing_without_a_terminal(cli: Cli, flagged: Inbox) -> None:
    r = cli(f"portal login {CPR} --clinic NORD", expect=2)
    assert r.stderr == "Error: Missing login method: pass --method (no terminal to ask on).\n"
    r = cli(f"portal login {CPR} --clinic NORD --method password", expect=2)
    assert "'password' is not one of 'mitid', 'two-factor'" in r.stderr


def test_login_method_chosen_on_a_terminal(cli: Cli, flagged: Inbox) -> None:
    with terminal() as pipe:
        pipe.send_text("\r")  # the first choice: MitID
        r = cli(f"portal login {CPR} --clinic NORD")
    assert r.stderr.endswith("Logged in with MitID (simulated) at clinic NORD.\n")


# --- login: two-factor -----------------------------------------------------------------------


def test_two_factor_without_a_terminal_ends_after_sending(cli: Cli, flagged: Inbox) -> None:
    r = cli(LOGIN, input=PW + "\n")
    assert (r.stdout, r.stderr) == ("", code_sent(r.stderr))
    code = flagged.security_code(EMAIL)
    r = cli(f"portal verify {CPR} --clinic NORD --attempt {attempt_of(r.stderr)} --code {code}")
    assert (r.stdout, r.stderr) == ("", "Logged in.\n")


def test_two_factor_without_a_password_and_no_terminal(cli: Cli, flagged: Inbox) -> None:
    r = cli(f"portal login {CPR} --clinic NORD --method two-factor", expect=2)
    assert r.stderr == "Error: Missing password: pass --password-stdin (no terminal to ask on).\n"
    r = cli(LOGIN, input="", expect=2)
    assert r.stderr == "Error: --password-stdin: no password on stdin.\n"
    assert flagged.no_security_code(EMAIL)


def test_two_factor_on_a_terminal_asks_for_the_code_from_the_mail(
    cli: Cli, flagged: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from patientportal_cli.cli import mail

    with terminal() as pipe:
        deliver = mail.send_queued

        def patient_reads_mail(*args: Any, **kwargs: Any) -> Any:
            result = deliver(*args, **kwargs)
            code = flagged.security_code(EMAIL)
            wrong = "000000" if code != "000000" else "111111"
            pipe.send_text(f"{wrong}\r{code}\r")  # a typo first, then the right code
            return result

        monkeypatch.setattr(mail, "send_queued", patient_reads_mail)
        pipe.send_text(PW + "\r")
        r = cli(f"portal login {CPR} --clinic NORD --method two-factor")
    assert r.stderr.splitlines() == [
        "A security code was e-mailed to s***@example.dk (valid 10 minutes).",
        "Warning: Wrong security code (4 tries left).",
        "Logged in.",
    ]


def test_wrong_password_and_unknown_cpr_look_the_same(cli: Cli, flagged: Inbox) -> None:
    r = cli(LOGIN, input="Wrong-pass1\n", expect=1)
    assert r.stderr == LOGIN_FAILED
    r = cli(LOGIN.replace(CPR, "010101-0000"), input=PW + "\n", expect=1)
    assert r.stderr == LOGIN_FAILED
    assert flagged.no_security_code(EMAIL)


def test_lockout_after_five_wrong_passwords_and_patient_unlock(
    cli: Cli, flagged: Inbox, db_url: str, home: Path
) -> None:
    for _ in range(4):
        assert cli(LOGIN, input="Wrong-pass1\n", expect=1).stderr == LOGIN_FAILED
    r = cli(LOGIN, input="Wrong-pass1\n", expect=1)
    assert r.stderr == LOGIN_FAILED.replace("\n", " ") + NOW_LOCKED
    with db_session(db_url, home) as session:
        until = throttle.locked_until(session, kind=throttle.PATIENT, name=NUMBER)
    assert until is not None
    r = cli(LOGIN, input=PW + "\n", expect=1)
    assert r.stderr == (
        f"Error: Login is locked until {until:%Y-%m-%d %H:%M} UTC after 5 failed attempts: "
        "try again later, or ask the clinic to unlock it.\n"
    )
    no_full_cpr(r.stderr)
    assert (
        unlock(cli, CPR) == "Unlocked 240694-**** (Sofie Berg): the failed-login count is reset.\n"
    )
    r = cli(LOGIN, input=PW + "\n")
    assert r.stderr == code_sent(r.stderr)


def test_verify_wrong_code_five_times(cli: Cli, flagged: Inbox) -> None:
    r = cli(LOGIN, input=PW + "\n")
    attempt = attempt_of(r.stderr)
    code = flagged.security_code(EMAIL)
    wrong = "000000" if code != "000000" else "111111"
    args = f"portal verify {CPR} --clinic NORD --attempt {attempt} --code {wrong}"
    for left in ("4 tries", "3 tries", "2 tries", "1 try"):
        assert cli(args, expect=1).stderr == f"Error: Wrong security code ({left} left).\n"
    # the fifth failure of the CPR number locks, as wrong passwords do
    assert cli(args, expect=1).stderr == f"{NOT_VALID} {NOW_LOCKED}"
    r = cli(f"portal verify {CPR} --clinic NORD --attempt {attempt} --code {code}", expect=1)
    assert r.stderr.startswith("Error: Login is locked until ")


def test_a_code_ends_after_five_wrong_tries_even_when_unlocked(cli: Cli, flagged: Inbox) -> None:
    r = cli(LOGIN, input=PW + "\n")
    attempt = attempt_of(r.stderr)
    code = flagged.security_code(EMAIL)
    wrong = "000000" if code != "000000" else "111111"
    args = f"portal verify {CPR} --clinic NORD --attempt {attempt} --code {wrong}"
    for _ in range(4):
        cli(args, expect=1)
    unlock(cli, CPR)  # the count of the CPR number starts again; the code's does not
    assert cli(args, expect=1).stderr == (
        "Error: Wrong security code; after 5 wrong tries it no longer works: log in again to "
        "get a new code.\n"
    )
    r = cli(f"portal verify {CPR} --clinic NORD --attempt {attempt} --code {code}", expect=1)
    assert r.stderr == NOT_VALID + "\n"


def test_verify_expired_code(cli: Cli, flagged: Inbox, db_url: str, home: Path) -> None:
    attempt = attempt_of(cli(LOGIN, input=PW + "\n").stderr)
    code = flagged.security_code(EMAIL)
    with db_session(db_url, home) as session:
        row = session.exec(select(OneTimeCode).where(OneTimeCode.purpose == "login")).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    r = cli(f"portal verify {CPR} --clinic NORD --attempt {attempt} --code {code}", expect=1)
    assert r.stderr == (
        "Error: The security code has expired (codes are valid for 10 minutes): log in again "
        "to get a new code.\n"
    )


def test_verify_reused_code(cli: Cli, flagged: Inbox) -> None:
    attempt = attempt_of(cli(LOGIN, input=PW + "\n").stderr)
    code = flagged.security_code(EMAIL)
    cli(f"portal verify {CPR} --clinic NORD --attempt {attempt} --code {code}")
    r = cli(f"portal verify {CPR} --clinic NORD --attempt {attempt} --code {code}", expect=1)
    assert r.stderr == NOT_VALID + "\n"


def test_verify_bad_input(cli: Cli, flagged: Inbox) -> None:
    verify = f"portal verify {CPR} --clinic NORD"
    r = cli(f"{verify} --attempt x --code 12ab56", expect=2)
    assert r.stderr == "Error: The security code is the 6 digits from the e-mail.\n"
    r = cli(f"{verify} --attempt x", expect=2)
    assert r.stderr == "Error: Missing code: pass --code (no terminal to ask on).\n"
    r = cli(f"{verify} --code 123456", expect=2)
    assert r.stderr == "Error: Missing attempt id: pass --attempt (no terminal to ask on).\n"
    r = cli("portal verify 0102AB-1234 --clinic NORD --attempt x --code 123456", expect=2)
    assert "eCPR" in r.stderr


def test_the_portal_group_needs_no_staff_login(
    cli: Cli, flagged: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    cli(f"portal login {CPR} --clinic NORD --method mitid")
    r = cli(LOGIN, input=PW + "\n")
    no_full_cpr(r.stdout, r.stderr)


def test_portal_help_lists_the_commands(cli: Cli) -> None:
    r = cli("portal --help")
    for name in ("activate", "login", "verify"):
        assert name in r.stdout


def test_two_factor_when_the_smtp_server_refuses(
    cli: Cli, flagged: Inbox, smtp_server: Any
) -> None:
    """The code stays queued (exit 1, the patient is told); `mail send` delivers it later."""
    for setting in ("mail-transport smtp", "smtp-host 127.0.0.1", "smtp-starttls no"):
        cli(f"config set {setting}")
    cli(f"config set smtp-port {smtp_server.port}")
    smtp_server.handler.refuse = True
    r = cli(LOGIN, input=PW + "\n", expect=1)
    assert r.stderr.splitlines() == [
        "Warning: 1 e-mail could not be sent (SMTP 550 5.1.1 mailbox unavailable (recipient "
        f"{EMAIL})); it stays queued: run `patientportal mail send`.",
        "Error: The security code could not be e-mailed; it stays queued and is sent by "
        "`patientportal mail send` (valid 10 minutes). Then give it with `patientportal "
        f"portal verify CPR --clinic NORD --attempt {attempt_of(r.stderr)} --code CODE`.",
    ]
    smtp_server.handler.refuse = False
    cli("mail send")
    [msg] = smtp_server.messages
    code = _only_code(msg)
    verify = f"portal verify {CPR} --clinic NORD --attempt {attempt_of(r.stderr)} --code {code}"
    assert cli(verify).stderr == "Logged in.\n"


def _only_code(msg: Any) -> str:
    from tests.helpers.mail import SECURITY_CODE, body

    [code] = SECURITY_CODE.findall(body(msg).replace("\r\n", "\n"))
    return str(code)
