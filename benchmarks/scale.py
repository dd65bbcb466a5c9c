"""National scale on PostgreSQL (or SQLite): build a database of realistic shape, then time what staff do.

    python benchmarks/scale.py                 # N = 1,000,000 portal users
    python benchmarks/scale.py -n 100000 --runs 300 --command-runs 21
    python benchmarks/scale.py -n 1000000 --keep          # keep the schema (printed)
    python benchmarks/scale.py --schema bench_xxx         # measure a kept schema again
    python benchmarks/scale.py -n 50000 --commands-only   # only the whole commands
    python benchmarks/scale.py -n 50000 --db sqlite       # the same on a SQLite file
    python benchmarks/scale.py --db sqlite:///big.db      # built there once, then re-measured

On SQLite (``--db sqlite``: a temporary file; ``--db sqlite:///PATH``: that file, built
when it has no users yet and measured again when it has) the rows are inserted with
``executemany`` instead of COPY, and the plans are SQLite's EXPLAIN QUERY PLAN.

How it is built (in a fresh PostgreSQL schema, dropped afterwards unless --keep):

- ``patientportal init`` makes the schema with the real migrations (clinic NORD, admin
  anna, who may create clinics).
- The rest is loaded with COPY, as rows the real code would write: 2,000 clinics
  (K0001..K2000) whose sizes follow a Zipf law (rank r gets a share 1/r: the largest
  has about 12 % of all links, the smallest a few dozen at 1M users), two staff members
  each; N portal users with distinct valid CPR numbers, Danish-looking names and
  e-mail addresses, 80 % activated (one real argon2 hash, the same for all: hashing a
  million passwords is not what is measured), 60 % MitID-verified; about 1.4 links per
  user (40 % of users at a second clinic), 3 % of links with the no-MitID flag (and the
  e-mail owner confirmation the flag needs), one link-history row per link; 500
  pending registration requests at one clinic (K0020) and N/1000 more requests,
  pending or decided, elsewhere; 5 audit events per user (patient.create,
  patient.link or patient.show, patient.access, portal.login, patient.show, at the
  user's clinics), whose hash chains are computed by ``services.audit.chain`` (the
  function ``patient import`` uses, so ``audit verify`` checks them like any others)
  and COPY'd in its ``CHAIN_COLUMNS``. Column lists come from the SQLModel tables, and
  a NOT NULL column without a server default that the loader does not fill stops the
  build with its name, so a schema change shows up here instead of loading wrong rows.
  No outbox, codes or throttle rows. Then ANALYZE.

What it measures (staff member anna, admin at the largest clinic K0001 and at K0020):

- service calls, in this process, ``--runs`` times each after warm-up, p50/p95 (ms):
  ``patient show`` and ``patient access`` (random patients of K0001; both write their
  look-up's audit event and commit), ``patient list --limit 50`` at K0001,
  ``requests list`` at K0020 (500 pending), ``audit list --limit 50`` at K0001, and the
  SQL of TAB completion of clinic codes (``K1`` + TAB: 1,000 of 2,000 codes match);
  first, as the floor of every audited call, one ``audit.record`` and its commit (the
  commit waits for the WAL flush);
- the same as whole commands (a fresh ``patientportal`` process each, ``--command-runs``
  times, round-robin with ``python -c 'import sqlmodel'``, the floor this stack sets:
  each median is also given as a multiple of that floor's median, and so is the median
  CPU time (user + sys) of the process, which a busy machine disturbs less). As an installed
  package has its bytecode compiled (pip does it), the warm-up rounds may write it for
  a source checkout too, whatever PYTHONDONTWRITEBYTECODE says (else every run would
  compile this package's modules and the floor, from site-packages, would not);
  ``--commands-only`` measures only these (and builds the database if needed);
- ``audit verify --all --full`` once, then ``audit checkpoint --all``, 10,000 new audit
  events (``audit.record_many``) and ``audit verify --all`` (incremental: from the
  checkpoint); whole commands, events/s;
- ``patient list -o csv`` of K0001 (all its patients): wall time and peak RSS of the
  command (``getrusage`` of the child);
- EXPLAIN (ANALYZE, BUFFERS) of each service call's slowest SELECT (slowest first).

The 1-minute load average is printed with each table: the machine (2 cores) may be busy
with other work. Not a timed test; ``tests/test_scale_smoke.py`` runs it with tiny N.
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_DEFAULT = os.environ.get(
    "PATIENTPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PASSWORD = "Bench-pass1"
AUDIT_KEY = "scale-benchmark-audit-key-0123456789abcdef"
BIRTH_START = datetime.date(1940, 1, 1)
BIRTH_DAYS = 20_000
FIRST = [
    "Søren", "Åse", "Mette", "Jørgen", "Anne", "Bjørn", "Else", "Lærke", "Niels", "Øjvind",
    "Ida", "Karen", "Lars", "Mads", "Freja", "Emil", "Sofie", "Peter", "Hanne", "Jens",
    "Kirsten", "Mikkel", "Nanna", "Ole", "Pia", "Rasmus", "Signe", "Torben", "Ulla", "Vibeke",
]  # fmt: skip
LAST = [
    "Ørsted", "Bækgaard", "Ålund", "Nielsen", "Jensen", "Hansen", "Kjær", "Møller", "Sø",
    "Pedersen", "Andersen", "Christensen", "Larsen", "Sørensen", "Rasmussen", "Jørgensen",
    "Petersen", "Madsen", "Kristensen", "Olsen", "Thomsen", "Poulsen", "Johansen", "Knudsen",
    "Mortensen", "Holm", "Lund", "Dahl", "Vestergaard", "Friis",
]  # fmt: skip
SERVICES = "e-consultation,booking,prescription-renewal"
WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], 'wb'), stderr=subprocess.PIPE)\n"
    "dt = time.perf_counter() - t\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "sys.stderr.write(r.stderr.decode(errors='replace')[-2000:])\n"
    "print(r.returncode, dt, u.ru_maxrss)\n"
)


def cpr_number(k: int) -> str:
    """A distinct valid CPR number per k < 80,000,000 (born 1940-1994)."""
    born = BIRTH_START + datetime.timedelta(days=k % BIRTH_DAYS)
    serial = k // BIRTH_DAYS
    return f"{born:%d%m%y}{serial:04d}"


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def patientportal() -> list[str]:
    script = Path(sys.executable).with_name("patientportal")
    return [str(script)] if script.exists() else [sys.executable, "-m", "patientportal_cli"]


# --- building -------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a measured ``patientportal`` process (see the module's doc)."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PATIENTPORTAL_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    return {**keep, **extra}


def _sqlite_value(value: Any) -> Any:
    """What SQLAlchemy's SQLite types store (datetimes as text, as SQLAlchemy writes them)."""
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


class Loader:
    """COPY into the model's tables (executemany on SQLite), in the session's transaction."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.raw = session.connection().connection.driver_connection  # psycopg or sqlite3
        self.sqlite = session.get_bind().dialect.name == "sqlite"

    def copy(self, model: Any, columns: Iterable[str], rows: Iterable[tuple[Any, ...]]) -> int:
        table = model.__table__
        cols = list(columns)
        known = {c.name for c in table.columns}
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise SystemExit(f"{table.name} has no column {unknown[0]}: update benchmarks/scale.py")
        missing = [
            c.name
            for c in table.columns
            if c.name not in cols
            and not c.nullable
            and c.server_default is None
            and not (c.primary_key and c.autoincrement)
        ]
        if missing:
            raise SystemExit(
                f"{table.name}.{missing[0]} is NOT NULL and not loaded: update benchmarks/scale.py"
            )
        n = 0
        if self.sqlite:
            marks = ", ".join("?" for _ in cols)
            insert = f'INSERT INTO "{table.name}" ({", ".join(cols)}) VALUES ({marks})'

            def values() -> Iterator[tuple[Any, ...]]:
                nonlocal n
                for row in rows:
                    n += 1
                    yield tuple(_sqlite_value(v) for v in row)

            self.raw.executemany(insert, values())
            return n
        sql = f'COPY "{table.name}" ({", ".join(cols)}) FROM STDIN'
        with self.raw.cursor() as cur, cur.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
        return n

    def setval(self, table: str) -> None:
        if self.sqlite:  # the next id is max(id) + 1 by itself
            return
        with self.raw.cursor() as cur:
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )


def build(
    url: str, home: Path, n: int, clinic_count: int, seed: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Load the database; returns what the measurements need."""
    from sqlmodel import Session

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.db.models import (
        Clinic,
        ClinicLink,
        LinkHistory,
        Membership,
        PortalUser,
        RegistrationRequest,
        Staff,
    )
    from patientportal_cli.services import audit, passwords

    rng = random.Random(seed)
    t0 = time.perf_counter()
    env = {**os.environ, "PATIENTPORTAL_HOME": str(home), "PATIENTPORTAL_DB_URL": url}
    env.pop("PATIENTPORTAL_TOKEN", None)
    r = subprocess.run(
        [
            *patientportal(),
            "init",
            "--clinic",
            "NORD",
            "--clinic-name",
            "Nordklinikken",
            "--admin",
            "anna",
            "--admin-name",
            "Anna Admin",
            "--password-stdin",
        ],
        env=env,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise SystemExit(f"patientportal init failed: {r.stderr}")
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    hashed = passwords.hash_password(PASSWORD)  # one real hash, shared
    engine = engine_mod.get_engine(url, home)
    info: dict[str, Any] = {}
    with Session(engine) as session:
        loader = Loader(session)
        # clinics: id 1 is NORD (init); K0001.. are ids 2..
        codes = [f"K{i + 1:04d}" for i in range(clinic_count)]
        loader.copy(
            Clinic,
            ("id", "code", "name", "registration_mode", "services", "created_at"),
            (
                (i + 2, code, f"Klinik {code}", "approval", SERVICES, now)
                for i, code in enumerate(codes)
            ),
        )
        loader.setval("clinic")
        staff_rows = []
        members = []
        for i in range(clinic_count):
            for j, role in ((0, "admin"), (1, "doctor")):
                sid = 2 + 2 * i + j
                staff_rows.append(
                    (sid, f"k{i + 1:04d}{'ab'[j]}", f"Staff {i}{j}", hashed, True, False, now)
                )
                members.append((sid, i + 2, role))
        largest, pending_at = 0, min(19, clinic_count - 1)  # K0001, K0020
        members += [(1, largest + 2, "admin"), (1, pending_at + 2, "admin")]
        if pending_at == largest:
            members.pop()
        loader.copy(
            Staff,
            (
                "id",
                "username",
                "full_name",
                "password_hash",
                "active",
                "may_create_clinics",
                "created_at",
            ),
            staff_rows,
        )
        loader.setval("staff")
        loader.copy(Membership, ("staff_id", "clinic_id", "role"), members)
        say(f"clinics and staff: {time.perf_counter() - t0:.1f} s")

        # users and their links (Zipf: rank r has weight 1/r)
        cum = []
        total = 0.0
        for rank in range(1, clinic_count + 1):
            total += 1.0 / rank
            cum.append(total)

        def pick() -> int:
            return bisect.bisect_left(cum, rng.random() * total)

        links: list[tuple[int, int]] = []  # (user id, clinic index)
        for uid in range(1, n + 1):
            first = pick()
            links.append((uid, first))
            if rng.random() < 0.4 and clinic_count > 1:
                second = pick()
                while second == first:
                    second = pick()
                links.append((uid, second))

        def name_of(k: int) -> str:
            h = (k * 2654435761) & 0xFFFFFFFF
            return f"{FIRST[h % 30]} {chr(65 + (h >> 8) % 26)}. {LAST[(h >> 16) % 30]}"

        created = now - datetime.timedelta(days=400)

        def users() -> Iterator[tuple[Any, ...]]:
            for uid in range(1, n + 1):
                k = uid - 1
                activated = uid % 5 != 0
                mitid = now if uid % 5 < 3 else None
                yield (
                    uid,
                    cpr_number(k),
                    name_of(k),
                    f"patient{k}@example.dk",
                    hashed if activated else None,
                    "clinic" if uid % 20 else "self",
                    mitid,
                    0,
                    created,
                    created,
                )

        loader.copy(
            PortalUser,
            (
                "id",
                "cpr",
                "name",
                "email",
                "password_hash",
                "origin",
                "mitid_verified_at",
                "failed_logins",
                "created_at",
                "credentials_vouched_at",
            ),
            users(),
        )
        loader.setval("portal_user")
        say(f"{n:,} users: {time.perf_counter() - t0:.1f} s")

        def link_rows() -> Iterator[tuple[Any, ...]]:
            for i, (uid, c) in enumerate(links):
                flag = i % 33 == 0
                by = f"k{c + 1:04d}a"
                email = f"patient{uid - 1}@example.dk"
                yield (
                    c + 2,
                    uid,
                    created,
                    by,
                    flag,
                    now if flag else None,
                    by if flag else None,
                    now if flag else None,
                    by if flag else None,
                    email if flag else None,
                    email,
                    SERVICES,
                )

        loader.copy(
            ClinicLink,
            (
                "clinic_id",
                "user_id",
                "linked_at",
                "linked_by",
                "no_mitid",
                "no_mitid_changed_at",
                "no_mitid_changed_by",
                "email_owner_confirmed_at",
                "email_owner_confirmed_by",
                "email_owner_confirmed_email",
                "record_email",
                "services",
            ),
            link_rows(),
        )
        loader.copy(
            LinkHistory,
            ("clinic_id", "cpr", "first_linked_at"),
            ((c + 2, cpr_number(uid - 1), created) for uid, c in links),
        )
        say(f"{len(links):,} links (+ history): {time.perf_counter() - t0:.1f} s")

        # registration requests: 500 pending at K0020, N/1000 more elsewhere
        def requests() -> Iterator[tuple[Any, ...]]:
            k = n
            for i in range(500 + n // 1000):
                at_pending = i < 500
                clinic = pending_at if at_pending else pick()
                while clinic == pending_at and not at_pending and clinic_count > 1:
                    clinic = pick()
                status = "pending" if at_pending or i % 3 == 0 else ("approved", "rejected")[i % 2]
                decided = status != "pending"
                yield (
                    clinic + 2,
                    cpr_number(k),
                    name_of(k),
                    f"request{k}@example.dk",
                    hashed,
                    SERVICES,
                    now - datetime.timedelta(minutes=i),
                    status,
                    f"k{clinic + 1:04d}a" if decided else None,
                    now if decided else None,
                    "Ikke patient her" if status == "rejected" else None,
                )
                k += 1

        loader.copy(
            RegistrationRequest,
            (
                "clinic_id",
                "cpr",
                "name",
                "email",
                "password_hash",
                "services",
                "submitted_at",
                "status",
                "decided_by",
                "decided_at",
                "reason",
            ),
            requests(),
        )
        say(f"requests: {time.perf_counter() - t0:.1f} s")

        # 5 audit events per user, chained by the real audit.chain
        per_user: dict[int, list[int]] = {}
        for uid, c in links:
            per_user.setdefault(uid, []).append(c)
        created_details = json.dumps(
            {"user_created": True, "services": SERVICES.split(","), "invited": True},
            sort_keys=True,
        )
        batch: list[dict[str, Any]] = []
        events_written = 0

        def flush() -> None:
            nonlocal events_written
            rows = audit.chain(session, batch)
            events_written += loader.copy(audit.AuditEvent, audit.CHAIN_COLUMNS, rows)
            batch.clear()

        for uid in range(1, n + 1):
            cs = per_user[uid]
            home_code = codes[cs[0]]
            target = f"cpr:{cpr_number(uid - 1)}"
            staff_a = f"k{cs[0] + 1:04d}a"
            batch.append({"actor": staff_a, "clinic": home_code, "action": "patient.create",
                          "target": target, "details_json": created_details})  # fmt: skip
            if len(cs) > 1:
                batch.append({"actor": f"k{cs[1] + 1:04d}b", "clinic": codes[cs[1]],
                              "action": "patient.link", "target": target,
                              "details_json": '{"user_created": false}'})  # fmt: skip
            else:
                batch.append({"actor": staff_a, "clinic": home_code, "action": "patient.show",
                              "target": target, "details_json": '{"format": "table"}'})  # fmt: skip
            batch.append({"actor": staff_a, "clinic": home_code, "action": "patient.access",
                          "target": target, "details_json": '{"linked": true}'})  # fmt: skip
            batch.append({"actor": "portal", "clinic": home_code, "action": "portal.login",
                          "target": target, "details_json": '{"method": "mitid"}'})  # fmt: skip
            batch.append({"actor": f"k{cs[0] + 1:04d}b", "clinic": home_code,
                          "action": "patient.show", "target": target,
                          "details_json": '{"format": "table"}'})  # fmt: skip
            if len(batch) >= 50_000:
                flush()
        if batch:
            flush()
        say(f"{events_written:,} audit events: {time.perf_counter() - t0:.1f} s")
        session.commit()
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    say(f"built and analysed in {time.perf_counter() - t0:.1f} s")
    return info


# --- measuring ------------------------------------------------------------------------


def facts(url: str, home: Path) -> dict[str, Any]:
    """Read back what the measurements need from the database (also for --schema)."""
    from sqlalchemy import text

    from patientportal_cli.db import engine as engine_mod

    engine = engine_mod.get_engine(url, home)
    with engine.connect() as conn:
        users = conn.execute(text("SELECT count(*) FROM portal_user")).scalar_one()
        clinics = conn.execute(text("SELECT count(*) FROM clinic")).scalar_one()
        links = conn.execute(text("SELECT count(*) FROM clinic_link")).scalar_one()
        events = conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one()
        largest = conn.execute(
            text(
                "SELECT count(*) FROM clinic_link l JOIN clinic c ON c.id = l.clinic_id WHERE c.code = 'K0001'"
            )
        ).scalar_one()
        pending = conn.execute(
            text(
                "SELECT count(*) FROM registration_request r JOIN clinic c ON c.id = r.clinic_id "
                "WHERE c.code = 'K0020' AND r.status = 'pending'"
            )
        ).scalar_one()
        sample = [
            row[0]
            for row in conn.execute(
                text(
                    "SELECT u.cpr FROM portal_user u JOIN clinic_link l ON l.user_id = u.id "
                    "JOIN clinic c ON c.id = l.clinic_id WHERE c.code = 'K0001' "
                    "AND u.id % 97 = 0 LIMIT 500"
                )
            )
        ]
    return {
        "users": users,
        "clinics": clinics,
        "links": links,
        "events": events,
        "largest": largest,
        "pending": pending,
        "sample": sample,
    }


class Statements:
    """The SQL statements run (and their time) while a service call runs."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.on = False
        self.seen: list[tuple[float, str, Any, str]] = []
        self._start: dict[int, float] = {}
        self.label = ""

        @event.listens_for(engine, "before_cursor_execute")
        def before(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> None:  # noqa: ARG001
            self._start[id(cursor)] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def after(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> None:  # noqa: ARG001
            if self.on and not many:
                took = time.perf_counter() - self._start.pop(id(cursor), time.perf_counter())
                self.seen.append((took, statement, params, self.label))


def service_calls(
    url: str, home: Path, token: str, f: dict[str, Any], runs: int
) -> tuple[list[tuple[str, list[float]]], Statements]:
    from sqlalchemy import text
    from sqlmodel import Session

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.services import approvals, audit, auth, patients

    engine = engine_mod.get_engine(url, home)
    spy = Statements(engine)
    rng = random.Random(1)
    results: list[tuple[str, list[float]]] = []
    with Session(engine, expire_on_commit=False) as session:
        big = auth.resolve(session, token=token, clinic_code="K0001")
        pend = auth.resolve(session, token=token, clinic_code="K0020")
        session.rollback()

        def show() -> None:
            patients.show(session, actor=big, cpr=rng.choice(f["sample"]))

        def access() -> None:
            patients.login_access(session, actor=big, cpr=rng.choice(f["sample"]))

        def listing() -> None:
            page = patients.list_patients(session, actor=big, limit=50)
            rows = list(page)
            page.finish()
            assert len(rows) == min(50, f["largest"])

        def requests() -> None:
            rows = approvals.list_requests(session, actor=pend, status="pending")
            session.rollback()
            assert len(rows) == f["pending"], (len(rows), f["pending"])

        def audit_list() -> None:
            rows = audit.events(session, clinic="K0001", limit=50)
            session.rollback()
            assert len(rows) == 50

        completion_sql = text(
            "SELECT code FROM clinic WHERE code LIKE :p ESCAPE '\\' ORDER BY code"
        )

        def completion() -> None:
            with engine.connect() as conn:
                codes = conn.execute(completion_sql, {"p": "K1%"}).all()
            assert len(codes) >= min(1000, f["clinics"] - 1) or f["clinics"] < 1001

        def floor() -> None:
            audit.record(session, actor="anna", clinic="K0001", action="bench.floor")
            session.commit()

        cases = [
            ("(floor) one audit event, commit", floor),
            ("patient show", show),
            ("patient access", access),
            ("patient list --limit 50", listing),
            ("requests list (500 pending)", requests),
            ("audit list --limit 50", audit_list),
            ("completion: --clinic K1<TAB>", completion),
        ]
        for label, call in cases:
            for _ in range(3):
                call()
            spy.on, spy.label = True, label
            call()
            spy.on = False
            samples = []
            for _ in range(runs):
                t = time.perf_counter()
                call()
                samples.append(time.perf_counter() - t)
            results.append((label, samples))
    return results, spy


def whole_commands(
    url: str, home: Path, token: str, f: dict[str, Any], runs: int, warmup: int
) -> list[tuple[str, list[float], list[float]]]:
    """(label, wall times, CPU times (user + sys) of the process) of each case."""
    env = child_env(
        PATIENTPORTAL_HOME=str(home), PATIENTPORTAL_DB_URL=url, PATIENTPORTAL_TOKEN=token
    )
    pp = patientportal()
    cpr = f["sample"][0]
    completion_env = {
        **env,
        "_PATIENTPORTAL_COMPLETE": "complete_bash",
        "COMP_WORDS": "patientportal --clinic K1",
        "COMP_CWORD": "2",
    }
    table: list[tuple[str, list[str], dict[str, str], Callable[[str], bool]]] = [
        (
            "python -c 'import sqlmodel'",
            [sys.executable, "-c", "import sqlmodel"],
            env,
            lambda o: True,
        ),
        (
            "patient show",
            [*pp, "patient", "show", cpr, "--clinic", "K0001"],
            env,
            lambda o: "K0001" in o,
        ),
        (
            "patient access",
            [*pp, "patient", "access", cpr, "--clinic", "K0001"],
            env,
            lambda o: "MitID" in o,
        ),
        (
            "patient list --limit 50",
            [*pp, "patient", "list", "--limit", "50", "-o", "csv", "--clinic", "K0001"],
            env,
            lambda o: len(o.splitlines()) == 1 + min(50, f["largest"]),
        ),
        (
            "requests list (500 pending)",
            [*pp, "requests", "list", "-o", "csv", "--clinic", "K0020"],
            env,
            lambda o: len(o.splitlines()) == 1 + f["pending"],
        ),
        (
            "audit list --limit 50",
            [*pp, "audit", "list", "--limit", "50", "-o", "csv", "--clinic", "K0001"],
            env,
            lambda o: len(o.splitlines()) == 51,
        ),
        (
            "completion: --clinic K1<TAB>",
            pp,
            completion_env,
            lambda o: "K1000" in o or f["clinics"] < 1001,
        ),
    ]
    samples: list[list[float]] = [[] for _ in table]
    cpu: list[list[float]] = [[] for _ in table]
    for round_no in range(warmup + runs):
        for i, (label, argv, e, check) in enumerate(table):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            r = subprocess.run(argv, env=e, capture_output=True, text=True)
            dt = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if r.returncode != 0 or not check(r.stdout):
                raise SystemExit(
                    f"{label} failed ({r.returncode}): {r.stderr[-1000:]}\n{r.stdout[:500]}"
                )
            if round_no >= warmup:
                samples[i].append(dt)
                cpu[i].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return [(label, s, c) for (label, *_), s, c in zip(table, samples, cpu, strict=True)]


def verify_runs(url: str, home: Path, token: str, new_events: int) -> list[tuple[str, int, float]]:
    """(label, events checked, seconds) for a full verify, then an incremental one."""
    import re

    from sqlmodel import Session

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.services import audit

    env = child_env(
        PATIENTPORTAL_HOME=str(home),
        PATIENTPORTAL_DB_URL=url,
        PATIENTPORTAL_TOKEN=token,
        PATIENTPORTAL_AUDIT_KEY=AUDIT_KEY,
    )
    pp = patientportal()
    has_checkpoint = (
        "checkpoint"
        in subprocess.run([*pp, "audit", "--help"], env=env, capture_output=True, text=True).stdout
    )

    def timed(label: str, argv: list[str]) -> tuple[str, int, float]:
        t = time.perf_counter()
        r = subprocess.run([*pp, *argv], env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr[-1000:]}")
        m = re.search(r"([\d,]+) events checked", r.stderr)
        return label, int(m.group(1).replace(",", "")) if m else -1, dt

    out = []
    if has_checkpoint:
        out.append(timed("audit verify --all --full", ["audit", "verify", "--all", "--full"]))
        subprocess.run(
            [*pp, "audit", "checkpoint", "--all"], env=env, capture_output=True, check=True
        )
    else:
        out.append(timed("audit verify (full: no checkpoints here)", ["audit", "verify"]))
    engine = engine_mod.get_engine(url, home)
    rng = random.Random(2)
    with Session(engine) as session:
        events = [
            {
                "actor": "anna",
                "clinic": f"K{rng.randint(1, 50):04d}",
                "action": "patient.show",
                "target": "cpr:0101401234",
                "details": {"format": "table"},
            }
            for _ in range(new_events)
        ]
        audit.record_many(session, events)
        session.commit()
    if has_checkpoint:
        out.append(
            timed(f"audit verify --all after {new_events:,} new", ["audit", "verify", "--all"])
        )
    else:
        out.append(timed(f"audit verify (full) after {new_events:,} new", ["audit", "verify"]))
    return out


def csv_export(url: str, home: Path, token: str, tmp: Path) -> tuple[float, int, int]:
    env = child_env(
        PATIENTPORTAL_HOME=str(home), PATIENTPORTAL_DB_URL=url, PATIENTPORTAL_TOKEN=token
    )
    target = tmp / "export.csv"
    argv = [*patientportal(), "patient", "list", "-o", "csv", "--clinic", "K0001"]
    r = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(target), *argv], env=env, capture_output=True, text=True
    )
    code, seconds, rss_kb = r.stdout.split()
    if code != "0":
        raise SystemExit(f"patient list -o csv failed ({code}): {r.stderr}")
    with open(target, "rb") as handle:
        rows = sum(1 for _ in handle) - 1
    return float(seconds), int(rss_kb), rows


def explain(url: str, home: Path, spy: Statements) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) (SQLite: EXPLAIN QUERY PLAN) of each case's slowest
    SELECT, slowest case first."""
    from patientportal_cli.db import engine as engine_mod

    slowest: dict[str, tuple[float, str, Any]] = {}
    for took, statement, params, label in spy.seen:
        if not statement.lstrip().upper().startswith("SELECT") or "FOR UPDATE" in statement.upper():
            continue
        if label not in slowest or took > slowest[label][0]:
            slowest[label] = (took, statement, params)
    engine = engine_mod.get_engine(url, home)
    sqlite = engine.dialect.name == "sqlite"
    raw = engine.raw_connection()
    out = []
    try:
        for label, (took, statement, params) in sorted(slowest.items(), key=lambda i: -i[1][0]):
            cur = raw.cursor()
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
            cur.execute(prefix + statement, params)
            lines = [str(row[-1]) for row in cur.fetchall()]
            plan = [line if len(line) < 160 else line[:157] + "..." for line in lines]
            raw.rollback()
            sql = " ".join(statement.split())
            sql = sql if len(sql) < 400 else sql[:397] + "..."
            out.append(
                f"-- {label}: slowest SELECT {took * 1000:.2f} ms\n{sql}\n" + "\n".join(plan)
            )
    finally:
        raw.close()
    return out


# --- main -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="portal users")
    parser.add_argument("--clinics", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=200, help="service-call runs per case")
    parser.add_argument("--command-runs", type=int, default=15, help="whole-command runs per case")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured whole-command rounds")
    parser.add_argument(
        "--new-events", type=int, default=10_000, help="before the incremental verify"
    )
    parser.add_argument(
        "--db",
        default=PG_DEFAULT,
        help="PostgreSQL URL (a schema is made in it); sqlite (a temporary file) or "
        "sqlite:///PATH (built once, then measured again)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument("--schema", help="measure this kept schema instead of building one")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument(
        "--commands-only",
        action="store_true",
        help="only the whole commands (no service calls, verify, export or plans)",
    )
    args = parser.parse_args(argv)

    import sqlalchemy

    from patientportal_cli.db import engine as engine_mod

    def say(text: str) -> None:
        print(f"  {text}", flush=True)

    tmp_dir = tempfile.TemporaryDirectory(prefix="pp-scale-")
    tmp = Path(tmp_dir.name)
    home = tmp / "home"
    sqlite = args.db == "sqlite" or args.db.startswith("sqlite:")
    admin: Any = None
    if sqlite:
        url = f"sqlite:///{tmp / 'scale.db'}" if args.db == "sqlite" else args.db
        where = "SQLite file " + (engine_mod.parse_url(url).database or "?")
    else:
        admin = sqlalchemy.create_engine(args.db, isolation_level="AUTOCOMMIT")
        schema = args.schema or "scale_" + uuid.uuid4().hex[:10]
        url = f"{args.db}?options=-csearch_path%3D{schema}"
        where = f"schema {schema}"
    git = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"benchmarks/scale.py at commit {git or '?'}; {where}; {os.cpu_count()} CPUs; load {load()}",
        flush=True,
    )
    built_here = False
    try:
        if sqlite:
            path = Path(engine_mod.parse_url(url).database or "")
            built_here = not path.exists() or path.stat().st_size == 0
        elif not args.schema:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            built_here = True
        if built_here:
            print(f"building N = {args.n:,} users, {args.clinics:,} clinics:", flush=True)
            build(url, home, args.n, args.clinics, args.seed, say)
        f = facts(url, home)
        if sqlite:
            size = f"{path.stat().st_size / 2**20:.0f} MB"
        else:
            with admin.connect() as conn:
                size = conn.exec_driver_sql(
                    "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c "
                    f"JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = '{schema}' AND c.relkind = 'r'"
                ).scalar_one()
        print(
            f"database: {f['users']:,} users, {f['clinics']:,} clinics, {f['links']:,} links "
            f"({f['links'] / max(1, f['users']):.2f} per user), largest clinic K0001 {f['largest']:,} "
            f"patients, {f['pending']} pending at K0020, {f['events']:,} audit events; {size} on disk",
            flush=True,
        )
        from sqlmodel import Session

        from patientportal_cli.services import auth

        with Session(engine_mod.get_engine(url, home)) as session:
            token, _ = auth.login(session, username="anna", password=PASSWORD)

        if not args.commands_only:
            results, spy = service_calls(url, home, token, f, args.runs)
            print(f"\nservice calls (in-process), {args.runs} runs each, load {load()}")
            print(f"{'case':<30} {'p50 ms':>8} {'p95 ms':>8}")
            for label, samples in results:
                print(
                    f"{label:<30} {pct(samples, 0.5) * 1000:>8.2f} {pct(samples, 0.95) * 1000:>8.2f}"
                )

        commands = whole_commands(url, home, token, f, args.command_runs, args.warmup)
        floor = pct(commands[0][1], 0.5)
        cpu_floor = pct(commands[0][2], 0.5)
        print(
            f"\nwhole commands (fresh processes, round-robin), {args.command_runs} runs each, load {load()}"
        )
        print(
            f"{'case':<30} {'p50 ms':>8} {'p95 ms':>8} {'p50 / floor':>12} "
            f"{'CPU p50 ms':>11} {'/ floor':>8}"
        )
        for label, samples, cpu in commands:
            print(
                f"{label:<30} {pct(samples, 0.5) * 1000:>8.0f} {pct(samples, 0.95) * 1000:>8.0f} "
                f"{pct(samples, 0.5) / floor:>11.2f}x {pct(cpu, 0.5) * 1000:>11.0f} "
                f"{pct(cpu, 0.5) / cpu_floor:>7.2f}x"
            )
        if args.commands_only:
            return 0

        print(f"\naudit verify (whole commands), load {load()}")
        for label, checked, seconds in verify_runs(url, home, token, args.new_events):
            rate = f"{checked / seconds:,.0f} events/s" if checked > 0 else ""
            print(f"{label:<40} {checked:>12,} events {seconds:>8.2f} s  {rate}")

        seconds, rss_kb, rows = csv_export(url, home, token, tmp)
        print(
            f"\npatient list -o csv at K0001: {rows:,} rows in {seconds:.2f} s, peak RSS {rss_kb / 1024:.0f} MB, load {load()}"
        )

        plans = "EXPLAIN QUERY PLAN" if sqlite else "EXPLAIN (ANALYZE, BUFFERS)"
        print(f"\n{plans} of each service call's slowest SELECT:")
        for text in explain(url, home, spy):
            print(text + "\n")
    finally:
        engine_mod.dispose_all()
        if sqlite:
            if args.db != "sqlite" and built_here:
                print(f"kept {where}: --db {url} measures it again")
        elif not args.keep and not args.schema:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        elif args.keep:
            print(f"kept schema {schema}: --schema {schema} measures it again")
        if admin is not None:
            admin.dispose()
        tmp_dir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
