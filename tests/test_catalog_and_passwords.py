"""The vocabularies (services/catalog.py) and the password policy and hashing
(services/passwords.py).
"""

from __future__ import annotations

import pytest

from patientportal_cli.errors import (
    InvalidInput,
)
from patientportal_cli.services import catalog, passwords


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
