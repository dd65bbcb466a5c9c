"""services/staff.py without the CLI: who may belong to a clinic in which role, a person
at two clinics, and two admins demoting each other at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db.models import AuditEvent
from patientportal_cli.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    NotLoggedIn,
)
from patientportal_cli.services import auth, clinics, staff
from tests.helpers.cli import PASSWORD
from tests.helpers.services import actor_for, add_staff


def test_staff_membership_rules(session: Session) -> None:
    anna = actor_for(session, "anna")
    add_staff(session, anna, "bo", "doctor")
    with pytest.raises(Conflict):
        add_staff(session, anna, "BO", "secretary")
    with pytest.raises(InvalidInput, match="needs a password"):
        staff.add(session, actor=anna, username="cy", full_name="Cy", role="doctor", password=None)
    with pytest.raises(InvalidInput, match="Unknown role"):
        add_staff(session, anna, "cy", "boss")
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
    add_staff(session, anna, "bo", "doctor")
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


def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    session: Session, db_url: str, home: Path
) -> None:
    """B's demotion waits while A's change of the same clinic's staff is open."""
    import threading

    from sqlalchemy import text

    from patientportal_cli.db.models import Clinic

    anna = actor_for(session, "anna")
    add_staff(session, anna, "bo", "admin")
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
