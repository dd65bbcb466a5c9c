"""Setting clinics, staff and patients up through the `patientportal` command."""

from __future__ import annotations

from typing import Any

from tests.helpers.cli import Cli, Staff

PW = "Patient-pass1"
CPR = "010203-1234"
NUMBER = "0102031234"


# --- clinics and staff -------------------------------------------------------------------------


def second_clinic(cli: Cli, staff: Staff, code: str = "SYD", name: str = "Sydklinikken") -> None:
    """Clinic ``code`` with its own secretary 'sara' (who works only there); anna stays
    logged in at NORD (anna also becomes admin at the new clinic, as its creator)."""
    cli(["clinic", "create", code, "--name", name])
    staff.add("sara", "secretary", name="Sara Sekretær", clinic=code)


def two_clinics(cli: Cli, staff: Staff) -> None:
    """anna (admin at NORD and SYD), bo (doctor at NORD, secretary at SYD)."""
    cli("clinic create SYD --name Sydklinikken")
    staff.add("bo", "doctor", clinic="NORD")
    cli("staff add bo --name Bo --role secretary --clinic SYD")


def set_mode(cli: Cli, mode: str, *extra: str) -> Any:
    """`clinic set-registration MODE`."""
    return cli(["clinic", "set-registration", mode, *extra])


def add_doctor(
    staff: Staff, username: str = "bo", *, login: bool = True, clinic: str | None = None
) -> None:
    staff.add(username, "doctor", name=f"Dr {username.title()}", clinic=clinic)
    if login:
        staff.login(username, clinic=clinic)


# --- patients, by the staff ----------------------------------------------------------------------


def staff_creates_patient(
    cli: Cli,
    *,
    cpr: str,
    name: str,
    email: str,
    no_mitid: bool = False,
    clinic: str = "NORD",
) -> None:
    """`patient create` (the activation mail is delivered at once)."""
    flags = " --no-mitid --confirm-email-owner" if no_mitid else ""
    cli(
        ["patient", "create", cpr, "--name", name, "--email", email, "--clinic", clinic]
        + flags.split()
    )


def set_no_mitid(cli: Cli, *, cpr: str, on: bool, clinic: str = "NORD") -> None:
    """Staff set (`no-mitid set`) or clear (`no-mitid clear`) the flag."""
    if on:
        cli(f"no-mitid set {cpr} --confirm-email-owner --clinic {clinic}")
    else:
        cli(f"no-mitid clear {cpr} --clinic {clinic}")


def unlock(cli: Cli, cpr: str, clinic: str = "NORD") -> str:
    """`patient unlock`: its message."""
    return cli(f"patient unlock {cpr} --clinic {clinic}").stderr


# --- patients, by themselves -----------------------------------------------------------------------


def register(
    cli: Cli,
    cpr: str = CPR,
    *,
    clinic: str = "NORD",
    name: str = "Jens Hansen",
    email: str = "jens@example.dk",
    services: str | None = None,
    password: str | None = PW,
    expect: int | None = 0,
    mitid: bool = False,
) -> Any:
    """`portal register`; ``mitid``: inside a MitID login (`--login mitid`), which a CPR
    number that already has a portal user needs."""
    args = ["portal", "register", cpr, "--clinic", clinic, "--name", name, "--email", email]
    if mitid:
        args += ["--login", "mitid"]
    if services is not None:
        args += ["--services", services]
    if password is not None:
        args.append("--password-stdin")
    return cli(args, input=(password + "\n") if password is not None else None, expect=expect)


def self_registers(
    cli: Cli, *, cpr: str, name: str, email: str, password: str, clinic: str = "NORD"
) -> None:
    """`portal register` at a clinic in open mode: a user with a password, no flag."""
    cli(f"clinic set-registration open --clinic {clinic}")
    r = cli(
        ["portal", "register", cpr, "--clinic", clinic, "--name", name, "--email", email]
        + ["--password-stdin"],
        input=password + "\n",
    )
    assert "linked to clinic" in r.stderr, r
