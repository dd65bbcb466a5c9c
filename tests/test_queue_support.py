"""Helpers for the registration and approval-queue tests (no tests here).

Mail is read as delivered (the default Maildir under the home directory): the tests
see what the patient sees.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db.models import (
    AuditEvent,
    Clinic,
    ClinicLink,
    PortalUser,
    RegistrationRequest,
)
from tests.conftest import Cli, Staff

PW = "Patient-pass1"
CPR = "010203-1234"
NUMBER = "0102031234"


def register(
    cli: Cli,
    cpr: str = CPR,
    *,
    clinic: str = "NORD",
    name: str = "Jens Hansen",
    email: str = "jens@example.dk",
    services: str | None = None,
    password: str | None = PW,
    expect: int | None = 0,
    mitid: bool = False,
) -> Any:
    """`portal register`; ``mitid``: inside a MitID login (`--login mitid`), which a CPR
    number that already has a portal user needs."""
    args = ["portal", "register", cpr, "--clinic", clinic, "--name", name, "--email", email]
    if mitid:
        args += ["--login", "mitid"]
    if services is not None:
        args += ["--services", services]
    if password is not None:
        args.append("--password-stdin")
    return cli(args, input=(password + "\n") if password is not None else None, expect=expect)


def set_mode(cli: Cli, mode: str, *extra: str) -> Any:
    return cli(["clinic", "set-registration", mode, *extra])


def add_doctor(
    staff: Staff, username: str = "bo", *, login: bool = True, clinic: str | None = None
) -> None:
    staff.add(username, "doctor", name=f"Dr {username.title()}", clinic=clinic)
    if login:
        staff.login(username, clinic=clinic)


def mails(home: Path) -> list[EmailMessage]:
    """Every delivered message, oldest first."""
    path = home / "maildir"
    if not path.exists():
        return []
    box = mailbox.Maildir(path, create=False)
    found = []
    for key in box.iterkeys():
        msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        found.append(msg)
    return sorted(found, key=_outbox_id)


def _outbox_id(msg: EmailMessage) -> int:
    found = re.search(r"outbox-([0-9]+)\.", str(msg["Message-ID"]))
    return int(found.group(1)) if found else 0


def body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def mail_to(home: Path, to: str) -> list[tuple[str, str]]:
    """(subject, body) of every mail to ``to``."""
    return [(str(m["Subject"]), body(m)) for m in mails(home) if to in str(m["To"])]


@contextmanager
def db(db_url: str, home: Path) -> Iterator[Session]:
    with Session(engine_mod.get_engine(db_url, home), expire_on_commit=False) as session:
        yield session


def users(session: Session) -> list[PortalUser]:
    return list(session.exec(select(PortalUser).order_by(col(PortalUser.id))))


def links(session: Session, clinic: str = "NORD") -> list[tuple[str, str]]:
    """(cpr, services) of the clinic's links."""
    rows = session.exec(
        select(PortalUser.cpr, ClinicLink.services)
        .join(ClinicLink, col(ClinicLink.user_id) == PortalUser.id)
        .join(Clinic, col(Clinic.id) == ClinicLink.clinic_id)
        .where(Clinic.code == clinic)
        .order_by(col(PortalUser.cpr))
    )
    return [(c, s) for c, s in rows]


def requests(session: Session) -> list[RegistrationRequest]:
    return list(
        session.exec(
            select(RegistrationRequest)
            .order_by(col(RegistrationRequest.id))
            .execution_options(populate_existing=True)
        )
    )


def events(session: Session, prefix: str) -> list[AuditEvent]:
    return list(
        session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.action).startswith(prefix))
            .order_by(col(AuditEvent.id))
        )
    )
