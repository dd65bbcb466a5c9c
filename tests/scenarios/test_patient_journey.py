"""A patient's journey through registration, logins and a second clinic, as one scenario
through the `patientportal` command, on SQLite and PostgreSQL.

A clinic in open mode; a patient self-registers online; two-factor login is refused with
the MitID message (R5); the clinic sets "Patienten har ikke MitID" with the e-mail
confirmation (R4, R6); two-factor login works with the security code from the e-mail;
the clinic removes the flag and two-factor login is refused until a MitID login (R7).
Then the same patient registers at a second clinic that requires a doctor's approval
(R2, R3): the approved request links the existing user, no second user (R1).

Codes are read from the mail as it was delivered (the Maildir under the home directory).
"""

from __future__ import annotations

import json
from pathlib import Path

from patientportal_cli.services import passwords
from tests.helpers.cli import Cli, Staff
from tests.helpers.db import db_session, links, users
from tests.helpers.mail import SECURITY_CODE, mail_to
from tests.helpers.people import PW, add_doctor, set_mode
from tests.helpers.portal import attempt_of

CPR = "050690-1112"
NUMBER = "0506901112"
EMAIL = "ole@example.dk"
MITID_MESSAGE = (
    "Error: Ved første login kræves verificering med MitID for at bekræfte din identitet. "
    "Kontakt klinikken, hvis du ikke har MitID.\n"
)


def subjects(home: Path) -> list[str]:
    return [s for s, _ in mail_to(home, EMAIL)]


def security_codes(home: Path) -> list[str]:
    return [
        SECURITY_CODE.findall(text)[0]
        for subject, text in mail_to(home, EMAIL)
        if "sikkerhedskode" in subject
    ]


def two_factor(cli: Cli, clinic: str = "NORD", expect: int = 0) -> str:
    r = cli(
        ["portal", "login", CPR, "--clinic", clinic, "--method", "two-factor", "--password-stdin"],
        input=PW + "\n",
        expect=expect,
    )
    return str(r.stderr)


def full_two_factor_login(cli: Cli, home: Path) -> None:
    before = len(security_codes(home))
    sent = two_factor(cli)
    assert sent.startswith("A security code was e-mailed to o***@example.dk")
    codes = security_codes(home)
    assert len(codes) == before + 1  # one new code, by e-mail
    verify = ["portal", "verify", CPR, "--clinic", "NORD", "--attempt", attempt_of(sent)]
    r = cli([*verify, "--code", codes[-1]])
    assert r.stderr == "Logged in.\n"


def test_the_seed_journey(cli: Cli, staff: Staff, db_url: str, home: Path) -> None:
    # A clinic in open mode ("Online selv-oprettelse uden læge-godkendelse")
    set_mode(cli, "open")

    # The patient self-registers online and chooses a password
    r = cli(
        ["portal", "register", CPR, "--clinic", "NORD", "--name", "Ole Berg"]
        + ["--email", EMAIL, "--password-stdin"],
        input=PW + "\n",
    )
    assert r.stderr.startswith("Portal user created and linked to clinic NORD (Nordklinikken)")
    assert subjects(home) == ["Du er nu tilknyttet Nordklinikken på Patientportalen"]

    # R5: two-factor login without the flag: the MitID message, no security code
    assert two_factor(cli, expect=1) == MITID_MESSAGE
    assert security_codes(home) == []

    # R4/R6: the patient calls; the clinic sets the flag, confirming the e-mail's owner
    cli(f"no-mitid set {CPR} --confirm-email-owner")
    assert subjects(home)[-1] == "Login uden MitID hos Nordklinikken"
    shown = json.loads(cli(f"patient show {CPR} -o json").stdout)
    assert (shown["no_mitid"], shown["origin"]) == (True, "self")
    # who confirmed that the e-mail address belongs to the patient, and which address
    assert (shown["email_owner_confirmed_by"], shown["email_owner_confirmed_email"]) == (
        "anna",
        EMAIL,
    )

    # two-factor login works: password, then the code from the e-mail
    full_two_factor_login(cli, home)

    # R7: the clinic removes the flag: two-factor is refused until a MitID login
    cli(f"no-mitid clear {CPR}")
    assert subjects(home)[-1] == "MitID kræves ved næste login hos Nordklinikken"
    codes_before = len(security_codes(home))
    assert two_factor(cli, expect=1) == MITID_MESSAGE
    assert len(security_codes(home)) == codes_before
    r = cli(f"portal login {CPR} --clinic NORD --method mitid")
    assert r.stderr == "Logged in with MitID (simulated) at clinic NORD.\n"
    full_two_factor_login(cli, home)

    # The same patient at a second clinic, which requires a doctor's approval
    cli("clinic create SYD --name Sydklinikken --registration approval")
    r = cli(  # an existing user: no password is asked, the existing one is kept
        ["portal", "register", CPR, "--clinic", "SYD", "--name", "Ole Berg", "--email", EMAIL]
        + ["--login", "mitid"]  # a CPR number with a portal user registers inside MitID
    )
    assert r.stderr.startswith(
        "Registration request 1 sent to clinic SYD (Sydklinikken) for the existing portal user"
    )
    assert subjects(home)[-1] == "Vi har modtaget din anmodning – Sydklinikken"
    add_doctor(staff, "bo", clinic="SYD")
    [row] = json.loads(cli("requests list -o json").stdout)
    assert (row["id"], row["user"], row["cpr"]) == (1, "existing", "050690-****")
    r = cli("requests approve 1")
    assert r.stderr == (
        "Request 1 approved: the existing portal user of 050690-**** linked; services: "
        "e-consultation, booking, prescription-renewal.\n"
    )
    assert subjects(home)[-1] == "Din anmodning er godkendt – Sydklinikken"

    with db_session(db_url, home) as session:
        [user] = users(session)  # one login per CPR number (R1): no second user
        assert (user.cpr, user.origin) == (NUMBER, "self")
        assert passwords.verify_password(user.password_hash, PW)  # the password is kept
        assert [c for c, _ in links(session, "NORD")] == [NUMBER]
        assert [c for c, _ in links(session, "SYD")] == [NUMBER]
    # and the patient still logs in at NORD with the same password
    full_two_factor_login(cli, home)
