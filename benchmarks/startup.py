"""Startup benchmark: ``patientportal --help`` and a bash TAB-completion request against
``python -c "import typer"``, measured in the same run on the same interpreter.

    python benchmarks/startup.py            # 15 runs each after 2 warm-ups
    python benchmarks/startup.py --runs 31 --check   # exit 1 when a ratio is over target

Runs are interleaved (one of each command per round) so that a machine getting busier
or quieter during the run affects all of them alike. Each sample is the wall time of a
fresh process (``subprocess.run``); the median is reported, and the ratio of each
median to the ``import typer`` median. Targets: completion <= 2.0x, --help <= 2.5x.

The last row, "(floor)", is a two-command Typer app with no code of ours: what Typer
itself costs for a completion request on the installed version (Typer >= 0.29 builds
pydantic validators for the parameters it parses, --help included, on every request).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def patientportal_command() -> list[str]:
    """The installed console script next to this interpreter (what a shell runs)."""
    script = Path(sys.executable).with_name("patientportal")
    if script.exists():
        return [str(script)]
    found = shutil.which("patientportal")
    return [found] if found else [sys.executable, "-m", "patientportal_cli"]


# The least any Typer app pays for a completion request: one group, no imports of ours.
FLOOR_APP = """
import typer
app = typer.Typer()
group = typer.Typer()
app.add_typer(group, name="clinic")
@group.command()
def show() -> None: ...
@group.command()
def list() -> None: ...
app(prog_name="floor")
"""


def cases() -> list[tuple[str, list[str], dict[str, str], float | None]]:
    """(label, argv, extra env, target ratio)."""
    pp = patientportal_command()
    completion_env = {
        "_PATIENTPORTAL_COMPLETE": "complete_bash",
        "COMP_WORDS": "patientportal cl",
        "COMP_CWORD": "1",
    }
    floor_env = {"_FLOOR_COMPLETE": "complete_bash", "COMP_WORDS": "floor cl", "COMP_CWORD": "1"}
    return [
        ('python -c "import typer"', [sys.executable, "-c", "import typer"], {}, None),
        ("patientportal --help", [*pp, "--help"], {}, 2.5),
        ("completion: patientportal cl<TAB>", pp, completion_env, 2.0),
        (
            "(floor) 2-command Typer app, cl<TAB>",
            [sys.executable, "-c", FLOOR_APP],
            floor_env,
            None,
        ),
    ]


def run_once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} failed with exit {proc.returncode}:\n"
            + proc.stderr.decode(errors="replace")
        )
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs per command")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured runs first")
    parser.add_argument("--check", action="store_true", help="exit 1 if over a target")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pp-startup-") as tmp:
        # An installed package has its bytecode compiled (pip does it); let the warm-up
        # runs write it for a source checkout too, whatever PYTHONDONTWRITEBYTECODE says.
        base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PATIENTPORTAL_") and k != "PYTHONDONTWRITEBYTECODE"
        }
        base_env["PATIENTPORTAL_HOME"] = tmp
        table = cases()
        envs = [{**base_env, **extra} for _, _, extra, _ in table]
        samples: list[list[float]] = [[] for _ in table]
        for round_no in range(args.warmup + args.runs):
            for i, (_, argv, _, _) in enumerate(table):
                elapsed = run_once(argv, envs[i])
                if round_no >= args.warmup:
                    samples[i].append(elapsed)

    medians = [statistics.median(s) for s in samples]
    base = medians[0]
    from importlib.metadata import version

    print(
        f"python {sys.version.split()[0]}, typer {version('typer')}, {args.runs} runs each "
        f"after {args.warmup} warm-ups, median wall time"
    )
    over = False
    width = max(len(label) for label, *_ in table)
    for (label, _, _, target), median in zip(table, medians, strict=True):
        ratio = median / base
        verdict = ""
        if target is not None:
            ok = ratio <= target
            over = over or not ok
            verdict = f"  (target <= {target:.1f}x: {'ok' if ok else 'OVER'})"
        print(f"{label:<{width}}  {median * 1000:7.1f} ms  {ratio:5.2f}x{verdict}")
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
