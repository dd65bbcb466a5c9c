"""The outbox keeps the mail's intent, never a code

A queued e-mail is stored as what it is about (``template``, the patient ``user_id``,
the ``clinic_id`` it belongs to, and non-secret ``args`` as JSON); the text, and any
activation or security code in it, is made when the message is delivered. So a copy
of the database holds no code that was ever e-mailed. ``body`` stays only for messages
queued before this revision (delivered as they are) and is emptied for every message
already sent. ``discarded_at`` marks a message that was not sent on purpose (a security
code whose login is older than the code's lifetime).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("args", sa.Text(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("clinic_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("discarded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column("body", existing_type=sa.Text(), nullable=True)
        batch_op.create_index(batch_op.f("ix_outbox_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_foreign_key("fk_outbox_clinic_id_clinic", "clinic", ["clinic_id"], ["id"])
    outbox = sa.table(
        "outbox", sa.column("body", sa.Text), sa.column("sent_at", sa.DateTime(timezone=True))
    )
    op.get_bind().execute(outbox.update().where(outbox.c.sent_at.is_not(None)).values(body=None))


def downgrade() -> None:
    outbox = sa.table(
        "outbox",
        sa.column("body", sa.Text),
        sa.column("discarded_at", sa.DateTime(timezone=True)),
        sa.column("sent_at", sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    # Without the intent columns a message cannot be rendered: mark the unsent ones as
    # handled (they would otherwise be sent with an empty text) and keep an empty body.
    bind.execute(
        outbox.update()
        .where(outbox.c.sent_at.is_(None))
        .values(sent_at=sa.func.current_timestamp())
    )
    bind.execute(outbox.update().where(outbox.c.body.is_(None)).values(body=""))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("fk_outbox_clinic_id_clinic", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_outbox_clinic_id"))
        batch_op.alter_column("body", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("discarded_at")
        batch_op.drop_column("clinic_id")
        batch_op.drop_column("user_id")
        batch_op.drop_column("args")
