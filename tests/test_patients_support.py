"""Helpers for the patient and no-MitID tests (no tests here): mail, database, prompts."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import re
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db.models import AuditEvent, Clinic, ClinicLink, PortalUser
from tests.conftest import PASSWORD, Cli, Staff

ACTIVATION_CODE = re.compile(r"^\s+([A-Z0-9]{4}(?:-[A-Z0-9]{4}){3})\s*$", re.M)
SECURITY_CODE = re.compile(r"^\s+([0-9]{6})\s*$", re.M)


class Inbox:
    """The Maildir the default transport delivers to; remembers what was read."""

    def __init__(self, home: Path) -> None:
        self.path = home / "maildir"
        self.seen: set[str] = set()

    def new(self) -> list[EmailMessage]:
        if not self.path.exists():
            return []
        box = mailbox.Maildir(self.path, create=False)
        fresh = sorted(k for k in box.iterkeys() if k not in self.seen)
        self.seen.update(fresh)
        msgs = [
            email.message_from_bytes(box.get_bytes(k), policy=email.policy.default) for k in fresh
        ]
        return [m for m in msgs if isinstance(m, EmailMessage)]

    def new_to(self, to: str) -> list[tuple[str, str]]:
        """(subject, body) of the mail to ``to`` delivered since the last read."""
        return [(str(m["Subject"]), body(m)) for m in self.new() if to in str(m["To"])]

    def activation_code(self, to: str) -> str:
        mails = self.new_to(to)
        assert len(mails) == 1, mails
        subject, text = mails[0]
        assert "aktiveringskode" in subject, subject
        codes = ACTIVATION_CODE.findall(text)
        assert len(set(codes)) == 1, text
        return str(codes[0])

    def security_code(self, to: str) -> str:
        mails = self.new_to(to)
        assert len(mails) == 1, mails
        codes = SECURITY_CODE.findall(mails[0][1])
        assert len(set(codes)) == 1, mails[0][1]
        return str(codes[0])


def body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


@contextmanager
def db_session(db_url: str, home: Path) -> Iterator[Session]:
    with Session(engine_mod.get_engine(db_url, home), expire_on_commit=False) as session:
        yield session


def users_with_cpr(session: Session, cpr: str) -> list[PortalUser]:
    return list(session.exec(select(PortalUser).where(PortalUser.cpr == cpr)))


def link_of(session: Session, cpr: str, clinic: str) -> ClinicLink | None:
    return session.exec(
        select(ClinicLink)
        .join(PortalUser, col(PortalUser.id) == ClinicLink.user_id)
        .join(Clinic, col(Clinic.id) == ClinicLink.clinic_id)
        .where(PortalUser.cpr == cpr, Clinic.code == clinic)
    ).first()


def linked_clinics(session: Session, cpr: str) -> list[str]:
    rows = session.exec(
        select(Clinic.code)
        .join(ClinicLink, col(ClinicLink.clinic_id) == Clinic.id)
        .join(PortalUser, col(PortalUser.id) == ClinicLink.user_id)
        .where(PortalUser.cpr == cpr)
        .order_by(col(Clinic.code))
    )
    return list(rows)


def events(
    session: Session, prefix: str = ""
) -> list[tuple[str, str | None, str, str, dict[str, Any]]]:
    """(action, clinic, target, actor, details) oldest first, actions starting with prefix."""
    rows = session.exec(
        select(AuditEvent)
        .where(col(AuditEvent.action).startswith(prefix))
        .order_by(col(AuditEvent.id))
    )
    return [(e.action, e.clinic, e.target, e.actor, json.loads(e.details)) for e in rows]


def second_clinic(cli: Cli, staff: Staff, code: str = "SYD", name: str = "Sydklinikken") -> None:
    """Clinic ``code`` with its own secretary 'sara' (who works only there); anna stays
    logged in at NORD (anna also becomes admin at the new clinic, as its creator)."""
    cli(["clinic", "create", code, "--name", name])
    staff.add("sara", "secretary", name="Sara Sekretær", clinic=code)


def as_user(staff: Staff, username: str, clinic: str | None = None) -> str:
    return staff.login(username, PASSWORD, clinic=clinic)


class Keys:
    """Keystrokes for prompts.use_io (prompt_toolkit pipe input)."""

    ENTER = "\r"


@contextmanager
def terminal(*answers: str) -> Iterator[None]:
    """Answer prompts as if on a terminal; each answer is typed as given."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from patientportal_cli import prompts

    with create_pipe_input() as pipe:
        for answer in answers:
            pipe.send_text(answer)
        with prompts.use_io(pipe, DummyOutput()):
            yield
