"""How long a refused login takes, per reason: the reasons must not be told apart by time.

    python benchmarks/login_timing.py                  # 20 runs per case, embedded SQLite
    python benchmarks/login_timing.py --runs 30 --db postgresql+psycopg://u@h/db

Each run is a fresh ``patientportal`` process (``python -m patientportal_cli``) with the
production argon2 parameters (argon2-cffi's defaults; only the test suite uses cheap
ones), timed from start to exit, as someone at the command line would time it. The
cases run round-robin (one run of each, then the next round), so a slow moment of the
machine hits every case alike. Before each run the login throttle is cleared for every
name but the locked ones, so a case's earlier runs do not lock it (a refusal counts
toward the lock; that is what it is for).

It prints the median of each case and the largest difference between two medians,
relative to the smaller one. The requirement is at most 10 %. Not a timed test: run it
by hand on the machine you care about.

Adding cases: ``setup`` prepares one database with whatever the cases need and returns
a ``Context``; ``cases(ctx)`` lists them as ``Case(label, argv, stdin)`` (argv after
``patientportal``; an optional ``before(ctx)`` runs untimed before each of its runs).
Append patient cases there (a helper for running the CLI during setup is ``ctx.run``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Secret-pass1"
WRONG = "Wrong-pass-9"


@dataclass
class Context:
    """The database the cases run against and how to reach it."""

    home: Path
    env: dict[str, str]
    db_url: str
    notes: dict[str, str] = field(default_factory=dict)

    def run(
        self, *argv: str, stdin: str = "", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``patientportal ARGV`` in this context (untimed set-up work)."""
        result = subprocess.run(
            [sys.executable, "-m", "patientportal_cli", *argv],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if check and result.returncode != 0:
            raise SystemExit(f"set-up failed: patientportal {' '.join(argv)}\n{result.stderr}")
        return result


@dataclass
class Case:
    label: str
    argv: list[str]
    stdin: str
    expect_exit: int = 4
    before: Callable[[Context], None] | None = None


def setup(db: str | None, home: Path) -> Context:
    """One clinic NORD; staff anna (admin), bo (active), cy (disabled), lo (locked)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENTPORTAL_")}
    env["PATIENTPORTAL_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    if db:
        env["PATIENTPORTAL_DB_URL"] = db
    ctx = Context(home=home, env=env, db_url=db or f"sqlite:///{home / 'patientportal.db'}")
    ctx.run(
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
        stdin=PASSWORD + "\n",
    )
    token = ctx.run("login", "anna", "--password-stdin", "--print-token", stdin=PASSWORD + "\n")
    ctx.env["PATIENTPORTAL_TOKEN"] = token.stdout.strip()
    for user in ("bo", "cy", "lo"):
        ctx.run(
            "staff",
            "add",
            user,
            "--name",
            user.title(),
            "--role",
            "doctor",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
    ctx.run("staff", "disable", "cy")
    del ctx.env["PATIENTPORTAL_TOKEN"]
    for _ in range(5):
        refused = ctx.run(
            "login", "lo", "--password-stdin", "--print-token", stdin=WRONG + "\n", check=False
        )
        assert refused.returncode == 4, refused.stderr
    return ctx


def clear_throttle_but_locked(ctx: Context) -> None:
    """Forget failed logins, keeping the lock of 'lo' (kept by hash: see throttle.key)."""
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import create_engine, text

    from patientportal_cli.services import throttle

    engine = _engines.get(ctx.db_url) or create_engine(ctx.db_url)
    _engines[ctx.db_url] = engine
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM login_throttle WHERE key <> :locked"),
            {"locked": throttle.key(throttle.STAFF, "lo")},
        )


_engines: dict[str, Any] = {}


def cases(ctx: Context) -> list[Case]:
    def staff_login(label: str, user: str, password: str) -> Case:
        return Case(
            label,
            ["login", user, "--password-stdin", "--print-token"],
            password + "\n",
            before=clear_throttle_but_locked,
        )

    return [
        staff_login("staff: unknown user", "nobody", WRONG),
        staff_login("staff: known user, wrong password", "bo", WRONG),
        staff_login("staff: disabled user", "cy", PASSWORD),
        staff_login("staff: locked user (right password)", "lo", PASSWORD),
    ]


def time_once(ctx: Context, case: Case) -> float:
    if case.before is not None:
        case.before(ctx)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "patientportal_cli", *case.argv],
        input=case.stdin,
        env=ctx.env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != case.expect_exit:
        raise SystemExit(
            f"{case.label}: exit {result.returncode}, expected {case.expect_exit}\n{result.stderr}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per case (20)")
    parser.add_argument("--db", help="a database URL (default: SQLite in a temporary home)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pp-login-timing-") as tmp:
        ctx = setup(args.db, Path(tmp))
        listed = cases(ctx)
        messages = set()
        for case in listed:  # a warm-up run each, and how each refusal reads
            if case.before is not None:
                case.before(ctx)
            result = subprocess.run(
                [sys.executable, "-m", "patientportal_cli", *case.argv],
                input=case.stdin,
                env=ctx.env,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            messages.add((result.returncode, result.stderr))
        times: dict[str, list[float]] = {case.label: [] for case in listed}
        for _ in range(args.runs):
            for case in listed:
                times[case.label].append(time_once(ctx, case))
    medians = {label: statistics.median(values) for label, values in times.items()}
    width = max(len(label) for label in medians)
    print(f"{args.runs} runs per case, {'PostgreSQL' if args.db else 'SQLite'}")
    for label, value in medians.items():
        spread = f"{min(times[label]) * 1000:.0f}-{max(times[label]) * 1000:.0f}"
        print(f"  {label:<{width}}  median {value * 1000:7.1f} ms   (range {spread} ms)")
    low, high = min(medians.values()), max(medians.values())
    print(f"largest difference between medians: {(high - low) / low * 100:.1f} %")
    print(f"refusals as they read (exit, message), {len(messages)} distinct:")
    for code, message in sorted(messages):
        print(f"  exit {code}: {message.strip()}")


if __name__ == "__main__":
    main()
