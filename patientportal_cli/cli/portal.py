"""portal: the patient's side, as the web portal would do it (demos, support, tests)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="The patient's side of the portal (register, activate, login, verify).",
    no_args_is_help=True,
)
