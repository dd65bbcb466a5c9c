"""`patient list` filters for accounts that need care (issue 15 point 7): --never-activated,
--inactive-since, --locked, --deactivated, --shared-email; combined, paged and in every
format, through the `patientportal` command on both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.helpers.cli import Cli, Staff
from tests.helpers.db import audit_events, db_session
from tests.helpers.mail import Inbox

PW = "Patient-pass1"
IDA = "010203-1234"  # never activated; shares familien@ with Eva; created today
OLE = "020304-2345"  # activated, last login 10 January 2025, then locked
EVA = "030405-3456"  # activated, never logged in, created 1 June 2024
BO = "040506-4567"  # deactivated


@pytest.fixture
def clinic(staff: Staff, db_url: str, home: Path) -> Cli:
    cli = staff.cli
    inbox = Inbox(home)
    for cpr, name, email in [
        (IDA, "Ida Holm", "familien@example.dk"),
        (OLE, "Ole Berg", "ole@example.dk"),
        (EVA, "Eva Holm", "Familien@example.dk"),
        (BO, "Bo Lund", "bo@example.dk"),
    ]:
        cli(["patient", "create", cpr, "--name", name, "--email", email])
        code = inbox.activation_code(email)
        if cpr in (OLE, EVA):
            args = f"portal activate {cpr} --clinic NORD --code {code} --password-stdin"
            cli(args, input=PW + "\n")
    cli(f"portal login {OLE} --clinic NORD --method mitid")
    cli(f"patient deactivate {BO} --reason deceased")
    login = f"portal login {OLE} --clinic NORD --method two-factor --password-stdin"
    for _ in range(5):
        cli(login, input="Wrong-pass1\n", expect=1)
    with db_session(db_url, home) as s:
        s.execute(
            text("UPDATE portal_user SET last_login_at = :at WHERE cpr = '0203042345'"),
            {"at": datetime(2025, 1, 10, 9, 0, tzinfo=UTC)},
        )
        s.execute(
            text("UPDATE portal_user SET created_at = :at WHERE cpr = '0304053456'"),
            {"at": datetime(2024, 6, 1, 9, 0, tzinfo=UTC)},
        )
        s.commit()
    return cli


def names(cli: Cli, args: str) -> list[str]:
    return [row["name"] for row in json.loads(cli(f"patient list -o json {args}").stdout)]


def test_each_filter(clinic: Cli) -> None:
    assert names(clinic, "") == ["Bo Lund", "Eva Holm", "Ida Holm", "Ole Berg"]
    assert names(clinic, "--never-activated") == ["Bo Lund", "Ida Holm"]
    assert names(clinic, "--inactive-since 2025-06-01") == ["Eva Holm", "Ole Berg"]
    assert names(clinic, "--inactive-since 2025-01-10") == ["Eva Holm"]  # 09:00 UTC is after
    assert names(clinic, "--inactive-since 2024-06-01") == []
    assert names(clinic, "--locked") == ["Ole Berg"]
    assert names(clinic, "--deactivated") == ["Bo Lund"]
    assert names(clinic, "--shared-email") == ["Eva Holm", "Ida Holm"]


def test_filters_combine_and_page(clinic: Cli) -> None:
    assert names(clinic, "--never-activated --shared-email") == ["Ida Holm"]
    assert names(clinic, "--never-activated --deactivated") == ["Bo Lund"]
    assert names(clinic, "--locked --deactivated") == []
    assert names(clinic, "--shared-email --search eva") == ["Eva Holm"]
    r = clinic("patient list -o json --shared-email --limit 1")
    assert [row["name"] for row in json.loads(r.stdout)] == ["Eva Holm"]
    after = r.stderr.split("--after ")[1].strip()
    assert names(clinic, f"--shared-email --limit 1 --after {after}") == ["Ida Holm"]


def test_formats(clinic: Cli) -> None:
    r = clinic("patient list -o csv --deactivated")
    assert r.stdout == (
        "cpr,name,email,activated,status,no_mitid,services\n"
        '040506-****,Bo Lund,bo@example.dk,no,not active,no,"e-consultation, booking, '
        'prescription-renewal"\n'
    )
    table = clinic("patient list --locked").stdout
    assert "Ole Berg" in table and "Ida Holm" not in table
    r = clinic("patient list --locked --deactivated")
    assert (r.stdout, r.stderr) == ("", "No patients found.\n")


def test_the_listing_is_audited_with_its_filters(clinic: Cli, db_url: str, home: Path) -> None:
    clinic("patient list -o json --never-activated --inactive-since 2025-06-01 --shared-email")
    with db_session(db_url, home) as s:
        event = audit_events(s, "patient.list")[-1]
    details = json.loads(event.details)
    assert details["count"] == 0
    assert (details["never_activated"], details["shared_email"]) == (True, True)
    assert details["inactive_since"] == "2025-05-31T22:00:00+00:00"  # 00:00 in Copenhagen (CEST)
    assert "locked" not in details and "deactivated" not in details


def test_a_bad_date_exits_2(clinic: Cli) -> None:
    r = clinic("patient list --inactive-since 2025-13-01", expect=2)
    assert (r.stdout, r.stderr) == (
        "",
        "Error: Invalid --inactive-since '2025-13-01': give a date as YYYY-MM-DD.\n",
    )
