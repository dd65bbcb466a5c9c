"""`patient export CPR [-o json]` (GDPR art. 15, D43): everything held about a patient of
this clinic as one document; the table is a summary; audited; CPR masked unless
--show-cpr. Both backends, through the command."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import Cli, lines
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.db import audit_actions
from tests.helpers.people import (
    CPR,
    NUMBER,
    add_doctor,
    register,
    second_clinic,
    set_mode,
    staff_creates_patient,
)


def setup_patient(cli: Cli) -> None:
    staff_creates_patient(cli, cpr=CPR, name="Karen Holm", email="karen@example.dk")
    cli(f"no-mitid set {CPR} --confirm-email-owner")
    cli(f"patient show {CPR}")


def test_export_json_is_the_whole_document(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    setup_patient(cli)
    r = cli(f"patient export {CPR} -o json")
    doc = json.loads(r.stdout)
    assert doc["format"] == "patientportal-gdpr-export"
    assert doc["version"] == 1
    assert doc["exported_by"] == "anna"
    assert doc["clinic"] == {"code": "NORD", "name": "Nordklinikken"}
    person = doc["person"]
    assert person["cpr"] == "010203-****"
    assert person["name"] == "Karen Holm"
    assert person["email"] == "karen@example.dk"
    assert person["password_set"] is False
    assert "password_hash" not in json.dumps(doc)
    link = doc["link"]
    assert link["no_mitid"] is True
    assert link["no_mitid_changed_by"] == "anna"
    assert link["email_owner_confirmed_by"] == "anna"
    assert link["email_owner_confirmed_email"] == "karen@example.dk"
    assert link["linked_by"] == "anna"
    assert doc["registration_requests"] == []
    assert doc["delegations"] == []
    templates = [m["template"] for m in doc["mail"]]
    assert templates == ["activation", "no_mitid_set"]
    assert all(m["clinic"] == "NORD" and m["sent_at"] for m in doc["mail"])
    assert set(doc["mail"][0]) == {"template", "clinic", "queued_at", "sent_at", "discarded_at"}
    actions = [e["action"] for e in doc["access_log"]]
    assert actions == ["patient.show", "no_mitid.set", "patient.create"]
    assert NUMBER not in r.stdout  # the CPR number only masked
    # the export is recorded, as a look-up of the patient
    assert audit_actions(db_url, home)[-1] == "patient.export"
    r = cli(f"patient log {CPR} -o json")
    assert json.loads(r.stdout)[0]["action"] == "patient.export"
    assert json.loads(r.stdout)[0]["details"]["format"] == "json"


def test_export_with_show_cpr_reveals_and_audits(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    setup_patient(cli)
    r = cli(f"--show-cpr patient export {CPR} -o json")
    assert json.loads(r.stdout)["person"]["cpr"] == "010203-1234"
    assert audit_actions(db_url, home)[-2:] == ["patient.export", "cpr.reveal"]


def test_export_table_is_a_summary(cli: Cli, staff: StaffHelper) -> None:
    setup_patient(cli)
    r = cli(f"patient export {CPR}")
    found = lines(r.stdout)
    assert found[0] == "Data held about the patient (GDPR art. 15)"
    assert "cpr                    010203-****" in found
    assert "name                   Karen Holm" in found
    assert "password set           no" in found
    assert "flags                  no MitID, e-mail owner confirmed" in found
    assert "mail                   2" in found
    assert r.stderr == "The whole document: `patientportal patient export CPR -o json`.\n"


def test_export_shows_only_this_clinic(cli: Cli, staff: StaffHelper) -> None:
    setup_patient(cli)
    second_clinic(cli, staff)
    cli(f"patient link {CPR} --clinic SYD")
    cli(f"patient show {CPR} --clinic SYD")
    doc = json.loads(cli(f"patient export {CPR} -o json --clinic SYD").stdout)
    assert doc["clinic"]["code"] == "SYD"
    assert doc["link"]["no_mitid"] is False
    assert [m["clinic"] for m in doc["mail"]] == ["SYD"] * len(doc["mail"])
    assert all(e["action"] != "no_mitid.set" for e in doc["access_log"])


def test_export_of_someone_not_a_patient_here(cli: Cli, staff: StaffHelper) -> None:
    r = cli(f"patient export {CPR}", expect=1)
    assert r.stderr.startswith("Error: ")
    assert "010203-****" in r.stderr
    r = cli("patient export 12345", expect=2)
    assert r.stderr.startswith("Error: ")


def test_export_holds_the_patients_requests_here(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    set_mode(cli, "approval")
    register(cli, CPR, name="Karen Holm", email="karen@example.dk")
    add_doctor(staff)
    cli("requests approve 1")
    doc = json.loads(cli(f"patient export {CPR} -o json").stdout)
    [request] = doc["registration_requests"]
    assert request["status"] == "approved"
    assert request["decided_by"] == "bo"
    assert request["name"] == "Karen Holm"
    assert request["password_set"] is False  # moved to the account on approval
    assert doc["person"]["password_set"] is True
    assert "argon2" not in json.dumps(doc)
