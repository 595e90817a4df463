from __future__ import annotations

import numpy as np

from endcredits.ledger.accrue import UsageBatch, accrue
from endcredits.royalties import parse_agreement
from endcredits.store.ledger import account_balances
from endcredits.store.catalog import add_model
from endcredits.store.registry import add_person, name_ids, verify_person

AGREEMENT = """
id = "t"
version = 1
currency = "EUR"
pool_rate = "1/3"
rights_holder_share = "0.5"
lineage_pass_through = "0.2"
payout_threshold = "1.00"
escrow_period_days = 30
[role_weights]
"endcredits:composer" = 1
"""


def test_accrue_conserves(store):
    with store.write() as conn:
        alice = add_person(conn, "alice")
        verify_person(conn, alice, verified_by="guild")
        names = name_ids(conn, ["Bob"])
        add_model(conn, "m", ["commercial"], "test")
    usage = UsageBatch(
        output_ids=["o1", "o2"], model_ids=["m", "m"], revenue_microunits=[100, 7], currencies=["EUR", "EUR"],
        occurred_at=["2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"], offsets=np.array([0, 2, 3]),
        payee=[f"person:{alice}", f"name:{names['Bob']}", f"person:{alice}"], weights=np.array([1, 2, 1]),
    )
    from endcredits.store.engine import Store
    assert isinstance(store, Store)
    s = accrue(store, usage, parse_agreement(AGREEMENT), event_id="b1")
    assert s.pool_microunits == 33 + 2
    with store.read() as conn:
        bal = account_balances(conn)
    assert sum(bal.values()) == 0
    assert s.posted_microunits + s.escrow_microunits + s.suspense_delta_microunits == s.pool_microunits
