"""ledger segments: accrual legs and carries as one columnar row per transfer, and the folds

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_segments',
    sa.Column('transfer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('leg_count', sa.Integer(), nullable=False),
    sa.Column('carry_count', sa.Integer(), nullable=False),
    sa.Column('legs_arrow', sa.LargeBinary(), nullable=False),
    sa.Column('carries_arrow', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('transfer_id', name=op.f('pk_ledger_segments'))
    )
    op.create_table('ledger_folds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('through_transfer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('segment_count', sa.Integer(), nullable=False),
    sa.Column('account_count', sa.Integer(), nullable=False),
    sa.Column('carry_count', sa.Integer(), nullable=False),
    sa.Column('folded_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_folds')),
    sa.UniqueConstraint('through_transfer_id', name=op.f('uq_ledger_folds_through_transfer_id'))
    )


def downgrade() -> None:
    op.drop_table('ledger_folds')
    op.drop_table('ledger_segments')
