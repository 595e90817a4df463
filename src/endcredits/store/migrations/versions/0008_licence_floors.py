"""licence floors

``licence_floors`` keeps, per accrual group, what the operator paid beyond the pool to raise a work's share
of an output to the floor a licence term states (royalties/floors.py): one row per line topped up, with the
term it applied.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import endcredits.store.schema

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "licence_floors",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("output_id", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", sa.String(length=32), nullable=False),
        sa.Column("attributed_work", sa.String(length=200), nullable=False),
        sa.Column("source_work", sa.String(length=200), nullable=False),
        sa.Column("payee", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=200), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("term_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount_microunits", endcredits.store.schema.Amount(precision=38, scale=0), nullable=False),
        sa.CheckConstraint("amount_microunits > 0", name=op.f("ck_licence_floors_amount_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_floors")),
    )
    with op.batch_alter_table("licence_floors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_licence_floors_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_licence_floors_payee"), ["payee"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("licence_floors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licence_floors_payee"))
        batch_op.drop_index(batch_op.f("ix_licence_floors_event_id"))
    op.drop_table("licence_floors")
