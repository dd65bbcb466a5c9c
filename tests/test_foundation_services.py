"""The foundation's services without the CLI: staff and sessions (auth), clinics, the
vocabularies, passwords, config.toml and the keyring wrapper."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import keyring
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keyring.backends import fail
from sqlmodel import Session, select

from patientportal_cli import config as config_mod
from patientportal_cli import keystore
from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db import migrate
from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import ApiToken, AuditEvent, Membership, RegistrationRequest
from patientportal_cli.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KeyringUnavailable,
    MissingInput,
    NotFound,
    NotLoggedIn,
)
from patientportal_cli.services import auth, catalog, clinics, passwords, staff
from patientportal_cli.services.auth import Actor
from tests.helpers.cli import PASSWORD


@pytest.fixture
def session(db_url: str, home: Path) -> Iterator[Session]:
    """An initialised database: clinic NORD with admin anna."""
    engine = engine_mod.get_engine(db_url, home)
    migrate.upgrade(engine)
    with Session(engine, expire_on_commit=False) as s:
        staff.init(
            s,
            clinic_code="nord",
            clinic_name="  Nord   klinikken ",
            admin="Anna",
            admin_name="Anna Admin",
            password=PASSWORD,
        )
        yield s


def actor_for(s: Session, username: str, clinic: str | None = None) -> Actor:
    token, _ = auth.login(s, username=username, password=PASSWORD, clinic_code=clinic)
    return auth.resolve(s, token=token, clinic_code=clinic)


def add(s: Session, admin: Actor, username: str, role: str) -> None:
    staff.add(
        s, actor=admin, username=username, full_name=username.title(), role=role, password=PASSWORD
    )


def actions(s: Session) -> list[str]:
    return [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.id))]  # type: ignore[arg-type]


# --- init ----------------------------------------------------------------------------


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
        assert actions(s) == []


# --- login, sessions, tokens -----------------------------------------------------------


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
    assert actions(session)[-2:] == ["staff.login_failed", "staff.login_failed"]
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
    add(session, anna, "bo", "doctor")
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
    assert actions(session)[-2:] == ["token.create", "token.revoke"]


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
    add(session, anna, "bo", "doctor")
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


# --- staff ---------------------------------------------------------------------------


def test_staff_membership_rules(session: Session) -> None:
    anna = actor_for(session, "anna")
    add(session, anna, "bo", "doctor")
    with pytest.raises(Conflict):
        add(session, anna, "BO", "secretary")
    with pytest.raises(InvalidInput, match="needs a password"):
        staff.add(session, actor=anna, username="cy", full_name="Cy", role="doctor", password=None)
    with pytest.raises(InvalidInput, match="Unknown role"):
        add(session, anna, "cy", "boss")
    assert [(s.username, r) for s, r in staff.members(session, actor=anna)] == [
        ("anna", "admin"),
        ("bo", "doctor"),
    ]
    with pytest.raises(Conflict, match="last admin"):
        staff.set_role(session, actor=anna, username="anna", role="doctor")
    with pytest.raises(NotFound):
        staff.set_role(session, actor=anna, username="ghost", role="doctor")
    staff.set_role(session, actor=anna, username="bo", role="admin")
    staff.set_role(session, actor=anna, username="anna", role="secretary")
    bo = actor_for(session, "bo")
    with pytest.raises(Forbidden):
        staff.disable(session, actor=bo, username="bo")
    anna = actor_for(session, "anna")
    with pytest.raises(Forbidden):
        staff.set_role(session, actor=anna, username="bo", role="doctor")
    assert staff.needs_password(session, "ghost") and not staff.needs_password(session, "bo")


def test_a_person_at_two_clinics(session: Session) -> None:
    anna = actor_for(session, "anna")
    clinics.create(session, actor=anna, code="SYD", name="Syd")
    add(session, anna, "bo", "doctor")
    anna_syd = actor_for(session, "anna", "SYD")
    bo, created = staff.add(
        session, actor=anna_syd, username="bo", full_name="Ignored", role="secretary", password=None
    )
    assert not created and bo.full_name == "Bo"
    bo_actor = actor_for(session, "bo")
    assert bo_actor.roles == {"NORD": "doctor", "SYD": "secretary"}
    assert staff.disable(session, actor=anna_syd, username="bo") == "removed"
    assert actor_for(session, "bo").roles == {"NORD": "doctor"}
    assert (
        staff.disable(session, actor=actor_for(session, "anna", "NORD"), username="bo")
        == "disabled"
    )
    # the account is disabled: no clinic enables it again, with or without a password
    assert not staff.needs_password(session, "bo")
    for password in (None, "Other-pass-9"):
        with pytest.raises(Conflict, match="only staff who may create clinics"):
            staff.add(
                session,
                actor=anna_syd,
                username="bo",
                full_name="Bo",
                role="doctor",
                password=password,
            )
    with pytest.raises(NotLoggedIn):
        auth.login(session, username="bo", password="Other-pass-9")
    assert staff.account(session, actor=anna_syd, username="bo", enable=True) == {"active": True}
    staff.add(
        session, actor=anna_syd, username="bo", full_name="Bo", role="doctor", password="X-pass-99"
    )
    adds = session.exec(select(AuditEvent).where(AuditEvent.action == "staff.add")).all()
    assert json.loads(adds[-1].details) == {"new_account": False, "role": "doctor"}
    auth.login(session, username="bo", password=PASSWORD)  # his own password still


# --- clinics -------------------------------------------------------------------------


def test_clinics(session: Session) -> None:
    anna = actor_for(session, "anna")
    syd = clinics.create(session, actor=anna, code=" syd ", name="Syd", mode="APPROVAL")
    assert (syd.code, syd.registration_mode) == ("SYD", "approval")
    assert catalog.split_services(syd.services) == list(catalog.SERVICES)
    with pytest.raises(Conflict):
        clinics.create(session, actor=anna, code="SYD", name="Again")
    with pytest.raises(InvalidInput):
        clinics.create(session, actor=anna, code="VEST", name="X", mode="sometimes")
    assert [c.code for c in clinics.visible(session, actor=anna)] == ["NORD", "SYD"]
    add(session, anna, "bo", "doctor")
    bo = actor_for(session, "bo")
    with pytest.raises(Forbidden):
        clinics.create(session, actor=bo, code="OEST", name="Øst")
    assert [c.code for c in clinics.visible(session, actor=bo)] == ["NORD"]
    with pytest.raises(Forbidden):
        clinics.current(session, actor=bo, code="SYD")
    with pytest.raises(NotFound):
        clinics.current(session, actor=bo, code="OEST")


def test_set_registration_and_pending_requests(session: Session) -> None:
    anna = actor_for(session, "anna")
    clinic, old, handled = clinics.set_registration(session, actor=anna, mode="approval")
    assert (clinic.registration_mode, old, handled) == ("approval", "none", 0)
    n = len(actions(session))
    clinics.set_registration(session, actor=anna, mode="approval")  # no change, no event
    assert len(actions(session)) == n
    assert clinic.id is not None
    session.add(
        RegistrationRequest(clinic_id=clinic.id, cpr="0102031234", name="I", email="i@x.dk")
    )
    session.commit()
    assert clinics.pending_count(session, clinic.id) == 1
    with pytest.raises(MissingInput) as err:
        clinics.set_registration(session, actor=anna, mode="open")
    assert str(err.value) == (
        "Missing choice for the 1 pending request(s): pass --pending (no terminal to ask on)."
    )
    with pytest.raises(InvalidInput):
        clinics.set_registration(session, actor=anna, mode="open", pending="ignore")
    clinics.set_registration(session, actor=anna, mode="open", pending="keep")
    assert clinics.pending_count(session, clinic.id) == 1


def test_services(session: Session) -> None:
    anna = actor_for(session, "anna")
    clinic = clinics.set_services(session, actor=anna, enable=[], disable=["booking"])
    assert catalog.split_services(clinic.services) == ["e-consultation", "prescription-renewal"]
    with pytest.raises(InvalidInput):
        clinics.set_services(session, actor=anna, enable=["booking"], disable=["booking"])
    clinic = clinics.set_services(session, actor=anna, enable=["booking"], disable=[])
    assert clinic.services == "e-consultation,booking,prescription-renewal"


def test_membership_is_unique(session: Session) -> None:
    from sqlalchemy.exc import IntegrityError

    anna = actor_for(session, "anna")
    session.add(Membership(staff_id=anna.staff_id, clinic_id=anna.clinic_id or 0, role="doctor"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


# --- vocabularies, passwords -----------------------------------------------------------


def test_catalog() -> None:
    assert catalog.check_mode(" Open ") == "open"
    assert catalog.check_role("ADMIN") == "admin"
    assert catalog.check_clinic_code(" nord-1 ") == "NORD-1"
    for code in ("N", "-NORD", "NO RD", "ÆBLE", "A" * 33, "", "N;DROP"):
        with pytest.raises(InvalidInput):
            catalog.check_clinic_code(code)
    assert catalog.parse_services("booking, E-consultation") == ["e-consultation", "booking"]
    assert catalog.parse_services(["booking", "booking,prescription-renewal"]) == [
        "booking",
        "prescription-renewal",
    ]
    assert catalog.parse_services(None) == [] and catalog.parse_services("") == []
    with pytest.raises(InvalidInput, match="Unknown service 'massage'"):
        catalog.parse_services("booking,massage")
    assert catalog.join_services({"booking", "e-consultation"}) == "e-consultation,booking"
    assert catalog.split_services("") == [] and catalog.split_services(None) == []
    assert catalog.REGISTRATION_MODES["approval"] == "Online selv-oprettelse med læge-godkendelse"


def test_passwords() -> None:
    passwords.check_policy("Abcdefg1")
    with pytest.raises(InvalidInput) as err:
        passwords.check_policy("abc")
    assert str(err.value) == (
        "The password needs at least 8 characters, an upper-case letter, a digit."
    )
    for weak in ("abcdefg1", "ABCDEFG1", "Abcdefgh"):
        with pytest.raises(InvalidInput):
            passwords.check_policy(weak)
    digest = passwords.hash_password("Æblegrød-1")
    assert digest.startswith("$argon2id$")
    assert passwords.verify_password(digest, "Æblegrød-1")
    assert not passwords.verify_password(digest, "æblegrød-1")
    assert not passwords.verify_password("not a hash", "x")
    assert not passwords.verify_password(None, "x")
    passwords.dummy_verify("anything")


# --- config.toml and the keyring ---------------------------------------------------------


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


def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    session: Session, db_url: str, home: Path
) -> None:
    """B's demotion waits while A's change of the same clinic's staff is open."""
    import threading

    from sqlalchemy import text

    from patientportal_cli.db.models import Clinic

    anna = actor_for(session, "anna")
    add(session, anna, "bo", "admin")
    engine = engine_mod.get_engine(db_url, home)
    outcome: list[BaseException | None] = []

    def anna_demotes_herself() -> None:
        with Session(engine, expire_on_commit=False) as s:
            me = auth.resolve(
                s, token=auth.login(s, username="anna", password=PASSWORD)[0], clinic_code=None
            )
            try:
                staff.set_role(s, actor=me, username="anna", role="doctor")
                outcome.append(None)
            except Conflict as exc:
                outcome.append(exc)

    with Session(engine) as a:  # bo's demotion, in progress: it holds the clinic's staff
        a.exec(select(Clinic.id).where(Clinic.code == "NORD").with_for_update()).first()
        a.execute(
            text(
                "UPDATE membership SET role = 'doctor' WHERE staff_id = (SELECT id FROM staff WHERE username = 'bo')"
            )
        )
        other = threading.Thread(target=anna_demotes_herself)
        other.start()
        other.join(1.0)  # either waiting for the lock (fixed) or done (a lost update)
        a.commit()
    other.join(60)
    assert [type(o) for o in outcome] == [Conflict]
    assert str(outcome[0]) == "anna is the last admin of clinic NORD."
