"""`patient invite CPR --letter FILE` (D45): a Danish letter with the clinic's name, the
activation code, its expiry and the steps; no CPR number; 0600; audited without the
code; it replaces the e-mail. Both backends, through the command."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.helpers.cli import Cli
from tests.helpers.cli import Staff as StaffHelper
from tests.helpers.db import rows, scalar
from tests.helpers.people import CPR, NUMBER, staff_creates_patient

CODE = re.compile(r"^    ([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})$", re.MULTILINE)


def test_the_letter(cli: Cli, staff: StaffHelper, db_url: str, home: Path, tmp_path: Path) -> None:
    cli(f"patient create {CPR} --name 'Karen Holm' --email karen@example.dk --no-invite")
    letter = tmp_path / "brev.txt"
    r = cli(["patient", "invite", CPR, "--letter", str(letter)])
    assert r.stderr.startswith(
        f"Wrote an activation letter for 010203-**** (Karen Holm) to {letter} (0600): print "
        "it and delete the file. Its code expires "
    )
    assert r.stderr.endswith(" UTC; an older code no longer works, and no e-mail is sent.\n")
    assert oct(letter.stat().st_mode & 0o777) == "0o600"
    text = letter.read_text(encoding="utf-8")
    assert text.startswith("Nordklinikken\n\n")
    assert "Kære Karen Holm\n" in text
    assert "Din bruger på Patientportalen – aktiveringskode" in text
    assert "Koden kan bruges én gang og udløber " in text
    assert "  2. Indtast dit CPR-nummer og aktiveringskoden ovenfor.\n" in text
    assert text.endswith("Venlig hilsen\nNordklinikken\n")
    assert NUMBER not in text and "010203" not in text
    code = CODE.findall(text)
    assert len(code) == 1
    # stored only hashed; no e-mail queued
    assert code[0] not in json.dumps(rows(db_url, home, "SELECT * FROM one_time_code"), default=str)
    assert scalar(db_url, home, "SELECT count(*) FROM outbox") == 0
    # audited: a letter was written, never the code
    event = rows(
        db_url, home, "SELECT target, details FROM audit_event WHERE action = 'patient.letter'"
    )
    assert len(event) == 1 and event[0][0] == f"cpr:{NUMBER}"
    assert '"letter": "written"' in event[0][1] and code[0] not in event[0][1]
    # the code works
    r = cli(
        ["portal", "activate", CPR, "--clinic", "NORD", "--code", code[0], "--password-stdin"],
        input="Patient-pass1\n",
    )
    assert r.exit_code == 0


def test_the_letter_replaces_a_queued_email_and_older_codes(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path, tmp_path: Path
) -> None:
    staff_creates_patient(cli, cpr=CPR, name="Karen Holm", email="karen@example.dk")
    first = tmp_path / "1.txt"
    second = tmp_path / "2.txt"
    cli(["patient", "invite", CPR, "--letter", str(first)])
    cli(["patient", "invite", CPR, "--letter", str(second)])
    old_code = CODE.findall(first.read_text(encoding="utf-8"))[0]
    new_code = CODE.findall(second.read_text(encoding="utf-8"))[0]
    r = cli(
        ["portal", "activate", CPR, "--clinic", "NORD", "--code", old_code, "--password-stdin"],
        input="Patient-pass1\n",
        expect=None,
    )
    assert r.exit_code == 1
    cli(
        ["portal", "activate", CPR, "--clinic", "NORD", "--code", new_code, "--password-stdin"],
        input="Patient-pass1\n",
    )


def test_refusals_write_no_letter(
    cli: Cli, staff: StaffHelper, db_url: str, home: Path, tmp_path: Path
) -> None:
    letter = tmp_path / "brev.txt"
    r = cli(["patient", "invite", CPR, "--letter", str(letter)], expect=1)
    assert r.stderr.startswith("Error: ")
    staff_creates_patient(cli, cpr=CPR, name="Karen Holm", email="karen@example.dk")
    codes_before = scalar(db_url, home, "SELECT count(*) FROM one_time_code")
    # a letter that cannot be written leaves no code and no event
    r = cli(["patient", "invite", CPR, "--letter", str(tmp_path / "no" / "dir.txt")], expect=1)
    assert r.stderr.startswith("Error: ")
    assert scalar(db_url, home, "SELECT count(*) FROM one_time_code") == codes_before
    assert (
        scalar(db_url, home, "SELECT count(*) FROM audit_event WHERE action = 'patient.letter'")
        == 0
    )
    assert not letter.exists()
