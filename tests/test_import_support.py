"""Helpers for the bulk import tests (no tests here): files as Excel writes them, counts."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from patientportal_cli.db import engine as engine_mod

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


@contextmanager
def db(db_url: str, home: Path) -> Iterator[Session]:
    with Session(engine_mod.get_engine(db_url, home)) as session:
        yield session


def scalar(db_url: str, home: Path, sql: str, **params: Any) -> Any:
    with db(db_url, home) as s:
        return s.execute(text(sql), params).scalar()


def rows(db_url: str, home: Path, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with db(db_url, home) as s:
        return [tuple(r) for r in s.execute(text(sql), params)]


def counts(db_url: str, home: Path) -> dict[str, int]:
    """Rows per table that an import writes, and the integrity facts the tests check."""
    q = {
        "users": "SELECT count(*) FROM portal_user",
        "links": "SELECT count(*) FROM clinic_link",
        "history": "SELECT count(*) FROM link_history",
        "codes": "SELECT count(*) FROM one_time_code",
        "outbox": "SELECT count(*) FROM outbox",
        "create_events": "SELECT count(*) FROM audit_event WHERE action = 'patient.create'",
        "distinct_create_targets": (
            "SELECT count(DISTINCT target) FROM audit_event WHERE action = 'patient.create'"
        ),
        "users_without_link": (
            "SELECT count(*) FROM portal_user u WHERE NOT EXISTS "
            "(SELECT 1 FROM clinic_link l WHERE l.user_id = u.id)"
        ),
        "duplicate_cprs": (
            "SELECT count(*) FROM (SELECT cpr FROM portal_user GROUP BY cpr HAVING count(*) > 1) d"
        ),
    }
    with db(db_url, home) as s:
        return {k: int(s.execute(text(v)).scalar() or 0) for k, v in q.items()}


def import_events(db_url: str, home: Path, action: str) -> list[dict[str, Any]]:
    return [
        {"target": t, **json.loads(d)}
        for t, d in rows(
            db_url,
            home,
            "SELECT target, details FROM audit_event WHERE action = :a ORDER BY id",
            a=action,
        )
    ]
