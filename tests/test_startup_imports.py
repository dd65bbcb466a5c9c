"""Startup stays light: importing the app, every ``--help`` page, ``--version`` and a TAB
completion of command names import none of the heavy libraries (they belong inside the
commands that use them; see cli/common.py). Checked in fresh interpreters, via
sys.modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAVY = [
    "sqlmodel",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "keyring",
    "questionary",
    "argon2",
    "stdnum",
    "email_validator",
]

# Runs in a fresh interpreter: every help page of the real app (walking the registered
# groups and commands, so new groups are covered without editing this test), then
# prints {"argv": [heavy modules loaded so far]} as JSON.
WALK_HELP = r"""
import json, sys
HEAVY = set(sys.argv[1].split(","))

def heavy():
    return sorted({m.split(".")[0] for m in sys.modules} & HEAVY)

report = {"import": heavy()}
from patientportal_cli.cli.app import app
report["import patientportal_cli.cli.app"] = heavy()

def command_names(typer_app):
    for info in typer_app.registered_commands:
        if not info.hidden:
            yield info.name or info.callback.__name__.replace("_", "-")

def pages(typer_app, prefix):
    yield prefix
    for name in command_names(typer_app):
        yield prefix + [name]
    for group in typer_app.registered_groups:
        if not group.hidden:
            yield from pages(group.typer_instance, prefix + [group.name])

argvs = [["--version"]] + [p + ["--help"] for p in pages(app, [])]
for argv in argvs:
    try:
        app(argv, prog_name="patientportal")
    except SystemExit as exc:
        if exc.code not in (0, None):
            report[" ".join(argv)] = f"exit {exc.code}"
            continue
    report[" ".join(argv)] = heavy()
sys.stdout.flush()
sys.stderr.write("\n@@REPORT@@" + json.dumps(report) + "\n")
"""


def run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PATIENTPORTAL_", "_"))}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**base, "COLUMNS": "120", **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_import_and_every_help_page_stay_light(tmp_path):
    proc = run_python(WALK_HELP, ",".join(HEAVY), PATIENTPORTAL_HOME=str(tmp_path))
    assert "@@REPORT@@" in proc.stderr, proc.stderr
    report = json.loads(proc.stderr.split("@@REPORT@@")[-1])
    assert report["import"] == []
    pages = [k for k in report if k.endswith("--help")]
    assert "--help" in pages and "clinic --help" in pages and "staff set-role --help" in pages
    offenders = {argv: mods for argv, mods in report.items() if mods}
    assert offenders == {}, (
        "heavy imports at startup (move them inside the command function): "
        + json.dumps(offenders, indent=1)
    )
    assert not tmp_path.joinpath("patientportal.db").exists()


def test_completion_of_command_names_stays_light(tmp_path):
    code = (
        "import sys\n"
        "from patientportal_cli.cli.app import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"HEAVY = {HEAVY!r}\n"
        "print('@@', sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY)))\n"
    )
    proc = run_python(
        code,
        PATIENTPORTAL_HOME=str(tmp_path),
        _PATIENTPORTAL_COMPLETE="complete_bash",
        COMP_WORDS="patientportal cl",
        COMP_CWORD="1",
    )
    assert proc.stdout.splitlines() == ["clinic", "@@ []"], proc


def test_importtime_of_the_app_lists_no_heavy_module(tmp_path):
    """The same seen through ``python -X importtime`` (what to run when this fails)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import patientportal_cli.cli.app"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "typer" in imported
    assert sorted(imported & set(HEAVY)) == []


# What showing a patient does not use: each is loaded by the commands that need it (the
# keyring only without PATIENTPORTAL_TOKEN, or when PostgreSQL asks for a password).
NOT_FOR_A_LOOK_UP = ["alembic", "argon2", "email_validator", "keyring", "questionary"]
RUN_COMMAND = r"""
import json, sys
from patientportal_cli.cli.app import main
try:
    main()
except SystemExit as exc:
    status = exc.code
sys.stderr.write("\n@@REPORT@@" + json.dumps([status, sorted({m.split(".")[0] for m in sys.modules})]))
"""


def test_a_look_up_loads_only_what_it_uses(staff, cli) -> None:  # noqa: ANN001
    """On both backends, with the token in PATIENTPORTAL_TOKEN (as the staff fixture)."""
    cli("patient create 010203-1234 --name 'Ida Hansen' --email ida@example.dk --no-invite")
    proc = subprocess.run(
        [sys.executable, "-c", RUN_COMMAND, "patient", "show", "010203-1234"],
        env={**os.environ, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert "@@REPORT@@" in proc.stderr, proc.stderr
    status, modules = json.loads(proc.stderr.split("@@REPORT@@")[-1])
    assert status in (0, None), proc.stderr
    assert "010203-****" in proc.stdout and "sqlmodel" in modules
    assert sorted(set(modules) & set(NOT_FOR_A_LOOK_UP)) == []
