"""When the ledger folds its pending segments into the account rows and the snapshot.

A fold costs a row per distinct account with a row that it touches and one snapshot row (rewritten whole:
its size grows with the payees who have no row), however many pending segments touched them; reading
through pending segments costs every reader a little more per segment. So an accrual folds
first only when ``FOLD_PENDING_SEGMENTS_MAX`` segments or ``FOLD_PENDING_LEGS_MAX`` legs are pending
(``fold_due``), and a long-running process folds in its idle time (``fold_now``, which ``serve`` calls
once no usage batch has come for ``FOLD_IDLE_S``), so the next batches find nothing pending.
"""

from __future__ import annotations

from sqlalchemy import Connection

from endcredits.ledger.records import FoldResult, fold_pending
from endcredits.ledger.segments import pending_size
from endcredits.limits import FOLD_PENDING_LEGS_MAX, FOLD_PENDING_SEGMENTS_MAX
from endcredits.store.engine import Store


def fold_due(conn: Connection) -> bool:
    """Whether enough is pending that an accrual should fold before it posts."""
    segments, legs_pending = pending_size(conn)
    return segments >= FOLD_PENDING_SEGMENTS_MAX or legs_pending >= FOLD_PENDING_LEGS_MAX


def fold_now(store: Store) -> FoldResult | None:
    """Fold whatever is pending, in one write transaction; None (and nothing written) when nothing is."""
    with store.read() as conn:
        if pending_size(conn)[0] == 0:
            return None
    with store.write() as conn:
        return fold_pending(conn)
