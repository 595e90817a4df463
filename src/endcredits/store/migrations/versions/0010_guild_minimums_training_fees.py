"""guild minimum role weights applied, and training fees

``guild_minimums`` keeps, per accrual group, each (payee, source work, role) whose role weight a guild's
``[role_weights_min]`` raised above the agreement's, with the guild terms (issuer, version) and both weights,
so a statement line says which term applied. ``training_fees`` keeps, per manifest, each payee's part of
the licence fees per training use the operator owes (royalties/training_fees.py), with the term it applied.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import endcredits.store.schema

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
    op.create_table(
        "training_fees",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("manifest_id", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", sa.String(length=32), nullable=False),
        sa.Column("work_id", sa.String(length=200), nullable=False),
        sa.Column("source_work", sa.String(length=200), nullable=False),
        sa.Column("payee", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=200), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("term_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount_microunits", endcredits.store.schema.Amount(precision=38, scale=0), nullable=False),
        sa.CheckConstraint("amount_microunits > 0", name=op.f("ck_training_fees_amount_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_fees")),
    )
    with op.batch_alter_table("training_fees", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_fees_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_training_fees_manifest_id"), ["manifest_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_training_fees_payee"), ["payee"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("training_fees", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_fees_payee"))
        batch_op.drop_index(batch_op.f("ix_training_fees_manifest_id"))
        batch_op.drop_index(batch_op.f("ix_training_fees_event_id"))
    op.drop_table("training_fees")
    with op.batch_alter_table("guild_minimums", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guild_minimums_payee"))
        batch_op.drop_index(batch_op.f("ix_guild_minimums_event_id"))
    op.drop_table("guild_minimums")
