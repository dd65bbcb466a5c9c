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

It prints the median of each case and, per group of cases (the label before the colon:
staff, patient login, patient activate), the largest difference between two medians,
relative to the smaller one. The requirement is at most 10 %. Not a timed test: run it
by hand on the machine you care about.

Adding cases: ``setup`` prepares one database with whatever the cases need and returns
a ``Context``; ``cases(ctx)`` lists them as ``Case(label, argv, stdin)`` (argv after
``patientportal``; an optional ``before(ctx)`` runs untimed before each of its runs).
The patient cases (``patient_cases``) set up their own patients with ``ctx.run``.
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
        *patient_cases(ctx),
    ]


# --- patients (portal login --method two-factor, portal activate) ---------------------

ACTIVATED = "0101901111"  # activated, no-MitID flag at NORD
NOT_ACTIVATED = "0202902222"  # created at NORD, no password yet (its code is pending)
AT_SYD = "0303903333"  # activated, linked at SYD only
INVITED_AT_SYD = "0505905555"  # created at SYD, not activated (its code is pending)
UNKNOWN = "0404904444"  # no portal user


def _mailed_codes(home: Path) -> dict[str, str]:
    """The activation code last mailed to each address (the default Maildir)."""
    import email
    import email.policy
    import email.utils
    import mailbox
    import re

    found: dict[str, str] = {}
    for key in sorted(mailbox.Maildir(home / "maildir", create=False).iterkeys()):
        raw = (home / "maildir" / "new" / key).read_bytes()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        text = str(part.get_content()) if part is not None else ""
        match = re.search(r"^\s+([A-Z0-9]{4}(?:-[A-Z0-9]{4}){3})\s*$", text, re.M)
        if match:
            found[email.utils.parseaddr(str(msg["To"]))[1]] = match.group(1)
    return found


def setup_patients(ctx: Context) -> dict[str, str]:
    """The patients above (as staff anna, who also creates clinic SYD); their codes."""
    staff = Context(home=ctx.home, env=dict(ctx.env), db_url=ctx.db_url)
    token = staff.run("login", "anna", "--password-stdin", "--print-token", stdin=PASSWORD + "\n")
    staff.env["PATIENTPORTAL_TOKEN"] = token.stdout.strip()
    staff.run("clinic", "create", "SYD", "--name", "Sydklinikken")

    def create(cpr: str, mail: str, clinic: str, *flags: str) -> None:
        staff.run("patient", "create", cpr, "--name", "Pat", "--email", mail, "--clinic", clinic)
        if flags:
            staff.run("no-mitid", "set", cpr, "--clinic", clinic, *flags)

    create(ACTIVATED, "a@example.dk", "NORD", "--confirm-email-owner")
    create(NOT_ACTIVATED, "b@example.dk", "NORD")
    create(AT_SYD, "c@example.dk", "SYD", "--confirm-email-owner")
    create(INVITED_AT_SYD, "e@example.dk", "SYD")
    codes = _mailed_codes(ctx.home)
    for cpr, mail, clinic in ((ACTIVATED, "a", "NORD"), (AT_SYD, "c", "SYD")):
        ctx.run(
            "portal",
            "activate",
            cpr,
            "--clinic",
            clinic,
            "--code",
            codes[f"{mail}@example.dk"],
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
    return {"b": codes["b@example.dk"], "e": codes["e@example.dk"]}


def patient_cases(ctx: Context) -> list[Case]:
    codes = setup_patients(ctx)

    def login(label: str, cpr: str, password: str) -> Case:
        argv = ["portal", "login", cpr, "--clinic", "NORD", "--method", "two-factor"]
        return Case(
            label,
            [*argv, "--password-stdin"],
            password + "\n",
            expect_exit=1,
            before=clear_throttle_but_locked,
        )

    def activate(label: str, cpr: str, code: str) -> Case:
        argv = ["portal", "activate", cpr, "--clinic", "NORD", "--code", code]
        return Case(
            label,
            [*argv, "--password-stdin"],
            PASSWORD + "\n",
            expect_exit=1,
            before=clear_throttle_but_locked,
        )

    wrong_code = (
        "AAAA-BBBB-CCCC-DDDD" if codes["b"] != "AAAA-BBBB-CCCC-DDDD" else "DDDD-CCCC-BBBB-AAAA"
    )
    return [
        login("patient login: unknown CPR", UNKNOWN, PASSWORD),
        login("patient login: wrong password", ACTIVATED, WRONG),
        login("patient login: not activated", NOT_ACTIVATED, PASSWORD),
        login("patient login: not linked here (right password)", AT_SYD, PASSWORD),
        activate("patient activate: unknown CPR", UNKNOWN, codes["b"]),
        activate("patient activate: wrong code", NOT_ACTIVATED, wrong_code),
        activate("patient activate: not linked here (right code)", INVITED_AT_SYD, codes["e"]),
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
    # Cases compare within their group (the label before the colon): a staff login and a
    # patient activation do different work, and no refusal of one is mistaken for the other.
    groups: dict[str, list[float]] = {}
    for label, value in medians.items():
        groups.setdefault(label.split(":")[0], []).append(value)
    for group, values in groups.items():
        low, high = min(values), max(values)
        print(f"largest difference between medians, {group}: {(high - low) / low * 100:.1f} %")
    print(f"refusals as they read (exit, message), {len(messages)} distinct:")
    for code, message in sorted(messages):
        print(f"  exit {code}: {message.strip()}")


if __name__ == "__main__":
    main()
