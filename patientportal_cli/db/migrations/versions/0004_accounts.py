"""Accounts that cannot be taken over: login throttle, vouched credentials, attempt ids

- ``login_throttle``: failed logins and the 15-minute lock per login name (a staff
  username or a patient's CPR number), kept by a hash of the name, for names that exist
  and names that do not alike, so the lock tells nobody which exist.
- ``portal_user.credentials_vouched_at``: when the user's password and e-mail became
  usable for two-factor login (a clinic created the user, the patient confirmed them
  inside a MitID login, or a clinic confirmed the e-mail owner by setting the no-MitID
  flag). Existing users: clinic-created ones at their creation; self-registered ones
  when a clinic confirmed their current e-mail with the flag; the rest stay unvouched.
- ``one_time_code.attempt_hash``: a security code can be tried only by whoever passed
  the password step of the same login (the attempt id it was given).
- ``registration_request.mitid_verified_at``: the request was made inside a MitID login
  (``portal register --login mitid``); only such a request speaks for the patient.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_throttle_key"), ["key"], unique=True)
    with op.batch_alter_table("portal_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("credentials_vouched_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("one_time_code", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("registration_request", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mitid_verified_at", sa.DateTime(timezone=True), nullable=True)
        )

    user = sa.table(
        "portal_user",
        sa.column("id", sa.Integer),
        sa.column("email", sa.String),
        sa.column("origin", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("credentials_vouched_at", sa.DateTime(timezone=True)),
    )
    link = sa.table(
        "clinic_link",
        sa.column("user_id", sa.Integer),
        sa.column("no_mitid", sa.Boolean),
        sa.column("email_owner_confirmed_at", sa.DateTime(timezone=True)),
        sa.column("email_owner_confirmed_email", sa.String),
    )
    bind = op.get_bind()
    bind.execute(
        user.update()
        .where(user.c.origin == "clinic")
        .values(credentials_vouched_at=user.c.created_at)
    )
    confirmed = (
        sa.select(sa.func.min(link.c.email_owner_confirmed_at))
        .where(
            link.c.user_id == user.c.id,
            link.c.no_mitid.is_(True),
            sa.func.lower(link.c.email_owner_confirmed_email) == sa.func.lower(user.c.email),
        )
        .scalar_subquery()
    )
    bind.execute(
        user.update().where(user.c.origin != "clinic").values(credentials_vouched_at=confirmed)
    )


def downgrade() -> None:
    with op.batch_alter_table("registration_request", schema=None) as batch_op:
        batch_op.drop_column("mitid_verified_at")
    with op.batch_alter_table("one_time_code", schema=None) as batch_op:
        batch_op.drop_column("attempt_hash")
    with op.batch_alter_table("portal_user", schema=None) as batch_op:
        batch_op.drop_column("credentials_vouched_at")
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_throttle_key"))
    op.drop_table("login_throttle")
