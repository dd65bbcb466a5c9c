"""staff list | add | set-role | disable | token create | token revoke | token list."""

from __future__ import annotations

from typing import Annotated

import typer

from patientportal_cli.cli.common import (
    ClinicOpt,
    Fmt,
    OutputOpt,
    PasswordStdinOpt,
    command,
    complete_username,
    get_password,
    out,
    staff_session,
)

app = typer.Typer(help="Staff of the clinic, their roles, and API tokens.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for scripts (PATIENTPORTAL_TOKEN).", no_args_is_help=True)
app.add_typer(token_app, name="token")


ROLE_NAMES = ("admin", "doctor", "secretary")  # services/catalog.py ROLES, in its order


def complete_roles(incomplete: str) -> list[str]:
    """admin, doctor, secretary; after a comma, the roles not yet named ("admin," ->
    "admin,doctor", "admin,secretary")."""
    head, _, last = incomplete.rpartition(",")
    given = {r.strip().lower() for r in head.split(",") if r.strip()}
    prefix = f"{head}," if head else ""
    return [prefix + r for r in ROLE_NAMES if r not in given and r.startswith(last.lower())]


ROLE_HELP = "admin, doctor or secretary; several comma-separated, e.g. admin,doctor."
UsernameArg = Annotated[str, typer.Argument(help="Username.", autocompletion=complete_username)]


@command(app, "list")
def list_(
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Staff of the current clinic."""
    from patientportal_cli.services import catalog, staff

    with staff_session(clinic=clinic_code) as (session, actor):
        rows = [
            {
                "username": s.username,
                "full_name": s.full_name,
                "role": catalog.show_roles(role),
                "active": s.active,
            }
            for s, role in staff.members(session, actor=actor)
        ]
    out(fmt).rows(
        rows,
        [("username", "Username"), ("full_name", "Name"), ("role", "Role"), ("active", "Active")],
        title=f"Staff of {actor.clinic_code}",
    )


@command(app, "add")
def add(
    username: Annotated[str, typer.Argument(help="New username (a-z, 0-9, . - _).")],
    name: Annotated[str, typer.Option("--name", help="Full name.")],
    role: Annotated[str, typer.Option("--role", help=ROLE_HELP, autocompletion=complete_roles)],
    password_stdin: PasswordStdinOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Add a staff member to the current clinic (admin only).

    A username that already exists at another clinic only gets a role here (no password
    is asked). Give several roles comma-separated: --role admin,doctor.
    """
    from patientportal_cli.services import catalog, staff
    from patientportal_cli.services.contact import clean_name

    staff.check_username(username)
    roles = catalog.parse_roles(role)
    clean_name(name)  # bad input is refused before a password is asked for
    with staff_session(clinic=clinic_code) as (session, actor):
        actor.require_role("admin", action="add staff")
        password = None
        if staff.needs_password(session, username):
            session.rollback()  # hold no database lock while the password is typed
            password = get_password(password_stdin, f"Password for {username}:", new=True)
        member, created = staff.add(
            session,
            actor=actor,
            username=username,
            full_name=name,
            role=roles,
            password=password,
        )
    plural = "s" if "," in roles else ""
    where = f"the role{plural} {catalog.show_roles(roles)} at clinic {actor.clinic_code}"
    if created:
        out().success(f"Added {member.username} with {where}.")
    elif password is not None:
        out().success(f"Enabled {member.username} again, with {where}.")
    else:
        out().success(f"Gave existing user {member.username} {where}.")


@command(app, "set-role")
def set_role(
    username: UsernameArg,
    role: Annotated[
        str,
        typer.Argument(help=f"New role(s): {ROLE_HELP}", autocompletion=complete_roles),
    ],
    clinic_code: ClinicOpt = None,
) -> None:
    """Change a staff member's role at the current clinic (admin only).

    The role(s) given replace those they had here; give several comma-separated
    (admin,doctor) for someone who is, e.g., both the practice owner and a doctor.
    """
    from patientportal_cli.services import catalog, staff

    roles = catalog.parse_roles(role)
    with staff_session(clinic=clinic_code) as (session, actor):
        staff.set_role(session, actor=actor, username=username, role=roles)
    shown = catalog.show_roles(roles)
    out().success(f"{username} is now {shown} at clinic {actor.clinic_code}.")


@command(app, "disable")
def disable(
    username: UsernameArg,
    clinic_code: ClinicOpt = None,
) -> None:
    """Take a staff member off the current clinic (admin only).

    Someone who works only here is disabled and their sessions end; someone who also
    works elsewhere only loses their role here.
    """
    from patientportal_cli.services import staff

    with staff_session(clinic=clinic_code) as (session, actor):
        outcome = staff.disable(session, actor=actor, username=username)
    if outcome == "disabled":
        out().success(f"{username} is disabled; their sessions and tokens are revoked.")
    else:
        out().success(f"{username} no longer works at clinic {actor.clinic_code}.")


@command(token_app, "create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "script",
    days: Annotated[int, typer.Option("--days", help="Days until it expires.")] = 90,
    clinic_code: ClinicOpt = None,
) -> None:
    """Create an API token for scripts; it is printed once on stdout."""
    from patientportal_cli.services import auth

    with staff_session(clinic=clinic_code) as (session, actor):
        token, row = auth.create_api_token(session, actor=actor, name=name, days=days)
    out().data_line(token)
    out().message(f"Token {row.id} ({name}) valid for {days} days. It is shown only this once.")


@command(token_app, "list")
def token_list(
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Your API tokens (never their values)."""
    from patientportal_cli.services import auth

    with staff_session(clinic=clinic_code) as (session, actor):
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "created_at": t.created_at,
                "expires_at": t.expires_at,
                "revoked_at": t.revoked_at,
            }
            for t in auth.list_tokens(session, actor=actor)
        ]
    out(fmt).rows(
        rows,
        [
            ("id", "Id"),
            ("name", "Name"),
            ("created_at", "Created"),
            ("expires_at", "Expires"),
            ("revoked_at", "Revoked"),
        ],
        empty="No API tokens.",
    )


@command(token_app, "revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(metavar="ID", help="Token id.")],
    clinic_code: ClinicOpt = None,
) -> None:
    """Revoke one of your API tokens."""
    from patientportal_cli.services import auth

    with staff_session(clinic=clinic_code) as (session, actor):
        auth.revoke_token(session, actor=actor, token_id=token_id)
    out().success(f"Token {token_id} revoked.")
