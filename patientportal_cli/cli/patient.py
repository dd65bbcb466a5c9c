"""patient: create, link, unlink, show, list, invite, unlock, access."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Patients' portal users and their link to this clinic.", no_args_is_help=True
)
