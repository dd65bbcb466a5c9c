"""staff list | add | set-role | disable | token create | token revoke | token list."""

from __future__ import annotations

from enum import StrEnum
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


class Role(StrEnum):
    admin = "admin"
    doctor = "doctor"
    secretary = "secretary"


UsernameArg = Annotated[str, typer.Argument(help="Username.", autocompletion=complete_username)]


@command(app, "list")
def list_(
    fmt: OutputOpt = Fmt.table,
    clinic_code: ClinicOpt = None,
) -> None:
    """Staff of the current clinic."""
    from patientportal_cli.services import staff

    with staff_session(clinic=clinic_code) as (session, actor):
        rows = [
            {"username": s.username, "full_name": s.full_name, "role": role, "active": s.active}
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
    role: Annotated[Role, typer.Option("--role", help="admin, doctor or secretary.")],
    password_stdin: PasswordStdinOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Add a staff member to the current clinic (admin only).

    A username that already exists at another clinic only gets a role here (no password
    is asked).
    """
    from patientportal_cli.services import staff
    from patientportal_cli.services.contact import clean_name

    staff.check_username(username)
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
            role=role.value,
            password=password,
        )
    where = f"the role {role.value} at clinic {actor.clinic_code}"
    if created:
        out().success(f"Added {member.username} with {where}.")
    elif password is not None:
        out().success(f"Enabled {member.username} again, with {where}.")
    else:
        out().success(f"Gave existing user {member.username} {where}.")


@command(app, "set-role")
def set_role(
    username: UsernameArg,
    role: Annotated[Role, typer.Argument(help="New role.")],
    clinic_code: ClinicOpt = None,
) -> None:
    """Change a staff member's role at the current clinic (admin only)."""
    from patientportal_cli.services import staff

    with staff_session(clinic=clinic_code) as (session, actor):
        staff.set_role(session, actor=actor, username=username, role=role.value)
    out().success(f"{username} is now {role.value} at clinic {actor.clinic_code}.")


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
