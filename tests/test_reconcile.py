"""`patient reconcile FILE|- [--dry-run] [--yes] [--report FILE]` (rule D41), both
backends, through the `patientportal` command: the plan, its application through
lifecycle.deactivate, idempotence, rejected rows, the report, isolation."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.helpers.cli import Cli, Staff, terminal
from tests.helpers.db import db_session, events, rows
from tests.helpers.people import second_clinic

A = "010203-1234"  # on the list, active
B = "020304-2345"  # status 90: deceased
C = "030405-3456"  # status 80: emigrated
D = "040506-4567"  # not on the list: left-clinic
E = "050607-5678"  # status 70: kept, reported
F = "060708-6789"  # on the list, not a patient here


def _patients(cli: Cli, *cprs: str) -> None:
    for i, cpr in enumerate(cprs):
        cli(
            ["patient", "create", cpr, "--name", f"Patient {i}", "--email", f"p{i}@example.dk"]
            + ["--no-invite"]
        )


def _count(label: str, n: int) -> str:
    """A line of the printed plan: the label padded to the longest one, the count right."""
    return f"  {label:<33}  {n:>8}\n"


def _list(path: Path, *lines: str) -> Path:
    path.write_text("cpr;status\n" + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _deactivated(db_url: str, home: Path) -> list[tuple[str, str | None]]:
    return rows(
        db_url,
        home,
        "SELECT cpr, deactivated_reason FROM portal_user WHERE deactivated_at IS NOT NULL "
        "ORDER BY cpr",
    )


def _linked(db_url: str, home: Path, clinic: str = "NORD") -> list[str]:
    return [
        r[0]
        for r in rows(
            db_url,
            home,
            "SELECT u.cpr FROM clinic_link l JOIN portal_user u ON u.id = l.user_id "
            "JOIN clinic c ON c.id = l.clinic_id WHERE c.code = :c ORDER BY u.cpr",
            c=clinic,
        )
    ]


PLAN = (
    "Reconcile plan for clinic NORD: {name} (CSV, utf-8, semicolon), 5 row(s); 5 patient(s) "
    "linked here\n"
    + _count("on the list (nothing to do)", 1)
    + _count("deceased (90): deactivate", 1)
    + _count("emigrated (80): deactivate", 1)
    + _count("already deactivated", 0)
    + _count("not on the list: left-clinic", 1)
    + _count("not a patient here (reported)", 1)
    + _count("to review (reported)", 1)
    + _count("repeated rows (same status)", 0)
    + _count("rejected", 0)
    + "Reported rows (first 2 of 2):\n"
    "  line 5: CPR status 70 (disappeared): kept; check the patient's status.\n"
    "  line 6: Not a patient at clinic NORD: nothing to do here.\n"
)


def test_plan_then_apply_through_lifecycle_then_a_second_run_plans_nothing(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    _patients(cli, A, B, C, D, E)
    path = _list(tmp_path / "liste.csv", f"{A};01", f"{B};90", f"{C};80", f"{E};70", f"{F};1")

    dry = cli(["patient", "reconcile", str(path), "--dry-run"])
    assert (dry.stdout, dry.stderr) == (
        "",
        PLAN.format(name=path) + "Dry run: nothing was changed.\n",
    )
    assert _deactivated(db_url, home) == []
    assert len(_linked(db_url, home)) == 5

    report = tmp_path / "afvigelser.csv"
    r = cli(["patient", "reconcile", str(path), "--yes", "--report", str(report)])
    assert r.stderr == PLAN.format(name=path) + (
        "Done at clinic NORD: 2 deactivated (1 deceased, 1 emigrated), 1 left the clinic, "
        "0 already done meanwhile.\n"
        f"Rows to look at written to {report}: 3.\n"
    )
    assert report.read_bytes().decode("utf-8-sig").splitlines() == [
        "line;row;reason",
        '5;"050607-5678;70";"CPR status 70 (disappeared): kept; check the patient\'s status."',
        '6;"060708-6789;1";Not a patient at clinic NORD: nothing to do here.',
        "0;040506-4567;Not on the list: this clinic's link ends (left-clinic).",
    ]
    assert _deactivated(db_url, home) == [("0203042345", "deceased"), ("0304053456", "emigrated")]
    assert _linked(db_url, home) == ["0102031234", "0203042345", "0304053456", "0506075678"]
    assert rows(
        db_url,
        home,
        "SELECT unlinked_at IS NOT NULL FROM link_history WHERE cpr = :c",
        c="0405064567",
    ) == [(True,)]
    with db_session(db_url, home) as s:
        changes = [(t, d["reason"]) for _, _, t, _, d in events(s, "patient.deactivate")]
        [(_, clinic, target, actor, summary)] = events(s, "patient.reconcile")
    assert changes == [
        ("cpr:0203042345", "deceased"),
        ("cpr:0304053456", "emigrated"),
        ("cpr:0405064567", "left-clinic"),
    ]
    assert (clinic, target, actor) == ("NORD", "clinic:NORD", "anna")
    assert summary["plan"]["left_clinic"] == 1 and summary["left_clinic"] == 1
    assert summary["deceased"] == 1 and summary["emigrated"] == 1 and summary["meanwhile"] == 0

    again = cli(["patient", "reconcile", str(path), "--yes", "-o", "json"])
    data = json.loads(again.stdout)
    assert data["applied"] is None
    assert {k: data["plan"][k] for k in ("deceased", "emigrated", "left_clinic", "already")} == {
        "deceased": 0,
        "emigrated": 0,
        "left_clinic": 0,
        "already": 2,
    }
    assert again.stderr.endswith("Nothing to change: the list agrees with clinic NORD.\n")
    assert "The audit log is intact" in cli("audit verify").stderr


def test_unreadable_numbers_are_rejected_exit_3_and_hold_every_left_clinic(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    _patients(cli, A, B, D)
    path = _list(
        tmp_path / "liste.csv",
        f"{A};01",
        f"{B};90",
        "31139-1234;01",  # not a CPR number
        f"{A};01",  # the same again: counted, not rejected
        f"{B};42",  # an unknown status
    )
    report = tmp_path / "report.csv"
    r = cli(["patient", "reconcile", str(path), "--yes", "--report", str(report)], expect=3)
    assert r.stderr == (
        f"Reconcile plan for clinic NORD: {path} (CSV, utf-8, semicolon), 5 row(s); 3 "
        "patient(s) linked here\n"
        + _count("on the list (nothing to do)", 1)
        + _count("deceased (90): deactivate", 1)
        + _count("emigrated (80): deactivate", 0)
        + _count("already deactivated", 0)
        + _count("not on the list: left-clinic", 0)
        + _count("not on the list: kept (see below)", 1)
        + _count("not a patient here (reported)", 0)
        + _count("to review (reported)", 0)
        + _count("repeated rows (same status)", 1)
        + _count("rejected", 2)
        + "  1 patient(s) not on the list keep their link: the list has rows with unreadable "
        "CPR numbers, so it cannot tell who is missing. Fix those rows and run again.\n"
        "Rejected rows (first 2 of 2):\n"
        "  line 4: Invalid CPR number: expected 10 digits as DDMMYY-SSSS, DDMMYY SSSS or "
        "DDMMYYSSSS.\n"
        "  line 6: Unknown CPR status '42': use 01, 03, 05, 07 (active), 20, 30, 50, 60, 70, "
        "80 (emigrated), 90 (deceased).\n"
        "Done at clinic NORD: 1 deactivated (1 deceased, 0 emigrated), 0 left the clinic, 0 "
        "already done meanwhile.\n"
        f"Rows to look at written to {report}: 2.\n"
        f"Error: 2 row(s) rejected (all are in {report}); the other rows were handled.\n"
    )
    assert _linked(db_url, home) == ["0102031234", "0203042345", "0405064567"]  # D kept
    assert report.read_bytes().decode("utf-8-sig").splitlines() == [
        "line;row;reason",
        '4;"31139-1234;01";Invalid CPR number: expected 10 digits as DDMMYY-SSSS, DDMMYY SSSS '
        "or DDMMYYSSSS.",
        "6;\"020304-2345;42\";Unknown CPR status '42': use 01, 03, 05, 07 (active), 20, 30, "
        "50, 60, 70, 80 (emigrated), 90 (deceased).",
    ]
    assert stat.S_IMODE(report.stat().st_mode) == 0o600


def test_the_same_number_with_two_statuses_is_rejected_and_changes_nothing_for_it(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    _patients(cli, A, B)
    path = _list(tmp_path / "liste.csv", f"{A};01", f"{B};90", f"{B};01")
    r = cli(["patient", "reconcile", str(path), "--yes", "-o", "json"], expect=3)
    data = json.loads(r.stdout)
    assert data["plan"]["rejected"] == 2 and data["plan"]["deceased"] == 0
    assert data["applied"] is None
    assert "Nothing to change: the list agrees with clinic NORD.\n" in r.stderr
    assert "  line 3: This CPR number is on several rows with different statuses" in r.stderr
    assert "  line 4: This CPR number is on several rows with different statuses" in r.stderr
    assert _deactivated(db_url, home) == []
    assert _linked(db_url, home) == ["0102031234", "0203042345"]


def test_confirmation_empty_lists_and_bad_files(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    _patients(cli, A, D)
    path = _list(tmp_path / "liste.csv", f"{A};01")
    r = cli(["patient", "reconcile", str(path)], expect=2)
    assert r.stderr.endswith("Error: Missing confirmation: pass --yes (no terminal to ask on).\n")
    assert _linked(db_url, home) == ["0102031234", "0405064567"]

    empty = _list(tmp_path / "tom.csv")
    r = cli(["patient", "reconcile", str(empty), "--yes"], expect=2)
    assert r.stderr == (
        f"Error: {empty} has no valid row: reconciling with it would end every link at clinic "
        "NORD. Nothing was changed.\n"
    )
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("navn;email\nX;x@example.dk\n", encoding="utf-8")
    r = cli(["patient", "reconcile", str(wrong), "--yes"], expect=2)
    assert r.stderr == (
        f"Error: {wrong}: unknown column(s) 'navn', 'email'; missing required column(s) cpr. "
        "Accepted columns: cpr (cpr-nummer, cprnr, personnummer), status (cpr-status, "
        "statuskode).\n"
    )
    r = cli(["patient", "reconcile", str(tmp_path / "none.csv"), "--yes"], expect=2)
    assert r.stderr == f"Error: No such file: {tmp_path / 'none.csv'}.\n"
    assert _linked(db_url, home) == ["0102031234", "0405064567"]


def test_standard_input_and_isolation_between_clinics(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    second_clinic(cli, staff)
    staff.login("anna", clinic="NORD")
    _patients(cli, A, D)
    cli(f"patient link {D} --clinic SYD")
    cli(
        [
            "patient",
            "create",
            F,
            "--name",
            "Syd Patient",
            "--email",
            "s@example.dk",
            "--no-invite",
            "--clinic",
            "SYD",
        ]
    )
    r = cli(["patient", "reconcile", "-", "--yes"], input=f"CPR-nummer\n{A}\n{F}\n")
    assert (
        "Reconcile plan for clinic NORD: standard input (CSV, utf-8, semicolon), 2 row(s)"
        in r.stderr
    )
    assert "  line 3: Not a patient at clinic NORD: nothing to do here.\n" in r.stderr
    assert "1 left the clinic" in r.stderr
    # NORD's link of D ended; SYD's link of D and SYD's own patient are untouched
    assert _linked(db_url, home) == ["0102031234"]
    assert _linked(db_url, home, "SYD") == ["0405064567", "0607086789"]
    assert _deactivated(db_url, home) == []


def test_on_a_terminal_it_asks_before_applying(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    _patients(cli, A, D)
    path = _list(tmp_path / "liste.csv", f"{A};01")
    with terminal("n"):
        r = cli(["patient", "reconcile", str(path)], expect=1)
    assert r.stderr.endswith("Error: Not confirmed; nothing was changed.\n")
    assert _linked(db_url, home) == ["0102031234", "0405064567"]
    with terminal("y"):
        r = cli(["patient", "reconcile", str(path)])
    assert "1 left the clinic" in r.stderr
    assert _linked(db_url, home) == ["0102031234"]


def test_apply_in_batches_counts_what_changed_meanwhile_and_audits_each_change(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    """Phase two in batches of 2 (``apply_plan(batch_size=2)``, the service the command
    calls): a patient unlinked and one deactivated between the plan and the apply are
    "meanwhile" inside their batch, the batch's other changes are made, one
    `patient.deactivate` event per change."""
    from patientportal_cli.services import reconcile
    from patientportal_cli.services.importing.reader import open_import
    from tests.helpers.services import actor_for

    _patients(cli, A, B, C, D, E)
    listing = _list(tmp_path / "liste.csv", f"{A};01", f"{B};90", f"{C};80", f"{E};90")
    with db_session(db_url, home) as s:
        actor = actor_for(s, "anna", "NORD")
        s.commit()
        source = open_import(str(listing), format="csv", layout=reconcile.LAYOUT)
        with reconcile.make_plan(s, actor=actor, source=source) as plan:
            assert plan.deactivate == [
                ("0203042345", "deceased"),
                ("0304053456", "emigrated"),
                ("0506075678", "deceased"),
            ]
            assert plan.left == ["0405064567"]
            cli(f"patient unlink {D} --yes")  # meanwhile, by the command
            cli(f"patient deactivate {C} --reason other")
            done: list[int] = []
            applied = reconcile.apply_plan(
                s, actor=actor, plan=plan, on_progress=done.append, batch_size=2
            )
    assert done == [2, 4]
    assert applied.as_dict() == {
        "deceased": 2,
        "emigrated": 0,
        "left_clinic": 0,
        "delegations_ended": 0,
        "meanwhile": 2,
    }
    assert _deactivated(db_url, home) == [
        ("0203042345", "deceased"),
        ("0304053456", "other"),
        ("0506075678", "deceased"),
    ]
    assert _linked(db_url, home) == ["0102031234", "0203042345", "0304053456", "0506075678"]
    with db_session(db_url, home) as s:
        deactivations = [(e[2], e[4]) for e in events(s, "patient.deactivate")]
    assert deactivations == [  # C by the command, then B and E by the apply
        ("cpr:0304053456", {"reason": "other", "delegations_ended": 0}),
        ("cpr:0203042345", {"reason": "deceased", "delegations_ended": 0}),
        ("cpr:0506075678", {"reason": "deceased", "delegations_ended": 0}),
    ]
    assert "The audit log is intact" in cli("audit verify").stderr
