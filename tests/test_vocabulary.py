"""The fixed words live in ``patientportal_cli/vocabulary.py``: every audit action the code
writes is an ``Action`` member (a new string literal fails here), no request status is
compared against a literal, every member is used, and a member stores, hashes and prints
exactly as its plain string did (on both backends)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from patientportal_cli.vocabulary import Action, CodeCheck, RequestStatus

PACKAGE = Path(__file__).resolve().parents[1] / "patientportal_cli"
VOCABULARY = PACKAGE / "vocabulary.py"
# ``action=`` that is not an audit action: the phrase in "You may not <action>" and argparse
NOT_AUDIT = {"require_role", "add_argument"}
STATUS_WORDS = {s.value for s in RequestStatus}


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != VOCABULARY)


def _literal(node: ast.expr) -> bool:
    """A string written in place: a constant or an f-string."""
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def literal_actions(source: str, name: str = "<source>") -> list[str]:
    """Where ``source`` writes an audit action as a string literal: ``action="..."`` in a
    call, ``"action": "..."`` in a dict, or ``action = "..."``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and _callee(node) not in NOT_AUDIT:
            found += [where for k in node.keywords if k.arg == "action" and _literal(k.value)]
        elif isinstance(node, ast.Dict):
            pairs = zip(node.keys, node.values, strict=True)
            found += [
                where
                for key, value in pairs
                if isinstance(key, ast.Constant) and key.value == "action" and _literal(value)
            ]
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if _literal(node.value) and any(
                isinstance(t, ast.Name) and t.id == "action" for t in targets
            ):
                found.append(where)
    return found


def literal_status_comparisons(source: str, name: str = "<source>") -> list[str]:
    """Where ``source`` compares something with a request status written as a literal."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Constant) and s.value in STATUS_WORDS for s in sides):
                found.append(f"{name}:{node.lineno}")
    return found


def test_the_scanner_finds_each_way_of_writing_a_literal_action() -> None:
    source = (
        'audit.record(s, actor="a", action="patient.create")\n'
        'looked_up(s, action=f"patient.{verb}")\n'
        'events.append({"actor": "a", "action": "no_mitid.set"})\n'
        'action = "portal.login"\n'
        'actor.require_role("admin", action="add staff")\n'
        'audit.record(s, actor="a", action=Action.PATIENT_CREATE)\n'
        'if row["status"] != "pending": pass\n'
        "if row.status == RequestStatus.PENDING: pass\n"
    )
    assert sorted(literal_actions(source)) == [f"<source>:{n}" for n in (1, 2, 3, 4)]
    assert literal_status_comparisons(source) == ["<source>:7"]


def test_no_audit_action_is_written_as_a_literal() -> None:
    found = [
        hit
        for path in _sources()
        for hit in literal_actions(path.read_text("utf-8"), str(path.relative_to(PACKAGE)))
    ]
    assert found == [], "write these as vocabulary.Action members: " + ", ".join(found)


def test_no_request_status_is_compared_with_a_literal() -> None:
    found = [
        hit
        for path in _sources()
        for hit in literal_status_comparisons(
            path.read_text("utf-8"), str(path.relative_to(PACKAGE))
        )
    ]
    assert found == [], "compare with vocabulary.RequestStatus members: " + ", ".join(found)


@pytest.mark.parametrize("enum", [Action, RequestStatus, CodeCheck])
def test_each_word_is_used_by_the_code(enum: type[Action]) -> None:
    """A member nothing writes or compares is a stale word (or its use was misspelt)."""
    text = "\n".join(p.read_text("utf-8") for p in _sources())
    unused = [m.name for m in enum if f"{enum.__name__}.{m.name}" not in text]
    assert unused == []


def test_action_names_are_unique_and_shaped_subject_dot_verb() -> None:
    values = [m.value for m in Action]
    assert len(set(values)) == len(values) == len(Action.__members__)
    for value in values:
        subject, _, verb = value.partition(".")
        assert value == "init" or (subject and verb and value == value.lower()), value


def test_a_member_prints_and_serialises_as_its_plain_string() -> None:
    for member in (Action.PATIENT_CREATE, RequestStatus.PENDING, CodeCheck.WRONG):
        assert member == member.value
        assert str(member) == f"{member}" == "%s" % member == member.value  # noqa: UP031
        assert json.dumps({"a": member}) == json.dumps({"a": member.value})
        assert len(member) == len(member.value)


def test_an_action_member_is_stored_and_hashed_as_its_string(db_url: str, home: object) -> None:
    """The row holds the plain name (not the member's Python name), the hash is the one a
    plain string gives, and the chain verifies."""
    from sqlalchemy import text
    from sqlmodel import Session

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.db import migrate
    from patientportal_cli.services import audit

    engine = engine_mod.get_engine(db_url, Path(str(home)))
    migrate.upgrade(engine)
    with Session(engine) as s:
        event = audit.record(s, actor="anna", clinic="NORD", action=Action.PATIENT_CREATE)
        s.commit()
        stored = s.connection().execute(
            text("SELECT action FROM audit_event WHERE id = :id"), {"id": event.id}
        )
        assert stored.scalar_one() == "patient.create"
        row = s.get(type(event), event.id, populate_existing=True)
        assert row is not None and type(row.action) is str
        assert audit.digest(row) == row.hash == event.hash
