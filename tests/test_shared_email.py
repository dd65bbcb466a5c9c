"""Two patients of one clinic with one e-mail (services/shared_email.py, issue 15 point 8):
the warning of `patient create`, `patient update --email`, `no-mitid set` and `patient
import`, the confirmation `no-mitid set` asks for, and the count behind them; through the
`patientportal` command and the service, on both backends."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from patientportal_cli.services import shared_email
from tests.helpers.cli import Cli, Staff, terminal
from tests.helpers.db import audit_events, db_session, link_of, user_row
from tests.helpers.people import second_clinic

IDA = "010203-1234"
OLE = "020304-2345"
EVA = "030405-3456"
WARNING = "Warning: this e-mail is also used by 1 other patient here.\n"


def create(cli: Cli, cpr: str, name: str, email: str, *extra: str) -> str:
    return cli(
        ["patient", "create", cpr, "--name", name, "--email", email, "--no-invite", *extra]
    ).stderr


@pytest.fixture
def ida(staff: Staff) -> Cli:
    """Ida Holm at NORD, e-mail familien@example.dk."""
    create(staff.cli, IDA, "Ida Holm", "familien@example.dk")
    return staff.cli


def test_create_warns_without_naming_the_other_patient(ida: Cli) -> None:
    stderr = create(ida, OLE, "Ole Holm", "Familien@Example.dk")
    assert stderr == (
        "Created portal user 020304-**** (Ole Holm) and linked it to clinic NORD (services: "
        "e-consultation, booking, prescription-renewal).\n"
        + WARNING
        + "No activation e-mail sent; send one with `patientportal patient invite CPR`.\n"
    )
    stderr = create(ida, EVA, "Eva Holm", "familien@example.dk", "--dry-run")
    assert "Warning: this e-mail is also used by 2 other patients here.\n" in stderr
    assert "Ida" not in stderr and "Ole" not in stderr and "010203" not in stderr
    assert "Warning" not in create(ida, EVA, "Eva Holm", "eva@example.dk")


def test_patients_of_other_clinics_do_not_count(ida: Cli, staff: Staff) -> None:
    second_clinic(ida, staff)
    stderr = create(ida, OLE, "Ole Holm", "familien@example.dk", "--clinic", "SYD")
    assert "Warning" not in stderr


def test_update_email_warns(ida: Cli) -> None:
    create(ida, OLE, "Ole Holm", "ole@example.dk")
    r = ida(f"patient update {OLE} --email FAMILIEN@example.dk")
    assert r.stderr.startswith(
        "Updated 020304-**** at clinic NORD: e-mail ole@example.dk -> FAMILIEN@example.dk.\n"
        + WARNING
    )
    r = ida(f"patient update {OLE} --name 'Ole H. Holm'")
    assert "Warning" not in r.stderr  # the e-mail did not change


SHARED_REFUSED = (
    "Error: This e-mail is also used by 1 other patient here, who would receive this "
    "patient's security codes: pass --confirm-shared-email to set the flag anyway.\n"
)


def test_no_mitid_set_needs_the_confirmation_without_a_terminal(
    ida: Cli, db_url: str, home: Path
) -> None:
    create(ida, OLE, "Ole Holm", "familien@example.dk")
    r = ida(f"no-mitid set {OLE} --confirm-email-owner", expect=2)
    assert (r.stdout, r.stderr) == ("", SHARED_REFUSED)
    with db_session(db_url, home) as s:
        link = link_of(s, "0203042345", "NORD")
        assert link is not None and link.no_mitid is False
        assert audit_events(s, "no_mitid.") == []
    r = ida(f"no-mitid set {OLE} --confirm-email-owner --confirm-shared-email")
    assert r.stderr.startswith(
        "No-MitID flag set for 020304-**** (Ole Holm) at clinic NORD: two-factor login is "
        "allowed here.\n" + WARNING
    )
    with db_session(db_url, home) as s:
        [event] = audit_events(s, "no_mitid.set")
    assert json.loads(event.details)["shared_email_confirmed"] == 1


def test_no_mitid_set_asks_on_a_terminal(ida: Cli, db_url: str, home: Path) -> None:
    create(ida, OLE, "Ole Holm", "familien@example.dk")
    with terminal("y", "n"):
        r = ida(f"no-mitid set {OLE}", expect=1)
    assert r.stderr.endswith(WARNING + "Error: Not confirmed: the flag was not set.\n")
    with db_session(db_url, home) as s:
        link = link_of(s, "0203042345", "NORD")
        assert link is not None and link.no_mitid is False
    with terminal("y", "y"):
        r = ida(f"no-mitid set {OLE}")
    assert r.stderr.count("Warning:") == 1
    assert "No-MitID flag set for 020304-**** (Ole Holm)" in r.stderr
    # an e-mail nobody else here has is not asked about
    create(ida, EVA, "Eva Holm", "eva@example.dk")
    r = ida(f"no-mitid set {EVA} --confirm-email-owner")
    assert "Warning" not in r.stderr


def test_import_counts_and_reports_shared_rows(ida: Cli, tmp_path: Path) -> None:
    source = tmp_path / "patienter.csv"
    source.write_text(
        f"cpr;navn;email\n{OLE};Ole Holm;familien@example.dk\n{EVA};Eva Holm;eva@example.dk\n",
        encoding="utf-8",
    )
    report = tmp_path / "rapport.csv"
    r = ida(f"patient import {source} --yes --no-invite --report {report}")
    assert "Warning: 1 row has an e-mail also used by another patient here" in r.stderr
    rows = list(csv.reader(io.StringIO(report.read_text(encoding="utf-8-sig")), delimiter=";"))
    assert rows[0] == ["line", "row", "reason"]
    assert [(row[0], row[2]) for row in rows[1:]] == [
        ("2", "not refused: this e-mail is also used by 1 other patient here.")
    ]


def test_the_count_service(ida: Cli, staff: Staff, db_url: str, home: Path) -> None:
    create(ida, OLE, "Ole Holm", "FAMILIEN@EXAMPLE.DK")
    second_clinic(ida, staff)
    create(ida, EVA, "Eva Holm", "familien@example.dk", "--clinic", "SYD")
    with db_session(db_url, home) as s:
        ida_user, ole_user = user_row(s, "0102031234"), user_row(s, "0203042345")
        nord = link_of(s, "0102031234", "NORD")
        assert nord is not None
        count = shared_email.others_here
        assert count(s, clinic_id=nord.clinic_id, email="Familien@example.dk", user_id=None) == 2
        assert (
            count(s, clinic_id=nord.clinic_id, email="familien@example.dk", user_id=ida_user.id)
            == 1
        )
        assert count(s, clinic_id=nord.clinic_id, email="x@example.dk", user_id=ole_user.id) == 0
    assert shared_email.warning(1) == "this e-mail is also used by 1 other patient here."
    assert shared_email.warning(3) == "this e-mail is also used by 3 other patients here."


def test_import_counts_rows_of_the_file_that_share_an_e_mail(ida: Cli, tmp_path: Path) -> None:
    source = tmp_path / "patienter.csv"
    source.write_text(
        f"cpr;navn;email\n{OLE};Ole Berg;berg@example.dk\n{EVA};Eva Berg;BERG@example.dk\n",
        encoding="utf-8",
    )
    r = ida(f"patient import {source} --dry-run -o json")
    summary = json.loads(r.stdout)
    assert (summary["plan"]["create"], summary["plan"]["shared_email"]) == (2, 1)
    assert summary["rejected"] == 0
    assert (
        "Warning: 1 row has an e-mail also used by another patient here (not refused; "
        "--report FILE names the rows).\n"
    ) in r.stderr
