"""licence terms

``licence_terms`` keeps the price a licence states for the uses it grants on a work (an RSL 1.0
``<payment>`` with its ``<amount>``): payment type, amount in microunits, currency, uses, source and window
(consent/terms.py).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import endcredits.store.schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "licence_terms",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("work_id", sa.String(length=200), nullable=False),
        sa.Column("payment_type", sa.String(length=16), nullable=False),
        sa.Column("amount_microunits", endcredits.store.schema.Amount(precision=38, scale=0), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("uses", sa.String(length=500), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("valid_from", sa.String(length=32), nullable=False),
        sa.Column("valid_until", sa.String(length=32), nullable=True),
        sa.Column("perpetual", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "payment_type IN ('purchase', 'subscription', 'training', 'crawl', 'use', 'contribution', "
            "'attribution', 'free')",
            name=op.f("ck_licence_terms_payment_type"),
        ),
        sa.CheckConstraint("(valid_until IS NULL) = perpetual", name=op.f("ck_licence_terms_perpetual_explicit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_terms")),
    )
    with op.batch_alter_table("licence_terms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_licence_terms_work_id"), ["work_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("licence_terms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licence_terms_work_id"))
    op.drop_table("licence_terms")
