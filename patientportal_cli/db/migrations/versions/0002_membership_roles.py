"""membership.role holds several roles

A staff member may hold several roles at one clinic (the practice owner is both admin
and doctor): ``membership.role`` stores them comma-separated in catalogue order
("admin,doctor"), so it widens from 16 to 64 characters. Existing one-role rows stay as
they are.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("admin", "doctor", "secretary")  # services/catalog.py ROLES, in its order


def upgrade() -> None:
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.alter_column(
            "role",
            existing_type=sa.String(length=16),
            type_=sa.String(length=64),
            existing_nullable=False,
        )


def downgrade() -> None:
    # One role per membership again: someone with several keeps the first in catalogue
    # order (admin before doctor before secretary), so a clinic keeps its admins.
    membership = sa.table("membership", sa.column("id", sa.Integer), sa.column("role", sa.String))
    bind = op.get_bind()
    several = bind.execute(
        sa.select(membership.c.id, membership.c.role).where(membership.c.role.contains(","))
    ).all()
    for row_id, role in several:
        names = [r for r in role.split(",") if r]
        first = next((r for r in ROLES if r in names), names[0] if names else "secretary")
        bind.execute(membership.update().where(membership.c.id == row_id).values(role=first))
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.alter_column(
            "role",
            existing_type=sa.String(length=64),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
