"""ledger snapshots: a fold keeps the payees' balances and carries columnar instead of as rows

A fold wrote an account row (three B-trees) and a carry row for every payee it met for the first time:
13-18 microseconds a payee on machine B, rows that nobody reads until a claim, a payout or a statement
needs them. A fold now writes one ``ledger_snapshots`` row instead: the payees' accounts that have no row,
with their balances, and every payee's carry, as two Arrow blobs read through like a pending segment. Rows
written before stay and are read as before. On PostgreSQL the blobs are stored without compression, like
the segments' (migration 0011).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_snapshots",
        sa.Column("through_transfer_id", _KEY, autoincrement=False, nullable=False),
        sa.Column("account_id_max", _KEY, nullable=False),
        sa.Column("account_count", sa.Integer(), nullable=False),
        sa.Column("carry_count", sa.Integer(), nullable=False),
        sa.Column("balances_arrow", sa.LargeBinary(), nullable=False),
        sa.Column("carries_arrow", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("through_transfer_id", name=op.f("pk_ledger_snapshots")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for column in ("balances_arrow", "carries_arrow"):
            op.execute(f"ALTER TABLE ledger_snapshots ALTER COLUMN {column} SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("ledger_snapshots")
