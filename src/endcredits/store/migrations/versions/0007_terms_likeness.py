"""digital-replica consent, suspensions, estates, manifest projects

A consent grant may describe its use, name the one project it covers and the estate person who granted for
a deceased subject; ``consent_suspensions`` records a person's or an issuer's suspension of consent; a
person may be recorded deceased with an estate; a manifest names the project it was built for.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deceased_at", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("estate_person_id", _KEY, nullable=True))
    with op.batch_alter_table("consent_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("use_description", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("project", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("granted_by_person_id", _KEY, nullable=True))
    with op.batch_alter_table("manifests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("project", sa.String(length=200), nullable=True))
    op.create_table(
        "consent_suspensions",
        sa.Column("id", _KEY, autoincrement=True, nullable=False),
        sa.Column("subject_kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=200), nullable=False),
        sa.Column("uses", sa.String(length=500), nullable=False),
        sa.Column("starts_at", sa.String(length=32), nullable=False),
        sa.Column("ends_at", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.CheckConstraint("subject_kind IN ('person', 'issuer')", name=op.f("ck_consent_suspensions_subject_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_suspensions")),
    )
    with op.batch_alter_table("consent_suspensions", schema=None) as batch_op:
        batch_op.create_index("ix_consent_suspensions_subject", ["subject_kind", "subject_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("consent_suspensions", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_suspensions_subject")
    op.drop_table("consent_suspensions")
    with op.batch_alter_table("manifests", schema=None) as batch_op:
        batch_op.drop_column("project")
    with op.batch_alter_table("consent_grants", schema=None) as batch_op:
        batch_op.drop_column("granted_by_person_id")
        batch_op.drop_column("project")
        batch_op.drop_column("use_description")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_column("estate_person_id")
        batch_op.drop_column("deceased_at")
