"""Concurrent writers on PostgreSQL: do clinics wait on each other?

    python benchmarks/writers.py                       # W = 1,2,4,8, 10 s each, with import
    python benchmarks/writers.py --seconds 5 --writers 1,4 --import-n 50000
    python benchmarks/writers.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test

Everything runs in a fresh PostgreSQL schema (dropped afterwards). Set-up: `patientportal
init` (which migrates), then through the services: one clinic per writer (W01..W08), a
clinic per import (IMP1..), clinic BB for the whole-command writes, one staff member per
clinic (each logged in at their OWN clinic; set-up hashes passwords with cheap argon2
parameters, as the test suite does: logins are not what is measured).

1. Service-level writes. W writer processes (W = 1, 2, 4, 8), each with its own engine
   and its staff member's session token, call ``services.patients.create`` (a new
   patient, linked, activation e-mail queued, audited; its own transaction) in a loop
   for a fixed time after a common start. Reported: aggregate writes/s and per-write
   p50/p95 (ms).
2. The same while a ``patient import`` of ``--import-n`` (default 200,000) new patients
   runs at one more clinic (a ``patientportal patient import FILE --yes --no-send``
   process). The writers start when the import's first batch is visible (its first
   link committed) and run the same fixed time; "overlap" is the share of that time the
   import was still running (below 100 %: the import finished first, and the figures
   are partly idle ones).
3. Whole command: ``patientportal patient create CPR --name .. --email .. --no-invite``
   at clinic BB, in a fresh process each time (start-up, token check, write, commit),
   ``--runs`` times idle and then as many times as fit while an import runs at another
   clinic; p50/p90 of each and the ratio of the p90s (target: 1.5x or better).

The machine's 1-minute load average is printed with each result: other work on the
machine (2 cores here) slows everything, so compare rows of one run. Not a timed test.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
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

PG_DEFAULT = os.environ.get(
    "PATIENTPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PASSWORD = "Bench-pass1"
BIRTH_START = datetime.date(1940, 1, 1)
BIRTH_DAYS = 20_000
# CPR number blocks (index k -> a valid, distinct number; k < 80,000,000 keeps the 7th
# digit at 0-3: born in the 1900s)
CASE_BLOCK = 5_000_000  # per measured case
WRITER_BLOCK = 600_000  # per writer within a case
IMPORT_BASE = 50_000_000
IMPORT_BLOCK = 1_000_000
COMMAND_BASE = 70_000_000


def cpr_number(k: int) -> str:
    born = BIRTH_START + datetime.timedelta(days=k % BIRTH_DAYS)
    serial = k // BIRTH_DAYS
    assert serial < 4000, k
    return f"{born:%d%m%y}{serial:04d}"


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def patientportal() -> list[str]:
    script = Path(sys.executable).with_name("patientportal")
    return [str(script)] if script.exists() else [sys.executable, "-m", "patientportal_cli"]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


# --- database --------------------------------------------------------------------------


def fresh_schema(base: str) -> tuple[str, str]:
    import sqlalchemy

    schema = "bench_" + uuid.uuid4().hex[:10]
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()
    return f"{base}?options=-csearch_path%3D{schema}", schema


def drop_schema(base: str, schema: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


def run_cli(argv: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    r = subprocess.run(
        [*patientportal(), *argv], env=env, input=stdin, capture_output=True, text=True
    )
    if r.returncode != 0:
        raise SystemExit(f"patientportal {' '.join(argv)} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def setup(url: str, home: Path, clinics: list[str]) -> dict[str, str]:
    """init, then one clinic and one staff member per code; returns code -> token."""
    env = {**os.environ, "PATIENTPORTAL_HOME": str(home), "PATIENTPORTAL_DB_URL": url}
    env.pop("PATIENTPORTAL_TOKEN", None)
    run_cli(
        [
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
        env,
        PASSWORD + "\n",
    )
    from argon2 import PasswordHasher
    from sqlmodel import Session

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.services import auth, passwords, staff
    from patientportal_cli.services import clinics as clinics_svc

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    passwords._hasher = lambda: cheap  # type: ignore[attr-defined]  # set-up only
    engine = engine_mod.get_engine(url, home)
    tokens: dict[str, str] = {}
    with Session(engine, expire_on_commit=False) as session:
        token, _ = auth.login(session, username="anna", password=PASSWORD)
        for code in clinics:
            admin = auth.resolve(session, token=token, clinic_code=None)
            clinics_svc.create(session, actor=admin, code=code, name=f"Klinik {code}")
            admin = auth.resolve(session, token=token, clinic_code=code)
            user = f"staff_{code.lower()}"
            staff.add(
                session,
                actor=admin,
                username=user,
                full_name=f"Staff {code}",
                role="doctor",
                password=PASSWORD,
            )
            tokens[code], _ = auth.login(
                session, username=user, password=PASSWORD, clinic_code=code
            )
    engine_mod.dispose_all()
    return tokens


# --- service-level writers -------------------------------------------------------------


def writer(
    url: str,
    home: str,
    token: str,
    code: str,
    first: int,
    seconds: float,
    ready: Any,
    start: Any,
    results: Any,
) -> None:
    """One writer process: patients.create in a loop at its own clinic."""
    from sqlmodel import Session

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.services import auth, patients

    engine = engine_mod.get_engine(url, Path(home))
    k = first
    with Session(engine, expire_on_commit=False) as session:
        actor = auth.resolve(session, token=token, clinic_code=code)
        session.rollback()

        def one() -> float:
            nonlocal k
            t = time.perf_counter()
            patients.create(
                session,
                actor=actor,
                cpr=cpr_number(k),
                name=f"Bench Patient {k}",
                email=f"p{k}@example.dk",
            )
            k += 1
            return time.perf_counter() - t

        one()  # warm: connection, caches
        ready.put(code)
        start.wait()
        deadline = time.perf_counter() + seconds
        latencies: list[float] = []
        while time.perf_counter() < deadline:
            latencies.append(one())
    engine.dispose()
    results.put(latencies)


def run_writers(
    url: str,
    home: Path,
    tokens: dict[str, str],
    codes: list[str],
    case_no: int,
    seconds: float,
    before_start: Any = None,
) -> tuple[list[float], float]:
    """W writer processes; returns (all latencies, the monotonic start time)."""
    ctx = mp.get_context("spawn")
    ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=writer,
            args=(
                url,
                str(home),
                tokens[code],
                code,
                case_no * CASE_BLOCK + i * WRITER_BLOCK,
                seconds,
                ready,
                start,
                results,
            ),
        )
        for i, code in enumerate(codes)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    if before_start is not None:
        before_start()
    began = time.monotonic()
    start.set()
    latencies: list[float] = []
    for _ in procs:
        latencies.extend(results.get(timeout=seconds + 600))
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a writer failed (exit {p.exitcode})")
    return latencies, began


# --- the import ------------------------------------------------------------------------


def write_csv(path: Path, first: int, n: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("CPR-nummer;Navn;E-mail;Ingen MitID\r\n")
        for k in range(first, first + n):
            cpr = cpr_number(k)
            handle.write(f"{cpr[:6]}-{cpr[6:]};Import Patient {k};i{k}@example.dk;\r\n")


class Import:
    """A ``patient import`` running in the background at its own clinic."""

    def __init__(self, url: str, home: Path, token: str, code: str, path: Path) -> None:
        env = {
            **os.environ,
            "PATIENTPORTAL_HOME": str(home),
            "PATIENTPORTAL_DB_URL": url,
            "PATIENTPORTAL_TOKEN": token,
        }
        self.url, self.home, self.code = url, home, code
        self.began = time.monotonic()
        self.proc = subprocess.Popen(
            [*patientportal(), "patient", "import", str(path), "--yes", "--no-send"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.ended: float | None = None

    def wait_first_batch(self) -> None:
        """Until the import's first batch is committed (its clinic has a link)."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url)
        query = sqlalchemy.text(
            "SELECT 1 FROM clinic_link l JOIN clinic c ON c.id = l.clinic_id "
            "WHERE c.code = :code LIMIT 1"
        )
        try:
            while True:
                with engine.connect() as conn:
                    if conn.execute(query, {"code": self.code}).first() is not None:
                        return
                if self.proc.poll() is not None:
                    raise SystemExit(f"the import ended early: {self.stderr()}")
                time.sleep(0.05)
        finally:
            engine.dispose()

    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self) -> float:
        code = self.proc.wait()
        if self.ended is None:
            self.ended = time.monotonic()
        if code != 0:
            raise SystemExit(f"the import failed ({code}): {self.stderr()}")
        return self.ended

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")[-2000:]


def watch(imp: Import) -> None:
    """Note the import's end time as soon as it ends (a thread)."""
    imp.proc.wait()
    imp.ended = time.monotonic()


# --- whole commands ---------------------------------------------------------------------


def command_once(env: dict[str, str], k: int) -> float:
    cpr = cpr_number(k)
    argv = [
        *patientportal(),
        "patient",
        "create",
        f"{cpr[:6]}-{cpr[6:]}",
        "--name",
        f"Small Write {k}",
        "--email",
        f"s{k}@example.dk",
        "--no-invite",
    ]
    t = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"patient create failed ({r.returncode}): {r.stderr}")
    return dt


# --- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=PG_DEFAULT, help="PostgreSQL URL (a schema is made)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured case")
    parser.add_argument("--writers", default="1,2,4,8", help="writer counts, comma-separated")
    parser.add_argument("--import-n", type=int, default=200_000, help="patients in the import")
    parser.add_argument(
        "--import-writers",
        default=None,
        help="writer counts to run during an import (default: the same as --writers; '' for none)",
    )
    parser.add_argument("--runs", type=int, default=15, help="whole-command runs idle")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.writers.split(",") if w.strip()]
    during = (
        counts
        if args.import_writers is None
        else [int(w) for w in args.import_writers.split(",") if w.strip()]
    )
    width = max(counts + during + [1])
    writer_codes = [f"W{i + 1:02d}" for i in range(width)]
    import_codes = [f"IMP{i + 1}" for i in range(len(during) + 1)]
    import threading

    from sqlalchemy.engine import make_url

    base = args.db
    url, schema = fresh_schema(base)
    try:
        git = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"commit: {git[:100]}")
        print(
            f"database: PostgreSQL {make_url(base).host}/{make_url(base).database}, "
            f"schema {schema}; {os.cpu_count()} CPUs; {args.seconds:g} s per case; "
            f"import of {args.import_n:,} patients"
        )
        with tempfile.TemporaryDirectory(prefix="pp-writers-") as tmp:
            home = Path(tmp) / "home"
            tokens = setup(url, home, [*writer_codes, *import_codes, "BB"])
            print()
            print(
                f"{'case':<16} {'W':>2} {'writes':>7} {'writes/s':>9} {'p50 ms':>8} "
                f"{'p95 ms':>8} {'max ms':>8} {'overlap':>8} {'load':>5}"
            )

            def report(case: str, w: int, lat: list[float], overlap: str) -> None:
                print(
                    f"{case:<16} {w:>2} {len(lat):>7} {len(lat) / args.seconds:>9.0f} "
                    f"{pct(lat, 0.5) * 1000:>8.1f} {pct(lat, 0.95) * 1000:>8.1f} "
                    f"{max(lat) * 1000:>8.1f} {overlap:>8} {load():>5}",
                    flush=True,
                )

            case_no = 0
            for w in counts:
                lat, _ = run_writers(url, home, tokens, writer_codes[:w], case_no, args.seconds)
                case_no += 1
                report("idle", w, lat, "")
            for j, w in enumerate(during):
                csv_path = Path(tmp) / f"import{j}.csv"
                write_csv(csv_path, IMPORT_BASE + j * IMPORT_BLOCK, args.import_n)
                holder: dict[str, Any] = {}

                def begin(
                    path: Path = csv_path,
                    code: str = import_codes[j],
                    holder: dict[str, Any] = holder,
                ) -> None:
                    imp = Import(url, home, tokens[code], code, path)
                    imp.wait_first_batch()
                    threading.Thread(target=watch, args=(imp,), daemon=True).start()
                    holder["imp"] = imp

                lat, began = run_writers(
                    url, home, tokens, writer_codes[:w], case_no, args.seconds, begin
                )
                case_no += 1
                imp = holder["imp"]
                ended = imp.finish()
                share = min(1.0, max(0.0, (ended - began) / args.seconds))
                report("during import", w, lat, f"{share:.0%}")

            # whole commands at clinic B
            env = {
                **os.environ,
                "PATIENTPORTAL_HOME": str(home),
                "PATIENTPORTAL_DB_URL": url,
                "PATIENTPORTAL_TOKEN": tokens["BB"],
            }
            k = COMMAND_BASE
            command_once(env, k)  # warm-up
            k += 1
            idle: list[float] = []
            for _ in range(args.runs):
                idle.append(command_once(env, k))
                k += 1
            idle_load = load()
            csv_path = Path(tmp) / "import-cmd.csv"
            code = import_codes[-1]
            write_csv(csv_path, IMPORT_BASE + len(during) * IMPORT_BLOCK, args.import_n)
            imp = Import(url, home, tokens[code], code, csv_path)
            imp.wait_first_batch()
            busy: list[float] = []
            while imp.running() and len(busy) < 4 * args.runs:
                dt = command_once(env, k)
                k += 1
                if imp.running():  # only runs that ended before the import did
                    busy.append(dt)
            imp.finish()
            print()
            print(
                "whole command `patient create CPR --name .. --email .. --no-invite` at clinic BB"
            )
            print(f"{'case':<16} {'runs':>5} {'p50 ms':>8} {'p90 ms':>8} {'load':>5}")
            print(
                f"{'idle':<16} {len(idle):>5} {pct(idle, 0.5) * 1000:>8.0f} "
                f"{pct(idle, 0.9) * 1000:>8.0f} {idle_load:>5}"
            )
            if busy:
                print(
                    f"{'during import':<16} {len(busy):>5} {pct(busy, 0.5) * 1000:>8.0f} "
                    f"{pct(busy, 0.9) * 1000:>8.0f} {load():>5}"
                )
                ratio = pct(busy, 0.9) / pct(idle, 0.9)
                verdict = "ok" if ratio <= 1.5 else "OVER"
                print(f"p90 during import / idle: {ratio:.2f}x (target <= 1.5x: {verdict})")
            else:
                print(
                    "during import: the import ended before one command did (use a larger --import-n)"
                )
    finally:
        from patientportal_cli.db import engine as engine_mod

        engine_mod.dispose_all()
        drop_schema(base, schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())
