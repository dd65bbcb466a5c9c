"""prompts.py: questions only on a terminal (else MissingInput naming the flag), and the
commands that ask (init, login, staff add, config set) answered through a pipe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from patientportal_cli import prompts
from patientportal_cli.errors import EXIT_USAGE, MissingInput
from tests.helpers.cli import PASSWORD, Cli
from tests.helpers.cli import Staff as StaffHelper

ENTER = "\r"
DOWN = "\x1b[B"
CTRL_C = "\x03"


@contextmanager
def terminal(*keys: str) -> Iterator[None]:
    """Answer prompts as if typed on a terminal."""
    with create_pipe_input() as pipe:
        pipe.send_text("".join(keys))
        with prompts.use_io(pipe, DummyOutput()):
            yield


# --- without a terminal --------------------------------------------------------------


def test_without_a_terminal_every_prompt_names_its_flag() -> None:
    assert not prompts.interactive()  # pytest's stdin is not a terminal
    cases = [
        (lambda: prompts.text("Name:", flag="--name"), "Missing name: pass --name"),
        (
            lambda: prompts.text("Name:", flag="--admin-name", what="admin's name"),
            "Missing admin's name: pass --admin-name",
        ),
        (lambda: prompts.password("Password:"), "Missing password: pass --password-stdin"),
        (lambda: prompts.new_password("Password:"), "Missing password: pass --password-stdin"),
        (lambda: prompts.confirm("Sure?"), "Missing confirmation: pass --yes"),
        (
            lambda: prompts.select("Mode?", [("a", "A")], flag="--pending"),
            "Missing pending: pass --pending",
        ),
        (
            lambda: prompts.checkbox("Which?", [("a", "A", True)], flag="--services"),
            "Missing services: pass --services",
        ),
    ]
    for ask, message in cases:
        with pytest.raises(MissingInput) as err:
            ask()
        assert str(err.value) == message + " (no terminal to ask on)."
        assert err.value.exit_code == EXIT_USAGE


# --- on a terminal -------------------------------------------------------------------


def test_text_password_confirm_select_checkbox_on_a_terminal() -> None:
    with terminal("Nordklinikken", ENTER):
        assert prompts.text("Name:", flag="--name") == "Nordklinikken"
    with terminal(ENTER):
        assert prompts.text("Name:", flag="--name", default="Syd") == "Syd"
    with terminal("x", ENTER, "\x7f", "ok", ENTER):  # refused by validate, then fixed
        assert prompts.text("Code:", flag="--code", validate=lambda v: v == "ok" or "no") == "ok"
    with terminal("Hemmelig1", ENTER):
        assert prompts.password("Password:") == "Hemmelig1"
    with terminal("y"):
        assert prompts.confirm("Sure?") is True
    with terminal(ENTER):
        assert prompts.confirm("Sure?", default=False) is False
    with terminal(DOWN, ENTER):
        assert (
            prompts.select("Mode?", [("keep", "Keep"), ("reject", "Reject")], flag="-p") == "reject"
        )
    with terminal(" ", DOWN, " ", ENTER):  # untick the first, tick the second
        choices = [("a", "A", True), ("b", "B", False), ("c", "C", True)]
        assert prompts.checkbox("Which?", choices, flag="--s") == ["b", "c"]
    assert not prompts.interactive()  # use_io ends with its block


def test_new_password_asks_again_until_both_match(capsys: pytest.CaptureFixture[str]) -> None:
    with terminal("Aaaaaaa1", ENTER, "Bbbbbbb2", ENTER, "Cccccc3c", ENTER, "Cccccc3c", ENTER):
        assert prompts.new_password("Password:") == "Cccccc3c"
    assert capsys.readouterr().err == "The passwords differ; try again.\n"


def test_a_new_password_against_the_policy_is_asked_again(cli: Cli, staff: StaffHelper) -> None:
    keys = ["weak", ENTER, "\x7f" * 4, "Bo-pass-123", ENTER, "Bo-pass-123", ENTER]
    with terminal(*keys):
        r = cli("staff add bo --name Bo --role doctor")
    assert r.stderr == "Added bo with the role doctor at clinic NORD.\n"
    staff.login("bo", "Bo-pass-123")


def test_ctrl_c_at_a_prompt_is_exit_130(cli: Cli, db_url: str) -> None:
    with terminal(CTRL_C):
        r = cli("init", expect=130)
    assert r.stderr == "Error: Interrupted.\n"


# --- commands that ask ---------------------------------------------------------------


def test_init_asks_for_what_is_missing(cli: Cli, db_url: str) -> None:
    keys = ["nord", ENTER, "Nordklinikken", ENTER, "anna", ENTER, "Anna Admin", ENTER]
    keys += [PASSWORD, ENTER, PASSWORD, ENTER]
    with terminal(*keys):
        r = cli("init")
    assert r.stderr == (
        "Initialised clinic NORD (Nordklinikken) with admin anna. Next: patientportal login anna\n"
    )
    with terminal(PASSWORD, ENTER):
        r = cli("login anna --print-token")
    assert r.stdout.startswith("pp_")


def test_init_asks_only_for_what_is_missing(cli: Cli, db_url: str) -> None:
    with terminal("Anna Admin", ENTER, PASSWORD, ENTER, PASSWORD, ENTER):
        r = cli("init --clinic NORD --clinic-name Nord --admin anna")
    assert r.stderr.startswith("Initialised clinic NORD (Nord) with admin anna.")


def test_init_asks_again_for_a_bad_value(cli: Cli, db_url: str) -> None:
    keys = ["no good", ENTER, "\x7f" * 7, "syd", ENTER, "Syd", ENTER, "Anna B", ENTER]
    keys += ["\x7f" * 6, "anna", ENTER, "Anna", ENTER, PASSWORD, ENTER, PASSWORD, ENTER]
    with terminal(*keys):
        r = cli("init")
    assert r.stderr.startswith("Initialised clinic SYD (Syd) with admin anna.")


def test_init_refuses_a_bad_value_given_as_an_option(cli: Cli, db_url: str) -> None:
    with terminal("Nord", ENTER):
        r = cli("init --clinic 'no good'", expect=2)
    assert r.stderr.startswith("Error: Invalid clinic code:")


def test_login_and_staff_add_ask_for_passwords(
    cli: Cli, staff: StaffHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    with terminal("Bo-pass-123", ENTER, "Bo-pass-123", ENTER):
        r = cli("staff add bo --name Bo --role doctor")
    assert r.stderr == "Added bo with the role doctor at clinic NORD.\n"
    monkeypatch.delenv("PATIENTPORTAL_TOKEN")
    with terminal("wrong-Pass1", ENTER):
        r = cli("login bo", expect=4)
    assert r.stderr == (
        "Error: Login failed: wrong username or password, or the account is disabled or "
        "locked (5 failed logins lock it for 15 minutes).\n"
    )
    with terminal("Bo-pass-123", ENTER):
        r = cli("login bo")
    assert r.stderr == "Logged in as bo (Bo). The session lasts 12 hours.\n"
    assert json.loads(cli("whoami -o json").stdout)["role"] == "doctor"


def test_config_set_asks_for_a_secret(cli: Cli, memory_keyring, home) -> None:  # noqa: ANN001
    with terminal("Smtp-pass-1", ENTER):
        r = cli("config set smtp-password")
    assert r.stderr == "smtp-password stored in the OS keyring.\n"
    assert memory_keyring.store[("patientportal-cli", f"smtp-password@{home}")] == "Smtp-pass-1"
