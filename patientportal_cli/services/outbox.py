"""The outbox: mail to send, written in the same transaction as the change causing it.

Delivery (Maildir or SMTP) happens after commit, in ``services/delivery.py``; a failed
delivery leaves the message queued with its error and never undoes the change.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from patientportal_cli.db.models import Outbox


def enqueue(session: Session, *, to: str, template: str, subject: str, body: str) -> Outbox:
    message = Outbox(recipient=to, template=template, subject=subject, body=body)
    session.add(message)
    session.flush()
    return message


def queued(session: Session, *, limit: int | None = None) -> list[Outbox]:
    query = select(Outbox).where(col(Outbox.sent_at).is_(None)).order_by(col(Outbox.id))
    if limit:
        query = query.limit(limit)
    return list(session.exec(query))
