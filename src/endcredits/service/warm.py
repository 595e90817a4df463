"""Warming a started service before it takes requests, so its first usage batches wait for nothing the
next ones find ready.

In a fresh process the first acknowledgement of a batch of 10,000 lines took 0.25-0.6 s alone, against
20-45 ms for the next (SQLite, cProfile): pyarrow imports pandas the first time a column is read into
NumPy (0.39 s), SQLite's intake file is opened (70 ms), the check's SQL is compiled. With 8 clients the
first requests paid it together, on one interpreter. ``warm_up`` runs the check path once as
``ingest_usage`` runs it (``check_usage``: parse, build the lines, ``check_accrual``), which only reads, on
a synthetic batch of a few lines sent as an Arrow stream and as JSON, under the store's newest agreement
and a model of its newest manifest. A store without them refuses the batch part-way (after the parse and
the imports, which are most of it): the refusal is the expected end of the warm-up. The intake is opened
and its backlog read. Nothing is written to the ledger or the intake.

Then the objects alive after start-up (modules and libraries, about 160,000) are frozen out of the garbage
collector (``gc.freeze``): a full collection scanned them all and stopped every thread for 90-160 ms (in
process, after a few batches); frozen, it took 1 ms. None fell within a served run of 50 batches, but a
service that runs for hours meets them.
"""

from __future__ import annotations

import gc
import json
import time

from endcredits.errors import EndcreditsError
from endcredits.ledger import intake
from endcredits.manifest.records import manifests_list
from endcredits.money import format_amount
from endcredits.royalties.records import newest_agreements
from endcredits.service.app import json_usage
from endcredits.service.ingest import JSON_TYPE, check_usage
from endcredits.store.engine import Store

WARM_UP_ID = "endcredits-warm-up"
"""The synthetic batch's id, and the prefix of its outputs' ids."""
_OUTPUTS = 4
"""Outputs in the synthetic batch, each paying two payees."""


def warm_up(store: Store, *, freeze: bool = True) -> float:
    """Check a synthetic usage batch once, as an Arrow stream and as JSON, open the intake and read its
    backlog, then (``freeze``) freeze the live objects out of the garbage collector. Reads only: nothing is
    written to the ledger or the intake. Returns the seconds it took."""
    from endcredits.royalties.usage_arrow import ARROW_STREAM_TYPE, payee_stream_of_json

    began = time.perf_counter()
    with intake.intake_store(store).read() as conn:
        intake.backlog(conn)
        intake.intake_batch(conn, WARM_UP_ID)
    batch = _synthetic_batch(store)
    usage = json_usage(store)
    for body, kind in ((payee_stream_of_json(batch), ARROW_STREAM_TYPE), (json.dumps(batch).encode(), JSON_TYPE)):
        try:
            check_usage(store, body, kind, usage)
        except EndcreditsError:  # no agreement, model or payee that the synthetic batch names: it was read
            pass
    if freeze:
        gc.collect()
        gc.freeze()
    return time.perf_counter() - began


def _synthetic_batch(store: Store) -> dict[str, object]:
    """A batch under the store's newest agreement (by id), for a model of its newest manifest."""
    with store.read() as conn:
        agreements = newest_agreements(conn)
        manifests = manifests_list(conn, limit=1)
    agreement_id, agreement = next(iter(agreements.items()), (WARM_UP_ID, None))
    currency = agreement.currency if agreement is not None else "EUR"
    outputs = [
        {
            "output_id": f"{WARM_UP_ID}-{i}",
            "model_id": manifests[0].model_id if manifests else WARM_UP_ID,
            "revenue": format_amount(10**6, currency),
            "currency": currency,
            "occurred_at": "2026-01-01T00:00:00Z",
            "payee_scores": {f"person:{i + 1}": 0.5, f"name:{i + 1}": 0.25},
        }
        for i in range(_OUTPUTS)
    ]
    return {"batch_id": WARM_UP_ID, "agreement_id": agreement_id, "external": {"reason": "warm-up"}, "outputs": outputs}
