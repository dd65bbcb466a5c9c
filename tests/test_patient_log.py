"""Every look-up of a patient is audited, and `patient log CPR` shows who at this clinic
looked at or changed the patient, and when. Both backends, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.cli import Cli, Staff
from tests.helpers.db import db_session, events
from tests.helpers.people import second_clinic

CPR = "010203-1234"
NUMBER = "0102031234"
OTHER = "050690-4321"


def _log(cli: Cli, *extra: str) -> list[dict[str, Any]]:
    rows = json.loads(cli(["patient", "log", CPR, "-o", "json", *extra]).stdout)
    assert isinstance(rows, list)
    return rows


def test_lookups_write_one_event_each_and_a_listing_one_in_all(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli(f"patient create {CPR} --name 'Ida Hansen' --email ida@example.dk --no-invite")
    cli(f"patient create {OTHER} --name 'Ole Berg' --email ole@example.dk --no-invite")
    cli(f"patient show {CPR}")
    cli(f"patient access {CPR} -o json")
    cli("patient list -o csv")
    cli("patient list --search ida")
    cli("no-mitid list")
    with db_session(db_url, home) as s:
        looked = [
            (action, target, details)
            for action, _clinic, target, _actor, details in events(s)
            if action in ("patient.show", "patient.access", "patient.list", "no_mitid.list")
        ]
    assert looked == [
        ("patient.show", f"cpr:{NUMBER}", {"format": "table"}),
        ("patient.access", f"cpr:{NUMBER}", {"linked": True}),
        (
            "patient.list",
            "clinic:NORD",
            {
                "count": 2,
                "format": "csv",
                "search": None,
                "no_mitid": False,
                "cprs": [NUMBER, "0506904321"],
            },
        ),
        (
            "patient.list",
            "clinic:NORD",
            {"count": 1, "format": "table", "search": "ida", "no_mitid": False, "cprs": [NUMBER]},
        ),
        ("no_mitid.list", "clinic:NORD", {"count": 0, "format": "table", "cprs": []}),
    ]


def test_a_long_listing_names_no_patients(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    from patientportal_cli.services.accesslog import NAMED_AT_MOST
    from tests.helpers.csv_files import patients_csv

    path = patients_csv(tmp_path / "many.csv", NAMED_AT_MOST + 1)
    cli(["patient", "import", str(path), "--yes", "--no-invite"])
    shown = json.loads(cli("patient list -o json").stdout)
    assert len(shown) == NAMED_AT_MOST + 1
    with db_session(db_url, home) as s:
        [(_, _, target, _, details)] = events(s, "patient.list")
    assert target == "clinic:NORD"
    assert details == {
        "count": NAMED_AT_MOST + 1,
        "format": "json",
        "search": None,
        "no_mitid": False,
    }


def test_patient_log_shows_this_clinics_lookups_and_changes_newest_first(
    cli: Cli, staff: Staff
) -> None:
    cli(f"patient create {CPR} --name 'Ida Hansen' --email ida@example.dk --no-invite")
    cli(f"patient create {OTHER} --name 'Ole Berg' --email ole@example.dk --no-invite")
    staff.add("bo", "doctor")
    staff.login("bo")
    cli(f"patient show {CPR} -o json")
    cli(f"--show-cpr patient show {CPR}")
    cli(f"patient show {OTHER}")  # another patient: not in Ida's log
    cli("patient list --search ole")  # a listing without Ida
    cli("patient list")  # a short listing with Ida
    cli("no-mitid set 010203-1234 --confirm-email-owner")
    log = _log(cli)
    assert [(e["actor"], e["action"]) for e in log] == [
        ("bo", "no_mitid.set"),
        ("bo", "patient.list"),
        ("bo", "cpr.reveal"),
        ("bo", "patient.show"),
        ("bo", "patient.show"),
        ("anna", "patient.create"),
    ]
    listing = log[1]["details"]
    assert listing == {"count": 2, "format": "table", "search": None, "no_mitid": False}
    assert log[2]["details"]["count"] == 1  # the reveal: how many numbers it showed
    assert set(log[0]) == {"at", "actor", "action", "details"}
    # reading the log is a look-up too: it is in the log the next time
    again = _log(cli)
    assert (again[0]["actor"], again[0]["action"]) == ("bo", "patient.log")
    assert again[0]["details"] == {"count": 6, "format": "json"}
    assert again[1:] == log

    r = cli(f"patient log {CPR} -o csv")
    assert r.stdout.splitlines()[0] == "at,actor,action,details"
    assert r.stdout.splitlines()[1].split(",")[1:3] == ["bo", "patient.log"]
    r = cli(f"patient log {CPR}")
    assert "Log of 010203-**** at NORD" in r.stdout
    assert "patient.create" in r.stdout


def test_patient_log_is_only_for_this_clinics_patient_and_only_this_clinics_events(
    cli: Cli, staff: Staff
) -> None:
    cli(f"patient create {CPR} --name 'Ida Hansen' --email ida@example.dk --no-invite")
    cli(f"patient show {CPR}")
    second_clinic(cli, staff)
    staff.login("sara")
    r = cli(f"patient log {CPR}", expect=1)
    assert r.stdout == ""
    assert r.stderr == (
        "Error: 010203-**** is not a patient at clinic SYD. A portal user with this CPR number "
        "exists; link it to the clinic with `patientportal patient link CPR`.\n"
    )
    r = cli("patient log 090807-1234", expect=1)
    assert "no portal user has this CPR number" in r.stderr
    r = cli("patient log 12345", expect=2)
    assert r.stdout == ""
    cli(f"patient link {CPR}")
    # SYD sees what happened at SYD, nothing of NORD's
    assert [(e["actor"], e["action"]) for e in _log(cli)] == [("sara", "patient.link")]
    staff.login("anna")
    assert [(e["actor"], e["action"]) for e in _log(cli, "--clinic", "NORD")] == [
        ("anna", "patient.show"),
        ("anna", "patient.create"),
    ]
