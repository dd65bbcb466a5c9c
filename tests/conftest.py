"""The fixtures (all of them; helpers are in tests/helpers/): a temp home per test, an
in-memory keyring, both databases, the CLI, a staff member logged in, an SMTP server.

Database-facing tests take the ``db_url`` fixture (or ``cli``/``staff``), which runs
each test twice: on a fresh SQLite file and on a fresh PostgreSQL schema. PostgreSQL
tests skip when no server answers, except when CI is set: then they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db import migrate
from patientportal_cli.services import staff as staff_service
from tests.helpers.cli import PASSWORD, Cli, Staff
from tests.helpers.db import pg_schema_url
from tests.helpers.memory_keyring import MemoryKeyring
from tests.helpers.smtp import Received, SmtpServer, free_port


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


@pytest.fixture
def session(db_url: str, home: Path) -> Iterator[Session]:
    """A session on an initialised database (clinic NORD, admin anna), for service tests."""
    engine = engine_mod.get_engine(db_url, home)
    migrate.upgrade(engine)
    with Session(engine, expire_on_commit=False) as s:
        staff_service.init(
            s,
            clinic_code="nord",
            clinic_name="  Nord   klinikken ",
            admin="Anna",
            admin_name="Anna Admin",
            password=PASSWORD,
        )
        yield s


@pytest.fixture
def cli() -> Cli:
    return Cli()


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


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback for one test."""
    handler = Received()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()
