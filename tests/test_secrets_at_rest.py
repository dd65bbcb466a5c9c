"""No usable secret at rest: a copy of the database gives no code that was ever mailed.

The outbox keeps each message's intent (template, patient, clinic, non-secret
arguments); its text and any code are made at delivery, and only hashes of codes are
stored (80-bit activation codes: SHA-256; 6-digit security codes: argon2id). These
tests run the real flows through the CLI, then search the raw database for every code
the patient received: the SQLite file with its WAL, and every row of every table on
PostgreSQL. Mail is scoped to the clinic it belongs to.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db import migrate
from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, OneTimeCode, Outbox
from tests.helpers.cli import Cli, Staff
from tests.helpers.csv_files import patients_csv
from tests.helpers.mail import ACTIVATION_CODE, SECURITY_CODE, Inbox, body
from tests.helpers.people import second_clinic
from tests.helpers.portal import attempt_of

PW = "Patient-pass1"
CPR = "120376-4321"
EMAIL = "karen@example.dk"


def outbox_rows(db_url: str, home: Path) -> list[Outbox]:
    with Session(engine_mod.get_engine(db_url, home), expire_on_commit=False) as session:
        return list(session.exec(select(Outbox).order_by(col(Outbox.id))))


def raw_database(db_url: str, home: Path) -> bytes:
    """Everything the database holds, as a copy would: the SQLite file and its WAL
    byte for byte, or every row of every table in the test's PostgreSQL schema."""
    engine_mod.dispose_all()  # close connections; SQLite keeps the WAL (no checkpoint)
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        parts = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        return b"".join(p.read_bytes() for p in parts if p.exists())
    engine = engine_mod.get_engine(db_url, home)
    chunks: list[bytes] = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.exec_driver_sql(f'SELECT t::text FROM "{table}" t'):
                chunks.append(str(row[0]).encode())
    return b"\n".join(chunks)


def variants(code: str) -> list[bytes]:
    """A code as typed, without its hyphens, and in lower case."""
    plain = code.replace("-", "")
    return [v.encode() for v in {code, plain, plain.lower()}]


def test_a_copy_of_the_database_holds_no_mailed_code(
    staff: Staff, cli: Cli, db_url: str, home: Path, tmp_path: Path
) -> None:
    inbox = Inbox(home)
    delivered: list[str] = []
    # a staff-created patient without MitID: activation code, then two-factor login
    cli(
        f"patient create {CPR} --name 'Karen Holm' --email {EMAIL} --no-mitid --confirm-email-owner"
    )
    code = inbox.activation_code(EMAIL)
    delivered.append(code)
    cli(
        ["portal", "activate", CPR, "--clinic", "NORD", "--code", code, "--password-stdin"],
        input=PW + "\n",
    )
    login = ["portal", "login", CPR, "--clinic", "NORD", "--method", "two-factor"]
    sent = cli([*login, "--password-stdin"], input=PW + "\n")
    security = inbox.security_code(EMAIL)
    delivered.append(security)
    attempt = attempt_of(sent.stderr)
    cli(["portal", "verify", CPR, "--clinic", "NORD", "--attempt", attempt, "--code", security])
    # a second login whose code is never used: it is pending in the database now
    cli([*login, "--password-stdin"], input=PW + "\n")
    pending = inbox.security_code(EMAIL)
    delivered.append(pending)
    # a bulk import with invitations, delivered
    r = cli(["patient", "import", str(patients_csv(tmp_path / "p.csv", 30)), "--yes"])
    assert "30 created" in r.stderr, r
    invitations = [body(m) for m in inbox.new_with("@example.dk", "aktiveringskode")]
    assert len(invitations) == 30
    for text in invitations:
        delivered.extend(ACTIVATION_CODE.findall(text))
    assert len(set(delivered)) == 33
    assert all(SECURITY_CODE.fullmatch(f"    {c}") for c in (security, pending))

    rows = outbox_rows(db_url, home)
    assert len(rows) == 34 and all(r.sent_at is not None for r in rows)
    assert all(r.body is None and r.args == "{}" for r in rows)  # nothing kept once sent
    data = raw_database(db_url, home)
    assert EMAIL.encode() in data  # the search does see the data
    found = [c for c in delivered if any(v in data for v in variants(c))]
    assert found == []


def test_queued_mail_holds_no_code_until_it_is_delivered(
    staff: Staff, cli: Cli, db_url: str, home: Path
) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    (home / "maildir").write_text("a file: delivery into the Maildir fails")
    r = cli(f"patient create {CPR} --name 'Karen Holm' --email {EMAIL}")
    assert "it stays queued" in r.stderr
    [row] = outbox_rows(db_url, home)
    assert (row.template, row.sent_at, row.body) == ("activation", None, None)
    assert json.loads(row.args) == {
        "clinic_code": "NORD",
        "clinic_name": "Nordklinikken",
        "name": "Karen Holm",
        "valid_days": 7,
    }
    with Session(engine_mod.get_engine(db_url, home)) as session:
        assert session.exec(select(OneTimeCode)).all() == []  # no code before delivery
    (home / "maildir").unlink()
    assert cli("mail send").stderr.startswith("Sent 1 e-mail")
    code = Inbox(home).activation_code(EMAIL)
    cli(
        ["portal", "activate", CPR, "--clinic", "NORD", "--code", code, "--password-stdin"],
        input=PW + "\n",
    )


def test_a_security_code_for_a_stale_login_is_discarded_not_sent(
    staff: Staff, cli: Cli, db_url: str, home: Path
) -> None:
    cli(
        f"patient create {CPR} --name 'Karen Holm' --email {EMAIL} --no-mitid --confirm-email-owner"
    )
    inbox = Inbox(home)
    code = inbox.activation_code(EMAIL)
    cli(
        ["portal", "activate", CPR, "--clinic", "NORD", "--code", code, "--password-stdin"],
        input=PW + "\n",
    )
    (home / "maildir").rename(home / "kept")
    (home / "maildir").write_text("not a directory")
    login = ["portal", "login", CPR, "--clinic", "NORD", "--method", "two-factor"]
    r = cli([*login, "--password-stdin"], input=PW + "\n", expect=1)
    assert "could not be e-mailed" in r.stderr
    engine = engine_mod.get_engine(db_url, home)
    with Session(engine) as session:
        message = session.exec(select(Outbox).where(Outbox.template == "security_code")).one()
        message.created_at = message.created_at - timedelta(minutes=11)
        session.add(message)
        session.commit()
    (home / "maildir").unlink()
    (home / "kept").rename(home / "maildir")
    assert cli("mail send").stderr == "No e-mail is queued.\n"
    assert inbox.no_security_code(EMAIL)
    [stale] = [m for m in outbox_rows(db_url, home) if m.template == "security_code"]
    assert stale.sent_at is None and stale.discarded_at is not None
    assert stale.error == "not sent: the login it belongs to is older than the code's lifetime"
    assert cli("mail queue").stderr == "No e-mail is queued.\n"


def test_mail_queue_and_send_show_only_this_clinics_mail(
    staff: Staff, cli: Cli, db_url: str, home: Path
) -> None:
    second_clinic(cli, staff)  # SYD, with the secretary sara
    staff.login("anna", clinic="NORD")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    (home / "maildir").write_text("not a directory: everything stays queued")
    cli("patient create 010203-1234 --name 'Nora Nord' --email nora@example.dk")
    staff.login("sara")
    cli("patient create 020304-1234 --name 'Sune Syd' --email sune@example.dk")
    r = cli("mail queue -o json")
    assert [m["recipient"] for m in json.loads(r.stdout)] == ["sune@example.dk"]
    (home / "maildir").unlink()
    assert cli("mail send").stderr.startswith("Sent 1 e-mail")
    assert [str(m["To"]) for m in Inbox(home).all()] == ["sune@example.dk"]
    staff.login("anna", clinic="NORD")
    r = cli("mail queue -o json")
    assert [m["recipient"] for m in json.loads(r.stdout)] == ["nora@example.dk"]


def _pg_or_sqlite_rows(engine: sa.Engine, sql: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql)))


def test_migration_0003_keeps_queued_text_and_empties_sent_bodies(
    cli: Cli, db_url: str, home: Path
) -> None:
    engine = engine_mod.get_engine(db_url, home)
    migrate.upgrade(engine, "0002")
    outbox = sa.table(
        "outbox",
        sa.column("recipient"),
        sa.column("subject"),
        sa.column("template"),
        sa.column("body"),
        sa.column("created_at"),
        sa.column("sent_at"),
        sa.column("attempts"),
    )
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            outbox.insert(),
            [
                {
                    "recipient": "a@example.dk",
                    "subject": "S",
                    "template": "activation",
                    "body": "Din kode er ABCD-EFGH.\n",
                    "created_at": now,
                    "sent_at": now,
                    "attempts": 1,
                },
                {
                    "recipient": "b@example.dk",
                    "subject": "T",
                    "template": "registered",
                    "body": "Velkommen.\n",
                    "created_at": now,
                    "sent_at": None,
                    "attempts": 0,
                },
            ],
        )
    migrate.upgrade(engine)  # 0003, and whatever came after it
    assert migrate.current(engine) == migrate.HEAD
    rows = _pg_or_sqlite_rows(
        engine, "SELECT recipient, body, args, clinic_id FROM outbox ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        ("a@example.dk", None, "{}", None),
        ("b@example.dk", "Velkommen.\n", "{}", None),
    ]
    with Session(engine) as session:
        session.add(Clinic(code="NORD", name="Nordklinikken"))
        session.commit()
    # a message from before the upgrade is delivered with its text, by any clinic's
    # holder of the installation-wide right (it has no clinic)
    from patientportal_cli.services.mail import delivery

    with Session(engine) as session:
        settings = delivery.MailSettings(maildir=home / "maildir")
        assert delivery.deliver(session, settings=settings, clinic_code="NORD") == (0, 0, [])
        assert delivery.deliver(session, settings=settings, clinic_code="NORD", legacy=True) == (
            1,
            0,
            [],
        )
    [msg] = Inbox(home).all()
    assert body(msg) == "Velkommen.\n" and re.search("b@example.dk", str(msg["To"]))
