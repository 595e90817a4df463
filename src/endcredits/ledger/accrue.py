"""Accruing a batch of usage: outputs and their attributed lines become one ledger transfer per period.

For each (currency, period) group of the batch:
1. the pool of each output is split over its lines in one step (``money.split_batch``, to 2^-32 of a
   microunit), so rounding never compounds across works, credits and lineage;
2. lines are summed per ledger account (a payee's payable or escrow account) together with the
   account's carried fraction; only whole microunits are posted and the fraction carries forward;
3. the difference between the pool and what was posted, which is exactly the change in carried
   fractions, is posted to ``suspense:CCY``;
4. every line goes to a Parquet evidence file, and one balanced transfer
   (pool -> accounts + suspense) is posted with the carries, the outputs and an audit entry, in one
   database transaction. If anything fails, nothing is written and the evidence file is removed.

Conservation, checked before commit: pool == posted to accounts + change in suspense, to the microunit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from sqlalchemy import Connection, select

from endcredits.audit import canonical_json
from endcredits.errors import ConflictError, LimitExceededError, ValidationError, invariant
from endcredits.ledger import TransferRequest, account_key
from endcredits.limits import BATCH_SIZE_MAX, ID_LENGTH_MAX, OUTPUTS_PER_BATCH_MAX, SUBUNITS_PER_MICROUNIT
from endcredits.money import check_currency, split_batch
from endcredits.royalties import Agreement, pool_of
from endcredits.store.audit import append_audit
from endcredits.store.catalog import model_ids_exist
from endcredits.store.engine import Store, normalize_time, utc_now
from endcredits.store.evidence import EVIDENCE_SCHEMA, evidence_path, write_evidence
from endcredits.store.ledger import chunks, ensure_accounts, post_transfer, upsert
from endcredits.store.registry import payee_routes
from endcredits.store.schema import accrual_batches, carries, outputs


@dataclass
class UsageBatch:
    """Outputs with their lines, columnar. Lines ``offsets[i]:offsets[i+1]`` belong to output ``i``."""

    output_ids: list[str]
    model_ids: list[str]
    revenue_microunits: list[int]
    currencies: list[str]
    occurred_at: list[str]
    offsets: npt.NDArray[np.int64]
    payee: list[str]
    weights: npt.NDArray[Any]  # int64, or object (Python ints) when large
    attributed_work: list[str] = field(default_factory=list)
    source_work: list[str] = field(default_factory=list)
    role: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.output_ids)
        if not (len(self.model_ids) == len(self.revenue_microunits) == len(self.currencies) == len(self.occurred_at) == n):
            raise ValidationError("usage batch columns have different lengths")
        lines = len(self.payee)
        for name in ("attributed_work", "source_work", "role"):
            col = getattr(self, name)
            if not col:
                setattr(self, name, [""] * lines)
            elif len(col) != lines:
                raise ValidationError(f"usage batch column {name} has {len(col)} rows, expected {lines}")
        if n > OUTPUTS_PER_BATCH_MAX or lines > BATCH_SIZE_MAX:
            raise LimitExceededError(f"batch of {n} outputs / {lines} lines exceeds OUTPUTS_PER_BATCH_MAX / BATCH_SIZE_MAX")
        if len(set(self.output_ids)) != n:
            raise ValidationError("usage batch lists an output id more than once")
        for oid in self.output_ids:
            if not oid or len(oid) > ID_LENGTH_MAX:
                raise ValidationError(f"output id {oid!r} must be 1..{ID_LENGTH_MAX} characters")
        for rev in self.revenue_microunits:
            if isinstance(rev, bool) or not isinstance(rev, int):
                raise ValidationError("revenue must be integer microunits")
            if rev < 0:
                raise ValidationError(f"negative revenue {rev}: refunds are reversals, not negative revenue")
        for ccy in set(self.currencies):
            check_currency(ccy)

    def content_sha256(self) -> str:
        h = hashlib.sha256()
        h.update(canonical_json([self.output_ids, self.model_ids, [str(r) for r in self.revenue_microunits],
                                 self.currencies, self.occurred_at, self.offsets.tolist()]).encode())
        h.update(canonical_json([self.payee, self.attributed_work, self.source_work, self.role]).encode())
        h.update(canonical_json([str(int(w)) for w in self.weights]).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class AccrualSummary:
    event_id: str
    status: str  # "created", "exists", or "dry_run"
    outputs: int
    lines: int
    revenue_microunits: int
    pool_microunits: int
    posted_microunits: int  # to payable accounts
    escrow_microunits: int  # to escrow accounts
    suspense_delta_microunits: int
    groups: tuple[str, ...]  # transfer event ids, one per (currency, period)


def _group_event_id(event_id: str, currency: str, period: str) -> str:
    return f"{event_id}/{currency}/{period}"


def _sub_batch(usage: UsageBatch, rows: npt.NDArray[np.int64]) -> UsageBatch:
    if len(rows) == len(usage.output_ids):
        return usage
    starts, ends = usage.offsets[rows], usage.offsets[rows + 1]
    counts = ends - starts
    line_idx = np.concatenate([np.arange(s, e) for s, e in zip(starts.tolist(), ends.tolist())]) if len(rows) else np.zeros(0, np.int64)
    pick = line_idx.tolist()
    return UsageBatch(
        output_ids=[usage.output_ids[i] for i in rows], model_ids=[usage.model_ids[i] for i in rows],
        revenue_microunits=[usage.revenue_microunits[i] for i in rows], currencies=[usage.currencies[i] for i in rows],
        occurred_at=[usage.occurred_at[i] for i in rows],
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        payee=[usage.payee[i] for i in pick], weights=usage.weights[line_idx],
        attributed_work=[usage.attributed_work[i] for i in pick], source_work=[usage.source_work[i] for i in pick],
        role=[usage.role[i] for i in pick],
    )


@dataclass
class _Plan:
    event_id: str
    currency: str
    period: str
    usage: UsageBatch
    pools: list[int]
    line_micro: npt.NDArray[np.int64]
    line_sub: npt.NDArray[np.int64]
    line_account: list[str]
    legs: dict[str, int]
    new_carries: dict[str, int]
    posted: int
    escrowed: int
    suspense_delta: int


def _plan_group(conn: Connection, event_id: str, usage: UsageBatch, agreement: Agreement, currency: str, period: str) -> _Plan:
    pools = [pool_of(r, agreement) for r in usage.revenue_microunits]
    counts = np.diff(usage.offsets)
    # Tie keys: position of the line within its output (lines arrive sorted by payee, path).
    starts = np.repeat(usage.offsets[:-1], counts)
    tie = np.arange(len(usage.payee), dtype=np.int64) - starts
    split = split_batch(pools, usage.offsets, usage.weights, tie)
    # Sum per payee, then route payees to accounts.
    payee_index: dict[str, int] = {}
    idx = np.fromiter((payee_index.setdefault(p, len(payee_index)) for p in usage.payee), dtype=np.int64,
                      count=len(usage.payee))
    payees = list(payee_index)
    routes = payee_routes(conn, payees)
    accounts_of_payee = [account_key(routes[p][0], currency, routes[p][1]) for p in payees]
    account_index: dict[str, int] = {}
    payee_to_account = np.fromiter((account_index.setdefault(a, len(account_index)) for a in accounts_of_payee),
                                   dtype=np.int64, count=len(payees))
    line_acct = payee_to_account[idx]
    n_acct = len(account_index)
    order = np.argsort(line_acct, kind="stable")
    bounds = np.searchsorted(line_acct[order], np.arange(n_acct))  # every account has at least one line
    micro_sum = np.add.reduceat(split.microunits[order], bounds)
    sub_sum = np.add.reduceat(split.subunits[order], bounds)
    account_keys = list(account_index)
    ids = ensure_accounts(conn, account_keys)
    carry_in: dict[int, int] = {}
    for part in chunks([ids[k] for k in account_keys]):
        carry_in.update({r.account_id: r.subunits for r in conn.execute(
            select(carries.c.account_id, carries.c.subunits).where(carries.c.account_id.in_(part)))})
    legs: dict[str, int] = {}
    new_carries: dict[str, int] = {}
    posted = escrowed = 0
    for i, key in enumerate(account_keys):
        total_sub = carry_in.get(ids[key], 0) + int(sub_sum[i])
        whole, carry_out = divmod(total_sub, SUBUNITS_PER_MICROUNIT)
        amount = int(micro_sum[i]) + whole
        new_carries[key] = carry_out
        if amount:
            legs[key] = amount
            if key.startswith("escrow:"):
                escrowed += amount
            else:
                posted += amount
    pool_total = sum(pools)
    suspense_delta = pool_total - posted - escrowed
    carried_before = sum(carry_in.values())
    carried_after = sum(new_carries.values())
    invariant((carried_after - carried_before) == suspense_delta * SUBUNITS_PER_MICROUNIT,
              "suspense change does not equal the change in carried fractions")
    if pool_total:
        legs[account_key("pool", currency)] = -pool_total
    if suspense_delta:
        legs[account_key("suspense", currency)] = suspense_delta
    return _Plan(_group_event_id(event_id, currency, period), currency, period, usage, pools, split.microunits,
                 split.subunits, [account_keys[i] for i in line_acct.tolist()], legs, new_carries, posted, escrowed,
                 suspense_delta)


def _evidence_table(event_id: str, plan: _Plan) -> pa.Table:
    u = plan.usage
    counts = np.diff(u.offsets)
    out_idx = np.repeat(np.arange(len(u.output_ids)), counts)
    return pa.table({
        "batch_event_id": pa.array([event_id] * len(u.payee), pa.string()),
        "output_id": pa.array(u.output_ids, pa.string()).take(pa.array(out_idx)),
        "model_id": pa.array(u.model_ids, pa.string()).take(pa.array(out_idx)),
        "occurred_at": pa.array(u.occurred_at, pa.string()).take(pa.array(out_idx)),
        "attributed_work": pa.array(u.attributed_work, pa.string()),
        "source_work": pa.array(u.source_work, pa.string()),
        "payee": pa.array(u.payee, pa.string()),
        "account": pa.array(plan.line_account, pa.string()),
        "role": pa.array(u.role, pa.string()),
        "amount_microunits": pa.array(plan.line_micro, pa.int64()),
        "amount_subunits": pa.array(plan.line_sub, pa.int64()),
    }, schema=EVIDENCE_SCHEMA)


class _DryRun(Exception):
    """Raised inside the write transaction to roll a dry run back."""


def accrue(store: Store, usage: UsageBatch, agreement: Agreement, *, event_id: str, dry_run: bool = False) -> AccrualSummary:
    """Accrue a batch of usage (see the module docstring). Idempotent by ``event_id``."""
    if not event_id or len(event_id) > ID_LENGTH_MAX - 20:
        raise ValidationError(f"batch event id must be 1..{ID_LENGTH_MAX - 20} characters")
    content = usage.content_sha256() + agreement.body_sha256
    content = hashlib.sha256(content.encode()).hexdigest()
    occurred = [normalize_time(t) for t in usage.occurred_at]
    usage.occurred_at = occurred
    for ccy in set(usage.currencies):
        if ccy != agreement.currency:
            raise ValidationError(f"output currency {ccy} differs from agreement {agreement.id} currency {agreement.currency}")
    plans: list[_Plan] = []
    try:
        summary = _accrue_in(store, usage, agreement, event_id, content, occurred, dry_run, plans)
    except _DryRun:
        summary = None
    if summary is not None:
        return summary
    return AccrualSummary(
        event_id, "dry_run" if dry_run else "created", len(usage.output_ids), len(usage.payee),
        sum(usage.revenue_microunits), sum(sum(p.pools) for p in plans), sum(p.posted for p in plans),
        sum(p.escrowed for p in plans), sum(p.suspense_delta for p in plans), tuple(p.event_id for p in plans))


def _accrue_in(store: Store, usage: UsageBatch, agreement: Agreement, event_id: str, content: str,
               occurred: list[str], dry_run: bool, plans: list[_Plan]) -> AccrualSummary | None:
    with store.write() as conn:
        prior = conn.execute(select(accrual_batches).where(accrual_batches.c.batch_event_id == event_id)).all()
        if prior:
            if any(r.content_sha256 != content for r in prior):
                raise ConflictError(f"batch {event_id} was already accrued with other content; use a new batch id")
            return AccrualSummary(
                event_id, "exists", sum(r.output_count for r in prior), sum(r.line_count for r in prior),
                sum(r.revenue_microunits for r in prior), sum(r.pool_microunits for r in prior), 0, 0, 0,
                tuple(sorted(r.event_id for r in prior)))
        model_ids_exist(conn, usage.model_ids)
        for part in chunks(usage.output_ids):
            dup = conn.execute(select(outputs.c.id, outputs.c.batch_event_id).where(outputs.c.id.in_(part))).first()
            if dup is not None:
                raise ConflictError(f"output {dup.id} was already accrued in batch {dup.batch_event_id}; it is never paid twice")
        keys = sorted({(c, t[:7]) for c, t in zip(usage.currencies, occurred)})
        group_of = {k: i for i, k in enumerate(keys)}
        out_group = np.fromiter((group_of[(c, t[:7])] for c, t in zip(usage.currencies, occurred)), dtype=np.int64,
                                count=len(occurred))
        written: list[Any] = []
        try:
            for gi, (currency, period) in enumerate(keys):
                sub = _sub_batch(usage, np.flatnonzero(out_group == gi))
                plan = _plan_group(conn, event_id, sub, agreement, currency, period)
                plans.append(plan)
                if dry_run:
                    continue
                at = utc_now()
                path = evidence_path(store.data_dir, period, plan.event_id)
                sha = write_evidence(path, _evidence_table(event_id, plan))
                written.append(path)
                post_transfer(conn, TransferRequest(
                    event_id=plan.event_id, code="accrual", currency=currency, legs=plan.legs,
                    memo={"batch": event_id, "period": period, "agreement": f"{agreement.id}@{agreement.version}",
                          "evidence_sha256": sha},
                ), at=at)
                ids = ensure_accounts(conn, plan.new_carries, at=at)
                upsert(conn, carries, [{"account_id": ids[k], "subunits": v} for k, v in plan.new_carries.items()],
                       ["account_id"], ["subunits"])
                out_rows = [{"id": o, "model_id": m, "batch_event_id": event_id, "revenue_microunits": r,
                             "currency": c, "occurred_at": t} for o, m, r, c, t in zip(
                    sub.output_ids, sub.model_ids, sub.revenue_microunits, sub.currencies, sub.occurred_at)]
                for part in chunks(out_rows, 4000):
                    conn.execute(outputs.insert(), list(part))
                conn.execute(accrual_batches.insert().values(
                    event_id=plan.event_id, batch_event_id=event_id, content_sha256=content, agreement_id=agreement.id,
                    agreement_version=agreement.version, period=period, currency=currency,
                    output_count=len(sub.output_ids), line_count=len(sub.payee),
                    revenue_microunits=sum(sub.revenue_microunits), pool_microunits=sum(plan.pools),
                    evidence_path=str(path.relative_to(store.data_dir)), evidence_sha256=sha,
                    transfer_event_id=plan.event_id, created_at=at))
                append_audit(conn, "accrual", plan.event_id, {
                    "outputs": len(sub.output_ids), "lines": len(sub.payee), "pool": str(sum(plan.pools)),
                    "evidence_sha256": sha}, at=at)
            if dry_run:
                raise _DryRun  # rolls back the accounts a plan may have created
        except _DryRun:
            raise
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
    return None
