"""guild minimum role weights applied

``guild_minimums`` keeps, per accrual group, each (payee, source work, role) whose role weight a guild's
``[role_weights_min]`` raised above the agreement's, with the guild terms (issuer, version) and both weights,
so a statement line says which term applied.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guild_minimums",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("payee", sa.String(length=200), nullable=False),
        sa.Column("source_work", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=200), nullable=False),
        sa.Column("issuer", sa.String(length=200), nullable=False),
        sa.Column("terms_version", sa.Integer(), nullable=False),
        sa.Column("weight_min", sa.Integer(), nullable=False),
        sa.Column("agreement_weight", sa.Integer(), nullable=False),
        sa.CheckConstraint("weight_min > agreement_weight", name=op.f("ck_guild_minimums_raised")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guild_minimums")),
    )
    with op.batch_alter_table("guild_minimums", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guild_minimums_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_guild_minimums_payee"), ["payee"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("guild_minimums", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guild_minimums_payee"))
        batch_op.drop_index(batch_op.f("ix_guild_minimums_event_id"))
    op.drop_table("guild_minimums")
