"""Every command that `patientportal --help` lists (down to the leaves: `patient guardian
add`) is documented in README.md, the way sqlite-utils' test_docs.py keeps its CLI
reference complete. A command counts as documented when its full path appears after
``patientportal `` or right after a backtick, and not as the start of a longer name
(`staff token` does not document `staff token create`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from patientportal_cli.cli.app import app

README = Path(__file__).resolve().parent.parent / "README.md"


def command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """The full path of each leaf command under ``command`` that --help shows."""
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield " ".join(path)
        return
    for name, sub in sorted(subcommands.items()):
        if not getattr(sub, "hidden", False):
            yield from command_paths(sub, (*path, name))


def documented(path: str, text: str) -> bool:
    return re.search(r"(?:patientportal |`)" + re.escape(path) + r"(?![\w-])", text) is not None


ALL = list(command_paths(typer.main.get_command(app)))


def test_the_walk_finds_nested_commands() -> None:
    assert {"init", "clinic overview", "audit verify", "patient guardian add"} <= set(ALL)
    assert "patient guardian" not in ALL  # a group is not a leaf
    assert len(ALL) > 60


def test_what_counts_as_documented() -> None:
    assert documented("staff token create", "Run `patientportal staff token create NAME`.")
    assert documented("audit verify", "`audit verify` checks")
    assert not documented("staff token create", "`patientportal staff token` and more")
    assert not documented("patient list", "patientportal patient list-all")
    assert not documented("login", "the login of staff")


@pytest.mark.parametrize("path", ALL)
def test_command_is_in_readme(path: str) -> None:
    assert documented(path, README.read_text(encoding="utf-8")), (
        f"`patientportal {path}` is not documented in README.md"
    )
