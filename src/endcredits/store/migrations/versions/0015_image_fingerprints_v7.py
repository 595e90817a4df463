"""image fingerprints of version 6 read as version 7

``gray64-render-v7`` stores the very bytes and band keys of ``gray64-render-v6``; only the rule that
verifies a candidate changed (a second try with the drawing rendered finer and reduced, where a drawing and
a raster picture do not match). Rows are compared only within their method, so without this a store's
earlier drawings would never be found as candidates for works registered after the upgrade. The downgrade
renames every v7 row back: the bytes are the same.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_V6, _V7 = "gray64-render-v6", "gray64-render-v7"


def _rename(old: str, new: str) -> None:
    for table in ("work_fingerprints", "fingerprint_bands"):
        op.execute(f"UPDATE {table} SET method = '{new}' WHERE method = '{old}'")


def upgrade() -> None:
    _rename(_V6, _V7)


def downgrade() -> None:
    _rename(_V7, _V6)
