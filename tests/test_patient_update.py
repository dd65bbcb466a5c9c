"""`patient update` and `patient reset-password`: staff correct what a patient registered.

Both backends, through the CLI: exact messages and exit codes, the mail as delivered to
the Maildir, the audit log, the no-MitID confirmation (flag and terminal), another
clinic's patient refused without a word about it, and the codes that end.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlmodel import col, select

from patientportal_cli.db.models import OneTimeCode
from patientportal_cli.services import throttle
from patientportal_cli.services.mail import texts
from tests.helpers.cli import Cli, Staff, terminal
from tests.helpers.db import db_session, events, link_of, users_with_cpr
from tests.helpers.mail import Inbox, body
from tests.helpers.people import second_clinic

CPR = "010203-1234"
NUMBER = "0102031234"
OLD = "ida@example.dk"
NEW = "ida.ny@eksempel.dk"
PW = "Patient-pass1"
NEW_PW = "Another-pass2"

MISSING_CONFIRMATION = (
    "Error: Missing confirmation that the e-mail address belongs to the patient or to a "
    "person with power of attorney: pass --confirm-email-owner (no terminal to ask on).\n"
)
OTHER_CLINICS = (
    "A no-MitID flag the patient may have at other clinics confirmed the old address: it is "
    "removed there until those clinics confirm the new one.\n"
)
EMAIL_UPDATED = (
    f"Updated 010203-**** at clinic NORD: e-mail {OLD} -> {NEW}.\n"
    f"Notice e-mailed to the old address {OLD}; activation and security codes sent there "
    "no longer work.\n" + OTHER_CLINICS
)
NOT_HERE = (
    "Error: 010203-**** is not a patient at clinic SYD. A portal user with this CPR number "
    "exists; link it to the clinic with `patientportal patient link CPR`.\n"
)
RESET = (
    "Password reset for 010203-**** (Ida Hansen): the old password no longer works; open "
    "activation and security codes are ended and any lock is lifted.\n"
    f"New activation code e-mailed to {OLD} (valid 7 days).\n"
)


def _ida(cli: Cli, *, no_mitid: bool = False, invite: bool = True) -> None:
    args = f"patient create {CPR} --name 'Ida Hansen' --email {OLD}"
    if no_mitid:
        args += " --no-mitid --confirm-email-owner"
    if not invite:
        args += " --no-invite"
    cli(args)


def _activation_code(inbox: Inbox, to: str = OLD) -> str:
    """The code of the one activation mail to ``to`` among the mail delivered since the
    last read (a no-MitID notice may have come with it)."""
    mails = [(subject, body) for subject, body in inbox.new_to(to) if "aktiveringskode" in subject]
    assert len(mails) == 1, mails
    [code] = set(re.findall(r"^\s+([A-Z0-9]{4}(?:-[A-Z0-9]{4}){3})\s*$", mails[0][1], re.M))
    return str(code)


def _activate(cli: Cli, code: str, password: str = PW, expect: int = 0) -> str:
    r = cli(
        f"portal activate {CPR} --clinic NORD --code {code} --password-stdin",
        input=password + "\n",
        expect=expect,
    )
    return r.stderr


def _login(cli: Cli, password: str = PW, expect: int = 0) -> str | None:
    """Step one of a two-factor login; the attempt id printed (None when refused)."""
    r = cli(
        f"portal login {CPR} --clinic NORD --method two-factor --password-stdin",
        input=password + "\n",
        expect=expect,
    )
    if expect != 0:
        return None
    found = re.search(r"--attempt (\S+)", r.stderr)
    return found.group(1) if found else ""


def _verify(cli: Cli, code: str, attempt: str | None, expect: int = 0) -> str:
    args = f"portal verify {CPR} --clinic NORD --code {code}"
    if attempt:
        args += f" --attempt {attempt}"
    r = cli(args, expect=expect)
    return r.stderr


def _open_codes(db_url: str, home: Path) -> list[OneTimeCode]:
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, NUMBER)
        return list(
            s.exec(
                select(OneTimeCode).where(
                    OneTimeCode.user_id == user.id, col(OneTimeCode.used_at).is_(None)
                )
            )
        )


# --- update: input ----------------------------------------------------------------------


def test_update_needs_a_valid_name_or_email(cli: Cli, staff: Staff) -> None:
    _ida(cli, invite=False)
    r = cli(f"patient update {CPR}", expect=2)
    assert r.stderr == "Error: Nothing to update: give --name and/or --email.\n"
    r = cli(f"patient update {CPR} --email not-an-address", expect=2)
    assert r.stderr.startswith("Error: Invalid e-mail address 'not-an-address': ")
    r = cli(["patient", "update", CPR, "--name", "Ida\x1b[31m"], expect=2)
    assert (
        r.stderr
        == "Error: Invalid name 'Ida\\x1b[31m': it contains the control character U+001B.\n"
    )
    r = cli("patient update 010203-12 --name Ida", expect=2)
    assert r.stderr.startswith("Error: ")
    r = cli(f"patient update {CPR} --name '  Ida   Hansen ' --email IDA@EXAMPLE.DK")
    assert (
        r.stderr == "010203-**** (Ida Hansen) already has that name and e-mail; nothing changed.\n"
    )


# --- update: the e-mail ---------------------------------------------------------------------


def test_update_email_vouches_ends_old_codes_and_notifies_the_old_address(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    inbox = Inbox(home)
    _ida(cli)
    old_code = inbox.activation_code(OLD, alone=True)
    with db_session(db_url, home) as s:
        [before] = users_with_cpr(s, NUMBER)
    r = cli(f"patient update {CPR} --email {NEW}")
    assert r.stdout == ""
    assert r.stderr == EMAIL_UPDATED + (
        "The patient has not chosen a password yet: send an activation code to the new "
        "address with `patientportal patient invite CPR`.\n"
    )
    [(subject, body)] = inbox.new_to(OLD)
    assert subject == "Din e-mailadresse på Patientportalen er ændret"
    assert body == (
        "Kære Ida Hansen\n\n"
        "Nordklinikken har ændret e-mailadressen på din bruger på Patientportalen til "
        "i***@eksempel.dk. Beskeder og sikkerhedskoder fra Patientportalen sendes fremover "
        "dertil, og ikke længere til denne adresse.\n\n"
        "Aktiverings- og sikkerhedskoder, der er sendt til denne adresse, virker ikke "
        "længere.\n\n"
        "Hvis du ikke kender til denne ændring, bedes du straks kontakte klinikken.\n\n"
        "Venlig hilsen\nNordklinikken\n"
    )
    assert NEW not in body and NUMBER not in body
    assert inbox.new() == []  # nothing to the new address
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, NUMBER)
        assert user.email == NEW
        assert user.credentials_vouched_at is not None
        assert before.credentials_vouched_at is not None
        assert user.credentials_vouched_at > before.credentials_vouched_at
        link = link_of(s, NUMBER, "NORD")
        assert link is not None and link.record_email == NEW
        [event] = events(s, "patient.update")
        action, clinic, target, actor, details = event
        assert (action, clinic, target, actor) == (
            "patient.update",
            "NORD",
            f"cpr:{NUMBER}",
            "anna",
        )
        assert details["fields"] == ["email"]
        assert details["email"] == {"old": OLD, "new": NEW}
        assert "email_owner_confirmed" not in details
    assert _open_codes(db_url, home) == []
    # the code mailed to the old address no longer works; one sent to the new one does
    assert _activate(cli, old_code, expect=1).startswith("Error: ")
    cli(f"patient invite {CPR}")
    new_code = inbox.activation_code(NEW, alone=True)
    assert _activate(cli, new_code).startswith("Password set for 010203-****")
    shown = json.loads(cli(f"patient show {CPR} -o json").stdout)
    assert (shown["email"], shown["record_email"]) == (NEW, NEW)


def test_update_name_only_sends_no_mail(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    _ida(cli, invite=False)
    r = cli(f"patient update {CPR} --name 'Ida Jensen'")
    assert r.stderr == "Updated 010203-**** at clinic NORD: name Ida Hansen -> Ida Jensen.\n"
    assert Inbox(home).new() == []
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, NUMBER)
        assert (user.name, user.email) == ("Ida Jensen", OLD)
        [(_, _, _, _, details)] = events(s, "patient.update")
        assert details == {"fields": ["name"], "name": {"old": "Ida Hansen", "new": "Ida Jensen"}}


def test_update_both_greets_the_old_address_with_the_old_name(
    cli: Cli, staff: Staff, home: Path
) -> None:
    _ida(cli, invite=False)
    r = cli(f"patient update {CPR} --name 'Ida Jensen' --email {NEW}")
    assert r.stderr.splitlines()[0] == (
        f"Updated 010203-**** at clinic NORD: e-mail {OLD} -> {NEW}; name Ida Hansen -> Ida Jensen."
    )
    [(_, body)] = Inbox(home).new_to(OLD)
    assert body.startswith("Kære Ida Hansen\n") and "Jensen" not in body


def test_update_dry_run_changes_nothing(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    _ida(cli, no_mitid=True, invite=False)
    inbox = Inbox(home)
    inbox.new()
    r = cli(f"patient update {CPR} --email {NEW} --dry-run")
    assert r.stderr == (
        f"Dry run: would have updated 010203-**** at clinic NORD: e-mail {OLD} -> {NEW}.\n"
        "The no-MitID flag is set at clinic NORD: the change needs --confirm-email-owner "
        "(asked on a terminal).\n"
        f"Would e-mail a notice to the old address {OLD}; codes sent there would stop working.\n"
        "A no-MitID flag the patient may have at other clinics confirmed the old address: it "
        "would be removed there until those clinics confirm the new one.\n"
        "Nothing was changed.\n"
    )
    assert inbox.new() == []
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, NUMBER)
        assert user.email == OLD
        assert events(s, "patient.update") == []
        assert events(s, "patient.dry_run")[-1][4] == {"command": "update", "fields": ["email"]}


# --- the no-MitID flag ------------------------------------------------------------------------


def test_flag_here_needs_the_confirmation_for_the_new_address(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    _ida(cli, no_mitid=True, invite=False)
    r = cli(f"patient update {CPR} --email {NEW}", expect=2)
    assert (r.stdout, r.stderr) == ("", MISSING_CONFIRMATION)
    with db_session(db_url, home) as s:
        assert users_with_cpr(s, NUMBER)[0].email == OLD
        assert events(s, "patient.update") == []
    # a name alone needs no confirmation
    cli(f"patient update {CPR} --name 'Ida Jensen'")
    r = cli(f"patient update {CPR} --email {NEW} --confirm-email-owner")
    assert r.stderr == (
        f"Updated 010203-**** at clinic NORD: e-mail {OLD} -> {NEW}.\n"
        f"Recorded: anna confirmed that {NEW} belongs to the patient or to a person with "
        "power of attorney.\n"
        f"Notice e-mailed to the old address {OLD}; activation and security codes sent there "
        "no longer work.\n" + OTHER_CLINICS + "The patient has not chosen a password yet: send "
        "an activation code to the new address with `patientportal patient invite CPR`.\n"
    )
    with db_session(db_url, home) as s:
        link = link_of(s, NUMBER, "NORD")
        assert link is not None and link.no_mitid is True
        assert link.email_owner_confirmed_email == NEW
        assert link.email_owner_confirmed_by == "anna"
        assert link.email_owner_confirmed_at is not None
        details = events(s, "patient.update")[-1][4]
        assert details["email_owner_confirmed"]["email"] == NEW
        assert details["email_owner_confirmed"]["by"] == "anna"
        assert "power of attorney (fuldmagt)" in details["email_owner_confirmed"]["confirmed"]


def test_flag_here_is_confirmed_on_a_terminal(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    _ida(cli, no_mitid=True, invite=False)
    question = (
        f"The no-MitID flag is set at clinic NORD: security codes will go to the new address "
        f"{NEW}.\n"
    )
    with terminal("n"):
        r = cli(f"patient update {CPR} --email {NEW}", expect=1)
    assert r.stderr == question + (
        "Error: Not confirmed: the no-MitID flag here needs it for the new address. Nothing "
        "changed.\n"
    )
    with db_session(db_url, home) as s:
        assert users_with_cpr(s, NUMBER)[0].email == OLD
    with terminal("y"):
        r = cli(f"patient update {CPR} --email {NEW}")
    assert r.stderr.startswith(question + f"Updated 010203-**** at clinic NORD: e-mail {OLD}")
    assert f"Recorded: anna confirmed that {NEW} belongs to the patient" in r.stderr
    with db_session(db_url, home) as s:
        link = link_of(s, NUMBER, "NORD")
        assert link is not None and link.email_owner_confirmed_email == NEW


def test_flag_at_another_clinic_is_removed_there_and_told_to_nobody_here(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    """SYD confirmed the old address for its no-MitID flag; that confirmation does not
    cover the address NORD enters, so SYD's flag goes (MitID required there) until SYD
    confirms the new one. NORD's output is the same as without such a flag."""
    _ida(cli, invite=False)
    second_clinic(cli, staff)
    cli(f"patient link {CPR} --no-mitid --confirm-email-owner --clinic SYD")
    r = cli(f"patient update {CPR} --email {NEW} --clinic NORD")
    assert r.stderr == EMAIL_UPDATED + (
        "The patient has not chosen a password yet: send an activation code to the new "
        "address with `patientportal patient invite CPR`.\n"
    )
    assert "SYD" not in r.stderr and "Syd" not in r.stderr
    with db_session(db_url, home) as s:
        syd = link_of(s, NUMBER, "SYD")
        assert syd is not None
        assert syd.no_mitid is False
        assert syd.mitid_required_after is not None
        assert syd.no_mitid_changed_by == "patientportal"
        assert syd.email_owner_confirmed_email is None
        nord_events = [e for e in events(s) if e[1] == "NORD"]
        assert all("SYD" not in json.dumps(e) for e in nord_events)
        [clear] = [e for e in events(s, "no_mitid.clear") if e[1] == "SYD"]
        assert clear[3] == "patientportal"  # not the NORD staff member's username
        assert clear[4]["reason"] == "email_changed"
        assert clear[4]["previous"]["email_owner_confirmed_email"] == OLD
    access = json.loads(cli(f"patient access {CPR} -o json --clinic SYD").stdout)
    assert access["two_factor"]["allowed"] is False
    assert "no-MitID flag or a MitID verification" in access["two_factor"]["reason"]
    # SYD confirms the new address: its flag is back, for the address it saw
    r = cli(f"no-mitid set {CPR} --confirm-email-owner --clinic SYD")
    assert f"Recorded: anna confirmed that {NEW}" in r.stderr
    with db_session(db_url, home) as s:
        syd = link_of(s, NUMBER, "SYD")
        assert syd is not None and syd.no_mitid and syd.email_owner_confirmed_email == NEW


def test_flag_here_and_elsewhere_keeps_this_clinics_flag(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    _ida(cli, no_mitid=True, invite=False)
    second_clinic(cli, staff)
    cli(f"patient link {CPR} --no-mitid --confirm-email-owner --clinic SYD")
    cli(f"patient update {CPR} --email {NEW} --confirm-email-owner --clinic NORD")
    with db_session(db_url, home) as s:
        nord, syd = link_of(s, NUMBER, "NORD"), link_of(s, NUMBER, "SYD")
        assert nord is not None and syd is not None
        assert (nord.no_mitid, nord.email_owner_confirmed_email) == (True, NEW)
        assert (syd.no_mitid, syd.email_owner_confirmed_email) == (False, None)


def test_flagged_patient_logs_in_with_codes_to_the_new_address(
    cli: Cli, staff: Staff, home: Path
) -> None:
    inbox = Inbox(home)
    _ida(cli, no_mitid=True)
    _activate(cli, _activation_code(inbox))
    inbox.new()
    cli(f"patient update {CPR} --email {NEW} --confirm-email-owner")
    inbox.new()
    attempt = _login(cli)
    [mail] = inbox.new()  # one mail, to the new address only
    assert str(mail["To"]) == NEW
    [code] = re.findall(r"^\s+([0-9]{6})\s*$", body(mail), re.M)
    assert _verify(cli, code, attempt) == "Logged in.\n"


def test_a_pending_security_code_ends_with_the_email_change(
    cli: Cli, staff: Staff, home: Path
) -> None:
    inbox = Inbox(home)
    _ida(cli, no_mitid=True)
    _activate(cli, _activation_code(inbox))
    attempt = _login(cli)
    code = inbox.security_code(OLD, alone=True)
    cli(f"patient update {CPR} --email {NEW} --confirm-email-owner")
    assert "Logged in" not in _verify(cli, code, attempt, expect=1)


# --- another clinic's patient ---------------------------------------------------------------


def test_another_clinics_patient_is_refused_without_a_word_about_it(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    _ida(cli, no_mitid=True, invite=False)
    second_clinic(cli, staff)
    staff.login("sara")
    inbox = Inbox(home)
    inbox.new()
    for args in (
        f"patient update {CPR} --email x@evil.example",
        f"patient update {CPR} --email x@evil.example --dry-run",
        f"patient update {CPR} --name Mallory",
        f"patient reset-password {CPR} --yes",
        f"patient reset-password {CPR} --dry-run",
    ):
        r = cli(args, expect=1)
        assert (r.stdout, r.stderr) == ("", NOT_HERE), args
        for secret in ("Ida", "Hansen", OLD, "NORD", "no-MitID", "confirm"):
            assert secret not in r.stderr
    with terminal("y"):
        r = cli(f"patient reset-password {CPR}", expect=1)
    assert r.stderr == NOT_HERE
    r = cli("patient update 311299-9999 --name X", expect=1)
    assert r.stderr == (
        "Error: 311299-**** is not a patient at clinic SYD, and no portal user has this CPR "
        "number; create one with `patientportal patient create CPR --name NAME --email EMAIL`.\n"
    )
    assert inbox.new() == []
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, NUMBER)
        assert (user.name, user.email) == ("Ida Hansen", OLD)
        assert [e for e in events(s) if e[1] == "SYD" and e[0].startswith("patient.")] == []


# --- reset-password ---------------------------------------------------------------------------


def test_reset_password_ends_the_old_activation_code(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    inbox = Inbox(home)
    _ida(cli)
    old_code = inbox.activation_code(OLD, alone=True)
    r = cli(f"patient reset-password {CPR} --yes")
    assert r.stderr == (
        "Password reset for 010203-**** (Ida Hansen): no password had been chosen yet; open "
        "activation and security codes are ended and any lock is lifted.\n"
        f"New activation code e-mailed to {OLD} (valid 7 days).\n"
    )
    [(subject, body)] = [m for m in inbox.new_to(OLD)]
    assert subject == "Din adgangskode til Patientportalen er nulstillet – aktiveringskode"
    assert body.startswith(
        "Kære Ida Hansen\n\nNordklinikken har nulstillet din adgangskode til Patientportalen. "
        "Din hidtidige adgangskode virker ikke længere.\n\n"
    )
    assert "kender til denne nulstilling" in body and NUMBER not in body
    new_code = re.findall(r"^\s+([A-Z0-9]{4}(?:-[A-Z0-9]{4}){3})\s*$", body, re.M)[0]
    assert _activate(cli, old_code, expect=1).startswith("Error: ")
    assert _activate(cli, new_code).startswith("Password set for 010203-****")


def test_reset_password_of_an_activated_patient(
    cli: Cli, staff: Staff, db_url: str, home: Path
) -> None:
    inbox = Inbox(home)
    _ida(cli, no_mitid=True)
    _activate(cli, _activation_code(inbox))
    attempt = _login(cli)
    pending = inbox.security_code(OLD, alone=True)
    with db_session(db_url, home) as s:
        vouched = users_with_cpr(s, NUMBER)[0].credentials_vouched_at
    assert vouched is not None
    r = cli(f"patient reset-password {CPR} --yes")
    assert (r.stdout, r.stderr) == ("", RESET)
    new_code = inbox.activation_code(OLD, alone=True)
    assert _open_codes(db_url, home)[0].purpose == "activation"  # the new one only
    # the pending security code and the old password no longer work
    assert "Logged in" not in _verify(cli, pending, attempt, expect=1)
    _login(cli, expect=1)
    assert inbox.new() == []
    with db_session(db_url, home) as s:
        [user] = users_with_cpr(s, NUMBER)
        assert user.password_hash is None
        assert user.credentials_vouched_at == vouched  # the code went to the same address
        [event] = events(s, "patient.reset_password")
        assert event[:4] == ("patient.reset_password", "NORD", f"cpr:{NUMBER}", "anna")
        assert event[4]["email"] == OLD and event[4]["had_password"] is True
    # the patient chooses a new password with the new code and logs in with it
    _activate(cli, new_code, password=NEW_PW)
    attempt = _login(cli, password=NEW_PW)
    assert _verify(cli, inbox.security_code(OLD, alone=True), attempt) == "Logged in.\n"


def test_reset_password_lifts_the_lock(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    inbox = Inbox(home)
    _ida(cli, no_mitid=True)
    _activate(cli, _activation_code(inbox))
    for _ in range(5):
        _login(cli, password="Wrong-pass1", expect=1)
    with db_session(db_url, home) as s:
        locked = throttle.locked_until(s, kind=throttle.PATIENT, name=NUMBER)
        [user] = users_with_cpr(s, NUMBER)
        assert locked is not None or user.locked_until is not None
    cli(f"patient reset-password {CPR} --yes")
    with db_session(db_url, home) as s:
        assert throttle.locked_until(s, kind=throttle.PATIENT, name=NUMBER) is None
        assert throttle.failures(s, kind=throttle.PATIENT, name=NUMBER) == 0
        [user] = users_with_cpr(s, NUMBER)
        assert (user.failed_logins, user.locked_until) == (0, None)
    shown = json.loads(cli(f"patient show {CPR} -o json").stdout)
    assert shown["locked_until"] is None


def test_reset_password_asks_first(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    inbox = Inbox(home)
    _ida(cli, invite=False)
    r = cli(f"patient reset-password {CPR}", expect=2)
    assert (r.stdout, r.stderr) == (
        "",
        "Error: Missing confirmation: pass --yes (no terminal to ask on).\n",
    )
    with terminal("n"):
        r = cli(f"patient reset-password {CPR}", expect=1)
    assert r.stderr == "Error: Not reset; nothing changed.\n"
    assert inbox.new() == []
    with db_session(db_url, home) as s:
        assert events(s, "patient.reset_password") == []
    with terminal("y"):
        r = cli(f"patient reset-password {CPR}")
    assert r.stderr.endswith(f"New activation code e-mailed to {OLD} (valid 7 days).\n")
    assert inbox.activation_code(OLD, alone=True)


def test_reset_password_dry_run(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    inbox = Inbox(home)
    _ida(cli)
    code = inbox.activation_code(OLD, alone=True)
    r = cli(f"patient reset-password {CPR} --dry-run")
    assert r.stderr == (
        "Dry run: would have reset the password of 010203-**** (Ida Hansen): open activation "
        "and security codes would end and any lock would be lifted.\n"
        f"Would e-mail a new activation code to {OLD} (valid 7 days).\n"
        "Nothing was changed.\n"
    )
    assert inbox.new() == []
    with db_session(db_url, home) as s:
        assert events(s, "patient.reset_password") == []
        assert events(s, "patient.dry_run")[-1][4] == {"command": "reset-password"}
    _activate(cli, code)  # the code from before still works


# --- the texts ------------------------------------------------------------------------------


def test_activation_text_keeps_its_old_arguments() -> None:
    args = {"name": "Ida", "clinic_name": "Nordklinikken", "valid_days": 7, "clinic_code": "NORD"}
    subject, body = texts.render("activation", args, "ABCD-EFGH-JKLM-NPQR")
    assert subject == "Din bruger på Patientportalen – aktiveringskode"
    assert "har oprettet dig som bruger" in body and "nulstil" not in body
    subject, body = texts.render("activation", {**args, "reset": True}, "ABCD-EFGH-JKLM-NPQR")
    assert subject == "Din adgangskode til Patientportalen er nulstillet – aktiveringskode"
    assert "ABCD-EFGH-JKLM-NPQR" in body and "oprettet" not in body


@pytest.mark.parametrize("command", ["update", "reset-password"])
def test_help_describes_the_commands(cli: Cli, command: str) -> None:
    r = cli(f"patient {command} --help")
    assert "--dry-run" in r.stdout
    assert ("--confirm-email-owner" if command == "update" else "--yes") in r.stdout
