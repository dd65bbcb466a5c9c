"""Verify runs: ``audit_verify_run``

One row per ``audit verify`` run and clinic chain it checked (``chain``, ``at``,
``actor``, ``result`` "intact" or "failed", ``checked``, ``full``, ``problem``), so
``clinic overview`` can say when the clinic's audit log was last verified and with what
result. Outside the hash chains: a run never changes what the next one checks. The
index (chain, id) finds a chain's newest run in one look-up.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_verify_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chain", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("checked", sa.Integer(), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_verify_run_chain_id", "audit_verify_run", ["chain", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_verify_run_chain_id", table_name="audit_verify_run")
    op.drop_table("audit_verify_run")
