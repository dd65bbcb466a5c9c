"""Import edges: each a rejected row or one clear error (exit 2), never "Unexpected":
deeply nested JSON, huge numbers, over-long rows, files that mix UTF-8 and cp1252, and a
--report that is the input file or cannot be written (refused before phase one)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tracemalloc
from pathlib import Path

import pytest

from patientportal_cli.errors import EXIT_USAGE, InvalidInput
from patientportal_cli.services.importing.reader import MAX_ROW, open_import
from tests.helpers.cli import Cli, Staff
from tests.helpers.csv_files import write
from tests.helpers.db import counts, rows

GOOD = {"cpr": "010203-1234", "name": "Ida Holm", "email": "ida@example.dk"}
DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "7" * 5000
TOO_LONG = "line {n} is longer than 1,048,576 characters (1 MiB), the limit for one row"


def reasons(path: Path) -> list[tuple[int, str | None]]:
    with open_import(str(path)) as f:
        return [(r.line, r.error) for r in f.rows()]


def report_rows(path: Path, delimiter: str = ",") -> list[list[str]]:
    text = path.read_bytes().decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def one_error_line(stderr: str) -> str:
    assert stderr.startswith("Error: ") and stderr.count("\n") == 1, stderr
    assert "Unexpected" not in stderr
    return stderr[len("Error: ") : -1]


# --- JSON Lines: nesting and numbers (reader) ----------------------------------------------


def test_deeply_nested_and_huge_numbers_are_rejected_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.jsonl",
        "\n".join(
            [
                json.dumps(GOOD),
                '{"cpr": ' + DEEP + "}",
                DEEP,
                '{"cpr": "020304-2345", "name": "Bo", "email": "b@example.dk", "no_mitid": '
                + HUGE
                + "}",
                '{"cpr": 1e999999}',
            ]
        )
        + "\n",
    )
    nested = "Invalid JSON: nested too deeply (a row is one flat object)."
    assert reasons(path) == [
        (1, None),
        (2, nested),
        (3, nested),
        (4, "Invalid JSON: a number with more than 4,300 digits."),
        (5, None),  # a float overflows to infinity: the CPR check rejects it later
    ]


def test_first_line_nested_too_deeply_is_a_file_error(tmp_path: Path) -> None:
    path = write(tmp_path / "p.jsonl", DEEP + "\n")
    with pytest.raises(InvalidInput, match="line 1 is not JSON Lines: Invalid JSON: nested") as e:
        open_import(str(path))
    assert e.value.exit_code == EXIT_USAGE


# --- over-long rows (reader) -------------------------------------------------------------


def test_a_100_mb_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    with open(path, "wb") as handle:
        handle.write(b"cpr;navn;mail\n010203-1234;Ida;ida@example.dk\n")
        block = b"x" * (1 << 20)
        for _ in range(100):
            handle.write(block)
        handle.write(b"\n020304-2345;Bo;bo@example.dk\n")
    tracemalloc.start()
    try:
        with open_import(str(path)) as f, pytest.raises(InvalidInput) as err:
            for _row in f.rows():
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(err.value) == (
        f"{path}: the row starting at {TOO_LONG.format(n=3)} (is a closing quote missing?); "
        "this is not a patient list as exported. Nothing was imported."
    )
    assert peak < 16 * (1 << 20), peak  # a few MiB, not 100


def test_a_row_of_short_lines_that_never_ends_is_refused(tmp_path: Path) -> None:
    # an unclosed quote: the rest of the file would be one cell
    body = "".join(f"{i:07d} more text\n" for i in range(70_000))
    path = write(tmp_path / "p.csv", 'cpr;navn;mail\n010203-1234;"Ida;ida@example.dk\n' + body)
    with (
        open_import(str(path)) as f,
        pytest.raises(InvalidInput, match=re.escape(TOO_LONG.format(n=2))),
    ):
        list(f.rows())


def test_a_long_cell_below_the_row_limit_is_a_row_not_a_csv_error(tmp_path: Path) -> None:
    long_name = "A" * 300_000  # over csv's default 131,072 per cell, under MAX_ROW
    path = write(tmp_path / "p.csv", f"cpr;navn;mail\n010203-1234;{long_name};i@example.dk\n")
    with open_import(str(path)) as f:
        [row] = list(f.rows())
    assert row.error is None and row.values[1] == long_name


def test_row_limit_boundaries(tmp_path: Path) -> None:
    prefix = '{"cpr": "010203-1234", "email": "i@example.dk", "name": "'
    fits = prefix + "A" * (MAX_ROW - len(prefix) - 3) + '"}\n'
    assert len(fits) == MAX_ROW
    path = write(tmp_path / "p.jsonl", json.dumps(GOOD) + "\n" + fits)
    assert reasons(path) == [(1, None), (2, None)]
    path = write(tmp_path / "q.jsonl", json.dumps(GOOD) + "\n" + "x" + fits)
    with open_import(str(path)) as f, pytest.raises(InvalidInput, match="line 2 is longer"):
        list(f.rows())
    header = write(tmp_path / "h.csv", "cpr;navn;" + "x" * MAX_ROW + "\n")
    with pytest.raises(InvalidInput, match=re.escape(TOO_LONG.format(n=1))):
        open_import(str(header))


# --- encodings (reader) ------------------------------------------------------------------

MIXED = (
    b"cpr;navn;mail\r\n"
    + "010203-1234;Søren Ærø;soren@example.dk\r\n".encode()
    + "020304-2345;Åse Østergård;aase@example.dk\r\n".encode("cp1252")
)


def test_utf8_mixed_with_cp1252_is_refused_naming_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", MIXED)
    with pytest.raises(InvalidInput) as err:
        open_import(str(path))
    assert err.value.exit_code == EXIT_USAGE
    assert str(err.value) == (
        f"{path} mixes two encodings: line 2 is UTF-8 (it has 'ø') but line 3 is not; "
        "read as either, some names would be garbled. Save the file again in one encoding "
        "(in Excel: CSV UTF-8), or pass --encoding cp1252 to read all of it as Windows-1252."
    )
    with open_import(str(path), encoding="cp1252") as f:  # the user's explicit choice
        assert [r.values[1] for r in f.rows()] == ["SÃ¸ren Ã†rÃ¸", "Åse Østergård"]


def test_mixed_far_into_a_file_is_found(tmp_path: Path) -> None:
    lines = [f"{i:06d}-0000;Åse;a{i}@example.dk\n" for i in range(60_000)]
    data = b"cpr;navn;mail\n" + "".join(lines).encode("cp1252") + "x;Søren;s\n".encode()
    path = write(tmp_path / "p.csv", data)
    with pytest.raises(InvalidInput, match="line 60002 is UTF-8 .* but line 2 is not"):
        open_import(str(path))


@pytest.mark.parametrize("text", ["Søren Ærø Åse Østergård", "ÆBLE–ØSTER ©", "ß ÿ ü"])
def test_plain_cp1252_still_reads_with_its_notice(tmp_path: Path, text: str) -> None:
    path = write(
        tmp_path / "p.csv", f"cpr;navn;mail\n010203-1234;{text};i@example.dk\n".encode("cp1252")
    )
    with open_import(str(path)) as f:
        assert f.encoding == "cp1252" and f.notices
        assert [r.values[1] for r in f.rows()] == [text]


# --- through the CLI, both backends --------------------------------------------------------


def test_edge_rows_are_rejected_and_reported_the_rest_imported(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "p.jsonl",
        "\n".join(
            [
                json.dumps(GOOD),
                '{"cpr": ' + DEEP + "}",
                '{"cpr": "020304-2345", "name": "Bo", "email": "b@example.dk", "no_mitid": '
                + HUGE
                + "}",
            ]
        )
        + "\n",
    )
    report = tmp_path / "afviste.csv"
    r = cli(
        ["patient", "import", str(path), "--yes", "--no-invite", "--report", str(report)], expect=3
    )
    assert "Unexpected" not in r.stderr
    assert "  line 2: Invalid JSON: nested too deeply (a row is one flat object).\n" in r.stderr
    assert "  line 3: Invalid JSON: a number with more than 4,300 digits.\n" in r.stderr
    assert r.stderr.endswith(
        f"Error: 2 row(s) rejected (all are in {report}); the other rows were handled.\n"
    )
    assert rows(db_url, home, "SELECT cpr FROM portal_user") == [("0102031234",)]
    table = report_rows(report)
    assert [(line, text[:20]) for line, text, _ in table[1:]] == [
        ("2", '{"cpr": ' + "[" * 12),  # the long row, read again from the file for the report
        ("3", '{"cpr": "020304-2345'),
    ]
    assert len(table[1][1]) == len('{"cpr": ' + DEEP + "}")


def test_csv_flag_of_5000_digits_is_a_rejected_row(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "p.csv", f"cpr;navn;mail;ingen mitid\n010203-1234;Ida;i@example.dk;{HUGE}\n"
    )
    r = cli(["patient", "import", str(path), "--yes"], expect=3)
    assert f"  line 2: Invalid no-MitID value '{'7' * 40}...': use yes/no" in r.stderr
    assert counts(db_url, home)["users"] == 0


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_over_long_row_is_one_error_and_nothing_is_written(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path, kind: str
) -> None:
    head = "cpr;navn;mail\n010203-1234;Ida;ida@example.dk\n" if kind == "csv" else ""
    first = json.dumps(GOOD) + "\n" if kind == "jsonl" else ""
    path = write(tmp_path / f"p.{kind}", head + first + "y" * (3 * MAX_ROW) + "\n")
    r = cli(["patient", "import", str(path), "--yes"], expect=2)
    message = one_error_line(r.stderr.splitlines(keepends=True)[-1])
    where = "the row starting at line 3" if kind == "csv" else "line 2"
    assert message.startswith(f"{path}: {where} is longer than 1,048,576 characters (1 MiB)")
    assert counts(db_url, home)["users"] == 0


def test_mixed_encoding_exits_2_and_cp1252_still_imports(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    path = write(tmp_path / "p.csv", MIXED)
    r = cli(["patient", "import", str(path), "--yes", "--no-invite"], expect=2)
    assert r.stdout == ""
    assert one_error_line(r.stderr).startswith(f"{path} mixes two encodings: line 2 is UTF-8")
    assert "--encoding cp1252" in r.stderr
    assert counts(db_url, home)["users"] == 0
    plain = write(
        tmp_path / "q.csv",
        "cpr;navn;mail\r\n010203-1234;Åse Østergård;aase@example.dk\r\n".encode("cp1252"),
    )
    r = cli(["patient", "import", str(plain), "--yes", "--no-invite"])
    assert r.stderr.startswith("Note: The file is not UTF-8: reading it as Windows-1252")
    assert rows(db_url, home, "SELECT name FROM portal_user") == [("Åse Østergård",)]


def bad_reports(tmp_path: Path, source: Path) -> list[tuple[Path, str]]:
    folder = tmp_path / "rapporter"
    folder.mkdir()
    a_file = write(tmp_path / "notes.txt", "x")
    link = tmp_path / "link.csv"
    link.symlink_to(source)
    hard = tmp_path / "hard.csv"
    os.link(source, hard)
    same = (
        "is the file being imported; the report would overwrite it. Give the report another name."
    )
    return [
        (source, f"--report {source} {same}"),
        (link, f"--report {link} {same}"),
        (hard, f"--report {hard} {same}"),
        (
            folder,
            f"--report {folder} is a folder; give a file name, e.g. {folder / 'afviste.csv'}.",
        ),
        (
            tmp_path / "missing" / "r.csv",
            f"Cannot write the report {tmp_path / 'missing' / 'r.csv'}: "
            f"{tmp_path / 'missing'} does not exist.",
        ),
        (
            a_file / "r.csv",
            f"Cannot write the report {a_file / 'r.csv'}: {a_file} is not a folder.",
        ),
    ]


def test_bad_report_paths_are_refused_before_anything_is_done(
    cli: Cli, staff: Staff, db_url: str, home: Path, tmp_path: Path
) -> None:
    data = "cpr;navn;mail\n010203-1234;Ida;ida@example.dk\nbad;Bo;bo@example.dk\n"
    source = write(tmp_path / "p.csv", data)
    for report, message in bad_reports(tmp_path, source):
        r = cli(
            ["patient", "import", str(source), "--yes", "--no-invite", "--report", str(report)],
            expect=2,
        )
        assert (r.stdout, one_error_line(r.stderr)) == ("", message)
        assert source.read_text() == data
    assert counts(db_url, home)["users"] == 0
    spool = home / "spool"
    assert not spool.exists() or not any(spool.iterdir())


def test_report_from_standard_input_and_relative_name(
    cli: Cli, staff: Staff, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = "cpr;navn;mail\nbad;Bo;bo@example.dk\n"
    r = cli(
        ["patient", "import", "-", "--dry-run", "--report", "afviste.csv"], input=data, expect=3
    )
    assert "Rejected rows written to afviste.csv: 1." in r.stderr
    assert report_rows(tmp_path / "afviste.csv", ";")[1][:2] == ["2", "bad;Bo;bo@example.dk"]
