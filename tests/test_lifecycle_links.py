"""A deactivated account gets no new link at any clinic (docs/rules.md D46): `patient
link`, `patient create` of its CPR number, `patient import` rows that would link it,
`portal register` (open mode, approval mode) and approving a request made before the
deactivation; through the `patientportal` command on both backends."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.helpers.cli import Cli, Staff
from tests.helpers.csv_files import write
from tests.helpers.db import audit_events, counts, db_session, scalar
from tests.helpers.people import add_doctor, register, second_clinic

CPR = "010203-1234"
NUMBER = "0102031234"
OTHER = "020304-2345"  # a patient who stays active
REFUSED = (
    "Error: The portal user with this CPR number is not active: it cannot be linked. If "
    "that is a mistake, a clinic where the patient is linked can reactivate it "
    "(`patientportal patient reactivate CPR`).\n"
)
REFUSED_REASON = REFUSED.removeprefix("Error: ").removesuffix("\n")
DANISH = "Error: Din adgang til patientportalen er ikke aktiv. Kontakt klinikken.\n"


def deceased_at_nord(cli: Cli, staff: Staff) -> None:
    """Ida, created at NORD and deactivated there (deceased); clinic SYD beside it, with
    anna logged in at NORD (admin at both)."""
    cli(["patient", "create", CPR, "--name", "Ida Holm", "--email", "ida@example.dk"])
    cli(f"patient deactivate {CPR} --reason deceased")
    second_clinic(cli, staff)


def links_of(db_url: str, home: Path) -> int:
    return counts(db_url, home)["links"]


def requests_of(db_url: str, home: Path) -> int:
    return int(scalar(db_url, home, "SELECT count(*) FROM registration_request"))


def test_link_and_create_at_another_clinic_are_refused(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    deceased_at_nord(cli, staff)
    r = cli(f"patient link {CPR} --clinic SYD", expect=1)
    assert (r.stdout, r.stderr) == ("", REFUSED)
    r = cli(f"patient link {CPR} --clinic SYD --dry-run", expect=1)
    assert r.stderr == REFUSED
    r = cli(
        ["patient", "create", CPR, "--name", "Ida H.", "--email", "ida@example.dk"]
        + ["--clinic", "SYD"],
        expect=1,
    )
    assert (r.stdout, r.stderr) == ("", REFUSED)
    assert links_of(db_url, home) == 1  # NORD's only
    with db_session(db_url, home) as s:
        assert [e.clinic for e in audit_events(s, "patient.link")] == []
        assert [e.clinic for e in audit_events(s, "patient.create")] == ["NORD"]
    # reactivated (a mistake): it links again
    cli(f"patient reactivate {CPR}")
    r = cli(f"patient link {CPR} --clinic SYD")
    assert r.stderr == (
        "Linked the existing portal user 010203-**** (Ida Holm) to clinic SYD (services: "
        "e-consultation, booking, prescription-renewal).\n"
    )
    assert links_of(db_url, home) == 2


def test_the_deactivating_clinic_cannot_link_again_after_left_clinic(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """The clinic that deactivated is refused too, once its own link has ended
    (left-clinic): nobody is left who could reactivate, as D46 says."""
    deceased_at_nord(cli, staff)
    cli(f"patient deactivate {CPR} --reason left-clinic")
    assert links_of(db_url, home) == 0
    r = cli(f"patient link {CPR}", expect=1)
    assert r.stderr == REFUSED


def test_import_rejects_rows_that_would_link_a_deactivated_account(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    deceased_at_nord(cli, staff)
    path = write(
        tmp_path / "syd.csv",
        "cpr;name;email\n"
        f"{CPR};Ida Holm;ida@example.dk\n"  # 2: deactivated: rejected
        f"{OTHER};Ole Dam;ole@example.dk\n",  # 3: created
    )
    report = tmp_path / "report.csv"
    r = cli(
        ["patient", "import", str(path), "--clinic", "SYD", "--yes", "--no-invite"]
        + ["--report", str(report)],
        expect=3,
    )
    assert f"  line 2: {REFUSED_REASON}\n" in r.stderr
    assert "Done at clinic SYD: 1 created, 0 linked, 0 flag(s) set, 0 already there.\n" in (
        r.stderr
    )
    table = list(csv.reader(io.StringIO(report.read_text(encoding="utf-8-sig")), delimiter=";"))
    assert table[1:] == [["2", f"{CPR};Ida Holm;ida@example.dk", REFUSED_REASON]]
    assert links_of(db_url, home) == 2  # Ida at NORD, Ole at SYD
    # the clinic where she is linked imports her row as already there
    again = write(tmp_path / "nord.csv", f"cpr;name;email\n{CPR};Ida Holm;ida@example.dk\n")
    r = cli(["patient", "import", str(again), "--yes", "--no-invite"])
    assert r.stderr.endswith("Nothing to change: no row needs a change at clinic NORD.\n")
    assert f"  {'already linked (nothing to do)':<30}  {1:>8}\n" in r.stderr


def test_portal_register_open_and_approval_get_the_neutral_danish_refusal(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    deceased_at_nord(cli, staff)
    cli("clinic set-registration open --clinic SYD")
    r = register(cli, clinic="SYD", password=None, mitid=True, expect=1)
    assert (r.stdout, r.stderr) == ("", DANISH)
    cli("clinic set-registration approval --clinic SYD")
    r = register(cli, clinic="SYD", password=None, mitid=True, expect=1)
    assert r.stderr == DANISH
    # outside a MitID login nothing new is told: "log in instead", as for any user
    r = register(cli, clinic="SYD", password=None, expect=1)
    assert r.stderr.startswith("Error: A portal user with this CPR number already exists")
    assert (links_of(db_url, home), requests_of(db_url, home)) == (1, 0)
    with db_session(db_url, home) as s:
        refused = audit_events(s, "registration.refused")
    assert [(e.clinic, e.target) for e in refused] == [("SYD", f"cpr:{NUMBER}")] * 3
    assert ['"reason": "not_active"' in e.details for e in refused] == [True, True, False]
    assert ["deceased" in e.details for e in refused] == [False] * 3


def test_a_request_made_before_the_deactivation_cannot_be_approved(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli(["patient", "create", CPR, "--name", "Ida Holm", "--email", "ida@example.dk"])
    second_clinic(cli, staff)
    cli("clinic set-registration approval --clinic SYD")
    register(cli, clinic="SYD", password=None, mitid=True)
    cli(f"patient deactivate {CPR} --reason emigrated")
    add_doctor(staff, "bo", clinic="SYD")
    r = cli("requests approve 1 --clinic SYD", expect=1)
    assert (r.stdout, r.stderr) == ("", REFUSED)
    assert (links_of(db_url, home), requests_of(db_url, home)) == (1, 1)
