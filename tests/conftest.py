"""Shared fixtures: a temp home per test, an in-memory keyring, both databases, the CLI.

Database-facing tests take the ``db_url`` fixture (or ``cli``/``staff``), which runs
each test twice: on a fresh SQLite file and on a fresh PostgreSQL schema. PostgreSQL
tests skip when no server answers, except when CI is set: then they fail.
"""

from __future__ import annotations

import os
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from typer.testing import CliRunner

from patientportal_cli.cli.app import app
from patientportal_cli.db import engine as engine_mod

pytest_plugins = ["tests.smtp_server"]

PG_BASE = os.environ.get(
    "PATIENTPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PASSWORD = "Secret-pass1"


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.store.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing() -> Iterator[None]:
    """Cheap argon2 parameters for in-process tests (about 0.7 s less per hash here).

    Still real argon2; production keeps argon2-cffi's defaults (subprocess tests too).
    """
    from argon2 import PasswordHasher

    from patientportal_cli.services import passwords

    patch = pytest.MonkeyPatch()
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    patch.setattr(passwords, "_hasher", lambda: cheap)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "home"
    monkeypatch.setenv("PATIENTPORTAL_HOME", str(path))
    for var in (
        "PATIENTPORTAL_TOKEN",
        "PATIENTPORTAL_DB_URL",
        "PATIENTPORTAL_CLINIC",
        "PATIENTPORTAL_DEBUG",
        "NO_COLOR",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    yield path
    engine_mod.dispose_all()


_pg_state: dict[str, Any] = {}


def _pg_available() -> bool:
    if "ok" not in _pg_state:
        import sqlalchemy

        try:
            eng = sqlalchemy.create_engine(PG_BASE, connect_args={"connect_timeout": 3})
            with eng.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            eng.dispose()
            _pg_state["ok"] = True
        except Exception as exc:  # noqa: BLE001
            _pg_state["ok"] = False
            _pg_state["error"] = str(exc).splitlines()[0]
    return bool(_pg_state["ok"])


def require_pg() -> None:
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {_pg_state.get('error')}")
        pytest.skip(f"no PostgreSQL server: {_pg_state.get('error')}")


def pg_schema_url() -> Iterator[str]:
    """A fresh schema on the test server; dropped afterwards."""
    import sqlalchemy

    require_pg()
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sqlalchemy.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        engine_mod.dispose_all()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty database on each backend, set as PATIENTPORTAL_DB_URL."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        monkeypatch.setenv("PATIENTPORTAL_DB_URL", url)
        yield url
        return
    gen = pg_schema_url()
    url = next(gen)
    monkeypatch.setenv("PATIENTPORTAL_DB_URL", url)
    yield url
    gen.close()


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


@pytest.fixture
def cli() -> Cli:
    return Cli()


@dataclass
class Staff:
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


@pytest.fixture
def staff(cli: Cli, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Staff:
    """An initialised database (clinic NORD, admin 'anna') with anna logged in."""
    cli(
        "init --clinic NORD --clinic-name 'Nordklinikken' --admin anna --admin-name 'Anna Admin' --password-stdin",
        input=PASSWORD + "\n",
    )
    helper = Staff(cli, monkeypatch)
    helper.login("anna")
    return helper
