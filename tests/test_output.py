"""output.py: literal rendering of outside text, CPR masking, formats, NO_COLOR."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from patientportal_cli import output
from patientportal_cli.db import engine as engine_mod
from patientportal_cli.output import Output, format_cpr, literal, mask_cpr
from tests.helpers.cli import Cli, lines
from tests.helpers.cli import Staff as StaffHelper

NASTY = ["[bold]x[/]", "[/oops]", ":smile:", "\x1b[2J", "[link=http://x]y[/link]", "\u202eevil"]
SHOWN = ["[bold]x[/]", "[/oops]", ":smile:", "\\x1b[2J", "[link=http://x]y[/link]", "\\u202eevil"]
COLUMNS = [("name", "Name"), ("cpr", "CPR")]


# --- helpers -------------------------------------------------------------------------


def test_mask_and_format_cpr() -> None:
    assert mask_cpr("0102031234") == "010203-****"
    assert mask_cpr("010203-1234") == "010203-****"
    assert mask_cpr("12345") == "******-****"
    assert mask_cpr("") == "******-****"
    assert format_cpr("0102031234") == "010203-1234"
    assert format_cpr("12345") == "12345"


def test_literal_escapes_control_and_format_characters_only() -> None:
    assert literal("Søren Ærø Åse") == "Søren Ærø Åse"
    assert literal("[bold]x[/] :smile:") == "[bold]x[/] :smile:"
    assert literal("\x1b[2J") == "\\x1b[2J"
    assert literal("a\nb\tc\x00") == "a\\x0ab\\x09c\\x00"
    assert literal("\u202eabc\u200b") == "\\u202eabc\\u200b"
    assert literal("line\u2028sep") == "line\\u2028sep"


# --- formats -------------------------------------------------------------------------


def test_markup_and_escapes_are_shown_literally_in_every_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [{"name": n, "cpr": "0102031234"} for n in NASTY]
    Output("table").rows(rows, COLUMNS, title="[red]T[/]")
    table = capsys.readouterr()
    assert "\x1b" not in table.out and table.err == ""
    assert lines(table.out) == [
        "[red]T[/]",
        "Name                      CPR",
        "-",
        *[f"{s:<25} 010203-****" for s in SHOWN],
    ]
    Output("csv").rows(rows, COLUMNS)
    out = capsys.readouterr().out
    assert out.splitlines() == ["name,cpr", *[f"{s},010203-****" for s in SHOWN]]
    Output("json").rows(rows, COLUMNS)
    out = capsys.readouterr().out
    assert "\x1b" not in out  # JSON escapes it as \u001b
    assert json.loads(out) == [{"name": n, "cpr": "010203-****"} for n in NASTY]


def test_record_and_messages_are_literal(capsys: pytest.CaptureFixture[str]) -> None:
    Output("table").record({"name": "[bold]x[/] \x1b[2J", "active": True, "none": None})
    assert lines(capsys.readouterr().out) == ["name    [bold]x[/] \\x1b[2J", "active  yes", "none"]
    Output("csv").record({"name": "[/oops]", "active": False})
    assert capsys.readouterr().out == "name,active\n[/oops],no\n"
    Output("json").record(
        {"name": ":smile:", "active": False, "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    )
    assert json.loads(capsys.readouterr().out) == {
        "name": ":smile:",
        "active": False,
        "at": "2026-01-02T03:04:05Z",
    }
    o = Output("table")
    o.message("[bold]not bold[/] :smile:")
    o.warn("[/oops]")
    o.success("\x1b[2J done")
    output.error("multi\nline [red]")
    o.data_line("pp_token[/]")
    captured = capsys.readouterr()
    assert captured.err == (
        "[bold]not bold[/] :smile:\nWarning: [/oops]\n\\x1b[2J done\nError: multi\\x0aline [red]\n"
    )
    assert captured.out == "pp_token[/]\n"


def test_empty_listings(capsys: pytest.CaptureFixture[str]) -> None:
    Output("table").rows([], COLUMNS, empty="No patients.")
    assert capsys.readouterr() == ("", "No patients.\n")
    Output("csv").rows([], COLUMNS)
    assert capsys.readouterr() == ("name,cpr\n", "")
    Output("json").rows([], COLUMNS)
    assert capsys.readouterr() == ("[]\n", "")


def test_lists_and_nested_objects(capsys: pytest.CaptureFixture[str]) -> None:
    row = {"services": ["booking", "e-consultation"], "details": {"new": True, "n": 2, "x": None}}
    cols = [("services", "Services"), ("details", "Details")]
    Output("csv").rows([row], cols)
    assert capsys.readouterr().out == (
        'services,details\n"booking, e-consultation","{""n"": 2, ""new"": true, ""x"": null}"\n'
    )
    Output("json").rows([row], cols)
    assert json.loads(capsys.readouterr().out) == [row]
    Output("csv").rows([{"services": [{"a": 1}, None, "x"], "details": {}}], cols)
    assert capsys.readouterr().out == 'services,details\n"{""a"": 1}, , x",{}\n'


# --- CPR masking ---------------------------------------------------------------------


def test_free_text_masking_of_audit_targets_and_details(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"target": "patient:0102031234", "details": {"cpr": "0203041234"}},
        {
            "target": "010203-1234,0203041234",
            "details": {"cprs": ["0304051234"], "note": "ring 0405061234"},
        },
        {"target": "token:12", "details": {"phone": "12345678", "long": "01020312345"}},
    ]
    Output("json").rows(rows, [("target", "Target"), ("details", "Details")])
    assert json.loads(capsys.readouterr().out) == [
        {"target": "patient:010203-****", "details": {"cpr": "020304-****"}},
        {
            "target": "010203-****,020304-****",
            "details": {"cprs": ["030405-****"], "note": "ring 040506-****"},
        },
        {"target": "token:12", "details": {"phone": "12345678", "long": "01020312345"}},
    ]
    Output("table").rows(rows, [("target", "Target"), ("details", "Details")])
    out = capsys.readouterr().out
    assert "010203-****,020304-****" in out and "01020312345" in out
    for digits in ("0203041234", "0304051234", "0405061234", "patient:0102031234"):
        assert digits not in out


def test_show_cpr_reveals_only_when_the_reveal_is_reported(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [{"name": "A", "cpr": "0102031234"}, {"name": "B", "cpr": "0203041234"}]
    Output("json", show_cpr=True).rows(rows, COLUMNS)  # nobody to report to: masked
    assert [r["cpr"] for r in json.loads(capsys.readouterr().out)] == ["010203-****", "020304-****"]
    reported: list[list[str]] = []
    o = Output("csv", show_cpr=True, on_reveal=reported.append)
    o.rows(rows, COLUMNS)
    assert capsys.readouterr().out == "name,cpr\nA,010203-1234\nB,020304-1234\n"
    assert reported == [["0102031234", "0203041234"]]
    o.rows([], COLUMNS)  # nothing shown, nothing reported
    assert reported == [["0102031234", "0203041234"]]


# --- colour --------------------------------------------------------------------------


def test_no_color_is_respected(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # as on a terminal
    output.error("boom")
    Output("table").success("fine")
    Output("table").rows([{"name": "A", "cpr": "0102031234"}], COLUMNS)
    coloured = capsys.readouterr()
    assert "\x1b[31mError: boom\x1b[0m" in coloured.err
    assert "\x1b[" in coloured.out
    monkeypatch.setenv("NO_COLOR", "1")
    output.error("boom")
    Output("table").success("fine")
    Output("table").rows([{"name": "A", "cpr": "0102031234"}], COLUMNS)
    plain = capsys.readouterr()
    assert plain.err == "Error: boom\nfine\n"
    assert not re.search(r"\x1b\[[0-9;]*3[0-9]", plain.out)  # bold headers, no colour


# --- through the CLI, with text that got into the database ---------------------------


def test_listings_never_crash_on_stored_markup_and_escapes(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    """Names are validated on the way in, but a database may hold anything."""
    nasty = "[bold]x[/] [/oops] :smile: \x1b[2J"
    with Session(engine_mod.get_engine(db_url, home)) as s:
        s.execute(text("UPDATE clinic SET name = :n"), {"n": nasty})
        s.execute(text("UPDATE staff SET full_name = :n"), {"n": nasty})
        s.commit()
    shown = "[bold]x[/] [/oops] :smile: \\x1b[2J"
    r = cli("clinic list")
    assert "\x1b" not in r.stdout
    assert lines(r.stdout)[2].startswith(f"NORD   {shown}   none")
    assert cli("clinic list -o csv").stdout.splitlines()[1].startswith(f"NORD,{shown},none,")
    assert json.loads(cli("clinic list -o json").stdout)[0]["name"] == nasty
    assert f"name                {shown}" in lines(cli("clinic show").stdout)
    assert lines(cli("staff list").stdout)[3].startswith(f"anna       {shown}   admin")
    assert json.loads(cli("whoami -o json").stdout)["full_name"] == nasty
    r = cli("clinic set-registration open")
    assert r.stderr == (
        "Clinic NORD: registration mode none -> open (Online selv-oprettelse uden "
        "læge-godkendelse).\n"
    )
