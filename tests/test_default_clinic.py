"""The clinic a staff member logs in at stays theirs (issue 12.3): a second clinic does
not drop it, `login --clinic` chooses another, config's clinic is chosen at login.
Both backends, through the `patientportal` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import PASSWORD, Cli
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.memory_keyring import MemoryKeyring


def _whoami(cli: Cli, *args: str) -> tuple[str | None, list[str]]:
    who = json.loads(cli(["whoami", "-o", "json", *args]).stdout)
    return who["clinic"], who["clinics"]


def test_a_second_clinic_keeps_the_clinic_logged_in_at(
    cli: Cli,
    staff: StaffHelper,
    monkeypatch: pytest.MonkeyPatch,
    memory_keyring: MemoryKeyring,
) -> None:
    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    cli("login anna --password-stdin", input=PASSWORD + "\n")  # the keyring session
    cli("clinic create OEST --name Østklinikken")
    assert _whoami(cli) == ("NORD", ["NORD (admin)", "OEST (admin)"])
    assert json.loads(cli("clinic show -o json").stdout)["code"] == "NORD"
    assert json.loads(cli("staff list -o json").stdout)[0]["username"] == "anna"
    # --clinic on one command acts there, and the session keeps NORD
    assert json.loads(cli("clinic show -o json --clinic oest").stdout)["code"] == "OEST"
    assert _whoami(cli)[0] == "NORD"
    # choosing another: log in at it (--clinic after the command, as the README says)
    r = cli("login anna --password-stdin --clinic oest", input=PASSWORD + "\n")
    assert r.stderr == "Logged in as anna (Anna Admin). The session lasts 12 hours.\n"
    assert _whoami(cli)[0] == "OEST"
    assert json.loads(cli("clinic show -o json").stdout)["code"] == "OEST"
    r = cli("login anna --password-stdin --clinic SYD", input=PASSWORD + "\n", expect=1)
    assert r.stderr == "Error: No clinic with code 'SYD'.\n"
    assert _whoami(cli)[0] == "OEST"  # a refused login leaves the session as it was


def test_a_printed_token_keeps_its_clinic_too(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("clinic create OEST --name Østklinikken")  # staff: anna's token from --print-token
    assert _whoami(cli)[0] == "NORD"
    staff.add("bo", "doctor")
    cli("staff add bo --name Bo --role secretary --clinic OEST")
    staff.login("bo")  # at two clinics already, no default clinic: none is picked
    assert _whoami(cli) == (None, ["NORD (doctor)", "OEST (secretary)"])
    r = cli("clinic show", expect=2)
    assert r.stderr == "Error: You work at several clinics (NORD, OEST): pass --clinic CODE.\n"
    r = cli("login bo --password-stdin --print-token --clinic oest", input=PASSWORD + "\n")
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", r.stdout.strip())
    assert _whoami(cli)[0] == "OEST"
    r = cli("login anna --password-stdin --clinic OEST --print-token", input="x\n", expect=4)
    assert r.stdout == ""  # a wrong password with --clinic: the same refusal as without


def test_the_configured_clinic_is_chosen_at_login_and_kept(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    cli("clinic create OEST --name Østklinikken")
    cli("config set clinic oest")
    staff.login("anna")
    assert _whoami(cli)[0] == "OEST"
    cli("config unset clinic")  # the session keeps the clinic it was made for
    assert _whoami(cli)[0] == "OEST"
    cli("config set clinic NORD")
    assert _whoami(cli)[0] == "OEST"
    staff.login("anna")
    assert _whoami(cli)[0] == "NORD"
    monkeypatch.setenv("PATIENTPORTAL_CLINIC", "OEST")  # the global --clinic, as env
    assert _whoami(cli)[0] == "OEST"
