"""The mail as delivered to the default Maildir under the home directory.

Codes are always read from the mail as delivered, never from the database: the tests
see what the patient sees.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from email.message import EmailMessage
from pathlib import Path

ACTIVATION_CODE = re.compile(r"^\s+([A-Z0-9]{4}(?:-[A-Z0-9]{4}){3})\s*$", re.M)
SECURITY_CODE = re.compile(r"^\s+([0-9]{6})\s*$", re.M)


def body(msg: EmailMessage) -> str:
    """The plain-text body of a message."""
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def sent_order(msg: EmailMessage) -> int:
    """The outbox id in the Message-ID (``<outbox-ID.…>``): the order mail was queued
    (a Maildir's file names do not sort in time order)."""
    found = re.match(r"<outbox-(\d+)\.", str(msg["Message-ID"]))
    return int(found.group(1)) if found else 0


def only_code(pattern: re.Pattern[str], text: str) -> str:
    """The one code ``pattern`` finds in ``text`` (it may be shown more than once)."""
    found = pattern.findall(text)
    assert len(found) >= 1, text
    assert len(set(found)) == 1, found
    return str(found[0])


class Inbox:
    """The Maildir the default transport writes to; remembers what a test has read."""

    def __init__(self, home: Path) -> None:
        self.path = home / "maildir"
        self.seen: set[str] = set()

    def _read(self, *, fresh_only: bool) -> list[EmailMessage]:
        if not self.path.exists():
            return []
        box = mailbox.Maildir(self.path, create=False)
        keys = sorted(k for k in box.iterkeys() if not (fresh_only and k in self.seen))
        if fresh_only:
            self.seen.update(keys)
        return sorted((_parse(box.get_bytes(k)) for k in keys), key=sent_order)

    def all(self) -> list[EmailMessage]:
        """Every delivered message, in the order it was queued (read or not)."""
        return self._read(fresh_only=False)

    def new(self) -> list[EmailMessage]:
        """Messages delivered since the last read, in the order they were queued."""
        return self._read(fresh_only=True)

    def new_to(self, to: str) -> list[tuple[str, str]]:
        """(subject, body) of the mail to ``to`` delivered since the last read (other new
        mail is read too)."""
        return [(str(m["Subject"]), body(m)) for m in self.new() if to in str(m["To"])]

    def new_with(self, to: str, subject_word: str) -> list[EmailMessage]:
        """New mail to ``to`` whose subject has ``subject_word`` (other new mail is read too)."""
        return [
            m
            for m in self.new()
            if to in str(m["To"]) and subject_word in str(m["Subject"]).lower()
        ]

    def activation_code(self, to: str, *, alone: bool = False) -> str:
        """The code of the one activation mail to ``to`` delivered since the last read;
        ``alone``: and no other mail to ``to`` came with it."""
        return only_code(ACTIVATION_CODE, self._one_mail(to, "aktiveringskode", alone=alone))

    def security_code(self, to: str, *, alone: bool = False) -> str:
        """The 6-digit code of the one security-code mail delivered since the last read;
        ``alone``: and no other mail to ``to`` came with it."""
        return only_code(SECURITY_CODE, self._one_mail(to, "sikkerhedskode", alone=alone))

    def _one_mail(self, to: str, subject_word: str, *, alone: bool) -> str:
        fresh = self.new_to(to)
        subjects = [subject for subject, _ in fresh]
        found = [text for subject, text in fresh if subject_word in subject.lower()]
        assert len(found) == 1, f"expected one new {subject_word} mail to {to}, got {subjects}"
        assert not alone or len(fresh) == 1, f"expected only one new mail to {to}: {subjects}"
        return found[0]

    def no_security_code(self, to: str) -> bool:
        return self.new_with(to, "sikkerhedskode") == []


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def mails(home: Path) -> list[EmailMessage]:
    """Every delivered message, oldest first."""
    return Inbox(home).all()


def mail_to(home: Path, to: str) -> list[tuple[str, str]]:
    """(subject, body) of every mail to ``to``, oldest first."""
    return [(str(m["Subject"]), body(m)) for m in mails(home) if to in str(m["To"])]
