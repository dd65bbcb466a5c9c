"""Files for the bulk import: as Excel writes them, and many valid patients."""

from __future__ import annotations

import datetime
from pathlib import Path

# Fictitious people. CPR numbers are valid dates (modulus 11 is not required).
DANES = [
    ("010203-1234", "Søren Ærø", "soren@example.dk"),
    ("020304-2345", "Åse Østergård", "aase@example.dk"),
    ("150560-3456", "Jørgen Bækgaard", "jorgen@example.dk"),
    ("311299-4567", "Mette Læsø", "mette@example.dk"),
]


def excel_csv(rows: list[tuple[str, ...]], *, encoding: str = "cp1252") -> bytes:
    """A CSV as Excel on a Danish Windows writes it: ';', CRLF, Danish headers."""
    lines = ["CPR-nummer;Navn;E-mail;Ingen MitID;Ydelser"]
    lines += [";".join(r) for r in rows]
    data = "\r\n".join(lines) + "\r\n"
    return data.encode(encoding)


def write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def valid_cprs(n: int, *, start: datetime.date = datetime.date(1950, 1, 1)) -> list[str]:
    """``n`` distinct valid CPR numbers (7th digit 0: born in the 1900s)."""
    out = []
    for i in range(n):
        born = start + datetime.timedelta(days=i % 15000)
        out.append(f"{born:%d%m%y}-{i // 15000:04d}")
    return out


def patients_csv(path: Path, n: int) -> Path:
    cprs = valid_cprs(n)
    lines = ["cpr,name,email"] + [f"{c},Patient Nr {i},p{i}@example.dk" for i, c in enumerate(cprs)]
    return write(path, "\n".join(lines) + "\n")
