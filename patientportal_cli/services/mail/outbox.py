"""The outbox: mail to send, written in the same transaction as the change causing it.

A message is stored as its intent: the template, the recipient, the clinic it belongs
to, the patient, and the template's non-secret arguments. Its text, and any activation
or security code in it, is written only when it is delivered (``services/mail/delivery.py``),
so the database never holds a code that can be read back. A failed delivery leaves the
message queued with its error and never undoes the change.

Every message belongs to a clinic (``clinic_id``): staff list and deliver only their own
clinic's mail. Messages queued before schema revision 0003 have no clinic; only staff
who may create clinics (the installation's own administrators) see and send those.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, or_, select

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, Outbox, PortalUser
from patientportal_cli.services import codes
from patientportal_cli.services.mail import texts

# An argument for delivery, not for the text: the hash of the login attempt a security
# code belongs to (``codes.attempt_hash``); never handed to a template.
ATTEMPT = "attempt"


def template_args(args: dict[str, Any]) -> dict[str, Any]:
    """The stored arguments without those meant for delivery only."""
    return {k: v for k, v in args.items() if k != ATTEMPT}


def enqueue(
    session: Session,
    *,
    to: str,
    template: str,
    clinic_id: int | None,
    user_id: int | None = None,
    **args: Any,
) -> Outbox:
    """Queue ``template`` written with ``args`` (JSON values; never a code or password)."""
    subject, _ = texts.render(template, template_args(args))
    message = Outbox(
        recipient=to,
        template=template,
        subject=subject,
        args=json.dumps(args, ensure_ascii=False, sort_keys=True),
        user_id=user_id,
        clinic_id=clinic_id,
    )
    session.add(message)
    session.flush()
    return message


def to_patient(
    session: Session, template: str, *, user: PortalUser, clinic: Clinic, **args: Any
) -> Outbox:
    """Queue ``template`` to a portal user's own address, from ``clinic``: the name and
    the clinic's name go in, with ``args``."""
    return enqueue(
        session,
        to=user.email,
        template=template,
        clinic_id=clinic.id,
        user_id=user.id,
        name=user.name,
        clinic_name=clinic.name,
        **args,
    )


def activation(
    session: Session, *, user: PortalUser, clinic: Clinic, reset: bool = False
) -> Outbox:
    """Queue an activation e-mail; its code is made when it is delivered."""
    extra: dict[str, Any] = {"reset": True} if reset else {}
    return to_patient(
        session,
        "activation",
        user=user,
        clinic=clinic,
        valid_days=codes.LIFETIME[codes.ACTIVATION].days,
        clinic_code=clinic.code,
        **extra,
    )


def discard(message: Outbox, *, reason: str, now: datetime) -> None:
    """Mark a queued message as not to be sent, saying why; its arguments go."""
    message.discarded_at = now
    message.error = f"not sent: {reason}"
    message.args = "{}"


def end_pending_codes(
    session: Session, *, user_id: int, reason: str, purpose: str | None = None
) -> None:
    """End the user's open one-time codes (of ``purpose``, or all) and discard the queued
    mails that would issue one at delivery, saying ``reason``."""
    now = utcnow()
    codes.end_open(session, user_id=user_id, purpose=purpose, now=now)
    templates = [t for t, p in texts.CODE_TEMPLATES.items() if purpose in (None, p)]
    for message in session.exec(
        select(Outbox).where(
            Outbox.user_id == user_id,
            col(Outbox.template).in_(templates),
            col(Outbox.sent_at).is_(None),
            col(Outbox.discarded_at).is_(None),
        )
    ):
        discard(message, reason=reason, now=now)
        session.add(message)
    session.flush()


def queued(
    session: Session,
    *,
    clinic_id: int | None = None,
    legacy: bool = False,
    limit: int | None = None,
) -> list[Outbox]:
    """Messages waiting to be sent, oldest first: every clinic's when ``clinic_id`` is
    None, else that clinic's, with those that have no clinic when ``legacy``."""
    query = select(Outbox).where(col(Outbox.sent_at).is_(None), col(Outbox.discarded_at).is_(None))
    if clinic_id is not None:
        mine = col(Outbox.clinic_id) == clinic_id
        query = query.where(or_(mine, col(Outbox.clinic_id).is_(None)) if legacy else mine)
    query = query.order_by(col(Outbox.id))
    if limit:
        query = query.limit(limit)
    return list(session.exec(query))
