"""`patientportal clinic` on both backends: list and show, create, codes given with
--clinic, staff of several clinics picking one, registration modes, services.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from patientportal_cli.db.models import AuditEvent
from tests.helpers.cli import Cli, lines
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.db import audit_actions, db_session


def test_clinic_list_and_show_with_danish_labels(cli: Cli, staff: StaffHelper) -> None:
    cli("clinic create syd --name 'Syd [bold]klinik[/] :smile:' --registration approval")
    r = cli("clinic list")
    assert lines(r.stdout) == [
        "Code   Name                          Mode       Registration                                  Services",
        "-",
        "NORD   Nordklinikken                 none       Ingen online selv-oprettelse                  e-consultation, booking, prescription-renewal",
        "SYD    Syd [bold]klinik[/] :smile:   approval   Online selv-oprettelse med læge-godkendelse   e-consultation, booking, prescription-renewal",
    ]
    assert cli("clinic list -o csv").stdout.splitlines()[0] == (
        "code,name,registration_mode,registration_label,services"
    )
    r = cli("clinic show --clinic SYD")
    shown = lines(r.stdout)
    assert shown[0] == "Clinic SYD"
    assert shown[1:6] == [
        "code                SYD",
        "name                Syd [bold]klinik[/] :smile:",
        "registration mode   approval",
        "registration label  Online selv-oprettelse med læge-godkendelse",
        "services            e-consultation, booking, prescription-renewal",
    ]
    assert shown[6].startswith("created at          20") and shown[6].endswith(" UTC")
    assert shown[7] == "pending requests    0"
    data = json.loads(cli("clinic show -o json --clinic NORD").stdout)
    assert data["registration_label"] == "Ingen online selv-oprettelse"
    assert data["services"] == ["e-consultation", "booking", "prescription-renewal"]
    assert data["created_at"].endswith("Z")


def test_clinic_create(cli: Cli, staff: StaffHelper, db_url: str, home: Path) -> None:
    r = cli("clinic create syd --name Sydklinikken")
    assert r.stderr == "Created clinic SYD (Sydklinikken); you are its admin.\n"
    r = cli("clinic create SYD --name Again", expect=1)
    assert r.stderr == "Error: A clinic with code SYD already exists.\n"
    r = cli("clinic create 'S Y D' --name X", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")
    r = cli("clinic create ÆBLE --name X", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")
    r = cli("clinic create OEST --name X --registration sometimes", expect=2)
    assert "'sometimes' is not one of 'none', 'approval', 'open'" in r.stderr
    assert audit_actions(db_url, home)[-1] == "clinic.create"
    assert json.loads(cli("whoami -o json --clinic SYD").stdout)["role"] == "admin"


def test_clinic_codes_given_with_clinic(cli: Cli, staff: StaffHelper) -> None:
    r = cli("clinic show --clinic 'bad code!'", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")
    r = cli("--clinic x clinic show", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")
    r = cli("clinic show --clinic NOPE", expect=1)
    assert r.stderr == "Error: No clinic with code 'NOPE'.\n"
    cli("clinic create SYD --name Syd")
    staff.add("bo", "doctor", clinic="NORD")
    staff.login("bo")
    r = cli("clinic show --clinic SYD", expect=4)
    assert r.stderr == "Error: bo does not work at clinic SYD.\n"
    r = cli("staff list --clinic syd", expect=4)
    assert r.stderr == "Error: bo does not work at clinic SYD.\n"


def test_staff_of_several_clinics_must_pick_one(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("clinic create SYD --name Syd")
    # the clinic logged in at stays the session's clinic (tests/test_default_clinic.py)
    assert json.loads(cli("clinic show -o json").stdout)["code"] == "NORD"
    staff.login("anna")  # a new login at two clinics, no default clinic: none is picked
    for command in ("clinic show", "staff list", "audit list", "clinic set-registration open"):
        r = cli(command, expect=2)
        assert r.stderr == "Error: You work at several clinics (NORD, SYD): pass --clinic CODE.\n"
    assert json.loads(cli("--clinic syd clinic show -o json").stdout)["code"] == "SYD"
    monkeypatch.setenv("PATIENTPORTAL_CLINIC", "SYD")
    assert json.loads(cli("clinic show -o json").stdout)["code"] == "SYD"
    monkeypatch.delenv("PATIENTPORTAL_CLINIC")
    cli("config set clinic nord")  # the default clinic from config.toml
    assert json.loads(cli("clinic show -o json").stdout)["code"] == "NORD"
    assert json.loads(cli("clinic show -o json --clinic SYD").stdout)["code"] == "SYD"
    staff.login("anna", clinic="SYD")  # the clinic chosen at login comes first
    assert json.loads(cli("clinic show -o json").stdout)["code"] == "SYD"
    cli("config set clinic OEST")  # a default where one does not work is passed over
    staff.login("anna")
    r = cli("clinic show", expect=2)
    assert r.stderr == "Error: You work at several clinics (NORD, SYD): pass --clinic CODE.\n"


def test_set_registration(cli: Cli, staff: StaffHelper, db_url: str, home: Path) -> None:
    r = cli("clinic set-registration approval")
    assert r.stderr == (
        "Clinic NORD: registration mode none -> approval "
        "(Online selv-oprettelse med læge-godkendelse).\n"
    )
    r = cli("clinic set-registration approval")
    assert r.stderr == (
        "Clinic NORD already has registration mode approval "
        "(Online selv-oprettelse med læge-godkendelse).\n"
    )
    r = cli("clinic set-registration open")
    assert r.stderr == (
        "Clinic NORD: registration mode approval -> open "
        "(Online selv-oprettelse uden læge-godkendelse).\n"
    )
    r = cli("clinic set-registration sometimes", expect=2)
    assert "'sometimes' is not one of 'none', 'approval', 'open'" in r.stderr
    r = cli("clinic set-registration none --pending maybe", expect=2)
    assert "'maybe' is not one of 'keep', 'reject', 'approve'" in r.stderr
    with db_session(db_url, home) as s:
        changes = [
            json.loads(e.details)
            for e in s.exec(
                select(AuditEvent).where(AuditEvent.action == "clinic.set_registration")
            )
        ]
    assert changes == [
        {"from": "none", "to": "approval", "pending": None, "handled": 0},
        {"from": "approval", "to": "open", "pending": None, "handled": 0},
    ]


def test_clinic_services(cli: Cli, staff: StaffHelper, db_url: str, home: Path) -> None:
    assert lines(cli("clinic services").stdout) == [
        "Service                Label             Enabled",
        "-",
        "e-consultation         E-konsultation    yes",
        "booking                Tidsbestilling    yes",
        "prescription-renewal   Receptfornyelse   yes",
    ]
    r = cli("clinic services --disable booking --disable e-consultation -o csv")
    assert r.stdout == (
        "service,label,enabled\n"
        "e-consultation,E-konsultation,no\n"
        "booking,Tidsbestilling,no\n"
        "prescription-renewal,Receptfornyelse,yes\n"
    )
    r = cli("clinic services --enable booking -o json")
    assert [s["service"] for s in json.loads(r.stdout) if s["enabled"]] == [
        "booking",
        "prescription-renewal",
    ]
    r = cli("clinic services --enable booking --disable booking", expect=2)
    assert r.stderr == "Error: Service 'booking' cannot be both enabled and disabled.\n"
    r = cli("clinic services --enable massage", expect=2)
    assert "'massage' is not one of" in r.stderr
    cli("clinic services --enable booking")  # no change: no audit event
    assert audit_actions(db_url, home).count("clinic.services") == 2
