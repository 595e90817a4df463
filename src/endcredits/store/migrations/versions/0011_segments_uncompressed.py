"""ledger segments' blobs stored without compression on PostgreSQL

A segment's two Arrow blobs (10-15 MB each for an accrual that pays 4 x 10^5 people) were compressed by
TOAST's pglz on every insert: 0.9-1.1 s a blob on machine B, against 0.13-0.25 s stored as they are
(``STORAGE EXTERNAL``: still out of line, not compressed). Batches that pay mostly new people write the
largest segments. SQLite stores blobs as they are already: nothing changes there.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_COLUMNS = ("legs_arrow", "carries_arrow")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE ledger_segments ALTER COLUMN {column} SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE ledger_segments ALTER COLUMN {column} SET STORAGE EXTENDED")
