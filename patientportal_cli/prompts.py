"""The one place that asks questions (questionary), and only on a terminal.

Without a terminal on both stdin and stdout, every function raises ``MissingInput``
naming the flag to pass instead: a script never hangs waiting for input. Tests feed
keystrokes through prompt_toolkit's pipe input with ``use_io``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from patientportal_cli.errors import MissingInput

_io: dict[str, Any] = {}


@contextmanager
def use_io(input: Any, output: Any) -> Iterator[None]:  # noqa: A002
    """Answer prompts from ``input`` (prompt_toolkit Input), as if on a terminal."""
    _io.update(input=input, output=output)
    try:
        yield
    finally:
        _io.clear()


def interactive() -> bool:
    if _io:
        return True
    return sys.stdin.isatty() and sys.stdout.isatty()


def _require(flag: str, what: str | None) -> None:
    if not interactive():
        raise MissingInput(flag, what)


def _ask(question: Any) -> Any:
    answer = question.unsafe_ask()
    if answer is None:
        raise KeyboardInterrupt
    return answer


def text(
    message: str,
    *,
    flag: str,
    what: str | None = None,
    default: str = "",
    validate: Callable[[str], bool | str] | None = None,
) -> str:
    _require(flag, what)
    import questionary

    kwargs: dict[str, Any] = {"default": default, **_io}
    if validate is not None:
        kwargs["validate"] = validate
    return str(_ask(questionary.text(message, **kwargs)))


def password(
    message: str,
    *,
    flag: str = "--password-stdin",
    what: str = "password",
    check: Callable[[str], Any] | None = None,
) -> str:
    """Ask for a password (hidden); ``check`` raising InvalidInput makes it ask again."""
    _require(flag, what)
    import questionary

    kwargs: dict[str, Any] = dict(_io)
    if check is not None:
        kwargs["validate"] = _validator(check)
    return str(_ask(questionary.password(message, **kwargs)))


def _validator(check: Callable[[str], Any]) -> Callable[[str], bool | str]:
    from patientportal_cli.errors import InvalidInput

    def validate(text: str) -> bool | str:
        try:
            check(text)
        except InvalidInput as exc:
            return str(exc)
        return True

    return validate


def new_password(
    message: str, *, flag: str = "--password-stdin", check: Callable[[str], Any] | None = None
) -> str:
    """Ask twice; ask again until both match. ``check`` (the password policy) is applied
    to the first answer, so a weak password is refused before it is repeated."""
    while True:
        first = password(message, flag=flag, check=check)
        second = password("Repeat the password:", flag=flag)
        if first == second:
            return first
        print("The passwords differ; try again.", file=sys.stderr)


def confirm(
    message: str, *, flag: str = "--yes", what: str = "confirmation", default: bool = False
) -> bool:
    _require(flag, what)
    import questionary

    return bool(_ask(questionary.confirm(message, default=default, **_io)))


def select(
    message: str, choices: Sequence[tuple[str, str]], *, flag: str, what: str | None = None
) -> str:
    """``choices`` = (value, title) pairs; returns the chosen value."""
    _require(flag, what)
    import questionary

    items = [questionary.Choice(title=title, value=value) for value, title in choices]
    return str(_ask(questionary.select(message, choices=items, **_io)))


def checkbox(
    message: str, choices: Sequence[tuple[str, str, bool]], *, flag: str, what: str | None = None
) -> list[str]:
    """``choices`` = (value, title, checked); returns the checked values."""
    _require(flag, what)
    import questionary

    items = [questionary.Choice(title=t, value=v, checked=c) for v, t, c in choices]
    return [str(v) for v in _ask(questionary.checkbox(message, choices=items, **_io))]
