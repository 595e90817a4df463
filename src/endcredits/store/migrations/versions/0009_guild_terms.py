"""guild terms and the operator's trusted issuers

``trusted_issuers`` is the operator's list of the issuers (guilds, unions) trusted to speak for their
members; ``guild_terms`` keeps each version of a trusted guild's terms for its members (consent defaults per
use, minimum role weights, escrow policy); an API key may be a guild's, naming its issuer.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "trusted_issuers",
        sa.Column("issuer", sa.String(length=200), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("added_at", sa.String(length=32), nullable=False),
        sa.Column("removed_at", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("issuer", name=op.f("pk_trusted_issuers")),
    )
    op.create_table(
        "guild_terms",
        sa.Column("id", _KEY, autoincrement=True, nullable=False),
        sa.Column("issuer", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guild_terms")),
        sa.UniqueConstraint("issuer", "version", name="uq_guild_terms_issuer_version"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issuer", sa.String(length=200), nullable=True))
        batch_op.drop_constraint(batch_op.f("ck_api_keys_role"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_api_keys_role"), "role IN ('operator', 'auditor', 'guild')")
        batch_op.create_check_constraint(
            batch_op.f("ck_api_keys_guild_issuer"), "(role = 'guild') = (issuer IS NOT NULL)"
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_api_keys_guild_issuer"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_api_keys_role"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_api_keys_role"), "role IN ('operator', 'auditor')")
        batch_op.drop_column("issuer")
    op.drop_table("guild_terms")
    op.drop_table("trusted_issuers")
