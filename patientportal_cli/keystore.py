"""Secrets in the OS keyring, and nowhere else.

Every secret (session token, db-password, smtp-password) is stored under the service
name ``patientportal-cli`` with the user name ``NAME@HOME`` so that two home
directories never share a session. With no usable keyring backend (a plain Linux
server) every call raises ``KeyringUnavailable`` with the remedy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from patientportal_cli.errors import KeyringUnavailable

SERVICE = "patientportal-cli"

REMEDY = (
    "No usable OS keyring was found, so secrets cannot be stored. Install and unlock a "
    "keyring backend (e.g. GNOME Keyring, KWallet, or `pip install keyrings.alt`), or "
    "use PATIENTPORTAL_TOKEN from `patientportal login --print-token`."
)


def _backend() -> Any:
    import keyring
    from keyring.backends import fail

    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
        raise KeyringUnavailable(REMEDY)
    return backend


def _key(name: str, home: Path) -> str:
    return f"{name}@{home}"


def get(name: str, home: Path) -> str | None:
    backend = _backend()
    try:
        value: str | None = backend.get_password(SERVICE, _key(name, home))
    except Exception as exc:  # keyring backends raise many kinds of errors
        raise KeyringUnavailable(f"Keyring error: {type(exc).__name__}. {REMEDY}") from None
    return value


def set(name: str, home: Path, value: str) -> None:  # noqa: A001
    backend = _backend()
    try:
        backend.set_password(SERVICE, _key(name, home), value)
    except Exception as exc:
        raise KeyringUnavailable(f"Keyring error: {type(exc).__name__}. {REMEDY}") from None


def delete(name: str, home: Path) -> bool:
    backend = _backend()
    try:
        backend.delete_password(SERVICE, _key(name, home))
    except Exception:
        return False
    return True


def available() -> bool:
    try:
        _backend()
    except KeyringUnavailable:
        return False
    return True
