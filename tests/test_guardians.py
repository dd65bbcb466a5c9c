"""Guardians of children under 15 (`patient guardian`, services/delegations.py): through the
`patientportal` command on both backends, with the clock injected (db/clock.py), and the
pure date rules."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from patientportal_cli.db import clock as clock_mod
from patientportal_cli.db.models import Delegation
from patientportal_cli.errors import InvalidInput
from patientportal_cli.services import delegations
from tests.helpers.cli import Cli, Staff, lines
from tests.helpers.db import db_session, events
from tests.helpers.mail import Inbox

CHILD = "100516-4123"  # Emil, born 10 May 2016 (7th digit 4, YY 16: the 2000s)
CHILD_NUMBER = "1005164123"
PARENT = "150380-4321"  # Mette, born 15 March 1980
PARENT_NUMBER = "1503804321"
TEEN = "020709-4555"  # Ida, born 2 July 2009: 17 now
# Emil turns 15 at 00:00 Copenhagen (CEST, UTC+2) on 10 May 2031 = 22:00 UTC on 9 May
BIRTHDAY_15 = datetime(2031, 5, 9, 22, 0, tzinfo=UTC)
ADD = f"patient guardian add {CHILD} --guardian {PARENT} --basis forældremyndighed"


class Clock:
    """The program's clock (``db.clock.utcnow``), set by the test; nothing sleeps."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def set(self, when: datetime) -> None:
        self.monkeypatch.setattr(clock_mod, "utcnow", lambda: when)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def patient(cli: Cli, cpr: str, name: str, email: str, *extra: str) -> None:
    cli(["patient", "create", cpr, "--name", name, "--email", email, "--no-invite", *extra])


@pytest.fixture
def family(cli: Cli, staff: Staff) -> Cli:
    """Emil (10) and his mother Mette, both patients at NORD."""
    patient(cli, CHILD, "Emil Jensen", "emil@example.dk")
    patient(cli, PARENT, "Mette Jensen", "mette@example.dk")
    return cli


def delegation_rows(db_url: str, home: Path) -> list[Delegation]:
    with db_session(db_url, home) as session:
        return list(session.exec(select(Delegation)))


# --- adding, listing, showing --------------------------------------------------------------


def test_a_parent_acts_for_a_10_year_old(family: Cli, db_url: str, home: Path) -> None:
    cli = family
    r = cli(f"{ADD} --evidence 'Sundhedskort og CPR-registret'")
    assert r.stdout == ""
    assert r.stderr == (
        "Guardian added: 150380-**** (Mette Jensen) acts for 100516-**** (Emil Jensen) at "
        "clinic NORD (forældremyndighed) through 2031-05-09; it ends by itself on the "
        "child's 15th birthday.\n"
        "Services: e-consultation, booking, prescription-renewal.\n"
    )
    assert lines(cli("patient guardian list").stdout) == [
        "Guardians at NORD",
        "Child         Child's name   Guardian      Guardian's name   Basis               "
        "Last day     Status     Notice sent",
        "-",
        "100516-****   Emil Jensen    150380-****   Mette Jensen      forældremyndighed   "
        "2031-05-09   in force",
    ]
    answer = json.loads(cli(f"patient access {PARENT} --for {CHILD} -o json").stdout)
    assert answer == {
        "holder_cpr": "150380-****",
        "holder_name": "Mette Jensen",
        "patient_cpr": "100516-****",
        "patient_name": "Emil Jensen",
        "allowed": True,
        "kind": "guardian",
        "basis": "forældremyndighed",
        "last_day": "2031-05-09",
        "ends_at": "2031-05-09T22:00:00Z",
        "services": ["e-consultation", "booking", "prescription-renewal"],
        "reason": "guardian (forældremyndighed) in force through 2031-05-09",
    }
    # show and access list it, for the child and for the parent
    for cpr in (CHILD, PARENT):
        shown = json.loads(cli(f"patient show {cpr} -o json").stdout)
        access = json.loads(cli(f"patient access {cpr} -o json").stdout)
        for data in (shown, access):
            [row] = data["delegations"]
            assert (row["kind"], row["patient_cpr"], row["holder_cpr"], row["last_day"]) == (
                "guardian", "100516-****", "150380-****", "2031-05-09",
            )  # fmt: skip
            assert (
                row["status"] == "in force" and row["evidence"] == "Sundhedskort og CPR-registret"
            )
    table = cli(f"patient show {CHILD}").stdout
    assert "Guardians and proxies" in table and "2031-05-09" in table
    [row] = delegation_rows(db_url, home)
    assert (row.kind, row.basis, row.services, row.valid_until, row.revoked_at) == (
        "guardian", "forældremyndighed", None, None, None,
    )  # fmt: skip
    with db_session(db_url, home) as session:
        [added] = events(session, "guardian.add")
    assert added[:4] == ("guardian.add", "NORD", f"cpr:{CHILD_NUMBER}", "anna")
    assert (added[4]["patient"], added[4]["holder"]) == (CHILD_NUMBER, PARENT_NUMBER)


def test_both_logs_show_the_guardianship(family: Cli) -> None:
    family(ADD)
    for cpr in (CHILD, PARENT):
        log = json.loads(family(f"patient log {cpr} -o json").stdout)
        [added] = [e for e in log if e["action"] == "guardian.add"]
        assert added["details"]["patient"] == "100516-****"
        assert added["details"]["holder"] == "150380-****"


def test_a_patient_without_delegations_shows_as_before(family: Cli) -> None:
    shown = json.loads(family(f"patient show {CHILD} -o json").stdout)
    assert "delegations" not in shown
    assert "Guardians and proxies" not in family(f"patient show {CHILD}").stdout
    assert "delegations" not in json.loads(family(f"patient access {CHILD} -o json").stdout)


def test_the_day_before_and_on_the_15th_birthday(family: Cli, clock: Clock) -> None:
    cli = family
    cli(ADD)
    check = f"patient access {PARENT} --for {CHILD} -o json"
    clock.set(datetime(2031, 5, 9, 10, 0, tzinfo=UTC))  # the day before, midday
    assert json.loads(cli(check).stdout)["allowed"] is True
    clock.set(BIRTHDAY_15 - timedelta(seconds=1))  # 23:59:59 in Copenhagen
    assert json.loads(cli(check).stdout)["allowed"] is True
    clock.set(BIRTHDAY_15)  # 00:00 on the birthday: over, nothing had to run
    answer = json.loads(cli(check).stdout)
    assert (answer["allowed"], answer["reason"], answer["services"]) == (
        False, "the guardian's access is ended (last day 2031-05-09)", [],
    )  # fmt: skip
    assert cli("patient guardian list").stderr == "No guardians.\n"
    listed = json.loads(cli("patient guardian list --all -o json").stdout)
    assert [(r["status"], r["last_day"]) for r in listed] == [("ended", "2031-05-09")]
    # and a new guardian cannot be added any more
    r = cli(ADD.replace("forældremyndighed", "fuldmagt"), expect=1)
    assert r.stderr == (
        "Error: 100516-**** turned 15 on 2031-05-10: from 15 the patient decides alone, so a "
        "guardian cannot act for them. A fuldmagt from the patient works: `patientportal "
        "patient proxy add`. Nothing was changed.\n"
    )


def test_remove_ends_it_at_once_and_keeps_the_record(family: Cli, db_url: str, home: Path) -> None:
    cli = family
    cli(ADD)
    r = cli(f"patient guardian remove {CHILD} --guardian {PARENT}")
    assert r.stderr == (
        "Guardian removed: 150380-**** (Mette Jensen) no longer acts for 100516-**** "
        "(Emil Jensen) at clinic NORD.\n"
    )
    assert (
        json.loads(cli(f"patient access {PARENT} --for {CHILD} -o json").stdout)["allowed"] is False
    )
    r = cli(f"patient guardian remove {CHILD} --guardian {PARENT}", expect=1)
    assert r.stderr == (
        "Error: 150380-**** is not the guardian of 100516-**** at clinic NORD; nothing changed.\n"
    )
    [row] = delegation_rows(db_url, home)
    assert row.revoked_by == "anna" and row.revoked_at is not None
    cli(ADD)  # added again: a new row, the old one kept
    assert len(delegation_rows(db_url, home)) == 2


def test_expiring_lists_only_those_ending_soon(family: Cli, clock: Clock) -> None:
    cli = family
    cli(ADD)
    clock.set(BIRTHDAY_15 - timedelta(days=31))
    assert cli("patient guardian list --expiring 30d -o json").stdout == "[]\n"
    clock.set(BIRTHDAY_15 - timedelta(days=29))
    [row] = json.loads(cli("patient guardian list --expiring 30d -o json").stdout)
    assert row["holder_cpr"] == "150380-****"
    r = cli("patient guardian list --expiring soon", expect=2)
    assert r.stderr == "Error: Invalid --expiring 'soon': give a number of days, e.g. 30d.\n"


# --- bad input: a clear line, exit 1 or 2, nothing written -------------------------------------


def test_bad_input_writes_nothing(family: Cli, db_url: str, home: Path) -> None:
    cli = family
    patient(cli, TEEN, "Ida Holm", "ida@example.dk")
    patient(cli, "010112-4000", "Bo Barn", "bo@example.dk")  # born 2012: 14
    cases = [
        (
            f"patient guardian add {CHILD} --guardian {CHILD} --basis fuldmagt",
            2,
            "Error: 100516-**** cannot be their own guardian: give the child's CPR number and "
            "the guardian's.\n",
        ),
        (
            f"patient guardian add {CHILD} --guardian {TEEN} --basis fuldmagt",
            1,
            "Error: The guardian 020709-**** is under 18: only an adult can act for someone "
            "else. Nothing was changed.\n",
        ),
        (
            f"patient guardian add {PARENT} --guardian {CHILD} --basis fuldmagt",
            1,
            "Error: 150380-**** turned 15 on 1995-03-15: from 15 the patient decides alone, so "
            "a guardian cannot act for them. A fuldmagt from the patient works: "
            "`patientportal patient proxy add`. Nothing was changed.\n",
        ),
        (
            f"patient guardian add {CHILD} --guardian 121275-1234 --basis fuldmagt",
            1,
            "Error: Guardian 121275-**** is not a patient at clinic NORD, and no portal user has "
            "this CPR number; create one with `patientportal patient create CPR --name NAME "
            "--email EMAIL`.\n",
        ),
        (
            f"patient guardian add 999999-1234 --guardian {PARENT} --basis fuldmagt",
            2,
            "Error: Invalid CPR number: 99.99.1999 is not a real date.\n",
        ),
        (
            f"patient guardian add {CHILD} --guardian {PARENT} --basis fuldmagt --evidence 'a\x07b'",
            2,
            "Error: Invalid --evidence: control and format characters are not allowed.\n",
        ),
    ]
    for args, code, message in cases:
        r = cli(args, expect=code)
        assert (r.stdout, r.stderr) == ("", message), args
    r = cli(f"patient guardian add {CHILD} --guardian {PARENT} --basis mor", expect=2)
    assert "'mor' is not one of 'forældremyndighed', 'fuldmagt'" in r.stderr
    r = cli(f"patient guardian add {CHILD} --guardian {PARENT}", expect=2)
    assert "Missing option '--basis'" in r.stderr
    assert delegation_rows(db_url, home) == []
    with db_session(db_url, home) as session:
        assert events(session, "guardian.") == []


def test_a_guardian_who_is_a_user_of_another_clinic_only(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli("clinic create SYD --name Syd")
    staff.login("anna", clinic="NORD")
    patient(cli, PARENT, "Mette Jensen", "mette@example.dk", "--clinic", "SYD")
    patient(cli, CHILD, "Emil Jensen", "emil@example.dk")
    r = cli(f"{ADD}", expect=1)
    assert r.stderr == (
        "Error: Guardian 150380-**** is not a patient at clinic NORD. A portal user with this "
        "CPR number exists; link it to the clinic with `patientportal patient link CPR`.\n"
    )
    cli(f"patient link {PARENT}")
    cli(ADD)


def test_another_clinic_learns_nothing(family: Cli, staff: Staff) -> None:
    cli = family
    cli(ADD)
    cli("clinic create SYD --name Syd")
    staff.add("sara", "secretary", name="Sara", clinic="SYD")
    staff.login("sara")
    assert cli("patient guardian list -o json").stdout == "[]\n"
    assert cli("patient guardian list --all -o json").stdout == "[]\n"
    for args in (
        f"patient show {CHILD} -o json",
        f"patient access {PARENT} --for {CHILD} -o json",
        f"patient guardian remove {CHILD} --guardian {PARENT}",
        f"patient log {PARENT}",
    ):
        r = cli(args, expect=1)
        assert r.stdout == "" and "is not a patient at clinic SYD" in r.stderr, args
        assert "NORD" not in r.stderr and "Mette" not in r.stderr
    access = json.loads(cli(f"patient access {PARENT} -o json").stdout)
    assert access == {
        "mitid": {"allowed": False, "reason": "not linked here"},
        "two_factor": {"allowed": False, "reason": "not linked here"},
    }
    # linked at SYD too: SYD still sees no guardian of its own
    patient(cli, PARENT, "Mette Jensen", "mette@example.dk")
    patient(cli, CHILD, "Emil Jensen", "emil@example.dk")
    assert "delegations" not in json.loads(cli(f"patient show {CHILD} -o json").stdout)
    answer = json.loads(cli(f"patient access {PARENT} --for {CHILD} -o json").stdout)
    assert (answer["allowed"], answer["reason"]) == (False, "no guardianship or proxy here")


def test_unlinking_either_person_ends_it(family: Cli) -> None:
    cli = family
    cli(ADD)
    cli(f"patient unlink {PARENT} --yes")
    cli(f"patient link {PARENT}")  # a new link does not bring it back
    answer = json.loads(cli(f"patient access {PARENT} --for {CHILD} -o json").stdout)
    assert (answer["allowed"], answer["reason"]) == (
        False, "the guardian's access is unlinked (last day 2031-05-09)",
    )  # fmt: skip
    cli(ADD)  # it can be added again (the ended one is closed)
    assert json.loads(cli(f"patient access {PARENT} --for {CHILD} -o json").stdout)["allowed"]


# --- housekeeping: the notice 30 days before ---------------------------------------------------


def test_housekeeping_sends_the_notice_once(
    family: Cli, clock: Clock, db_url: str, home: Path
) -> None:
    cli = family
    cli(ADD)
    inbox = Inbox(home)
    inbox.new()
    clock.set(BIRTHDAY_15 - timedelta(days=31))
    r = cli("housekeeping")
    assert r.stderr == "Housekeeping done: queued 0 guardian notices; sent 0 e-mails.\n"
    clock.set(BIRTHDAY_15 - timedelta(days=20))
    r = cli("housekeeping")
    assert (r.stdout, r.stderr) == (
        "",
        "Housekeeping done: queued 1 guardian notice; sent 1 e-mail.\n",
    )
    [(subject, body)] = inbox.new_to("mette@example.dk")
    assert subject == "Din adgang på vegne af Emil Jensen ophører snart – Nordklinikken"
    assert body.startswith("Kære Mette Jensen\n\n")
    assert "ophører den 10.05.2031, når Emil Jensen fylder 15 år" in body
    assert "Den sidste dag, du har adgang, er 09.05.2031." in body
    assert CHILD_NUMBER not in body and "100516" not in body
    r = cli("housekeeping")  # once only
    assert r.stderr == "Housekeeping done: queued 0 guardian notices; sent 0 e-mails.\n"
    assert inbox.new() == []
    listed = json.loads(cli("patient guardian list -o json").stdout)
    assert listed[0]["notice_sent_at"] is not None
    with db_session(db_url, home) as session:
        [notice] = events(session, "guardian.notice")
    assert notice[:4] == ("guardian.notice", "NORD", f"cpr:{CHILD_NUMBER}", "patientportal")
    assert notice[4]["holder"] == PARENT_NUMBER
    log = json.loads(cli(f"patient log {PARENT} -o json").stdout)
    assert "guardian.notice" in [e["action"] for e in log]


def test_housekeeping_tells_no_guardian_that_was_removed(family: Cli, clock: Clock) -> None:
    cli = family
    cli(ADD)
    cli(f"patient guardian remove {CHILD} --guardian {PARENT}")
    clock.set(BIRTHDAY_15 - timedelta(days=10))
    r = cli("housekeeping")
    assert r.stderr == "Housekeeping done: queued 0 guardian notices; sent 0 e-mails.\n"


# --- the date rules (pure) ---------------------------------------------------------------------


def test_the_end_is_the_start_of_the_15th_birthday_in_copenhagen() -> None:
    assert delegations.guardian_end(CHILD_NUMBER) == BIRTHDAY_15  # summer: UTC+2
    # winter: UTC+1 (born 10 January 2016)
    assert delegations.guardian_end("1001164123") == datetime(2031, 1, 9, 23, 0, tzinfo=UTC)
    # born 29 February 2016: turns 15 on 1 March 2031 (2031 is not a leap year)
    assert delegations.birthday(date(2016, 2, 29), 15) == date(2031, 3, 1)
    assert delegations.guardian_end("2902164123") == datetime(2031, 2, 28, 23, 0, tzinfo=UTC)
    assert delegations.last_day(BIRTHDAY_15) == date(2031, 5, 9)


def test_a_proxy_end_date_and_its_bounds() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert delegations.proxy_end(date(2027, 6, 30)) == datetime(2027, 6, 30, 22, 0, tzinfo=UTC)
    assert delegations.parse_until("2026-12-02", now=now) == date(2026, 12, 2)  # today works
    assert delegations.parse_until("2028-12-02", now=now) == date(2028, 12, 2)
    for bad in ("2026-12-01", "2028-12-03", "2027-13-01", "1.1.2027", ""):
        with pytest.raises(InvalidInput):
            delegations.parse_until(bad, now=now)
    # late evening UTC is already the next day in Copenhagen
    late = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="in the past"):
        delegations.parse_until("2026-12-02", now=late)
    leap = datetime(2028, 2, 29, 12, 0, tzinfo=UTC)
    assert delegations.parse_until("2030-02-28", now=leap) == date(2030, 2, 28)
    with pytest.raises(InvalidInput, match="latest end date is 2030-02-28"):
        delegations.parse_until("2030-03-01", now=leap)


def test_within_and_evidence() -> None:
    assert delegations.parse_within("30d") == timedelta(days=30)
    assert delegations.parse_within(" 7 ") == timedelta(days=7)
    with pytest.raises(InvalidInput):
        delegations.parse_within("-1d")
    assert delegations.check_evidence("  Fuldmagt   nr. 12 ", required=True) == "Fuldmagt nr. 12"
    assert delegations.check_evidence(None, required=False) is None
    with pytest.raises(InvalidInput, match="pass --evidence"):
        delegations.check_evidence(" ", required=True)
    with pytest.raises(InvalidInput, match="at most 500"):
        delegations.check_evidence("x" * 501, required=True)
