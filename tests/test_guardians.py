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


# --- acting for the child in the portal --------------------------------------------------------

LOGIN_FOR = f"portal login {PARENT} --clinic NORD --method mitid --for {CHILD}"
NOT_ACTING = (
    "Error: You cannot act for 100516-**** at clinic NORD: no guardianship or proxy of yours "
    "for that person is in force there. Contact the clinic.\n"
)
ACTING = (
    "Acting for 100516-**** (Emil Jensen) as guardian (forældremyndighed) through 2031-05-09; "
    "services: e-consultation, booking, prescription-renewal.\n"
)


def test_a_parent_logs_in_for_the_10_year_old(family: Cli, db_url: str, home: Path) -> None:
    cli = family
    cli(ADD)
    r = cli(LOGIN_FOR)
    assert (r.stdout, r.stderr) == (
        "",
        "Logged in with MitID (simulated) at clinic NORD.\n" + ACTING,
    )
    with db_session(db_url, home) as session:
        [acted] = events(session, "portal.login_for")
        logins = [e for e in events(session, "portal.login") if e[0] == "portal.login"]
    assert acted[:4] == ("portal.login_for", "NORD", f"cpr:{CHILD_NUMBER}", "guardian")
    assert acted[4] == {
        "patient": CHILD_NUMBER,
        "holder": PARENT_NUMBER,
        "method": "mitid",
        "basis": "forældremyndighed",
        "services": ["e-consultation", "booking", "prescription-renewal"],
        "last_day": "2031-05-09",
    }
    assert [e[2] for e in logins] == [f"cpr:{PARENT_NUMBER}"]  # the parent's own login
    for cpr in (CHILD, PARENT):  # one event, in both people's log
        log = json.loads(cli(f"patient log {cpr} -o json").stdout)
        [entry] = [e for e in log if e["action"] == "portal.login_for"]
        assert entry["actor"] == "guardian"
        assert (entry["details"]["patient"], entry["details"]["holder"]) == (
            "100516-****", "150380-****",
        )  # fmt: skip


def test_the_portal_the_day_before_and_on_the_15th_birthday(
    family: Cli, clock: Clock, db_url: str, home: Path
) -> None:
    cli = family
    cli(ADD)
    clock.set(BIRTHDAY_15 - timedelta(seconds=1))
    assert cli(LOGIN_FOR).stderr.endswith(ACTING)
    clock.set(BIRTHDAY_15)
    r = cli(LOGIN_FOR, expect=1)
    assert (r.stdout, r.stderr) == ("", NOT_ACTING)
    with db_session(db_url, home) as session:
        assert len(events(session, "portal.login_for")) == 1
        [refused] = events(session, "portal.login_refused")
        assert [e for e in events(session, "portal.login") if e[0] == "portal.login"][1:] == []
    assert refused[:4] == ("portal.login_refused", "NORD", f"cpr:{PARENT_NUMBER}", "patient")
    assert (refused[4]["reason"], refused[4]["why"], refused[4]["for"]) == (
        "not_acting_for", "ended", CHILD_NUMBER,
    )  # fmt: skip


def test_two_factor_is_checked_at_login_and_again_at_verify(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli(["patient", "create", PARENT, "--name", "Mette Jensen", "--email", "mette@example.dk"])
    cli("no-mitid set 150380-4321 --confirm-email-owner")
    patient(cli, CHILD, "Emil Jensen", "emil@example.dk")
    inbox = Inbox(home)
    code = inbox.activation_code("mette@example.dk")
    pw = "Patient-pass1"
    cli(f"portal activate {PARENT} --clinic NORD --code {code} --password-stdin", input=pw)
    login = f"portal login {PARENT} --clinic NORD --method two-factor --password-stdin"
    # no guardianship yet: refused after the right password, and no code is sent
    r = cli(f"{login} --for {CHILD}", input=pw, expect=1)
    assert r.stderr == NOT_ACTING
    assert inbox.new() == []
    cli(ADD)
    r = cli(f"{login} --for {CHILD}", input=pw)
    attempt = r.stderr.split("--attempt ")[1].split(" ")[0]
    assert r.stderr == (
        "A security code was e-mailed to m***@example.dk (valid 10 minutes).\n"
        "No terminal to ask for it: give it with `patientportal portal verify CPR --clinic "
        f"NORD --attempt {attempt} --code CODE --for PATIENT_CPR`.\n"
    )
    code = inbox.security_code("mette@example.dk")
    verify = f"portal verify {PARENT} --clinic NORD --attempt {attempt} --code {code}"
    r = cli(f"{verify} --for {CHILD}")
    assert r.stderr == "Logged in.\n" + ACTING
    # checked again at verify: removed meanwhile, the login for the child is refused,
    # while the parent's own login (the same code) still works
    r = cli(f"{login} --for {CHILD}", input=pw)
    attempt = r.stderr.split("--attempt ")[1].split(" ")[0]
    code = inbox.security_code("mette@example.dk")
    cli(f"patient guardian remove {CHILD} --guardian {PARENT}")
    verify = f"portal verify {PARENT} --clinic NORD --attempt {attempt} --code {code}"
    assert cli(f"{verify} --for {CHILD}", expect=1).stderr == NOT_ACTING
    assert cli(verify).stderr == "Logged in.\n"
    shown = json.loads(cli(f"patient show {PARENT} -o json").stdout)
    assert shown["failed_logins"] == 0  # refusals to act for someone count toward no lock
    with db_session(db_url, home) as session:
        assert [e[4]["method"] for e in events(session, "portal.login_for")] == ["two-factor"]


def test_for_a_patient_not_linked_here_or_bad_for(
    family: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli = family
    cli(ADD)
    cli("clinic create SYD --name Syd")
    staff.login("anna", clinic="NORD")
    patient(cli, "121275-1234", "Other Person", "other@example.dk", "--clinic", "SYD")
    for other in ("121275-1234", "010101-1234"):  # linked elsewhere; no portal user
        r = cli(f"portal login {PARENT} --clinic NORD --method mitid --for {other}", expect=1)
        assert r.stderr == NOT_ACTING.replace("100516-****", other[:6] + "-****")
    # the parent at SYD (linked there too): the guardianship is NORD's only
    cli(f"patient link {PARENT} --clinic SYD")
    cli(f"patient link {CHILD} --clinic SYD")
    r = cli(f"portal login {PARENT} --clinic SYD --method mitid --for {CHILD}", expect=1)
    assert r.stderr == NOT_ACTING.replace("NORD", "SYD")
    r = cli(f"portal login {PARENT} --clinic NORD --method mitid --for {PARENT}", expect=2)
    assert r.stderr == ("Error: --for names the patient you act for: someone else than yourself.\n")
    r = cli(f"portal login {PARENT} --clinic NORD --method mitid --for 1234", expect=2)
    assert r.stderr.startswith("Error: Invalid CPR number")
    with db_session(db_url, home) as session:
        assert events(session, "portal.login_for") == []
        assert [e[4]["why"] for e in events(session, "portal.login_refused")] == [
            "not_linked", "unknown_patient", "no_delegation",
        ]  # fmt: skip
        assert [e for e in events(session, "portal.login") if e[0] == "portal.login"] == []


# --- schema 0007 -------------------------------------------------------------------------------


def test_migration_0007_keeps_the_data_and_allows_one_open_row(db_url: str, home: Path) -> None:
    """0006 -> 0007 adds the table and keeps what is there; the partial unique index
    allows one open row per (clinic, patient, holder, kind), any number of revoked ones;
    the downgrade removes the table only."""
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.db import migrate

    engine = engine_mod.get_engine(db_url, home)
    migrate.upgrade(engine, "0006")
    now = datetime(2026, 12, 2, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO clinic (code, name, registration_mode, services, created_at) "
                "VALUES ('NORD', 'Nord', 'none', 'booking', :now)"
            ),
            {"now": now},
        )
        for cpr in (CHILD_NUMBER, PARENT_NUMBER):
            conn.execute(
                text(
                    "INSERT INTO portal_user (cpr, name, email, origin, failed_logins, "
                    "created_at) VALUES (:cpr, 'X', 'x@example.dk', 'clinic', 0, :now)"
                ),
                {"cpr": cpr, "now": now},
            )
    migrate.upgrade(engine, "0007")
    insert = text(
        "INSERT INTO delegation (clinic_id, patient_user_id, holder_user_id, kind, basis, "
        "created_at, created_by, revoked_at) VALUES (1, "
        "(SELECT id FROM portal_user WHERE cpr = :child), "
        "(SELECT id FROM portal_user WHERE cpr = :parent), 'guardian', 'fuldmagt', :now, "
        "'anna', :revoked)"
    )
    who = {"child": CHILD_NUMBER, "parent": PARENT_NUMBER, "now": now}
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM portal_user")).scalar_one() == 2
        conn.execute(insert, {**who, "revoked": now})
        conn.execute(insert, {**who, "revoked": now})
        conn.execute(insert, {**who, "revoked": None})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert, {**who, "revoked": None})
    with engine.begin() as conn:
        command.downgrade(migrate._config(conn), "0006")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM portal_user")).scalar_one() == 2
        assert conn.execute(text("SELECT count(*) FROM clinic")).scalar_one() == 1
    assert migrate.current(engine) == "0006"
