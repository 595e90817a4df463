"""output contents

``output_contents`` says, per output, which content-addressed bytes under ``DATA/outputs/`` the operator
supplied as what the model generated (royalties/output_contents.py); statements show it.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "output_contents",
        sa.Column("output_id", sa.String(length=200), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("output_id", name=op.f("pk_output_contents")),
    )


def downgrade() -> None:
    op.drop_table("output_contents")
