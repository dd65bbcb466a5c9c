"""The audit log per clinic, anchored: chains, sequence numbers, erasable content

- ``audit_event.chain``: the clinic code, or "" for events of no clinic (logins, staff
  accounts); ``seq`` numbers each chain's events from 1 (unique with ``chain``).
- ``audit_event.version``: 1 for the events written before this revision (one global
  chain in id order, still verified with its old digest), 2 for events written after
  (one chain per clinic; ``target`` and ``details`` are covered through
  ``content_hash`` with a per-event ``salt``, so they can be erased later).
- ``audit_head``: each chain's newest (seq, hash); writers lock their chain's row instead
  of the whole table. Filled here from the existing events, so each chain's first
  version-2 event continues from its last version-1 event.
- ``audit_checkpoint``: signed (chain, seq, hash) anchors written by `audit checkpoint`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chain", sa.String(length=32), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("version", sa.SmallInteger(), nullable=False, server_default="2")
        )
        batch_op.add_column(sa.Column("salt", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    # the existing events: version 1, in their clinic's chain, numbered in id order
    bind.execute(
        sa.text(
            "UPDATE audit_event SET version = 1, chain = COALESCE(clinic, ''), seq = n.rn "
            "FROM (SELECT id, ROW_NUMBER() OVER "
            "(PARTITION BY COALESCE(clinic, '') ORDER BY id) AS rn FROM audit_event) AS n "
            "WHERE audit_event.id = n.id"
        )
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index("ix_audit_event_chain_seq", ["chain", "seq"], unique=True)
    op.create_table(
        "audit_head",
        sa.Column("chain", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chain"),
    )
    bind.execute(
        sa.text(
            "INSERT INTO audit_head (chain, seq, hash, updated_at) "
            "SELECT e.chain, e.seq, e.hash, e.at FROM audit_event e "
            "WHERE e.seq = (SELECT max(m.seq) FROM audit_event m WHERE m.chain = e.chain)"
        )
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chain", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_checkpoint_chain"), ["chain"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_checkpoint_chain"))
    op.drop_table("audit_checkpoint")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_event_chain_seq")
        batch_op.drop_column("content_hash")
        batch_op.drop_column("salt")
        batch_op.drop_column("version")
        batch_op.drop_column("seq")
        batch_op.drop_column("chain")
