"""Where the program keeps its files, and config.toml.

The home directory holds ``config.toml``, the default SQLite database
(``patientportal.db``), the local Maildir and, without an OS keyring, the session file.
It is ``--home`` / ``PATIENTPORTAL_HOME`` when given, else the platform's user config
directory (platformdirs: ``$XDG_CONFIG_HOME/patientportal``, by default
``~/.config/patientportal``, on Linux; ``~/Library/Application Support/patientportal`` on
macOS; ``%LOCALAPPDATA%\\patientportal`` on Windows). ``patientportal config path`` prints
them. Environment variables ``PATIENTPORTAL_<KEY>`` (key
upper-cased, ``-`` as ``_``) override the file. Secrets are never stored here: see
``keystore.py``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from patientportal_cli.errors import InvalidInput

# key -> help text. Only these keys may be set.
SETTINGS: dict[str, str] = {
    "db-url": "Database URL (default: patientportal.db in the home; `config path` shows it)",
    "clinic": "Default clinic code",
    "mail-transport": "maildir (default, into HOME/maildir) or smtp",
    "mail-from": "Sender address of patient e-mails",
    "smtp-host": "SMTP server host",
    "smtp-port": "SMTP server port (default 587)",
    "smtp-username": "SMTP user name",
    "smtp-starttls": "yes (default) or no",
    "audit-retention": "Keep audit events this long (default 2y; audit prune)",
}
SECRETS: dict[str, str] = {
    "db-password": "Password for the database user (kept in the OS keyring)",
    "smtp-password": "Password for the SMTP user (kept in the OS keyring)",
    "audit-key": "Key that signs audit checkpoints (kept in the OS keyring; or "
    "PATIENTPORTAL_AUDIT_KEY)",
}


def default_home() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("patientportal", appauthor=False))


@dataclass
class Config:
    home: Path
    values: dict[str, str]

    @property
    def path(self) -> Path:
        return self.home / "config.toml"

    def get(self, key: str, default: str | None = None) -> str | None:
        env = os.environ.get(env_name(key))
        if env:
            return env
        return self.values.get(key, default)

    def source(self, key: str) -> str:
        """Where ``get`` finds the value: the environment variable, config.toml, or ''."""
        if os.environ.get(env_name(key)):
            return env_name(key)
        return "config.toml" if key in self.values else ""

    def set(self, key: str, value: str) -> str:
        """Check and store a (non-secret) setting; returns the value as stored."""
        check_key(key)
        if key in SECRETS:
            raise InvalidInput(f"{key} is a secret: it is kept in the OS keyring, not here.")
        value = check_value(key, value)
        self.values[key] = value
        self.save()
        return value

    def unset(self, key: str) -> bool:
        check_key(key)
        existed = self.values.pop(key, None) is not None
        self.save()
        return existed

    def save(self) -> None:
        """Write config.toml (0600, in a 0700 home when this creates it) atomically."""
        from patientportal_cli import files

        files.private_dir(self.home)
        lines = [f"{toml_string(k)} = {toml_string(v)}\n" for k, v in sorted(self.values.items())]
        files.write_private(self.path, "".join(lines), atomic=True)


def toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped, the rest
    (æøå, emoji ...) as they are (JSON's surrogate-pair escapes are not valid TOML)."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def env_name(key: str) -> str:
    """The environment variable that overrides a setting: PATIENTPORTAL_DB_URL ..."""
    return "PATIENTPORTAL_" + key.upper().replace("-", "_")


def check_key(key: str) -> None:
    if key in SECRETS:
        return
    if key not in SETTINGS:
        known = ", ".join([*SETTINGS, *SECRETS])
        raise InvalidInput(f"Unknown setting {key!r}. Known settings: {known}.")


def check_value(key: str, value: str) -> str:
    """The value normalised, or InvalidInput saying what is wrong with it."""
    value = value.strip()
    if not value:
        raise InvalidInput(f"Empty value for {key}: use `patientportal config unset {key}`.")
    if key == "db-url":
        from patientportal_cli.db.engine import parse_url, url_secrets

        if url_secrets(parse_url(value)):
            raise InvalidInput(
                "The database URL holds a password, which config.toml must not keep: set the "
                "URL without it and run `patientportal config set db-password`."
            )
    elif key == "clinic":
        from patientportal_cli.services.catalog import check_clinic_code

        value = check_clinic_code(value)
    elif key == "mail-transport":
        value = value.lower()
        if value not in ("maildir", "smtp"):
            raise InvalidInput(f"Unknown mail-transport {value!r}: use maildir or smtp.")
    elif key == "smtp-port":
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise InvalidInput(f"Invalid smtp-port {value!r}: use a number from 1 to 65535.")
    elif key == "audit-retention":
        from patientportal_cli.services.retention import check_duration

        value = check_duration(value, what=key)
    elif key == "smtp-starttls":
        if value.lower() in ("yes", "y", "true", "1", "on"):
            value = "yes"
        elif value.lower() in ("no", "n", "false", "0", "off"):
            value = "no"
        else:
            raise InvalidInput(f"Invalid smtp-starttls {value!r}: use yes or no.")
    return value


def display_value(key: str, value: str | None) -> str:
    """A setting as shown to people: a password inside a URL (from the environment) hidden."""
    if not value:
        return ""
    if key == "db-url":
        from patientportal_cli.db.engine import safe_url

        return safe_url(value)
    return value


def load(home: Path | None) -> Config:
    home = home or default_home()
    path = home / "config.toml"
    values: dict[str, str] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"Cannot read {path}: {exc}") from None
        values = {str(k): str(v) for k, v in data.items()}
    return Config(home=home, values=values)
