"""usage intake: usage batches acknowledged once durable, accrued later

``usage_intake`` keeps each usage batch ``POST /api/v1/usage-batches`` acknowledged (202): its request body
as received, its batch id and content hash, in arrival order (``seq``), until an accrual worker of ``serve``
accrues it or refuses it (``state``; the body is emptied then). On PostgreSQL the body is stored without
compression (``STORAGE EXTERNAL``): Arrow streams hardly compress, and pglz would cost the acknowledgement.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_intake",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=200), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("received_at", sa.String(length=32), nullable=False),
        sa.Column("finished_at", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_usage_intake")),
        sa.UniqueConstraint("batch_id", name=op.f("uq_usage_intake_batch_id")),
    )
    op.create_index("ix_usage_intake_state_seq", "usage_intake", ["state", "seq"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE usage_intake ALTER COLUMN body SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_index("ix_usage_intake_state_seq", table_name="usage_intake")
    op.drop_table("usage_intake")
