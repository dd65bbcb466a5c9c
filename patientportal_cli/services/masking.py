"""CPR masking for anything shown to a person: the birth date only (``010203-****``).

Standard library only, so that output.py (imported by every rendering command) can use
it without loading the CPR validation library; services use it in their messages.
"""

from __future__ import annotations


def mask_cpr(cpr: str) -> str:
    """``DDMMYY-****`` for a CPR number with or without its hyphen; ``******-****`` else."""
    digits = cpr.replace("-", "")
    return f"{digits[:6]}-****" if len(digits) == 10 else "******-****"


def patient_label(cpr: str, name: str | None) -> str:
    """How a patient is named in a prompt or a result line: ``010203-**** (Karen Holm)``."""
    return f"{mask_cpr(cpr)} ({name})"


def mask_email(email: str) -> str:
    """``s***@example.dk``: enough to recognise one's own address, not to read it."""
    local, at, domain = email.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"
