"""Secrets never in config.toml: a database URL with a password (user info or query) is
refused by `config set` (exit 2, a hint to the keyring); the same URL given by
PATIENTPORTAL_DB_URL works and its password is never printed or written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from patientportal_cli.db.engine import hide_secrets, safe_url
from tests.helpers.cli import PASSWORD, Cli
from tests.helpers.db import pg_schema_url

REFUSED = (
    "Error: The database URL holds a password, which config.toml must not keep: set the "
    "URL without it and run `patientportal config set db-password`.\n"
)
SECRET = "Hemmelig-Kode-7"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://anna:{SECRET}@db.example/portal",
        f"postgresql+psycopg://anna@db.example/portal?password={SECRET}",
        f"postgresql://anna@db.example/portal?sslmode=require&password={SECRET}",
        f"postgresql://anna@db.example/portal?sslpassword={SECRET}",
    ],
)
def test_config_set_refuses_a_url_with_a_password(cli: Cli, home: Path, url: str) -> None:
    cli("config set clinic NORD")
    before = (home / "config.toml").read_text()
    r = cli(["config", "set", "db-url", url], expect=2)
    assert r.stdout == ""
    assert r.stderr == REFUSED
    assert SECRET not in r.stderr
    assert (home / "config.toml").read_text() == before
    assert sorted(p.name for p in home.iterdir()) == ["config.toml"]


def test_config_set_keeps_a_url_without_a_password(cli: Cli, home: Path) -> None:
    url = "postgresql+psycopg://anna@db.example/portal?sslmode=require"
    r = cli(["config", "set", "db-url", url])
    assert r.stderr == f"db-url = {url}\n"
    assert (home / "config.toml").read_text() == f'"db-url" = "{url}"\n'


def test_safe_url_and_hide_secrets_cover_the_query() -> None:
    url = f"postgresql://anna:{SECRET}@h/d?password={SECRET}x&sslmode=require"
    assert safe_url(url) == "postgresql+psycopg://anna:***@h/d?password=***&sslmode=require"
    text = f"failed for {SECRET} and {SECRET}x"
    assert hide_secrets(text, url) == "failed for *** and ***"


@pytest.fixture
def pg_url_with_password(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh PostgreSQL schema, its URL (the test server trusts local connections,
    so any password works) with the password in the query, in PATIENTPORTAL_DB_URL."""
    for base in pg_schema_url():  # one schema, dropped when the loop ends
        url = base + f"&password={SECRET}"
        monkeypatch.setenv("PATIENTPORTAL_DB_URL", url)
        yield url


def test_a_password_from_the_environment_works_and_is_never_shown(
    cli: Cli, home: Path, pg_url_with_password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def run(args: str | list[str], **kw: object) -> None:
        r = cli(args, **kw)  # type: ignore[arg-type]
        seen.extend([r.stdout, r.stderr])

    run(
        "init --clinic NORD --clinic-name Nord --admin anna --admin-name Anna --password-stdin",
        input=PASSWORD + "\n",
    )
    token = cli("login anna --password-stdin --print-token", input=PASSWORD + "\n").stdout
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", token.strip())
    run("db current")
    run("db check")
    run("whoami")
    run("config set clinic NORD")
    show = cli("config show -o json")
    seen.append(show.stdout + show.stderr)
    [db] = [row for row in json.loads(show.stdout) if row["key"] == "db-url"]
    assert db["source"] == "PATIENTPORTAL_DB_URL"
    assert "password=***" in db["value"]
    run("config show")
    assert all(SECRET not in text for text in seen)
    assert SECRET not in (home / "config.toml").read_text()

    # the same URL, pointing at a server that does not answer: the error hides it too
    monkeypatch.setenv(
        "PATIENTPORTAL_DB_URL", f"postgresql+psycopg://anna@127.0.0.1:9/x?password={SECRET}"
    )
    r = cli("db current", expect=1)
    assert r.stderr.startswith(
        "Error: Cannot connect to the PostgreSQL database 'x' on 127.0.0.1:9: "
    )
    assert SECRET not in r.stderr and r.stderr.count("\n") == 1
