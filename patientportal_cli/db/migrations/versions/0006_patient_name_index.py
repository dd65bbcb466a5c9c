"""Patient listings page by an index: portal_user (name, id)

``patient list`` is ordered by name, then user id, and pages with ``--limit`` /
``--after`` (keyset: ``(name, id) > last row's``). Without this index PostgreSQL read
every portal user and sorted a large clinic's patients for each page (benchmarks/
scale.py: a seq scan of portal_user, 42 ms at 100,000 users, growing with N); with it a
page walks the index in name order and probes each user's links (1.6 ms).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("portal_user", schema=None) as batch_op:
        batch_op.create_index("ix_portal_user_name_id", ["name", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("portal_user", schema=None) as batch_op:
        batch_op.drop_index("ix_portal_user_name_id")
