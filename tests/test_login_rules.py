"""The login-method rule of services/login_rules.py (docs/rules.md D1; R4, R5, R7).

The decision functions are pure: most cases run on unsaved model objects. The
session-facing functions (``login_access``, ``two_factor_allowed``) run on both
databases.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from patientportal_cli.db.models import ClinicLink, PortalUser
from patientportal_cli.services import login_rules
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import db_session, link_of, users_with_cpr

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NEEDS_MITID = (
    "two-factor needs the no-MitID flag or a MitID verification (the patient has not "
    "verified with MitID)"
)


def user(**kw: object) -> PortalUser:
    values: dict[str, object] = {
        "cpr": "0102031234",
        "name": "Ida",
        "email": "ida@example.dk",
        "password_hash": "hash",
        "credentials_vouched_at": T0 - timedelta(days=400),
    }
    values.update(kw)
    return PortalUser(**values)  # type: ignore[arg-type]


def link(**kw: object) -> ClinicLink:
    return ClinicLink(clinic_id=1, user_id=1, **kw)  # type: ignore[arg-type]


def decide(
    u: PortalUser, li: ClinicLink | None, locked: datetime | None = None
) -> tuple[bool, str, str]:
    d = login_rules.two_factor_decision(u, li, now=T0, locked=locked)
    return d.allowed, d.code, d.reason


def test_not_linked_says_only_that() -> None:
    u = user(password_hash=None)
    assert decide(u, None, T0 + timedelta(minutes=5)) == (False, "not_linked", "not linked here")
    assert login_rules.mitid_decision(None).as_dict() == {
        "allowed": False,
        "reason": "not linked here",
    }


def test_mitid_allowed_for_every_linked_user() -> None:
    d = login_rules.mitid_decision(link())
    assert d.allowed is True and d.code == "ok"


def test_flag_allows_two_factor() -> None:
    assert decide(user(), link(no_mitid=True)) == (True, "ok", "the no-MitID flag is set here")


def test_r5_no_flag_no_mitid_verification() -> None:
    assert decide(user(origin="self"), link()) == (False, "mitid_required", NEEDS_MITID)


def test_verified_ever_when_the_flag_was_never_removed() -> None:
    allowed, code, reason = decide(user(mitid_verified_at=T0 - timedelta(days=300)), link())
    assert (allowed, code) == (True, "ok")
    assert reason == "verified with MitID at 2025-05-05 12:00 UTC"


def test_r7_verification_must_be_after_the_flag_was_removed() -> None:
    removed = T0 - timedelta(days=1)
    before = user(mitid_verified_at=removed - timedelta(seconds=1))
    same = user(mitid_verified_at=removed)
    after = user(mitid_verified_at=removed + timedelta(seconds=1))
    li = link(mitid_required_after=removed)
    expected = (
        "two-factor needs the no-MitID flag or a MitID verification since the flag was last "
        "removed (2026-02-28 12:00 UTC)"
    )
    assert decide(before, li) == (False, "mitid_required", expected)
    assert decide(same, li) == (False, "mitid_required", expected)
    assert decide(after, li)[:2] == (True, "ok")
    # setting the flag again allows it regardless of verifications
    assert decide(before, link(mitid_required_after=removed, no_mitid=True))[:2] == (True, "ok")


def test_not_activated_and_locked_are_reported_together() -> None:
    u = user(password_hash=None)
    allowed, code, reason = decide(u, link(), T0 + timedelta(minutes=15))
    assert (allowed, code) == (False, "not_activated")
    assert reason == (
        "not activated (the patient has not chosen a password yet); locked until "
        "2026-03-01 12:15 UTC after too many failed logins (staff can run `patient "
        "unlock`); " + NEEDS_MITID
    )
    # the flag does not lift the other conditions
    assert decide(u, link(no_mitid=True), T0 + timedelta(minutes=15))[:2] == (
        False,
        "not_activated",
    )


def test_lock_expires() -> None:
    """The lock is the CPR number's (``services/throttle.py``), handed in as ``locked``."""
    u = user()
    assert decide(u, link(no_mitid=True), T0 + timedelta(seconds=1))[:2] == (False, "locked")
    assert decide(u, link(no_mitid=True), T0)[:2] == (True, "ok")
    assert decide(u, link(no_mitid=True), T0.replace(tzinfo=None) + timedelta(seconds=1))[:2] == (
        False,
        "locked",
    )


def test_naive_times_count_as_utc() -> None:
    naive = T0.replace(tzinfo=None)
    u = user(mitid_verified_at=naive + timedelta(hours=1))
    assert decide(u, link(mitid_required_after=naive))[:2] == (True, "ok")


def test_session_functions_on_the_database(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    cli("patient create 010203-1234 --name Ida --email ida@example.dk --no-invite")
    cli("clinic create SYD --name Syd")
    with db_session(db_url, home) as s:
        [u] = users_with_cpr(s, "0102031234")
        nord = link_of(s, "0102031234", "NORD")
        assert nord is not None
        syd_id = nord.clinic_id + 1
        result = login_rules.login_access(s, clinic_id=nord.clinic_id, user=u).as_row()
        assert list(result) == ["mitid", "two_factor"]
        assert result["mitid"] == {
            "allowed": True,
            "reason": "linked here; a MitID login also records the verification",
        }
        assert result["two_factor"]["allowed"] is False
        assert login_rules.two_factor_allowed(s, clinic_id=syd_id, user=u) == (
            False,
            "not linked here",
        )
        u.password_hash = "x"
        nord.no_mitid = True
        s.add_all([u, nord])
        s.commit()
        assert login_rules.two_factor_allowed(s, clinic_id=nord.clinic_id, user=u) == (
            True,
            "the no-MitID flag is set here",
        )
