"""What a patient's two-factor `portal login` prints."""

from __future__ import annotations

import re

ATTEMPT_ID = re.compile(r"--attempt ([A-Za-z0-9_-]{22}) ")


def attempt_of(text: str) -> str:
    """The attempt id a two-factor `portal login` printed (in the `portal verify` hint)."""
    found = ATTEMPT_ID.findall(text)
    assert len(found) == 1, text
    return str(found[0])


def code_sent(text: str, *, email: str = "s***@example.dk", clinic: str = "NORD") -> str:
    """What a two-factor login without a terminal prints, for the attempt id in ``text``."""
    return (
        f"A security code was e-mailed to {email} (valid 10 minutes).\n"
        "No terminal to ask for it: give it with `patientportal portal verify CPR --clinic "
        f"{clinic} --attempt {attempt_of(text)} --code CODE`.\n"
    )
