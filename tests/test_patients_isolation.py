"""Isolation between clinics (docs/rules.md D10), both backends.

Staff of clinic SYD cannot show, unlink, flag, invite, unlock or list clinic NORD's
patients. For a CPR number with a portal user but no link to SYD, they learn only that
a user exists (so they can link it), never which clinics it is linked to; the message
is the same whether the user is linked to one clinic, two, or none.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import Cli, Staff
from tests.helpers.db import db_session, events, link_of
from tests.helpers.people import second_clinic

EXISTS = (
    "Error: 010203-**** is not a patient at clinic SYD. A portal user with this CPR number "
    "exists; link it to the clinic with `patientportal patient link CPR`.\n"
)
UNKNOWN = (
    "Error: 090807-**** is not a patient at clinic SYD, and no portal user has this CPR "
    "number; create one with `patientportal patient create CPR --name NAME --email EMAIL`.\n"
)
COMMANDS = [
    "patient show {cpr}",
    "patient show {cpr} -o json",
    "patient unlink {cpr} --yes",
    "patient invite {cpr}",
    "patient unlock {cpr}",
    "no-mitid set {cpr} --confirm-email-owner",
    "no-mitid clear {cpr}",
]


def test_other_clinics_patients_are_not_visible(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli("patient create 010203-1234 --name 'Ida Hansen' --email ida@example.dk --no-invite")
    cli("no-mitid set 010203-1234 --confirm-email-owner")
    cli("clinic create OEST --name Østklinikken")
    cli("--clinic OEST patient link 010203-1234")
    second_clinic(cli, staff)
    staff.login("sara")

    def attempts() -> list[str]:
        seen = []
        for template in COMMANDS:
            r = cli(template.format(cpr="010203-1234"), expect=1)
            assert r.stdout == ""
            seen.append(r.stderr)
            r = cli(template.format(cpr="090807-1234"), expect=1)
            assert r.stderr == UNKNOWN
        return seen

    linked_to_two = attempts()
    assert set(linked_to_two) == {EXISTS}
    for text in linked_to_two:
        assert "NORD" not in text and "OEST" not in text and "Ida" not in text
        assert "ida@" not in text

    r = cli("patient list -o json")
    assert json.loads(r.stdout) == []
    r = cli("patient list --search ida -o json")
    assert json.loads(r.stdout) == []
    assert json.loads(cli("no-mitid list -o json").stdout) == []
    assert json.loads(cli("patient access 010203-1234 -o json").stdout) == {
        "mitid": {"allowed": False, "reason": "not linked here"},
        "two_factor": {"allowed": False, "reason": "not linked here"},
    }

    # the same answer when the user is linked to one clinic, or to none
    staff.login("anna")
    cli("--clinic OEST patient unlink 010203-1234 --yes")
    staff.login("sara")
    assert attempts() == linked_to_two
    staff.login("anna")
    cli("--clinic NORD patient unlink 010203-1234 --yes")
    staff.login("sara")
    assert attempts() == linked_to_two

    # sara cannot act at NORD at all
    r = cli("--clinic NORD patient show 010203-1234", expect=4)
    assert r.stderr == "Error: sara does not work at clinic NORD.\n"

    with db_session(db_url, home) as s:
        sara = [e for e in events(s) if e[3] == "sara"]
        # no change: only her logins and her look-ups, all at SYD and telling nothing of Ida
        assert [e[0] for e in sara] == [
            "staff.login",
            "patient.list",
            "patient.list",
            "no_mitid.list",
            "patient.access",
            "staff.login",
            "staff.login",
        ]
        for action, clinic, _target, _actor, details in sara[1:5]:
            assert clinic == "SYD", action
            assert "Ida" not in str(details) and "ida@" not in str(details)


def test_linking_from_the_other_clinic_then_works_on_its_own_link(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    cli("patient create 010203-1234 --name 'Ida Hansen' --email ida@example.dk --no-invite")
    cli("no-mitid set 010203-1234 --confirm-email-owner")
    second_clinic(cli, staff)
    staff.login("sara")
    r = cli("patient link 010203-1234")
    assert r.stderr == (
        "Linked the existing portal user 010203-**** (Ida Hansen) to clinic SYD "
        "(services: e-consultation, booking, prescription-renewal).\n"
    )
    shown = json.loads(cli("patient show 010203-1234 -o json").stdout)
    assert shown["clinic"] == "SYD" and shown["no_mitid"] is False  # NORD's flag is NORD's
    assert shown["linked_by"] == "sara"
    cli("patient unlink 010203-1234 --yes")
    with db_session(db_url, home) as s:
        nord = link_of(s, "0102031234", "NORD")
        assert nord is not None and nord.no_mitid is True  # untouched
        assert [e[0] for e in events(s, "patient.") if e[3] == "sara"] == [
            "patient.link",
            "patient.show",
            "patient.unlink",
        ]
