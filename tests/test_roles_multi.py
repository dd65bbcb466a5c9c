"""Several roles at one clinic (the practice owner is both admin and doctor), both
backends: `staff set-role USERNAME admin,doctor`, require_role, the last-admin rule,
`clinic set-registration MODE --pending approve` by an admin+doctor, and migration 0002
that widens membership.role on a database holding data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from sqlmodel import Session, col, select

from patientportal_cli import prompts
from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db import migrate
from patientportal_cli.db.models import Clinic, Membership, Staff
from patientportal_cli.errors import Forbidden, InvalidInput
from patientportal_cli.services import auth, catalog, passwords
from patientportal_cli.services.auth import Actor
from tests.helpers.cli import PASSWORD, Cli
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.db import audit_events, db_session, links, requests
from tests.helpers.mail import mail_to
from tests.helpers.people import register, set_mode


def role_of(db_url: str, home: Path, username: str, clinic: str = "NORD") -> str:
    with db_session(db_url, home) as session:
        return session.exec(
            select(Membership.role)
            .join(Staff, col(Staff.id) == Membership.staff_id)
            .join(Clinic, col(Clinic.id) == Membership.clinic_id)
            .where(Staff.username == username, Clinic.code == clinic)
        ).one()


def staff_rows(cli: Cli) -> list[tuple[str, str]]:
    return [(r["username"], r["role"]) for r in json.loads(cli("staff list -o json").stdout)]


# --- the vocabulary ------------------------------------------------------------------


def test_parse_roles() -> None:
    assert catalog.parse_roles("admin") == "admin"
    assert catalog.parse_roles(" Doctor , ADMIN,doctor ") == "admin,doctor"
    assert catalog.parse_roles("secretary,doctor,admin") == "admin,doctor,secretary"
    with pytest.raises(InvalidInput) as err:
        catalog.parse_roles("admin,boss")
    assert str(err.value) == (
        "Unknown role 'boss': use admin, doctor or secretary (or several, comma-separated: "
        "admin,doctor)."
    )
    with pytest.raises(InvalidInput, match="No role given"):
        catalog.parse_roles(" , ")
    assert catalog.split_roles("admin,doctor") == ["admin", "doctor"]
    assert catalog.show_roles("admin,doctor") == "admin, doctor"
    assert catalog.show_roles("secretary") == "secretary"


def test_require_role_passes_on_any_of_the_roles() -> None:
    both = Actor(1, "anna", "Anna", False, roles={"NORD": "admin,doctor"}, clinic_id=1)
    both.clinic_code = "NORD"
    assert both.role == "admin,doctor"
    assert both.role_names == ["admin", "doctor"]
    assert both.has_role("admin") and both.has_role("doctor")
    assert not both.has_role("secretary") and not both.has_role("admin,doctor")
    assert both.require_role("admin", action="add staff") == (1, "NORD")
    assert both.require_role("doctor", action="approve requests") == (1, "NORD")
    assert both.require_role("secretary", "doctor", action="do this") == (1, "NORD")
    with pytest.raises(Forbidden) as err:
        both.require_role("secretary", action="do this")
    assert str(err.value) == (
        "Only a secretary at clinic NORD can do this (you are admin, doctor)."
    )
    # no clinic picked: no role there
    nowhere = Actor(1, "anna", "Anna", False, roles={"NORD": "admin,doctor", "SYD": "admin"})
    assert nowhere.role is None and nowhere.role_names == [] and not nowhere.has_role("admin")


# --- staff set-role / add / list / whoami ----------------------------------------------


def test_set_role_to_admin_and_doctor(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    staff.add("bo", "doctor")
    r = cli("staff set-role bo doctor,ADMIN")
    assert (r.stdout, r.stderr) == ("", "bo is now admin, doctor at clinic NORD.\n")
    assert role_of(db_url, home, "bo") == "admin,doctor"
    assert staff_rows(cli) == [("anna", "admin"), ("bo", "admin, doctor")]
    r = cli("staff list -o csv")
    assert r.stdout.splitlines()[2] == 'bo,Bo,"admin, doctor",yes'
    # the same set again changes nothing and writes no audit event
    assert cli("staff set-role bo admin,doctor").stderr == (
        "bo is now admin, doctor at clinic NORD.\n"
    )
    with db_session(db_url, home) as session:
        details = [json.loads(e.details) for e in audit_events(session, "staff.set_role")]
    assert details == [{"from": "doctor", "to": "admin,doctor"}]
    # an unknown role in the set changes nothing
    r = cli("staff set-role bo admin,chief", expect=2)
    assert r.stderr == (
        "Error: Unknown role 'chief': use admin, doctor or secretary (or several, "
        "comma-separated: admin,doctor).\n"
    )
    assert role_of(db_url, home, "bo") == "admin,doctor"
    # bo, logged in, is both
    staff.login("bo")
    r = cli("whoami")
    assert [line.strip() for line in r.stdout.splitlines()][3:5] == [
        "role                admin, doctor",
        "clinics             NORD (admin, doctor)",
    ]
    who = json.loads(cli("whoami -o json").stdout)
    assert (who["role"], who["clinics"]) == ("admin, doctor", ["NORD (admin, doctor)"])
    # as admin bo may change staff, as doctor decide requests
    assert cli("staff set-role anna admin,secretary").stderr == (
        "anna is now admin, secretary at clinic NORD.\n"
    )
    set_mode(cli, "approval")
    register(cli)
    assert cli("requests approve 1").stderr.startswith("Request 1 approved:")


def test_staff_add_with_several_roles(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    r = cli(
        "staff add cy --name Cy --role secretary,doctor --password-stdin", input=PASSWORD + "\n"
    )
    assert r.stderr == "Added cy with the roles doctor, secretary at clinic NORD.\n"
    assert role_of(db_url, home, "cy") == "doctor,secretary"
    r = cli("staff add dd --name Dd --role doctor,nurse", expect=2)  # before any password
    assert r.stderr.startswith("Error: Unknown role 'nurse'")
    assert staff_rows(cli) == [("anna", "admin"), ("cy", "doctor, secretary")]
    with db_session(db_url, home) as session:
        [event] = audit_events(session, "staff.add")[-1:]
        assert json.loads(event.details)["role"] == "doctor,secretary"


# --- the last admin --------------------------------------------------------------------


def test_last_admin_with_several_roles(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    cli("staff set-role anna admin,doctor")
    # dropping admin from the only admin's set is refused; keeping it is fine
    r = cli("staff set-role anna doctor", expect=1)
    assert r.stderr == "Error: anna is the last admin of clinic NORD.\n"
    r = cli("staff set-role anna doctor,secretary", expect=1)
    assert r.stderr == "Error: anna is the last admin of clinic NORD.\n"
    cli("staff set-role anna admin,secretary")
    assert role_of(db_url, home, "anna") == "admin,secretary"
    # a doctor+secretary is no admin; an admin+doctor is
    staff.add("bo", "doctor,secretary")
    assert cli("staff set-role anna doctor", expect=1).stderr.endswith(
        "last admin of clinic NORD.\n"
    )
    cli("staff set-role bo admin,doctor")
    cli("staff set-role anna doctor")
    assert staff_rows(cli) == [("anna", "doctor"), ("bo", "admin, doctor")]
    # now bo (admin+doctor) is the last admin: not demoted, not disabled
    staff.login("bo")
    r = cli("staff set-role bo doctor", expect=1)
    assert r.stderr == "Error: bo is the last admin of clinic NORD.\n"
    cli("staff set-role anna admin,doctor")
    staff.login("anna")
    staff.add("cy", "admin,secretary")
    cli("staff disable cy")  # two admins left: anna, bo
    cli("staff set-role bo doctor")
    staff.login("bo")
    r = cli("staff disable anna", expect=4)  # bo is no admin any more
    assert r.stderr == "Error: Only an admin at clinic NORD can change staff (you are doctor).\n"
    staff.login("anna")
    r = cli("staff set-role anna secretary", expect=1)
    assert r.stderr == "Error: anna is the last admin of clinic NORD.\n"
    r = cli("staff disable bo")
    assert staff_rows(cli) == [("anna", "admin, doctor")]


# --- clinic set-registration --pending approve -----------------------------------------


def two_pending(cli: Cli) -> None:
    set_mode(cli, "approval")
    register(cli, "010203-1234", name="Anne", email="anne@example.dk")
    register(cli, "020304-2345", name="Bent", email="bent@example.dk", services="booking")


def mode(cli: Cli) -> str:
    return str(json.loads(cli("clinic show -o json").stdout)["registration_mode"])


def test_pending_approve_by_an_admin_and_doctor(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    two_pending(cli)
    cli("staff set-role anna admin,doctor")
    r = cli("clinic set-registration open --pending approve")
    assert (r.stdout, r.stderr) == (
        "",
        "Clinic NORD: registration mode approval -> open (Online selv-oprettelse uden "
        "læge-godkendelse); 2 pending request(s) approved.\n",
    )
    assert mode(cli) == "open"
    with db_session(db_url, home) as session:
        assert [(q.status, q.decided_by) for q in requests(session)] == [
            ("approved", "anna"),
            ("approved", "anna"),
        ]
        assert links(session) == [
            ("0102031234", "e-consultation,booking,prescription-renewal"),
            ("0203042345", "booking"),
        ]
        approvals = audit_events(session, "request.approve")
        assert [(e.actor, e.target) for e in approvals] == [
            ("anna", "request:1"),
            ("anna", "request:2"),
        ]
        assert all('"via": "clinic.set_registration"' in e.details for e in approvals)
        [event] = audit_events(session, "clinic.set_registration")[-1:]
        assert json.loads(event.details) == {
            "from": "approval",
            "to": "open",
            "pending": "approve",
            "handled": 2,
        }
    for to in ("anne@example.dk", "bent@example.dk"):
        assert [s for s, _ in mail_to(home, to)] == [
            "Vi har modtaget din anmodning – Nordklinikken",
            "Din anmodning er godkendt – Nordklinikken",
        ]


def test_pending_approve_by_a_plain_admin_changes_nothing(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    two_pending(cli)
    cli("staff set-role anna admin,secretary")  # several roles, but no doctor
    r = cli("clinic set-registration open --pending approve", expect=4)
    assert r.stderr == (
        "Error: Approving the pending requests while changing the mode needs both the admin "
        "and the doctor role at clinic NORD (you are admin, secretary): let a doctor approve "
        "them with `patientportal requests approve ID...` or `requests review`, or pass "
        "--pending keep or --pending reject.\n"
    )
    assert mode(cli) == "approval"
    with db_session(db_url, home) as session:
        assert [q.status for q in requests(session)] == ["pending", "pending"]
        assert links(session) == []
        assert audit_events(session, "request.approve") == []
        assert len(audit_events(session, "clinic.set_registration")) == 1  # none -> approval
    assert [len(mail_to(home, to)) for to in ("anne@example.dk", "bent@example.dk")] == [1, 1]


def test_the_prompt_offers_approve_to_an_admin_and_doctor(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    two_pending(cli)
    cli("staff set-role anna admin,doctor")
    with create_pipe_input() as pipe, prompts.use_io(pipe, DummyOutput()):
        pipe.send_text("\x1b[B\x1b[B\r")  # keep, reject, approve
        r = cli("clinic set-registration open")
    assert r.stderr.endswith("; 2 pending request(s) approved.\n")
    with db_session(db_url, home) as session:
        assert [q.status for q in requests(session)] == ["approved", "approved"]


# --- migration 0001 -> 0002 ------------------------------------------------------------


def role_length(engine: sa.Engine) -> int:
    [column] = [c for c in sa.inspect(engine).get_columns("membership") if c["name"] == "role"]
    return int(column["type"].length)


def test_migration_0002_widens_role_on_a_database_with_data(
    cli: Cli, db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_mod.get_engine(db_url, home)
    migrate.upgrade(engine, "0001")
    assert migrate.current(engine) == "0001"
    assert role_length(engine) == 16
    with Session(engine) as session:
        clinic = Clinic(code="NORD", name="Nordklinikken")
        session.add(clinic)
        anna = Staff(
            username="anna",
            full_name="Anna Admin",
            password_hash=passwords.hash_password(PASSWORD),
            may_create_clinics=True,
        )
        bo = Staff(username="bo", full_name="Bo", password_hash=passwords.hash_password(PASSWORD))
        session.add_all([anna, bo])
        session.flush()
        assert clinic.id and anna.id and bo.id
        session.add_all(
            [
                Membership(staff_id=anna.id, clinic_id=clinic.id, role="admin"),
                Membership(staff_id=bo.id, clinic_id=clinic.id, role="doctor"),
            ]
        )
        session.commit()
    if engine.dialect.name == "postgresql":  # 16 characters were enforced
        with pytest.raises(sa.exc.DataError), engine.begin() as conn:
            conn.execute(sa.text("UPDATE membership SET role = 'admin,doctor,secretary'"))
    engine_mod.dispose_all()

    engine = engine_mod.get_engine(db_url, home)
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.HEAD
    assert role_length(engine) == 64
    with Session(engine) as session:
        rows = session.exec(
            select(Staff.username, Membership.role, Clinic.code)
            .join(Membership, col(Membership.staff_id) == Staff.id)
            .join(Clinic, col(Clinic.id) == Membership.clinic_id)
            .order_by(col(Staff.username))
        ).all()
        assert [tuple(r) for r in rows] == [("anna", "admin", "NORD"), ("bo", "doctor", "NORD")]
    # the upgraded database works: anna logs in and becomes admin, doctor and secretary
    token = cli("login anna --password-stdin --print-token", input=PASSWORD + "\n").stdout
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", token.strip())
    cli("staff set-role anna secretary,doctor,admin")
    assert role_of(db_url, home, "anna") == "admin,doctor,secretary"
    cli("staff set-role bo admin,doctor")

    # downgrading keeps one role per membership: the first in catalogue order
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(migrate._config(conn), "0001")
    engine_mod.dispose_all()
    engine = engine_mod.get_engine(db_url, home)
    assert role_length(engine) == 16
    assert role_of(db_url, home, "anna") == "admin"
    assert role_of(db_url, home, "bo") == "admin"


def test_actor_roles_come_from_the_membership(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path
) -> None:
    cli("staff set-role anna admin,doctor")
    with db_session(db_url, home) as session:
        token = staff.login("anna")
        actor = auth.resolve(session, token=token, clinic_code=None)
    assert (actor.clinic_code, actor.roles) == ("NORD", {"NORD": "admin,doctor"})
    assert actor.has_role("doctor")


def test_role_completion_after_a_comma() -> None:
    from patientportal_cli.cli.staff import complete_roles

    assert complete_roles("") == ["admin", "doctor", "secretary"]
    assert complete_roles("d") == ["doctor"]
    assert complete_roles("admin,") == ["admin,doctor", "admin,secretary"]
    assert complete_roles("admin,doctor,s") == ["admin,doctor,secretary"]
    assert complete_roles("admin,doctor,secretary,") == []
