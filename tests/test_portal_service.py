"""services/portal.py and services/mitid.py without the CLI (both backends).

The database is set up with `patientportal init` (the ``staff`` fixture); codes are read
from the delivered mail.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import AuditEvent, LoginThrottle, OneTimeCode
from patientportal_cli.errors import InvalidInput, NotFound, Refused
from patientportal_cli.services import codes, mitid, passwords, portal, throttle
from patientportal_cli.services.mitid import MitIdBroker, MitIdResult
from tests.helpers.cli import Staff
from tests.helpers.db import db_session, user_row
from tests.helpers.mail import Inbox
from tests.helpers.people import self_registers, set_no_mitid, staff_creates_patient

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


def verify(session: Session, code: str, attempt: str | None) -> None:
    portal.verify_code(session, cpr=NUMBER, clinic_code="NORD", code=code, attempt=attempt)


def failures(session: Session, cpr: str = NUMBER) -> int:
    return throttle.failures(session, kind=throttle.PATIENT, name=cpr)


def lock_end(session: Session, cpr: str = NUMBER) -> object:
    return throttle.locked_until(session, kind=throttle.PATIENT, name=cpr)


ACTIVATION_FAILED = "^Activation failed: wrong CPR number, clinic or activation code"
NOT_VALID = "^The security code is not valid for this login"


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
        with pytest.raises(Refused, match=ACTIVATION_FAILED):
            portal.activate(
                session, cpr=NUMBER, clinic_code="NORD", code=code, password="Other-pass2"
            )
        assert passwords.verify_password(user_row(session, NUMBER).password_hash, PW)
        assert [e[0] for e in events(session)] == ["portal.activate", "portal.activate_failed"]
        assert events(session)[-1][1] == {"reason": "none"}
        assert failures(session) == 1


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
        with pytest.raises(Refused, match=ACTIVATION_FAILED):
            portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=code, password=PW)
        assert user_row(session, NUMBER).password_hash is None
        assert events(session)[-1][1] == {"reason": "expired"}


def test_wrong_activation_codes_lock_but_do_not_end_the_code(
    staff: Staff, db_url: str, home: Path
) -> None:
    """Nobody who knows only the CPR number can use up an activation code; the lock
    bounds the guessing (and a completed activation starts the count again)."""
    staff_creates_patient(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL)
    code = Inbox(home).activation_code(EMAIL)
    wrong = "AAAA-AAAA" if code != "AAAA-AAAA" else "BBBB-BBBB"
    with db_session(db_url, home) as session:
        for n in (1, 2, 3, 4):
            with pytest.raises(Refused, match=ACTIVATION_FAILED + r".*\)\.$"):
                portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=wrong, password=PW)
            assert failures(session) == n
        with pytest.raises(Refused, match="login is locked for 15 minutes.$"):
            portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=wrong, password=PW)
        with pytest.raises(Refused, match="^Login is locked until"):  # even the right code
            portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=code, password=PW)
        throttle.clear(session, kind=throttle.PATIENT, name=NUMBER)
        for _ in range(3):
            with pytest.raises(Refused, match=ACTIVATION_FAILED):
                portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=wrong, password=PW)
        portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=code, password=PW)
        assert failures(session) == 0


def test_activation_needs_a_link_to_the_clinic(staff: Staff, db_url: str, home: Path) -> None:
    staff.cli("clinic create SYD --name Syd")
    staff_creates_patient(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL, clinic="SYD")
    code = Inbox(home).activation_code(EMAIL)
    with db_session(db_url, home) as session:
        with pytest.raises(Refused, match=ACTIVATION_FAILED):
            portal.activate(session, cpr=NUMBER, clinic_code="NORD", code=code, password=PW)
        with pytest.raises(Refused, match=ACTIVATION_FAILED):
            portal.activate(session, cpr="020304-1234", clinic_code="NORD", code=code, password=PW)
        assert [e[1]["reason"] for e in events(session)] == ["not_linked", "unknown_user"]
        assert (failures(session), failures(session, "0203041234")) == (1, 1)
        portal.activate(session, cpr=NUMBER, clinic_code="SYD", code=code, password=PW)


# --- two-factor: password ----------------------------------------------------------------


def test_only_a_completed_login_resets_the_count(patient: str, db_url: str, home: Path) -> None:
    """A right password alone does not start the count again: else fresh codes would
    give endless code tries to whoever knows the password."""
    with db_session(db_url, home) as session:
        for _ in range(3):
            with pytest.raises(Refused, match="^Login failed: wrong CPR number or password.$"):
                start(session, "Wrong-pass1")
        assert failures(session) == 3
        sent = start(session)
        assert sent.email == "o***@example.dk"
        assert sent.minutes == 10
        assert len(sent.attempt) == 22
        assert failures(session) == 3
    send(home)
    code = Inbox(home).security_code(EMAIL)
    with db_session(db_url, home) as session:
        verify(session, code, sent.attempt)
        assert failures(session) == 0


def test_five_wrong_passwords_lock_login_for_15_minutes(
    patient: str, db_url: str, home: Path
) -> None:
    with db_session(db_url, home) as session:
        for _ in range(4):
            with pytest.raises(Refused):
                start(session, "Wrong-pass1")
        before = utcnow()
        with pytest.raises(
            Refused,
            match=r"^Login failed: wrong CPR number or password\. After 5 failed attempts, "
            "login is locked for 15 minutes.$",
        ):
            start(session, "Wrong-pass1")
        after = utcnow()
        until = lock_end(session)
        assert isinstance(until, datetime)
        assert before + timedelta(minutes=15) <= until <= after + timedelta(minutes=15)
        # locked: even the right password is refused, and nothing is counted
        for password in (PW, "Wrong-pass1"):
            with pytest.raises(Refused, match="^Login is locked until .* UTC after 5 failed"):
                start(session, password)
        assert failures(session) == 0
        # MitID is not locked
        portal.login_mitid(session, cpr=NUMBER, clinic_code="NORD", broker=mitid.broker())
        # 15 minutes later
        key = throttle.key(throttle.PATIENT, NUMBER)
        row = session.exec(select(LoginThrottle).where(LoginThrottle.key == key)).one()
        row.locked_until = utcnow() - timedelta(seconds=1)
        session.add(row)
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


def test_unknown_cpr_not_activated_and_not_linked_get_the_wrong_password_message(
    staff: Staff, db_url: str, home: Path
) -> None:
    staff.cli("clinic create SYD --name Syd")
    staff_creates_patient(staff.cli, cpr=NUMBER, name="Ole", email=EMAIL, no_mitid=True)
    self_registers(staff.cli, cpr="0203041234", name="Eva", email="eva@example.dk", password=PW)
    with db_session(db_url, home) as session:
        for cpr, clinic in ((NUMBER, "NORD"), ("030405-1234", "NORD"), ("0203041234", "SYD")):
            with pytest.raises(Refused, match="^Login failed: wrong CPR number or password.$"):
                portal.start_two_factor(session, cpr=cpr, clinic_code=clinic, password=PW)
        # the right password at a clinic the patient does not use counts as well
        assert [e[1]["reason"] for e in events(session)] == [
            "not_activated",
            "unknown_user",
            "not_linked",
        ]
        assert [failures(session, c) for c in (NUMBER, "0304051234", "0203041234")] == [1, 1, 1]


# --- two-factor: security code ------------------------------------------------------------


_INBOXES: dict[Path, Inbox] = {}


def login(home: Path, db_url: str) -> tuple[str, str]:
    """A two-factor login's first step, delivered: (attempt id, code)."""
    with db_session(db_url, home) as session:
        attempt = start(session).attempt
    send(home)
    inbox = _INBOXES.setdefault(home, Inbox(home))  # one per test: it remembers what was read
    return attempt, inbox.security_code(EMAIL)


def test_the_security_code_is_mailed_and_works_once(patient: str, db_url: str, home: Path) -> None:
    attempt, code = login(home, db_url)
    with db_session(db_url, home) as session:
        row = session.exec(select(OneTimeCode).where(OneTimeCode.purpose == "login")).one()
        assert row.expires_at - row.created_at == timedelta(minutes=10)
        assert row.attempt_hash == codes.attempt_hash(attempt)
        verify(session, f" {code} ", attempt)
        with pytest.raises(Refused, match=NOT_VALID):
            verify(session, code, attempt)


def test_only_the_login_s_attempt_id_may_try_the_code(
    patient: str, db_url: str, home: Path
) -> None:
    """Someone who knows only the CPR number cannot use up the pending code."""
    attempt, code = login(home, db_url)
    with db_session(db_url, home) as session:
        for other in (None, "", "x" * 22, attempt[:-1]):
            with pytest.raises(Refused, match=NOT_VALID):
                verify(session, code, other)  # even the right code
        row = session.exec(select(OneTimeCode).where(OneTimeCode.purpose == "login")).one()
        assert (row.attempts, row.used_at) == (0, None)
        assert failures(session) == 4
        assert [e[1]["reason"] for e in events(session)[-4:]] == ["other_attempt"] * 4
        verify(session, code, attempt)


def test_a_new_login_replaces_the_older_code(patient: str, db_url: str, home: Path) -> None:
    first_attempt, first = login(home, db_url)
    second_attempt, second = login(home, db_url)
    with db_session(db_url, home) as session:
        with pytest.raises(Refused, match=NOT_VALID):
            verify(session, first, first_attempt)
        with pytest.raises(Refused, match=NOT_VALID):
            verify(session, second, first_attempt)
        verify(session, second, second_attempt)


def test_one_code_pending_even_when_mail_waits(patient: str, db_url: str, home: Path) -> None:
    """Two logins before any delivery: the older one's mail is not sent at all."""
    with db_session(db_url, home) as session:
        first = start(session)
        second = start(session)
        assert not portal.delivered(session, message_id=first.message_id)
    send(home)
    code = Inbox(home).security_code(EMAIL)  # exactly one security code mail
    with db_session(db_url, home) as session:
        assert len(session.exec(select(OneTimeCode)).all()) == 1
        with pytest.raises(Refused, match=NOT_VALID):
            verify(session, code, first.attempt)
        verify(session, code, second.attempt)


def test_wrong_security_codes_count_toward_the_lock(patient: str, db_url: str, home: Path) -> None:
    attempt, code = login(home, db_url)
    wrong = "000000" if code != "000000" else "111111"
    with db_session(db_url, home) as session:
        for left in (4, 3, 2, 1):
            with pytest.raises(portal.WrongCode) as info:
                verify(session, wrong, attempt)
            assert (
                str(info.value)
                == f"Wrong security code ({left} tr{'y' if left == 1 else 'ies'} left)."
            )
            assert info.value.tries_left == left
        with pytest.raises(Refused, match=NOT_VALID + ".* login is locked for 15 minutes.$"):
            verify(session, wrong, attempt)
        with pytest.raises(Refused, match="^Login is locked until"):
            verify(session, code, attempt)
        reasons = [e[1].get("reason") for e in events(session)[-6:]]
    assert reasons == [*["wrong_code"] * 4, "code_exhausted", None]


def test_tries_left_counts_wrong_passwords_too(patient: str, db_url: str, home: Path) -> None:
    with db_session(db_url, home) as session:
        for _ in range(2):
            with pytest.raises(Refused):
                start(session, "Wrong-pass1")
    attempt, code = login(home, db_url)
    wrong = "000000" if code != "000000" else "111111"
    with db_session(db_url, home) as session:
        for left in (2, 1):
            with pytest.raises(portal.WrongCode, match=rf"\({left} tr"):
                verify(session, wrong, attempt)
        with pytest.raises(Refused, match="locked for 15 minutes"):
            verify(session, wrong, attempt)


def test_an_expired_security_code_is_refused(patient: str, db_url: str, home: Path) -> None:
    attempt, code = login(home, db_url)
    with db_session(db_url, home) as session:
        row = session.exec(select(OneTimeCode).where(OneTimeCode.purpose == "login")).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
        with pytest.raises(
            Refused, match=r"^The security code has expired \(codes are valid for 10"
        ):
            verify(session, code, attempt)


def test_a_security_code_that_is_not_6_digits_is_invalid_input(
    patient: str, db_url: str, home: Path
) -> None:
    attempt, _ = login(home, db_url)
    with db_session(db_url, home) as session:
        for bad in ("", "12345", "1234567", "abcdef", "12 34 5x", "１２３４５６"):
            with pytest.raises(InvalidInput, match="6 digits"):
                verify(session, bad, attempt)
        row = codes.current(session, user_id=user_row(session, NUMBER).id or 0, purpose="login")
        assert row is not None and row.attempts == 0
        assert failures(session) == 0


def test_a_lock_also_stops_a_pending_code(patient: str, db_url: str, home: Path) -> None:
    attempt, code = login(home, db_url)
    with db_session(db_url, home) as session:
        for _ in range(5):
            with pytest.raises(Refused):
                start(session, "Wrong-pass1")
        with pytest.raises(Refused, match="^Login is locked until"):
            verify(session, code, attempt)


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
    assert sorted(results) == ["Login"] * 10
    with db_session(db_url, home) as session:
        assert lock_end(session) is not None and failures(session) == 0
        actions = sorted(e[0] for e in events(session))
    assert actions == ["portal.login_failed"] * 5 + ["portal.login_locked"] * 5
