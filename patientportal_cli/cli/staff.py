"""staff list | add | set-role | disable | unlock | password | account | token create |
token revoke | token list."""

from __future__ import annotations

from typing import Annotated

import typer

from patientportal_cli.cli.common import (
    ClinicOpt,
    Fmt,
    OutputOpt,
    PasswordStdinOpt,
    command,
    get_password,
    out,
    staff_session,
)
from patientportal_cli.cli.completion import (
    complete_clinic_staff,
    complete_roles,
    complete_username,
)

app = typer.Typer(help="Staff of the clinic, their roles, and API tokens.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for scripts (PATIENTPORTAL_TOKEN).", no_args_is_help=True)
app.add_typer(token_app, name="token")


ROLE_HELP = "admin, doctor or secretary; several comma-separated, e.g. admin,doctor."
UsernameArg = Annotated[str, typer.Argument(help="Username.", autocompletion=complete_username)]
# a staff member of the clinic acted on (set-role, disable, unlock)
MemberArg = Annotated[str, typer.Argument(help="Username.", autocompletion=complete_clinic_staff)]


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

    A username that already exists (someone working at another clinic) only gets a role
    here: no password is asked or read, and the account's password stays unchanged. A
    disabled account is not enabled this way (see `staff account`). Give several roles
    comma-separated: --role admin,doctor.
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
    else:
        out().success(
            f"Added the existing account {member.username} with {where}; its password is unchanged."
        )


@command(app, "set-role")
def set_role(
    username: MemberArg,
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
    username: MemberArg,
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


@command(app, "unlock")
def unlock(
    username: MemberArg,
    clinic_code: ClinicOpt = None,
) -> None:
    """Lift the login lock of a staff member of the current clinic (admin only).

    Five failed logins lock a username for 15 minutes; this ends the lock (and the
    count of failed logins) at once.
    """
    from patientportal_cli.services import staff

    with staff_session(clinic=clinic_code) as (session, actor):
        failures, until = staff.unlock(session, actor=actor, username=username)
    if until is not None:
        out().success(f"{username} is unlocked.")
    elif failures:
        plural = "s" if failures > 1 else ""
        out().success(f"{username} was not locked; {failures} failed login{plural} forgotten.")
    else:
        out().message(f"{username} was not locked.")


@command(app, "password")
def password(
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the current password from the first line of stdin, the new one from "
            "the second.",
        ),
    ] = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Change your own password (the current one is asked first).

    Your other login sessions end; API tokens stay valid.
    """
    from patientportal_cli.cli.common import read_password_stdin
    from patientportal_cli.services import staff

    if password_stdin:
        current, new = read_password_stdin(), read_password_stdin()
    else:
        current = get_password(False, "Current password:")
        new = get_password(False, "New password:", new=True)
    with staff_session(clinic=clinic_code) as (session, actor):
        staff.change_own_password(session, actor=actor, current=current, new=new)
    out().success("Your password is changed; your other login sessions have ended.")


EnableOpt = Annotated[
    bool | None,
    typer.Option(
        "--enable/--disable",
        help="Enable the account again, or disable it everywhere (its sessions and tokens end).",
    ),
]
MayCreateClinicsOpt = Annotated[
    bool | None,
    typer.Option(
        "--may-create-clinics/--no-may-create-clinics",
        help="Give or take the right to create clinics (and see every clinic).",
    ),
]
NewPasswordOpt = Annotated[
    bool,
    typer.Option(
        "--new-password",
        help="Set a new password (asked, or with --password-stdin); all the account's "
        "sessions and tokens end.",
    ),
]
ACCOUNT_CHANGES = {
    ("active", True): "enabled",
    ("active", False): "disabled (its sessions and tokens are revoked)",
    ("may_create_clinics", True): "may create clinics",
    ("may_create_clinics", False): "may no longer create clinics",
    ("password", "set"): "has a new password (its sessions and tokens are revoked)",
}


@command(app, "account")
def account(
    username: UsernameArg,
    enable: EnableOpt = None,
    may_create_clinics: MayCreateClinicsOpt = None,
    new_password: NewPasswordOpt = False,
    password_stdin: PasswordStdinOpt = False,
    clinic_code: ClinicOpt = None,
) -> None:
    """Change an account as a whole: enabled, may create clinics, password.

    Only staff who may create clinics do this, and not for their own account; clinic
    admins change only roles at their clinic. Every change is audited.
    """
    from patientportal_cli.services import staff

    name = staff.check_username(username)
    _check_account_options(enable, may_create_clinics, new_password, password_stdin)
    with staff_session(clinic=clinic_code) as (_session, actor):
        staff.require_account_admin(actor)  # refused before a password is asked for
    pw = None
    if new_password:
        pw = get_password(password_stdin, f"New password for {name}:", new=True)
    with staff_session(clinic=clinic_code) as (session, actor):
        changes = staff.account(
            session,
            actor=actor,
            username=name,
            enable=enable,
            may_create_clinics=may_create_clinics,
            password=pw,
        )
    if not changes:
        out().message(f"Nothing changed for {name}.")
        return
    said = "; ".join(ACCOUNT_CHANGES[item] for item in changes.items())
    out().success(f"{name}: {said}.")


def _check_account_options(
    enable: bool | None, may_create_clinics: bool | None, new_password: bool, password_stdin: bool
) -> None:
    """Refuse (exit 2) --password-stdin without --new-password, and nothing to change."""
    from patientportal_cli.errors import InvalidInput

    if password_stdin and not new_password:
        raise InvalidInput("--password-stdin goes with --new-password.")
    if enable is None and may_create_clinics is None and not new_password:
        raise InvalidInput(
            "Nothing to change: give --enable, --disable, --may-create-clinics, "
            "--no-may-create-clinics or --new-password."
        )


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
