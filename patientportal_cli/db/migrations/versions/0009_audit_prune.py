"""Audit retention: a checkpoint can be the floor of its chain

- ``audit_checkpoint`` gains ``kind``: "checkpoint" (``audit checkpoint``) or "prune"
  (``audit prune``: the events of the chain up to and including ``seq`` were removed;
  ``hash`` is the hash of the last removed event, so the first remaining event still
  links to it). A prune checkpoint is signed over its kind as well (services/audit
  ``hashing.sign_prune``), so an ordinary checkpoint cannot be turned into one.
- ``cutoff`` (events older than this were removed) and ``removed`` (how many) say what
  the prune run did, for ``audit retention``.

Existing checkpoints become kind "checkpoint"; no event changes, so every chain still
verifies.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="checkpoint")
        )
        batch_op.add_column(sa.Column("cutoff", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("removed", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.drop_column("removed")
        batch_op.drop_column("cutoff")
        batch_op.drop_column("kind")
