"""Regenerate the ready-made shell completion scripts in ``completions/``.

    python -m patientportal_cli.cli.completion_scripts           # rewrite completions/
    python -m patientportal_cli.cli.completion_scripts --check   # exit 1 if stale

Each script is what the real app prints for ``patientportal --show-completion SHELL``
(Typer's completion support; the variable ``_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION``
makes ``--show-completion`` take the shell as its value instead of detecting the
running shell). The scripts call back into ``patientportal`` on every TAB
(``_PATIENTPORTAL_COMPLETE=complete_SHELL``), so commands, options and values come from
the installed app at that moment: adding a command does not make them stale, but a
change of program name or of Typer's script templates does, and the test
tests/test_completion.py says so.

This module is not imported by the app; it runs the app in a subprocess.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

PROG = "patientportal"

# shell given to --show-completion -> file name in completions/
FILES = {
    "bash": "patientportal.bash",
    "zsh": "patientportal.zsh",
    "fish": "patientportal.fish",
    "powershell": "patientportal.ps1",
}

COMMAND = "python -m patientportal_cli.cli.completion_scripts"


def default_dir() -> Path:
    """completions/ at the root of the source checkout (or of the current directory)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").exists():
        return root / "completions"
    return Path.cwd() / "completions"


def render(shell: str) -> str:
    """The script the app prints for ``patientportal --show-completion SHELL``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("_PATIENTPORTAL_COMPLETE")}
    env["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "patientportal_cli", "--show-completion", shell],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(
            f"`{PROG} --show-completion {shell}` failed (exit {proc.returncode}): "
            + proc.stderr.strip()
        )
    return proc.stdout if proc.stdout.endswith("\n") else proc.stdout + "\n"


def render_all() -> dict[str, str]:
    """File name -> content, for every supported shell."""
    return {name: render(shell) for shell, name in FILES.items()}


def stale(directory: Path, wanted: dict[str, str] | None = None) -> list[str]:
    """Names of the files in ``directory`` that are missing or differ from the app's
    (``wanted``: what render_all() returned, if already at hand)."""
    wanted = wanted if wanted is not None else render_all()
    out = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def write(directory: Path, wanted: dict[str, str] | None = None) -> list[str]:
    """Write every script; return the names of those that changed."""
    wanted = wanted if wanted is not None else render_all()
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8", newline="\n")
            changed.append(name)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="default: completions/")
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    directory = args.dir or default_dir()
    if args.check:
        names = stale(directory)
        if names:
            print(f"Stale in {directory}: {', '.join(names)}. Run `{COMMAND}`.", file=sys.stderr)
            return 1
        print(f"{directory}: up to date.", file=sys.stderr)
        return 0
    changed = write(directory)
    print(
        f"{directory}: " + (f"updated {', '.join(changed)}." if changed else "up to date."),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
