"""The one place that renders: tables, JSON, CSV, messages; CPR masking; literal text.

Data goes to stdout, messages to stderr. Text that came from outside (names, e-mails,
clinic names, reasons) is never interpreted: Rich markup (``[bold]``), emoji codes
(``:smile:``) and terminal escapes (``\\x1b[2J``) are shown as the characters they are,
with control characters written as visible escapes in tables, CSV and messages. JSON
keeps exact values (its own escaping makes them safe). NO_COLOR is honoured by Rich.

CSV is spreadsheet-safe (OWASP's "CSV injection" guidance): a text cell that begins with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a ``'`` in front, so Excel or
LibreOffice shows it as text instead of running it as a formula (``spreadsheet_safe``;
the import's ``--report`` uses it too). Numbers are left as they are; JSON is unchanged.

CPR numbers are masked (``010203-****``) in every format unless ``--show-cpr`` was
given; a reveal is reported to ``on_reveal`` (the caller writes the audit event) before
anything is printed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from patientportal_cli.services.masking import mask_cpr

FORMATS = ("table", "json", "csv")
CPR_KEYS = frozenset({"cpr", "patient_cpr", "holder_cpr"})
# short values that read badly when wrapped in a table cell
_NO_WRAP_KEYS = frozenset(
    {"cpr", "patient_cpr", "holder_cpr", "id", "at", "created_at", "submitted_at", "linked_at"}
)
# free text that may hold a CPR among other words (audit targets and details)
FREE_TEXT_KEYS = frozenset({"target", "details"})
_CPR_IN_TEXT = re.compile(r"(?<!\d)(\d{6})-?(\d{4})(?!\d)")
# what a spreadsheet reads as the start of a formula (OWASP, CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def format_cpr(cpr: str) -> str:
    return f"{cpr[:6]}-{cpr[6:]}" if len(cpr) == 10 else cpr


def literal(text: str) -> str:
    """Control and format characters as visible escapes; everything else unchanged."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == " " or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def spreadsheet_safe(text: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula: ``'`` before a cell that
    begins with ``=``, ``+``, ``-``, ``@``, tab or carriage return; other text unchanged."""
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_cell(value: Any) -> str:
    """One cell of a CSV listing: literal text, spreadsheet-safe; numbers as they are
    (a negative count stays a number)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return spreadsheet_safe(literal(_cell(value)))


def format_time(value: datetime | None, *, for_json: bool = False) -> str | None:
    if value is None:
        return None
    if for_json:
        return value.isoformat().replace("+00:00", "Z")
    return value.strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class Output:
    """How this command renders: format, CPR reveal, and where reveals are reported."""

    fmt: str = "table"
    show_cpr: bool = False
    on_reveal: Callable[[list[str]], None] | None = None
    _revealed: set[str] = field(default_factory=set)

    # --- values -------------------------------------------------------------------
    def _cpr(self, value: str) -> str:
        if self.show_cpr and self.on_reveal is not None:
            self._revealed.add(value)
            return format_cpr(value)
        return mask_cpr(value)

    def _free_text(self, value: str) -> str:
        def repl(m: re.Match[str]) -> str:
            return self._cpr(m.group(1) + m.group(2))

        return _CPR_IN_TEXT.sub(repl, value)

    def value(self, key: str, value: Any, *, for_json: bool = False) -> Any:
        if value is None:
            return None if for_json else ""
        if isinstance(value, datetime):
            return format_time(value, for_json=for_json)
        if isinstance(value, bool):
            return value if for_json else ("yes" if value else "no")
        if isinstance(value, list | tuple):
            items = [self.value(key, v, for_json=for_json) for v in value]
            return items if for_json else ", ".join(_cell(i) for i in items)
        if isinstance(value, dict):
            # a nested object keeps JSON values (it is shown as JSON in tables and CSV);
            # text anywhere inside free text (audit details) is searched for CPR numbers
            return {
                k: self.value(
                    key if key in FREE_TEXT_KEYS and k not in CPR_KEYS else k, v, for_json=True
                )
                for k, v in value.items()
            }
        if isinstance(value, str):
            if key in CPR_KEYS:
                return self._cpr(value)
            if key in FREE_TEXT_KEYS:
                return self._free_text(value)
        return value

    def _prepare(self, rows: Iterable[dict[str, Any]], *, for_json: bool) -> list[dict[str, Any]]:
        prepared = [{k: self.value(k, v, for_json=for_json) for k, v in r.items()} for r in rows]
        if self._revealed and self.on_reveal is not None:
            self.on_reveal(sorted(self._revealed))
            self._revealed.clear()
        return prepared

    # --- data ---------------------------------------------------------------------
    def rows(
        self,
        rows: Sequence[dict[str, Any]],
        columns: Sequence[tuple[str, str]],
        *,
        title: str | None = None,
        empty: str = "Nothing to show.",
    ) -> None:
        """A list of records; ``columns`` = (key, header) pairs for the table and CSV."""
        if self.fmt == "json":
            self._json(self._prepare(rows, for_json=True))
        elif self.fmt == "csv":
            self._csv(self._prepare(rows, for_json=False), [k for k, _ in columns])
        elif not rows:
            self.message(empty)
        else:
            self._table(self._prepare(rows, for_json=False), columns, title)

    def stream_rows(
        self,
        rows: Iterable[dict[str, Any]],
        columns: Sequence[tuple[str, str]],
        *,
        title: str | None = None,
        empty: str = "Nothing to show.",
        chunk: int = 1000,
    ) -> None:
        """``rows`` for a listing that may be long: JSON and CSV are written as the rows
        come, ``chunk`` at a time (constant memory; the same text as ``rows``), and
        each chunk's CPR reveal is reported before it is printed. A table is laid out
        as a whole, so it is collected first."""
        if self.fmt not in ("json", "csv"):
            self.rows(list(rows), columns, title=title, empty=empty)
            return
        keys = [k for k, _ in columns]
        out = sys.stdout
        started = False
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            nonlocal started
            prepared = self._prepare(batch, for_json=self.fmt == "json")
            batch.clear()
            if self.fmt == "csv":
                buf = io.StringIO()
                writer = csv.writer(buf, lineterminator="\n")
                if not started:
                    writer.writerow(keys)
                for row in prepared:
                    writer.writerow([csv_cell(row.get(k)) for k in keys])
                out.write(buf.getvalue())
            else:
                parts = []
                for row in prepared:
                    item = json.dumps(row, ensure_ascii=False, indent=2, default=str)
                    parts.append(("[\n" if not started else ",\n") + _indent(item))
                    started = True
                out.write("".join(parts))
            started = True
            out.flush()

        for row in rows:
            batch.append(row)
            if len(batch) >= chunk:
                flush()
        if batch or not started:
            if self.fmt == "json" and not batch:
                out.write("[]\n" if not started else "\n]\n")
                out.flush()
                return
            flush()
        if self.fmt == "json":
            out.write("\n]\n")
            out.flush()

    def record(self, record: dict[str, Any], *, title: str | None = None) -> None:
        """One object: key/value table, JSON object, or CSV with one row."""
        if self.fmt == "json":
            self._json(self._prepare([record], for_json=True)[0])
        elif self.fmt == "csv":
            self._csv(self._prepare([record], for_json=False), list(record))
        else:
            prepared = self._prepare([record], for_json=False)[0]
            pairs = [{"field": k.replace("_", " "), "value": _cell(v)} for k, v in prepared.items()]
            self._table(pairs, [("field", "Field"), ("value", "Value")], title, header=False)

    def json_lines(self, rows: Sequence[dict[str, Any]]) -> str:
        """Records as JSON Lines text (exports), prepared together: one reveal, one audit."""
        prepared = self._prepare(rows, for_json=True)
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in prepared)

    def _json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def _csv(self, rows: list[dict[str, Any]], keys: list[str]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(keys)
        for row in rows:
            writer.writerow([csv_cell(row.get(k)) for k in keys])
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()

    def _table(
        self,
        rows: list[dict[str, Any]],
        columns: Sequence[tuple[str, str]],
        title: str | None,
        *,
        header: bool = True,
    ) -> None:
        from rich.table import Table
        from rich.text import Text

        table = Table(
            title=Text(literal(title)) if title else None,
            show_header=header,
            header_style="bold",
            box=None if not header else _box(),
        )
        for key, head in columns:
            table.add_column(head, overflow="fold", no_wrap=key in _NO_WRAP_KEYS)
        for row in rows:
            table.add_row(*(Text(literal(_cell(row.get(k)))) for k, _ in columns))
        _console(stderr=False).print(table)

    def panel(self, title: str, fields: dict[str, Any]) -> None:
        """One record in a framed panel (interactive screens); every value literal."""
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        prepared = self._prepare([fields], for_json=False)[0]
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column(overflow="fold")
        for key, value in prepared.items():
            grid.add_row(Text(key.replace("_", " ")), Text(literal(_cell(value))))
        _console(stderr=False).print(Panel(grid, title=Text(literal(title)), expand=False))

    # --- messages -----------------------------------------------------------------
    def message(self, text: str, *, style: str | None = None) -> None:
        """A line for the person (stderr), shown literally."""
        from rich.text import Text

        _console(stderr=True).print(Text(literal(text), style=style or ""))

    def success(self, text: str) -> None:
        self.message(text, style="green")

    def warn(self, text: str) -> None:
        self.message("Warning: " + text, style="yellow")

    def data_line(self, text: str) -> None:
        """A bare line of data on stdout (a token, an id) for scripts."""
        sys.stdout.write(literal(text) + "\n")
        sys.stdout.flush()


def error(text: str) -> None:
    """The one-line error of a failed command (stderr)."""
    from rich.text import Text

    _console(stderr=True).print(Text("Error: " + literal(text), style="red"))


def _indent(text: str) -> str:
    """``text`` indented by two spaces, as ``json.dumps(list, indent=2)`` nests an item."""
    return "  " + text.replace("\n", "\n  ")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _box() -> Any:
    from rich import box

    return box.SIMPLE_HEAD


def _console(*, stderr: bool) -> Any:
    """Rich console; a table piped to a file or another program is not squeezed into 80
    columns (Rich's default off a terminal) but laid out 250 wide, unless COLUMNS says."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and not os.environ.get("COLUMNS"):
        width = 250
    return Console(
        file=stream, markup=False, emoji=False, highlight=False, soft_wrap=stderr, width=width
    )
