"""`requests review`: the interactive queue, fed keystrokes through prompt_toolkit's pipe
input, and once end to end in a real pseudo-terminal (pexpect)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from patientportal_cli import prompts
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import db_session, links, requests
from tests.helpers.mail import mail_to
from tests.helpers.people import add_doctor, register, set_mode

ROOT = Path(__file__).resolve().parents[1]
DOWN = "\x1b[B"
ENTER = "\r"
# the decision menu: approve / approve with fewer services / reject / skip / quit
APPROVE = ENTER
FEWER = DOWN + ENTER
REJECT = DOWN * 2 + ENTER
SKIP = DOWN * 3 + ENTER
QUIT = DOWN * 4 + ENTER


@contextmanager
def keys(text: str) -> Iterator[None]:
    with create_pipe_input() as pipe, prompts.use_io(pipe, DummyOutput()):
        pipe.send_text(text)
        yield


def queue_of_four(cli: Cli) -> None:
    set_mode(cli, "approval")
    register(cli, "010203-1234", name="[bold]Anne[/bold] \\x1b", email="anne@example.dk")
    register(
        cli, "020304-2345", name="Bent", email="bent@example.dk", services="booking,e-consultation"
    )
    register(cli, "030405-3456", name="Carl", email="carl@example.dk")
    register(cli, "040506-4567", name="Dora", email="dora@example.dk")


def test_without_a_terminal_it_points_to_approve_and_reject(cli: Cli, staff: Staff) -> None:
    r = cli("requests review", expect=2)
    assert r.stderr == (
        "Error: `requests review` needs a terminal: list the queue with `patientportal "
        "requests list`, then decide with `patientportal requests approve ID...` or "
        "`patientportal requests reject ID... --reason TEXT`.\n"
    )


def test_only_doctors_review(cli: Cli, staff: Staff) -> None:
    with keys(""):
        r = cli("requests review", expect=4)
    assert r.stderr == (
        "Error: Only a doctor at clinic NORD can review registration requests (you are admin).\n"
    )


def test_empty_queue(cli: Cli, staff: Staff) -> None:
    add_doctor(staff)
    with keys(""):
        r = cli("requests review")
    assert (r.stdout, r.stderr) == ("", "No pending registration requests at clinic NORD.\n")


def test_review_approve_fewer_reject_skip(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    queue_of_four(cli)
    add_doctor(staff)
    # 1: approve; 2: approve with fewer (untick the first, e-consultation); 3: reject with
    # a reason; 4: skip
    with keys(APPROVE + FEWER + " " + ENTER + REJECT + "Ukendt [red]patient\r" + SKIP):
        r = cli("requests review")
    assert r.stderr == (
        "Request 1 approved: portal user created for 010203-**** and linked; services: "
        "e-consultation, booking, prescription-renewal.\n"
        "Request 2 approved: portal user created for 020304-**** and linked; services: "
        "booking.\n"
        "Request 3 rejected: the reason was e-mailed.\n"
        "Summary: 2 approved, 1 rejected, 1 skipped.\n"
    )
    # the panels: one request at a time, patient text literal, CPR masked
    for n in range(1, 5):
        assert f"Request {n} ({n} of 4)" in r.stdout
    assert "[bold]Anne[/bold] \\x1b" in r.stdout
    assert "010203-****" in r.stdout and "0102031234" not in r.stdout
    assert "services asked for  e-consultation, booking" in r.stdout
    with db_session(db_url, home) as session:
        assert [(q.id, q.status) for q in requests(session)] == [
            (1, "approved"),
            (2, "approved"),
            (3, "rejected"),
            (4, "pending"),
        ]
        assert requests(session)[2].reason == "Ukendt [red]patient"
        assert links(session) == [
            ("0102031234", "e-consultation,booking,prescription-renewal"),
            ("0203042345", "booking"),
        ]
    [(_, text)] = mail_to(home, "carl@example.dk")[1:]
    assert "Begrundelse: Ukendt [red]patient" in text


def test_fewer_services_with_none_ticked_is_refused_and_asked_again(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """Unticking every service does not approve with "services: none" (issue 12.7): the
    decision is asked again."""
    set_mode(cli, "approval")
    register(
        cli, "020304-2345", name="Bent", email="bent@example.dk", services="booking,e-consultation"
    )
    add_doctor(staff)
    none_ticked = FEWER + " " + DOWN + " " + ENTER
    with keys(none_ticked + none_ticked + FEWER + " " + ENTER):
        r = cli("requests review")
    assert r.stderr == (
        "Warning: No service ticked: tick at least one, or choose Reject or Skip.\n"
        * 2
        + "Request 1 approved: portal user created for 020304-**** and linked; services: "
        "booking.\n"
        "Summary: 1 approved, 0 rejected, 0 skipped.\n"
    )
    with db_session(db_url, home) as session:
        assert links(session) == [("0203042345", "booking")]


def test_quit_leaves_the_rest(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    queue_of_four(cli)
    add_doctor(staff)
    with keys(SKIP + QUIT):
        r = cli("requests review")
    assert r.stderr == "Summary: 0 approved, 0 rejected, 1 skipped, 3 not reviewed.\n"
    assert "Request 3 (3 of 4)" not in r.stdout


def test_a_request_decided_by_someone_else_meanwhile(
    cli: Cli, staff: Staff, db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the doctor looks at request 1, another doctor decides requests 1 and 2."""
    set_mode(cli, "approval")
    register(cli, "010203-1234", name="Anne", email="anne@example.dk")
    register(cli, "020304-2345", name="Bent", email="bent@example.dk")
    add_doctor(staff, "cy", login=False)
    add_doctor(staff, "bo", login=False)
    cy_token = staff.login("cy")
    staff.login("bo")
    from patientportal_cli.services import approvals, auth

    real_select = prompts.select

    def select_while_cy_decides(*args: Any, **kwargs: Any) -> str:
        with db_session(db_url, home) as session:
            cy = auth.resolve(session, token=cy_token, clinic_code="NORD")
            for request_id in (1, 2):
                approvals.reject(session, actor=cy, request_id=request_id, reason=None)
        monkeypatch.setattr(prompts, "select", real_select)
        return "approve"

    monkeypatch.setattr(prompts, "select", select_while_cy_decides)
    with keys(""):
        r = cli("requests review")
    with db_session(db_url, home) as session:
        decided_at = requests(session)[0].decided_at
        assert decided_at is not None
    assert r.stderr == (
        "Warning: Request 1 was already rejected by cy at "
        f"{decided_at.strftime('%Y-%m-%d %H:%M UTC')}.\n"
        "Request 2 was rejected by cy meanwhile.\n"
        "Summary: 0 approved, 0 rejected, 0 skipped, 2 decided by someone else meanwhile.\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])  # the pty once; the logic runs on both above
def test_review_in_a_real_terminal(
    cli: Cli, staff: Staff, db_url: str, home: Path, backend: str
) -> None:
    pexpect = pytest.importorskip("pexpect")
    set_mode(cli, "approval")
    register(cli, "010203-1234", name="Anne [bold]Hansen", email="anne@example.dk")
    register(cli, "020304-2345", name="Bent", email="bent@example.dk")
    add_doctor(staff)
    env = {k: v for k, v in os.environ.items() if not k.startswith("_")}
    env.update(PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", TERM="xterm", NO_COLOR="1")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "patientportal_cli", "requests", "review"],
        env=env,
        cwd=str(ROOT),
        dimensions=(40, 140),
        encoding="utf-8",
        timeout=60,
    )
    try:
        child.expect_exact("Request 1 (1 of 2)")
        child.expect_exact("Anne [bold]Hansen")
        child.expect_exact("Decision:")
        child.send(ENTER)  # approve
        child.expect_exact("Request 1 approved")
        child.expect_exact("Request 2 (2 of 2)")
        child.expect_exact("Decision:")
        child.send(REJECT)
        child.expect_exact("Reason")
        child.send("Kun for klinikkens patienter\r")
        child.expect_exact("Request 2 rejected: the reason was e-mailed.")
        child.expect_exact("Summary: 1 approved, 1 rejected, 0 skipped.")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    with db_session(db_url, home) as session:
        assert [(q.status, q.decided_by) for q in requests(session)] == [
            ("approved", "bo"),
            ("rejected", "bo"),
        ]
