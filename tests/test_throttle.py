"""services/throttle.py: five failures lock a login name for 15 minutes, whether the name
exists or not; a success resets the count; staff clear it. Both backends."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, select

from patientportal_cli.db import engine as engine_mod
from patientportal_cli.db import migrate
from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import LoginThrottle
from patientportal_cli.services import throttle


def test_five_failures_lock_any_name_and_a_success_resets(db_url: str, home: Path) -> None:
    engine = engine_mod.get_engine(db_url, home)
    migrate.upgrade(engine)
    now = utcnow()
    with Session(engine) as session:
        for name in ("nobody-at-all", "0102031234"):
            kind = throttle.PATIENT if name.isdigit() else throttle.STAFF
            for _ in range(4):
                assert throttle.failure(session, kind=kind, name=name, now=now) is None
            assert throttle.locked_until(session, kind=kind, name=name, now=now) is None
            until = throttle.failure(session, kind=kind, name=name, now=now)
            assert until == now + timedelta(minutes=15)
            assert throttle.locked_until(session, kind=kind, name=name, now=now) == until
            later = now + timedelta(minutes=15, seconds=1)
            assert throttle.locked_until(session, kind=kind, name=name, now=later) is None
        session.commit()
        # another kind with the same name is another row
        assert throttle.locked_until(session, kind=throttle.PATIENT, name="nobody-at-all") is None
        throttle.failure(session, kind=throttle.STAFF, name="bo")
        throttle.failure(session, kind=throttle.STAFF, name="bo")
        assert throttle.failures(session, kind=throttle.STAFF, name="bo") == 2
        throttle.success(session, kind=throttle.STAFF, name="bo")
        assert throttle.failures(session, kind=throttle.STAFF, name="bo") == 0
        assert throttle.clear(session, kind=throttle.STAFF, name="nobody-at-all")[1] is not None
        assert throttle.locked_until(session, kind=throttle.STAFF, name="nobody-at-all") is None
        session.commit()
        keys = session.exec(select(LoginThrottle.key)).all()
    assert len(keys) == 3 and all(len(k) == 64 and "nobody" not in k for k in keys)
