"""Proxies under a fuldmagt (`patient proxy`, services/delegations.py): through the
`patientportal` command on both backends, with the clock injected (db/clock.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from patientportal_cli.db import clock as clock_mod
from patientportal_cli.db.models import Delegation
from tests.helpers.cli import Cli, Staff, lines
from tests.helpers.db import db_session, events

ELSE = "120345-1111"  # Else, born 12 March 1945
ELSE_NUMBER = "1203451111"
SON = "030370-2222"  # Jens, born 3 March 1970
SON_NUMBER = "0303702222"
CHILD = "100516-4123"  # born 2016: under 15
TEEN = "020709-4555"  # born 2 July 2009: 17
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ADD = f"patient proxy add {ELSE} --holder {SON} --until 2027-06-30 --evidence 'Fuldmagt 2026-11'"


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """The delegation rules' clock: 2 December 2026 at noon (the tests set it later)."""
    monkeypatch.setattr(clock_mod, "utcnow", lambda: NOW)


def at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    monkeypatch.setattr(clock_mod, "utcnow", lambda: when)


def patient(cli: Cli, cpr: str, name: str, email: str, *extra: str) -> None:
    cli(["patient", "create", cpr, "--name", name, "--email", email, "--no-invite", *extra])


@pytest.fixture
def pair(cli: Cli, staff: Staff) -> Cli:
    """Else (81) and her son Jens, both patients at NORD."""
    patient(cli, ELSE, "Else Madsen", "else@example.dk")
    patient(cli, SON, "Jens Madsen", "jens@example.dk")
    return cli


def rows(db_url: str, home: Path) -> list[Delegation]:
    with db_session(db_url, home) as session:
        return list(session.exec(select(Delegation)))


def can(cli: Cli) -> dict[str, object]:
    return dict(json.loads(cli(f"patient access {SON} --for {ELSE} -o json").stdout))


def test_add_list_and_revoke(pair: Cli, db_url: str, home: Path) -> None:
    cli = pair
    r = cli(f"{ADD} --services booking,prescription-renewal")
    assert (r.stdout, r.stderr) == (
        "",
        "Proxy added: 030370-**** (Jens Madsen) acts for 120345-**** (Else Madsen) at clinic "
        "NORD under a fuldmagt through 2027-06-30.\n"
        "Services: booking, prescription-renewal.\n",
    )
    assert lines(cli("patient proxy list").stdout) == [
        "Proxies at NORD",
        "Patient       Patient's name   Proxy         Proxy's name   Services                        "
        "Last day     Status",
        "-",
        "120345-****   Else Madsen      030370-****   Jens Madsen    booking, prescription-renewal   "
        "2027-06-30   in force",
    ]
    answer = can(cli)
    assert answer == {
        "holder_cpr": "030370-****",
        "holder_name": "Jens Madsen",
        "patient_cpr": "120345-****",
        "patient_name": "Else Madsen",
        "allowed": True,
        "kind": "proxy",
        "basis": "fuldmagt",
        "last_day": "2027-06-30",
        "ends_at": "2027-06-30T22:00:00Z",
        "services": ["booking", "prescription-renewal"],
        "reason": "proxy (fuldmagt) in force through 2027-06-30",
    }
    table = lines(cli(f"patient access {SON} --for {ELSE}").stdout)
    assert "allowed       yes" in table and "last day      2027-06-30" in table
    r = cli(f"patient proxy revoke {ELSE} --holder {SON}")
    assert r.stderr == (
        "Proxy revoked: 030370-**** (Jens Madsen) no longer acts for 120345-**** (Else Madsen) "
        "at clinic NORD.\n"
    )
    answer = can(cli)
    assert (answer["allowed"], answer["reason"]) == (
        False, "the proxy's access is revoked (last day 2027-06-30)",
    )  # fmt: skip
    assert cli("patient proxy list").stderr == "No proxies.\n"
    [listed] = json.loads(cli("patient proxy list --all -o json").stdout)
    assert (listed["status"], listed["revoked_by"]) == ("revoked", "anna")
    with db_session(db_url, home) as session:
        assert [e[0] for e in events(session, "proxy.")] == [
            "proxy.add",
            "proxy.list",
            "proxy.revoke",
            "proxy.list",
            "proxy.list",
        ]
        [added] = events(session, "proxy.add")
    assert added[4]["services"] == ["booking", "prescription-renewal"]
    assert added[4]["evidence"] == "Fuldmagt 2026-11"
    # in both people's log
    for cpr in (ELSE, SON):
        log = json.loads(cli(f"patient log {cpr} -o json").stdout)
        assert {"proxy.add", "proxy.revoke"} <= {e["action"] for e in log}


def test_the_proxy_works_through_its_last_day(pair: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = pair
    cli(ADD)
    at(monkeypatch, datetime(2027, 6, 30, 21, 59, 59, tzinfo=UTC))  # 23:59:59 in Copenhagen
    assert can(cli)["allowed"] is True
    at(monkeypatch, datetime(2027, 6, 30, 22, 0, tzinfo=UTC))  # 1 July, 00:00
    answer = can(cli)
    assert (answer["allowed"], answer["reason"]) == (
        False, "the proxy's access is ended (last day 2027-06-30)",
    )  # fmt: skip
    shown = json.loads(cli(f"patient show {ELSE} -o json").stdout)
    assert [(d["status"], d["services"]) for d in shown["delegations"]] == [("ended", [])]
    # a new fuldmagt replaces the ended one
    cli(ADD.replace("2027-06-30", "2028-06-30"))
    assert can(cli)["last_day"] == "2028-06-30"


def test_services_are_within_the_clinics_and_the_patients(pair: Cli) -> None:
    cli = pair
    cli(ADD)
    assert can(cli)["services"] == ["e-consultation", "booking", "prescription-renewal"]
    cli("clinic services --disable booking")
    assert can(cli)["services"] == ["e-consultation", "prescription-renewal"]


def test_bad_input_writes_nothing(pair: Cli, db_url: str, home: Path) -> None:
    cli = pair
    patient(cli, CHILD, "Emil Jensen", "emil@example.dk")
    patient(cli, TEEN, "Ida Holm", "ida@example.dk")
    cli("clinic services --disable booking")
    base = f"patient proxy add {ELSE} --holder {SON} --evidence Fuldmagt"
    cases = [
        (
            f"{base} --until 2026-12-01",
            2,
            "Error: --until 2026-12-01 is in the past (today is 2026-12-02): a fuldmagt needs an "
            "end date from today on.\n",
        ),
        (
            f"{base} --until 2028-12-03",
            2,
            "Error: --until 2028-12-03 is more than 2 years ahead: the latest end date is "
            "2028-12-02 (a fuldmagt is renewed, at least every 2 years).\n",
        ),
        (
            f"{base} --until 30-06-2027",
            2,
            "Error: Invalid --until '30-06-2027': give the last day of the fuldmagt as "
            "YYYY-MM-DD.\n",
        ),
        (
            f"{base} --until 2027-06-30 --services booking",
            2,
            "Error: Clinic NORD does not offer booking: choose among e-consultation, "
            "prescription-renewal.\n",
        ),
        (
            f"{base} --until 2027-06-30 --services massage",
            2,
            "Error: Unknown service 'massage': use e-consultation, booking, "
            "prescription-renewal (comma-separated).\n",
        ),
        (
            f"patient proxy add {ELSE} --holder {SON} --until 2027-06-30 --evidence ' '",
            2,
            "Error: Missing evidence of the fuldmagt: pass --evidence (no terminal to ask on).\n",
        ),
        (
            f"patient proxy add {ELSE} --holder {ELSE} --until 2027-06-30 --evidence F",
            2,
            "Error: 120345-**** cannot be their own proxy: give the patient's CPR number and the "
            "proxy's.\n",
        ),
        (
            f"patient proxy add {CHILD} --holder {SON} --until 2027-06-30 --evidence F",
            1,
            "Error: 100516-**** is under 15: a parent with custody acts for a child as its "
            "guardian (`patientportal patient guardian add`). Nothing was changed.\n",
        ),
        (
            f"patient proxy add {ELSE} --holder {TEEN} --until 2027-06-30 --evidence F",
            1,
            "Error: The holder 020709-**** is under 18: only an adult can act for someone else. "
            "Nothing was changed.\n",
        ),
        (
            f"patient proxy add {ELSE} --holder 121275-1234 --until 2027-06-30 --evidence F",
            1,
            "Error: Holder 121275-**** is not a patient at clinic NORD, and no portal user has "
            "this CPR number; create one with `patientportal patient create CPR --name NAME "
            "--email EMAIL`.\n",
        ),
        (
            f"patient proxy revoke {ELSE} --holder {SON}",
            1,
            "Error: 030370-**** is not a proxy of 120345-**** at clinic NORD; nothing changed.\n",
        ),
    ]
    for args, code, message in cases:
        r = cli(args, expect=code)
        assert (r.stdout, r.stderr) == ("", message), args
    r = cli(f"patient proxy add {ELSE} --holder {SON} --evidence F", expect=2)
    assert "Missing option '--until'" in r.stderr
    assert rows(db_url, home) == []
    with db_session(db_url, home) as session:
        assert events(session, "proxy.") == []


def test_a_second_proxy_while_one_is_in_force_is_refused(pair: Cli) -> None:
    cli = pair
    cli(ADD)
    r = cli(ADD.replace("2027-06-30", "2027-12-31"), expect=1)
    assert r.stderr == (
        "Error: 030370-**** is already a proxy of 120345-**** at clinic NORD (last day "
        "2027-06-30). To change it, run `patientportal patient proxy revoke` first.\n"
    )


def test_another_clinic_learns_nothing(pair: Cli, staff: Staff) -> None:
    cli = pair
    cli(ADD)
    cli("clinic create SYD --name Syd")
    staff.add("sara", "secretary", name="Sara", clinic="SYD")
    staff.login("sara")
    assert cli("patient proxy list --all -o json").stdout == "[]\n"
    r = cli(f"patient proxy revoke {ELSE} --holder {SON}", expect=1)
    assert r.stderr == (
        "Error: Patient 120345-**** is not a patient at clinic SYD. A portal user with this CPR "
        "number exists; link it to the clinic with `patientportal patient link CPR`.\n"
    )
    patient(cli, ELSE, "Else Madsen", "else@example.dk")
    patient(cli, SON, "Jens Madsen", "jens@example.dk")
    assert can(cli)["allowed"] is False
    assert "delegations" not in json.loads(cli(f"patient access {ELSE} -o json").stdout)


# --- acting for the patient in the portal ------------------------------------------------------

LOGIN_FOR = f"portal login {SON} --clinic NORD --method mitid --for {ELSE}"
NOT_ACTING = (
    "Error: You cannot act for 120345-**** at clinic NORD: no guardianship or proxy of yours "
    "for that person is in force there. Contact the clinic.\n"
)


def test_a_fuldmagt_used_then_revoked(pair: Cli, db_url: str, home: Path) -> None:
    cli = pair
    cli(f"{ADD} --services booking")
    r = cli(LOGIN_FOR)
    assert (r.stdout, r.stderr) == (
        "",
        "Logged in with MitID (simulated) at clinic NORD.\n"
        "Acting for 120345-**** (Else Madsen) as proxy (fuldmagt) through 2027-06-30; "
        "services: booking.\n",
    )
    cli(f"patient proxy revoke {ELSE} --holder {SON}")
    r = cli(LOGIN_FOR, expect=1)
    assert (r.stdout, r.stderr) == ("", NOT_ACTING)
    with db_session(db_url, home) as session:
        [acted] = events(session, "portal.login_for")
        [refused] = events(session, "portal.login_refused")
    assert acted[:4] == ("portal.login_for", "NORD", f"cpr:{ELSE_NUMBER}", "proxy")
    assert (acted[4]["holder"], acted[4]["services"]) == (SON_NUMBER, ["booking"])
    assert (refused[2], refused[4]["why"]) == (f"cpr:{SON_NUMBER}", "revoked")
    log = json.loads(cli(f"patient log {ELSE} -o json").stdout)
    assert [e["action"] for e in log if e["action"].startswith(("portal.", "proxy."))] == [
        "proxy.revoke", "portal.login_for", "proxy.add",
    ]  # fmt: skip


def test_a_fuldmagt_past_its_end_date(pair: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = pair
    cli(ADD)
    at(monkeypatch, datetime(2027, 6, 30, 21, 0, tzinfo=UTC))  # 23:00 on the last day
    assert "through 2027-06-30" in cli(LOGIN_FOR).stderr
    at(monkeypatch, datetime(2027, 7, 1, 8, 0, tzinfo=UTC))
    r = cli(LOGIN_FOR, expect=1)
    assert (r.stdout, r.stderr) == ("", NOT_ACTING)


def test_the_patient_cannot_use_the_proxy_the_other_way(pair: Cli) -> None:
    """A fuldmagt goes one way: Else does not act for Jens."""
    cli = pair
    cli(ADD)
    r = cli(f"portal login {ELSE} --clinic NORD --method mitid --for {SON}", expect=1)
    assert r.stderr == NOT_ACTING.replace("120345", "030370")


def test_tab_completion_of_services_and_basis() -> None:
    from patientportal_cli.cli.completion import complete_services
    from patientportal_cli.vocabulary import Basis

    assert complete_services("") == ["e-consultation", "booking", "prescription-renewal"]
    assert complete_services("b") == ["booking"]
    assert complete_services("booking,") == [
        "booking,e-consultation",
        "booking,prescription-renewal",
    ]
    assert complete_services("booking,e-consultation,p") == [
        "booking,e-consultation,prescription-renewal"
    ]
    assert [b.value for b in Basis] == ["forældremyndighed", "fuldmagt"]  # --basis choices
