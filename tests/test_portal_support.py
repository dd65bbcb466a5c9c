"""Helpers for the portal tests (no tests here): the delivered mail, the database.

Codes are always read from the mail as delivered (the default Maildir under the home
directory), never from the database: the tests see what the patient sees.
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

import pytest
from sqlmodel import Session, col, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db.models import AuditEvent, Clinic, ClinicLink, PortalUser
from tests.conftest import Cli

SECURITY_CODE = re.compile(r"^\s+([0-9]{6})\s*$", re.M)
ACTIVATION_CODE = re.compile(r"^\s+([A-Z0-9]{4}(?:-[A-Z0-9]{4}){3})\s*$", re.M)


class Inbox:
    """The Maildir the default transport writes to; remembers what a test has read."""

    def __init__(self, home: Path) -> None:
        self.path = home / "maildir"
        self.seen: set[str] = set()

    def all(self) -> list[EmailMessage]:
        if not self.path.exists():
            return []
        box = mailbox.Maildir(self.path, create=False)
        return sorted((self._parse(box.get_bytes(key)) for key in box.iterkeys()), key=sent_order)

    def new(self) -> list[EmailMessage]:
        """Messages delivered since the last call."""
        if not self.path.exists():
            return []
        box = mailbox.Maildir(self.path, create=False)
        fresh = [key for key in box.iterkeys() if key not in self.seen]
        self.seen.update(fresh)
        return [self._parse(box.get_bytes(key)) for key in fresh]

    @staticmethod
    def _parse(raw: bytes) -> EmailMessage:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    def new_with(self, to: str, subject_word: str) -> list[EmailMessage]:
        """New mail to ``to`` whose subject has ``subject_word`` (other new mail is read too)."""
        return [
            m
            for m in self.new()
            if to in str(m["To"]) and subject_word in str(m["Subject"]).lower()
        ]

    def security_code(self, to: str) -> str:
        """The 6-digit code of the one security-code mail delivered since the last read."""
        fresh = self.new_with(to, "sikkerhedskode")
        assert len(fresh) == 1, f"expected one new security code mail, got {len(fresh)}"
        return _only(SECURITY_CODE, body(fresh[0]))

    def activation_code(self, to: str) -> str:
        fresh = self.new_with(to, "aktiveringskode")
        assert len(fresh) == 1, f"expected one new activation mail, got {len(fresh)}"
        return _only(ACTIVATION_CODE, body(fresh[0]))

    def no_security_code(self, to: str) -> bool:
        return self.new_with(to, "sikkerhedskode") == []


def sent_order(msg: EmailMessage) -> int:
    """The outbox id in the Message-ID (``<outbox-ID.…>``): the order mail was queued
    (a Maildir's file names do not sort in time order)."""
    found = re.match(r"<outbox-(\d+)\.", str(msg["Message-ID"]))
    return int(found.group(1)) if found else 0


def body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def _only(pattern: re.Pattern[str], text: str) -> str:
    found = pattern.findall(text)
    assert len(found) >= 1, text
    assert len(set(found)) == 1, found
    return str(found[0])


@contextmanager
def db_session(db_url: str, home: Path) -> Iterator[Session]:
    with Session(engine_mod.get_engine(db_url, home), expire_on_commit=False) as session:
        yield session


def user_row(session: Session, cpr: str) -> PortalUser:
    user = session.exec(select(PortalUser).where(PortalUser.cpr == cpr)).one()
    return user


def link_row(session: Session, cpr: str, clinic: str = "NORD") -> ClinicLink:
    return session.exec(
        select(ClinicLink)
        .join(PortalUser, PortalUser.id == ClinicLink.user_id)  # type: ignore[arg-type]
        .join(Clinic, Clinic.id == ClinicLink.clinic_id)  # type: ignore[arg-type]
        .where(PortalUser.cpr == cpr, Clinic.code == clinic)
    ).one()


def portal_events(session: Session) -> list[tuple[str, str | None, str, str]]:
    """(action, clinic, target, actor) of the `portal` login events, oldest first."""
    rows = session.exec(
        select(AuditEvent)
        .where(AuditEvent.actor == "patient", col(AuditEvent.action).startswith("portal."))
        .order_by(col(AuditEvent.id))
    )
    return [(e.action, e.clinic, e.target, e.actor) for e in rows]


# --- setting patients up (staff side, and the patient's self-registration) ---------------


def staff_creates_patient(
    cli: Cli,
    *,
    cpr: str,
    name: str,
    email: str,
    no_mitid: bool = False,
    clinic: str = "NORD",
) -> None:
    """`patient create` (the activation mail is delivered at once)."""
    flags = " --no-mitid --confirm-email-owner" if no_mitid else ""
    cli(
        ["patient", "create", cpr, "--name", name, "--email", email, "--clinic", clinic]
        + flags.split()
    )


def self_registers(
    cli: Cli, *, cpr: str, name: str, email: str, password: str, clinic: str = "NORD"
) -> None:
    """`portal register` at a clinic in open mode: a user with a password, no flag."""
    cli(f"clinic set-registration open --clinic {clinic}")
    r = cli(
        ["portal", "register", cpr, "--clinic", clinic, "--name", name, "--email", email]
        + ["--password-stdin"],
        input=password + "\n",
    )
    assert "linked to clinic" in r.stderr, r


def set_no_mitid(cli: Cli, *, cpr: str, on: bool, clinic: str = "NORD") -> None:
    """Staff set (`no-mitid set`, R4/R6) or clear (`no-mitid clear`, R7) the flag."""
    if on:
        cli(f"no-mitid set {cpr} --confirm-email-owner --clinic {clinic}")
    else:
        cli(f"no-mitid clear {cpr} --clinic {clinic}")


def unlock(cli: Cli, cpr: str, clinic: str = "NORD") -> str:
    """`patient unlock`: its message."""
    return cli(f"patient unlock {cpr} --clinic {clinic}").stderr


def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2, with the cheapest parameters: these tests hash and check many
    passwords (lockouts), and the default cost makes that slow. Hashes keep their
    parameters, so the program's default hasher still verifies them."""
    from argon2 import PasswordHasher

    from patientportal_cli.services import passwords

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", lambda: cheap)


# --- two-factor login: the attempt id ------------------------------------------------------

ATTEMPT_ID = re.compile(r"--attempt ([A-Za-z0-9_-]{22}) ")


def attempt_of(text: str) -> str:
    """The attempt id a two-factor `portal login` printed (in the `portal verify` hint)."""
    found = ATTEMPT_ID.findall(text)
    assert len(found) == 1, text
    return str(found[0])


def code_sent(text: str, *, email: str = "s***@example.dk", clinic: str = "NORD") -> str:
    """What a two-factor login without a terminal prints, for the attempt id in ``text``."""
    return (
        f"A security code was e-mailed to {email} (valid 10 minutes).\n"
        "No terminal to ask for it: give it with `patientportal portal verify CPR --clinic "
        f"{clinic} --attempt {attempt_of(text)} --code CODE`.\n"
    )
