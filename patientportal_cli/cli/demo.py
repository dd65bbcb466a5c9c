"""demo: a self-contained demo on the embedded SQLite database, and a guided tour."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from patientportal_cli.cli.common import STATE, out

if TYPE_CHECKING:
    from sqlmodel import Session

    from patientportal_cli.output import Output
    from patientportal_cli.services.auth import Actor

MARKER = ".patientportal-demo"
PASSWORD = "Demo-pass1"  # every demo account's password (staff and patients)
# (username, full name, role, clinic)
STAFF = [
    ("lars", "Lars Læge", "doctor", "NORD"),
    ("sofie", "Sofie Sekretær", "secretary", "NORD"),
    ("mads", "Mads Mørk", "doctor", "SYD"),
]
# self-registrations waiting for a doctor at NORD (approval mode)
PENDING = [
    ("190988-1234", "Rasmus Lykkegård", "rasmus.lykkegaard@example.dk", "e-consultation"),
    ("200399-2345", "Signe Ågesen", "signe.aagesen@example.dk", "booking"),
    ("211110-4456", "Viggo Hønsgaard", "viggo.hoensgaard@example.dk", None),
]
# self-registered at SYD (open mode): a user at once
OPEN = [("220901-4567", "Tove Ærtebjerg", "tove.aertebjerg@example.dk")]


def demo_home() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("patientportal-demo", appauthor=False))


def sample_csv() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "sample_patients.csv"


def demo(
    home_dir: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Directory for the demo (default: the global --home / PATIENTPORTAL_HOME, "
            "else a patientportal-demo directory next to the normal one).",
        ),
    ] = None,
) -> None:
    """Build a self-contained demo: two clinics in different registration modes, staff
    with each role, patients imported from a sample CSV (one without MitID), pending
    self-registrations; log in as the demo doctor and print a short tour.

    Uses the embedded SQLite database in the demo directory only. Running it again
    rebuilds the demo; a directory that is not a demo's is never touched.
    """
    from patientportal_cli.errors import Refused

    home = (home_dir or STATE.home or demo_home()).expanduser().resolve()
    marker = home / MARKER
    if home.exists() and any(home.iterdir()) and not marker.exists():
        raise Refused(
            f"{home} is not empty and is not a demo directory; the demo never overwrites "
            "a real installation. Choose another: patientportal demo --home DIR"
        )
    output = out()
    _reset(home)
    from patientportal_cli import files

    files.private_dir(home)
    files.write_private(
        marker, "This directory holds a patientportal demo; `demo` may rebuild it.\n"
    )
    from patientportal_cli.db.engine import default_url

    STATE.home = home
    STATE.db_url = default_url(home)  # the demo's embedded database, whatever --db says
    STATE.clinic = None
    output.message(f"Building the demo in {home} ...")
    token = _build(output, home)
    _tour(output, home, token)


def _reset(home: Path) -> None:
    """Remove a previous demo's database and mail (only in a marked demo directory)."""
    import shutil

    from patientportal_cli.db.engine import DB_FILENAME, dispose_all

    dispose_all()
    for suffix in ("", "-wal", "-shm", "-journal"):
        (home / (DB_FILENAME + suffix)).unlink(missing_ok=True)
    shutil.rmtree(home / "maildir", ignore_errors=True)


def _build(output: Output, home: Path) -> str | None:
    """Everything through the services, as the commands would do it. Returns the doctor's
    token when there is no keyring to keep the session in (else None)."""
    from patientportal_cli import keystore
    from patientportal_cli.cli.common import database
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.db import migrate
    from patientportal_cli.services import auth

    with database(migrate=False) as session:
        migrate.upgrade(session.get_bind())  # type: ignore[arg-type]
        _clinics_and_staff(session)
        imported = _import(session, _actor(session, "sofie", "NORD"))
        _self_registrations(session)
        token, _ = auth.login(session, username="lars", password=PASSWORD, clinic_code="NORD")
    sent, _failed = send_queued(output, clinic=None, quiet=True)
    output.message(
        f"Imported {imported} patients from the sample file; {sent} e-mails delivered to "
        f"{home / 'maildir'}."
    )
    if keystore.available():
        keystore.set("session", home, token)
        return None
    return token


def _clinics_and_staff(session: Session) -> None:
    """NORD (approval mode, anna its admin) and SYD (open mode), and the STAFF."""
    from patientportal_cli.services import clinics, staff

    staff.init(
        session,
        clinic_code="NORD",
        clinic_name="Nordklinikken",
        admin="anna",
        admin_name="Anna Andersen",
        password=PASSWORD,
    )
    anna = _actor(session, "anna", "NORD")
    clinics.set_registration(session, actor=anna, mode="approval")
    clinics.create(session, actor=anna, code="SYD", name="Sydklinikken", mode="open")
    for username, name, role, clinic in STAFF:
        staff.add(
            session,
            actor=_actor(session, "anna", clinic),
            username=username,
            full_name=name,
            role=role,
            password=PASSWORD,
        )


def _self_registrations(session: Session) -> None:
    """The PENDING requests at NORD and the OPEN registrations at SYD."""
    from patientportal_cli.services import registration

    for cpr, name, email, services in PENDING:
        registration.register(
            session,
            clinic_code="NORD",
            cpr=cpr,
            name=name,
            email=email,
            services=services,
            password=lambda: PASSWORD,
        )
    for cpr, name, email in OPEN:
        registration.register(
            session,
            clinic_code="SYD",
            cpr=cpr,
            name=name,
            email=email,
            password=lambda: PASSWORD,
        )


def _actor(session: Session, username: str, clinic: str) -> Actor:
    """A staff member acting at a clinic, as after their login (no session row needed)."""
    from patientportal_cli.services import auth

    token, _ = auth.login(session, username=username, password=PASSWORD, clinic_code=clinic)
    return auth.resolve(session, token=token, clinic_code=clinic)


def _import(session: Session, actor: Actor) -> int:
    from patientportal_cli.services.importing import apply, plan
    from patientportal_cli.services.importing.reader import open_import

    clinic_id, _ = actor.require_clinic()
    ctx = plan.context(
        session,
        clinic_id=clinic_id,
        actor=actor.username,
        confirm_email_owner=True,  # the demo's flagged patient: the clinic checked the address
        invite=True,
        source=sample_csv().name,
    )
    from patientportal_cli import files
    from patientportal_cli.cli.common import home

    with (
        files.spool(home()) as spool_dir,
        plan.make_plan(
            session, source=open_import(str(sample_csv())), ctx=ctx, spool_dir=spool_dir
        ) as checked,
    ):
        done = apply.apply_plan(session, checked)
    return done.created + done.linked


def _tour(output: Output, home: Path, token: str | None) -> None:
    sample = sample_csv()
    lines = [
        "",
        "The demo is ready (fictitious people; every password is " + PASSWORD + "):",
        "  NORD Nordklinikken  registration: approval (læge-godkendelse); staff: anna "
        "(admin), lars (doctor), sofie (secretary)",
        "  SYD  Sydklinikken   registration: open; staff: anna (admin), mads (doctor)",
        "  18 patients at NORD (Åse Østergaard has no MitID), 3 self-registrations "
        "waiting for a doctor, 1 self-registered patient at SYD",
        "You are logged in as lars, doctor at NORD"
        + (" (the session is in your keyring)." if token is None else "."),
        "",
        "Point your shell at the demo, then try the commands below:",
        f"  export PATIENTPORTAL_HOME={home}",
    ]
    if token is not None:
        lines.append(f"  export PATIENTPORTAL_TOKEN={token}")
    lines += [
        "  patientportal whoami",
        "  patientportal patient list",
        "  patientportal no-mitid list",
        "  patientportal patient access 020261-1122      # which logins work for Åse, and why",
        "  patientportal requests list                   # the approval queue",
        "  patientportal requests review                 # approve or reject, one by one",
        f"  patientportal patient import {sample} --dry-run",
        "                                                # the same file again: nothing to do",
        "  patientportal mail queue                      # mail waiting; delivered mail is in",
        f"                                                # {home / 'maildir'}",
        "  patientportal audit list",
        "  patientportal audit verify",
        "  patientportal portal register 230402-4678 --clinic NORD --name 'Ny Patient' "
        "--email ny@example.dk",
        "  patientportal logout",
        "Run `patientportal demo` again at any time to start over.",
    ]
    for line in lines:
        output.data_line(line)
