"""attribution runs, and the source of every accrual's scores

``attribution_runs`` records each attribution run (attribution/records.py); ``accrual_batches`` gains the
run its scores came from, or the reason the operator gave for external scores. Batches accrued before
keep both empty, and statements and ``verify`` say so.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attribution_runs",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("manifest_id", sa.String(length=200), nullable=False),
        sa.Column("merkle_root", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_sha256s", sa.Text(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("weaker", sa.Boolean(), nullable=False),
        sa.Column("per", sa.String(length=8), nullable=False),
        sa.Column("payee_agreement", sa.String(length=200), nullable=True),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("seeds", sa.Text(), nullable=False),
        sa.Column("engine", sa.Text(), nullable=False),
        sa.Column("validity", sa.Text(), nullable=True),
        sa.Column("output_count", sa.Integer(), nullable=False),
        sa.Column("key_count", sa.Integer(), nullable=False),
        sa.Column("scores_path", sa.Text(), nullable=False),
        sa.Column("scores_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifests.id"], name=op.f("fk_attribution_runs_manifest_id_manifests")
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_attribution_runs_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attribution_runs")),
    )
    with op.batch_alter_table("attribution_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attribution_runs_manifest_id"), ["manifest_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_attribution_runs_model_id"), ["model_id"], unique=False)
    with op.batch_alter_table("accrual_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scores_run_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("scores_external_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accrual_batches", schema=None) as batch_op:
        batch_op.drop_column("scores_external_reason")
        batch_op.drop_column("scores_run_id")
    with op.batch_alter_table("attribution_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attribution_runs_model_id"))
        batch_op.drop_index(batch_op.f("ix_attribution_runs_manifest_id"))
    op.drop_table("attribution_runs")
