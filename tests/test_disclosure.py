"""What staff at another clinic learn about a portal user that is not linked there: that
it exists, and nothing else - not its name, e-mail, flag, clinics or requests - in
messages, dry runs, refusals, JSON, CSV, the import's report, or the audit log they can
read. Once they link it, it is their patient. Both backends, through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import Cli, Staff, terminal
from tests.helpers.db import db_session, events, link_of
from tests.helpers.people import second_clinic

CPR = "010203-1234"
NUMBER = "0102031234"
# what NORD knows about Ida, and SYD must not learn before linking her
SECRETS = ("Ida", "Hansen", "ida@example.dk", "NORD", "Nordklinikken")


def _ida_at_nord_only(cli: Cli, staff: Staff) -> None:
    cli(f"patient create {CPR} --name 'Ida Hansen' --email ida@example.dk --no-invite")
    cli(f"no-mitid set {CPR} --confirm-email-owner")
    second_clinic(cli, staff)
    staff.login("sara")


def _told_nothing(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, (secret, text)


def test_create_dry_run_at_another_clinic_tells_only_that_a_user_exists(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """SYD's create --dry-run must not print NORD's name and e-mail for the patient."""
    _ida_at_nord_only(cli, staff)
    r = cli(f"patient create {CPR} --name X --email x@example.com --dry-run")
    assert r.stdout == ""
    assert r.stderr == (
        "Dry run: would have linked the existing portal user 010203-**** to clinic SYD "
        "(services: e-consultation, booking, prescription-renewal).\n"
        "Warning: the e-mail given differs from the one on the existing portal user; it was "
        "not changed.\n"
        "Warning: the name given differs from the one on the existing portal user; it was "
        "not changed.\n"
        "Nothing was changed.\n"
    )
    _told_nothing(r.stdout, r.stderr)
    with db_session(db_url, home) as s:
        assert link_of(s, NUMBER, "SYD") is None
        # the look-up is audited at SYD, with nothing of Ida in it
        [event] = [e for e in events(s, "patient.") if e[1] == "SYD"]
        assert event == (
            "patient.dry_run",
            "SYD",
            f"cpr:{NUMBER}",
            "sara",
            {"command": "create", "user_exists": True},
        )


def test_link_dry_run_at_another_clinic_tells_only_that_a_user_exists(
    cli: Cli, staff: Staff
) -> None:
    _ida_at_nord_only(cli, staff)
    for extra in ("", " --no-mitid --confirm-email-owner"):
        r = cli(f"patient link {CPR} --dry-run{extra}")
        assert r.stdout == ""
        _told_nothing(r.stderr)
        assert r.stderr.startswith(
            "Dry run: would have linked the existing portal user 010203-**** to clinic SYD "
            "(services: e-consultation, booking, prescription-renewal).\n"
        )
        assert r.stderr.endswith("Nothing was changed.\n")
    assert "the portal user's e-mail would be recorded as confirmed" in r.stderr


def test_no_mitid_refusals_do_not_show_the_stored_email(cli: Cli, staff: Staff) -> None:
    _ida_at_nord_only(cli, staff)
    refused = (
        "Error: The portal user 010203-**** has another e-mail than the one given "
        "(x@example.com); security codes go to the user's e-mail, so the no-MitID flag "
        "cannot be confirmed for the address given. Nothing was changed: link the patient "
        "without --no-mitid, check the address with the patient, then run "
        "`patientportal no-mitid set CPR`.\n"
    )
    for dry in ("", " --dry-run"):
        r = cli(
            f"patient create {CPR} --name X --email x@example.com --no-mitid "
            f"--confirm-email-owner{dry}",
            expect=1,
        )
        assert (r.stdout, r.stderr) == ("", refused)
    # on a terminal, `patient link --no-mitid` asks for the address instead of showing it
    with terminal("x@example.com\r", "y"):
        r = cli(f"patient link {CPR} --no-mitid", expect=1)
    assert (r.stdout, r.stderr) == ("", refused)
    with terminal("x@example.com\r", "y"):
        r = cli(f"patient link {CPR} --no-mitid --dry-run", expect=1)
    assert r.stderr == refused


def test_lookups_listings_and_audit_at_another_clinic_tell_nothing(cli: Cli, staff: Staff) -> None:
    _ida_at_nord_only(cli, staff)
    cli(f"patient create {CPR} --name X --email x@example.com --dry-run")
    outputs = []
    for args, code in (
        (f"patient show {CPR} -o json", 1),
        (f"patient log {CPR} -o json", 1),
        (f"patient access {CPR} -o json", 0),
        ("patient list -o csv", 0),
        ("patient list --search ida -o json", 0),
        ("no-mitid list -o json", 0),
        ("requests list --status all -o json", 0),
        ("audit list -o json", 0),
        ("audit export", 0),
    ):
        r = cli(args, expect=code)
        outputs += [r.stdout, r.stderr]
    _told_nothing(*outputs)
    assert json.loads(cli(f"patient access {CPR} -o json").stdout) == {
        "mitid": {"allowed": False, "reason": "not linked here"},
        "two_factor": {"allowed": False, "reason": "not linked here"},
    }


def test_once_linked_it_is_the_clinics_patient(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """A real link tells the name (the patient is now this clinic's); the differences are
    still reported without the stored values, and audited as field names only."""
    _ida_at_nord_only(cli, staff)
    r = cli(f"patient create {CPR} --name 'Ida H.' --email ida@other.dk --no-invite")
    assert r.stderr == (
        "Linked the existing portal user 010203-**** (Ida Hansen) to clinic SYD "
        "(services: e-consultation, booking, prescription-renewal).\n"
        "Warning: the e-mail given differs from the one on the existing portal user; it was "
        "not changed.\n"
        "Warning: the name given differs from the one on the existing portal user; it was "
        "not changed.\n"
    )
    shown = json.loads(cli(f"patient show {CPR} -o json").stdout)
    assert (shown["name"], shown["email"], shown["no_mitid"]) == (
        "Ida Hansen",
        "ida@example.dk",
        False,  # NORD's flag is NORD's
    )
    with db_session(db_url, home) as s:
        [(_, clinic, _, _, details)] = [e for e in events(s, "patient.create") if e[1] == "SYD"]
        assert details["differences"] == ["email", "name"]


def test_import_at_another_clinic_reports_and_audits_no_stored_values(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    _ida_at_nord_only(cli, staff)
    path = tmp_path / "patients.csv"
    path.write_text(f"cpr;name;email;no_mitid\n{CPR};I. Jensen;ida@other.dk;ja\n", encoding="utf-8")
    report = tmp_path / "report.csv"
    r = cli(
        [
            "patient", "import", str(path), "--yes", "--confirm-email-owner",
            "--report", str(report), "-o", "json",
        ],
        expect=3,
    )  # fmt: skip
    _told_nothing(r.stdout, r.stderr, report.read_text(encoding="utf-8"))
    assert "has another e-mail than the row (ida@other.dk)" in report.read_text(encoding="utf-8")
    # without the flag it links her; the audit names the differing fields, not NORD's values
    path.write_text(f"cpr;name;email\n{CPR};I. Jensen;ida@other.dk\n", encoding="utf-8")
    r = cli(["patient", "import", str(path), "--yes", "-o", "json"])
    _told_nothing(r.stdout)
    audit = cli("audit list --action patient.create -o json").stdout
    [event] = json.loads(audit)
    assert event["details"]["differences"] == ["email", "name"]
    _told_nothing(audit)


def test_a_request_for_a_user_of_another_clinic_shows_only_what_was_asked(
    cli: Cli, staff: Staff
) -> None:
    """The request holds what the person gave SYD; of the existing user, only that it
    exists (approving links it)."""
    from tests.helpers.people import register

    cli(f"patient create {CPR} --name 'Ida Hansen' --email ida@example.dk --no-invite")
    cli("clinic create SYD --name Sydklinikken --registration approval")
    staff.add("sara", "secretary", clinic="SYD")
    register(  # inside MitID: an anonymous registration of an existing CPR is refused
        cli, CPR, clinic="SYD", name="I. Jensen", email="ij@example.com", password=None, mitid=True
    )
    staff.login("sara")
    [row] = json.loads(cli("requests list -o json").stdout)
    assert (row["name"], row["email"], row["user"]) == ("I. Jensen", "ij@example.com", "existing")
    outputs = [cli("requests list -o csv").stdout]
    for fmt in ("json", "csv", "table"):
        r = cli(f"requests show {row['id']} -o {fmt}")
        outputs += [r.stdout, r.stderr]
    _told_nothing(*outputs)
