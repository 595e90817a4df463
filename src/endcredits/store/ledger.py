"""Persisting ledger transfers: accounts on first use, legs, balances, the audit entry — one transaction.

Each account row holds its balance (and the last transfer that changed it) for reading; ``verify``
re-derives every balance from ``legs``. An account
that may not go negative is checked before commit; a failing check raises and the caller's
transaction rolls back, so nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any

from sqlalchemy import Connection, func, select

from endcredits.errors import ConflictError, LedgerError, NotFoundError, ValidationError, invariant
from endcredits.ledger import (
    ACCOUNT_KINDS,
    NEGATIVE_ALLOWED_KINDS,
    PostResult,
    TransferRequest,
    check_transfer,
    parse_account_key,
)
from endcredits.limits import SQL_PARAMS_PER_STATEMENT_MAX
from endcredits.store.audit import append_audit
from endcredits.store.bulk import amount_params, bulk_insert, bulk_update, fetch_all, select_in
from endcredits.store.engine import utc_now
from endcredits.store.schema import accounts, legs, transfers


def chunks(items: Sequence[Any], size: int = SQL_PARAMS_PER_STATEMENT_MAX // 4) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _known_accounts(conn: Connection, keys: list[str]) -> dict[str, tuple[int, int]]:
    """``key -> (account id, balance)`` for the keys that have an account."""
    return {k: (int(i), int(b)) for k, i, b in
            select_in(conn, "SELECT key, id, balance_microunits FROM accounts WHERE key {in}", keys)}


def _open_accounts(conn: Connection, keys: list[str], balances: list[int], transfer_id: int, when: str) -> dict[str, int]:
    """Create the accounts ``keys`` (none exists yet) with their first balances; returns their ids."""
    rows = []
    kinds = ACCOUNT_KINDS
    negative = NEGATIVE_ALLOWED_KINDS
    for key, balance in zip(keys, amount_params(conn, balances)):
        kind, _, rest = key.partition(":")
        holder, _, currency = rest.rpartition(":")
        if kind not in kinds or len(currency) != 3:
            parse_account_key(key)  # raises with the reason
        rows.append((key, kind, currency, holder or None, kind in negative, when, balance, transfer_id))
    rows.sort()  # key order: the unique key index takes them in one pass
    # Writers hold the store's write lock (Store.write), so the new rows are exactly those above the
    # highest id before the insert: read them back by id range instead of by 10^5 keys.
    id_before = int(fetch_all(conn, "SELECT COALESCE(MAX(id), 0) FROM accounts")[0][0])
    bulk_insert(conn, "accounts", ["key", "kind", "currency", "holder", "may_go_negative", "created_at",
                                   "balance_microunits", "last_transfer_id"], rows)
    new = dict(fetch_all(conn, f"SELECT key, id FROM accounts WHERE id > {id_before}"))
    invariant(len(new) == len(keys) and all(k in new for k in keys),
              "accounts created by another writer inside a write transaction")
    return new


def read_balances(conn: Connection, account_ids: Sequence[int]) -> dict[int, int]:
    rows = select_in(conn, "SELECT id, balance_microunits FROM accounts WHERE id {in}", list(account_ids))
    return {int(a): int(b) for a, b in rows}


def post_transfer(conn: Connection, req: TransferRequest, *, at: str | None = None) -> PostResult:
    """Post one balanced transfer inside the caller's write transaction. Idempotent by ``event_id``."""
    check_transfer(req)
    content = req.content_sha256()
    prior = conn.execute(select(transfers.c.id, transfers.c.content_sha256).where(transfers.c.event_id == req.event_id)).first()
    if prior is not None:
        if prior.content_sha256 != content:
            raise ConflictError(f"event id {req.event_id} was already posted with other content; use a new event id")
        return PostResult(req.event_id, "exists", prior.id)
    if (req.reverses_event_id is None) != (req.code != "reversal"):
        raise ValidationError(f"transfer {req.event_id}: code 'reversal' goes with reverses_event_id, and only with it")
    if req.reverses_event_id is not None:
        _check_reversal(conn, req)
    when = at or utc_now()
    keys = list(req.legs)
    amounts = list(req.legs.values())
    known = _known_accounts(conn, keys)
    before = [known[k][1] if k in known else 0 for k in keys] if known else [0] * len(keys)
    values = [b + x for b, x in zip(before, amounts)] if known else amounts
    for i in [i for i, v in enumerate(values) if v < 0]:
        if keys[i].partition(":")[0] not in NEGATIVE_ALLOWED_KINDS:
            raise LedgerError(
                f"transfer {req.event_id} would overdraw account {keys[i]} (balance {before[i]}, "
                f"leg {amounts[i]}); nothing was posted"
            )
    transfer_id = conn.execute(transfers.insert().values(
        event_id=req.event_id, code=req.code, currency=req.currency, content_sha256=content,
        reverses_event_id=req.reverses_event_id, memo=json.dumps(dict(sorted(req.memo.items()))),
        leg_count=len(req.legs), created_at=when,
    ).returning(transfers.c.id)).scalar_one()
    # A new account is created with its balance; a known one has its balance updated (no upsert, no
    # second row per account).
    fresh = [i for i, k in enumerate(keys) if k not in known]
    ids = {k: v[0] for k, v in known.items()}
    if fresh:
        ids.update(_open_accounts(conn, [keys[i] for i in fresh], [values[i] for i in fresh], transfer_id, when))
    account_ids = [ids[k] for k in keys]
    if known:
        updates = sorted((known[k][0], v) for k, v in zip(keys, values) if k in known)
        bulk_update(conn, "accounts", ["id"], ["id", "balance_microunits", "last_transfer_id"],
                    list(zip([a for a, _ in updates], amount_params(conn, [v for _, v in updates]), repeat(transfer_id))))
    # Legs go in account id order: B-tree inserts in key order cost half as much as scattered ones.
    legs_rows = sorted(zip(account_ids, amounts))
    bulk_insert(conn, "legs", ["transfer_id", "account_id", "amount_microunits"],
                list(zip(repeat(transfer_id), [a for a, _ in legs_rows], amount_params(conn, [x for _, x in legs_rows]))))
    append_audit(conn, "transfer", req.event_id, {
        "code": req.code, "currency": req.currency, "content_sha256": content, "legs": len(req.legs),
        "reverses": req.reverses_event_id,
    }, at=when)
    return PostResult(req.event_id, "created", transfer_id)


def _check_reversal(conn: Connection, req: TransferRequest) -> None:
    """Raise unless ``req`` may reverse the transfer it names."""
    assert req.reverses_event_id is not None
    original = conn.execute(select(transfers.c.id, transfers.c.code).where(
        transfers.c.event_id == req.reverses_event_id)).first()
    if original is None:
        raise NotFoundError(f"transfer {req.reverses_event_id} to reverse does not exist")
    if original.code == "accrual":
        raise LedgerError(
            f"transfer {req.reverses_event_id} is an accrual batch; its carried fractions live with its payees, "
            "so it is corrected by a new batch, not by a raw reversal"
        )
    if original.code == "reversal":
        raise LedgerError(f"transfer {req.reverses_event_id} is itself a reversal; post a new transfer instead")
    if original.code.startswith("payout_"):
        raise LedgerError(
            f"transfer {req.reverses_event_id} belongs to a payout batch; its items change only through "
            "`endcredits payouts status`, which keeps clearing equal to the pending items"
        )
    negated = {k: -v for k, v in load_transfer(conn, req.reverses_event_id).legs.items()}
    if dict(req.legs) != negated:
        raise LedgerError(f"transfer {req.event_id} does not negate every leg of {req.reverses_event_id}")
    already = conn.execute(select(transfers.c.event_id).where(transfers.c.reverses_event_id == req.reverses_event_id)).first()
    if already is not None:
        raise ConflictError(f"transfer {req.reverses_event_id} was already reversed by {already.event_id}")


def load_transfer(conn: Connection, event_id: str) -> TransferRequest:
    """The transfer posted under ``event_id``, as it was requested."""
    row = conn.execute(select(transfers).where(transfers.c.event_id == event_id)).first()
    if row is None:
        raise NotFoundError(f"no transfer with event id {event_id}")
    q = select(accounts.c.key, legs.c.amount_microunits).join(accounts, accounts.c.id == legs.c.account_id).where(
        legs.c.transfer_id == row.id)
    return TransferRequest(
        event_id=row.event_id, code=row.code, currency=row.currency,
        legs={r.key: r.amount_microunits for r in conn.execute(q)},
        memo=json.loads(row.memo), reverses_event_id=row.reverses_event_id,
    )


def account_balances(conn: Connection, *, kind: str | None = None, currency: str | None = None,
                     holder: str | None = None) -> dict[str, int]:
    """Balances by account key, from the balance table."""
    q = select(accounts.c.key, accounts.c.balance_microunits)
    if kind:
        q = q.where(accounts.c.kind == kind)
    if currency:
        q = q.where(accounts.c.currency == currency)
    if holder:
        q = q.where(accounts.c.holder == holder)
    return {r.key: r.balance_microunits for r in conn.execute(q)}


def derived_balances(conn: Connection) -> dict[int, int]:
    """Every account's balance summed from its legs, in Python (exact on SQLite too)."""
    out: dict[int, int] = {}
    result = conn.execution_options(yield_per=50_000).execute(select(legs.c.account_id, legs.c.amount_microunits))
    for account_id, amount in result:
        out[account_id] = out.get(account_id, 0) + amount
    return out


def transfer_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(transfers)).scalar_one())
