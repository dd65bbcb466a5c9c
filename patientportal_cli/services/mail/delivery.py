"""Delivering the outbox: into a local Maildir (default) or through an SMTP server.

``deliver`` sends every queued message (of one clinic) once. Each message is claimed
(row lock on PostgreSQL; the database write lock on SQLite), written from its intent
(an activation or security code is issued now, in the same transaction, so only its
hash is ever stored), sent, and marked sent in its own transaction, so a crash or a
parallel run never sends what was already sent. A failed message stays queued with its
error and ``attempts`` + 1, and the code issued for it is rolled back; nothing else is
undone. A security code whose login is older than the code's lifetime is discarded.

The settings come from the caller (the CLI reads config.toml and the keyring): this
module never reads configuration itself.
"""

from __future__ import annotations

import contextlib
import email.policy
import email.utils
import json
import mailbox
import os
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from sqlmodel import Session, col, select

from patientportal_cli import files
from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, Outbox
from patientportal_cli.errors import DomainError, InvalidInput, MailError
from patientportal_cli.services import codes
from patientportal_cli.services.mail import outbox, texts

DEFAULT_FROM = "Patientportal <no-reply@patientportal.invalid>"
DEFAULT_SMTP_PORT = 587
TRANSPORTS = ("maildir", "smtp")
TIMEOUT = 10.0


@dataclass(frozen=True)
class MailSettings:
    """Where and how to deliver. ``smtp_password`` is called only when logging in."""

    transport: str = "maildir"
    maildir: Path = Path("maildir")
    sender: str = DEFAULT_FROM
    smtp_host: str | None = None
    smtp_port: int = DEFAULT_SMTP_PORT
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: Callable[[], str | None] | None = None
    timeout: float = TIMEOUT

    def describe(self) -> str:
        if self.transport == "smtp":
            return f"SMTP server {self.smtp_host}:{self.smtp_port}"
        return f"Maildir {self.maildir}"


def check_transport(value: str | None) -> str:
    transport = (value or "maildir").strip().lower()
    if transport not in TRANSPORTS:
        raise InvalidInput(
            f"Unknown mail-transport {value!r}: use maildir or smtp "
            "(`patientportal config set mail-transport smtp`)."
        )
    return transport


def parse_port(value: str | None) -> int:
    if value is None or not value.strip():
        return DEFAULT_SMTP_PORT
    try:
        port = int(value.strip())
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise InvalidInput(f"Invalid smtp-port {value!r}: use a number from 1 to 65535.")
    return port


def parse_yes_no(value: str | None, *, key: str, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    text = value.strip().lower()
    if text in ("yes", "y", "true", "1", "on"):
        return True
    if text in ("no", "n", "false", "0", "off"):
        return False
    raise InvalidInput(f"Invalid {key} {value!r}: use yes or no.")


# --- messages -------------------------------------------------------------------------
def _one_line(text: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _domain(sender: str) -> str:
    address = email.utils.parseaddr(sender)[1]
    return address.rpartition("@")[2] or "patientportal.invalid"


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    body: str,
    message_id: str | None = None,
) -> EmailMessage:
    """A plain-text UTF-8 e-mail. Raises MailError when a header cannot be formed."""
    msg = EmailMessage()
    try:
        msg["From"] = sender
        msg["To"] = recipient
        msg["Subject"] = _one_line(subject)
        msg["Date"] = email.utils.format_datetime(utcnow())
        msg["Message-ID"] = message_id or email.utils.make_msgid(domain=_domain(sender))
        msg.set_content(body, charset="utf-8", cte=_transfer_encoding(body))
    except (ValueError, TypeError, IndexError) as exc:
        raise MailError(f"Cannot build the e-mail to {recipient!r}: {exc}") from None
    return msg


def _transfer_encoding(body: str) -> str:
    """8bit keeps the file in the Maildir readable; quoted-printable for long lines."""
    longest = max((len(line.encode("utf-8")) for line in body.splitlines()), default=0)
    return "8bit" if longest <= 990 else "quoted-printable"


def _seven_bit(msg: EmailMessage) -> None:
    """Re-encode an 8bit body for a server without 8BITMIME."""
    if msg.get("Content-Transfer-Encoding", "").lower() == "8bit":
        msg.set_content(msg.get_content(), charset="utf-8", cte="quoted-printable")


def _outbox_message(session: Session, message: Outbox, settings: MailSettings) -> EmailMessage:
    """The e-mail of a claimed message, written now; a code in it is issued now (its
    hash is stored in this transaction, which commits only once the e-mail is sent)."""
    if message.body is not None:  # queued before schema revision 0003: sent as it is
        subject, body = message.subject, message.body
    else:
        code = None
        args = json.loads(message.args)
        purpose = texts.CODE_TEMPLATES.get(message.template)
        if purpose is not None:
            if message.user_id is None:
                raise MailError(f"Message {message.id} names no patient for its code.")
            # older pending codes of the purpose end; a security code is tied to its login
            code = codes.issue(
                session,
                user_id=message.user_id,
                purpose=purpose,
                clinic_id=message.clinic_id,
                attempt_hash=args.get(outbox.ATTEMPT),
            )
        subject, body = texts.render(message.template, outbox.template_args(args), code)
    # A stable Message-ID: should a message ever be sent twice, receivers can tell.
    stamp = message.created_at.strftime("%Y%m%d%H%M%S%f") if message.created_at else "0"
    return build_message(
        sender=settings.sender,
        recipient=message.recipient,
        subject=subject,
        body=body,
        message_id=f"<outbox-{message.id}.{stamp}@{_domain(settings.sender)}>",
    )


def _stale(message: Outbox, now: datetime) -> bool:
    """A security code for a login older than a code's lifetime: nobody waits for it."""
    if texts.CODE_TEMPLATES.get(message.template) != codes.LOGIN:
        return False
    return message.created_at + codes.LIFETIME[codes.LOGIN] <= now


# --- transports -----------------------------------------------------------------------
class Transport(Protocol):
    def open(self) -> None: ...

    def send(self, msg: EmailMessage) -> None: ...

    def close(self) -> None: ...


# Maildir files are written as SMTPUTF8 (RFC 6532) messages: a non-ASCII address such
# as søren@eksempel.dk, and æøå in a subject, stay readable UTF-8 instead of RFC 2047
# encoded words (which cannot hold an address: they split it at the @). Lines end in
# \n, as in every Maildir file (the SMTP policy's \r\n is for the wire).
MAILDIR_POLICY = email.policy.SMTPUTF8.clone(linesep="\n")


class MaildirTransport:
    """Messages as files in a Maildir; the directories 0700, every message file 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._box: mailbox.Maildir | None = None

    def open(self) -> None:
        if self._box is None:
            try:
                files.private_dir(self.path.parent)
                self._box = mailbox.Maildir(self.path, create=True)  # new dirs: 0700
                for folder in (self.path, *(self.path / d for d in ("cur", "new", "tmp"))):
                    if files.loose_mode(folder) is not None:  # made by an older version
                        os.chmod(folder, files.PRIVATE_DIR)
            except OSError as exc:
                raise MailError(f"Cannot write to the Maildir {self.path}: {exc}") from None

    def send(self, msg: EmailMessage) -> None:
        self.open()
        assert self._box is not None
        previous = os.umask(files.UMASK)  # mailbox creates its files 0666 & ~umask
        try:
            key = self._box.add(msg.as_bytes(policy=MAILDIR_POLICY))
            os.chmod(self.path / "new" / key, files.PRIVATE_FILE)
        except OSError as exc:
            raise MailError(f"Cannot write to the Maildir {self.path}: {exc}") from None
        finally:
            os.umask(previous)

    def close(self) -> None:
        self._box = None


def _international_addresses(msg: EmailMessage) -> list[str]:
    """The non-ASCII addresses of the envelope (sender and recipients)."""
    fields = [str(v) for h in ("From", "Sender", "To", "Cc", "Bcc") for v in msg.get_all(h, [])]
    return [addr for _, addr in email.utils.getaddresses(fields) if not addr.isascii()]


def smtp_error_text(exc: BaseException, settings: MailSettings) -> str:
    """One line for an SMTP or network failure."""
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        parts = [
            f"SMTP {code} {_decode(text)} (recipient {rcpt})"
            for rcpt, (code, text) in exc.recipients.items()
        ]
        return "; ".join(parts) or "SMTP server refused the recipient"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code} {_decode(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"SMTP server {where} closed the connection"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"SMTP server {where} did not answer within {settings.timeout:g} s"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return f"TLS with SMTP server {where} failed: {exc}"
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"cannot connect to SMTP server {where}: {reason}"
    return f"SMTP error with {where}: {exc}"


def _decode(text: bytes | str) -> str:
    value = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return _one_line(value)


class SmtpTransport:
    """One connection for a run; reconnects once after a drop; remembers a failed connect."""

    def __init__(self, settings: MailSettings) -> None:
        if not settings.smtp_host:
            raise MailError(
                "mail-transport is smtp but smtp-host is not set: run "
                "`patientportal config set smtp-host HOST`."
            )
        self.settings = settings
        self._conn: smtplib.SMTP | None = None
        self._connect_error: MailError | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        assert s.smtp_host is not None
        conn: smtplib.SMTP
        try:
            if s.smtp_port == 465:  # implicit TLS ("SMTPS")
                conn = smtplib.SMTP_SSL(
                    s.smtp_host,
                    s.smtp_port,
                    timeout=s.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                conn = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(smtp_error_text(exc, s)) from None
        try:
            conn.ehlo()
            if s.smtp_starttls and s.smtp_port != 465:
                if not conn.has_extn("starttls"):
                    raise MailError(
                        f"SMTP server {s.smtp_host}:{s.smtp_port} does not offer STARTTLS; "
                        "not sending in clear text (set smtp-starttls no only for a "
                        "trusted local relay)"
                    )
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if s.smtp_username:
                password = self._password()
                conn.login(s.smtp_username, password)
        except MailError:
            _quietly_close(conn)
            raise
        except (OSError, smtplib.SMTPException) as exc:
            _quietly_close(conn)
            raise MailError(smtp_error_text(exc, s)) from None
        return conn

    def _password(self) -> str:
        loader = self.settings.smtp_password
        try:
            password = loader() if loader is not None else None
        except DomainError as exc:  # KeyringUnavailable
            raise MailError(f"Cannot read smtp-password: {exc}") from None
        if not password:
            raise MailError(
                "smtp-username is set but no smtp-password is stored: run "
                "`patientportal config set smtp-password`."
            )
        return password

    def open(self) -> None:
        """Connect (once); a failed connect is remembered and not retried in this run."""
        if self._connect_error is not None:
            raise self._connect_error
        if self._conn is None:
            try:
                self._conn = self._connect()
            except MailError as exc:
                self._connect_error = exc
                raise

    def send(self, msg: EmailMessage) -> None:
        self.open()
        assert self._conn is not None
        international = _international_addresses(msg)
        if international and not self._conn.has_extn("smtputf8"):
            s = self.settings
            raise MailError(
                f"SMTP server {s.smtp_host}:{s.smtp_port} does not accept international "
                f"addresses (no SMTPUTF8): cannot send to {', '.join(international)}"
            )
        if not self._conn.has_extn("8bitmime"):
            _seven_bit(msg)
        try:
            self._conn.send_message(msg)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            _quietly_close(self._conn)
            self._conn = None  # the next message reconnects
            raise MailError(smtp_error_text(exc, self.settings)) from None
        except smtplib.SMTPException as exc:
            raise MailError(smtp_error_text(exc, self.settings)) from None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                _quietly_close(self._conn)
            self._conn = None


def _quietly_close(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        conn.close()


def open_transport(settings: MailSettings) -> Transport:
    if settings.transport == "smtp":
        return SmtpTransport(settings)
    return MaildirTransport(settings.maildir)


# --- the outbox -----------------------------------------------------------------------
def _claim(session: Session, message_id: int) -> Outbox | None:
    """The queued message, locked for this transaction; None if sent or being sent."""
    query = (
        select(Outbox)
        .where(Outbox.id == message_id, col(Outbox.sent_at).is_(None))
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return session.exec(query).first()


def _fail(session: Session, message: Outbox, error: str) -> None:
    message.attempts += 1
    message.error = error[:2000]
    session.add(message)
    session.commit()


def _sent(session: Session, message: Outbox, now: datetime) -> None:
    """Mark sent and keep no text: what was sent to whom and when stays (template,
    recipient, subject, times); the arguments (names, reasons) and any old body go."""
    message.sent_at = now
    message.attempts += 1
    message.error = None
    message.args = "{}"
    message.body = None
    session.add(message)
    session.commit()


def _discard(session: Session, message: Outbox, now: datetime) -> None:
    outbox.discard(
        message, reason="the login it belongs to is older than the code's lifetime", now=now
    )
    session.add(message)
    session.commit()


def deliver(
    session: Session,
    *,
    settings: MailSettings,
    clinic_code: str | None = None,
    legacy: bool = False,
) -> tuple[int, int, list[str]]:
    """Send the queued messages once: ``clinic_code``'s (with those of no clinic when
    ``legacy``), or every clinic's when it is None. Returns (sent, failed, the distinct
    errors in order)."""
    ids = _queued_ids(session, clinic_code=clinic_code, legacy=legacy)
    tally = _Tally()
    if not ids:
        return tally.result()
    # Connect before claiming anything: no database lock is held while connecting.
    try:
        transport = _connect(settings)
    except MailError as exc:
        for message_id in ids:
            _failure(session, tally, message_id, str(exc))
        return tally.result()
    try:
        for message_id in ids:
            _deliver_one(session, transport, settings, message_id, tally)
    finally:
        transport.close()
    return tally.result()


@dataclass
class _Tally:
    """One ``deliver`` run: how many were sent and failed, and the distinct errors."""

    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def result(self) -> tuple[int, int, list[str]]:
        return self.sent, self.failed, self.errors


def _queued_ids(session: Session, *, clinic_code: str | None, legacy: bool) -> list[int]:
    """The ids of the queued messages ``deliver`` sends; ends the reading transaction
    (none is held during network I/O). An unknown clinic has none."""
    clinic_id = None
    if clinic_code is not None:
        clinic_id = session.exec(
            select(Clinic.id).where(Clinic.code == clinic_code.strip().upper())
        ).first()
        if clinic_id is None:
            return []
    ids = [
        m.id for m in outbox.queued(session, clinic_id=clinic_id, legacy=legacy) if m.id is not None
    ]
    session.commit()
    return ids


def _connect(settings: MailSettings) -> Transport:
    """An open transport; MailError (nothing left open) when it cannot connect."""
    transport: Transport | None = None
    try:
        transport = open_transport(settings)
        transport.open()
    except MailError:
        if transport is not None:
            transport.close()
        raise
    return transport


def _deliver_one(
    session: Session, transport: Transport, settings: MailSettings, message_id: int, tally: _Tally
) -> None:
    """Claim, write, send and mark one message, in its own transaction."""
    message = _claim(session, message_id)
    if message is None:  # sent meanwhile, or another process is sending it
        session.rollback()
        return
    now = utcnow()
    if _stale(message, now):
        _discard(session, message, now)
        return
    try:
        transport.send(_outbox_message(session, message, settings))
    except MailError as exc:
        _failure(session, tally, message_id, str(exc))
        return
    _sent(session, message, now)
    tally.sent += 1


def _failure(session: Session, tally: _Tally, message_id: int, error: str) -> None:
    """Record ``error`` on the message (it stays queued), undoing a code issued for it."""
    session.rollback()
    message = _claim(session, message_id)
    if message is None:
        session.rollback()
        return
    _fail(session, message, error)
    tally.failed += 1
    if error not in tally.errors:
        tally.errors.append(error)


def send_now(*, settings: MailSettings, to: str, subject: str, body: str) -> None:
    """Send one message directly (not via the outbox), e.g. ``mail test``."""
    transport = open_transport(settings)
    try:
        transport.send(
            build_message(sender=settings.sender, recipient=to, subject=subject, body=body)
        )
    finally:
        transport.close()
