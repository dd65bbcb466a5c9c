"""The database layer: db upgrade/current/check, a schema behind or unknown, the embedded
default that migrates itself, unreachable databases, SQLite pragmas, models matching the
migrations, and migrations shipped inside the wheel."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, SQLModel

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db import migrate
from tests.conftest import PASSWORD, Cli
from tests.conftest import Staff as StaffHelper

REPO = Path(__file__).resolve().parent.parent
DOWN_URL = "postgresql+psycopg://postgres:secretpw@127.0.0.1:1/x"
DOWN = (
    "Error: Cannot connect to the PostgreSQL database 'x' on 127.0.0.1:1: connection failed: "
    'connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
)
INIT = "init --clinic NORD --clinic-name Nord --admin anna --admin-name Anna --password-stdin"


def execute(db_url: str, home: Path, sql: str) -> None:
    with Session(engine_mod.get_engine(db_url, home)) as s:
        s.execute(text(sql))
        s.commit()


def no_schema(db_url: str) -> str:
    where = engine_mod.describe(db_url)
    return (
        f"Error: {where[0].upper()}{where[1:]} has no patientportal schema: run "
        "`patientportal db upgrade` (or `patientportal init` on a new installation).\n"
    )


# --- db upgrade | current | check ----------------------------------------------------


def test_upgrade_current_check(cli: Cli, db_url: str) -> None:
    assert cli("db current").stdout == "none\n"
    assert cli("db check", expect=1).stderr == no_schema(db_url)
    r = cli("db upgrade")
    assert r.stderr == f"Upgraded the schema from empty to {migrate.HEAD}.\n"
    assert cli("db upgrade").stderr == f"Already at the newest schema ({migrate.HEAD}).\n"
    assert cli("db current").stdout == f"{migrate.HEAD}\n"
    assert cli("db check").stderr == f"The schema is current ({migrate.HEAD}).\n"
    cli(INIT, input=PASSWORD + "\n")  # init on a migrated, empty database


def test_an_empty_remote_database_names_db_upgrade(
    cli: Cli, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", "pp_anything")
    for command in ("clinic show", "whoami", "staff list"):
        r = cli(command, expect=1)
        assert r.stdout == "" and r.stderr == no_schema(db_url)
    r = cli("login anna --password-stdin", input=PASSWORD + "\n", expect=1)
    assert r.stderr == no_schema(db_url)
    cli(INIT, input=PASSWORD + "\n")  # init migrates a new installation


def test_a_schema_behind_or_unknown_names_db_upgrade(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    execute(db_url, home, "UPDATE alembic_version SET version_num = 'zzz999'")
    unknown = (
        "Error: The database schema is at revision 'zzz999', which this program (schema "
        f"{migrate.HEAD}) does not know: it was probably migrated by a newer patientportal. "
        "Use that version, or restore a backup and run `patientportal db upgrade`.\n"
    )
    for command in ("clinic show", "db check", "db upgrade"):
        r = cli(command, expect=1)
        assert r.stdout == "" and r.stderr == unknown
    assert cli("db current").stdout == "zzz999\n"
    execute(db_url, home, "DELETE FROM alembic_version")  # as if never migrated
    assert cli("clinic show", expect=1).stderr == no_schema(db_url)
    assert cli("db check", expect=1).stderr == no_schema(db_url)


def test_alembic_head_is_migrate_head() -> None:
    assert migrate.script_head() == migrate.HEAD
    assert migrate.known(migrate.HEAD) and not migrate.known("zzz999")
    versions = sorted(p.name for p in (migrate.MIGRATIONS / "versions").glob("*.py"))
    assert versions[-1].startswith(migrate.HEAD + "_")


def test_the_models_match_the_migrations(cli: Cli, db_url: str, home: Path) -> None:
    """Autogenerate finds nothing to do after `db upgrade`: no model change lacks a migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import patientportal_cli.db.models  # noqa: F401

    cli("db upgrade")
    with engine_mod.get_engine(db_url, home).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


# --- the embedded default --------------------------------------------------------------


def test_the_embedded_default_migrates_itself(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --db and no PATIENTPORTAL_DB_URL: an SQLite file in the home directory."""
    assert "PATIENTPORTAL_DB_URL" not in os.environ
    db_file = home / "patientportal.db"
    assert cli("db current").stdout == "none\n"
    r = cli("login anna --password-stdin --print-token", input=PASSWORD + "\n", expect=1)
    assert r.stderr == (
        "Error: No database has been set up yet: run `patientportal init` first "
        "(or point --db at the existing database).\n"
    )
    cli(INIT, input=PASSWORD + "\n")
    assert cli("db current").stdout == f"{migrate.HEAD}\n"  # the first use migrated it
    assert db_file.exists()
    token = cli("login anna --password-stdin --print-token", input=PASSWORD + "\n").stdout
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", token.strip())
    assert cli("clinic show -o csv").stdout.splitlines()[1].startswith("NORD,Nord,none,")
    # the same file behind (migrated down): brought up to date on the next use
    from alembic import command

    with engine_mod.get_engine(f"sqlite:///{db_file}", home).begin() as conn:
        command.downgrade(migrate._config(conn), "base")
    assert cli("db current").stdout == "none\n"
    cli("clinic show", expect=4)  # its sessions went with the data
    assert cli("db current").stdout == f"{migrate.HEAD}\n"


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(
    cli: Cli, home: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    cli(["--db", url, "db", "upgrade"])
    with engine_mod.get_engine(url, home).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    with (
        pytest.raises(Exception, match="FOREIGN KEY"),
        Session(engine_mod.get_engine(url, home)) as s,
    ):
        s.execute(text("INSERT INTO membership (staff_id, clinic_id, role) VALUES (7, 7, 'admin')"))
        s.commit()


# --- unreachable databases -------------------------------------------------------------


def test_an_unreachable_database_is_one_line_without_the_password(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli(["--db", DOWN_URL, "db", "current"], expect=1)
    assert (r.stdout, r.stderr) == ("", DOWN)
    monkeypatch.setenv("PATIENTPORTAL_DB_URL", DOWN_URL)
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", "pp_anything")
    for command in ("db upgrade", "db check", "clinic show", "audit list", "whoami"):
        r = cli(command, expect=1)
        assert (r.stdout, r.stderr) == ("", DOWN), command
    r = cli("login anna --password-stdin", input=PASSWORD + "\n", expect=1)
    assert r.stderr == DOWN
    r = cli(INIT, input=PASSWORD + "\n", expect=1)
    assert r.stderr == DOWN
    assert "secretpw" not in DOWN


def test_an_unknown_host_and_bad_urls(cli: Cli) -> None:
    r = cli(
        ["--db", "postgresql+psycopg://u:secretpw@no-such-host.invalid/pp", "db", "check"], expect=1
    )
    assert r.stderr.startswith(
        "Error: Cannot connect to the PostgreSQL database 'pp' on no-such-host.invalid:5432: "
    )
    assert "secretpw" not in r.stderr and r.stderr.count("\n") == 1
    r = cli(["--db", "mysql://u@h/db", "db", "check"], expect=2)
    assert r.stderr == "Error: Unsupported database 'mysql': use SQLite or PostgreSQL.\n"
    r = cli(["--db", "not a url", "db", "check"], expect=2)
    assert r.stderr == (
        "Error: Invalid database URL: expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB.\n"
    )


class PasswordServer:
    """A TCP server that speaks just enough of PostgreSQL's protocol to ask each client
    for a (cleartext) password and refuse the one it gets; records what it was given."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.passwords: list[str | None] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        while True:  # SSL/GSS requests are answered "N", then the startup message
            size, code = struct.unpack("!ii", self._read(conn, 8))
            self._read(conn, size - 8)
            if code in (80877103, 80877104):
                conn.sendall(b"N")
                continue
            break
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        head = conn.recv(5)
        if len(head) < 5:  # the client had no password to give
            self.passwords.append(None)
            return
        body = self._read(conn, struct.unpack("!i", head[1:])[0] - 4)
        self.passwords.append(body.rstrip(b"\0").decode())
        fields = b'SFATAL\0C28P01\0Mpassword authentication failed for user "pp"\0\0'
        conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)

    def seen(self, count: int) -> list[str | None]:
        """The passwords given, once ``count`` clients were served (or after 10 s)."""
        deadline = time.monotonic() + 10
        while len(self.passwords) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.passwords

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data


def test_the_database_password_comes_from_the_keyring_when_the_server_asks(
    cli: Cli,
    home: Path,
    memory_keyring,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(home / "no-pgpass"))
    server = PasswordServer()
    url = f"postgresql+psycopg://pp@127.0.0.1:{server.port}/pp?sslmode=disable"
    where = f"Error: Cannot connect to the PostgreSQL database 'pp' on 127.0.0.1:{server.port}: "
    refused = f'connection failed: connection to server at "127.0.0.1", port {server.port} failed: '
    set_it = " (set it with `patientportal config set db-password`)\n"
    r = cli(["--db", url, "db", "current"], expect=1)
    assert r.stderr == where + refused + "fe_sendauth: no password supplied" + set_it
    assert server.seen(1) == [None]
    assert engine_mod.get_engine(url, home).url.password is None  # none in the URL

    engine_mod.dispose_all()
    cli("config set db-password --value-stdin", input="Kode-ord-1\n")
    r = cli(["--db", url, "db", "current"], expect=1)
    assert r.stderr == (
        where + refused + 'FATAL:  password authentication failed for user "pp"' + set_it
    )
    assert server.seen(3) == [None, None, "Kode-ord-1"]  # asked, then the keyring's

    engine_mod.dispose_all()  # a password in the URL wins: the keyring is not read
    given = f"postgresql+psycopg://pp:in-url@127.0.0.1:{server.port}/pp?sslmode=disable"
    cli(["--db", given, "db", "current"], expect=1)
    assert server.seen(4)[3:] == ["in-url"]


def test_a_server_that_asks_no_password_never_loads_the_keyring(db_url: str, home: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from patientportal_cli.db import engine, migrate; "
        "e = engine.get_engine(sys.argv[1], Path(sys.argv[2])); engine.ping(e, sys.argv[1]); "
        "print(migrate.current(e), 'keyring' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, db_url, str(home)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == "None False\n"


def test_a_password_echoed_by_the_server_is_hidden() -> None:
    from sqlalchemy.exc import OperationalError

    exc = OperationalError("connect", {}, Exception('password "s3cret-Pw" rejected'))
    err = engine_mod.connection_error(exc, "postgresql+psycopg://u:s3cret-Pw@db.example:6432/pp")
    assert str(err) == (
        "Cannot connect to the PostgreSQL database 'pp' on db.example:6432: password \"***\" "
        "rejected (set it with `patientportal config set db-password`)"
    )


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PATIENTPORTAL_HOME": str(tmp_path), "PATIENTPORTAL_DB_URL": DOWN_URL}
    plain = subprocess.run(
        [sys.executable, "-m", "patientportal_cli", "db", "current"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (plain.returncode, plain.stdout, plain.stderr) == (1, "", DOWN)
    debug = subprocess.run(
        [sys.executable, "-m", "patientportal_cli", "db", "current"],
        env={**env, "PATIENTPORTAL_DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "patientportal_cli.errors.DatabaseUnavailable: Cannot connect to" in debug.stderr


# --- packaging -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_ships_the_migrations(tmp_path: Path) -> None:
    """A non-editable build holds db/migrations and can migrate from there."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "patientportal_cli",
        src / "patientportal_cli",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = (tmp_path / "dist").glob("patientportal_cli-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    for version in (migrate.MIGRATIONS / "versions").glob("*.py"):
        assert f"patientportal_cli/db/migrations/versions/{version.name}" in names
    assert "patientportal_cli/db/migrations/env.py" in names
    assert "patientportal_cli/db/migrations/script.py.mako" in names
    # run from the unpacked wheel (not this checkout): it migrates a new database
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "site"),
        "PATIENTPORTAL_HOME": str(tmp_path / "home"),
    }
    env.pop("PATIENTPORTAL_DB_URL", None)
    code = (
        "import patientportal_cli.db.migrate as m, sys; "
        "sys.stdout.write(m.__file__ + '\\n'); "
        "from patientportal_cli.cli.app import main; sys.argv = ['patientportal', 'db', 'upgrade']; main()"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'site' / 'patientportal_cli' / 'db' / 'migrate.py'}\n"
    assert r.stderr == f"Upgraded the schema from empty to {migrate.HEAD}.\n"
