"""Acting for someone else: guardians of children under 15 and proxies (fuldmagt)

One new table, ``delegation``: who may act for whom at one clinic, on what basis, for
which services and until when (services/delegations.py). A guardian's row has no end
date (it ends on the child's 15th birthday, computed from the CPR number at every
check); a proxy's row ends at ``valid_until``. Rows are kept when revoked or removed
(``revoked_at``), so the index ``ux_delegation_open`` (unique over the rows not revoked)
allows at most one open row per (clinic, patient, holder, kind). Existing tables and
data are untouched.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("revoked_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "delegation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_user_id", sa.Integer(), nullable=False),
        sa.Column("holder_user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("basis", sa.String(length=32), nullable=False),
        sa.Column("services", sa.String(length=200), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.Column("notice_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"]),
        sa.ForeignKeyConstraint(["patient_user_id"], ["portal_user.id"]),
        sa.ForeignKeyConstraint(["holder_user_id"], ["portal_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("delegation", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delegation_clinic_patient", ["clinic_id", "patient_user_id"], unique=False
        )
        batch_op.create_index(
            "ix_delegation_clinic_holder", ["clinic_id", "holder_user_id"], unique=False
        )
        batch_op.create_index(
            "ux_delegation_open",
            ["clinic_id", "patient_user_id", "holder_user_id", "kind"],
            unique=True,
            sqlite_where=OPEN,
            postgresql_where=OPEN,
        )


def downgrade() -> None:
    with op.batch_alter_table("delegation", schema=None) as batch_op:
        batch_op.drop_index("ux_delegation_open")
        batch_op.drop_index("ix_delegation_clinic_holder")
        batch_op.drop_index("ix_delegation_clinic_patient")
    op.drop_table("delegation")
