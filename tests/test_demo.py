"""`patientportal demo`: builds a working demo in its own directory, logs in the doctor,
prints the tour; never touches a directory that is not a demo's."""

from __future__ import annotations

import json
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from tests.helpers.cli import Cli


def test_demo_builds_logs_in_and_tours(cli: Cli, home: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("PATIENTPORTAL_DB_URL", "postgresql+psycopg://nobody@127.0.0.1:1/x")
    r = cli("demo")
    assert r.stderr.startswith(f"Building the demo in {home} ...\n")
    assert "Imported 18 patients from the sample file; 23 e-mails delivered" in r.stderr
    assert "You are logged in as lars, doctor at NORD (the session is in your keyring)." in r.stdout
    assert f"  export PATIENTPORTAL_HOME={home}\n" in r.stdout
    assert "PATIENTPORTAL_TOKEN" not in r.stdout
    assert (home / "patientportal.db").exists()  # embedded SQLite, whatever --db says
    monkeypatch.delenv("PATIENTPORTAL_DB_URL")

    me = json.loads(cli("whoami -o json").stdout)
    assert (me["username"], me["role"], me["clinic"]) == ("lars", "doctor", "NORD")
    patients = json.loads(cli("patient list -o json").stdout)
    assert len(patients) == 18
    assert {p["name"] for p in patients} >= {"Søren Ærenlund", "Åse Østergaard", "Mette Læsø"}
    flagged = json.loads(cli("no-mitid list -o json").stdout)
    assert [p["name"] for p in flagged] == ["Åse Østergaard"]
    pending = json.loads(cli("requests list -o json").stdout)
    assert len(pending) == 3 and {p["status"] for p in pending} == {"pending"}
    clinics = {c["code"]: c for c in json.loads(cli("clinic list -o json").stdout)}
    assert clinics["NORD"]["registration_mode"] == "approval"
    assert "The audit log is intact" in cli("audit verify").stderr
    again = cli(["patient", "import", r.stdout.split("patient import ")[1].split()[0], "--dry-run"])
    assert "already linked (nothing to do)        18" in again.stderr

    # again: rebuilt from scratch, the same demo
    cli("demo")
    assert len(json.loads(cli("patient list -o json").stdout)) == 18


def test_demo_refuses_a_directory_that_is_not_a_demo(cli: Cli, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "patientportal.db").write_bytes(b"precious")
    r = cli(["demo", "--home", str(real)], expect=1)
    assert r.stderr == (
        f"Error: {real} is not empty and is not a demo directory; the demo never overwrites "
        "a real installation. Choose another: patientportal demo --home DIR\n"
    )
    assert (real / "patientportal.db").read_bytes() == b"precious"
    assert sorted(p.name for p in real.iterdir()) == ["patientportal.db"]


def test_demo_without_keyring_prints_the_token_line(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring.set_keyring(fail.Keyring())
    target = tmp_path / "demo"
    r = cli(["demo", "--home", str(target)])
    assert "You are logged in as lars, doctor at NORD.\n" in r.stdout
    [line] = [x for x in r.stdout.splitlines() if "PATIENTPORTAL_TOKEN=" in x]
    token = line.split("=", 1)[1]
    monkeypatch.setenv("PATIENTPORTAL_HOME", str(target))
    monkeypatch.setenv("PATIENTPORTAL_TOKEN", token)
    assert json.loads(cli("whoami -o json").stdout)["username"] == "lars"
