"""`patient erase CPR` (GDPR art. 17, D44): refused while a clinic links the person (by
count), only by an admin of a clinic that once linked them; removes every row with the
person's data and redacts the audit events about them, so `audit verify` (incremental,
--full, against a checkpoint) still passes. Both backends, through the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import Cli
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.db import rows, scalar
from tests.helpers.people import (
    CPR,
    NUMBER,
    register,
    second_clinic,
    set_mode,
    staff_creates_patient,
)

KEY = "test-audit-key-0123456789"
OTHER = "020304-1236"


@pytest.fixture(autouse=True)
def audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATIENTPORTAL_AUDIT_KEY", KEY)


def person_rows(db_url: str, home: Path) -> dict[str, int]:
    """How many rows of each table still carry the person."""
    uid = "(SELECT id FROM portal_user WHERE cpr = :n)"
    return {
        "portal_user": scalar(db_url, home, "SELECT count(*) FROM portal_user WHERE cpr = :n", n=NUMBER),
        "link_history": scalar(db_url, home, "SELECT count(*) FROM link_history WHERE cpr = :n", n=NUMBER),
        "registration_request": scalar(
            db_url, home, "SELECT count(*) FROM registration_request WHERE cpr = :n", n=NUMBER
        ),
        "one_time_code": scalar(
            db_url, home, f"SELECT count(*) FROM one_time_code WHERE user_id = {uid}", n=NUMBER
        ),
        "outbox": scalar(db_url, home, "SELECT count(*) FROM outbox WHERE recipient = :e", e="karen@example.dk"),
        "audit": scalar(
            db_url,
            home,
            "SELECT count(*) FROM audit_event WHERE target LIKE :p OR details LIKE :p",
            p=f"%{NUMBER}%",
        ),
        "audit_email": scalar(
            db_url, home, "SELECT count(*) FROM audit_event WHERE details LIKE :p", p="%karen@%"
        ),
    }  # fmt: skip


def history(cli: Cli, staff: StaffHelper) -> None:
    """Karen at NORD and SYD, with a flag, mail, look-ups, a failed activation; an
    unrelated patient at NORD."""
    staff_creates_patient(cli, cpr=CPR, name="Karen Holm", email="karen@example.dk")
    staff_creates_patient(cli, cpr=OTHER, name="Ole Olsen", email="ole@example.dk")
    cli(f"no-mitid set {CPR} --confirm-email-owner")
    cli(f"patient show {CPR}")
    cli("patient list")
    cli(["portal", "activate", CPR, "--clinic", "NORD", "--code", "AAAA-BBBB-CCCC-DDDD", "--password-stdin"],
        input="Patient-pass1\n", expect=1)  # fmt: skip
    second_clinic(cli, staff)
    cli(f"patient link {CPR} --clinic SYD")


def test_erase_is_refused_while_linked(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    history(cli, staff)
    before = person_rows(db_url, home)
    r = cli(f"patient erase {CPR} --yes", expect=1)
    assert r.stderr == (
        "Error: 010203-**** is still linked at 2 clinics: a person is erased only once no "
        "clinic links them (each clinic unlinks first).\n"
    )
    cli(f"patient unlink {CPR} --yes")
    r = cli(f"patient erase {CPR} --yes", expect=1)
    assert r.stderr.startswith("Error: 010203-**** is still linked at 1 clinic: ")
    after = person_rows(db_url, home)
    assert after == {**before, "audit": before["audit"] + 1}  # + the unlink


def test_erase_removes_the_person_and_verify_still_passes(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    history(cli, staff)
    cli(f"patient unlink {CPR} --yes --clinic SYD")
    cli(f"patient unlink {CPR} --yes")
    cli("audit checkpoint --all")
    before = person_rows(db_url, home)
    assert before["portal_user"] == 1 and before["audit"] > 5 and before["audit_email"] >= 1
    r = cli(f"patient erase {CPR} --dry-run")
    assert r.stderr.startswith("Would erase 010203-****: would remove ")
    assert r.stderr.endswith("audit events. Nothing was changed.\n")
    assert person_rows(db_url, home) == before
    r = cli(f"patient erase {CPR} --yes")
    assert r.stderr.startswith("Erased 010203-****: removed ")
    assert "portal_user 1" in r.stderr and "link_history 2" in r.stderr
    assert "login_throttle 1" in r.stderr and "one_time_code " in r.stderr
    after = person_rows(db_url, home)
    assert after == {k: 0 for k in after}
    # the other patient is untouched
    assert scalar(db_url, home, "SELECT count(*) FROM portal_user WHERE cpr = '0203041236'") == 1
    # one event says that an erasure happened, without personal data
    event = rows(
        db_url,
        home,
        "SELECT actor, clinic, target, details FROM audit_event WHERE action = 'patient.erase'",
    )
    assert len(event) == 1
    actor, clinic, target, details = event[0]
    assert (actor, clinic, target) == ("anna", "NORD", "")
    assert NUMBER not in details and "karen" not in details.lower()
    redacted = scalar(db_url, home, "SELECT count(*) FROM audit_event WHERE target = '[erased]'")
    assert redacted == before["audit"]
    for args in ("audit verify --all", "audit verify --all --full"):
        assert "The audit log is intact" in cli(args).stderr
    (home / "audit-verified.json").unlink()
    assert "The audit log is intact" in cli("audit verify --all").stderr
    cli("audit checkpoint --all")
    # gone: a second erase finds nobody
    r = cli(f"patient erase {CPR} --yes", expect=1)
    assert r.stderr == (
        "Error: 010203-**** was never a patient at clinic NORD: only a clinic that linked "
        "the person can erase them.\n"
    )


def test_who_may_erase(cli: Cli, staff: StaffHelper, db_url: str, home: Path) -> None:
    staff_creates_patient(cli, cpr=CPR, name="Karen Holm", email="karen@example.dk")
    cli(f"patient unlink {CPR} --yes")
    staff.add("sofie", "secretary")
    staff.login("sofie")
    r = cli(f"patient erase {CPR} --yes", expect=4)
    assert "admin" in r.stderr
    staff.login("anna")
    second_clinic(cli, staff)
    # SYD never linked Karen: the same answer as for a person who does not exist
    r = cli(f"patient erase {CPR} --yes --clinic SYD", expect=1)
    assert r.stderr == (
        "Error: 010203-**** was never a patient at clinic SYD: only a clinic that linked "
        "the person can erase them.\n"
    )
    r = cli("patient erase 111111-1118 --yes --clinic SYD", expect=1)
    assert r.stderr.startswith("Error: 111111-**** was never a patient at clinic SYD")
    assert person_rows(db_url, home)["portal_user"] == 1


def test_a_pending_request_is_decided_first(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    staff_creates_patient(cli, cpr=CPR, name="Karen Holm", email="karen@example.dk")
    cli(f"patient unlink {CPR} --yes")
    set_mode(cli, "approval")
    register(cli, CPR, name="Karen Holm", email="karen@example.dk", mitid=True)
    r = cli(f"patient erase {CPR} --yes", expect=1)
    assert r.stderr == (
        "Error: 010203-**** has 1 pending registration request: it must be decided before "
        "the person is erased.\n"
    )


CHILD = "100516-4123"  # born 10 May 2016
CHILD_NUMBER = "1005164123"
NEW = "150790-4321"
NEW_NUMBER = "1507904321"


def test_erase_takes_delegations_and_every_number_the_person_had(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    """A guardian whose number changed: the delegation, the change and the events under
    both numbers go; the child stays, with no trace of the erased guardian's data."""
    staff_creates_patient(cli, cpr=CPR, name="Karen Holm", email="karen@example.dk")
    staff_creates_patient(cli, cpr=CHILD, name="Emil Holm", email="emil@example.dk")
    cli(f"patient guardian add {CHILD} --guardian {CPR} --basis forældremyndighed")
    cli(f"patient change-cpr {CPR} {NEW} --yes")
    doc = json.loads(cli(f"patient export {CHILD} -o json").stdout)
    assert [(d["kind"], d["holder_cpr"]) for d in doc["delegations"]] == [
        ("guardian", "150790-****")
    ]
    cli(f"patient unlink {NEW} --yes")
    assert scalar(db_url, home, "SELECT count(*) FROM delegation") == 1
    r = cli(f"patient erase {CPR} --yes")  # the old number finds the person too
    assert r.stderr.startswith("Erased 010203-****: removed ")
    assert "delegation 1" in r.stderr and "cpr_change 1" in r.stderr
    for table in ("delegation", "cpr_change"):
        assert scalar(db_url, home, f"SELECT count(*) FROM {table}") == 0
    for number in (NUMBER, NEW_NUMBER):
        assert (
            scalar(
                db_url,
                home,
                "SELECT count(*) FROM audit_event WHERE target LIKE :p OR details LIKE :p",
                p=f"%{number}%",
            )
            == 0
        )
    assert scalar(db_url, home, "SELECT count(*) FROM portal_user") == 1  # Emil
    assert "The audit log is intact" in cli("audit verify --all --full").stderr
    doc = json.loads(cli(f"patient export {CHILD} -o json").stdout)
    assert doc["delegations"] == []
