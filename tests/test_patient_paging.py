"""`patient list --limit N --after CURSOR` and streamed CSV/JSON (both backends).

Pages follow the name order (then the user id, so equal names page correctly), the next
page's cursor is printed on stderr only when the limit stopped the listing, a bad cursor
is one line and exit 2, streamed JSON/CSV are the same text the whole-list rendering
gave, and each page is one audit event with its own count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patientportal_cli.output import Output
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import db_session, events

# (CPR, name): two share a name, to page through a tie
PATIENTS = [
    ("010203-1234", "Ida Hansen"),
    ("020304-2345", "Zoë Ørsted"),
    ("030405-3456", "Bo Berg"),
    ("040506-4567", "Bo Berg"),
    ("050607-5678", "Carl Dam"),
]


def _create_all(cli: Cli) -> None:
    for i, (cpr, name) in enumerate(PATIENTS):
        cli(
            [
                "patient",
                "create",
                cpr,
                "--name",
                name,
                "--email",
                f"p{i}@example.dk",
                "--no-invite",
            ]
        )


def _cursor(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if line.startswith("More patients: --after "):
            return line.removeprefix("More patients: --after ")
    return None


def test_pages_follow_the_name_order_and_cover_everyone_once(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    _create_all(cli)
    whole = json.loads(cli("patient list -o json").stdout)
    assert [r["name"] for r in whole] == [
        "Bo Berg",
        "Bo Berg",
        "Carl Dam",
        "Ida Hansen",
        "Zoë Ørsted",
    ]
    seen: list[dict[str, object]] = []
    after: str | None = None
    pages = 0
    while True:
        args = ["patient", "list", "-o", "json", "--limit", "2"]
        if after is not None:
            args += ["--after", after]
        r = cli(args)
        page = json.loads(r.stdout)
        seen += page
        pages += 1
        after = _cursor(r.stderr)
        if after is None:
            break
        assert len(page) == 2
    assert seen == whole
    assert pages == 3  # 2 + 2 + 1: the last page prints no cursor
    with db_session(db_url, home) as s:
        lists = [d for (_, _, _, _, d) in events(s, "patient.list")]
    assert [d["count"] for d in lists] == [5, 2, 2, 1]
    assert lists[1]["limit"] == 2 and "after" not in lists[1]
    assert lists[2]["after"] is True
    assert "limit" not in lists[0]


def test_a_page_that_ends_exactly_at_the_limit_prints_no_cursor_when_nothing_follows(
    cli: Cli, staff: Staff
) -> None:
    _create_all(cli)
    r = cli("patient list --limit 5 -o csv")
    assert len(r.stdout.splitlines()) == 6
    assert _cursor(r.stderr) is None
    r = cli("patient list --limit 4 -o csv")
    assert len(r.stdout.splitlines()) == 5
    assert _cursor(r.stderr) is not None


def test_bad_cursor_and_limit_are_one_line_exit_2(cli: Cli, staff: Staff) -> None:
    r = cli("patient list --after not-a-cursor", expect=2)
    assert r.stderr == (
        "Error: Invalid --after value: use the one a previous `patientportal patient list "
        "--limit N` printed.\n"
    )
    r = cli("patient list --limit 0", expect=2)
    assert "--limit" in r.stderr and "Traceback" not in r.stderr


def test_search_pages_too(cli: Cli, staff: Staff) -> None:
    _create_all(cli)
    r = cli("patient list --search bo --limit 1 -o json")
    assert [p["cpr"] for p in json.loads(r.stdout)] == ["030405-****"]
    after = _cursor(r.stderr)
    assert after is not None
    r = cli(["patient", "list", "--search", "bo", "--limit", "1", "-o", "json", "--after", after])
    assert [p["cpr"] for p in json.loads(r.stdout)] == ["040506-****"]


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("n", [0, 1, 3, 4, 7])
def test_streamed_output_is_the_text_of_the_whole_list(
    fmt: str, n: int, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"cpr": "0102031234", "name": f"N{i}", "no_mitid": i % 2 == 0} for i in range(n)]
    columns = [("cpr", "CPR"), ("name", "Name"), ("no_mitid", "No MitID")]
    Output(fmt=fmt).rows(rows, columns)
    whole = capsys.readouterr().out
    Output(fmt=fmt).stream_rows(iter(rows), columns, chunk=3)
    assert capsys.readouterr().out == whole
