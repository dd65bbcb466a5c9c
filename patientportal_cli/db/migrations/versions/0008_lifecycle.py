"""A patient's lifecycle: deactivation, CPR number changes, shared e-mail look-ups

- ``portal_user`` gains ``deactivated_at``, ``deactivated_reason`` (deceased, emigrated,
  other) and ``deactivated_by``: a deactivated account cannot log in anywhere
  (services/lifecycle.py). Existing users stay active (NULL).
- ``portal_user.last_login_at``: the last successful portal login (MitID or two-factor),
  for ``patient list --inactive-since``. NULL until the next login.
- ``portal_user`` gains the index ``ix_portal_user_email_lower`` on ``lower(email)``, so
  "also used by another patient here" and ``patient list --shared-email`` are index
  look-ups rather than scans.
- New table ``cpr_change``: one row per CPR number change (``patient change-cpr``), so
  that both the old and the new number find the person (``patient log``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("portal_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deactivated_reason", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("deactivated_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_portal_user_email_lower", "portal_user", [sa.text("lower(email)")])
    op.create_table(
        "cpr_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("old_cpr", sa.String(length=10), nullable=False),
        sa.Column("new_cpr", sa.String(length=10), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("merged", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.ForeignKeyConstraint(["user_id"], ["portal_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_cpr_change_user_id", "cpr_change", ["user_id"])
    op.create_index("ix_cpr_change_old_cpr", "cpr_change", ["old_cpr"])
    op.create_index("ix_cpr_change_new_cpr", "cpr_change", ["new_cpr"])


def downgrade() -> None:
    op.drop_index("ix_cpr_change_new_cpr", table_name="cpr_change")
    op.drop_index("ix_cpr_change_old_cpr", table_name="cpr_change")
    op.drop_index("ix_cpr_change_user_id", table_name="cpr_change")
    op.drop_table("cpr_change")
    op.drop_index("ix_portal_user_email_lower", table_name="portal_user")
    with op.batch_alter_table("portal_user", schema=None) as batch_op:
        batch_op.drop_column("last_login_at")
        batch_op.drop_column("deactivated_by")
        batch_op.drop_column("deactivated_reason")
        batch_op.drop_column("deactivated_at")
