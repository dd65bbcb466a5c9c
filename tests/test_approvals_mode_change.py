"""`clinic set-registration MODE` while requests are pending: keep, reject or approve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from patientportal_cli import prompts
from patientportal_cli.errors import Forbidden
from patientportal_cli.services import approvals, auth
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import audit_events, db_session, links, requests
from tests.helpers.mail import mail_to
from tests.helpers.people import add_doctor, register, set_mode


def two_pending(cli: Cli) -> None:
    set_mode(cli, "approval")
    register(cli, "010203-1234", name="Anne", email="anne@example.dk")
    register(cli, "020304-2345", name="Bent", email="bent@example.dk", services="booking")


def mode(cli: Cli) -> str:
    return str(json.loads(cli("clinic show -o json").stdout)["registration_mode"])


def test_without_a_terminal_and_without_pending_choice_exit_2(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    two_pending(cli)
    r = cli("clinic set-registration open", expect=2)
    assert r.stderr == (
        "Error: Missing choice for the 2 pending request(s): pass --pending (no terminal to "
        "ask on).\n"
    )
    assert mode(cli) == "approval"
    # the same mode again needs no choice
    r = cli("clinic set-registration approval")
    assert r.stderr == (
        "Clinic NORD already has registration mode approval (Online selv-oprettelse med "
        "læge-godkendelse).\n"
    )


def test_keep(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    two_pending(cli)
    r = cli("clinic set-registration none --pending keep")
    assert r.stderr == (
        "Clinic NORD: registration mode approval -> none (Ingen online selv-oprettelse).\n"
    )
    with db_session(db_url, home) as session:
        assert [q.status for q in requests(session)] == ["pending", "pending"]
        [event] = audit_events(session, "clinic.set_registration")[-1:]
        assert json.loads(event.details) == {
            "from": "approval",
            "to": "none",
            "pending": "keep",
            "handled": 0,
        }


def test_reject_with_reason_mails_each_patient(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    two_pending(cli)
    r = cli(["clinic", "set-registration", "none", "--pending", "reject", "--reason", "Lukket"])
    assert r.stderr == (
        "Clinic NORD: registration mode approval -> none (Ingen online selv-oprettelse); 2 "
        "pending request(s) rejected.\n"
    )
    with db_session(db_url, home) as session:
        assert [(q.status, q.decided_by, q.reason) for q in requests(session)] == [
            ("rejected", "anna", "Lukket"),
            ("rejected", "anna", "Lukket"),
        ]
        rejects = audit_events(session, "request.reject")
        assert [(e.actor, e.target) for e in rejects] == [
            ("anna", "request:1"),
            ("anna", "request:2"),
        ]
        assert all('"via": "clinic.set_registration"' in e.details for e in rejects)
        [event] = audit_events(session, "clinic.set_registration")[-1:]
        assert json.loads(event.details)["handled"] == 2
    for to in ("anne@example.dk", "bent@example.dk"):
        [(subject, text)] = mail_to(home, to)[1:]
        assert subject == "Svar på din anmodning – Nordklinikken"
        assert "Begrundelse: Lukket" in text


def test_approve_needs_a_doctor(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    """--pending approve needs both roles, admin and doctor (tests/test_roles_multi.py
    has the admin+doctor who succeeds)."""
    two_pending(cli)
    r = cli("clinic set-registration open --pending approve", expect=4)
    assert r.stderr == (
        "Error: Approving the pending requests while changing the mode needs both the admin "
        "and the doctor role at clinic NORD (you are admin): let a doctor approve them with "
        "`patientportal requests approve ID...` or `requests review`, or pass --pending keep "
        "or --pending reject.\n"
    )
    assert mode(cli) == "approval"
    with db_session(db_url, home) as session:
        assert [q.status for q in requests(session)] == ["pending", "pending"]
        assert audit_events(session, "request.approve") == []
    # the command itself is for admins: a doctor cannot change the mode at all
    add_doctor(staff)
    r = cli("clinic set-registration open --pending approve", expect=4)
    assert r.stderr == (
        "Error: Only an admin at clinic NORD can change the registration mode (you are doctor).\n"
    )


def test_settle_pending_approves_for_a_doctor(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """The service approves the whole queue for a doctor (in the caller's transaction)."""
    two_pending(cli)
    cli("clinic services --disable booking")
    add_doctor(staff, login=False)
    with db_session(db_url, home) as session:
        anna = auth.resolve(session, token=staff.login("anna"), clinic_code="NORD")
        with pytest.raises(Forbidden):
            approvals.settle_pending(session, actor=anna, decision="approve", reason=None)
        session.rollback()
        bo = auth.resolve(session, token=staff.login("bo"), clinic_code="NORD")
        assert approvals.settle_pending(session, actor=bo, decision="approve", reason="x") == 2
        session.commit()
        assert [(q.status, q.reason) for q in requests(session)] == [
            ("approved", None),
            ("approved", None),
        ]
        assert links(session) == [
            ("0102031234", "e-consultation,prescription-renewal"),
            ("0203042345", ""),
        ]
        assert approvals.settle_pending(session, actor=bo, decision="reject", reason=None) == 0


def test_on_a_terminal_it_asks(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    two_pending(cli)
    with create_pipe_input() as pipe, prompts.use_io(pipe, DummyOutput()):
        # the choices for an admin: keep, reject (approving needs a doctor)
        pipe.send_text("\x1b[B\r" + "Vi lukker for online tilmelding\r")
        r = cli("clinic set-registration none")
    assert r.stderr.endswith("2 pending request(s) rejected.\n")
    with db_session(db_url, home) as session:
        assert {q.reason for q in requests(session)} == {"Vi lukker for online tilmelding"}
    set_mode(cli, "approval")
    register(cli, "030405-3456", name="Carl", email="carl@example.dk")
    with create_pipe_input() as pipe, prompts.use_io(pipe, DummyOutput()):
        pipe.send_text("\r")  # keep
        r = cli("clinic set-registration open")
    assert r.stderr == (
        "Clinic NORD: registration mode approval -> open (Online selv-oprettelse uden "
        "læge-godkendelse).\n"
    )
    with db_session(db_url, home) as session:
        assert requests(session)[-1].status == "pending"
