"""The databases the tests use: the PostgreSQL test server, a session on a test's
database, and the rows the tests look at."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db.models import (
    AuditEvent,
    Clinic,
    ClinicLink,
    PortalUser,
    RegistrationRequest,
)

PG_BASE = os.environ.get(
    "PATIENTPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

# --- the PostgreSQL test server --------------------------------------------------------------

_pg_state: dict[str, Any] = {}


def _pg_available() -> bool:
    if "ok" not in _pg_state:
        import sqlalchemy

        try:
            eng = sqlalchemy.create_engine(PG_BASE, connect_args={"connect_timeout": 3})
            with eng.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            eng.dispose()
            _pg_state["ok"] = True
        except Exception as exc:  # noqa: BLE001
            _pg_state["ok"] = False
            _pg_state["error"] = str(exc).splitlines()[0]
    return bool(_pg_state["ok"])


def require_pg() -> None:
    """Skip without a PostgreSQL server; under CI (CI set), fail instead."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {_pg_state.get('error')}")
        pytest.skip(f"no PostgreSQL server: {_pg_state.get('error')}")


def pg_schema_url() -> Generator[str, None, None]:
    """A fresh schema on the test server; dropped afterwards."""
    import sqlalchemy

    require_pg()
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sqlalchemy.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        engine_mod.dispose_all()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


# --- a session on the test's database --------------------------------------------------------


@contextmanager
def db_session(db_url: str, home: Path) -> Iterator[Session]:
    """A session on the program's engine for ``db_url``; rows stay readable after commit."""
    with Session(engine_mod.get_engine(db_url, home), expire_on_commit=False) as session:
        yield session


def audit_actions(db_url: str, home: Path) -> list[str]:
    """The actions of every audit event, oldest first."""
    with db_session(db_url, home) as s:
        return actions_of(s)


def actions_of(session: Session) -> list[str]:
    """The actions of every audit event, oldest first."""
    return [e.action for e in audit_events(session)]


def scalar(db_url: str, home: Path, sql: str, **params: Any) -> Any:
    with db_session(db_url, home) as s:
        return s.execute(text(sql), params).scalar()


def rows(db_url: str, home: Path, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with db_session(db_url, home) as s:
        return [tuple(r) for r in s.execute(text(sql), params)]


# --- patients and their clinics ----------------------------------------------------------------


def users(session: Session) -> list[PortalUser]:
    return list(session.exec(select(PortalUser).order_by(col(PortalUser.id))))


def users_with_cpr(session: Session, cpr: str) -> list[PortalUser]:
    return list(session.exec(select(PortalUser).where(PortalUser.cpr == cpr)))


def user_row(session: Session, cpr: str) -> PortalUser:
    return session.exec(select(PortalUser).where(PortalUser.cpr == cpr)).one()


def link_of(session: Session, cpr: str, clinic: str) -> ClinicLink | None:
    return session.exec(
        select(ClinicLink)
        .join(PortalUser, col(PortalUser.id) == ClinicLink.user_id)
        .join(Clinic, col(Clinic.id) == ClinicLink.clinic_id)
        .where(PortalUser.cpr == cpr, Clinic.code == clinic)
    ).first()


def link_row(session: Session, cpr: str, clinic: str = "NORD") -> ClinicLink:
    return session.exec(
        select(ClinicLink)
        .join(PortalUser, col(PortalUser.id) == ClinicLink.user_id)
        .join(Clinic, col(Clinic.id) == ClinicLink.clinic_id)
        .where(PortalUser.cpr == cpr, Clinic.code == clinic)
    ).one()


def linked_clinics(session: Session, cpr: str) -> list[str]:
    found = session.exec(
        select(Clinic.code)
        .join(ClinicLink, col(ClinicLink.clinic_id) == Clinic.id)
        .join(PortalUser, col(PortalUser.id) == ClinicLink.user_id)
        .where(PortalUser.cpr == cpr)
        .order_by(col(Clinic.code))
    )
    return list(found)


def links(session: Session, clinic: str = "NORD") -> list[tuple[str, str]]:
    """(cpr, services) of the clinic's links."""
    found = session.exec(
        select(PortalUser.cpr, ClinicLink.services)
        .join(ClinicLink, col(ClinicLink.user_id) == PortalUser.id)
        .join(Clinic, col(Clinic.id) == ClinicLink.clinic_id)
        .where(Clinic.code == clinic)
        .order_by(col(PortalUser.cpr))
    )
    return [(c, s) for c, s in found]


def requests(session: Session) -> list[RegistrationRequest]:
    """The registration requests, oldest first, as the database holds them now."""
    return list(
        session.exec(
            select(RegistrationRequest)
            .order_by(col(RegistrationRequest.id))
            .execution_options(populate_existing=True)
        )
    )


# --- the audit log ---------------------------------------------------------------------------


def audit_events(session: Session, prefix: str = "") -> list[AuditEvent]:
    """The audit events whose action starts with ``prefix``, oldest first."""
    return list(
        session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.action).startswith(prefix))
            .order_by(col(AuditEvent.id))
        )
    )


def events(
    session: Session, prefix: str = ""
) -> list[tuple[str, str | None, str, str, dict[str, Any]]]:
    """(action, clinic, target, actor, details) oldest first, actions starting with prefix."""
    return [
        (e.action, e.clinic, e.target, e.actor, json.loads(e.details))
        for e in audit_events(session, prefix)
    ]


def portal_events(session: Session) -> list[tuple[str, str | None, str, str]]:
    """(action, clinic, target, actor) of the `portal` login events, oldest first."""
    found = session.exec(
        select(AuditEvent)
        .where(AuditEvent.actor == "patient", col(AuditEvent.action).startswith("portal."))
        .order_by(col(AuditEvent.id))
    )
    return [(e.action, e.clinic, e.target, e.actor) for e in found]


# --- bulk import -------------------------------------------------------------------------------


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
    with db_session(db_url, home) as s:
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
