"""Running ``patientportal`` in-process with exact stdout/stderr, and the staff side."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from patientportal_cli.cli.app import app

PASSWORD = "Secret-pass1"
LOGIN_FAILED = (
    "Error: Login failed: wrong username or password, or the account is disabled or locked "
    "(5 failed logins lock it for 15 minutes).\n"
)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    def __repr__(self) -> str:
        return f"Result(exit={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


class Cli:
    """Runs ``patientportal`` in-process (CliRunner) with exact stdout/stderr."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(
        self, args: str | list[str], *, input: str | None = None, expect: int | None = 0
    ) -> Result:  # noqa: A002
        argv = shlex.split(args) if isinstance(args, str) else list(args)
        r = self.runner.invoke(app, argv, input=input, catch_exceptions=True)
        result = Result(r.exit_code, r.stdout, r.stderr, r.exception)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise AssertionError(f"{argv} raised {r.exception!r}\n{result}") from r.exception
        if expect is not None:
            assert r.exit_code == expect, f"{argv}: expected exit {expect}, got {result}"
        return result


@dataclass
class Staff:
    """Staff at work: log in (the token goes to PATIENTPORTAL_TOKEN) and add colleagues."""

    cli: Cli
    monkeypatch: pytest.MonkeyPatch

    def login(self, username: str, password: str = PASSWORD, clinic: str | None = None) -> str:
        self.monkeypatch.delenv("PATIENTPORTAL_TOKEN", raising=False)
        args = ["login", username, "--password-stdin", "--print-token"]
        if clinic:
            args = ["--clinic", clinic, *args]
        token = self.cli(args, input=password + "\n").stdout.strip()
        self.monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)
        return token

    def add(
        self, username: str, role: str, *, name: str | None = None, clinic: str | None = None
    ) -> None:
        args = [
            "staff",
            "add",
            username,
            "--name",
            name or username.title(),
            "--role",
            role,
            "--password-stdin",
        ]
        if clinic:
            args += ["--clinic", clinic]
        self.cli(args, input=PASSWORD + "\n")


def lines(text: str) -> list[str]:
    """The non-blank lines of a rendering, without the padding around them; a table's
    rule under its header becomes "-"."""
    stripped = [line.strip() for line in text.splitlines() if line.strip()]
    return ["-" if set(line) == {"─"} else line for line in stripped]


@contextmanager
def terminal(*answers: str) -> Iterator[None]:
    """Answer prompts as if on a terminal; each answer is typed as given."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from patientportal_cli import prompts

    with create_pipe_input() as pipe:
        for answer in answers:
            pipe.send_text(answer)
        with prompts.use_io(pipe, DummyOutput()):
            yield
