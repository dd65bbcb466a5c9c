"""`patient reconcile` benchmark: a clinic of N patients and its patient list of N rows.

    python benchmarks/reconcile_bench.py                 # N=200,000 on SQLite
    python benchmarks/reconcile_bench.py -n 50000 --backend postgresql --pg URL
    python benchmarks/reconcile_bench.py --seed 7 --changes 0.01

Reproducible: a fresh database (a temporary SQLite file; or a fresh PostgreSQL schema,
dropped afterwards), `patientportal init` and `login`, then N patients created with the
real `patient import --no-invite` (the same CPR numbers as ``import_bench.generate``:
valid, distinct, born 1940-1994). The list (`;`, CRLF, UTF-8 with BOM, as Excel writes
it) has a row for every patient, status 01, except, chosen with ``random.Random(seed)``:
``changes`` of them (default 0.25 %) with status 90, as many with 80, as many left out
(left-clinic), and as many rows of people who are not patients here.

Figures, each the median of ``--runs`` (default 3):

- plan: phase one as the command runs it (``reconcile.make_plan``: reading, checking and
  classifying every row against the clinic's patients), in this process, rows/s of wall
  time and rows per CPU second of this process (the machine may be shared: the CPU
  figure is what the work costs, the wall figure what a busy machine gave it);
- dry run: the whole command `patientportal patient reconcile LIST --dry-run` (a fresh
  process: start-up, phase one, the printed plan), rows/s;
- apply: phase two once (`patient reconcile LIST --yes` as a command; the changes go
  through ``lifecycle``'s rules in batches, one transaction per batch and one audit event
  per change), changes/s of the whole command minus its dry run, of wall time and of the
  command's CPU time (minus its dry run's); then the same list again (plans nothing).

Not a timed test; `README.md` quotes a run. The machine's 1-minute load is printed.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from import_bench import (  # noqa: E402
    PASSWORD,
    drop_pg,
    fresh_pg,
    generate,
    patientportal,
    run,
)


def cprs_of(csv_path: Path) -> list[str]:
    with open(csv_path, encoding="utf-8-sig") as handle:
        next(handle)
        return [line.split(";", 1)[0] for line in handle]


def write_list(path: Path, cprs: list[str], seed: int, changes: float) -> dict[str, int]:
    rng = random.Random(seed)
    k = max(1, int(len(cprs) * changes))
    picked = rng.sample(range(len(cprs)), 3 * k)
    deceased, emigrated, left = set(picked[:k]), set(picked[k : 2 * k]), set(picked[2 * k :])
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        handle.write("CPR-nummer;Status\r\n")
        for i, cpr in enumerate(cprs):
            if i in left:
                continue
            status = "90" if i in deceased else "80" if i in emigrated else "01"
            handle.write(f"{cpr};{status}\r\n")
        for i in range(k):  # not patients here: born 1995-1999, serials not used above
            handle.write(f"0101{95 + i % 5}{9000 + i % 1000:04d};01\r\n")
    return {"rows": len(cprs), "deceased": k, "emigrated": k, "left": k, "unknown": k}


def plan_in_process(url: str, home: Path, token: str, list_path: Path) -> tuple[float, float, int]:
    """Phase one as the command runs it, timed here: (wall seconds, CPU seconds, rows)."""
    from sqlmodel import Session

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.services import auth, reconcile
    from patientportal_cli.services.importing.reader import open_import

    engine = engine_mod.get_engine(url, home)
    with Session(engine, expire_on_commit=False) as session:
        actor = auth.resolve(session, token=token, clinic_code="NORD")
        session.commit()
        t, cpu = time.perf_counter(), time.process_time()
        source = open_import(str(list_path), format="csv", layout=reconcile.LAYOUT)
        with reconcile.make_plan(session, actor=actor, source=source) as plan:
            seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
            rows = plan.counts.rows
    return seconds, cpu, rows


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str, float]:
    """(wall seconds, stderr, CPU seconds of the command's process)."""
    t, cpu = time.perf_counter(), _children_cpu()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t, _children_cpu() - cpu
    if r.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return seconds, r.stderr, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg", default=os.environ.get("PATIENTPORTAL_TEST_PG", ""))
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--changes", type=float, default=0.0025)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as tmp:
        home = Path(tmp) / "home"
        schema = None
        if args.backend == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        else:
            url, schema = fresh_pg(args.pg)
        env = {**os.environ, "PATIENTPORTAL_HOME": str(home), "PATIENTPORTAL_DB_URL": url}
        env.pop("PATIENTPORTAL_TOKEN", None)
        os.environ["PATIENTPORTAL_HOME"] = str(home)
        try:
            pp = patientportal()
            run(
                [*pp, "init", "--clinic", "NORD", "--clinic-name", "Nordklinikken"]
                + ["--admin", "anna", "--admin-name", "Anna Admin", "--password-stdin"],
                env,
                PASSWORD + "\n",
            )
            token = run(
                [*pp, "login", "anna", "--password-stdin", "--print-token"], env, PASSWORD + "\n"
            ).strip()
            env["PATIENTPORTAL_TOKEN"] = token
            patients = Path(tmp) / "patients.csv"
            generate(patients, args.n)
            t = time.perf_counter()
            run([*pp, "patient", "import", str(patients), "--yes", "--no-invite"], env)
            print(f"seeded {args.n} patients in {time.perf_counter() - t:.1f} s", flush=True)
            list_path = Path(tmp) / "list.csv"
            shape = write_list(list_path, cprs_of(patients), args.seed, args.changes)
            print(f"list: {shape}", flush=True)

            plans = [plan_in_process(url, home, token, list_path) for _ in range(args.runs)]
            plan_s = statistics.median(s for s, _, _ in plans)
            plan_cpu = statistics.median(c for _, c, _ in plans)
            rows = plans[0][2]
            dry = [
                timed([*pp, "patient", "reconcile", str(list_path), "--dry-run"], env)
                for _ in range(args.runs)
            ]
            dry_s = statistics.median(s for s, _, _ in dry)
            dry_cpu = statistics.median(c for _, _, c in dry)
            apply_s, _, apply_cpu = timed(
                [*pp, "patient", "reconcile", str(list_path), "--yes"], env
            )
            again_s, again_err, _ = timed(
                [*pp, "patient", "reconcile", str(list_path), "--yes"], env
            )
            assert "Nothing to change" in again_err, again_err
            changes = shape["deceased"] + shape["emigrated"] + shape["left"]
            load = os.getloadavg()[0]
            print(f"backend {args.backend}, N={args.n}, load {load:.2f}")
            print(
                f"plan (phase one, in process): {rows / plan_s:,.0f} rows/s ({plan_s:.2f} s); "
                f"{rows / plan_cpu:,.0f} rows per CPU second ({plan_cpu:.2f} s CPU)"
            )
            print(
                f"dry run (whole command):      {rows / dry_s:,.0f} rows/s ({dry_s:.2f} s; "
                f"{dry_cpu:.2f} s CPU)"
            )
            apply_only, apply_only_cpu = apply_s - dry_s, apply_cpu - dry_cpu
            print(
                f"apply ({changes} changes):      {changes / max(apply_only, 1e-9):,.0f} "
                f"changes/s ({apply_s:.2f} s with its plan); "
                f"{changes / max(apply_only_cpu, 1e-9):,.0f} changes per CPU second "
                f"({apply_cpu:.2f} s CPU with its plan)"
            )
            print(f"second run (plans nothing):   {again_s:.2f} s")
        finally:
            if schema:
                drop_pg(args.pg, schema)


if __name__ == "__main__":
    main()
