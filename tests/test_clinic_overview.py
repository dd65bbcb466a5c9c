"""`patientportal clinic overview` (both backends, through the command): one screen with
the clinic and its registration mode, its patients, those without MitID, activations not
used, pending requests and the oldest's age, failed patient logins and locks of the last
24 hours, mail queued, and the last `audit verify` run with its result; the same as
`-o json` and `-o csv`. Only the clinic's own numbers: another clinic's patients,
requests, failed logins, mail and verify runs never show.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlmodel import col, select

from patientportal_cli.db.models import AuditEvent, AuditVerifyRun
from tests.helpers.cli import Cli
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.db import db_session
from tests.helpers.people import register, second_clinic, set_mode, staff_creates_patient

NOW = re.compile(r"^20\d\d-\d\d-\d\d \d\d:\d\d UTC$")
ISO = re.compile(r"^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def panel(output: str) -> tuple[str, dict[str, str]]:
    """The panel's title and its lines as {label: value} (a value wrapped onto more lines
    is joined again with spaces, where Rich broke it)."""
    fields: dict[str, str] = {}
    label = ""
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        inner = line.strip("│").removeprefix(" ")
        if inner.startswith(" "):  # no label: the value goes on
            fields[label] += " " + inner.strip()
            continue
        label, value = re.split(r"\s{2,}", inner.strip(), maxsplit=1)
        fields[label] = value
    title = output.splitlines()[0].strip("╭─╮ ")
    return title, fields


def fail_login(cli: Cli, cpr: str, clinic: str = "NORD") -> str:
    r = cli(
        ["portal", "login", cpr, "--clinic", clinic, "--method", "two-factor"]
        + ["--password-stdin"],
        input="Wrong-pass-1\n",
        expect=1,
    )
    return r.stderr


def test_a_new_clinic_shows_zeros_and_no_verify_run(cli: Cli, staff: StaffHelper) -> None:
    title, fields = panel(cli("clinic overview").stdout)
    assert title == "Clinic NORD (Nordklinikken)"
    assert fields == {
        "Registration": "none (Ingen online selv-oprettelse)",
        "Patients": "0",
        "Without MitID": "0",
        "Activations not used": "0",
        "Pending requests": "0",
        "Failed logins, 24 h": "0",
        "Locked logins, 24 h": "0",
        "Mail queued": "0",
        "Audit log verified": "never (run `patientportal audit verify`)",
    }
    data = json.loads(cli("clinic overview -o json").stdout)
    assert ISO.match(data.pop("at"))
    assert data == {
        "clinic": {
            "code": "NORD",
            "name": "Nordklinikken",
            "registration_mode": "none",
            "registration_label": "Ingen online selv-oprettelse",
        },
        "patients": {"total": 0, "without_mitid": 0, "activations_not_used": 0},
        "requests": {"pending": 0, "oldest_submitted_at": None, "oldest_age_seconds": None},
        "logins_24h": {"failed": 0, "locked": 0},
        "mail": {"queued": 0},
        "audit": {"last_verified_at": None, "verified_by": None, "result": None, "problem": None},
    }


def test_the_numbers_are_this_clinics_only(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    second_clinic(cli, staff)  # SYD, anna is its admin too
    # NORD: two patients with an activation code (one without MitID), one never invited
    staff_creates_patient(cli, cpr="010203-1234", name="Jens Hansen", email="jens@example.dk")
    staff_creates_patient(
        cli, cpr="240694-4321", name="Sofie Berg", email="sofie@example.dk", no_mitid=True
    )
    cli("patient create 020304-1235 --name 'Ib Holm' --email ib@example.dk --no-invite")
    set_mode(cli, "approval")
    register(cli, "150385-1237", name="Ole Lund", email="ole@example.dk")
    register(cli, "160486-1238", name="Eva Lund", email="eva@example.dk")
    # five wrong passwords lock Sofie's login; the sixth try is refused as locked (not
    # a failed login); an unknown CPR number fails (and counts) as well
    for _ in range(5):
        last = fail_login(cli, "240694-4321")
    assert last.endswith("After 5 failed attempts, login is locked for 15 minutes.\n")
    assert fail_login(cli, "240694-4321").startswith("Error: Login is locked until ")
    fail_login(cli, "111111-1118")
    # SYD: its own patient, request, failed logins and verify run, none of them NORD's
    staff_creates_patient(
        cli, cpr="030405-1236", name="Per Syd", email="per@example.dk", clinic="SYD"
    )
    set_mode(cli, "open", "--clinic", "SYD")
    set_mode(cli, "approval", "--clinic", "SYD")
    register(cli, "170587-1239", clinic="SYD", name="Lis Syd", email="lis@example.dk")
    for _ in range(5):
        fail_login(cli, "030405-1236", clinic="SYD")
    cli("audit verify --clinic SYD")
    # NORD: mail that cannot be delivered stays queued
    cli("config set mail-transport smtp")
    cli("config set smtp-host 127.0.0.1")
    cli("config set smtp-port 1")  # nothing listens there: refused at once
    r = cli("patient create 311270-1236 --name 'Karen Holm' --email karen@example.dk")
    assert "it stays queued" in r.stderr

    title, fields = panel(cli("clinic overview").stdout)
    assert title == "Clinic NORD (Nordklinikken)"
    pending = fields.pop("Pending requests")
    assert re.fullmatch(r"2 \(oldest 20\d\d-\d\d-\d\d \d\d:\d\d UTC, [01] min ago\)", pending)
    assert fields == {
        "Registration": "approval (Online selv-oprettelse med læge-godkendelse)",
        "Patients": "4",
        "Without MitID": "1",
        "Activations not used": "2",  # Jens and Sofie; Ib was not invited, Karen's is queued
        "Failed logins, 24 h": "6",
        "Locked logins, 24 h": "1",
        "Mail queued": "1",
        "Audit log verified": "never (run `patientportal audit verify`)",  # SYD's run only
    }
    data = json.loads(cli("clinic overview -o json").stdout)
    assert ISO.match(data["requests"].pop("oldest_submitted_at"))
    assert 0 <= data["requests"].pop("oldest_age_seconds") < 120
    assert data["patients"] == {"total": 4, "without_mitid": 1, "activations_not_used": 2}
    assert data["requests"] == {"pending": 2}
    assert data["logins_24h"] == {"failed": 6, "locked": 1}
    assert data["mail"] == {"queued": 1}
    assert data["audit"]["result"] is None

    title, fields = panel(cli("clinic overview --clinic SYD").stdout)
    assert title == "Clinic SYD (Sydklinikken)"
    assert fields["Patients"] == "1"
    assert fields["Activations not used"] == "1"
    assert fields["Pending requests"].startswith("1 (oldest ")
    assert (fields["Failed logins, 24 h"], fields["Locked logins, 24 h"]) == ("5", "1")
    assert fields["Mail queued"] == "0"
    assert re.fullmatch(
        r"20\d\d-\d\d-\d\d \d\d:\d\d UTC by anna: intact", fields["Audit log verified"]
    )

    csv_lines = cli("clinic overview -o csv").stdout.splitlines()
    assert csv_lines[0] == (
        "clinic_code,clinic_name,clinic_registration_mode,clinic_registration_label,"
        "patients_total,patients_without_mitid,patients_activations_not_used,"
        "requests_pending,requests_oldest_submitted_at,requests_oldest_age_seconds,"
        "logins_24h_failed,logins_24h_locked,mail_queued,audit_last_verified_at,"
        "audit_verified_by,audit_result,audit_problem,at"
    )
    assert csv_lines[1].startswith(
        "NORD,Nordklinikken,approval,Online selv-oprettelse med læge-godkendelse,4,1,2,2,"
    )


def test_the_last_verify_run_and_its_result(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    staff.add("bo", "doctor")
    assert cli("audit verify").stderr.startswith("The audit log is intact: ")
    staff.login("bo")  # any role at the clinic may look
    _, fields = panel(cli("clinic overview").stdout)
    when, rest = fields["Audit log verified"].split(" by ")
    assert NOW.match(when) and rest == "anna: intact"
    # the events of NORD's chain are not changed by recording runs: a run is a row of its own
    with db_session(db_url, home) as s:
        runs = list(s.exec(select(AuditVerifyRun).order_by(col(AuditVerifyRun.id))))
        assert [(r.chain, r.actor, r.result, r.full, r.problem) for r in runs] == [
            ("NORD", "anna", "intact", False, None)
        ]
        assert not list(s.exec(select(AuditEvent).where(AuditEvent.action == "audit.verify")))
        first = s.exec(
            select(AuditEvent).where(AuditEvent.chain == "NORD").order_by(col(AuditEvent.seq))
        ).first()
        assert first is not None
        s.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE id = :i"), {"i": first.id})
        s.commit()
    r = cli("audit verify --full", expect=1)
    problem = r.stderr.removeprefix("Error: ").strip()
    assert problem.startswith(f"Event NORD #1 (id {first.id}, ")
    _, fields = panel(cli("clinic overview").stdout)
    when, rest = fields["Audit log verified"].split(" by ", 1)
    assert NOW.match(when) and rest == f"bo: failed ({problem})"
    data = json.loads(cli("clinic overview -o json").stdout)["audit"]
    assert ISO.match(data.pop("last_verified_at"))
    assert data == {"verified_by": "bo", "result": "failed", "problem": problem}


def test_only_the_last_24_hours_count(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    staff_creates_patient(cli, cpr="010203-1234", name="Jens Hansen", email="jens@example.dk")
    for _ in range(5):  # a lock, two days ago
        fail_login(cli, "010203-1234")
    with db_session(db_url, home) as s:  # everything so far happened two days ago
        s.execute(
            text("UPDATE audit_event SET at = :at WHERE chain = 'NORD'"),
            {"at": datetime.now(UTC) - timedelta(days=2)},
        )
        s.commit()
    assert json.loads(cli("clinic overview -o json").stdout)["logins_24h"] == {
        "failed": 0,
        "locked": 0,
    }
    cli("patient unlock 010203-1234")
    fail_login(cli, "010203-1234")
    fail_login(cli, "111111-1118")
    assert json.loads(cli("clinic overview -o json").stdout)["logins_24h"] == {
        "failed": 2,
        "locked": 0,
    }
