"""Reading import files (no database): encodings, delimiters, headers, rows, JSON Lines."""

from __future__ import annotations

import codecs
import io
from pathlib import Path
from typing import Any

import pytest

from patientportal_cli.errors import EXIT_USAGE, InvalidInput
from patientportal_cli.services.importing.reader import FIELDS, open_import
from tests.helpers.csv_files import write

ROW = ("010203-1234", "Søren Ærø", "soren@example.dk", "ja", "booking")


def read(path: Path, **kw: Any) -> tuple[object, list[tuple[int, tuple[object, ...], object]]]:
    with open_import(str(path), **kw) as f:
        return f, [(r.line, r.values, r.error) for r in f.rows()]


@pytest.mark.parametrize(
    ("encoding", "detected", "notice"),
    [
        ("utf-8", "utf-8", False),
        ("utf-8-sig", "utf-8-sig", False),
        ("cp1252", "cp1252", True),
        ("utf-16", "utf-16", False),
    ],
)
def test_encodings(tmp_path: Path, encoding: str, detected: str, notice: bool) -> None:
    text = "CPR-nummer;Navn;E-mail;Ingen MitID;Ydelser\r\n" + ";".join(ROW) + "\r\n"
    path = write(tmp_path / "x.csv", text.encode(encoding))
    f, rows = read(path)
    assert f.encoding == detected  # type: ignore[attr-defined]
    assert bool(f.notices) is notice  # type: ignore[attr-defined]
    assert rows == [(2, ROW, None)]


def test_encoding_option_overrides_and_is_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path / "x.csv", "cpr;navn;mail\n010203-1234;Åse;a@example.dk\n".encode("cp1252")
    )
    f, rows = read(path, encoding="latin-1")
    assert rows[0][1][1] == "Åse" and not f.notices  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="Unknown encoding 'klingon'"):
        open_import(str(path), encoding="klingon")


def test_undecodable_with_forced_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", b"cpr;navn;mail\n010203-1234;\xff\xfe\x81;a@example.dk\n")
    with pytest.raises(InvalidInput, match="cannot be read as utf-8") as err:
        read(path, encoding="utf-8")
    assert err.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(("delimiter", "name"), [(";", ";"), (",", ","), ("\t", "\t")])
def test_delimiter_sniffed(tmp_path: Path, delimiter: str, name: str) -> None:
    lines = [
        delimiter.join(["Email", "Name", "CPR"]),
        delimiter.join(["a@example.dk", "A, B", "0102031234"]),
    ]
    if delimiter == ",":
        lines[1] = 'a@example.dk,"A, B",0102031234'
    path = write(tmp_path / "x.csv", "\n".join(lines) + "\n")
    f, rows = read(path)
    assert f.delimiter == name  # type: ignore[attr-defined]
    assert rows == [(2, ("0102031234", "A, B", "a@example.dk", None, None), None)]


def test_delimiter_option(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "cpr|name|email\n0102031234|A|a@example.dk\n")
    _, rows = read(path, delimiter="|")
    assert rows[0][1][:3] == ("0102031234", "A", "a@example.dk")
    with pytest.raises(InvalidInput, match="Invalid delimiter"):
        open_import(str(path), delimiter=";;")


@pytest.mark.parametrize(
    "header",
    [
        "cpr,name,email,no_mitid,services",
        "CPR,NAVN,E-MAIL,INGEN_MITID,YDELSER",
        "Cpr-Nummer,Navn,Mail,Ingen MitID,Ydelser",
        "cprnr,name,e-mail,no-mitid,services",
        "\ufeffcpr , name , email , ingen mitid , services",
    ],
)
def test_header_aliases(tmp_path: Path, header: str) -> None:
    path = write(tmp_path / "x.csv", header + "\n0102031234,A,a@example.dk,x,booking\n")
    f, rows = read(path)
    assert sorted(f.columns) == sorted(FIELDS)  # type: ignore[attr-defined]
    assert rows[0][1] == ("0102031234", "A", "a@example.dk", "x", "booking")


def test_line_numbers_blank_lines_multiline_cells_and_wrong_width(tmp_path: Path) -> None:
    data = (
        "\n"
        "cpr;name;email\r\n"
        "0102031234;A;a@example.dk\r\n"
        "\r\n"
        ";;\r\n"
        '0203042345;"Two\r\nlines";b@example.dk\r\n'
        "0304053456;C;c@example.dk;extra\r\n"
        "0405064567;D;d@example.dk\r\n"
    )
    path = write(tmp_path / "x.csv", data)
    _, rows = read(path)
    assert [(line, error) for line, _, error in rows] == [
        (3, None),
        (6, None),
        (8, "The row has 4 fields; the header has 3."),
        (9, None),
    ]
    assert rows[1][1][1] == "Two\r\nlines"


def test_jsonl(tmp_path: Path) -> None:
    data = (
        '{"CPR": "0102031234", "Navn": "Ærø", "mail": "a@example.dk", "ingen_mitid": true}\n'
        "\n"
        '{"cpr": "0203042345", "name": "B", "email": "b@example.dk", "services": ["booking"]}\n'
        "[1, 2]\n"
        '{"cpr": "x", "name": "C", "email": "c@example.dk", "phone": "1"}\n'
        "{broken\n"
    )
    path = write(tmp_path / "x.jsonl", data)
    f, rows = read(path)
    assert f.format == "jsonl"  # type: ignore[attr-defined]
    assert rows[0] == (1, ("0102031234", "Ærø", "a@example.dk", True, None), None)
    assert rows[1] == (3, ("0203042345", "B", "b@example.dk", None, ["booking"]), None)
    assert rows[2][2] == 'Invalid JSON Lines row: expected an object such as {"cpr": ...}.'
    assert rows[3][2] is not None and rows[3][2].startswith("Unknown field(s) 'phone'")
    assert rows[4][2] is not None and rows[4][2].startswith("Invalid JSON: ")


def test_jsonl_first_line_must_be_an_object_with_the_columns(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="line 1 is not JSON Lines"):
        open_import(str(write(tmp_path / "a.jsonl", "nope\n")))
    with pytest.raises(InvalidInput, match="missing required column"):
        open_import(str(write(tmp_path / "b.jsonl", '{"cpr": "0102031234"}\n')))
    with pytest.raises(InvalidInput, match="is empty: expected one JSON object per line"):
        open_import(str(write(tmp_path / "c.jsonl", "\n\n")))


def test_format_option_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path / "data.txt", '{"cpr": "0102031234", "name": "A", "email": "a@x.dk"}\n')
    with open_import(str(path), format="jsonl") as f:
        assert [r.values[0] for r in f.rows()] == ["0102031234"]
    with pytest.raises(InvalidInput, match="Unknown format"):
        open_import(str(path), format="xlsx")
    with pytest.raises(InvalidInput, match="No such file"):
        open_import(str(tmp_path / "missing.csv"))


def test_stdin_is_spooled_and_removed(tmp_path: Path) -> None:
    data = codecs.BOM_UTF8 + "cpr;navn;email\r\n0102031234;Ø;o@example.dk\r\n".encode()
    f = open_import("-", stdin=io.BytesIO(data))
    spooled = f.path
    assert f.name == "standard input" and spooled.exists()
    assert [r.values[1] for r in f.rows()] == ["Ø"]
    assert [r.values[1] for r in f.rows()] == ["Ø"]  # a second pass reads it again
    f.close()
    assert not spooled.exists()
