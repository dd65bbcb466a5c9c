"""A keyring backend kept in a JSON file, for ``patientportal`` run as a subprocess (a
login in one process, TAB completion in the next), as a desktop keyring would be.

Select it with ``PYTHON_KEYRING_BACKEND=tests.helpers.file_keyring.FileKeyring`` (run
from the repository root) and name the file in ``TEST_KEYRING_FILE``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @staticmethod
    def _path() -> Path:
        return Path(os.environ["TEST_KEYRING_FILE"])

    def _load(self) -> dict[str, str]:
        path = self._path()
        return json.loads(path.read_text()) if path.is_file() else {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\t{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        store = self._load()
        store[f"{service}\t{username}"] = password
        self._path().write_text(json.dumps(store))
        self._path().chmod(0o600)

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        store = self._load()
        if store.pop(f"{service}\t{username}", None) is None:
            raise PasswordDeleteError(username)
        self._path().write_text(json.dumps(store))
