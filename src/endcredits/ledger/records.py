"""Persisting ledger transfers: accounts on first use, legs, balances, the audit entry — one transaction.

Two ways in. ``post_transfer`` (escrow claims, payouts, reversals) writes a leg row per account and
updates each account's balance row. ``post_accrual`` writes an accrual's legs and its payees' carried
fractions as one columnar segment (``ledger.segments``); the balance and carry rows catch up when
``fold_pending`` folds the pending segments into them, which every other writer does first and an
accrual does when enough is pending (``FOLD_PENDING_*`` in ``limits``). Until then readers read through:
``account_balances`` and ``read_carries`` add what the pending segments hold.

Each account row holds its balance as of the last fold (and the last transfer that changed it);
``verify`` re-derives every balance from ``legs`` and the segments. An account that may not go
negative is checked before commit; a failing check raises and the caller's transaction rolls back, so
nothing is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from itertools import repeat
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from endcredits.errors import ConflictError, LedgerError, NotFoundError, ValidationError, invariant
from endcredits.ledger import (
    ACCOUNT_KINDS,
    NEGATIVE_ALLOWED_KINDS,
    LegColumns,
    PostResult,
    TransferRequest,
    check_transfer,
    parse_account_key,
)
from endcredits.ledger.carry_cache import cached_carries
from endcredits.ledger.fold_columns import LegSums, folded_carries, summed_legs
from endcredits.ledger.segments import (
    Segment,
    fold_watermark,
    insert_segment,
    iter_carries,
    iter_segments,
    latest_carries,
    matching,
    pending_carries,
    pending_deltas,
)
from endcredits.ledger.snapshot import SNAPSHOT_KINDS, Snapshot, has_snapshot, read_snapshot, write_snapshot
from endcredits.limits import (
    FOLD_SQLITE_CACHE_KIB,
    SUBUNITS_PER_MICROUNIT,
)
from endcredits.money import check_currency
from endcredits.store.audit import append_audit
from endcredits.store.bulk import (
    amount_params,
    bulk_insert,
    bulk_update,
    fetch_all,
    gc_paused,
    select_in,
    select_joined,
    sqlite_cache_at_least,
)
from endcredits.store.engine import utc_now
from endcredits.store.schema import (
    accounts,
    accrual_batches,
    carries,
    ledger_folds,
    legs,
    outputs,
    transfers,
)

if TYPE_CHECKING:  # numpy and pyarrow are imported where segments are decoded: a plain read starts fast
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa


def _known_accounts(conn: Connection, keys: list[str]) -> dict[str, tuple[int, int]]:
    """``key -> (account id, balance)`` for the keys that have an account."""
    return {
        k: (int(i), int(b))
        for k, i, b in select_joined(
            conn, "SELECT a.key, a.id, a.balance_microunits FROM {values} JOIN accounts a ON a.key = v.value", keys
        )
    }


def _key_parts(keys: list[str]) -> tuple[list[str], list[str], list[str | None]]:
    """Each account key's kind, currency and holder (None for an operator account), split by Arrow in one
    pass without a regular expression (a fold opens 10^6 accounts); a malformed key raises, naming it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not keys:
        return [], [], []
    values = pa.array(keys, pa.string())
    parts = pc.split_pattern(values, ":", max_splits=1)
    if pc.all(pc.equal(pc.list_value_length(parts), 2)).as_py():
        kinds = pc.list_element(parts, 0)
        rest = pc.list_element(parts, 1)  # "holder:CCY" or "CCY"
        size = pc.utf8_length(rest)
        currencies = pc.utf8_slice_codeunits(rest, -3)
        bare = pc.equal(size, 3)
        well_formed = (
            pc.all(pc.is_in(kinds, value_set=pa.array(ACCOUNT_KINDS))).as_py()
            and not pc.any(pc.match_substring(currencies, ":")).as_py()
            and pc.all(pc.or_(bare, pc.equal(pc.utf8_slice_codeunits(rest, -4, -3), ":"))).as_py()
            and pc.all(pc.greater_equal(size, 3)).as_py()
        )
        if well_formed:
            holders = pc.if_else(bare, pa.scalar(None, pa.string()), pc.utf8_slice_codeunits(rest, 0, -4))
            holder_list: list[str | None] = [h or None for h in holders.to_pylist()]
            return kinds.to_pylist(), currencies.to_pylist(), holder_list
    for key in keys:
        parse_account_key(key)  # raises with the reason
    raise ValidationError(f"malformed account key among {len(keys)} keys")


def _open_accounts(
    conn: Connection,
    keys: list[str],
    balances: list[int],
    transfer_ids: Sequence[int],
    when: str,
    *,
    return_ids: bool = True,
) -> dict[str, int]:
    """Create the accounts ``keys`` (none exists yet) with their first balances and the transfer that last
    changed each; returns their ids (``return_ids=False``: an empty dict; a fold needs no ids, and reading
    10^6 of them back took a fifth of its time)."""
    kinds, currencies, holders = _key_parts(keys)
    negative = [k in NEGATIVE_ALLOWED_KINDS for k in kinds]
    rows = list(
        zip(keys, kinds, currencies, holders, negative, repeat(when), amount_params(conn, balances), transfer_ids)
    )
    rows.sort()  # key order: the unique key index takes them in one pass
    # Writers hold the store's write lock (Store.write), so the new rows are exactly those above the
    # highest id before the insert: read them back by id range instead of by 10^5 keys.
    id_before = int(fetch_all(conn, "SELECT COALESCE(MAX(id), 0) FROM accounts")[0][0])
    bulk_insert(
        conn,
        "accounts",
        [
            "key",
            "kind",
            "currency",
            "holder",
            "may_go_negative",
            "created_at",
            "balance_microunits",
            "last_transfer_id",
        ],
        rows,
    )
    # bulk_insert refused any key already present, so the rows above id_before are exactly ``keys`` unless
    # another writer added some: their count says which.
    count = int(fetch_all(conn, f"SELECT COUNT(*) FROM accounts WHERE id > {id_before}")[0][0])
    invariant(count == len(keys), "accounts created by another writer inside a write transaction")
    return dict(fetch_all(conn, f"SELECT key, id FROM accounts WHERE id > {id_before}")) if return_ids else {}


def _prior_posting(conn: Connection, req: TransferRequest, content: str) -> PostResult | None:
    """``exists`` when ``req.event_id`` was posted with this content; a conflict with other content."""
    prior = conn.execute(
        select(transfers.c.id, transfers.c.content_sha256).where(transfers.c.event_id == req.event_id)
    ).first()
    if prior is None:
        return None
    if prior.content_sha256 != content:
        raise ConflictError(f"event id {req.event_id} was already posted with other content; use a new event id")
    return PostResult(req.event_id, "exists", prior.id)


def _insert_transfer(conn: Connection, req: TransferRequest, content: str, when: str) -> int:
    return int(
        conn.execute(
            transfers.insert()
            .values(
                event_id=req.event_id,
                code=req.code,
                currency=req.currency,
                content_sha256=content,
                reverses_event_id=req.reverses_event_id,
                memo=json.dumps(dict(sorted(req.memo.items()))),
                leg_count=len(req.legs),
                created_at=when,
            )
            .returning(transfers.c.id)
        ).scalar_one()
    )


def post_transfer(conn: Connection, req: TransferRequest, *, at: str | None = None) -> PostResult:
    """Post one balanced transfer inside the caller's write transaction. Idempotent by ``event_id``."""
    check_transfer(req)
    content = req.content_sha256()
    prior = _prior_posting(conn, req, content)
    if prior is not None:
        return prior
    if (req.reverses_event_id is None) != (req.code != "reversal"):
        raise ValidationError(f"transfer {req.event_id}: code 'reversal' goes with reverses_event_id, and only with it")
    if req.reverses_event_id is not None:
        _check_reversal(conn, req)
    when = at or utc_now()
    fold_pending(conn, at=when)  # the balances below are the rows': nothing may be pending behind them
    keys = list(req.legs)
    amounts = list(req.legs.values())
    known = _known_accounts(conn, keys)
    held = snapshot_balances(conn, [k for k in keys if k not in known])  # opened below with these balances
    before = [known[k][1] if k in known else held.get(k, 0) for k in keys]
    values = [b + x for b, x in zip(before, amounts)]
    for i in [i for i, v in enumerate(values) if v < 0]:
        if keys[i].partition(":")[0] not in NEGATIVE_ALLOWED_KINDS:
            raise LedgerError(
                f"transfer {req.event_id} would overdraw account {keys[i]} (balance {before[i]}, "
                f"leg {amounts[i]}); nothing was posted"
            )
    transfer_id = _insert_transfer(conn, req, content, when)
    # A new account is created with its balance; a known one has its balance updated (no upsert, no
    # second row per account).
    fresh = [i for i, k in enumerate(keys) if k not in known]
    ids = {k: v[0] for k, v in known.items()}
    if fresh:
        ids.update(
            _open_accounts(conn, [keys[i] for i in fresh], [values[i] for i in fresh], [transfer_id] * len(fresh), when)
        )
    account_ids = [ids[k] for k in keys]
    if known:
        updates = sorted((known[k][0], v) for k, v in zip(keys, values) if k in known)
        bulk_update(
            conn,
            "accounts",
            ["id"],
            ["id", "balance_microunits", "last_transfer_id"],
            list(zip([a for a, _ in updates], amount_params(conn, [v for _, v in updates]), repeat(transfer_id))),
        )
    # Legs go in account id order: B-tree inserts in key order cost half as much as scattered ones.
    legs_rows = sorted(zip(account_ids, amounts))
    bulk_insert(
        conn,
        "legs",
        ["transfer_id", "account_id", "amount_microunits"],
        list(zip(repeat(transfer_id), [a for a, _ in legs_rows], amount_params(conn, [x for _, x in legs_rows]))),
    )
    append_audit(
        conn,
        "transfer",
        req.event_id,
        {
            "code": req.code,
            "currency": req.currency,
            "content_sha256": content,
            "legs": len(req.legs),
            "reverses": req.reverses_event_id,
        },
        at=when,
    )
    return PostResult(req.event_id, "created", transfer_id)


def _check_reversal(conn: Connection, req: TransferRequest) -> None:
    """Raise unless ``req`` may reverse the transfer it names."""
    assert req.reverses_event_id is not None
    original = conn.execute(
        select(transfers.c.id, transfers.c.code).where(transfers.c.event_id == req.reverses_event_id)
    ).first()
    if original is None:
        raise NotFoundError(f"transfer {req.reverses_event_id} to reverse does not exist")
    if original.code == "accrual":
        raise LedgerError(
            f"transfer {req.reverses_event_id} is an accrual batch; its carried fractions live with its payees, "
            "so it is corrected by a new batch, not by a raw reversal"
        )
    if original.code == "reversal":
        raise LedgerError(f"transfer {req.reverses_event_id} is itself a reversal; post a new transfer instead")
    if original.code == "escrow_expiry":
        raise LedgerError(
            f"transfer {req.reverses_event_id} moved escrow past its period to a fund; it is final, and a late "
            "claim is paid from the fund (`endcredits escrow claim`)"
        )
    if original.code.startswith("payout_"):
        raise LedgerError(
            f"transfer {req.reverses_event_id} belongs to a payout batch; its items change only through "
            "`endcredits payouts status`, which keeps clearing equal to the pending items"
        )
    negated = {k: -v for k, v in load_transfer(conn, req.reverses_event_id).legs.items()}
    if dict(req.legs) != negated:
        raise LedgerError(f"transfer {req.event_id} does not negate every leg of {req.reverses_event_id}")
    already = conn.execute(
        select(transfers.c.event_id).where(transfers.c.reverses_event_id == req.reverses_event_id)
    ).first()
    if already is not None:
        raise ConflictError(f"transfer {req.reverses_event_id} was already reversed by {already.event_id}")


def load_transfer(conn: Connection, event_id: str) -> TransferRequest:
    """The transfer posted under ``event_id``, as it was requested."""
    row = conn.execute(select(transfers).where(transfers.c.event_id == event_id)).first()
    if row is None:
        raise NotFoundError(f"no transfer with event id {event_id}")
    q = (
        select(accounts.c.key, legs.c.amount_microunits)
        .join(accounts, accounts.c.id == legs.c.account_id)
        .where(legs.c.transfer_id == row.id)
    )
    found = {r.key: r.amount_microunits for r in conn.execute(q)}
    for seg in iter_segments(conn, transfer_ids=[row.id]):  # an accrual's legs are its segment
        found.update(seg.legs())
    return TransferRequest(
        event_id=row.event_id,
        code=row.code,
        currency=row.currency,
        legs=found,
        memo=json.loads(row.memo),
        reverses_event_id=row.reverses_event_id,
    )


def account_balances(
    conn: Connection,
    *,
    kind: str | None = None,
    currency: str | None = None,
    holder: str | None = None,
    holders: Collection[str] | None = None,
) -> dict[str, int]:
    """Balances by account key, as of now: the account rows plus what pending segments add. ``holder``
    or ``holders`` (a few, such as a person and the names they claimed) keep only their accounts."""
    if holder is not None:
        holders = [holder]
    q = select(accounts.c.key, accounts.c.balance_microunits)
    if kind:
        q = q.where(accounts.c.kind == kind)
    if currency:
        q = q.where(accounts.c.currency == currency)
    if holders is not None:
        q = q.where(accounts.c.holder.in_(sorted(holders)))
    out = {r.key: r.balance_microunits for r in conn.execute(q)}
    if (kind is None or kind in SNAPSHOT_KINDS) and has_snapshot(conn):
        snap = read_snapshot(conn, carries=False)
        at, keys = matching(snap.keys, kind, currency, holders)
        out.update(zip(keys, snap.balances[at].tolist()))  # no key is both: see ledger.snapshot
    for key, delta in pending_deltas(conn, kind=kind, currency=currency, holders=holders).items():
        out[key] = out.get(key, 0) + delta
    return out


@dataclass(frozen=True)
class BalanceTotals:
    """One currency's balances summed by account kind, in microunits, as of now.

    ``pool_microunits`` is what the residual pools funded (their balance, negated). Every transfer
    balances, so what the pools funded is all somewhere: ``pool = paid + escrow + fund + suspense``, where
    paid is payable (owed to verified people) + clearing (payouts sent) + bank (payouts settled), and fund
    is unclaimed money moved past its escrow period to the fund its agreement names (still claimable)."""

    currency: str
    pool_microunits: int
    payable_microunits: int
    escrow_microunits: int
    fund_microunits: int
    suspense_microunits: int
    clearing_microunits: int
    bank_microunits: int

    @property
    def paid_microunits(self) -> int:
        return self.payable_microunits + self.clearing_microunits + self.bank_microunits

    @property
    def conserved(self) -> bool:
        held = self.escrow_microunits + self.fund_microunits + self.suspense_microunits
        return self.pool_microunits == self.paid_microunits + held

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "pool_microunits": self.pool_microunits,
            "payable_microunits": self.payable_microunits,
            "escrow_microunits": self.escrow_microunits,
            "fund_microunits": self.fund_microunits,
            "suspense_microunits": self.suspense_microunits,
            "clearing_microunits": self.clearing_microunits,
            "bank_microunits": self.bank_microunits,
            "paid_microunits": self.paid_microunits,
            "conserved": self.conserved,
        }


invariant(
    set(ACCOUNT_KINDS) == {f.name.removesuffix("_microunits") for f in fields(BalanceTotals)} - {"currency"},
    "BalanceTotals needs a field for every account kind",
)


def balance_totals(conn: Connection) -> dict[str, BalanceTotals]:
    """Per currency (sorted), every account kind's balances summed as of now: the account rows streamed
    and what pending segments add, in Python integers (exact at any size, on SQLite too)."""
    sums: dict[str, dict[str, int]] = {}
    rows = conn.execution_options(yield_per=50_000).execute(
        select(accounts.c.kind, accounts.c.currency, accounts.c.balance_microunits)
    )
    for kind, currency, balance in rows:
        per = sums.setdefault(currency, dict.fromkeys(ACCOUNT_KINDS, 0))
        per[kind] += balance
    if has_snapshot(conn):
        for (kind, currency), total in _snapshot_totals(read_snapshot(conn, carries=False)).items():
            sums.setdefault(currency, dict.fromkeys(ACCOUNT_KINDS, 0))[kind] += total
    for key, delta in pending_deltas(conn).items():
        kind, _, currency = parse_account_key(key)
        per = sums.setdefault(currency, dict.fromkeys(ACCOUNT_KINDS, 0))
        per[kind] += delta
    return {
        c: BalanceTotals(
            c,
            pool_microunits=-per["pool"],
            payable_microunits=per["payable"],
            escrow_microunits=per["escrow"],
            fund_microunits=per["fund"],
            suspense_microunits=per["suspense"],
            clearing_microunits=per["clearing"],
            bank_microunits=per["bank"],
        )
        for c, per in sorted(sums.items())
    }


def _snapshot_totals(snap: Snapshot) -> dict[tuple[str, str], int]:
    """The snapshot's balances summed per (kind, currency), exactly."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[tuple[str, str], int] = {}
    if len(snap.keys) == 0:
        return out
    currencies = pc.utf8_slice_codeunits(snap.keys, -3)
    for currency in pc.unique(currencies).to_pylist():
        of_currency = pc.equal(currencies, pa.scalar(currency, pa.string()))
        for kind in SNAPSHOT_KINDS:
            at = pc.indices_nonzero(pc.and_(of_currency, pc.starts_with(snap.keys, f"{kind}:"))).to_numpy()
            out[(kind, currency)] = int(snap.balances[at].astype(object).sum())
    return out


def snapshot_balances(conn: Connection, keys: list[str]) -> dict[str, int]:
    """The balances the snapshot holds for those of ``keys`` it holds (accounts without a row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = [k for k in keys if k.partition(":")[0] in SNAPSHOT_KINDS]
    if not wanted or not has_snapshot(conn):
        return {}
    snap = read_snapshot(conn, carries=False)
    where = pc.index_in(pa.array(wanted, pa.string()), value_set=snap.keys)
    return {k: int(snap.balances[i]) for k, i in zip(wanted, where.to_pylist()) if i is not None}


def snapshot_held(conn: Connection, kind: str, holders: Collection[str]) -> list[tuple[str, str, int, int]]:
    """``(key, currency, balance, last transfer id)`` of the snapshot's accounts of ``kind`` held for
    ``holders``: what ``escrow`` releases besides the rows."""
    if kind not in SNAPSHOT_KINDS or not has_snapshot(conn):
        return []
    snap = read_snapshot(conn, carries=False)
    at, keys = matching(snap.keys, kind, None, holders)
    return [
        (key, key.rsplit(":", 1)[1], int(b), int(t))
        for key, b, t in zip(keys, snap.balances[at].tolist(), snap.last[at].tolist())
    ]


def accrued_by_account(
    conn: Connection,
    *,
    currency: str | None = None,
    period: str | None = None,
    keys: Collection[str] | None = None,
    codes: tuple[str, ...] = ("accrual",),
) -> dict[str, int]:
    """What accrual transfers (or the transfers of ``codes``, each with an event id ending ``/CCY/YYYY-MM``)
    credited or debited per account key (of one currency and period, and only ``keys``, when given), whether
    their legs are rows or a segment."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if period is not None and currency is None:
        raise ValidationError("a period is one currency's: give the currency with it")
    q = select(transfers.c.id, transfers.c.event_id).where(transfers.c.code.in_(codes))
    if currency:
        q = q.where(transfers.c.currency == currency)
    suffix = f"/{currency}/{period}" if period else ""  # an accrual's event id is BATCH/CCY/YYYY-MM
    ids = [int(r.id) for r in conn.execute(q) if r.event_id.endswith(suffix)]
    out: dict[str, int] = {}
    if not ids:
        return out
    rows = select_in(
        conn,
        "SELECT a.key, l.amount_microunits FROM legs l JOIN accounts a ON a.id = l.account_id WHERE l.transfer_id {in}",
        ids,
    )
    wanted = set(keys) if keys is not None else None
    for key, amount in rows:
        if wanted is None or key in wanted:
            out[key] = out.get(key, 0) + int(amount)
    value_set = pa.array(sorted(wanted), pa.string()) if wanted is not None else None
    for seg in iter_segments(conn, transfer_ids=ids):
        accounts_, amounts = seg.accounts, seg.amounts
        if value_set is not None:
            picked = pc.indices_nonzero(pc.is_in(accounts_, value_set=value_set))
            accounts_, amounts = accounts_.take(picked), amounts.take(picked)
        for key, amount in zip(accounts_.to_pylist(), amounts.to_pylist()):
            out[key] = out.get(key, 0) + int(amount)
    return out


def read_carries(
    conn: Connection,
    currency: str,
    payees: list[str],
    payee_texts: pa.Array | None = None,
    *,
    distinct: bool = False,
    numbers: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """Each payee's carried fraction (2^-32 microunit) in ``currency`` as of now: the carries table,
    overridden by the snapshot, overridden by the latest pending segment that carries the payee (0 for a
    payee with none).
    ``payee_texts``: the same payees as a string array, when the caller has one. ``distinct``: the payees
    are known to be distinct; then one hash of them is probed by the snapshot's and every pending segment's
    payees, instead of a hash of each of those probed by the payees. ``numbers``: the payees' name ids,
    where all are names and the caller has them (``routes.name_numbers``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = payee_texts if payee_texts is not None else pa.array(payees, pa.string())
    cached = cached_carries(conn, currency, texts, numbers)  # what follows, kept by the process between accruals
    if cached is not None:
        return cached
    carry = np.zeros(len(payees), dtype=np.int64)
    # Folds write carries into the snapshot; rows exist only in stores folded before it existed.
    if fetch_all(conn, "SELECT 1 FROM carries LIMIT 1"):
        rows = select_joined(
            conn,
            "SELECT c.payee, c.subunits FROM {values} JOIN carries c ON c.payee = v.value "
            f"AND c.currency = '{check_currency(currency)}'",
            payees,
        )
        position = {p: i for i, p in enumerate(payees)}
        for payee, subunits in rows:
            carry[position[payee]] = subunits
    held_payees, held_subunits = read_snapshot(conn, balances=False).carries_of(currency)
    if distinct:
        sources = [(held_payees, held_subunits)] if len(held_payees) else []
        sources += [(p, s.to_numpy()) for _, p, s in iter_carries(conn, after=fold_watermark(conn), currency=currency)]
        latest_carries(texts, sources, carry)
        return carry
    if len(held_payees):
        where = pc.index_in(texts, value_set=held_payees)
        hit = where.is_valid().to_numpy(zero_copy_only=False)
        carry[hit] = held_subunits[where.fill_null(0).to_numpy()[hit]]
    found, values = pending_carries(conn, currency, texts)
    carry[found] = values[found]
    return carry


def carried_fractions(conn: Connection) -> dict[tuple[str, str], int]:
    """Every payee's carried fraction as of now, ``(payee, currency) -> subunits``: the carries rows, the
    snapshot's, then each pending segment's in order, the latest winning."""
    out = {(r.payee, r.currency): r.subunits for r in conn.execute(select(carries))}
    snap = read_snapshot(conn, balances=False)
    out.update(zip(zip(snap.carry_payees.to_pylist(), snap.carry_currencies.to_pylist()), snap.carry_subunits.tolist()))
    for currency, payees, subunits in iter_carries(conn, after=fold_watermark(conn)):
        out.update(zip(zip(payees.to_pylist(), repeat(currency)), subunits.to_pylist()))
    return out


def post_accrual(
    conn: Connection,
    req: TransferRequest,
    carries: tuple[Sequence[str] | pa.Array, npt.NDArray[np.int64]],
    *,
    at: str | None = None,
) -> PostResult:
    """Post an accrual transfer inside the caller's write transaction as a segment: the transfer row, one
    ``ledger_segments`` row with its legs and the carries ``(payees, subunits)`` they now hold, and the
    audit entry. Account and carry rows are written by a later fold. Idempotent by ``event_id``."""
    check_transfer(req)
    if req.code != "accrual" or req.reverses_event_id is not None:
        raise ValidationError(f"transfer {req.event_id}: only an accrual is posted as a segment")
    payees, subunits = carries
    if len(payees) != len(subunits) or (
        len(subunits) and (int(subunits.min()) < 0 or int(subunits.max()) >= SUBUNITS_PER_MICROUNIT)
    ):
        raise ValidationError(f"transfer {req.event_id}: carries must pair each payee with 0 <= subunits < 2^32")
    content = req.content_sha256()
    prior = _prior_posting(conn, req, content)
    if prior is not None:
        return prior
    # Only a debit can overdraw: an accrual debits its pool (which may go negative) and suspense, when its
    # carries pay out more whole microunits than its lines leave behind.
    debits = req.legs.negative() if isinstance(req.legs, LegColumns) else req.legs.items()
    for key, amount in debits:
        if amount < 0 and key.partition(":")[0] not in NEGATIVE_ALLOWED_KINDS:
            kind, holder, currency = parse_account_key(key)
            before = account_balances(conn, kind=kind, currency=currency, holder=holder).get(key, 0)
            if before + amount < 0:
                raise LedgerError(
                    f"transfer {req.event_id} would overdraw account {key} (balance {before}, leg {amount}); "
                    "nothing was posted"
                )
    when = at or utc_now()
    transfer_id = _insert_transfer(conn, req, content, when)
    sha = insert_segment(conn, transfer_id, req.currency, req.legs, (payees, subunits))
    append_audit(
        conn,
        "transfer",
        req.event_id,
        {
            "code": req.code,
            "currency": req.currency,
            "content_sha256": content,
            "legs": len(req.legs),
            "reverses": None,
            "segment_sha256": sha,
            **({"legs_in_order": True} if req.legs_in_order else {}),
        },
        at=when,
    )
    return PostResult(req.event_id, "created", transfer_id)


@dataclass(frozen=True)
class FoldResult:
    through_transfer_id: int  # the last segment folded: the new watermark
    segments: int
    accounts: int  # account rows opened or updated
    carries: int  # carry rows inserted or updated


def fold_pending(conn: Connection, *, at: str | None = None) -> FoldResult | None:
    """Fold every pending segment inside the caller's write transaction: the accounts that have a row get
    their new balance and last transfer; the payees' accounts without one, and every payee's carry, go into
    a new snapshot (``ledger.snapshot``) that replaces the one before; operator accounts are opened as rows
    on first use. A ``ledger_folds`` row records the new watermark; audited. None when nothing is pending.

    The arithmetic is columnar (``ledger.fold_columns``): the legs are summed per account, matched against
    the snapshot in the same pass, and added to the stored balances in NumPy (int64 where no sum can pass
    2^62, exact Python ints beyond); each row that changes is written once however many segments touched
    it, and the snapshot is one row."""
    import numpy as np
    import pyarrow as pa

    segments = list(iter_segments(conn, after=fold_watermark(conn), carries=True))
    if not segments:
        return None
    when = at or utc_now()
    through = segments[-1].transfer_id
    with gc_paused(), sqlite_cache_at_least(conn, FOLD_SQLITE_CACHE_KIB):
        snap = read_snapshot(conn)
        legs = summed_legs(segments, snap.keys)
        keys, last = legs.keys, legs.last
        known, ids, before = _balances_before(conn, legs, snap)
        values = add_exact(before, legs.sums)
        _refuse_overdrawn(keys, values)
        to_snapshot = ~known & _of_snapshot_kinds(keys)
        fresh = _in_key_order(keys, np.flatnonzero(~known & ~to_snapshot))
        if len(fresh):
            _open_accounts(
                conn,
                keys.take(pa.array(fresh)).to_pylist(),
                values[fresh].tolist(),
                last[fresh].tolist(),
                when,
                return_ids=False,
            )
        old = np.flatnonzero(known)
        if len(old):
            order = old[np.argsort(ids[old], kind="stable")]  # id order: the updates walk the B-tree once
            bulk_update(
                conn,
                "accounts",
                ["id"],
                ["id", "balance_microunits", "last_transfer_id"],
                list(zip(ids[order].tolist(), amount_params(conn, values[order].tolist()), last[order].tolist())),
            )
        id_max = int(fetch_all(conn, "SELECT COALESCE(MAX(id), 0) FROM accounts")[0][0])
        as_text = snap.balances_as_text or legs.big or values.dtype == object
        merged, n_carries = _merged_snapshot(snap, segments, legs, values, to_snapshot, as_text)
        sha = write_snapshot(conn, _replace(merged, through_transfer_id=through, account_id_max=id_max))
    _record_fold(conn, segments, len(keys), n_carries, sha, when)
    return FoldResult(through, len(segments), len(keys), n_carries)


def _record_fold(
    conn: Connection, segments: Sequence[Segment], n_accounts: int, n_carries: int, snapshot_sha256: str, when: str
) -> None:
    """The ``ledger_folds`` row with the new watermark and the fold's audit entry."""
    through = segments[-1].transfer_id
    conn.execute(
        ledger_folds.insert().values(
            through_transfer_id=through,
            segment_count=len(segments),
            account_count=n_accounts,
            carry_count=n_carries,
            folded_at=when,
        )
    )
    folded = hashlib.sha256("".join(seg.sha256 for seg in segments).encode()).hexdigest()
    append_audit(
        conn,
        "ledger_fold",
        f"through:{through}",
        {
            "first_transfer_id": segments[0].transfer_id,
            "segments": len(segments),
            "accounts": n_accounts,
            "carries": n_carries,
            "segments_sha256": folded,  # SHA-256 of the folded segments' SHA-256s, in order
            "snapshot_sha256": snapshot_sha256,
        },
        at=when,
    )


def _replace(snap: Snapshot, **changes: int) -> Snapshot:
    import dataclasses

    return dataclasses.replace(snap, **changes)  # type: ignore[arg-type]


def _of_snapshot_kinds(keys: pa.Array) -> npt.NDArray[np.bool_]:
    import functools

    import pyarrow.compute as pc

    masks = [pc.starts_with(keys, f"{kind}:") for kind in SNAPSHOT_KINDS]
    return functools.reduce(pc.or_, masks).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _in_key_order(keys: pa.Array, at: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``at`` (positions in ``keys``) ordered by key, as UTF-8 bytes (Python's code point order) sort."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(at) < 2:
        return at
    return at[pc.sort_indices(keys.take(pa.array(at, pa.int64()))).to_numpy()]  # type: ignore[no-any-return]


def _balances_before(
    conn: Connection, legs: LegSums, snap: Snapshot
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[Any]]:
    """For each account key the legs met: whether it has an account row, the row's id (0 when not) and its
    balance before the fold (the row's, the snapshot's, or 0). Only the keys the snapshot does not hold are
    looked up among the rows: no key is both."""
    import numpy as np
    import pyarrow as pa

    in_snapshot = legs.at_base >= 0
    probe = np.flatnonzero(~in_snapshot)
    known = np.zeros(len(legs.keys), dtype=np.bool_)
    ids = np.zeros(len(legs.keys), dtype=np.int64)
    found_known, found_ids, found_before = _stored_balances(conn, legs.keys.take(pa.array(probe, pa.int64())))
    big = found_before.dtype == object or snap.balances.dtype == object
    before = np.zeros(len(legs.keys), dtype=object if big else np.int64)
    known[probe], ids[probe], before[probe] = found_known, found_ids, found_before
    before[in_snapshot] = snap.balances[legs.at_base[in_snapshot]]
    return known, ids, before


def _merged_snapshot(
    snap: Snapshot,
    segments: Sequence[Segment],
    legs: LegSums,
    values: npt.NDArray[Any],
    to_snapshot: npt.NDArray[np.bool_],
    as_text: bool,
) -> tuple[Snapshot, int]:
    """The snapshot after the fold: its accounts updated in place and the new ones appended in key order,
    and each payee's latest carry; with how many carries the segments held."""
    import numpy as np
    import pyarrow as pa

    big = values.dtype == object or snap.balances.dtype == object
    balances = snap.balances.astype(object if big else np.int64)  # a writable copy
    latest = snap.last.astype(np.int64)
    update = to_snapshot & (legs.at_base >= 0)
    balances[legs.at_base[update]] = values[update]
    latest[legs.at_base[update]] = legs.last[update]
    new = _in_key_order(legs.keys, np.flatnonzero(to_snapshot & (legs.at_base < 0)))
    merged_keys = pa.concat_arrays([snap.keys, legs.keys.take(pa.array(new, pa.int64()))])
    balances = np.concatenate([balances, values[new].astype(balances.dtype)])
    latest = np.concatenate([latest, legs.last[new]])
    currencies, payees, subunits, n_carries = _merged_carries(snap, segments)
    merged = Snapshot(0, 0, merged_keys, balances, latest, currencies, payees, subunits, "", as_text)
    return merged, n_carries


def _merged_carries(
    snap: Snapshot, segments: Sequence[Segment]
) -> tuple[pa.Array, pa.Array, npt.NDArray[np.int64], int]:
    """(currencies, payees, subunits) of the snapshot's carries overridden and extended by each payee's
    latest carry in ``segments``, and how many payees the segments carried."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    held = set(pc.unique(snap.carry_currencies).to_pylist()) if len(snap.carry_currencies) else set()
    parts_payees: list[pa.Array] = []
    parts_subunits: list[npt.NDArray[np.int64]] = []
    parts_currencies: list[pa.Array] = []
    n_carries = 0
    for currency in sorted(held | {seg.currency for seg in segments}):
        payees, subunits = snap.carries_of(currency)
        mine = [seg for seg in segments if seg.currency == currency]
        if mine:
            payees, subunits, n = folded_carries(payees, subunits, mine)
            n_carries += n
        parts_payees.append(payees)
        parts_subunits.append(subunits)
        parts_currencies.append(pa.array(np.full(len(payees), currency, dtype=object), pa.string()))
    if not parts_payees:
        none = pa.array([], pa.string())
        return none, none, np.zeros(0, np.int64), 0
    return (
        pa.concat_arrays(parts_currencies),
        pa.concat_arrays(parts_payees),
        np.concatenate(parts_subunits),
        n_carries,
    )


_INT64_SAFE = 1 << 62  # two int64 values below this in size add without overflow


def add_exact(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``a + b`` element by element, exactly: in int64 when both are int64 and every value is below 2^62
    in size, else in Python ints (an object array)."""
    import numpy as np

    if a.dtype == np.int64 and b.dtype == np.int64:
        bound = max((int(np.abs(x).max(initial=0)) for x in (a, b) if len(x)), default=0)
        if bound < _INT64_SAFE and int(a.min(initial=0)) > -_INT64_SAFE and int(b.min(initial=0)) > -_INT64_SAFE:
            fast: npt.NDArray[Any] = a + b
            return fast
    exact: npt.NDArray[Any] = a.astype(object) + b.astype(object)
    return exact


def _as_amounts(values: list[Any]) -> npt.NDArray[Any]:
    """Stored amounts (decimal text on SQLite, NUMERIC on PostgreSQL) as int64, or as Python ints when any
    is beyond int64."""
    import numpy as np

    exact = [int(v) for v in values]
    if not exact or (-(1 << 63) <= min(exact) and max(exact) < (1 << 63)):
        return np.array(exact, dtype=np.int64)
    return np.array(exact, dtype=object)


def _stored_balances(
    conn: Connection, keys: pa.Array
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[Any]]:
    """For each of ``keys`` (distinct): whether its account row exists, its id (0 when not) and its stored
    balance (0 when not). One join, or one read of every row when there are fewer rows than keys."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    where = np.zeros(0, dtype=np.int64)
    if not len(keys):
        rows = []
    elif int(fetch_all(conn, "SELECT COUNT(*) FROM accounts")[0][0]) <= len(keys):
        # Fewer rows than keys (the payees' accounts are in the snapshot): read them all, match in Arrow,
        # hashing the rows' keys (the fewer).
        rows = fetch_all(conn, "SELECT key, id, balance_microunits FROM accounts")
        hit = pc.index_in(keys, value_set=pa.array([r[0] for r in rows], pa.string()))
        where = pc.indices_nonzero(hit.is_valid()).to_numpy().astype(np.int64)
        rows = [rows[j] for j in hit.drop_null().to_pylist()]
    else:
        rows = select_joined(
            conn,
            "SELECT a.key, a.id, a.balance_microunits FROM {values} JOIN accounts a ON a.key = v.value",
            keys.to_pylist(),
        )
        if rows:
            where = pc.index_in(pa.array([r[0] for r in rows], pa.string()), value_set=keys).to_numpy()
    known = np.zeros(len(keys), dtype=np.bool_)
    ids = np.zeros(len(keys), dtype=np.int64)
    found = _as_amounts([r[2] for r in rows])
    before = np.zeros(len(keys), dtype=found.dtype)
    if rows:
        known[where] = True
        ids[where] = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        before[where] = found
    return known, ids, before


def _refuse_overdrawn(keys: pa.Array, values: npt.NDArray[Any]) -> None:
    """Raise, naming the first in key order, when a folded balance of an account that may not go negative is
    below 0."""
    import numpy as np

    below = [(str(keys[i]), i) for i in np.flatnonzero(values < 0).tolist()]
    refused = sorted((k, i) for k, i in below if k.partition(":")[0] not in NEGATIVE_ALLOWED_KINDS)
    if refused:
        key, i = refused[0]
        raise LedgerError(f"folding the pending segments would leave account {key} at {values[i]}; nothing was folded")


def derived_balances(conn: Connection) -> dict[str, int]:
    """Every account's balance by key, summed from the legs rows and every segment, in Python (exact on
    SQLite too)."""
    key_of = dict(fetch_all(conn, "SELECT id, key FROM accounts"))
    by_id: dict[int, int] = {}
    result = conn.execution_options(yield_per=50_000).execute(select(legs.c.account_id, legs.c.amount_microunits))
    for account_id, amount in result:
        by_id[account_id] = by_id.get(account_id, 0) + amount
    out = {key_of.get(i, f"?{i}"): v for i, v in by_id.items()}
    for seg in iter_segments(conn):
        for key, amount in zip(seg.accounts.to_pylist(), seg.amount_list()):
            out[key] = out.get(key, 0) + amount
    return out


def transfer_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(transfers)).scalar_one())


def output_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(outputs)).scalar_one())


def latest_periods(conn: Connection, limit: int) -> list[tuple[str, str]]:
    """``(period, currency)`` of the latest ``limit`` periods with an accrual batch, newest first."""
    q = (
        select(accrual_batches.c.period, accrual_batches.c.currency)
        .distinct()
        .order_by(accrual_batches.c.period.desc(), accrual_batches.c.currency)
        .limit(limit)
    )
    return [(str(r.period), str(r.currency)) for r in conn.execute(q)]
