"""E-mail: the Danish texts, the outbox delivered into a Maildir or to a real SMTP
server on loopback (aiosmtpd), failures that leave mail queued, and `mail queue | send |
test`. Database-facing tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import mailbox
import re
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from patientportal_cli.cli import mail as mail_cli
from patientportal_cli.cli.common import STATE
from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db.models import Clinic, Outbox
from patientportal_cli.errors import InvalidInput
from patientportal_cli.services.mail import delivery, texts
from tests.helpers.smtp import Received, SmtpServer, free_port

RETRY = "run `patientportal mail send`."
TO = "aase@example.dk"
CPR = "0102031234"


# --- helpers --------------------------------------------------------------------------
def session_for(db_url: str, home: Path) -> Session:
    return Session(engine_mod.get_engine(db_url, home), expire_on_commit=False)


def enqueue(
    db_url: str,
    home: Path,
    *,
    to: str = TO,
    subject: str = "Din bruger på Patientportalen – aktiveringskode",
    body: str = "Kære Åse\n\nDin kode er ABCD-EFGH.\n",
    clinic: str = "NORD",
) -> int:
    """A message whose text is given (as queued before schema 0003), of ``clinic``:
    these tests are about the transports; tests/test_secrets_at_rest.py covers intents."""
    with session_for(db_url, home) as session:
        clinic_id = session.exec(select(Clinic.id).where(Clinic.code == clinic)).one()
        message = Outbox(
            recipient=to, subject=subject, template="activation", body=body, clinic_id=clinic_id
        )
        session.add(message)
        session.commit()
        assert message.id is not None
        return message.id


def stored(db_url: str, home: Path) -> list[Outbox]:
    with session_for(db_url, home) as session:
        return list(session.exec(select(Outbox).order_by(col(Outbox.id))))


def maildir_messages(home: Path) -> list[EmailMessage]:
    box = mailbox.Maildir(home / "maildir", create=False)
    return [
        email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)  # type: ignore[misc]
        for key in sorted(box.keys())
    ]


def use_smtp(cli: Any, port: int, *, starttls: str = "no") -> None:
    cli("config set mail-transport smtp")
    cli("config set smtp-host 127.0.0.1")
    cli(f"config set smtp-port {port}")
    cli(f"config set smtp-starttls {starttls}")


def closed_port() -> int:
    port = free_port()  # bound and released: nothing listens there now
    return port


@pytest.fixture
def state(db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The global CLI state as a command sees it (for calling send_queued directly)."""
    monkeypatch.setattr(STATE, "home", home.resolve())
    monkeypatch.setattr(STATE, "db_url", db_url)


# --- the texts ------------------------------------------------------------------------
ALL_TEXTS = [
    texts.activation(name="Åse Ørsted", clinic_name="Lægehuset Nord", code="ABCD-EFGH"),
    texts.security_code(name="Åse Ørsted", code="123456"),
    texts.registered(name="Åse Ørsted", clinic_name="Lægehuset Nord"),
    texts.request_received(name="Åse Ørsted", clinic_name="Lægehuset Nord"),
    texts.request_approved(name="Åse Ørsted", clinic_name="Lægehuset Nord", services=["booking"]),
    texts.request_rejected(name="Åse Ørsted", clinic_name="Lægehuset Nord", reason="Nej"),
    texts.no_mitid_set(name="Åse Ørsted", clinic_name="Lægehuset Nord"),
    texts.no_mitid_cleared(name="Åse Ørsted", clinic_name="Lægehuset Nord"),
]


@pytest.mark.parametrize("text", ALL_TEXTS, ids=lambda t: t[0][:30])
def test_every_text_is_polite_signed_and_one_line_subject(text: tuple[str, str]) -> None:
    subject, body = text
    assert "\n" not in subject and subject.strip() == subject
    assert body.startswith("Kære Åse Ørsted\n\n")
    assert "\nVenlig hilsen\n" in body
    assert body.endswith("\n") and not body.endswith("\n\n")
    assert CPR not in body and "010203" not in body


def test_activation_text() -> None:
    subject, body = texts.activation(
        name="Åse", clinic_name="Lægehuset Nord", code="ABCD-EFGH", clinic_code="NORD"
    )
    assert subject == "Din bruger på Patientportalen – aktiveringskode"
    assert "Lægehuset Nord har oprettet dig som bruger på Patientportalen." in body
    assert "\n    ABCD-EFGH\n" in body
    assert "gyldig i 7 dage og kan kun bruges én gang" in body
    assert "patientportal portal activate DIT-CPR-NUMMER --clinic NORD --code ABCD-EFGH" in body
    assert "mindst 8 tegn" in body
    assert body.endswith("Venlig hilsen\nLægehuset Nord\n")
    one_day = texts.activation(name="Å", clinic_name="K", code="X", valid_days=1)[1]
    assert "gyldig i 1 dag og" in one_day


def test_security_code_text() -> None:
    subject, body = texts.security_code(name="Åse", code="042042")
    assert subject == "Din sikkerhedskode til Patientportalen"
    assert "sikkerhedskode til to-faktor-login" in body
    assert "\n    042042\n" in body
    assert re.findall(r"\b\d{6}\b", body) == ["042042"]  # the only 6-digit number
    assert "gyldig i 10 minutter og kan kun bruges én gang" in body
    assert body.endswith("Venlig hilsen\nPatientportalen\n")
    signed = texts.security_code(name="Åse", code="1", minutes=1, clinic_name="Nord")[1]
    assert "gyldig i 1 minut og" in signed and signed.endswith("Venlig hilsen\nNord\n")


def test_registration_texts() -> None:
    subject, body = texts.registered(name="Åse", clinic_name="Nord")
    assert subject == "Du er nu tilknyttet Nord på Patientportalen"
    assert "Du er nu oprettet som bruger på Patientportalen og tilknyttet Nord." in body
    assert "Ved første login kræves verificering med MitID" in body

    subject, body = texts.request_received(name="Åse", clinic_name="Nord")
    assert subject == "Vi har modtaget din anmodning – Nord"
    assert "afventer nu godkendelse af en læge" in body

    subject, body = texts.request_approved(
        name="Åse", clinic_name="Nord", services=["prescription-renewal", "e-consultation"]
    )
    assert subject == "Din anmodning er godkendt – Nord"
    assert "Du har adgang til:\n  - E-konsultation\n  - Receptfornyelse\n" in body
    none = texts.request_approved(name="Åse", clinic_name="Nord", services=[])[1]
    assert "endnu ikke givet adgang til nogen funktioner" in none

    subject, body = texts.request_rejected(
        name="Åse", clinic_name="Nord", reason="Du bor uden for\nvores område [bold]"
    )
    assert subject == "Svar på din anmodning – Nord"
    assert "er desværre ikke blevet godkendt" in body
    assert "Begrundelse: Du bor uden for\nvores område [bold]\n" in body  # as entered
    without = texts.request_rejected(name="Åse", clinic_name="Nord", reason=None)[1]
    assert "Begrundelse" not in without


def test_no_mitid_texts() -> None:
    subject, body = texts.no_mitid_set(name="Åse", clinic_name="Nord")
    assert subject == "Login uden MitID hos Nord"
    assert "Nord har registreret, at du ikke har MitID." in body
    assert "to-faktor-login" in body and "sikkerhedskode" in body
    subject, body = texts.no_mitid_cleared(name="Åse", clinic_name="Nord")
    assert subject == "MitID kræves ved næste login hos Nord"
    assert "ved dit næste login" in body.lower() and "verificere dig med MitID" in body


def test_subject_never_breaks_a_header() -> None:
    subject, body = texts.registered(name="Åse", clinic_name="Nord\r\nBcc: x@evil.example")
    assert subject == "Du er nu tilknyttet Nord Bcc: x@evil.example på Patientportalen"
    msg = delivery.build_message(sender="a@b.dk", recipient=TO, subject=subject, body=body)
    assert msg["Bcc"] is None


# --- Maildir (default) ----------------------------------------------------------------
def test_maildir_delivery_queue_and_send(
    state: None, staff: Any, cli: Any, db_url: str, home: Path, capsys: Any
) -> None:
    maildir = home.resolve() / "maildir"
    # mail send: delivers, marks sent, shows in the Maildir, never sends twice
    message_id = enqueue(db_url, home)
    r = cli("mail queue -o json")
    assert f'"id": {message_id}' in r.stdout and f'"recipient": "{TO}"' in r.stdout
    r = cli("mail send")
    assert r.stderr == f"Sent 1 e-mail (Maildir {maildir}).\n"
    [msg] = maildir_messages(home)
    assert msg["To"] == TO
    assert msg["From"] == "Patientportal <no-reply@patientportal.invalid>"
    assert msg["Subject"] == "Din bruger på Patientportalen – aktiveringskode"
    assert msg["Message-ID"].startswith(f"<outbox-{message_id}.")
    assert msg["Date"]
    assert msg.get_content() == "Kære Åse\n\nDin kode er ABCD-EFGH.\n"
    [path] = (maildir / "new").iterdir()
    assert "Kære Åse".encode() in path.read_bytes()  # 8bit: readable in the file itself
    [row] = stored(db_url, home)
    assert row.sent_at is not None and row.attempts == 1 and row.error is None
    assert cli("mail queue").stderr == "No e-mail is queued.\n"
    assert cli("mail send").stderr == "No e-mail is queued.\n"
    assert len(maildir_messages(home)) == 1

    # send_queued, as a command calls it after its commit: silent on success
    cli(["config", "set", "mail-from", "Lægehuset Nord <post@nord.example>"])
    enqueue(db_url, home, to="a@example.dk")
    enqueue(db_url, home, to="b@example.dk")
    capsys.readouterr()
    assert mail_cli.send_queued(clinic="NORD") == (2, 0)
    assert capsys.readouterr().err == ""
    later = [m for m in maildir_messages(home) if m["To"] != TO]  # Maildir has no order
    assert sorted(m["To"] for m in later) == ["a@example.dk", "b@example.dk"]
    assert {m["From"] for m in later} == {"Lægehuset Nord <post@nord.example>"}
    assert all(m["Message-ID"].endswith("@nord.example>") for m in later)
    assert mail_cli.send_queued(clinic="NORD") == (0, 0)

    # one message that cannot be built does not stop the others
    bad = enqueue(db_url, home, to="x@example.dk\nBcc: y@example.dk")
    good = enqueue(db_url, home, to="good@example.dk")
    capsys.readouterr()
    assert mail_cli.send_queued(clinic="NORD") == (1, 1)
    err = capsys.readouterr().err
    assert err.startswith("Warning: 1 e-mail could not be sent (Cannot build the e-mail to ")
    assert err.endswith(f"; it stays queued: {RETRY}\n") and err.count("\n") == 1
    rows = {r.id: r for r in stored(db_url, home)}
    assert rows[good].sent_at is not None
    assert rows[bad].sent_at is None and rows[bad].attempts == 1
    assert rows[bad].error and rows[bad].error.startswith("Cannot build the e-mail")
    assert sorted(m["To"] for m in maildir_messages(home)) == [
        "a@example.dk",
        TO,
        "b@example.dk",
        "good@example.dk",
    ]


def test_maildir_not_writable(
    state: None, staff: Any, db_url: str, home: Path, capsys: Any
) -> None:
    # an empty queue touches no transport (this SMTP setting would fail if used)
    with session_for(db_url, home) as session:
        unusable = delivery.MailSettings(transport="smtp", smtp_host=None)
        assert delivery.deliver(session, settings=unusable) == (0, 0, [])

    home.mkdir(parents=True, exist_ok=True)
    (home / "maildir").write_text("a file, not a directory")
    enqueue(db_url, home)
    capsys.readouterr()
    assert mail_cli.send_queued(clinic="NORD") == (0, 1)
    err = capsys.readouterr().err
    maildir = home.resolve() / "maildir"
    assert err.startswith(
        f"Warning: 1 e-mail could not be sent (Cannot write to the Maildir {maildir}: "
    )
    [row] = stored(db_url, home)
    assert row.sent_at is None and row.attempts == 1


# --- SMTP -----------------------------------------------------------------------------
def test_smtp_delivery_refusal_and_retry(
    state: None,
    staff: Any,
    cli: Any,
    db_url: str,
    home: Path,
    smtp_server: SmtpServer,
    capsys: Any,
) -> None:
    use_smtp(cli, smtp_server.port)
    sent_line = f"Sent 1 e-mail (SMTP server 127.0.0.1:{smtp_server.port}).\n"
    subject, body = texts.security_code(name="Åse [bold]Ørsted[/bold]", code="654321")
    enqueue(db_url, home, subject=subject, body=body)
    assert cli("mail send").stderr == sent_line
    [msg] = smtp_server.messages
    assert msg["To"] == TO
    assert msg["Subject"] == "Din sikkerhedskode til Patientportalen"
    assert msg.get_content().replace("\r\n", "\n") == body
    assert not (home / "maildir").exists()
    [row] = stored(db_url, home)
    assert row.sent_at is not None and row.error is None

    # the server refuses: the mail stays queued, one warning line, nothing raised
    smtp_server.handler.refuse = True
    message_id = enqueue(db_url, home)
    capsys.readouterr()
    assert mail_cli.send_queued(clinic="NORD") == (0, 1)
    error = f"SMTP 550 5.1.1 mailbox unavailable (recipient {TO})"
    assert capsys.readouterr().err == (
        f"Warning: 1 e-mail could not be sent ({error}); it stays queued: {RETRY}\n"
    )
    row = stored(db_url, home)[1]
    assert row.sent_at is None and row.attempts == 1 and row.error == error
    r = cli("mail queue -o csv")
    assert r.stdout.splitlines() == [
        "id,created_at,recipient,subject,attempts,error",
        f"{message_id},{row.created_at:%Y-%m-%d %H:%M} UTC,{TO},{row.subject},1,{error}",
    ]
    r = cli("mail send", expect=1)
    assert r.stderr == f"Error: 1 e-mail could not be sent ({error}); it stays queued: {RETRY}\n"
    assert stored(db_url, home)[1].attempts == 2

    # accepted again: `mail send` delivers it
    smtp_server.handler.refuse = False
    assert cli("mail send").stderr == sent_line
    assert [m["To"] for m in smtp_server.messages] == [TO, TO]
    row = stored(db_url, home)[1]
    assert row.sent_at is not None and row.attempts == 3 and row.error is None


def test_smtp_down_or_misconfigured(
    state: None,
    staff: Any,
    cli: Any,
    db_url: str,
    home: Path,
    smtp_server: SmtpServer,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # nothing listens on the port: both messages stay queued, one warning line
    port = closed_port()
    use_smtp(cli, port)
    enqueue(db_url, home, to="a@example.dk")
    enqueue(db_url, home, to="b@example.dk")
    capsys.readouterr()
    assert mail_cli.send_queued(clinic="NORD") == (0, 2)
    error = f"cannot connect to SMTP server 127.0.0.1:{port}: Connection refused"
    assert capsys.readouterr().err == (
        f"Warning: 2 e-mails could not be sent ({error}); they stay queued: {RETRY}\n"
    )
    rows = stored(db_url, home)
    assert [(r.sent_at, r.attempts, r.error) for r in rows] == [(None, 1, error)] * 2
    r = cli("mail send", expect=1)
    assert r.stderr == f"Error: 2 e-mails could not be sent ({error}); they stay queued: {RETRY}\n"

    # STARTTLS required (the default) but the server does not offer it: not sent in clear
    cli(f"config set smtp-port {smtp_server.port}")
    cli("config unset smtp-starttls")
    r = cli("mail send", expect=1)
    assert "does not offer STARTTLS; not sending in clear text" in r.stderr
    assert smtp_server.messages == []

    # no smtp-host
    cli("config unset smtp-host")
    r = cli("mail send", expect=1)
    assert r.stderr == (
        "Error: 2 e-mails could not be sent (mail-transport is smtp but smtp-host is not "
        f"set: run `patientportal config set smtp-host HOST`.); they stay queued: {RETRY}\n"
    )

    # an invalid setting from the environment: send_queued warns, never raises
    monkeypatch.setenv("PATIENTPORTAL_SMTP_PORT", "notaport")
    capsys.readouterr()
    assert mail_cli.send_queued(clinic="NORD") == (0, 1)
    assert capsys.readouterr().err == (
        "Warning: e-mail could not be sent (Invalid smtp-port 'notaport': use a number "
        f"from 1 to 65535.); it stays queued: {RETRY}\n"
    )
    r = cli("mail send", expect=2)
    assert r.stderr == "Error: Invalid smtp-port 'notaport': use a number from 1 to 65535.\n"
    assert [r.sent_at for r in stored(db_url, home)] == [None, None]


# --- SMTP with STARTTLS and login ------------------------------------------------------
def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Any:
    """aiosmtpd with STARTTLS (self-signed certificate) and AUTH (user 'mailer')."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    logins: list[str] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == b"mailer"
            and data.password == b"smtp-Secret1"
        )
        if ok:
            logins.append(mechanism)
        return AuthResult(success=ok, handled=False)

    handler = Received()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
    )
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler), cert_file, logins
    finally:
        controller.stop()


def test_smtp_starttls_login_and_keyring(
    staff: Any, cli: Any, db_url: str, home: Path, tls_smtp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyring
    from keyring.backends import fail

    server, cert_file, logins = tls_smtp
    use_smtp(cli, server.port, starttls="yes")
    cli("config set smtp-username mailer")
    enqueue(db_url, home)

    # the certificate is not trusted: no mail goes out, and the reason is told
    r = cli("mail send", expect=1)
    assert "TLS with SMTP server 127.0.0.1:" in r.stderr
    assert "certificate verify failed" in r.stderr
    assert server.messages == [] and logins == []

    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # now it is trusted
    r = cli("mail send", expect=1)
    assert r.stderr == (
        "Error: 1 e-mail could not be sent (smtp-username is set but no smtp-password is "
        f"stored: run `patientportal config set smtp-password`.); it stays queued: {RETRY}\n"
    )

    cli("config set smtp-password --value-stdin", input="wrong-Password1\n")
    r = cli("mail send", expect=1)
    assert "(SMTP 535 5.7.8 Authentication credentials invalid)" in r.stderr

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        r = cli("mail send", expect=1)
    finally:
        keyring.set_keyring(previous)
    assert r.stderr.startswith(
        "Error: 1 e-mail could not be sent (Cannot read smtp-password: No usable OS keyring"
    )

    cli("config set smtp-password --value-stdin", input="smtp-Secret1\n")
    r = cli("mail send")
    assert r.stderr == f"Sent 1 e-mail (SMTP server 127.0.0.1:{server.port}).\n"
    assert [m["To"] for m in server.messages] == [TO]
    assert logins


# --- mail test ------------------------------------------------------------------------
def test_mail_test(
    staff: Any,
    cli: Any,
    db_url: str,
    home: Path,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = cli("mail test bo@EXAMPLE.dk")
    maildir = home.resolve() / "maildir"
    assert r.stderr == f"Test e-mail sent to bo@example.dk (Maildir {maildir}).\n"
    [msg] = maildir_messages(home)
    assert msg["To"] == "bo@example.dk"
    assert msg["Subject"] == "Testmail fra Patientportalen / test message"
    assert "Hvis du kan læse den, virker mailafsendelsen." in msg.get_content()
    assert stored(db_url, home) == []  # not via the outbox

    r = cli("mail test not-an-address", expect=2)
    assert r.stderr.startswith("Error: Invalid e-mail address 'not-an-address': ")

    use_smtp(cli, smtp_server.port)
    r = cli("mail test bo@example.dk")
    assert r.stderr == (
        f"Test e-mail sent to bo@example.dk (SMTP server 127.0.0.1:{smtp_server.port}).\n"
    )
    assert [m["To"] for m in smtp_server.messages] == ["bo@example.dk"]

    smtp_server.handler.refuse = True
    r = cli("mail test bo@example.dk", expect=1)
    assert r.stderr == "Error: SMTP 550 5.1.1 mailbox unavailable (recipient bo@example.dk)\n"

    port = closed_port()
    cli(f"config set smtp-port {port}")
    r = cli("mail test bo@example.dk", expect=1)
    assert r.stderr == (
        f"Error: cannot connect to SMTP server 127.0.0.1:{port}: Connection refused\n"
    )

    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    for args in ("mail queue", "mail send", "mail test bo@example.dk"):
        r = cli(args, expect=4)
        assert r.stderr == "Error: Not logged in: run `patientportal login USERNAME`.\n"


# --- delivery service -----------------------------------------------------------------
def test_deliver_skips_a_message_another_process_is_sending(
    backend: str, staff: Any, db_url: str, home: Path
) -> None:
    """PostgreSQL: a row being sent elsewhere is locked and skipped, never sent twice.
    (SQLite serialises writers with BEGIN IMMEDIATE, so the second run simply waits.)"""
    if backend != "postgresql":
        pytest.skip("row locks are a PostgreSQL matter")
    message_id = enqueue(db_url, home)
    settings = delivery.MailSettings(maildir=home / "maildir")
    with session_for(db_url, home) as other:
        claimed = other.exec(select(Outbox).where(Outbox.id == message_id).with_for_update()).one()
        assert claimed.sent_at is None
        with session_for(db_url, home) as session:
            assert delivery.deliver(session, settings=settings) == (0, 0, [])
        other.rollback()
    with session_for(db_url, home) as session:
        assert delivery.deliver(session, settings=settings) == (1, 0, [])
    assert len(maildir_messages(home)) == 1


def test_transfer_encoding_for_long_lines() -> None:
    long_body = "Begrundelse: " + "å" * 1000 + "\n"
    msg = delivery.build_message(sender="a@b.dk", recipient=TO, subject="x", body=long_body)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert max(len(line) for line in msg.as_bytes().splitlines()) <= 78
    assert msg.get_content() == long_body
    short = delivery.build_message(sender="a@b.dk", recipient=TO, subject="x", body="Kære Åse\n")
    assert short["Content-Transfer-Encoding"] == "8bit"


def test_settings_parsing() -> None:
    assert delivery.parse_port(None) == 587
    assert delivery.parse_port(" 25 ") == 25
    assert delivery.parse_yes_no("No", key="smtp-starttls", default=True) is False
    assert delivery.parse_yes_no(None, key="smtp-starttls", default=True) is True
    with pytest.raises(InvalidInput, match="use yes or no"):
        delivery.parse_yes_no("maybe", key="smtp-starttls", default=True)
    with pytest.raises(InvalidInput, match="from 1 to 65535"):
        delivery.parse_port("70000")
    with pytest.raises(InvalidInput, match="use maildir or smtp"):
        delivery.check_transport("pigeon")
