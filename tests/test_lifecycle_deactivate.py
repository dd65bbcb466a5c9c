"""`patient deactivate` and `patient reactivate` (services/lifecycle.py, issue 15): one
patient and many (--from), the "not active" that every clinic sees, the delegations and
codes a deactivation ends; through the `patientportal` command on both backends."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

import pytest

from tests.helpers.cli import Cli, Staff
from tests.helpers.db import audit_events, db_session, link_of, user_row
from tests.helpers.mail import Inbox
from tests.helpers.people import second_clinic
from tests.helpers.portal import attempt_of

CPR = "010203-1234"
NUMBER = "0102031234"
OTHER = "020304-2345"  # another patient at NORD
STRANGER = "030405-3456"  # a portal user at SYD only
CHILD = "100516-4123"
PARENT = "150380-4321"
PW = "Patient-pass1"
ACTIVATION_FAILED = (
    "Error: Activation failed: wrong CPR number, clinic or activation code (a code works "
    "once, for 7 days; the clinic can send a new one).\n"
)


def create(cli: Cli, cpr: str, name: str, email: str, *extra: str) -> None:
    cli(["patient", "create", cpr, "--name", name, "--email", email, *extra])


@pytest.fixture
def ida(staff: Staff, db_url: str, home: Path) -> str:
    """Ida Holm, created at NORD: her activation code (mailed at once)."""
    create(staff.cli, CPR, "Ida Holm", "ida@example.dk")
    return Inbox(home).activation_code("ida@example.dk")


def test_deceased_blocks_the_account_and_ends_its_codes(
    cli: Cli, ida: str, db_url: str, home: Path
) -> None:
    r = cli(f"patient deactivate {CPR} --reason deceased")
    assert r.stdout == ""
    assert r.stderr == (
        "Deactivated 010203-**** (Ida Holm) (deceased): every portal login is refused at "
        "every clinic, and pending codes are ended.\n"
    )
    with db_session(db_url, home) as s:
        user = user_row(s, NUMBER)
        assert user.deactivated_at is not None
        assert (user.deactivated_reason, user.deactivated_by) == ("deceased", "anna")
        deactivations = audit_events(s, "patient.deactivate")
    assert [(e.actor, e.clinic, e.target) for e in deactivations] == [
        ("anna", "NORD", f"cpr:{NUMBER}")
    ]
    assert json.loads(deactivations[0].details) == {"reason": "deceased", "delegations_ended": 0}
    # the activation code mailed before no longer works
    r = cli(
        f"portal activate {CPR} --clinic NORD --code {ida} --password-stdin",
        input=PW + "\n",
        expect=1,
    )
    assert r.stderr == ACTIVATION_FAILED
    shown = json.loads(cli(f"patient show {CPR} -o json").stdout)
    assert shown["status"] == "not active"
    listed = json.loads(cli("patient list -o json").stdout)
    assert [(p["name"], p["status"]) for p in listed] == [("Ida Holm", "not active")]


def test_dry_run_changes_nothing(cli: Cli, ida: str, db_url: str, home: Path) -> None:
    r = cli(f"patient deactivate {CPR} --reason emigrated --dry-run")
    assert r.stderr == (
        "Dry run: would deactivate 010203-**** (Ida Holm) (emigrated): every portal login "
        "would be refused at every clinic, and pending codes would end.\n"
        "Nothing was changed.\n"
    )
    with db_session(db_url, home) as s:
        assert user_row(s, NUMBER).deactivated_at is None
        assert audit_events(s, "patient.deactivate") == []
        dry = audit_events(s, "patient.dry_run")
    assert json.loads(dry[-1].details) == {"command": "deactivate", "reason": "emigrated"}
    r = cli(f"portal activate {CPR} --clinic NORD --code {ida} --password-stdin", input=PW + "\n")
    assert r.exit_code == 0


def test_again_changes_nothing_and_reactivate_undoes_it(
    cli: Cli, ida: str, db_url: str, home: Path
) -> None:
    cli(f"patient deactivate {CPR} --reason other")
    r = cli(f"patient deactivate {CPR} --reason deceased")
    assert r.stderr == "010203-**** (Ida Holm) is already deactivated; nothing changed.\n"
    r = cli(f"patient reactivate {CPR}")
    assert r.stderr == (
        "Reactivated 010203-**** (Ida Holm): portal logins work again as before the "
        "deactivation. Guardianships and proxies it ended stay ended.\n"
    )
    with db_session(db_url, home) as s:
        user = user_row(s, NUMBER)
        assert (user.deactivated_at, user.deactivated_reason, user.deactivated_by) == (
            None,
            None,
            None,
        )
        back = audit_events(s, "patient.reactivate")
    details = json.loads(back[0].details)
    assert (details["was_reason"], details["was_deactivated_by"]) == ("other", "anna")
    assert json.loads(cli(f"patient show {CPR} -o json").stdout)["status"] == "active"
    r = cli(f"patient reactivate {CPR}")
    assert r.stderr == "010203-**** (Ida Holm) is not deactivated; nothing changed.\n"


def test_left_clinic_ends_only_this_clinics_link(
    cli: Cli, staff: Staff, ida: str, db_url: str, home: Path
) -> None:
    second_clinic(cli, staff)
    cli(f"patient link {CPR} --clinic SYD")
    r = cli(f"patient deactivate {CPR} --reason left-clinic --clinic NORD")
    assert r.stderr == (
        "Ended the link of 010203-**** (Ida Holm) to clinic NORD (left-clinic); the portal "
        "user stays.\n"
    )
    r = cli(f"patient show {CPR} --clinic NORD", expect=1)
    assert r.stderr.startswith("Error: 010203-**** is not a patient at clinic NORD.")
    shown = json.loads(cli(f"patient show {CPR} --clinic SYD -o json").stdout)
    assert shown["status"] == "active"
    with db_session(db_url, home) as s:
        assert user_row(s, NUMBER).deactivated_at is None
        details = json.loads(audit_events(s, "patient.deactivate")[0].details)
    assert details == {
        "reason": "left-clinic",
        "unlinked": True,
        "no_mitid": False,
        "services": ["e-consultation", "booking", "prescription-renewal"],
    }


def test_other_clinics_see_not_active_never_why(
    cli: Cli, staff: Staff, ida: str, db_url: str, home: Path
) -> None:
    second_clinic(cli, staff)
    cli(f"patient link {CPR} --clinic SYD")
    cli(f"patient deactivate {CPR} --reason deceased --clinic NORD")
    staff.login("sara", clinic="SYD")
    seen = [
        cli(f"patient show {CPR}").stdout,
        cli(f"patient show {CPR} -o json").stdout,
        cli(f"patient access {CPR} -o json").stdout,
        cli("patient list -o csv").stdout,
        cli("patient list").stdout,
        cli(f"patient log {CPR} -o json").stdout,
    ]
    assert json.loads(seen[1])["status"] == "not active"
    assert "010203-****,Ida Holm,ida@example.dk,no,not active,no," in seen[3]
    for text in seen:
        assert "deceased" not in text
    assert "not active" in seen[0] and "not active" in seen[4]


def test_deactivation_ends_delegations_held_by_or_for_the_person(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    create(cli, CHILD, "Emil Jensen", "emil@example.dk", "--no-invite")
    create(cli, PARENT, "Mette Jensen", "mette@example.dk", "--no-invite")
    cli(f"patient guardian add {CHILD} --guardian {PARENT} --basis forældremyndighed")
    r = cli(f"patient deactivate {PARENT} --reason emigrated --dry-run")
    assert "1 guardianship(s) or proxies held by or for the patient would end.\n" in r.stderr
    r = cli(f"patient deactivate {PARENT} --reason emigrated")
    assert r.stderr.endswith("1 guardianship(s) or proxies held by or for the patient ended.\n")
    assert json.loads(cli("patient guardian list -o json").stdout) == []
    with db_session(db_url, home) as s:
        removed = audit_events(s, "guardian.remove")
        assert (
            json.loads(audit_events(s, "patient.deactivate")[0].details)["delegations_ended"] == 1
        )
    assert json.loads(removed[0].details)["why"] == "not active"
    assert "emigrated" not in removed[0].details


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            f"patient deactivate {CPR} --reason bogus",
            "Error: Invalid --reason 'bogus': use deceased, emigrated, left-clinic, other.\n",
        ),
        (
            f"patient deactivate {CPR}",
            "Error: Missing --reason: give deceased, emigrated, left-clinic or other.\n",
        ),
        (
            f"patient deactivate {CPR} --from - --reason deceased",
            "Error: Give either a CPR number or --from FILE|- (not both).\n",
        ),
        (
            "patient deactivate --reason deceased",
            "Error: Give either a CPR number or --from FILE|- (not both).\n",
        ),
        (
            f"patient deactivate {CPR} --reason deceased --max-rows 3",
            "Error: --max-rows and --report go with --from FILE|-.\n",
        ),
        (
            "patient deactivate 010203-12345 --reason deceased",
            "Error: Invalid CPR number: expected 10 digits as DDMMYY-SSSS, DDMMYY SSSS or "
            "DDMMYYSSSS.\n",
        ),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(
    cli: Cli, ida: str, db_url: str, home: Path, args: str, message: str
) -> None:
    r = cli(args, expect=2)
    assert (r.stdout, r.stderr) == ("", message)
    with db_session(db_url, home) as s:
        assert user_row(s, NUMBER).deactivated_at is None


def test_not_a_patient_here_is_refused(
    cli: Cli, staff: Staff, ida: str, db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second_clinic(cli, staff)
    monkeypatch.setenv("PATIENTPORTAL_CLINIC", "NORD")
    create(cli, STRANGER, "Sven Lund", "sven@example.dk", "--clinic", "SYD", "--no-invite")
    for command in ("deactivate", "reactivate"):
        extra = " --reason deceased" if command == "deactivate" else ""
        r = cli(f"patient {command} {STRANGER}{extra}", expect=1)
        assert r.stderr == (
            "Error: 030405-**** is not a patient at clinic NORD. A portal user with this CPR "
            "number exists; link it to the clinic with `patientportal patient link CPR`.\n"
        )
    with db_session(db_url, home) as s:
        assert user_row(s, "0304053456").deactivated_at is None


# --- many at once ----------------------------------------------------------------------


@pytest.fixture
def clinic_with_patients(staff: Staff, ida: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Ida and Ole at NORD (Ole already deactivated), Sven only at SYD; anna at NORD."""
    cli = staff.cli
    monkeypatch.setenv("PATIENTPORTAL_CLINIC", "NORD")
    create(cli, OTHER, "Ole Berg", "ole@example.dk", "--no-invite")
    cli(f"patient deactivate {OTHER} --reason other")
    second_clinic(cli, staff)
    create(cli, STRANGER, "Sven Lund", "sven@example.dk", "--clinic", "SYD", "--no-invite")
    return cli


BULK_INPUT = f"{CPR}\n\n{OTHER}\n{STRANGER}\nabc\n"


def test_bulk_reports_each_row_and_exits_3(
    clinic_with_patients: Cli, db_url: str, home: Path, tmp_path: Path
) -> None:
    cli = clinic_with_patients
    report = tmp_path / "report.csv"
    r = cli(
        f"patient deactivate --from - --reason deceased -o csv --report {report}",
        input=BULK_INPUT,
        expect=3,
    )
    assert r.stdout == (
        "line,cpr,result,detail\n"
        "1,010203-****,done,deactivated (deceased)\n"
        "3,020304-****,already inactive,already deactivated; nothing changed\n"
        "4,030405-****,not a patient here,030405-**** is not a patient at clinic NORD.\n"
        "5,,invalid,Invalid CPR number: the portal accepts only CPR numbers made of digits "
        "(DDMMYY-SSSS); eCPR/replacement numbers with letters are not accepted.\n"
    )
    assert r.stderr == (
        f"Every row's result written to {report}.\n"
        "Deactivated 1; already inactive 1; not a patient here 1; invalid 1.\n"
        f"Error: 2 row(s) rejected (all are in {report}); the other rows were handled.\n"
    )
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o600
    rows = list(csv.reader(io.StringIO(report.read_text(encoding="utf-8-sig"))))
    assert rows[0] == ["line", "row", "result", "detail"]
    assert [row[:3] for row in rows[1:]] == [
        ["1", CPR, "done"],
        ["3", OTHER, "already inactive"],
        ["4", STRANGER, "not a patient here"],
        ["5", "abc", "invalid"],
    ]
    with db_session(db_url, home) as s:
        assert user_row(s, NUMBER).deactivated_reason == "deceased"
        assert user_row(s, "0203042345").deactivated_reason == "other"  # the first reason
        assert user_row(s, "0304053456").deactivated_at is None
    # running it again: nothing left to do
    r = cli("patient deactivate --from - --reason deceased -o json", input=BULK_INPUT, expect=3)
    assert [row["result"] for row in json.loads(r.stdout)] == [
        "already inactive",
        "already inactive",
        "not a patient here",
        "invalid",
    ]


def test_bulk_dry_run_and_max_rows(clinic_with_patients: Cli, db_url: str, home: Path) -> None:
    cli = clinic_with_patients
    r = cli(
        "patient deactivate --from - --reason emigrated --dry-run --max-rows 2 -o csv",
        input=BULK_INPUT,
    )
    assert r.stdout == (
        "line,cpr,result,detail\n"
        "1,010203-****,would,would be deactivated (emigrated)\n"
        "3,020304-****,already inactive,already deactivated; nothing changed\n"
    )
    assert r.stderr == (
        "Dry run: would deactivate 1; already inactive 1; not a patient here 0; invalid 0.\n"
        "Nothing was changed.\n"
        "Stopped after 2 row(s) (--max-rows): 2 row(s) were left; nothing was done for them.\n"
    )
    with db_session(db_url, home) as s:
        assert user_row(s, NUMBER).deactivated_at is None


def test_bulk_reads_a_csv_with_a_cpr_column_from_a_file(
    clinic_with_patients: Cli, db_url: str, home: Path, tmp_path: Path
) -> None:
    source = tmp_path / "doede.csv"
    source.write_text(f"navn;CPR\nIda Holm;{CPR}\n", encoding="utf-8-sig")
    r = clinic_with_patients(f"patient deactivate --from {source} --reason deceased -o json")
    assert json.loads(r.stdout) == [
        {"line": 2, "cpr": "010203-****", "result": "done", "detail": "deactivated (deceased)"}
    ]
    assert r.stderr == "Deactivated 1; already inactive 0; not a patient here 0; invalid 0.\n"
    source.write_text("navn;email\nIda Holm;ida@example.dk\n", encoding="utf-8")
    r = clinic_with_patients(f"patient deactivate --from {source} --reason deceased", expect=2)
    assert r.stderr == (
        "Error: The input has several columns but none is named cpr: give one CPR number "
        "per line, or a CSV file with a cpr column.\n"
    )
    r = clinic_with_patients(
        f"patient deactivate --from {tmp_path / 'none.csv'} --reason deceased", expect=2
    )
    assert r.stderr == f"Error: Cannot read {tmp_path / 'none.csv'}: No such file or directory.\n"


# --- logins ----------------------------------------------------------------------------

NOT_ACTIVE = "Error: Din adgang til patientportalen er ikke aktiv. Kontakt klinikken.\n"
LOGIN = f"portal login {CPR} --clinic NORD --method two-factor --password-stdin"


@pytest.fixture
def active(staff: Staff, db_url: str, home: Path) -> Inbox:
    """Ida with the no-MitID flag at NORD, activated: both logins work."""
    create(staff.cli, CPR, "Ida Holm", "ida@example.dk", "--no-mitid", "--confirm-email-owner")
    inbox = Inbox(home)
    code = inbox.activation_code("ida@example.dk")
    staff.cli(
        f"portal activate {CPR} --clinic NORD --code {code} --password-stdin", input=PW + "\n"
    )
    return inbox


def test_a_deactivated_account_cannot_log_in(
    cli: Cli, active: Inbox, db_url: str, home: Path
) -> None:
    r = cli(LOGIN, input=PW + "\n")  # a code is sent; the login is not finished
    attempt = attempt_of(r.stderr)
    cli(f"patient deactivate {CPR} --reason emigrated")
    r = cli(f"portal login {CPR} --clinic NORD --method mitid", expect=1)
    assert (r.stdout, r.stderr) == ("", NOT_ACTIVE)
    r = cli(LOGIN, input=PW + "\n", expect=1)
    assert r.stderr == NOT_ACTIVE
    # a wrong password learns nothing about the account
    r = cli(LOGIN, input="Wrong-pass1\n", expect=1)
    assert r.stderr == "Error: Login failed: wrong CPR number or password.\n"
    # the security code sent before the deactivation ended with it
    code = active.security_code("ida@example.dk")
    r = cli(f"portal verify {CPR} --clinic NORD --attempt {attempt} --code {code}", expect=1)
    assert r.stderr == (
        "Error: The security code is not valid for this login: log in again to get a new code.\n"
    )
    access = json.loads(cli(f"patient access {CPR} -o json").stdout)
    assert access == {
        "mitid": {"allowed": False, "reason": "not active"},
        "two_factor": {"allowed": False, "reason": "not active"},
    }
    r = cli(f"patient invite {CPR}", expect=1)
    assert r.stderr == (
        "Error: 010203-**** is not active: no activation code is sent. If that is a mistake, "
        "run `patientportal patient reactivate CPR` first.\n"
    )
    r = cli(f"patient reset-password {CPR} --yes", expect=1)
    assert r.stderr == (
        "Error: 010203-**** is not active: no activation code is sent. If that is a mistake, "
        "run `patientportal patient reactivate CPR` first.\n"
    )
    with db_session(db_url, home) as s:
        refused = [json.loads(e.details) for e in audit_events(s, "portal.login_refused")]
    assert [d["reason"] for d in refused] == ["not_active", "not_active"]
    cli(f"patient reactivate {CPR}")
    r = cli(f"portal login {CPR} --clinic NORD --method mitid")
    assert r.stderr == "Logged in with MitID (simulated) at clinic NORD.\n"


def test_an_inactive_account_cannot_activate(cli: Cli, ida: str, db_url: str, home: Path) -> None:
    cli(f"patient deactivate {CPR} --reason other")
    cli(f"patient reactivate {CPR}")  # the code the deactivation ended stays ended
    r = cli(
        f"portal activate {CPR} --clinic NORD --code {ida} --password-stdin",
        input=PW + "\n",
        expect=1,
    )
    assert r.stderr == ACTIVATION_FAILED


def test_each_successful_login_sets_last_login_at(
    cli: Cli, active: Inbox, db_url: str, home: Path
) -> None:
    with db_session(db_url, home) as s:
        assert user_row(s, NUMBER).last_login_at is None
    cli(f"portal login {CPR} --clinic NORD --method mitid")
    with db_session(db_url, home) as s:
        after_mitid = user_row(s, NUMBER).last_login_at
    assert after_mitid is not None
    r = cli(LOGIN, input=PW + "\n")
    with db_session(db_url, home) as s:
        assert user_row(s, NUMBER).last_login_at == after_mitid  # not yet: only a code sent
    code = active.security_code("ida@example.dk")
    cli(f"portal verify {CPR} --clinic NORD --attempt {attempt_of(r.stderr)} --code {code}")
    with db_session(db_url, home) as s:
        last = user_row(s, NUMBER).last_login_at
    assert last is not None and last > after_mitid


def test_bulk_left_clinic_with_a_repeated_row(
    clinic_with_patients: Cli, db_url: str, home: Path
) -> None:
    r = clinic_with_patients(
        "patient deactivate --from - --reason left-clinic -o csv", input=f"{CPR}\n{NUMBER}\n"
    )
    assert r.stdout == (
        "line,cpr,result,detail\n"
        "1,010203-****,done,ended the link to clinic NORD\n"
        "2,010203-****,already inactive,repeated row\n"
    )
    assert r.stderr == "Deactivated 1; already inactive 1; not a patient here 0; invalid 0.\n"
    with db_session(db_url, home) as s:
        assert link_of(s, NUMBER, "NORD") is None
