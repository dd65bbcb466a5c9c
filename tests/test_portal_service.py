"""services/portal.py and services/mitid.py without the CLI (both backends).

The database is set up with `patientportal init` (the ``staff`` fixture); codes are read
from the delivered mail.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import AuditEvent, OneTimeCode
from patientportal_cli.errors import InvalidInput, NotFound, Refused
from patientportal_cli.services import codes, mitid, passwords, portal
from patientportal_cli.services.mitid import MitIdBroker, MitIdResult
from tests.conftest import Staff
from tests.test_portal_support import (
    Inbox,
    db_session,
    fast_hashing,
    self_registers,
    set_no_mitid,
    staff_creates_patient,
    user_row,
)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_hashing(monkeypatch)


NUMBER = "0102031234"
EMAIL = "ole@example.dk"
PW = "Patient-pass1"


@pytest.fixture
def patient(staff: Staff, db_url: str, home: Path) -> str:
    """An activated patient with the no-MitID flag at NORD (two-factor allowed)."""
    self_registers(staff.cli, cpr=NUMBER, name="Ole Olsen", email=EMAIL, password=PW)
    set_no_mitid(staff.cli, cpr=NUMBER, on=True)
    return NUMBER


def send(home: Path) -> None:
    from patientportal_cli.cli.mail import send_queued

    sent, failed = send_queued(clinic=None, quiet=True)
    assert failed == 0


def start(session: Session, password: str = PW) -> portal.CodeSent:
    return portal.start_two_factor(session, cpr=NUMBER, clinic_code="NORD", password=password)


def events(session: Session) -> list[tuple[str, dict[str, object]]]:
    rows = session.exec(
        select(AuditEvent)
        .where(AuditEvent.actor == "patient", col(AuditEvent.action).startswith("portal."))
        .order_by(col(AuditEvent.id))
    )
    return [(e.action, json.loads(e.details)) for e in rows]


# --- MitID -----------------------------------------------------------------------------


def test_simulated_mitid_accepts_any_valid_cpr_and_normalises_it() -> None:
    broker: MitIdBroker = mitid.broker()
    assert isinstance(broker, mitid.SimulatedMitId)
    assert broker.verify("010203-1234") == MitIdResult(
        verified=True, cpr="0102031234", broker="simulated"
    )
    with pytest.raises(InvalidInput):
        broker.verify("010203-12A4")


class RefusingBroker:
    name = "refusing"

    def verify(self, cpr: str) -> MitIdResult:
        return MitIdResult(verified=False, cpr=cpr, reason="cancelled", broker=self.name)


def test_mitid_login_records_the_verification(patient: str, db_url: str, home: Path) -> None:
    with db_session(db_url, home) as session:
        before = utcnow()
        user = portal.login_mitid(
            session, cpr="010203-1234", clinic_code="nord", broker=mitid.broker()
        )
        assert user.mitid_verified_at is not None and user.mitid_verified_at >= before
        assert events(session)[-1] == ("portal.login", {"method": "mitid", "broker": "simulated"})


def test_a_broker_that_does_not_confirm_refuses_the_login(
    patient: str, db_url: str, home: Path
) -> None:
    with db_session(db_url, home) as session:
        with pytest.raises(Refused, match="MitID did not confirm your identity"):
            portal.login_mitid(session, cpr=NUMBER, clinic_code="NORD", broker=RefusingBroker())
        assert user_row(session, NUMBER).mitid_verified_at is None
        assert events(session)[-1][0] == "portal.login_failed"


def test_mitid_login_needs_a_link_to_the_clinic(staff: Staff, db_url: str, home: Path) -> None:
    staff.cli("clinic create SYD --name Syd")
    self_registers(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL, password=PW, clinic="SYD")
    with db_session(db_url, home) as session:
        with pytest.raises(Refused, match="not a portal user at clinic NORD"):
            portal.login_mitid(session, cpr=NUMBER, clinic_code="NORD", broker=mitid.broker())
        with pytest.raises(NotFound):
            portal.login_mitid(session, cpr=NUMBER, clinic_code="NOPE", broker=mitid.broker())
        assert user_row(session, NUMBER).mitid_verified_at is None


# --- activation ----------------------------------------------------------------------------


def test_activation_sets_the_password_once(staff: Staff, db_url: str, home: Path) -> None:
    staff_creates_patient(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL)
    code = Inbox(home).activation_code(EMAIL)
    with db_session(db_url, home) as session:
        user = portal.activate(
            session, cpr=NUMBER, clinic_code="NORD", code=code.lower(), password=PW
        )
        assert passwords.verify_password(user.password_hash, PW)
        with pytest.raises(Refused, match="already used or replaced"):
            portal.activate(
                session, cpr=NUMBER, clinic_code="NORD", code=code, password="Other-pass2"
            )
        assert passwords.verify_password(user_row(session, NUMBER).password_hash, PW)
        assert [e[0] for e in events(session)] == ["portal.activate", "portal.activate_failed"]
        assert events(session)[-1][1] == {"reason": "none"}


def test_a_password_against_the_policy_keeps_the_code_usable(
    staff: Staff, db_url: str, home: Path
) -> None:
    staff_creates_patient(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL)
    code = Inbox(home).activation_code(EMAIL)
    with db_session(db_url, home) as session:
        for bad in ("Short1", "alllowercase1", "ALLUPPERCASE1", "NoDigitsHere"):
            with pytest.raises(InvalidInput, match="The password needs"):
                portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=code, password=bad)
        portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=code, password=PW)


def test_an_expired_activation_code_is_refused(staff: Staff, db_url: str, home: Path) -> None:
    staff_creates_patient(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL)
    code = Inbox(home).activation_code(EMAIL)
    with db_session(db_url, home) as session:
        row = session.exec(select(OneTimeCode)).one()
        assert row.expires_at - row.created_at == timedelta(days=7)
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
        with pytest.raises(Refused, match=r"expired \(codes are valid for 7 days\)"):
            portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=code, password=PW)
        assert user_row(session, NUMBER).password_hash is None


def test_five_wrong_activation_codes_end_the_code(staff: Staff, db_url: str, home: Path) -> None:
    staff_creates_patient(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL)
    code = Inbox(home).activation_code(EMAIL)
    wrong = "AAAA-AAAA" if code != "AAAA-AAAA" else "BBBB-BBBB"
    with db_session(db_url, home) as session:
        for left in (4, 3, 2, 1):
            with pytest.raises(portal.WrongCode, match=rf"\({left} tr") as info:
                portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=wrong, password=PW)
            assert info.value.tries_left == left
        with pytest.raises(Refused, match="after 5 wrong tries it no longer works"):
            portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=wrong, password=PW)
        with pytest.raises(Refused, match="already used or replaced"):
            portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=code, password=PW)


def test_activation_needs_a_link_to_the_clinic(staff: Staff, db_url: str, home: Path) -> None:
    staff.cli("clinic create SYD --name Syd")
    staff_creates_patient(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL, clinic="SYD")
    code = Inbox(home).activation_code(EMAIL)
    with db_session(db_url, home) as session:
        with pytest.raises(Refused, match="linked to clinic NORD"):
            portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=code, password=PW)
        with pytest.raises(Refused, match="linked to clinic NORD"):
            portal.activate(session, cpr="020304-1234", clinic_code="NORD", code=code, password=PW)
        portal.activate(session, cpr=NUMBER, clinic_code="SYD", code=code, password=PW)


# --- two-factor: password ----------------------------------------------------------------


def test_a_correct_password_resets_the_count(patient: str, db_url: str, home: Path) -> None:
    with db_session(db_url, home) as session:
        for _ in range(4):
            with pytest.raises(Refused, match="^Login failed: wrong CPR number or password.$"):
                start(session, "Wrong-pass1")
        assert user_row(session, NUMBER).failed_logins == 4
        sent = start(session)
        assert sent.email == "o***@example.dk"
        assert sent.minutes == 10
        assert user_row(session, NUMBER).failed_logins == 0
        with pytest.raises(Refused):
            start(session, "Wrong-pass1")
        assert user_row(session, NUMBER).failed_logins == 1


def test_five_wrong_passwords_lock_two_factor_for_15_minutes(
    patient: str, db_url: str, home: Path
) -> None:
    with db_session(db_url, home) as session:
        for _ in range(4):
            with pytest.raises(Refused):
                start(session, "Wrong-pass1")
        before = utcnow()
        with pytest.raises(Refused, match="two-factor login is locked for 15 minutes"):
            start(session, "Wrong-pass1")
        after = utcnow()
        user = user_row(session, NUMBER)
        assert user.locked_until is not None
        assert before + timedelta(minutes=15) <= user.locked_until <= after + timedelta(minutes=15)
        # locked: even the right password is refused, and nothing is counted
        for password in (PW, "Wrong-pass1"):
            with pytest.raises(Refused, match="^Two-factor login is locked until .* UTC after 5"):
                start(session, password)
        assert user_row(session, NUMBER).failed_logins == 0
        # MitID is not locked
        portal.login_mitid(session, cpr=NUMBER, clinic_code="NORD", broker=mitid.broker())
        # 15 minutes later
        user = user_row(session, NUMBER)
        user.locked_until = utcnow() - timedelta(seconds=1)
        session.add(user)
        session.commit()
        start(session)
        actions = [e[0] for e in events(session)]
    assert actions == [
        *["portal.login_failed"] * 5,
        "portal.login_locked",
        "portal.login_locked",
        "portal.login",
        "portal.login_code_sent",
    ]


def test_unknown_cpr_and_not_activated_get_the_wrong_password_message(
    staff: Staff, db_url: str, home: Path
) -> None:
    staff_creates_patient(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL, no_mitid=True)
    with db_session(db_url, home) as session:
        for cpr in (NUMBER, "020304-1234"):
            with pytest.raises(Refused, match="^Login failed: wrong CPR number or password.$"):
                portal.start_two_factor(session, cpr=cpr, clinic_code="NORD", password=PW)
        reasons = [e[1]["reason"] for e in events(session)]
        assert reasons == ["not_activated", "unknown_user"]
        assert user_row(session, NUMBER).failed_logins == 0


def test_two_factor_needs_a_link_to_the_clinic(staff: Staff, db_url: str, home: Path) -> None:
    staff.cli("clinic create SYD --name Syd")
    self_registers(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL, password=PW, clinic="SYD")
    set_no_mitid(staff.cli, cpr=NUMBER, on=True, clinic="SYD")
    with db_session(db_url, home) as session:
        with pytest.raises(Refused, match="not a portal user at clinic NORD"):
            start(session)
        assert events(session)[-1] == (
            "portal.login_refused",
            {"method": "two-factor", "reason": "not_linked"},
        )


# --- two-factor: security code ------------------------------------------------------------


def test_the_security_code_is_mailed_and_works_once(patient: str, db_url: str, home: Path) -> None:
    inbox = Inbox(home)
    with db_session(db_url, home) as session:
        start(session)
    send(home)
    code = inbox.security_code(EMAIL)
    with db_session(db_url, home) as session:
        row = session.exec(select(OneTimeCode).where(OneTimeCode.purpose == "login")).one()
        assert row.expires_at - row.created_at == timedelta(minutes=10)
        portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=f" {code} ")
        with pytest.raises(Refused, match="^There is no valid security code"):
            portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=code)


def test_a_new_login_replaces_the_older_code(patient: str, db_url: str, home: Path) -> None:
    inbox = Inbox(home)
    with db_session(db_url, home) as session:
        start(session)
    send(home)
    first = inbox.security_code(EMAIL)
    with db_session(db_url, home) as session:
        start(session)
    send(home)
    second = inbox.security_code(EMAIL)
    with db_session(db_url, home) as session:
        if first != second:
            with pytest.raises(portal.WrongCode):
                portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=first)
        portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=second)


def test_five_wrong_security_codes_end_the_code(patient: str, db_url: str, home: Path) -> None:
    inbox = Inbox(home)
    with db_session(db_url, home) as session:
        start(session)
    send(home)
    code = inbox.security_code(EMAIL)
    wrong = "000000" if code != "000000" else "111111"
    with db_session(db_url, home) as session:
        for left in (4, 3, 2, 1):
            with pytest.raises(portal.WrongCode) as info:
                portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=wrong)
            assert (
                str(info.value)
                == f"Wrong security code ({left} tr{'y' if left == 1 else 'ies'} left)."
            )
        with pytest.raises(Refused, match="after 5 wrong tries it no longer works"):
            portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=wrong)
        with pytest.raises(Refused, match="^There is no valid security code"):
            portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=code)
        reasons = [e[1].get("reason") for e in events(session)[-6:]]
    assert reasons == [*["wrong_code"] * 4, "code_exhausted", "no_code"]


def test_an_expired_security_code_is_refused(patient: str, db_url: str, home: Path) -> None:
    inbox = Inbox(home)
    with db_session(db_url, home) as session:
        start(session)
    send(home)
    code = inbox.security_code(EMAIL)
    with db_session(db_url, home) as session:
        row = session.exec(select(OneTimeCode).where(OneTimeCode.purpose == "login")).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
        with pytest.raises(
            Refused, match=r"^The security code has expired \(codes are valid for 10"
        ):
            portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=code)


def test_a_security_code_that_is_not_6_digits_is_invalid_input(
    patient: str, db_url: str, home: Path
) -> None:
    with db_session(db_url, home) as session:
        start(session)
    send(home)
    with db_session(db_url, home) as session:
        for bad in ("", "12345", "1234567", "abcdef", "12 34 5x", "１２３４５６"):
            with pytest.raises(InvalidInput, match="6 digits"):
                portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=bad)
        row = codes.current(session, user_id=user_row(session, NUMBER).id or 0, purpose="login")
        assert row is not None and row.attempts == 0


def test_a_lock_also_stops_a_pending_code(patient: str, db_url: str, home: Path) -> None:
    inbox = Inbox(home)
    with db_session(db_url, home) as session:
        start(session)
    send(home)
    code = inbox.security_code(EMAIL)
    with db_session(db_url, home) as session:
        for _ in range(5):
            with pytest.raises(Refused):
                start(session, "Wrong-pass1")
        with pytest.raises(Refused, match="^Two-factor login is locked until"):
            portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=code)


def test_mask_email() -> None:
    assert portal.mask_email("mette.hansen@example.dk") == "m***@example.dk"
    assert portal.mask_email("x@y.dk") == "x***@y.dk"
    assert portal.mask_email("broken") == "***"


def test_parallel_wrong_passwords_are_all_counted(patient: str, db_url: str, home: Path) -> None:
    """Ten wrong passwords at the same moment, on ten connections: the row lock makes
    them take turns, so exactly five are counted (and lock) and five find the lock."""
    from concurrent.futures import ThreadPoolExecutor

    from patientportal_cli.db import engine as engine_mod

    engine = engine_mod.get_engine(db_url, home)

    def attempt(_: int) -> str:
        with Session(engine, expire_on_commit=False) as session:
            try:
                start(session, "Wrong-pass1")
            except Refused as exc:
                return str(exc).split(" ")[0]
        return "ok"

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(attempt, range(10)))
    assert sorted(results) == ["Login"] * 5 + ["Two-factor"] * 5
    with db_session(db_url, home) as session:
        user = user_row(session, NUMBER)
        assert user.locked_until is not None and user.failed_logins == 0
        actions = sorted(e[0] for e in events(session))
    assert actions == ["portal.login_failed"] * 5 + ["portal.login_locked"] * 5
