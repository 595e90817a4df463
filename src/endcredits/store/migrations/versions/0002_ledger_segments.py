"""ledger segments: accrual legs and carries as one columnar row per transfer, and the folds; outputs as keys

An accrual now writes only each output's id and batch; its model, revenue, currency and time are in the
evidence, so those columns become nullable (rows written before keep their values).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import endcredits.store.schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_OUTPUT_DETAILS = (
    ("model_id", sa.String(length=200)),
    ("currency", sa.String(length=3)),
    ("occurred_at", sa.String(length=32)),
    ("revenue_microunits", endcredits.store.schema.Amount(precision=38, scale=0)),
)


def upgrade() -> None:
    op.create_table(
        "ledger_segments",
        sa.Column(
            "transfer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("leg_count", sa.Integer(), nullable=False),
        sa.Column("carry_count", sa.Integer(), nullable=False),
        sa.Column("legs_arrow", sa.LargeBinary(), nullable=False),
        sa.Column("carries_arrow", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_ledger_segments")),
    )
    op.create_table(
        "ledger_folds",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("through_transfer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("segment_count", sa.Integer(), nullable=False),
        sa.Column("account_count", sa.Integer(), nullable=False),
        sa.Column("carry_count", sa.Integer(), nullable=False),
        sa.Column("folded_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_folds")),
        sa.UniqueConstraint("through_transfer_id", name=op.f("uq_ledger_folds_through_transfer_id")),
    )
    with op.batch_alter_table("outputs", schema=None) as batch_op:
        for column, type_ in _OUTPUT_DETAILS:
            batch_op.alter_column(column, existing_type=type_, nullable=True)


def downgrade() -> None:
    # Outputs accrued since 0002 have their details in the evidence only: 0001 cannot hold them.
    if op.get_bind().execute(sa.text("SELECT COUNT(*) FROM outputs WHERE model_id IS NULL")).scalar():
        raise RuntimeError(
            "outputs accrued since revision 0002 keep their details in the evidence; 0001 cannot hold them"
        )
    with op.batch_alter_table("outputs", schema=None) as batch_op:
        for column, type_ in _OUTPUT_DETAILS:
            batch_op.alter_column(column, existing_type=type_, nullable=False)
    op.drop_table("ledger_folds")
    op.drop_table("ledger_segments")
