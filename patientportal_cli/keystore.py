"""Secrets in the OS keyring; the login session in a private file where there is none.

Every secret (session token, db-password, smtp-password) is stored under the service
name ``patientportal-cli`` with the user name ``NAME@HOME`` so that two home
directories never share a session. With no usable keyring backend (a plain Linux
server) every call raises ``KeyringUnavailable`` with the remedy.

The one exception is the staff login session, as gh and kubectl do it: without a usable
keyring, ``keep_session`` writes the token to ``HOME/session-token`` (0600, never into
config.toml) unless the login asked for the keyring only; ``logout`` removes it. The
other secrets never go to a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from patientportal_cli.errors import KeyringUnavailable

SERVICE = "patientportal-cli"
SESSION_FILE = "session-token"

REMEDY = (
    "No usable OS keyring was found to keep secrets in: install and unlock a keyring "
    "backend (e.g. GNOME Keyring, KWallet, or `pip install keyrings.alt`)"
)
# what else works without a keyring, per secret
ALTERNATIVES = {
    "session": "or log in with `patientportal login USERNAME --print-token` and export "
    "PATIENTPORTAL_TOKEN",
    "db-password": "or give the database password to PostgreSQL's client through "
    "PGPASSWORD or ~/.pgpass",
    "audit-key": "or set PATIENTPORTAL_AUDIT_KEY to a long random value kept outside the "
    "database (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)",
}


def remedy(name: str) -> str:
    alternative = ALTERNATIVES.get(name)
    return f"{REMEDY}, {alternative}." if alternative else f"{REMEDY}."


def _backend(name: str) -> Any:
    import keyring
    from keyring.backends import fail

    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken keyring configuration
        raise KeyringUnavailable(remedy(name)) from None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
        raise KeyringUnavailable(remedy(name))
    return backend


def _key(name: str, home: Path) -> str:
    return f"{name}@{home}"


def get(name: str, home: Path) -> str | None:
    backend = _backend(name)
    try:
        value: str | None = backend.get_password(SERVICE, _key(name, home))
    except Exception as exc:  # keyring backends raise many kinds of errors
        raise KeyringUnavailable(f"Keyring error ({type(exc).__name__}). {remedy(name)}") from None
    return value


def set(name: str, home: Path, value: str) -> None:  # noqa: A001
    backend = _backend(name)
    try:
        backend.set_password(SERVICE, _key(name, home), value)
    except Exception as exc:
        raise KeyringUnavailable(f"Keyring error ({type(exc).__name__}). {remedy(name)}") from None


def delete(name: str, home: Path) -> bool:
    from keyring.errors import PasswordDeleteError

    backend = _backend(name)
    try:
        backend.delete_password(SERVICE, _key(name, home))
    except PasswordDeleteError:
        return False
    except Exception as exc:
        raise KeyringUnavailable(f"Keyring error ({type(exc).__name__}). {remedy(name)}") from None
    return True


def require(name: str) -> None:
    """KeyringUnavailable (with the remedy for ``name``) unless a keyring is usable."""
    _backend(name)


def available() -> bool:
    try:
        _backend("session")
    except KeyringUnavailable:
        return False
    return True


# --- the login session: keyring, else a private file ---------------------------------
def session_file(home: Path) -> Path:
    """Where the session token is kept on a machine without a keyring."""
    return home / SESSION_FILE


def keep_session(home: Path, token: str, *, keyring_only: bool = False) -> Path | None:
    """Keep a new login session: in the keyring when one is usable (a session file left
    from before is removed), else in ``HOME/session-token`` (0600), whose path is
    returned. ``keyring_only``: KeyringUnavailable instead of the file."""
    from patientportal_cli import files

    path = session_file(home)
    if available():
        set("session", home, token)
        path.unlink(missing_ok=True)
        return None
    if keyring_only:
        raise KeyringUnavailable(remedy("session"))
    files.private_dir(home)
    files.write_private(path, token + "\n", atomic=True)
    return path


def stored_sessions(home: Path) -> list[str]:
    """The session tokens kept for this home: the keyring's, then the file's."""
    tokens = []
    if available():
        tokens.append(get("session", home))
    path = session_file(home)
    if path.is_file():
        tokens.append(path.read_text(encoding="utf-8").strip())
    return [t for t in tokens if t]


def forget_sessions(home: Path) -> None:
    """Remove the kept session tokens (keyring entry and file)."""
    if available():
        delete("session", home)
    session_file(home).unlink(missing_ok=True)
