"""Reading an import file: CSV (as Excel writes it) or JSON Lines, streamed.

Encoding (CSV): a UTF-8 byte-order mark means UTF-8; a UTF-16 mark means UTF-16 (Excel's
"Unicode text"); otherwise the whole file is checked as UTF-8 (in chunks, memory
bounded) and, if it is not, read as Windows-1252 (cp1252, Excel's "CSV" on a Danish
Windows) with a notice. ``encoding=`` overrides all this.

Delimiter (CSV): the one of ``;``, ``,`` and tab that splits the header into the most
known column names (``delimiter=`` overrides).

Columns are matched case-insensitively, ignoring spaces, ``-`` and ``_``, with English and
Danish names: cpr / cpr-nummer / cprnr; name / navn; email / e-mail / mail;
no_mitid / ingen_mitid / "ingen mitid"; services / ydelser. An unknown, repeated or
missing required column is one ``InvalidInput`` (exit 2) before any row is read.

Rows come out as ``RawRow(line, values, cells, error)``: ``line`` is the file's line
number where the row starts, ``values`` maps the canonical column names to the cells,
``text()`` gives the row as it stood in the file (for the rejection report) and ``error``
is set when the row cannot be read at all (wrong number of fields, invalid JSON, JSON
nested too deeply or with a number of more digits than Python converts).

Limits: a row (a JSON line, or a CSV row with the lines a quoted cell spans) of more than
``MAX_ROW`` characters (1 MiB) is one ``InvalidInput``: no patient row is that long, and
reading on would hold an unbounded line in memory. A file that is not UTF-8 but holds
UTF-8 characters (``Søren`` saved as UTF-8 next to cp1252 lines) mixes two encodings and
is refused (read as cp1252 it would import ``SÃ¸ren``), naming ``--encoding``.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import operator
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from patientportal_cli.errors import InvalidInput

FIELDS = ("cpr", "name", "email", "no_mitid", "services")
REQUIRED = ("cpr", "name", "email")
ALIASES: dict[str, str] = {
    "cpr": "cpr",
    "cprnummer": "cpr",
    "cprnr": "cpr",
    "name": "name",
    "navn": "name",
    "email": "email",
    "mail": "email",
    "nomitid": "no_mitid",
    "ingenmitid": "no_mitid",
    "services": "services",
    "ydelser": "services",
}
ACCEPTED = (
    "cpr (cpr-nummer, cprnr), name (navn), email (e-mail, mail), "
    "no_mitid (ingen_mitid, ingen mitid), services (ydelser)"
)


@dataclass(frozen=True)
class Layout:
    """The columns a kind of file has: ``fields`` in the order of ``RawRow.values``, the
    ``required`` ones, header ``aliases`` (normalised as ``canonical`` does) and the
    ``accepted`` text of error messages. ``IMPORT`` is ``patient import``'s; ``patient
    reconcile`` (services/reconcile.py) has its own."""

    fields: tuple[str, ...]
    required: tuple[str, ...]
    aliases: dict[str, str]
    accepted: str


IMPORT = Layout(FIELDS, REQUIRED, ALIASES, ACCEPTED)
DELIMITERS = {";": "semicolon", ",": "comma", "\t": "tab"}
FORMATS = ("csv", "jsonl")
_CHUNK = 1 << 20
MAX_ROW = 1 << 20  # characters in one row (CSV: with every line a quoted cell spans)
# csv's own limit per cell (128 KiB by default) would refuse a long cell before the row
# limit does; let the row limit be the one limit
csv.field_size_limit(max(csv.field_size_limit(), MAX_ROW))
# a UTF-8 multi-byte sequence (lead byte and its continuation bytes)
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
# bytes -> 1 for a possible lead byte, 2 for a continuation byte, 0 otherwise: finding
# b"\x01\x02" in the translated chunk is a fast first look for a multi-byte sequence
_LEAD_CONT = bytes(1 if 0xC2 <= b <= 0xF4 else 2 if 0x80 <= b <= 0xBF else 0 for b in range(256))
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(slots=True)
class RawRow:
    line: int
    values: tuple[Any, ...]  # in FIELDS order; None for a column the file does not have
    cells: list[str] | str  # the CSV cells, or the JSON line
    error: str | None = None

    def text(self, delimiter: str = ",") -> str:
        """The row as it stood in the file."""
        if isinstance(self.cells, str):
            return self.cells
        return row_text(self.cells, delimiter)


@dataclass
class ImportFile:
    """An opened import file: what was detected, and a way to stream its rows."""

    name: str
    format: str
    path: Path
    encoding: str = "utf-8"
    delimiter: str = ","
    layout: Layout = IMPORT
    columns: list[str] = field(default_factory=list)  # canonical names, in file order
    headers: list[str] = field(default_factory=list)  # as written in the file
    notices: list[str] = field(default_factory=list)
    _temp: Path | None = None

    def rows(self) -> Iterator[RawRow]:
        if self.format == "jsonl":
            yield from self._jsonl_rows()
        else:
            yield from self._csv_rows()

    def close(self) -> None:
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
            self._temp = None

    def __enter__(self) -> ImportFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- CSV ------------------------------------------------------------------------
    def _open_text(self) -> IO[str]:
        return open(self.path, encoding=self.encoding, newline="", errors="strict")  # noqa: SIM115

    def _csv_rows(self) -> Iterator[RawRow]:
        width = len(self.columns)
        # cells -> values in FIELDS order; a missing column reads a None put after the cells
        pick = operator.itemgetter(
            *(self.columns.index(f) if f in self.columns else width for f in self.layout.fields)
        )
        pad = len(set(self.columns)) < len(self.layout.fields)
        used = [0]  # characters read for the row being read (_bounded_lines)
        end = 0
        with self._open_text() as handle:
            reader = csv.reader(_bounded_lines(handle, used), delimiter=self.delimiter)
            try:
                for cells in reader:  # the header, checked by open_import
                    used[0] = 0
                    end = reader.line_num
                    if any(c.strip() for c in cells):
                        break
                for cells in reader:
                    used[0] = 0
                    start, end = end + 1, reader.line_num
                    if len(cells) != width:
                        if not any(c.strip() for c in cells):
                            continue  # blank line, or an empty row Excel left (";;;;")
                        yield RawRow(
                            start,
                            (),
                            cells,
                            f"The row has {len(cells)} fields; the header has {width}.",
                        )
                        continue
                    first = cells[0]
                    if (not first or first.isspace()) and not "".join(cells).strip():
                        continue
                    if pad:
                        cells.append(None)  # type: ignore[arg-type]
                        values = pick(cells)
                        cells.pop()
                    else:
                        values = pick(cells)
                    yield RawRow(start, values, cells)
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"{self.name} cannot be read as {self.encoding} after line "
                    f"{reader.line_num}: {exc.reason}; pass --encoding."
                ) from None
            except csv.Error as exc:
                raise InvalidInput(
                    f"{self.name} line {reader.line_num}: unreadable CSV ({exc})."
                ) from None
            except _RowTooLong:
                raise InvalidInput(_too_long(self.name, end + 1, is_csv=True)) from None

    # --- JSON Lines -----------------------------------------------------------------
    def _jsonl_rows(self) -> Iterator[RawRow]:
        with self._open_text() as handle:
            readline = handle.readline
            number = 0
            try:
                while line := readline(MAX_ROW + 1):
                    number += 1
                    if len(line) > MAX_ROW:
                        raise InvalidInput(_too_long(self.name, number, is_csv=False))
                    text = line.rstrip("\r\n")
                    if not text.strip():
                        continue
                    values, error = _json_object(text)
                    if error is not None:
                        yield RawRow(number, (), text, error)
                        continue
                    mapped, unknown = _map_keys(values, self.layout)
                    if unknown:
                        yield RawRow(
                            number,
                            (),
                            text,
                            f"Unknown field(s) {', '.join(unknown)}; accepted: {self.layout.accepted}.",
                        )
                        continue
                    yield RawRow(number, tuple(mapped.get(f) for f in self.layout.fields), text)
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"{self.name} cannot be read as {self.encoding}: {exc.reason}; pass --encoding."
                ) from None


class _RowTooLong(Exception):
    pass


def _bounded_lines(handle: IO[str], used: list[int]) -> Iterator[str]:
    """The lines of ``handle`` for csv.reader, raising _RowTooLong once the row being
    read (``used[0]`` characters, reset by the reader's caller at each row) passes
    MAX_ROW: no line is read beyond that, however long it is."""
    readline = handle.readline
    while line := readline(MAX_ROW + 1):
        used[0] += len(line)
        if used[0] > MAX_ROW:
            raise _RowTooLong
        yield line


def _too_long(name: str, line: int, *, is_csv: bool) -> str:
    what = "the row starting at line" if is_csv else "line"
    hint = " (is a closing quote missing?)" if is_csv else ""
    return (
        f"{name}: {what} {line} is longer than {MAX_ROW:,} characters (1 MiB), the limit "
        f"for one row{hint}; this is not a patient list as exported. Nothing was imported."
    )


def canonical(header: str, layout: Layout = IMPORT) -> str | None:
    key = header.strip().lstrip("\ufeff").lower()
    for ch in " -_\t":
        key = key.replace(ch, "")
    return layout.aliases.get(key)


def _map_keys(values: dict[str, Any], layout: Layout) -> tuple[dict[str, Any], list[str]]:
    mapped: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in values.items():
        name = canonical(str(key), layout)
        if name is None or name in mapped:
            unknown.append(repr(key))
        else:
            mapped[name] = value
    return mapped, unknown


def _json_object(text: str) -> tuple[dict[str, Any], str | None]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"Invalid JSON: {exc.msg} (column {exc.pos + 1})."
    except ValueError:  # int(): more digits than sys.get_int_max_str_digits()
        return {}, (
            f"Invalid JSON: a number with more than {sys.get_int_max_str_digits():,} digits."
        )
    except RecursionError:
        return {}, "Invalid JSON: nested too deeply (a row is one flat object)."
    if not isinstance(value, dict):
        return {}, 'Invalid JSON Lines row: expected an object such as {"cpr": ...}.'
    return value, None


def _check_columns(headers: list[str], name: str, layout: Layout) -> list[str]:
    columns: list[str] = []
    unknown: list[str] = []
    repeated: list[str] = []
    for header in headers:
        canon = canonical(header, layout)
        if canon is None:
            unknown.append(header.strip() or "(empty)")
        elif canon in columns:
            repeated.append(header.strip())
        columns.append(canon or "")
    problems: list[str] = []
    if unknown:
        problems.append("unknown column(s) " + ", ".join(repr(u) for u in unknown))
    if repeated:
        problems.append("repeated column(s) " + ", ".join(repr(r) for r in repeated))
    missing = [r for r in layout.required if r not in columns]
    if missing:
        problems.append("missing required column(s) " + ", ".join(missing))
    if problems:
        raise InvalidInput(f"{name}: {'; '.join(problems)}. Accepted columns: {layout.accepted}.")
    return columns


def _spool_stdin(stream: IO[bytes], spool_dir: Path | None) -> Path:
    """Standard input copied to a private (0600) file in ``spool_dir``."""
    fd, name = tempfile.mkstemp(prefix="patientportal-import-", dir=spool_dir)
    with os.fdopen(fd, "wb") as handle:
        shutil.copyfileobj(stream, handle, _CHUNK)
    return Path(name)


def _is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as handle:
        try:
            while chunk := handle.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _mixed_encoding(path: Path) -> tuple[int, int, str] | None:
    """For a file that is not valid UTF-8: (a line with a UTF-8 multi-byte character,
    the first line that is not UTF-8, that character), or None when it has no UTF-8
    multi-byte character at all (a plain cp1252 file)."""
    utf8_line = other_line = 0
    example = ""
    line = 1
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            if not chunk.endswith(b"\n"):  # end chunks at a line end (bounded)
                chunk += handle.readline(_CHUNK)
            if not utf8_line:
                kinds = chunk.translate(_LEAD_CONT)
                at = kinds.find(b"\x01\x02")
                while at >= 0:
                    found = _UTF8_MULTIBYTE.match(chunk, at)
                    if found:
                        utf8_line = line + chunk.count(b"\n", 0, at)
                        example = found.group().decode("utf-8")
                        break
                    at = kinds.find(b"\x01\x02", at + 1)
            if not other_line:
                try:
                    chunk.decode("utf-8")
                except UnicodeDecodeError as exc:
                    other_line = line + chunk.count(b"\n", 0, exc.start)
            if utf8_line and other_line:
                return utf8_line, other_line, example
            line += chunk.count(b"\n")
    return None


def detect_encoding(path: Path, head: bytes, name: str | None = None) -> tuple[str, str | None]:
    """(encoding, notice or None) of a file whose first bytes are ``head``.

    Raises InvalidInput for a file that mixes UTF-8 with another encoding."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding, None
    if _is_utf8(path):
        return "utf-8", None
    mixed = _mixed_encoding(path)
    if mixed is not None:
        utf8_line, other_line, example = mixed
        raise InvalidInput(
            f"{name or path} mixes two encodings: line {utf8_line} is UTF-8 (it has "
            f"{example!r}) but line {other_line} is not; read as either, some names would be "
            "garbled. Save the file again in one encoding (in Excel: CSV UTF-8), or pass "
            "--encoding cp1252 to read all of it as Windows-1252."
        )
    return "cp1252", (
        "The file is not UTF-8: reading it as Windows-1252 (cp1252), as Excel on Windows "
        "writes it. Pass --encoding to choose another."
    )


def _check_encoding(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InvalidInput(f"Unknown encoding {encoding!r}: use e.g. utf-8 or cp1252.") from None


def _check_delimiter(delimiter: str) -> str:
    named = {"tab": "\t", "\\t": "\t", "semicolon": ";", "comma": ","}
    value = named.get(delimiter.lower(), delimiter)
    if len(value) != 1 or value in '"\r\n':
        raise InvalidInput(f"Invalid delimiter {delimiter!r}: use ';', ',' or tab.")
    return value


def _sniff_delimiter(header_line: str, layout: Layout) -> str:
    best, best_score = ";", (-1, -1)
    for delimiter in DELIMITERS:
        try:
            cells = next(csv.reader([header_line], delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        known = sum(1 for c in cells if canonical(c, layout) is not None)
        score = (known, len(cells))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def guess_format(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return "jsonl" if suffix in (".jsonl", ".ndjson") else "csv"


def open_import(
    source: str,
    *,
    format: str | None = None,  # noqa: A002
    encoding: str | None = None,
    delimiter: str | None = None,
    stdin: IO[bytes] | None = None,
    spool_dir: Path | None = None,
    layout: Layout = IMPORT,
) -> ImportFile:
    """Open ``source`` (a path, or ``-`` for standard input) and check its header
    against ``layout`` (the import's columns unless told).

    Raises InvalidInput (exit 2) when the file is missing, empty, undecodable, or its
    columns are wrong. Standard input is first copied to a private file in ``spool_dir``
    (the CLI's HOME/spool run directory; removed by ``close``), so both import phases
    can read it.
    """
    fmt = (format or guess_format(source)).lower()
    if fmt not in FORMATS:
        raise InvalidInput(f"Unknown format {format!r}: use csv or jsonl.")
    temp: Path | None = None
    if source == "-":
        temp = _spool_stdin(stdin if stdin is not None else sys.stdin.buffer, spool_dir)
        path, name = temp, "standard input"
    else:
        path, name = Path(source), source
        if not path.is_file():
            raise InvalidInput(f"No such file: {source}.")
    imported = ImportFile(name=name, format=fmt, path=path, layout=layout, _temp=temp)
    try:
        _inspect(imported, encoding=encoding, delimiter=delimiter)
    except BaseException:
        imported.close()
        raise
    return imported


def _inspect(imported: ImportFile, *, encoding: str | None, delimiter: str | None) -> None:
    with open(imported.path, "rb") as handle:
        head = handle.read(4096)
    if encoding:
        imported.encoding = _check_encoding(encoding)
    else:
        imported.encoding, notice = detect_encoding(imported.path, head, imported.name)
        if notice:
            imported.notices.append(notice)
    first = _first_line(imported)
    if first is None:
        raise InvalidInput(
            f"{imported.name} is empty: expected a header line with the columns "
            f"{imported.layout.accepted}."
            if imported.format == "csv"
            else f"{imported.name} is empty: expected one JSON object per line."
        )
    if imported.format == "jsonl":
        values, error = _json_object(first)
        if error is not None:
            raise InvalidInput(f"{imported.name} line 1 is not JSON Lines: {error}")
        imported.headers = [str(k) for k in values]
        imported.columns = _check_columns(imported.headers, imported.name, imported.layout)
        return
    imported.delimiter = (
        _check_delimiter(delimiter) if delimiter else _sniff_delimiter(first, imported.layout)
    )
    imported.headers = next(csv.reader([first], delimiter=imported.delimiter))
    imported.columns = _check_columns(imported.headers, imported.name, imported.layout)


def _first_line(imported: ImportFile) -> str | None:
    """The first non-blank line (the CSV header / first JSON object), decoded."""
    number = 0
    try:
        with imported._open_text() as handle:
            while line := handle.readline(MAX_ROW + 1):
                number += 1
                if len(line) > MAX_ROW:
                    raise InvalidInput(
                        _too_long(imported.name, number, is_csv=imported.format == "csv")
                    )
                if line.strip():
                    return line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{imported.name} cannot be read as {imported.encoding}: {exc.reason}; pass --encoding."
        ) from None
    return None


def describe_delimiter(delimiter: str) -> str:
    return DELIMITERS.get(delimiter, repr(delimiter))


def row_text(values: list[str], delimiter: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="").writerow(values)
    return buf.getvalue()
