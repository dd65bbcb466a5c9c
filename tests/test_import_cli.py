"""`patient import` through the CLI, on both backends: Excel files, the plan, rejected
rows, re-runs, flags, existing users, reports, JSON summary and exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.helpers.cli import Cli, Staff
from tests.helpers.csv_files import DANES, excel_csv, write
from tests.helpers.db import counts, import_events, rows


def plan_lines(
    name: str,
    how: str,
    total: int,
    *,
    create: int = 0,
    link: int = 0,
    set_flag: int = 0,
    already: int = 0,
    duplicate: int = 0,
    rejected: int = 0,
) -> str:
    counts = [
        ("create user and link", create),
        ("link existing user", link),
        ("set no-MitID flag, link exists", set_flag),
        ("already linked (nothing to do)", already),
        ("repeated rows (same data)", duplicate),
        ("rejected", rejected),
    ]
    lines = [f"Import plan for clinic NORD: {name} ({how}), {total} row(s)"]
    lines += [f"  {label:<30}  {n:>8}" for label, n in counts]
    return "\n".join(lines) + "\n"


def danes_rows(flags: bool = False) -> list[tuple[str, ...]]:
    return [(c, n, e, "ja" if flags and i == 1 else "", "") for i, (c, n, e) in enumerate(DANES)]


# --- Excel -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "how"),
    [("cp1252", "CSV, cp1252, semicolon"), ("utf-8-sig", "CSV, utf-8-sig, semicolon")],
)
def test_danish_excel_csv_imports(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path, encoding: str, how: str
) -> None:
    path = write(tmp_path / "patienter.csv", excel_csv(danes_rows(), encoding=encoding))
    r = cli(["patient", "import", str(path), "--yes"])
    assert r.stdout == ""
    notice = (
        "Note: The file is not UTF-8: reading it as Windows-1252 (cp1252), as Excel on "
        "Windows writes it. Pass --encoding to choose another.\n"
        if encoding == "cp1252"
        else ""
    )
    assert r.stderr == (
        notice
        + plan_lines(str(path), how, 4, create=4)
        + "Done at clinic NORD: 4 created, 0 linked, 0 flag(s) set, 0 already there.\n"
        "Activation e-mails queued: 4.\n"
        "E-mails sent: 4.\n"
    )
    names = rows(db_url, home, "SELECT cpr, name, email FROM portal_user ORDER BY cpr")
    assert names == sorted((c.replace("-", ""), n, e) for c, n, e in DANES)
    listed = json.loads(cli("patient list -o json").stdout)
    assert sorted(p["name"] for p in listed) == sorted(n for _, n, _ in DANES)
    assert len(list((home / "maildir" / "new").iterdir())) == 4
    assert "The audit log is intact" in cli("audit verify").stderr + cli("audit verify").stdout


def test_same_file_again_changes_nothing_and_says_so(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    path = write(tmp_path / "p.csv", excel_csv(danes_rows(), encoding="utf-8-sig"))
    cli(["patient", "import", str(path), "--yes"])
    before = counts(db_url, home)
    r = cli(["patient", "import", str(path), "--yes"])
    assert r.stderr == (
        plan_lines(str(path), "CSV, utf-8-sig, semicolon", 4, already=4)
        + "Nothing to change: no row needs a change at clinic NORD.\n"
    )
    after = counts(db_url, home)
    assert after == before
    assert len(import_events(db_url, home, "patient.import")) == 1  # only the first run


# --- the plan, dry run, rejections, report ------------------------------------------------


def test_dry_run_plan_with_rejected_rows_and_report(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    data = (
        "cpr;name;email;no_mitid\n"
        "010203-1234;Ida Hansen;ida@example.dk;\n"  # 2: ok
        "310299-1111;Bad Date;bad@example.dk;\n"  # 3: no such date
        "020304-2345;Bo Berg;not-an-email;\n"  # 4: bad e-mail
        "030405-3456;[bold]Eva[/bold];eva@example.dk;maybe\n"  # 5: bad flag value
        "040506-4567;Carl;carl@example.dk;ja\n"  # 6: flag without confirmation
        "050607-5678;Dan;dan@example.dk;\n"  # 7: same CPR, other data
        "050607-5678;Dan Other;dan2@example.dk;\n"  # 8
        "010203-1234;Ida Hansen;ida@example.dk;\n"  # 9: repeated, same data
        "060708-6789;Too;many;fields;here\n"  # 10
    )
    path = write(tmp_path / "p.csv", data)
    report = tmp_path / "rejected.csv"
    r = cli(["patient", "import", str(path), "--dry-run", "--report", str(report)], expect=3)
    same = (
        "This CPR number is on 2 rows of the file with different data; none of them is "
        "imported. Keep one row per patient and import the file again."
    )
    assert r.stderr == (
        plan_lines(str(path), "CSV, utf-8, semicolon", 9, create=1, duplicate=1, rejected=7)
        + "Rejected rows (first 7 of 7):\n"
        "  line 3: Invalid CPR number: 31.02.1999 is not a real date.\n"
        "  line 4: Invalid e-mail address 'not-an-email': An email address must have an "
        "@-sign.\n"
        "  line 5: Invalid no-MitID value 'maybe': use yes/no, ja/nej, 1/0, x or leave it "
        "blank.\n"
        "  line 6: The no-MitID flag needs --confirm-email-owner: confirm for the file that "
        "each flagged patient's e-mail address belongs to the patient or to a person with "
        "power of attorney (R6).\n"
        f"  line 7: {same}\n"
        f"  line 8: {same}\n"
        "  line 10: The row has 5 fields; the header has 4.\n"
        "Dry run: nothing was changed.\n"
        f"Rejected rows written to {report}: 7.\n"
        f"Error: 7 row(s) would be rejected (all are in {report}).\n"
    )
    assert counts(db_url, home)["users"] == 0
    raw = report.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert table[0] == ["line", "row", "reason"]
    assert [row[0] for row in table[1:]] == ["3", "4", "5", "6", "7", "8", "10"]
    assert table[2][1] == "020304-2345;Bo Berg;not-an-email;"
    assert table[5][1] == "050607-5678;Dan;dan@example.dk;"
    assert table[7][1] == "060708-6789;Too;many;fields;here"


def test_rejected_rows_exit_3_after_the_good_ones_are_imported(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "p.csv",
        "cpr,name,email\n010203-1234,Ida,ida@example.dk\n999999-9999,X,x@example.dk\n",
    )
    r = cli(["patient", "import", str(path), "--yes", "--no-invite"], expect=3)
    assert r.stderr.endswith(
        "Done at clinic NORD: 1 created, 0 linked, 0 flag(s) set, 0 already there.\n"
        "Error: 1 row(s) rejected (--report FILE writes them all); the other rows were "
        "handled.\n"
    )
    c = counts(db_url, home)
    assert (c["users"], c["links"], c["codes"], c["outbox"]) == (1, 1, 0, 0)


def test_json_summary(cli: Cli, staff: Staff, tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.jsonl",
        "\n".join(
            [
                '{"cpr": "010203-1234", "navn": "Ida", "e-mail": "ida@example.dk"}',
                '{"cpr": "020304-2345", "name": "Bo", "email": "bo@example.dk", "services": ["booking"]}',
                "not json",
            ]
        )
        + "\n",
    )
    r = cli(["patient", "import", str(path), "--yes", "-o", "json", "--no-send"], expect=3)
    summary = json.loads(r.stdout)
    assert summary == {
        "file": str(path),
        "format": "jsonl",
        "encoding": "utf-8",
        "delimiter": None,
        "clinic": "NORD",
        "dry_run": False,
        "rows": 3,
        "plan": {
            "create": 2,
            "link": 0,
            "set_flag": 0,
            "already": 0,
            "duplicates": 0,
            "rejected": 1,
            "differences": 0,
            "shared_email": 0,
        },
        "applied": {
            "created": 2,
            "linked": 0,
            "flags_set": 0,
            "already": 0,
            "rejected_while_applying": 0,
            "invitations_queued": 2,
            "mails_queued": 2,
        },
        "rejected": 1,
        "rejected_rows": [
            {"line": 3, "reason": "Invalid JSON: Expecting value (column 1)."},
        ],
        "report": None,
    }
    assert "E-mails queued: 2; deliver them with `patientportal mail send`." in r.stderr
    listed = {p["name"]: p["services"] for p in json.loads(cli("patient list -o json").stdout)}
    assert listed == {
        "Bo": ["booking"],
        "Ida": ["e-consultation", "booking", "prescription-renewal"],
    }


# --- flags, existing users -------------------------------------------------------------


def test_flag_with_confirmation_is_set_and_audited(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    path = write(tmp_path / "p.csv", excel_csv(danes_rows(flags=True), encoding="utf-8-sig"))
    r = cli(["patient", "import", str(path), "--yes", "--confirm-email-owner", "-o", "json"])
    # the flag set on a user the import created is counted (issue 12.5)
    assert "Done at clinic NORD: 4 created, 0 linked, 1 flag(s) set, 0 already there.\n" in (
        r.stderr
    )
    summary = json.loads(r.stdout)
    assert (summary["plan"]["set_flag"], summary["applied"]["flags_set"]) == (0, 1)
    flagged = rows(
        db_url,
        home,
        "SELECT u.cpr, l.no_mitid, l.email_owner_confirmed_by, l.email_owner_confirmed_email "
        "FROM clinic_link l JOIN portal_user u ON u.id = l.user_id WHERE l.no_mitid = :t",
        t=True,
    )
    assert flagged == [("0203042345", True, "anna", "aase@example.dk")]
    [event] = import_events(db_url, home, "no_mitid.set")
    assert event["target"] == "cpr:0203042345"
    assert event["email_owner_confirmed_by"] == "anna"
    assert event["source"] == "import"
    [summary] = import_events(db_url, home, "patient.import")
    assert summary["confirm_email_owner"] is True and summary["flags_set"] == 1
    templates = rows(db_url, home, "SELECT template FROM outbox ORDER BY template")
    assert templates == [("activation",)] * 4 + [("no_mitid_set",)]


def test_existing_user_is_linked_and_flag_set_on_existing_link(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    # Ida exists (created at another clinic), Bo is already a patient here without flag
    cli(["clinic", "create", "SYD", "--name", "Sydklinikken"])
    cli(
        [
            "patient",
            "create",
            "010203-1234",
            "--name",
            "Ida Hansen",
            "--email",
            "ida@example.dk",
            "--clinic",
            "SYD",
            "--no-invite",
        ]
    )
    cli(
        [
            "patient",
            "create",
            "020304-2345",
            "--name",
            "Bo",
            "--email",
            "bo@example.dk",
            "--no-invite",
            "--clinic",
            "NORD",
        ]
    )
    path = write(
        tmp_path / "p.csv",
        "cpr;name;email;no_mitid\n"
        "010203-1234;Ida H. Hansen;ida@example.dk;\n"
        "020304-2345;Bo;bo@example.dk;x\n"
        "030405-3456;Eva;eva@example.dk;\n",
    )
    r = cli(["patient", "import", str(path), "--yes", "--confirm-email-owner", "--clinic", "NORD"])
    assert r.stderr.startswith(
        plan_lines(str(path), "CSV, utf-8, semicolon", 3, create=1, link=1, set_flag=1)
        + "  1 existing user(s) have another name or e-mail in the file; the portal keeps "
        "theirs (R1).\n"
        "Done at clinic NORD: 1 created, 1 linked, 1 flag(s) set, 0 already there.\n"
    )
    c = counts(db_url, home)
    assert (c["users"], c["links"], c["duplicate_cprs"]) == (3, 4, 0)
    assert rows(db_url, home, "SELECT name FROM portal_user WHERE cpr = '0102031234'") == [
        ("Ida Hansen",)
    ]
    created = [e for e in import_events(db_url, home, "patient.create") if e.get("source")]
    ida = next(e for e in created if e["target"] == "cpr:0102031234")
    assert ida["user_created"] is False
    assert ida["differences"] == ["name"]  # which field, not the stored value
    # again: nothing to do
    r = cli(["patient", "import", str(path), "--yes", "--confirm-email-owner", "--clinic", "NORD"])
    assert "Nothing to change" in r.stderr


# --- input problems -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("", "{p} is empty: expected a header line with the columns "),
        ("cpr;navn\n010203-1234;Ida\n", "{p}: missing required column(s) email. "),
        ("cpr;name;email;phone\n", "{p}: unknown column(s) 'phone'. "),
        ("cpr;cprnr;name;email\n", "{p}: repeated column(s) 'cprnr'. "),
    ],
)
def test_unreadable_files_exit_2_and_write_nothing(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path, data: str, message: str
) -> None:
    path = write(tmp_path / "p.csv", data)
    r = cli(["patient", "import", str(path), "--yes"], expect=2)
    assert r.stderr.startswith("Error: " + message.format(p=path))
    assert counts(db_url, home)["users"] == 0


def test_header_only_file(cli: Cli, staff: Staff, tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "CPR;Navn;Mail\r\n")
    r = cli(["patient", "import", str(path), "--yes"])
    assert r.stderr == f"{path} has a header but no rows: nothing to import.\n"


def test_no_terminal_and_no_yes_exits_2(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    path = write(tmp_path / "p.csv", excel_csv(danes_rows(), encoding="utf-8-sig"))
    r = cli(["patient", "import", str(path)], expect=2)
    assert r.stderr.endswith("Error: Missing confirmation: pass --yes (no terminal to ask on).\n")
    assert counts(db_url, home)["users"] == 0


def test_standard_input_and_tab_delimiter(cli: Cli, staff: Staff, tmp_path: Path) -> None:
    data = "Navn\tCPR\tE-mail\nIda\t0102031234\tida@example.dk\n"
    r = cli(["patient", "import", "-", "--yes", "--no-invite"], input=data)
    assert r.stderr.startswith(plan_lines("standard input", "CSV, utf-8, tab", 1, create=1))


def test_not_logged_in_exits_4(cli: Cli, staff: Staff, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    path = write(tmp_path / "p.csv", excel_csv(danes_rows(), encoding="utf-8-sig"))
    cli(["patient", "import", str(path), "--yes"], expect=4)


@pytest.mark.parametrize(("answer", "code"), [("y", 0), ("n", 1)])
def test_confirmation_on_a_terminal(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path, answer: str, code: int
) -> None:
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from patientportal_cli import prompts

    path = write(tmp_path / "p.csv", excel_csv(danes_rows(), encoding="utf-8-sig"))
    with create_pipe_input() as pipe:
        pipe.send_text(answer)
        with prompts.use_io(pipe, DummyOutput()):
            r = cli(["patient", "import", str(path), "--no-send"], expect=code)
    if code:
        assert r.stderr.endswith("Error: Not confirmed; nothing was imported.\n")
        assert counts(db_url, home)["users"] == 0
    else:
        assert counts(db_url, home)["users"] == 4
