"""Bulk import benchmark: N fictitious patients through the real `patientportal` command.

    python benchmarks/import_bench.py                     # N=100,000, SQLite and PostgreSQL
    python benchmarks/import_bench.py -n 1000000 --backend sqlite
    python benchmarks/import_bench.py --invites no        # only the --no-invite runs

For each backend the script makes a fresh database (a new SQLite file; a new PostgreSQL
schema, dropped afterwards), runs `patientportal init` and `login`, then times
`patientportal patient import FILE --yes --no-send` (activation codes and e-mails
queued, not delivered: delivery is `mail send`'s job and is not an import cost) and, in
another fresh database, the same with `--no-invite`. Each import runs in a small
wrapper process that reports the peak resident memory of its child
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``), so the figure is the import
command's own. Patients/s = new patients / wall time of the whole command (start-up,
both phases, commit). The CSV has valid CPR numbers (checked with the portal's own
``services.cpr`` rules), Danish names with æøå and e-mail addresses, `;`-separated with
CRLF line ends, as Excel writes it.

Not a timed test: run it by hand on the machine you care about.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from patientportal_cli.services.cpr import normalize_cpr  # noqa: E402

PASSWORD = "Bench-pass1"
FIRST = ["Søren", "Åse", "Mette", "Jørgen", "Ærlig", "Bjørn", "Else", "Lærke", "Niels", "Øjvind"]
LAST = ["Ørsted", "Bækgaard", "Ålund", "Nielsen", "Jensen", "Hansen", "Kjær", "Møller", "Sø"]
WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "dt = time.perf_counter() - t\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "sys.stderr.write(r.stderr.decode(errors='replace')[-2000:])\n"
    "print(r.returncode, dt, u.ru_maxrss, u.ru_utime + u.ru_stime)\n"
)


def generate(path: Path, n: int) -> None:
    """N distinct, valid CPR numbers born 1940-1994 (7th digit 0: the 1900s)."""
    start = datetime.date(1940, 1, 1)
    days = 20_000
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        handle.write("CPR-nummer;Navn;E-mail;Ingen MitID\r\n")
        for i in range(n):
            born = start + datetime.timedelta(days=i % days)
            serial = i // days
            cpr = f"{born:%d%m%y}{serial:04d}"
            if i % 97 == 0:  # a sample through the portal's own rules
                normalize_cpr(cpr)
            name = f"{FIRST[i % len(FIRST)]} {LAST[(i // 10) % len(LAST)]}"
            handle.write(f"{cpr[:6]}-{cpr[6:]};{name};patient{i}@example.dk;\r\n")


def patientportal() -> list[str]:
    script = Path(sys.executable).with_name("patientportal")
    return [str(script)] if script.exists() else [sys.executable, "-m", "patientportal_cli"]


def run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    r = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


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


def one_run(backend: str, csv_path: Path, n: int, invites: bool, pg_base: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        home = Path(tmp) / "home"
        schema = None
        if backend == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        else:
            url, schema = fresh_pg(pg_base)
        env = {**os.environ, "PATIENTPORTAL_HOME": str(home), "PATIENTPORTAL_DB_URL": url}
        env.pop("PATIENTPORTAL_TOKEN", None)
        try:
            pp = patientportal()
            run(
                [
                    *pp,
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
            token = run(
                [*pp, "login", "anna", "--password-stdin", "--print-token"], env, PASSWORD + "\n"
            ).strip()
            env["PATIENTPORTAL_TOKEN"] = token
            cmd = [*pp, "patient", "import", str(csv_path), "--yes", "--no-send", "-o", "json"]
            if not invites:
                cmd.append("--no-invite")
            r = subprocess.run(
                [sys.executable, "-c", WRAPPER, *cmd], env=env, capture_output=True, text=True
            )
            code, seconds, rss_kb, cpu = r.stdout.split()
            if code != "0":
                raise SystemExit(f"import failed ({code}): {r.stderr.strip()}")
            # the same file again: nothing to change
            t = time.perf_counter()
            again = subprocess.run(cmd, env=env, capture_output=True, text=True)
            rerun = time.perf_counter() - t
            summary = json.loads(again.stdout)
            assert summary["plan"]["already"] == n, summary
        finally:
            if schema:
                drop_pg(pg_base, schema)
    return {
        "backend": backend,
        "invites": invites,
        "n": n,
        "seconds": float(seconds),
        "per_second": n / float(seconds),
        "peak_rss_mb": int(rss_kb) / 1024,
        "cpu_seconds": float(cpu),
        "rerun_seconds": rerun,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="patients (default 100,000)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--invites", choices=["yes", "no", "both"], default="both")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "PATIENTPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="PostgreSQL database to make a fresh schema in",
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    modes = {"yes": [True], "no": [False], "both": [True, False]}[args.invites]
    with tempfile.TemporaryDirectory(prefix="import-bench-data-") as data:
        csv_path = Path(data) / "patients.csv"
        t = time.perf_counter()
        generate(csv_path, args.n)
        size = csv_path.stat().st_size / 1e6
        print(f"generated {args.n:,} patients ({size:.1f} MB) in {time.perf_counter() - t:.1f} s")
        print(
            f"{'backend':<11} {'invites':<8} {'N':>10} {'seconds':>8} {'patients/s':>11} "
            f"{'peak RSS':>9} {'CPU s':>6} {'re-run s':>9} {'load':>5}"
        )
        for backend in backends:
            for invites in modes:
                load = os.getloadavg()[0]  # other work on the machine makes wall times longer
                r = one_run(backend, csv_path, args.n, invites, args.pg)
                print(
                    f"{r['backend']:<11} {'queued' if invites else 'none':<8} {r['n']:>10,} "
                    f"{r['seconds']:>8.2f} {r['per_second']:>11,.0f} "
                    f"{r['peak_rss_mb']:>6.0f} MB {r['cpu_seconds']:>6.2f} "
                    f"{r['rerun_seconds']:>9.2f} {load:>5.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
