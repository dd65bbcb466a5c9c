"""`patientportal config`: set, show and unset, bad keys and values refused, secrets kept in
the keyring only, and what happens without a keyring.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import Cli, lines
from tests.helpers.memory_keyring import no_keyring


def test_config_set_show_unset(cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = cli("config set smtp-host mail.example.dk")
    assert r.stderr == "smtp-host = mail.example.dk\n"
    assert cli("config set smtp-starttls No").stderr == "smtp-starttls = no\n"
    assert cli("config set clinic nord").stderr == "clinic = NORD\n"
    assert (home / "config.toml").read_text() == (
        '"clinic" = "NORD"\n"smtp-host" = "mail.example.dk"\n"smtp-starttls" = "no"\n'
    )
    monkeypatch.setenv("PATIENTPORTAL_SMTP_HOST", "env.example.dk")
    r = cli("config show -o json")
    shown = {row["key"]: row for row in json.loads(r.stdout)}
    assert r.stderr == f"Config file: {home / 'config.toml'}\n"
    assert (shown["smtp-host"]["value"], shown["smtp-host"]["source"]) == (
        "env.example.dk",
        "PATIENTPORTAL_SMTP_HOST",
    )
    assert (shown["clinic"]["value"], shown["clinic"]["source"]) == ("NORD", "config.toml")
    assert (shown["smtp-port"]["value"], shown["smtp-port"]["source"]) == ("", "")
    assert shown["db-password"]["value"] == "(not set)"
    r = cli("config show")
    assert "smtp-host         env.example.dk" in r.stdout
    assert cli("config unset smtp-host").stderr == "smtp-host removed.\n"
    assert cli("config unset smtp-host").stderr == "smtp-host was not set.\n"
    assert "smtp-host" not in (home / "config.toml").read_text()


def test_config_refuses_bad_keys_and_values(cli: Cli, home: Path) -> None:
    r = cli("config set colour blue", expect=2)
    assert r.stderr == (
        "Error: Unknown setting 'colour'. Known settings: db-url, clinic, mail-transport, "
        "mail-from, smtp-host, smtp-port, smtp-username, smtp-starttls, audit-retention, "
        "db-password, "
        "smtp-password, audit-key.\n"
    )
    bad = {
        "smtp-port 70000": "Error: Invalid smtp-port '70000': use a number from 1 to 65535.\n",
        "smtp-port abc": "Error: Invalid smtp-port 'abc': use a number from 1 to 65535.\n",
        "smtp-starttls maybe": "Error: Invalid smtp-starttls 'maybe': use yes or no.\n",
        "mail-transport pigeon": "Error: Unknown mail-transport 'pigeon': use maildir or smtp.\n",
        "db-url mysql://x@y/z": "Error: Unsupported database 'mysql': use SQLite or PostgreSQL.\n",
        "smtp-host ''": "Error: Empty value for smtp-host: use `patientportal config unset smtp-host`.\n",
        "smtp-host": "Error: Missing VALUE: patientportal config set smtp-host VALUE\n",
    }
    for args, message in bad.items():
        assert cli(f"config set {args}", expect=2).stderr == message
    r = cli("config set clinic 'a b'", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")
    r = cli("config set db-url postgresql+psycopg://pp:Hemmelig1@db.example/pp", expect=2)
    assert r.stderr == (
        "Error: The database URL holds a password, which config.toml must not keep: set the "
        "URL without it and run `patientportal config set db-password`.\n"
    )
    assert not (home / "config.toml").exists()


def test_secrets_go_to_the_keyring_only(
    cli: Cli, home: Path, memory_keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli("config set db-password Hemmelig1", expect=2)
    assert r.stderr == (
        "Error: Secrets are never given as arguments: run `patientportal config set "
        "db-password` and type it, or pass --value-stdin.\n"
    )
    r = cli("config set smtp-password", expect=2)
    assert r.stderr == (
        "Error: Missing smtp-password: pass --value-stdin (no terminal to ask on).\n"
    )
    r = cli("config set db-password --value-stdin", input="Hemmelig1\n")
    assert r.stderr == "db-password stored in the OS keyring.\n"
    cli("config set smtp-password --value-stdin", input="Smtp-Hemmelig2\n")
    assert memory_keyring.store[("patientportal-cli", f"db-password@{home}")] == "Hemmelig1"
    assert not (home / "config.toml").exists()
    cli("config set smtp-host mail.example.dk")
    monkeypatch.setenv("PATIENTPORTAL_DB_URL", "postgresql+psycopg://pp:Env-secret9@db/pp")
    for fmt in ("table", "json", "csv"):
        r = cli(f"config show -o {fmt}")
        for secret in ("Hemmelig1", "Smtp-Hemmelig2", "Env-secret9"):
            assert secret not in r.stdout + r.stderr
    shown = {row["key"]: row["value"] for row in json.loads(cli("config show -o json").stdout)}
    assert shown["db-password"] == shown["smtp-password"] == "(set, in keyring)"
    assert shown["db-url"] == "postgresql+psycopg://pp:***@db/pp"
    assert "Hemmelig" not in (home / "config.toml").read_text()
    assert cli("config unset db-password").stderr == "db-password removed.\n"
    assert cli("config unset db-password").stderr == "db-password was not set.\n"
    assert ("patientportal-cli", f"db-password@{home}") not in memory_keyring.store


def test_config_without_a_keyring(cli: Cli, home: Path) -> None:
    no_keyring()
    r = cli("config set db-password --value-stdin", input="Hemmelig1\n", expect=1)
    assert r.stderr == (
        "Error: No usable OS keyring was found to keep secrets in: install and unlock a "
        "keyring backend (e.g. GNOME Keyring, KWallet, or `pip install keyrings.alt`), or "
        "give the database password to PostgreSQL's client through PGPASSWORD or "
        "~/.pgpass.\n"
    )
    r = cli("config set smtp-password", expect=1)  # refused before anything is asked
    assert r.stderr == (
        "Error: No usable OS keyring was found to keep secrets in: install and unlock a "
        "keyring backend (e.g. GNOME Keyring, KWallet, or `pip install keyrings.alt`).\n"
    )
    assert cli("config unset smtp-password", expect=1).stderr.count("\n") == 1
    shown = {row["key"]: row["value"] for row in json.loads(cli("config show -o json").stdout)}
    assert shown["db-password"] == "(no keyring available)"
    assert cli("config set smtp-host h.example").stderr == "smtp-host = h.example\n"


def test_config_path_says_where_the_data_goes(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    r = cli("config path -o json")
    assert r.stderr == ""
    assert json.loads(r.stdout) == {
        "home": str(home),
        "config_file": str(home / "config.toml"),
        "database": str(home / "patientportal.db"),
        "database_from": "default",
        "session_file": str(home / "session-token"),
    }
    assert not home.exists()  # looking creates nothing
    r = cli("config path")
    assert lines(r.stdout) == [
        f"home           {home}",
        f"config file    {home / 'config.toml'}",
        f"database       {home / 'patientportal.db'}",
        "database from  default",
        f"session file   {home / 'session-token'}",
    ]
    cli("config set db-url postgresql://pp@db.example.dk/portal")
    shown = json.loads(cli("config path -o json").stdout)
    assert (shown["database"], shown["database_from"]) == (
        "postgresql+psycopg://pp@db.example.dk/portal",
        "config.toml",
    )
    monkeypatch.setenv("PATIENTPORTAL_DB_URL", "postgresql://pp:Hemmelig1@db/portal")
    r = cli("config path -o json")
    assert "Hemmelig1" not in r.stdout
    shown = json.loads(r.stdout)
    assert (shown["database"], shown["database_from"]) == (
        "postgresql+psycopg://pp:***@db/portal",
        "PATIENTPORTAL_DB_URL",
    )
    shown = json.loads(
        cli(["--db", f"sqlite:///{tmp_path / 'x.db'}", "config", "path", "-o", "json"]).stdout
    )
    assert (shown["database"], shown["database_from"]) == (str(tmp_path / "x.db"), "--db")
