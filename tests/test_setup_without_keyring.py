"""Set-up on a machine without an OS keyring (issue 12.1): `login` keeps the session in
HOME/session-token (0600) and says so once, on stderr; the token is never printed and
never in config.toml; `logout` revokes it and removes the file; `--keyring-only`
refuses instead. The README's set-up commands run as written, in a real terminal, with
keyring's fail backend (PYTHON_KEYRING_BACKEND), on both backends."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import PASSWORD, Cli
from tests.helpers.memory_keyring import MemoryKeyring, no_keyring

ROOT = Path(__file__).resolve().parents[1]
FAIL_BACKEND = "keyring.backends.fail.Keyring"
NOT_LOGGED_IN = "Error: Not logged in: run `patientportal login USERNAME`.\n"


def _readme_setup_command() -> str:
    """The README's second set-up command (init && login && clinic show), as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    [command] = [
        line for line in re.findall(r"```sh\n(.*?)\n```", section, re.S) if " init " in line
    ]
    return str(command)


def _env(home: Path, db_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_", "PATIENTPORTAL_"))}
    env.update(
        PYTHON_KEYRING_BACKEND=FAIL_BACKEND,
        PATIENTPORTAL_HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        TERM="xterm",
        NO_COLOR="1",
        COLUMNS="120",
    )
    if db_url:
        env["PATIENTPORTAL_DB_URL"] = db_url
    return env


def _run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patientportal_cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=120,
    )


def test_the_readme_setup_commands_work_without_a_keyring(
    db_url: str, home: Path, backend: str
) -> None:
    pexpect = pytest.importorskip("pexpect")
    command = _readme_setup_command()
    assert command.startswith("patientportal init --clinic NORD ")
    assert command.endswith("&& patientportal login anna && patientportal clinic show")
    # the embedded default on SQLite (as the README runs it), the test schema on PostgreSQL
    env = _env(home, db_url if backend == "postgresql" else None)
    child = pexpect.spawn(
        "/bin/sh",
        ["-c", command],
        env=env,
        cwd=str(ROOT),
        dimensions=(40, 140),
        encoding="utf-8",
        timeout=90,
    )
    try:
        child.expect_exact("Password for anna:")
        child.send(PASSWORD + "\r")
        child.expect_exact("Repeat the password:")
        child.send(PASSWORD + "\r")
        child.expect_exact("Initialised clinic NORD (Nordklinikken) with admin anna.")
        child.expect_exact("Password:")
        child.send(PASSWORD + "\r")
        child.expect_exact("No OS keyring: the session is kept in ")
        child.expect_exact("Logged in as anna (Anna Admin).")
        child.expect_exact("Clinic NORD")
        child.expect(pexpect.EOF)
        transcript = child.before or ""
    finally:
        child.close()
    assert child.exitstatus == 0, transcript
    token_file = home / "session-token"
    token = token_file.read_text(encoding="utf-8").strip()
    assert token.startswith("pp_")
    assert token not in transcript
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    if backend == "sqlite":
        assert (home / "patientportal.db").is_file()
    # the next commands use the session file; logout removes it
    r = _run(["whoami", "-o", "json"], env)
    assert r.returncode == 0 and '"clinic": "NORD"' in r.stdout, r.stderr
    r = _run(["logout"], env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "Logged out.\n")
    assert not token_file.exists()
    r = _run(["whoami"], env)
    assert (r.returncode, r.stderr) == (4, NOT_LOGGED_IN)
    env["PATIENTPORTAL_TOKEN"] = token  # revoked, not only forgotten
    r = _run(["whoami"], env)
    assert r.stderr == "Error: This session or token was revoked: log in again.\n"


def test_keyring_only_refuses_in_a_subprocess(cli: Cli, db_url: str, home: Path) -> None:
    cli(
        "init --clinic NORD --clinic-name N --admin anna --admin-name A --password-stdin",
        input=PASSWORD + "\n",
    )
    env = _env(home, db_url)
    r = _run(["login", "anna", "--password-stdin", "--keyring-only"], env, PASSWORD + "\n")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (
        "Error: No OS keyring to keep the session in (--keyring-only): use `patientportal "
        "login anna --print-token` and export PATIENTPORTAL_TOKEN.\n"
    )
    assert not (home / "session-token").exists()
    r = _run(["login", "anna", "--password-stdin"], env, PASSWORD + "\n")
    assert r.returncode == 0 and r.stdout == ""
    token = (home / "session-token").read_text(encoding="utf-8").strip()
    assert r.stderr == (
        f"No OS keyring: the session is kept in {home / 'session-token'} (readable only by "
        "you); `patientportal logout` removes it.\n"
        "Logged in as anna (A). The session lasts 12 hours.\n"
    )
    assert token not in r.stderr


def test_the_session_file_in_process(
    cli: Cli, db_url: str, home: Path, memory_keyring: MemoryKeyring
) -> None:
    cli(
        "init --clinic NORD --clinic-name N --admin anna --admin-name A --password-stdin",
        input=PASSWORD + "\n",
    )
    cli("config set mail-from klinik@example.dk")
    no_keyring()
    token_file = home / "session-token"
    r = cli("login anna --password-stdin", input=PASSWORD + "\n")
    assert r.stdout == ""
    assert r.stderr.startswith(f"No OS keyring: the session is kept in {token_file} ")
    token = token_file.read_text(encoding="utf-8").strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    config_text = (home / "config.toml").read_text(encoding="utf-8")
    assert token not in config_text and "session" not in config_text
    for command in ("whoami", "whoami -o json", "config show", "config show -o json"):
        r = cli(command)
        assert token not in r.stdout + r.stderr
    # a second login replaces the file's session; the first one stays valid until it ends
    cli("login anna --password-stdin", input=PASSWORD + "\n")
    assert token_file.read_text(encoding="utf-8").strip() != token
    # with a keyring again, login keeps the session there and removes the file
    import keyring

    keyring.set_keyring(memory_keyring)
    r = cli("login anna --password-stdin", input=PASSWORD + "\n")
    assert r.stderr == "Logged in as anna (A). The session lasts 12 hours.\n"
    assert not token_file.exists() and len(memory_keyring.store) == 1
    assert cli("logout").stderr == "Logged out.\n"
    assert memory_keyring.store == {}
    assert cli("whoami", expect=4).stderr == NOT_LOGGED_IN
