"""image fingerprints of version 5 read as version 6

``gray64-render-v6`` stores the very bytes and band keys of ``gray64-render-v5``; only the rule that
verifies a candidate changed (a fitted colour map with a window left out, besides the correlation). Rows
are compared only within their method, so without this a store's earlier drawings would never be found as
candidates for works registered after the upgrade. Renaming the method moves them under the new rule, with
nothing rendered again. The downgrade renames every v6 row back: the bytes are the same.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_V5, _V6 = "gray64-render-v5", "gray64-render-v6"


def _rename(old: str, new: str) -> None:
    for table in ("work_fingerprints", "fingerprint_bands"):
        op.execute(f"UPDATE {table} SET method = '{new}' WHERE method = '{old}'")


def upgrade() -> None:
    _rename(_V5, _V6)


def downgrade() -> None:
    _rename(_V6, _V5)
