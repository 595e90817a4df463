"""route versions: a counter that every change to a payee's route moves, so routes can be cached

An accrual routes every payee it pays: a name unclaimed goes to escrow under itself, a claimed one to its
person (payable when verified). Read from ``names`` per batch, that was a probe per payee, most of an
accrual's routing for a batch of new payees. ``route_versions`` holds one row: ``claims``, moved by triggers
whenever a name's claim or a person's verification changes (or a person row is removed),
``names_removed``, moved when a name row is removed (no code removes one), and a random ``store_token``
set here, which tells one database from another. ``ledger.routes`` caches the registered names and the
claimed ones per store and reads the claims again only when ``claims`` has moved, the registered names
again only when ``names_removed`` has. ``ix_names_claimed`` (names with a person only) makes the claims'
read as small as the claims.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# (trigger, table, event, condition on the row, the counter it moves)
_TRIGGERS = (
    ("route_claim_changed", "names", "UPDATE OF person_id", "OLD.person_id IS NOT NEW.person_id", "claims"),
    ("route_name_claimed", "names", "INSERT", "NEW.person_id IS NOT NULL", "claims"),
    ("route_name_removed", "names", "DELETE", None, "names_removed"),
    (
        "route_verified_changed",
        "people",
        "UPDATE OF verified_at",
        "(OLD.verified_at IS NULL) <> (NEW.verified_at IS NULL)",
        "claims",
    ),
    ("route_person_removed", "people", "DELETE", None, "claims"),
)
_COUNTERS = ("claims", "names_removed")


def upgrade() -> None:
    op.create_table(
        "route_versions",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("store_token", sa.String(length=32), nullable=False),
        sa.Column("claims", _KEY, nullable=False),
        sa.Column("names_removed", _KEY, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_route_versions")),
    )
    token = uuid.uuid4().hex
    op.execute(
        sa.text(f"INSERT INTO route_versions (id, store_token, claims, names_removed) VALUES (1, '{token}', 0, 0)")
    )
    op.create_index(
        "ix_names_claimed",
        "names",
        ["person_id"],
        sqlite_where=sa.text("person_id IS NOT NULL"),
        postgresql_where=sa.text("person_id IS NOT NULL"),
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        for counter in _COUNTERS:
            op.execute(
                f"CREATE FUNCTION route_versions_{counter}() RETURNS trigger LANGUAGE plpgsql "
                f"AS $$ BEGIN UPDATE route_versions SET {counter} = {counter} + 1; RETURN NULL; END $$"
            )
    for name, table, event, condition, counter in _TRIGGERS:
        if postgresql:
            when = f"WHEN ({condition.replace(' IS NOT ', ' IS DISTINCT FROM ')}) " if condition else ""
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW {when}"
                f"EXECUTE FUNCTION route_versions_{counter}()"
            )
        else:
            when = f"WHEN {condition} " if condition else ""
            bump = f"UPDATE route_versions SET {counter} = {counter} + 1"
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW {when}BEGIN {bump}; END")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}" if postgresql else f"DROP TRIGGER {name}")
    if postgresql:
        for counter in _COUNTERS:
            op.execute(f"DROP FUNCTION route_versions_{counter}()")
    op.drop_index("ix_names_claimed", table_name="names")
    op.drop_table("route_versions")
