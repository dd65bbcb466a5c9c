"""Non-ASCII e-mail addresses: written readably (SMTPUTF8, RFC 6532) into the Maildir
`To:` header, never as an RFC 2047 encoded word split at the @; Maildir files 0600 in
0700 folders; over SMTP, a server without SMTPUTF8 fails that message with one clear
line and keeps it queued, a server with it gets the address as it is."""

from __future__ import annotations

import email
import email.policy
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from patientportal_cli.services.mail import delivery
from tests.helpers.cli import Cli, Staff
from tests.helpers.csv_files import DANES
from tests.helpers.smtp import Received, SmtpServer, free_port

ADDRESSES = ["søren@eksempel.dk", "jørgen@blåbær.dk"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def maildir_files(home: Path) -> list[Path]:
    return sorted((home / "maildir" / "new").iterdir())


def create_patients(cli: Cli) -> None:
    for (cpr, name, _), address in zip(DANES, ADDRESSES, strict=False):
        cli(["patient", "create", cpr, "--name", name, "--email", address])


def test_maildir_to_header_is_readable_utf8(cli: Cli, staff: Staff, home: Path) -> None:
    create_patients(cli)
    paths = maildir_files(home)
    assert len(paths) == 2
    raw = b"\n".join(p.read_bytes() for p in paths)
    for address in ADDRESSES:
        assert f"\nTo: {address}\n".encode() in raw
    assert b"=?utf-8?" not in raw  # no encoded word anywhere, the subject neither
    assert b"\r\n" not in raw  # a Maildir file's lines end in \n
    parsed = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in paths]
    assert sorted(str(m["To"]) for m in parsed) == sorted(ADDRESSES)
    assert {mode(p) for p in paths} == {0o600}
    assert mode(home / "maildir") == mode(home / "maildir" / "new") == 0o700


def test_maildir_transport_makes_private_files_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        box = tmp_path / "mail" / "maildir"
        transport = delivery.MaildirTransport(box)
        msg = delivery.build_message(
            sender="Lægehuset <post@nord.example>",
            recipient="jørgen@blåbær.dk",
            subject="Din kode på Patientportalen",
            body="Hej Jørgen\n",
        )
        transport.send(msg)
        transport.close()
    finally:
        os.umask(previous)
    [path] = (box / "new").iterdir()
    assert mode(path) == 0o600
    assert mode(tmp_path / "mail") == mode(box) == mode(box / "tmp") == 0o700
    text = path.read_bytes().decode("utf-8")
    assert "To: jørgen@blåbær.dk\n" in text
    assert "From: Lægehuset <post@nord.example>\n" in text
    assert "Subject: Din kode på Patientportalen\n" in text


def test_an_old_loose_maildir_is_tightened(tmp_path: Path) -> None:
    box = tmp_path / "maildir"
    for sub in ("", "cur", "new", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(box / sub, 0o755)
    delivery.MaildirTransport(box).send(
        delivery.build_message(sender="a@b.dk", recipient="c@d.dk", subject="s", body="b\n")
    )
    assert {mode(box / sub) for sub in ("", "cur", "new", "tmp")} == {0o700}


def use_smtp(cli: Cli, port: int) -> None:
    cli("config set mail-transport smtp")
    cli("config set smtp-host 127.0.0.1")
    cli(f"config set smtp-port {port}")
    cli("config set smtp-starttls no")


@pytest.fixture
def server_without_smtputf8() -> Iterator[SmtpServer]:
    """A real SMTP server that does not offer SMTPUTF8 (aiosmtpd's Controller, as in the
    smtp_server fixture, offers it by default)."""
    handler = Received()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


def test_smtp_without_smtputf8_keeps_the_message_queued(
    cli: Cli, staff: Staff, home: Path, server_without_smtputf8: SmtpServer
) -> None:
    smtp_server = server_without_smtputf8
    use_smtp(cli, smtp_server.port)
    cpr, name, _ = DANES[0]
    r = cli(["patient", "create", cpr, "--name", name, "--email", ADDRESSES[0]])
    reason = (
        f"SMTP server 127.0.0.1:{smtp_server.port} does not accept international addresses "
        f"(no SMTPUTF8): cannot send to {ADDRESSES[0]}"
    )
    [warning] = [line for line in r.stderr.splitlines() if line.startswith("Warning:")]
    assert reason in warning and "stays queued" in warning
    assert smtp_server.messages == []
    queued = json.loads(cli("mail queue -o json").stdout)
    assert [m["recipient"] for m in queued] == [ADDRESSES[0]]
    assert not (home / "maildir").exists()

    # an ASCII address goes through the same server as before
    cpr2, name2, email2 = DANES[1]
    cli(["patient", "create", cpr2, "--name", name2, "--email", email2])
    assert [str(m["To"]) for m in smtp_server.messages] == [email2]


def test_smtp_with_smtputf8_delivers_the_address_as_it_is(
    cli: Cli, staff: Staff, smtp_server: SmtpServer
) -> None:
    smtputf8_server = smtp_server
    use_smtp(cli, smtputf8_server.port)
    create_patients(cli)
    assert sorted(str(m["To"]) for m in smtputf8_server.messages) == sorted(ADDRESSES)
    assert cli("mail queue").stderr == "No e-mail is queued.\n"
