"""Multi-row INSERTs at driver speed, inside the session's transaction.

SQLAlchemy's Core ``executemany`` spends most of its time converting each value; a bulk
import writes six rows per patient, so this goes one level down: on SQLite the driver's
``executemany`` with the values already in the form SQLAlchemy would store (datetimes
converted by the column type's own bind processor), on PostgreSQL ``COPY ... FROM
STDIN`` through psycopg. Both run on the connection of the session's current
transaction, so they commit or roll back with it.

A unique violation raises ``sqlite3.IntegrityError`` / ``psycopg.errors.IntegrityError``
here, not SQLAlchemy's; ``integrity_errors(session)`` gives the ones to catch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session


def integrity_errors(session: Session) -> tuple[type[BaseException], ...]:
    """The exceptions a unique violation raises on this session's database."""
    if session.get_bind().dialect.name == "postgresql":
        import psycopg.errors

        return (IntegrityError, psycopg.errors.IntegrityError)
    return (IntegrityError, sqlite3.IntegrityError)


def tune_for_bulk(session: Session) -> None:
    """SQLite: a 32 MB page cache and checkpoints every 40 MB of WAL for this connection
    (fewer re-writes of the same index pages; durability unchanged)."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        raw: Any = connection.connection.driver_connection
        raw.execute("PRAGMA cache_size=-32768")
        raw.execute("PRAGMA wal_autocheckpoint=10000")


class Writer:
    """Bulk inserts on the session's connection (its transaction begins if needed)."""

    def __init__(self, session: Session) -> None:
        connection = session.connection()
        self.dialect = connection.dialect
        self.postgresql = self.dialect.name == "postgresql"
        self.raw: Any = connection.connection.driver_connection
        self._sql: dict[tuple[str, tuple[str, ...]], str] = {}

    def time(self, table: Table, column: str, value: datetime | None) -> Any:
        """``value`` as the driver should get it for ``table.column``."""
        if value is None:
            return value
        if self.postgresql:
            return value.isoformat()  # COPY's text form; cheaper to send than a datetime
        process = table.c[column].type.dialect_impl(self.dialect).bind_processor(self.dialect)
        return process(value) if process else value

    def insert(self, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        key = (table.name, tuple(columns))
        names = ", ".join(columns)
        if self.postgresql:
            sql = self._sql.setdefault(key, f"COPY {table.name} ({names}) FROM STDIN")
            with self.raw.cursor() as cursor, cursor.copy(sql) as copy:
                write = copy.write_row
                for row in rows:
                    write(row)
            return
        marks = ", ".join("?" for _ in columns)
        sql = self._sql.setdefault(key, f"INSERT INTO {table.name} ({names}) VALUES ({marks})")
        cursor = self.raw.cursor()
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()


_IN_CHUNK = 10_000  # below SQLite's 32,766 bound parameters

EXISTING_SQL = (
    "SELECT u.cpr, u.id, u.name, u.email, l.id, l.no_mitid, "
    "CASE WHEN u.deactivated_at IS NULL THEN 0 ELSE 1 END FROM portal_user u "
    "LEFT JOIN clinic_link l ON l.user_id = u.id AND l.clinic_id = {clinic} "
    "WHERE u.cpr {where}"
)
HISTORY_SQL = "SELECT cpr, unlinked_at FROM link_history WHERE clinic_id = {clinic} AND cpr {where}"
# how many users linked at the clinic have each of these e-mails (lower-cased; the index on
# lower(email)): the shared e-mail warning (services/shared_email.py); with select_by_cpr
SHARED_EMAIL_SQL = (
    "SELECT lower(u.email), count(*) FROM portal_user u "
    "JOIN clinic_link l ON l.user_id = u.id AND l.clinic_id = {clinic} "
    "WHERE lower(u.email) {where} GROUP BY lower(u.email)"
)


def select_by_cpr(session: Session, sql: str, clinic_id: int, cprs: list[str]) -> list[Any]:
    """Rows of ``sql`` (EXISTING_SQL or HISTORY_SQL) for these CPR numbers, one query per
    10,000 numbers, on the driver (SQLAlchemy's compilation of a 5,000-value IN list costs
    more than the query)."""
    if not cprs:
        return []
    connection = session.connection()
    raw: Any = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        with raw.cursor() as cursor:
            cursor.execute(sql.format(clinic="%s", where="= ANY(%s)"), (clinic_id, cprs))
            return list(cursor.fetchall())
    rows: list[Any] = []
    cursor = raw.cursor()
    try:
        for i in range(0, len(cprs), _IN_CHUNK):
            chunk = cprs[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            cursor.execute(sql.format(clinic="?", where=f"IN ({marks})"), (clinic_id, *chunk))
            rows.extend(cursor.fetchall())
    finally:
        cursor.close()
    return rows
