"""Audit verify benchmark: full and incremental `audit verify` over N events.

    python benchmarks/audit_verify.py                      # N=200,000, SQLite and PostgreSQL
    python benchmarks/audit_verify.py -n 1000000 --backend postgresql

For each backend: a fresh database (a new SQLite file; a new PostgreSQL schema, dropped
afterwards), `patientportal init` and `login`, then N events written through the real
bulk path the patient import uses (``audit.chain`` computes the rows and the chain head,
``importing.bulk.Writer`` inserts them: COPY on PostgreSQL), in batches of 10,000
committed one by one, in the clinic's chain, with the target and details of a
``patient.create`` event. Then it times:

- full: ``audit.verify(..., full=True)`` as a service call, and the whole command
  ``patientportal audit verify --full`` (start-up included);
- incremental: after ``audit checkpoint`` and 10,000 more events, ``audit.verify`` as a
  service call (it reports how many events it hashed) and ``patientportal audit verify``.

Events/s = events checked / wall time. Each figure is the best of 3 runs (the machine is
shared). Not a timed test: run it by hand on the machine you care about.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "Bench-pass1"
KEY = "benchmark-audit-key"
BATCH = 10_000


def patientportal() -> list[str]:
    script = Path(sys.executable).with_name("patientportal")
    return [str(script)] if script.exists() else [sys.executable, "-m", "patientportal_cli"]


def run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    r = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout + r.stderr


def fresh_pg(base: str) -> tuple[str, str]:
    import sqlalchemy

    schema = "bench_" + uuid.uuid4().hex[:10]
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()
    return f"{base}?options=-csearch_path%3D{schema}", schema


def drop_pg(base: str, schema: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


def write_events(url: str, home: Path, n: int, start: int) -> None:
    """N events through audit.chain + the import's Writer, 10,000 per transaction."""
    from sqlmodel import Session

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.db.models import AuditEvent
    from patientportal_cli.services import audit
    from patientportal_cli.services.importing.bulk import Writer

    table = AuditEvent.__table__  # type: ignore[attr-defined]
    engine = engine_mod.get_engine(url, home)
    for first in range(start, start + n, BATCH):
        events: list[dict[str, Any]] = []
        for i in range(first, min(first + BATCH, start + n)):
            cpr = f"{1 + i % 28:02d}{1 + i % 12:02d}{i % 100:02d}{i % 10000:04d}"
            details = {
                "differences": [],
                "file": "patienter.csv",
                "invited": True,
                "line": i + 2,
                "no_mitid": False,
                "record_email": f"patient{i}@example.dk",
                "services": ["booking"],
                "source": "import",
                "user_created": True,
            }
            events.append(
                {
                    "actor": "anna",
                    "clinic": "NORD",
                    "action": "patient.create",
                    "target": f"cpr:{cpr}",
                    "details_json": json.dumps(details, ensure_ascii=False, sort_keys=True),
                }
            )
        with Session(engine) as session:
            writer = Writer(session)
            rows = audit.chain(session, events)
            at = writer.time(table, "at", rows[0][0])
            writer.insert(table, audit.CHAIN_COLUMNS, [(at, *r[1:]) for r in rows])
            session.commit()
    engine_mod.dispose_all()


def service_verify(url: str, home: Path, full: bool) -> tuple[float, int]:
    from sqlmodel import Session

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.services import audit

    engine = engine_mod.get_engine(url, home)
    best = (float("inf"), 0)
    for _ in range(3):
        with Session(engine) as session:
            t = time.perf_counter()
            report = audit.verify(session, chains=["NORD", ""], full=full, key=KEY.encode())
            dt = time.perf_counter() - t
            assert not report.problems, report.problems
            session.rollback()
        best = min(best, (dt, report.checked))
    engine_mod.dispose_all()
    return best


def command_verify(env: dict[str, str], args: list[str]) -> tuple[float, str]:
    best = (float("inf"), "")
    for _ in range(3):
        t = time.perf_counter()
        text = run([*patientportal(), "audit", "verify", *args], env)
        best = min(best, (time.perf_counter() - t, text.splitlines()[0]))
    return best


def one_backend(backend: str, n: int, pg_base: str) -> None:
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        home = Path(tmp) / "home"
        schema = None
        if backend == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        else:
            url, schema = fresh_pg(pg_base)
        env = {
            **os.environ,
            "PATIENTPORTAL_HOME": str(home),
            "PATIENTPORTAL_DB_URL": url,
            "PATIENTPORTAL_AUDIT_KEY": KEY,
        }
        env.pop("PATIENTPORTAL_TOKEN", None)
        os.environ["PATIENTPORTAL_HOME"] = str(home)
        try:
            pp = patientportal()
            run(
                [*pp, "init", "--clinic", "NORD", "--clinic-name", "Nordklinikken", "--admin",
                 "anna", "--admin-name", "Anna Admin", "--password-stdin"],
                env,
                PASSWORD + "\n",
            )  # fmt: skip
            env["PATIENTPORTAL_TOKEN"] = run(
                [*pp, "login", "anna", "--password-stdin", "--print-token"], env, PASSWORD + "\n"
            ).splitlines()[0]
            t = time.perf_counter()
            write_events(url, home, n, 0)
            print(f"{backend}: wrote {n:,} events in {time.perf_counter() - t:.1f} s", flush=True)
            dt, checked = service_verify(url, home, full=True)
            print(
                f"  full, service call : {checked:>9,} events {dt:6.2f} s {checked / dt:>9,.0f}/s"
            )
            dt, line = command_verify(env, ["--full"])
            print(
                f"  full, whole command: {checked:>9,} events {dt:6.2f} s {checked / dt:>9,.0f}/s"
            )
            print(f"    ({line})")
            run([*pp, "audit", "checkpoint"], env)
            write_events(url, home, 10_000, n)
            dt, checked = service_verify(url, home, full=False)
            print(
                f"  incremental after 10,000 new, service call : {checked:>6,} events {dt:6.3f} s"
            )
            dt, line = command_verify(env, [])
            print(f"  incremental after 10,000 new, whole command: {dt:6.3f} s ({line})")
            dt, line = command_verify(env, [])
            print(f"  incremental, nothing new, whole command    : {dt:6.3f} s ({line})")
        finally:
            if schema:
                drop_pg(pg_base, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="events (default 200,000)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "PATIENTPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="PostgreSQL database to make a fresh schema in",
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} (other work on the machine slows this down)")
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        one_backend(backend, args.n, args.pg)


if __name__ == "__main__":
    main()
