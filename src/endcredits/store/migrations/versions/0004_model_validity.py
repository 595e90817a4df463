"""validity per model

``model_validity`` records each measurement of a model's linear datamodeling score against retraining
(attribution/validity_records.py); the latest row of a model is the figure its statements show.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_validity",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("manifest_id", sa.String(length=200), nullable=False),
        sa.Column("merkle_root", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=False),
        sa.Column("model_kind", sa.String(length=200), nullable=False),
        sa.Column("train_function", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("settings_sha256", sa.String(length=64), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("lds", sa.Float(), nullable=True),
        sa.Column("lds_seed_mean", sa.Float(), nullable=True),
        sa.Column("seed_to_seed_spearman", sa.Float(), nullable=True),
        sa.Column("ceiling_one_seed", sa.Float(), nullable=True),
        sa.Column("ceiling_seed_mean", sa.Float(), nullable=True),
        sa.Column("subsets", sa.Integer(), nullable=False),
        sa.Column("seeds", sa.Integer(), nullable=False),
        sa.Column("outputs", sa.Integer(), nullable=False),
        sa.Column("works", sa.Integer(), nullable=False),
        sa.Column("draw_seed", sa.Integer(), nullable=False),
        sa.Column("lds_per_output", sa.Text(), nullable=False),
        sa.Column("measured_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifests.id"], name=op.f("fk_model_validity_manifest_id_manifests")
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_model_validity_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_validity")),
    )
    with op.batch_alter_table("model_validity", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_validity_model_id"), ["model_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_validity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_validity_model_id"))
    op.drop_table("model_validity")
