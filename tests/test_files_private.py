"""Files only their owner can read: the home 0700, the database (and -wal/-shm), config,
Maildir files, reports, exports and spools 0600; a loose home is warned about once; the
import spool lives in HOME/spool, never in /tmp, and a killed run's spool goes on the
next command; a read-only home and a full disk are one line naming the path.

Tests run as root, which ignores permissions: they check modes (stat), not refusals.
Each test starts under umask 022, so a mode is 0600 because the program made it so.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from patientportal_cli import files
from tests.helpers.cli import PASSWORD, Cli, Staff
from tests.helpers.csv_files import DANES, patients_csv, write


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(root: Path) -> dict[str, int]:
    """Every file and directory under root (root itself as '.'), with its mode."""
    found = {".": mode(root)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = mode(path)
    return found


def danes_csv(path: Path) -> Path:
    lines = ["cpr,name,email"] + [f"{c},{n},{e}" for c, n, e in DANES] + ["123,Bad Row,x@y.dk"]
    return write(path, "\n".join(lines) + "\n")


def init_embedded(cli: Cli) -> None:
    cli(
        "init --clinic NORD --clinic-name Nord --admin anna --admin-name Anna --password-stdin",
        input=PASSWORD + "\n",
    )


# --- the home and what is in it -----------------------------------------------------------
def test_embedded_home_database_config_and_mail_are_private(
    cli: Cli, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not home.exists()
    init_embedded(cli)
    token = cli("login anna --password-stdin --print-token", input=PASSWORD + "\n").stdout
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", token.strip())
    cli("config set mail-from 'Klinik <post@nord.example>'")
    r = cli(["patient", "import", str(danes_csv(tmp_path / "p.csv")), "--yes"], expect=3)
    assert "E-mails sent: 4.\n" in r.stderr

    found = modes(home)
    assert found.pop(".") == 0o700
    for name in ("patientportal.db", "patientportal.db-wal", "patientportal.db-shm"):
        assert found.pop(name) == 0o600, name
    assert found.pop("config.toml") == 0o600
    for folder in ("maildir", "maildir/cur", "maildir/new", "maildir/tmp"):
        assert found.pop(folder) == 0o700, folder
    mails = {k: v for k, v in found.items() if k.startswith("maildir/new/")}
    assert len(mails) == 4 and set(mails.values()) == {0o600}
    for key in mails:
        del found[key]
    assert found == {"spool": 0o700, "spool/.lock": 0o600}  # the run's spool is gone


def test_created_parents_are_private_and_an_existing_loose_database_is_tightened(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "new" / "deeper" / "home"
    monkeypatch.setenv("PATIENTPORTAL_HOME", str(home))
    cli("config set clinic NORD")
    assert mode(tmp_path / "new") == mode(tmp_path / "new" / "deeper") == mode(home) == 0o700
    assert mode(home / "config.toml") == 0o600

    # a database and WAL made 0644 by an earlier version
    db = tmp_path / "old.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        os.chmod(db, 0o644)
        (tmp_path / "old.db-wal").touch()
        os.chmod(tmp_path / "old.db-wal", 0o644)
        monkeypatch.setenv("PATIENTPORTAL_DB_URL", f"sqlite:///{db}")
        cli("db current")
    assert mode(db) == 0o600
    assert mode(tmp_path / "old.db-wal") == 0o600


def test_a_home_others_can_read_is_warned_about_once_per_command(
    cli: Cli, home: Path, staff: Staff
) -> None:
    home.mkdir(exist_ok=True)  # as another tool or an older version made it
    os.chmod(home, 0o755)
    r = cli("config show")
    warning = f"Warning: {home} is readable by other users (mode 0755): run chmod 700 {home}\n"
    assert r.stderr.startswith(warning) and r.stderr.count("Warning:") == 1
    r = cli("whoami")
    assert r.stderr.count(warning) == 1
    assert mode(home) == 0o755  # a warning: the tool does not change it

    os.chmod(home, 0o700)
    assert "Warning" not in cli("config show").stderr


def test_report_and_audit_export_are_private(
    cli: Cli, staff: Staff, home: Path, tmp_path: Path
) -> None:
    report = tmp_path / "rejected.csv"
    report.write_text("old, readable by everybody\n")
    os.chmod(report, 0o644)
    source = danes_csv(tmp_path / "p.csv")
    cli(["patient", "import", str(source), "--yes", "--report", str(report)], expect=3)
    assert mode(report) == 0o600
    assert "Bad Row" in report.read_text(encoding="utf-8-sig")

    fresh = tmp_path / "rejected-dry.csv"
    cli(["patient", "import", str(source), "--dry-run", "--report", str(fresh)], expect=3)
    assert mode(fresh) == 0o600

    export = tmp_path / "audit.jsonl"
    r = cli(["audit", "export", "--output-file", str(export)])
    assert r.stderr.startswith("Wrote ")
    assert mode(export) == 0o600 and "patient.import" in export.read_text()


def test_config_toml_rewritten_private(cli: Cli, home: Path) -> None:
    cli("config set clinic NORD")
    os.chmod(home / "config.toml", 0o644)
    cli("config set clinic SYD")
    assert mode(home / "config.toml") == 0o600
    assert sorted(p.name for p in home.iterdir()) == ["config.toml"]  # no .tmp left


# --- spools ----------------------------------------------------------------------------
def test_standard_input_is_spooled_in_the_home(
    cli: Cli, staff: Staff, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run as a separate process with an empty TMPDIR: nothing lands there."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), PATIENTPORTAL_HOME=str(home))
    data = danes_csv(tmp_path / "p.csv").read_bytes()
    run = subprocess.run(
        [sys.executable, "-m", "patientportal_cli", "patient", "import", "-", "--yes"],
        input=data,
        env=env,
        capture_output=True,
        check=False,
    )
    assert run.returncode == 3, run.stderr
    assert b"4 created" in run.stderr
    assert list(tmp.iterdir()) == []
    assert sorted(p.name for p in (home / "spool").iterdir()) == [".lock"]


def _run_dirs(home: Path) -> list[Path]:
    root = home / "spool"
    return [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []


@pytest.mark.slow
def test_killed_import_leaves_its_spool_in_the_home_and_the_next_command_removes_it(
    cli: Cli, staff: Staff, home: Path, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), PATIENTPORTAL_HOME=str(home))
    source = patients_csv(tmp_path / "many.csv", 6000)
    args = [sys.executable, "-m", "patientportal_cli", "patient", "import", str(source)]
    proc = subprocess.Popen(
        [*args, "--yes", "--no-send", "--batch-size", "50"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        spool: Path | None = None
        while time.monotonic() < deadline and proc.poll() is None:
            runs = [run for run in _run_dirs(home) if any(run.iterdir())]
            if runs:
                spool = runs[0]
                break
            time.sleep(0.01)
        assert spool is not None, "the import never spooled"
        seen = modes(spool)
        assert seen.pop(".") == 0o700
        for inner in list(seen):
            assert seen[inner] in (0o700, 0o600), (inner, seen[inner])
        assert mode(spool.with_name(spool.name + ".lock")) == 0o600
        # a command while the import runs leaves its spool alone
        cli("config show")
        assert spool.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert spool.exists()  # what a kill leaves behind, in the home
    assert list(tmp.iterdir()) == []
    cli("config show")
    assert not spool.exists()
    assert sorted(p.name for p in (home / "spool").iterdir()) == [".lock"]


def test_spool_service_level(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with files.spool(home) as run:
        assert mode(home) == mode(home / "spool") == mode(run) == 0o700
        with files.open_private(run / "x", "wb", follow=False, exclusive=True) as handle:
            handle.write(b"secret")
        assert mode(run / "x") == 0o600
        assert files.sweep_spools(home) == 0  # in use: kept
        # one left by a killed run: a directory with no held lock
        dead = home / "spool" / "99999-dead"
        dead.mkdir()
        (dead / "rows.pickle").write_bytes(b"cpr")
        (home / "spool" / "99999-dead.lock").touch()
        assert files.sweep_spools(home) == 1
        assert not dead.exists() and not (home / "spool" / "99999-dead.lock").exists()
        assert run.exists()
    assert not run.exists()
    assert sorted(p.name for p in (home / "spool").iterdir()) == [".lock"]


# --- a read-only home, a full disk ----------------------------------------------------------
def test_home_under_a_file_is_one_line_naming_the_path(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root can write anywhere, so a home that cannot be created stands in for a
    read-only one: its parent is a regular file (NotADirectoryError)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    home = blocker / "home"
    monkeypatch.setenv("PATIENTPORTAL_HOME", str(home))
    expected = f"Error: Cannot use {home}: Not a directory.\n"

    r = cli("config set clinic NORD", expect=1)
    assert r.stderr == expected
    r = cli(
        "init --clinic NORD --clinic-name Nord --admin anna --admin-name A --password-stdin",
        input=PASSWORD + "\n",
        expect=1,
    )
    assert r.stderr == expected
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", "x")
    r = cli(["patient", "import", str(danes_csv(tmp_path / "p.csv"))], expect=1)
    assert r.stderr == expected


def test_full_disk_is_one_line_naming_the_path(cli: Cli, staff: Staff, tmp_path: Path) -> None:
    r = cli("audit export --output-file /dev/full", expect=1)
    assert r.stderr == "Error: Cannot use /dev/full: No space left on device.\n"
    source = danes_csv(tmp_path / "p.csv")
    r = cli(["patient", "import", str(source), "--dry-run", "--report", "/dev/full"], expect=1)
    assert r.stderr.endswith("Error: Cannot write the report /dev/full: No space left on device.\n")
    assert "Unexpected" not in r.stderr


def test_write_private_names_the_path_and_keeps_no_half_file(tmp_path: Path) -> None:
    with pytest.raises(OSError) as caught:
        files.write_private(Path("/dev/full"), "x" * 10_000)
    assert caught.value.filename == "/dev/full"
    target = tmp_path / "f.txt"
    files.write_private(target, "hello", atomic=True)
    assert target.read_text() == "hello" and mode(target) == 0o600
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OSError):
        files.open_private(link, follow=False)
