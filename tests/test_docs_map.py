"""docs/ points at real code: every `services.x.y`-style pointer imports, every
tests/FILE.py::test_name exists, and every repo path named exists. A rename that
forgets docs/rule-map.md fails here."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))
CODE = re.compile(r"`((?:services|cli|db|output|prompts|errors|keystore|files)\.[A-Za-z_][\w.]*)`")
TEST = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
PATH = re.compile(r"`(patientportal_cli/[\w/.]+|tests/[\w/.]+\.py|docs/[\w.-]+)`")


def _resolve(pointer: str) -> bool:
    parts = pointer.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module("patientportal_cli." + ".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_code_pointers_in_docs_import() -> None:
    pointers = sorted({p for p in CODE.findall(TEXT) if not p.endswith(".py")})
    assert len(pointers) > 50
    assert [p for p in pointers if not _resolve(p)] == []


def test_test_pointers_in_docs_exist() -> None:
    pointers = sorted(set(TEST.findall(TEXT)))
    assert len(pointers) > 50
    missing = []
    for path, name in pointers:
        file = ROOT / path
        tree = ast.parse(file.read_text(encoding="utf-8")) if file.exists() else None
        names = {
            n.name
            for n in (ast.walk(tree) if tree else [])
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if name not in names:
            missing.append(f"{path}::{name}")
    assert missing == []


def test_paths_in_docs_exist() -> None:
    assert [p for p in sorted(set(PATH.findall(TEXT))) if not (ROOT / p).exists()] == []
