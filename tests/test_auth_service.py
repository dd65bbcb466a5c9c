"""services/auth.py and the first clinic's set-up without the CLI: init once, login and
its failures, resolving sessions and API tokens, the clinic an actor acts on, roles.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db import migrate
from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import ApiToken
from patientportal_cli.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    NotLoggedIn,
)
from patientportal_cli.services import auth, clinics, staff
from tests.helpers.cli import PASSWORD
from tests.helpers.db import actions_of
from tests.helpers.services import actor_for, add_staff


def test_init_normalises_and_runs_once(session: Session) -> None:
    anna = actor_for(session, "anna")
    assert (anna.username, anna.full_name, anna.may_create_clinics) == ("anna", "Anna Admin", True)
    assert (anna.clinic_code, anna.role, anna.roles) == ("NORD", "admin", {"NORD": "admin"})
    assert clinics.current(session, actor=anna).name == "Nord klinikken"
    assert staff.is_initialised(session)
    with pytest.raises(Conflict, match="already initialised"):
        staff.init(
            session,
            clinic_code="SYD",
            clinic_name="S",
            admin="bo",
            admin_name="B",
            password=PASSWORD,
        )


def test_init_refuses_bad_input(db_url: str, home: Path) -> None:
    engine = engine_mod.get_engine(db_url, home)
    migrate.upgrade(engine)
    bad = [
        dict(clinic_code="N", clinic_name="N", admin="anna", admin_name="A", password=PASSWORD),
        dict(clinic_code="NORD", clinic_name="", admin="anna", admin_name="A", password=PASSWORD),
        dict(clinic_code="NORD", clinic_name="N", admin="-anna", admin_name="A", password=PASSWORD),
        dict(
            clinic_code="NORD", clinic_name="N", admin="anna", admin_name="A", password="password"
        ),
    ]
    with Session(engine) as s:
        for kwargs in bad:
            with pytest.raises(InvalidInput):
                staff.init(s, **kwargs)  # type: ignore[arg-type]
            s.rollback()
        assert not staff.is_initialised(s)
        assert actions_of(s) == []


def test_login_session_and_failures(session: Session) -> None:
    token, anna = auth.login(session, username="anna", password=PASSWORD)
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == auth.token_hash(token))).one()
    assert token.startswith("pp_") and token not in row.token_hash
    assert row.kind == "session" and row.expires_at is not None
    assert timedelta(hours=11, minutes=59) < row.expires_at - row.created_at <= timedelta(hours=12)
    for username, password in [("anna", "Wrong-pass1"), ("ghost", PASSWORD)]:
        with pytest.raises(NotLoggedIn) as err:
            auth.login(session, username=username, password=password)
        assert str(err.value) == auth.LOGIN_FAILED
    assert actions_of(session)[-2:] == ["staff.login_failed", "staff.login_failed"]
    with pytest.raises(NotFound):
        auth.login(session, username="anna", password=PASSWORD, clinic_code="SYD")
    with pytest.raises(InvalidInput):
        auth.login(session, username="anna", password=PASSWORD, clinic_code="S Y D")


def test_resolve_rejects_missing_unknown_expired_revoked_and_disabled(session: Session) -> None:
    with pytest.raises(NotLoggedIn, match="Not logged in"):
        auth.resolve(session, token=None, clinic_code=None)
    with pytest.raises(NotLoggedIn, match="not valid"):
        auth.resolve(session, token="pp_x", clinic_code=None)
    token, _ = auth.login(session, username="anna", password=PASSWORD)
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == auth.token_hash(token))).one()
    row.expires_at = utcnow()
    session.commit()
    with pytest.raises(NotLoggedIn, match="expired"):
        auth.resolve(session, token=token, clinic_code=None)
    anna = actor_for(session, "anna")
    api, api_row = auth.create_api_token(session, actor=anna, name="ci", days=1)
    assert auth.resolve(session, token=api, clinic_code=None).username == "anna"
    assert api_row.id is not None
    auth.revoke_token(session, actor=anna, token_id=api_row.id)
    with pytest.raises(NotLoggedIn, match="revoked"):
        auth.resolve(session, token=api, clinic_code=None)
    add_staff(session, anna, "bo", "doctor")
    bo_token, _ = auth.login(session, username="bo", password=PASSWORD)
    assert staff.disable(session, actor=anna, username="bo") == "disabled"
    with pytest.raises(NotLoggedIn, match="revoked"):
        auth.resolve(session, token=bo_token, clinic_code=None)
    with pytest.raises(NotLoggedIn):
        auth.login(session, username="bo", password=PASSWORD)


def test_api_tokens(session: Session) -> None:
    anna = actor_for(session, "anna")
    for days in (0, 3651):
        with pytest.raises(InvalidInput):
            auth.create_api_token(session, actor=anna, name="x", days=days)
    for name in ("", "x" * 101, "a\x1b[2Jb"):
        with pytest.raises(InvalidInput):
            auth.create_api_token(session, actor=anna, name=name, days=1)
    assert auth.create_api_token(session, actor=anna, name="y" * 100, days=1)[1].name == "y" * 100
    _, row = auth.create_api_token(session, actor=anna, name="ci", days=30)
    assert row.kind == "api" and row.clinic_id is not None
    assert [t.name for t in auth.list_tokens(session, actor=anna)] == ["y" * 100, "ci"]
    assert anna.token_id is not None
    with pytest.raises(NotFound):  # one's login session is not an API token
        auth.revoke_token(session, actor=anna, token_id=anna.token_id)
    assert row.id is not None
    auth.revoke_token(session, actor=anna, token_id=row.id)
    with pytest.raises(Conflict):
        auth.revoke_token(session, actor=anna, token_id=row.id)
    assert actions_of(session)[-2:] == ["token.create", "token.revoke"]


def test_which_clinic_an_actor_acts_on(session: Session) -> None:
    anna = actor_for(session, "anna")
    clinics.create(session, actor=anna, code="syd", name="Syd", mode="open")
    token, _ = auth.login(session, username="anna", password=PASSWORD)
    several = auth.resolve(session, token=token, clinic_code=None)
    assert several.clinic_code is None and several.roles == {"NORD": "admin", "SYD": "admin"}
    with pytest.raises(InvalidInput) as err:
        several.require_clinic()
    assert str(err.value) == "You work at several clinics (NORD, SYD): pass --clinic CODE."
    assert auth.resolve(session, token=token, clinic_code=" syd ").clinic_code == "SYD"
    bound, _ = auth.login(session, username="anna", password=PASSWORD, clinic_code="SYD")
    assert auth.resolve(session, token=bound, clinic_code=None).clinic_code == "SYD"
    assert auth.resolve(session, token=bound, clinic_code="NORD").clinic_code == "NORD"
    with pytest.raises(InvalidInput):
        auth.resolve(session, token=token, clinic_code="ØST")
    with pytest.raises(NotFound):
        auth.resolve(session, token=token, clinic_code="OEST")


def test_require_role_messages(session: Session) -> None:
    anna = actor_for(session, "anna")
    add_staff(session, anna, "bo", "doctor")
    bo = actor_for(session, "bo")
    assert bo.require_role("doctor", action="approve requests")[1] == "NORD"
    with pytest.raises(Forbidden) as err:
        bo.require_role("admin", action="add staff")
    assert str(err.value) == "Only an admin at clinic NORD can add staff (you are doctor)."
    with pytest.raises(Forbidden) as err:
        anna.require_role("doctor", "secretary", action="do this")
    assert (
        str(err.value) == "Only a doctor or secretary at clinic NORD can do this (you are admin)."
    )
