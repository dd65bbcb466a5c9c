"""config.toml (patientportal_cli/config.py) and the keyring wrapper (keystore.py)."""

from __future__ import annotations

from pathlib import Path

import keyring
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keyring.backends import fail

from patientportal_cli import config as config_mod
from patientportal_cli import keystore
from patientportal_cli.errors import (
    InvalidInput,
    KeyringUnavailable,
)


def test_config_file_round_trip_and_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config_mod.load(home)
    assert cfg.values == {} and cfg.path == home / "config.toml"
    cfg.set("smtp-username", 'odd "quoted" \\ user æøå')
    cfg.set("db-url", "postgresql+psycopg://pp@db.example/pp")
    again = config_mod.load(home)
    assert again.get("smtp-username") == 'odd "quoted" \\ user æøå'
    monkeypatch.setenv("PATIENTPORTAL_SMTP_USERNAME", "from-env")
    assert (again.get("smtp-username"), again.source("smtp-username")) == (
        "from-env",
        "PATIENTPORTAL_SMTP_USERNAME",
    )
    assert again.source("db-url") == "config.toml" and again.source("clinic") == ""
    assert again.unset("db-url") and not again.unset("db-url")
    with pytest.raises(InvalidInput, match="secret"):
        again.set("db-password", "x")
    (home / "config.toml").write_text("this is = = not toml", encoding="utf-8")
    with pytest.raises(InvalidInput, match="Cannot read"):
        config_mod.load(home)
    assert (
        config_mod.display_value("db-url", "postgresql://u:pw@h/d")
        == "postgresql+psycopg://u:***@h/d"
    )


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_survives_config_toml(value: str) -> None:
    """Whatever a setting holds (emoji, quotes, control characters) reads back the same."""
    import tomllib

    assert tomllib.loads(f"k = {config_mod.toml_string(value)}\n") == {"k": value}


def test_an_emoji_in_a_setting_does_not_break_config_toml(home: Path) -> None:
    config_mod.load(home).set("smtp-username", 'klinik😀\x7f"')
    assert config_mod.load(home).get("smtp-username") == 'klinik😀\x7f"'


def test_keystore(home: Path, tmp_path: Path, memory_keyring) -> None:  # noqa: ANN001
    keystore.set("session", home, "pp_1")
    assert keystore.get("session", home) == "pp_1"
    assert keystore.get("session", tmp_path / "other-home") is None  # per home directory
    assert keystore.delete("session", home) and not keystore.delete("session", home)
    keyring.set_keyring(fail.Keyring())
    assert not keystore.available()
    for call in (
        lambda: keystore.get("session", home),
        lambda: keystore.set("db-password", home, "x"),
        lambda: keystore.delete("smtp-password", home),
        lambda: keystore.require("session"),
    ):
        with pytest.raises(KeyringUnavailable) as err:
            call()
        assert err.value.exit_code == 1 and "\n" not in str(err.value)
    assert keystore.remedy("session").endswith(
        "or log in with `patientportal login USERNAME --print-token` and export "
        "PATIENTPORTAL_TOKEN."
    )
