"""services/clinics.py without the CLI: clinics, registration modes with pending
requests, services, one membership per person and clinic.
"""

from __future__ import annotations

import pytest
from sqlmodel import Session

from patientportal_cli.db.models import Membership, RegistrationRequest
from patientportal_cli.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    MissingInput,
    NotFound,
)
from patientportal_cli.services import catalog, clinics
from tests.helpers.db import actions_of
from tests.helpers.services import actor_for, add_staff


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
    add_staff(session, anna, "bo", "doctor")
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
    n = len(actions_of(session))
    clinics.set_registration(session, actor=anna, mode="approval")  # no change, no event
    assert len(actions_of(session)) == n
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
