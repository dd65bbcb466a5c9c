"""`patient change-cpr OLD NEW [--merge] [--dry-run]` (rule D40), both backends, through
the `patientportal` command: one transaction, one audit event, both numbers find the log;
refusals change nothing; a merge reports every conflict first."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.helpers.cli import Cli, Staff, terminal
from tests.helpers.db import db_session, events, rows, scalar
from tests.helpers.people import register, second_clinic, self_registers

OLD = "010203-1234"
OLD_N = "0102031234"
NEW = "150790-4321"
NEW_N = "1507904321"
PW = "Patient-pass1"


def _throttle(db_url: str, home: Path, number: str) -> Any:
    key = hashlib.sha256(f"patient:{number}".encode()).hexdigest()
    return scalar(db_url, home, "SELECT failures FROM login_throttle WHERE key = :k", k=key)


def _log(cli: Cli, cpr: str, clinic: str = "NORD") -> list[str]:
    out = json.loads(cli(["patient", "log", cpr, "-o", "json", "--clinic", clinic]).stdout)
    return [row["action"] for row in out]


def _state(db_url: str, home: Path) -> list[Any]:
    """Everything a change-cpr may touch, to compare before and after a refusal."""
    return [
        rows(
            db_url, home, "SELECT id, cpr, name, email, password_hash FROM portal_user ORDER BY id"
        ),
        rows(db_url, home, "SELECT clinic_id, user_id, no_mitid FROM clinic_link ORDER BY id"),
        rows(db_url, home, "SELECT clinic_id, cpr FROM link_history ORDER BY id"),
        rows(db_url, home, "SELECT cpr, status FROM registration_request ORDER BY id"),
        rows(db_url, home, "SELECT key, failures FROM login_throttle ORDER BY key"),
        rows(db_url, home, "SELECT * FROM cpr_change"),
        rows(db_url, home, "SELECT count(*) FROM audit_event WHERE action <> 'patient.dry_run'"),
    ]


def test_change_moves_the_account_in_one_event_and_both_numbers_find_the_log(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    second_clinic(cli, staff)
    staff.login("anna", clinic="NORD")
    cli(
        f"patient create {OLD} --name 'Karen Holm' --email karen@example.dk --no-invite "
        "--no-mitid --confirm-email-owner"
    )
    cli(f"patient link {OLD} --clinic SYD --services booking")
    cli("clinic set-registration approval --clinic SYD")
    cli(f"patient unlink {OLD} --clinic SYD --yes")
    register(
        cli,
        OLD,
        clinic="SYD",
        name="Karen Holm",
        email="karen@example.dk",
        password=None,
        mitid=True,
    )
    for _ in range(2):  # two failed logins count against the old number
        cli(
            f"portal login {OLD} --clinic NORD --method two-factor --password-stdin",
            input="wrong-password1\n",
            expect=1,
        )
    assert _throttle(db_url, home, OLD_N) == 2

    r = cli(f"patient change-cpr {OLD} {NEW} --yes")
    assert r.stdout == ""
    assert r.stderr == (
        "CPR number 010203-**** changed to 150790-**** (Karen Holm), at every clinic the "
        "patient uses.\n"
        "Pending registration requests moved: 1; link history rows moved: 2.\n"
        "The failed-login count and any lock moved to the new number.\n"
        "`patientportal patient log` finds the patient's history by 010203-**** and by "
        "150790-****.\n"
    )
    assert rows(db_url, home, "SELECT cpr FROM portal_user") == [(NEW_N,)]
    assert rows(
        db_url,
        home,
        "SELECT c.code, l.no_mitid, l.services FROM clinic_link l JOIN clinic c "
        "ON c.id = l.clinic_id",
    ) == [("NORD", True, "e-consultation,booking,prescription-renewal")]
    assert sorted(
        rows(
            db_url,
            home,
            "SELECT c.code, h.cpr, h.unlinked_at IS NULL FROM link_history h "
            "JOIN clinic c ON c.id = h.clinic_id",
        )
    ) == [("NORD", NEW_N, True), ("SYD", NEW_N, False)]
    assert rows(db_url, home, "SELECT cpr, status FROM registration_request") == [
        (NEW_N, "pending")
    ]
    assert (_throttle(db_url, home, OLD_N), _throttle(db_url, home, NEW_N)) == (None, 2)
    assert rows(db_url, home, "SELECT old_cpr, new_cpr, changed_by, merged FROM cpr_change") == [
        (OLD_N, NEW_N, "anna", False)
    ]
    with db_session(db_url, home) as s:
        assert events(s, "patient.change_cpr") == [
            (
                "patient.change_cpr",
                "NORD",
                f"cpr:{NEW_N}",
                "anna",
                {
                    "old_cpr": OLD_N,
                    "new_cpr": NEW_N,
                    "merged": False,
                    "requests_moved": 1,
                    "history_moved": 2,
                    "throttle": "moved",
                    "links_moved": 0,
                    "delegations_moved": 0,
                },
            )
        ]
    # both numbers find the whole history (newest first; each look-up is logged)
    whole = [
        "patient.change_cpr",
        "portal.login_failed",
        "portal.login_failed",
        "no_mitid.set",
        "patient.create",
    ]
    assert _log(cli, OLD) == whole
    assert _log(cli, NEW) == ["patient.log", *whole]
    assert "The audit log is intact" in cli("audit verify").stderr
    # the old number is free: no user has it, a portal login with it fails like any other
    assert scalar(db_url, home, "SELECT count(*) FROM portal_user WHERE cpr = :c", c=OLD_N) == 0


def test_dry_run_says_would_and_changes_nothing(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli(f"patient create {OLD} --name 'Karen Holm' --email karen@example.dk --no-invite")
    before = _state(db_url, home)
    r = cli(f"patient change-cpr {OLD} {NEW} --dry-run")
    assert r.stderr == (
        "Dry run: CPR number 010203-**** would be changed to 150790-**** (Karen Holm), at "
        "every clinic the patient uses.\n"
        "Pending registration requests would move: 0; link history rows would move: 1.\n"
        "No failed logins or lock on the old number: nothing to move.\n"
        "Nothing was changed.\n"
    )
    assert _state(db_url, home) == before
    with db_session(db_url, home) as s:
        [(_, _, target, _, details)] = events(s, "patient.dry_run")
    assert (target, details["command"], details["new_cpr"]) == (f"cpr:{OLD_N}", "change_cpr", NEW_N)


def test_refusals_are_one_line_with_their_exit_code_and_change_nothing(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    second_clinic(cli, staff)
    staff.login("anna", clinic="NORD")
    cli(f"patient create {OLD} --name 'Karen Holm' --email karen@example.dk --no-invite")
    cli(
        f"patient create {NEW} --name 'Karen Holm' --email karen@example.dk --no-invite --clinic SYD"
    )
    staff.add("sofie", "secretary", name="Sofie Sekretær")

    def refused(args: str, code: int, message: str) -> None:
        before = _state(db_url, home)
        r = cli(args, expect=code)
        assert (r.stdout, r.stderr) == ("", f"Error: {message}\n")
        assert _state(db_url, home) == before

    refused(
        f"patient change-cpr {OLD} 311399-1234 --yes",
        2,
        "Invalid CPR number: 31.13.1999 is not a real date.",
    )
    refused(
        f"patient change-cpr {OLD} 0102031234 --yes",
        2,
        "The old and the new CPR number are the same (010203-****).",
    )
    refused(
        f"patient change-cpr {OLD} 020304-1234",
        2,
        "Missing confirmation: pass --yes (no terminal to ask on).",
    )
    # NEW has a portal user (at another clinic): refused without --merge, clinic untold
    refused(
        f"patient change-cpr {OLD} {NEW} --yes",
        1,
        "A portal user with the CPR number 150790-**** already exists; nothing was changed. "
        "If both are the same person, merge them with --merge (every conflict is reported "
        "before anything changes).",
    )
    # OLD must be this clinic's patient (the isolation message of every patient command)
    refused(
        f"patient change-cpr {NEW} 020304-1234 --yes",
        1,
        "150790-**** is not a patient at clinic NORD. A portal user with this CPR number "
        "exists; link it to the clinic with `patientportal patient link CPR`.",
    )
    staff.login("sofie")
    refused(
        f"patient change-cpr {OLD} 020304-1234 --yes",
        4,
        "Only an admin or doctor at clinic NORD can change a patient's CPR number (you are "
        "secretary).",
    )


def test_a_doctor_may_change_a_number(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    cli(f"patient create {OLD} --name 'Karen Holm' --email karen@example.dk --no-invite")
    staff.add("bo", "doctor", name="Dr Bo")
    staff.login("bo")
    cli(f"patient change-cpr {OLD} {NEW} --yes")
    assert rows(db_url, home, "SELECT old_cpr, new_cpr, changed_by FROM cpr_change") == [
        (OLD_N, NEW_N, "bo")
    ]


def test_merge_reports_every_conflict_and_changes_nothing(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    second_clinic(cli, staff)
    staff.login("anna", clinic="NORD")
    self_registers(cli, cpr=OLD, name="Karen Holm", email="karen@example.dk", password=PW)
    self_registers(
        cli, cpr=NEW, name="Karen M. Holm", email="kmh@example.dk", password=PW, clinic="SYD"
    )
    cli(f"patient link {NEW} --services booking")  # NORD: other services than OLD's link
    cli(f"patient link {OLD} --clinic SYD")  # SYD: the same services, other record e-mail
    before = _state(db_url, home)
    r = cli(f"patient change-cpr {OLD} {NEW} --merge --yes", expect=1)
    assert r.stdout == ""
    assert r.stderr == (
        "  conflict: The two accounts have different names.\n"
        "  conflict: The two accounts have different e-mail addresses.\n"
        "  conflict: Both accounts have a password; the patient can keep only one (reset "
        "one of them with `patientportal patient reset-password`).\n"
        "  conflict: Both are linked at clinic NORD with different services.\n"
        "  conflict: Both are linked at clinic NORD with different record e-mails.\n"
        "  conflict: Both are linked at another clinic with different record e-mails.\n"
        "Error: Cannot merge 010203-**** into 150790-****: 6 conflict(s); nothing was "
        "changed.\n"
    )
    assert _state(db_url, home) == before


def test_merge_without_conflicts_unites_the_links_and_removes_the_other_account(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    second_clinic(cli, staff)
    staff.login("anna", clinic="NORD")
    cli(f"patient create {OLD} --name 'Karen Holm' --email karen@example.dk --no-invite")
    self_registers(
        cli, cpr=NEW, name="Karen Holm", email="karen@example.dk", password=PW, clinic="SYD"
    )
    cli(f"patient show {NEW} --clinic SYD")
    kept = scalar(db_url, home, "SELECT id FROM portal_user WHERE cpr = :c", c=NEW_N)
    gone = scalar(db_url, home, "SELECT id FROM portal_user WHERE cpr = :c", c=OLD_N)
    r = cli(f"patient change-cpr {OLD} {NEW} --merge --yes")
    assert r.stderr == (
        "010203-**** merged into 150790-**** (Karen Holm): one account, at every clinic the "
        "patient uses.\n"
        "Links moved to the kept account: 1; guardianships and proxies moved: 0.\n"
        "Pending registration requests moved: 0; link history rows moved: 1.\n"
        "No failed logins or lock on the old number: nothing to move.\n"
        "`patientportal patient log` finds the patient's history by 010203-**** and by "
        "150790-****.\n"
    )
    assert rows(db_url, home, "SELECT id, cpr, password_hash IS NOT NULL FROM portal_user") == [
        (kept, NEW_N, True)
    ]
    assert sorted(
        rows(
            db_url,
            home,
            "SELECT c.code, l.user_id FROM clinic_link l JOIN clinic c ON c.id = l.clinic_id",
        )
    ) == [("NORD", kept), ("SYD", kept)]
    assert rows(db_url, home, "SELECT user_id, old_cpr, new_cpr, merged FROM cpr_change") == [
        (kept, OLD_N, NEW_N, True)
    ]
    assert gone != kept
    # NORD finds its history by both numbers; SYD by the number it knew (its own events)
    assert _log(cli, OLD) == ["patient.change_cpr", "patient.create"]
    assert "patient.show" in _log(cli, NEW, clinic="SYD")
    assert "patient.create" not in _log(cli, NEW, clinic="SYD")  # NORD's events stay NORD's
    assert "The audit log is intact" in cli("audit verify").stderr


def test_merge_into_a_number_without_a_user_is_a_plain_change(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli(f"patient create {OLD} --name 'Karen Holm' --email karen@example.dk --no-invite")
    r = cli(f"patient change-cpr {OLD} {NEW} --merge --yes")
    assert r.stderr.startswith("CPR number 010203-**** changed to 150790-**** (Karen Holm)")
    assert rows(db_url, home, "SELECT merged FROM cpr_change") == [(False,)]


def test_on_a_terminal_it_asks_and_no_changes_nothing(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli(f"patient create {OLD} --name 'Karen Holm' --email karen@example.dk --no-invite")
    before = _state(db_url, home)
    with terminal("n"):
        r = cli(f"patient change-cpr {OLD} {NEW}", expect=1)
    assert r.stderr.endswith("Error: Not confirmed; nothing was changed.\n")
    assert _state(db_url, home) == before
    with terminal("y"):
        cli(f"patient change-cpr {OLD} {NEW}")
    assert rows(db_url, home, "SELECT cpr FROM portal_user") == [(NEW_N,)]


def test_a_proxy_stays_with_the_person_and_a_merge_moves_it_to_the_kept_account(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    else_, son, son_new = "120345-1111", "030370-2222", "030370-2233"
    for cpr, name, email in (
        (else_, "Else Madsen", "else@example.dk"),
        (son, "Jens Madsen", "jens@example.dk"),
    ):
        cli(["patient", "create", cpr, "--name", name, "--email", email, "--no-invite"])
    cli(f"patient proxy add {else_} --holder {son} --until 2027-06-30 --evidence Fuldmagt")

    def can(holder: str, patient: str) -> bool:
        answer = json.loads(cli(f"patient access {holder} --for {patient} -o json").stdout)
        return bool(answer["allowed"])

    # the patient's number changes: the proxy (by account) still lets Jens act for Else
    cli(f"patient change-cpr {else_} 120345-1122 --yes")
    assert can(son, "120345-1122")
    # the holder's number changes by a merge into an account Jens already had (no
    # conflicts): the proxy moves to the kept account
    cli(
        ["patient", "create", son_new, "--name", "Jens Madsen", "--email", "jens@example.dk"]
        + ["--no-invite"]
    )
    r = cli(f"patient change-cpr {son} {son_new} --merge --yes")
    assert "Links moved to the kept account: 0; guardianships and proxies moved: 1.\n" in r.stderr
    assert can(son_new, "120345-1122")
    assert rows(db_url, home, "SELECT count(*) FROM delegation WHERE revoked_at IS NULL") == [(1,)]
