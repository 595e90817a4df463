"""Accruing a batch of usage: outputs and their attributed lines become one ledger transfer per period.

For each (currency, period) group of the batch:
1. the pool of each output is split over its lines in one step (``money.split_batch``, to 2^-32 of a
   microunit), so rounding never compounds across works, credits and lineage; ties go by a hash of
   (output, payee, path), so no payee is systematically favoured and line order never matters;
2. lines are summed per payee together with the payee's carried fraction; only whole microunits are
   posted, to the account the payee is routed to now (payable, or escrow), and the fraction carries;
3. the difference between the pool and what was posted, which is exactly the change in carried
   fractions, is posted to ``suspense:CCY``;
4. every line goes to a Parquet evidence file, and one balanced transfer
   (pool -> accounts + suspense) is posted as a segment with the payees' new carries
   (``ledger.records.post_accrual``), with the outputs and an audit entry, in one database transaction.
   If anything fails, nothing is written and the evidence file is removed.

Ledger writes grow with payees touched, not with lines: the lines live in the evidence files. The
per-payee legs and carries are one columnar segment row; balance and carry rows are written when the
pending segments are folded (before this batch, when ``FOLD_PENDING_*`` is reached). On PostgreSQL
accruals run side by side up to step 2's carries (checks, split, outputs, routes); from there on they
take ``ACCRUAL_LOCK`` one after another (docs/concepts/ledger.md, "Concurrent accruals").

Every batch records where its scores came from (``ScoreSource``): a recorded attribution run, read back
and checked against its record, or the operator's own scores marked external with a reason (invariant 8).
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, select

from endcredits.attribution.records import AttributionRun, binding_problem, load_run, read_run_scores
from endcredits.errors import ConflictError, EvidenceError, ManifestError, ValidationError, invariant
from endcredits.ledger import LegColumns, TransferRequest, account_key
from endcredits.ledger.evidence import EVIDENCE_SCHEMA, coded, evidence_path, per_batch_table, prepare_evidence
from endcredits.ledger.expiry import save_agreement_terms
from endcredits.ledger.floors import FloorLine, record_floor_lines
from endcredits.ledger.folding import fold_due
from endcredits.ledger.guild_minimums import group_minimum_lines, record_minimum_lines
from endcredits.ledger.records import fold_pending, post_accrual, read_carries
from endcredits.ledger.routes import name_numbers, route_payees
from endcredits.limits import (
    EXTERNAL_REASON_CHARS_MAX,
    ID_LENGTH_MAX,
    SUBUNIT_BITS,
    SUBUNITS_PER_MICROUNIT,
    check_id,
)
from endcredits.manifest.records import ManifestRecord, latest_manifest_id, load_manifest, model_ids_exist
from endcredits.money import Split, split_batch
from endcredits.royalties import Agreement, pools_of
from endcredits.royalties.floors import Floor, floor_top_ups, output_floors
from endcredits.royalties.output_contents import check_output_contents, record_output_contents
from endcredits.royalties.records import load_agreement
from endcredits.royalties.shares import PayeeShare
from endcredits.royalties.usage import OutputIn, UsageBatch, build_usage
from endcredits.store.audit import append_audit
from endcredits.store.bulk import insert_keys, select_in
from endcredits.store.engine import Store, normalize_time, utc_now
from endcredits.store.schema import accrual_batches

FAULT_AT = os.environ.get("ENDCREDITS_FAULT_AT", "")
"""Test-only crash injection, inert unless ``ENDCREDITS_FAULT_AT=STEP:N`` is set when this module is
imported (or this attribute is set in a forked test child): the process then ends with ``os._exit(77)``,
as a SIGKILL would end it, the N-th time it reaches STEP. Steps, in order within one batch:
``evidence`` (a group's evidence file is written, its outputs too, its ledger rows not yet), ``posted``
(its transfer and segment are posted, its batch row not yet), ``recorded`` (its batch row is written, not committed) and
``committed`` (the batch's transaction committed, the caller not yet answered). Used by
tests/service/test_faults.py; costs one string test per group when unset."""
FAULT_EXIT_STATUS = 77
_fault_hits: dict[str, int] = {}
ACCRUAL_LOCK = "ledger:accrual"
"""The lock (``Store.lock``) accruals take, one after another, to read carries and post: everything before
it (checks, the split, the outputs' keys, routes) runs beside other accruals on PostgreSQL."""


def _fault(step: str) -> None:
    if not FAULT_AT:
        return
    name, _, count = FAULT_AT.partition(":")
    if name == step:
        _fault_hits[step] = _fault_hits.get(step, 0) + 1
        if _fault_hits[step] == int(count or "1"):
            os._exit(FAULT_EXIT_STATUS)


@dataclass(frozen=True)
class ScoreSource:
    """Where a batch's scores came from: a recorded attribution run (``run_id``), or scores the operator
    supplies and marks external, with the reason (``external_reason``). Exactly one; recorded with the
    batch and shown on every statement line it pays."""

    run_id: str | None = None
    external_reason: str | None = None

    def __post_init__(self) -> None:
        if (self.run_id is None) == (self.external_reason is None):
            raise ValidationError(
                "scores move money only from a recorded attribution run or marked external with a reason: give one"
            )
        if self.run_id is not None:
            check_id(self.run_id, "attribution run id", spaces=False)
        reason = self.external_reason
        if reason is not None and not (
            0 < len(reason) <= EXTERNAL_REASON_CHARS_MAX and reason.isprintable() and reason == reason.strip()
        ):
            raise ValidationError(
                f"the reason for external scores must be 1..{EXTERNAL_REASON_CHARS_MAX} printable characters on "
                "one line, without leading or trailing spaces"
            )

    @classmethod
    def run(cls, run_id: str) -> ScoreSource:
        return cls(run_id=run_id)

    @classmethod
    def external(cls, reason: str) -> ScoreSource:
        return cls(external_reason=reason)

    def key(self) -> str:
        """``run:ID`` or ``external:REASON``: part of the batch's content, so another source under the same
        batch id is a conflict."""
        return f"run:{self.run_id}" if self.run_id is not None else f"external:{self.external_reason}"


@dataclass(frozen=True)
class _Batch:
    """What every group of one batch shares: its id, content hash, agreement and scores source."""

    event_id: str
    content: str
    agreement: Agreement
    source: ScoreSource


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
    groups: tuple[str, ...]  # one id per (currency, period) group; a group whose pools are all 0 posts no transfer
    currency: str  # the agreement's: every amount above is in it
    source: ScoreSource
    floors_microunits: int = 0  # added by the operator to raise works to their licence floors (in posted/escrow)

    def to_json(self) -> dict[str, Any]:
        """The summary as the CLI's ``--json`` and the API print it: amounts in integer microunits."""
        return {
            "batch_id": self.event_id,
            "status": self.status,
            "outputs": self.outputs,
            "lines": self.lines,
            "currency": self.currency,
            "revenue_microunits": self.revenue_microunits,
            "pool_microunits": self.pool_microunits,
            "posted_microunits": self.posted_microunits,
            "escrow_microunits": self.escrow_microunits,
            "suspense_delta_microunits": self.suspense_delta_microunits,
            "transfers": list(self.groups),
            "attribution_run_id": self.source.run_id,
            "external_reason": self.source.external_reason,
            "floors_microunits": self.floors_microunits,
        }


def _group_event_id(event_id: str, currency: str, period: str) -> str:
    return f"{event_id}/{currency}/{period}"


_HASH_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime, as a polynomial base
_HASH_POWERS = np.concatenate(
    [np.ones(1, dtype=np.uint64), np.cumprod(np.full(4 * ID_LENGTH_MAX, _HASH_MULTIPLIER, dtype=np.uint64))]
)
"""_HASH_POWERS[i] = base^i mod 2^64 for every byte position of a text this ledger takes (4 bytes a character)."""


def _mix64(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finalizer: every input bit moves about half the output bits."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@dataclass(frozen=True)
class _Texts:
    """A usage batch's text columns as Arrow arrays, converted once for the tie keys and the evidence."""

    output_ids: pa.Array
    payees: pa.Array
    works: pa.Array
    roles: pa.Array

    @classmethod
    def of(cls, usage: UsageBatch, payees: pa.Array | None = None) -> _Texts:
        """``payees``: ``usage.payees`` as a string array already, when the caller has one."""
        if payees is None:
            payees = pa.array(usage.payees, pa.string())
        text = [pa.array(v, pa.string()) for v in (usage.output_ids, usage.works, usage.roles)]
        return cls(text[0], payees, text[1], text[2])


def _string_hashes(text: pa.Array) -> npt.NDArray[np.uint64]:
    """A stable 64-bit hash per string of a string array, computed on its UTF-8 bytes in NumPy (a
    polynomial in the bytes, then mixed); only used to break ties, never for security. 10^5 strings in a
    few milliseconds."""
    if len(text) == 0:
        return np.zeros(0, dtype=np.uint64)
    wide = pa.types.is_large_string(text.type)
    raw = np.frombuffer(text.buffers()[1], dtype=np.int64 if wide else np.int32)[
        text.offset : text.offset + len(text) + 1
    ]
    start = int(raw[0])
    data = np.frombuffer(text.buffers()[2] or b"", dtype=np.uint8)[start : int(raw[-1])]
    offsets: npt.NDArray[np.int64] = raw.astype(np.int64) - start
    lengths = np.diff(offsets)
    if lengths.max(initial=0) >= len(_HASH_POWERS):
        raise ValidationError(
            f"an id of {int(lengths.max())} bytes is longer than ids may be ({ID_LENGTH_MAX} characters)"
        )
    # sum over byte positions j of (byte_j + 1) * base^j, one position at a time over the strings that
    # long, longest first: arrays of at most one entry per string, however long the texts.
    order = np.argsort(-lengths, kind="stable")
    starts = offsets[:-1][order]
    longer_than = len(lengths) - np.cumsum(np.bincount(lengths))  # strings longer than j, for each j
    sums = np.zeros(len(lengths), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(int(lengths.max(initial=0))):
            live = int(longer_than[j])
            term = data[starts[:live] + j].astype(np.uint64)
            term += np.uint64(1)
            term *= _HASH_POWERS[j]
            sums[:live] += term
        hashes = np.empty_like(sums)
        hashes[order] = sums
        return _mix64(hashes ^ (lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))


def tie_keys(usage: UsageBatch, texts: _Texts | None = None) -> npt.NDArray[np.int64]:
    """Per line, a key fixed by (output, payee, path) content: who wins a tie is neither the first in
    the input nor always the same payee."""
    assert usage.attributed_codes is not None and usage.source_codes is not None and usage.role_codes is not None
    texts = texts or _Texts.of(usage)
    counts = np.diff(usage.offsets)
    works_h = np.concatenate([_string_hashes(texts.works), np.zeros(1, np.uint64)])  # code -1: no work
    roles_h = np.concatenate([_string_hashes(texts.roles), np.zeros(1, np.uint64)])
    # In place, with one scratch array: a batch of 10^6 lines makes 8 MB arrays, each new one memory the
    # process may first have to fault in.
    mix = _string_hashes(texts.payees)[usage.payee_codes]
    part = np.empty_like(mix)
    with np.errstate(over="ignore"):
        for multiplier, codes, table in (
            (0x9E3779B97F4A7C15, usage.attributed_codes, works_h),
            (0xBF58476D1CE4E5B9, usage.source_codes, works_h),
            (0x94D049BB133111EB, usage.role_codes, roles_h),
        ):
            mix *= np.uint64(multiplier)
            np.take(table, codes, out=part)
            mix ^= part
        mix ^= np.repeat(_string_hashes(texts.output_ids), counts)
        mix *= np.uint64(0xD6E8FEB86659FD93)
    mix >>= np.uint64(1)
    keys: npt.NDArray[np.int64] = mix.view(np.int64)
    return keys


@dataclass
class _Plan:
    event_id: str
    currency: str
    period: str
    usage: UsageBatch
    pools: npt.NDArray[Any]  # per output: int64, or Python ints beyond it
    line_micro: npt.NDArray[np.int64]
    line_sub: npt.NDArray[np.int64]
    line_accounts: pa.DictionaryArray  # per line, the account its payee's money went to
    legs: Mapping[str, int]  # LegColumns unless a sum passes int64
    carry_payees: pa.Array  # the payees touched (strings)
    carry_out: npt.NDArray[np.int64]  # the fraction each now carries, in 2^-32 microunit
    posted: int
    escrowed: int
    suspense_delta: int
    evidence: dict[str, pa.Array]  # the evidence columns built while the split ran (none in a dry run)
    floored: int = 0  # whole microunits the operator added to raise works to licence floors (royalties.floors)
    floor_lines: list[FloorLine] = field(default_factory=list)


def _pool_total(pools: npt.NDArray[Any]) -> int:
    """The exact sum of the pools, beyond int64 if need be."""
    if pools.dtype == np.int64 and int(pools.max(initial=0)) * len(pools) < (1 << 63):
        return int(pools.sum())
    return sum(int(p) for p in pools.tolist())


def _split_and_sum(
    usage: UsageBatch, texts: _Texts, pools: npt.NDArray[Any], used: npt.NDArray[np.int64]
) -> tuple[Split, npt.NDArray[Any], npt.NDArray[np.int64]]:
    """Every line's exact part, and per payee code in ``used`` the sums of whole microunits and of
    fractions (both exact: int64, or Python ints when the pools could pass 2^62)."""
    split = split_batch(pools, usage.offsets, usage.weights, tie_keys(usage, texts))
    codes = usage.payee_codes
    n_codes = len(usage.payees)
    big = _pool_total(pools) > (1 << 62)
    micro_sum = np.zeros(n_codes, dtype=object if big else np.int64)
    sub_sum = np.zeros(n_codes, dtype=np.int64)
    np.add.at(micro_sum, codes, split.microunits.astype(object) if big else split.microunits)
    np.add.at(sub_sum, codes, split.subunits)
    return split, micro_sum[used], sub_sum[used]


def _insert_outputs(conn: Connection, event_id: str, usage: UsageBatch) -> None:
    """Each output's id and batch: the primary key refuses an output accrued before, so it is never paid
    twice. Its model, time and revenue go to the evidence, on its lines."""
    try:
        # In key order, so two accruals that share outputs meet at the first one, never deadlock.
        insert_keys(conn, "outputs", "id", sorted(usage.output_ids), {"batch_event_id": event_id})
    except ConflictError:
        raise _OutputsTaken from None


@dataclass(frozen=True)
class _Prepared:
    """What a group's accrual needs that no other accrual changes: each line's exact part of its output's
    pool, the sums per payee, the evidence columns and the payees' routes. Built beside other accruals
    (``Store.write(beside_others=True)``); only the carries and what follows wait for ``ACCRUAL_LOCK``."""

    pools: npt.NDArray[Any]
    used: npt.NDArray[np.int64]  # the payee codes the lines use
    payees: list[str]  # their payees
    split: Split
    micro_sum: npt.NDArray[Any]
    sub_sum: npt.NDArray[np.int64]
    evidence: dict[str, pa.Array]
    payee_texts: pa.Array  # the payees, as a string array
    kinds: pa.Array  # each payee's account kind and holder (strings)
    holders: pa.Array
    distinct: bool  # the payees are known to be distinct (``ledger.routes``): no hash of them is needed
    numbers: npt.NDArray[np.int64] | None  # their name ids, where all are names (``routes.name_numbers``)


def _prepare_group(
    conn: Connection, event_id: str, usage: UsageBatch, agreement: Agreement, *, write_outputs: bool
) -> _Prepared:
    pools = pools_of(usage.revenue_microunits, agreement)
    used = np.flatnonzero(np.bincount(usage.payee_codes, minlength=len(usage.payees)))
    payees = usage.payees if len(used) == len(usage.payees) else [usage.payees[c] for c in used.tolist()]
    payee_texts = pa.array(payees, pa.string())  # converted once, for the split's thread too when all are paid
    whole = payee_texts if payees is usage.payees else None
    # The split is NumPy work that mostly runs outside the GIL, and the database work below mostly runs
    # inside SQLite or the server: on another thread, the split overlaps writing the outputs (a real
    # run; the primary key refuses one accrued before) and reading the payees' routes.
    done: dict[str, Any] = {}

    def split_here() -> None:
        try:
            texts = _Texts.of(usage, whole)
            done["split"] = _split_and_sum(usage, texts, pools, used)
            if write_outputs:  # then the evidence's columns that need neither amounts nor routes
                done["evidence"] = _evidence_columns(event_id, usage, texts)
        except BaseException as exc:  # noqa: BLE001 - handed to this thread and re-raised below
            done["error"] = exc

    splitter = threading.Thread(target=split_here, name="endcredits-split")
    splitter.start()
    try:
        if write_outputs:
            _insert_outputs(conn, event_id, usage)
        numbers = name_numbers(payee_texts)
        kinds, holders, distinct = route_payees(conn, payee_texts, numbers)
    finally:
        splitter.join()
    if "error" in done:
        raise done["error"]
    split, micro_sum, sub_sum = done["split"]
    evidence = done.get("evidence", {})
    return _Prepared(
        pools, used, payees, split, micro_sum, sub_sum, evidence, payee_texts, kinds, holders, distinct, numbers
    )


def _plan_group(
    conn: Connection,
    prep: _Prepared,
    event_id: str,
    usage: UsageBatch,
    currency: str,
    period: str,
    carry_overrides: dict[str, int],
    floors: Mapping[tuple[str, int], Floor],
    evidence: _EvidenceWriter | None = None,
) -> _Plan:
    """The group's transfer: its payees' carries as they stand now (the caller holds ``ACCRUAL_LOCK``)
    added to their sums, whole microunits posted to each route's account, the rest carried. ``evidence``
    starts writing the group's evidence file as soon as its lines' accounts are known (they need no carry)."""
    pools, used, payees, split = prep.pools, prep.used, prep.payees, prep.split
    dictionary, account_codes = _accounts_of(prep, currency)
    code_of_payee = np.zeros(len(usage.payees), dtype=np.int32)
    code_of_payee[used] = account_codes
    line_accounts = pa.DictionaryArray.from_arrays(pa.array(code_of_payee[usage.payee_codes], pa.int32()), dictionary)
    group_id = _group_event_id(event_id, currency, period)
    if evidence is not None:
        table = _evidence_table(prep.evidence, line_accounts, split, usage.shares, evidence.source)
        evidence.start(period, group_id, table)
    carry_in = read_carries(conn, currency, payees, prep.payee_texts, distinct=prep.distinct, numbers=prep.numbers)
    top_ups = floor_top_ups(usage, floors, split.microunits, split.subunits) if floors else {}
    pool_total = _pool_total(pools)
    if carry_overrides:  # a dry run's earlier groups, not written
        for i, payee in enumerate(payees):
            if payee in carry_overrides:
                carry_in[i] = carry_overrides[payee]
    total_sub = carry_in + prep.sub_sum  # < (lines + 1) * 2^32: fits int64 for any batch within limits
    posted_each = prep.micro_sum + (total_sub >> SUBUNIT_BITS).astype(prep.micro_sum.dtype)
    carry_out = total_sub & (SUBUNITS_PER_MICROUNIT - 1)
    posted_each, floored = _add_top_ups(posted_each, top_ups, usage, used, pool_total)
    paid, sums = _account_legs(dictionary, account_codes, posted_each)
    escrowed, posted = _escrowed_and_posted(paid, sums)
    suspense_delta = pool_total + floored - posted - escrowed  # the operator funds the floors beside the pool
    invariant(
        int(carry_out.sum()) - int(carry_in.sum()) == suspense_delta * SUBUNITS_PER_MICROUNIT,
        "suspense change does not equal the change in carried fractions",
    )
    operator_legs: dict[str, int] = {}
    if pool_total + floored:
        operator_legs[account_key("pool", currency)] = -(pool_total + floored)
    if suspense_delta:
        operator_legs[account_key("suspense", currency)] = suspense_delta
    legs = _legs(paid, sums, operator_legs)
    return _Plan(
        group_id,
        currency,
        period,
        usage,
        pools,
        split.microunits,
        split.subunits,
        line_accounts,
        legs,
        prep.payee_texts,
        carry_out,
        posted,
        escrowed,
        suspense_delta,
        prep.evidence,
        floored,
        _floor_lines(group_id, usage, top_ups, line_accounts),
    )


def _accounts_of(prep: _Prepared, currency: str) -> tuple[pa.Array, npt.NDArray[np.int64]]:
    """Each payee's account (= account_key(kind, currency, holder)): the distinct accounts in the order met and
    each payee's code among them (a claimed name and its person share one account). Columns, not a dict: a
    batch of new payees has 10^5-10^6 accounts."""
    accounts = pc.binary_join_element_wise(prep.kinds, prep.holders, currency, ":")
    if prep.distinct:
        return _accounts_met(accounts, prep.holders)
    encoded = accounts.dictionary_encode()
    return encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _account_legs(
    dictionary: pa.Array, account_codes: npt.NDArray[np.int64], posted_each: npt.NDArray[Any]
) -> tuple[pa.Array, npt.NDArray[Any]]:
    """The accounts with a non-zero sum of what their payees are posted, with those sums."""
    sums = np.zeros(len(dictionary), dtype=posted_each.dtype)  # int64 unless the pools pass 2^62
    np.add.at(sums, account_codes, posted_each)
    paid = np.flatnonzero(sums != 0)
    return dictionary.take(pa.array(paid, pa.int64())), sums[paid]


def _accounts_met(accounts: pa.Array, holders: pa.Array) -> tuple[pa.Array, npt.NDArray[np.int64]]:
    """``accounts.dictionary_encode()``'s dictionary and codes for the accounts of distinct payees, hashing
    only those held for a person: any other holder is its payee itself (a name unclaimed, a work), so its
    account is met once. The accounts in the order first met, as ``dictionary_encode`` gives them."""
    n = len(accounts)
    first = np.arange(n, dtype=np.int64)  # the row where each row's account is first met
    shared = np.flatnonzero(pc.starts_with(holders, "person:").to_numpy(zero_copy_only=False))
    if len(shared):
        encoded = accounts.take(pa.array(shared, pa.int64())).dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        first_at = np.full(len(encoded.dictionary), len(shared), dtype=np.int64)
        np.minimum.at(first_at, codes, np.arange(len(shared), dtype=np.int64))
        first[shared] = shared[first_at[codes]]
    head = first == np.arange(n, dtype=np.int64)
    rank = np.cumsum(head) - 1
    return accounts.filter(pa.array(head)), rank[first]


def _escrowed_and_posted(accounts: pa.Array, sums: npt.NDArray[Any]) -> tuple[int, int]:
    """What the payees' legs put in escrow and what they make payable, exactly."""
    in_escrow = pc.starts_with(accounts, "escrow:").to_numpy(zero_copy_only=False)
    if sums.dtype == np.int64:  # each sum and any total of them is below 2^62 (pools below 2^62 stay int64)
        return int(sums[in_escrow].sum()), int(sums[~in_escrow].sum())
    return sum(int(a) for a in sums[in_escrow].tolist()), sum(int(a) for a in sums[~in_escrow].tolist())


def _legs(accounts: pa.Array, sums: npt.NDArray[Any], operator: dict[str, int]) -> Mapping[str, int]:
    """The transfer's legs: the payees' accounts in order, then the operator's (pool, suspense); as columns
    while every amount fits int64, else as a dict of Python ints."""
    if sums.dtype == np.int64 and all(-(1 << 63) <= a < (1 << 63) for a in operator.values()):
        keys = pa.concat_arrays([accounts, pa.array(list(operator), pa.string())])
        amounts = np.concatenate([sums, np.array(list(operator.values()), dtype=np.int64)])
        return LegColumns(keys, amounts, distinct=True)  # a dictionary's keys, then pool and suspense
    legs = dict(zip(accounts.to_pylist(), (int(a) for a in sums.tolist())))
    legs.update(operator)
    return legs


def _add_top_ups(
    posted_each: npt.NDArray[Any],
    top_ups: Mapping[int, tuple[int, int]],
    usage: UsageBatch,
    used: npt.NDArray[np.int64],
    pool_total: int,
) -> tuple[npt.NDArray[Any], int]:
    """Each payee's posting (``used`` order) with the licence floors' top-ups of its lines added, and their
    total. Whole microunits: the carried fractions do not change."""
    floored = sum(amount for amount, _ in top_ups.values())
    if not floored:
        return posted_each, 0
    if pool_total + floored >= (1 << 62):
        posted_each = posted_each.astype(object)
    positions = np.searchsorted(used, usage.payee_codes[sorted(top_ups)])
    for k, j in zip(positions.tolist(), sorted(top_ups)):
        posted_each[k] += top_ups[j][0]
    return posted_each, floored


def _floor_lines(
    group_id: str, usage: UsageBatch, top_ups: Mapping[int, tuple[int, int]], line_accounts: pa.DictionaryArray
) -> list[FloorLine]:
    """The rows that keep each top-up with its line, account and licence term."""
    if not top_ups:
        return []
    assert usage.attributed_codes is not None and usage.source_codes is not None and usage.role_codes is not None
    output_of = np.searchsorted(usage.offsets, np.asarray(sorted(top_ups), dtype=np.int64), side="right") - 1
    out = []
    for i, j in zip(output_of.tolist(), sorted(top_ups)):
        amount, term_id = top_ups[j]
        out.append(
            FloorLine(
                group_id,
                usage.output_ids[i],
                usage.model_ids[i],
                usage.occurred_at[i],
                usage.works[int(usage.attributed_codes[j])],
                usage.works[int(usage.source_codes[j])],
                usage.payees[int(usage.payee_codes[j])],
                usage.roles[int(usage.role_codes[j])],
                str(line_accounts[j]),
                term_id,
                amount,
            )
        )
    return out


def _coded_per_output(out_idx: npt.NDArray[np.int64], values: list[str]) -> pa.DictionaryArray:
    """A per-output text column with few distinct values (models, times), coded by its distinct values
    (found by Arrow, in C) so that neither Arrow nor Parquet handles 10^5 copies of one string."""
    encoded = pa.array(values, pa.string()).dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return coded(codes[out_idx], encoded.dictionary)


def _evidence_columns(event_id: str, u: UsageBatch, texts: _Texts) -> dict[str, pa.Array]:
    """Every evidence column but the account and the amounts: built from the usage alone, on the split's
    thread while the writer routes the payees."""
    n_lines = len(u.payee_codes)
    counts = np.diff(u.offsets)
    out_idx = np.repeat(np.arange(len(u.output_ids), dtype=np.int64), counts)
    assert u.attributed_codes is not None and u.source_codes is not None and u.role_codes is not None
    revenue = np.fromiter(u.revenue_microunits, dtype=np.int64, count=len(u.output_ids))  # <= 2^62 (UsageBatch)
    return {
        "batch_event_id": coded(np.zeros(n_lines, np.int64), [event_id]),
        "output_id": coded(out_idx, texts.output_ids),
        "model_id": _coded_per_output(out_idx, u.model_ids),
        "occurred_at": _coded_per_output(out_idx, u.occurred_at),
        "revenue_microunits": pa.array(np.repeat(revenue, counts), pa.int64()),
        "attributed_work": coded(u.attributed_codes, texts.works),
        "source_work": coded(u.source_codes, texts.works),
        "payee": coded(u.payee_codes, texts.payees),
        "role": coded(u.role_codes, texts.roles),
    }


def _evidence_table(
    evidence: dict[str, pa.Array],
    line_accounts: pa.DictionaryArray,
    split: Split,
    shares: dict[str, list[PayeeShare]] | None,
    source: ScoreSource,
) -> pa.Table:
    """The group's evidence: every line, or, when its scores come from a recorded run and its lines from
    recorded credit shares, each output's pool, each payee's total and those shares (``per_batch_table``)."""
    columns = {
        **evidence,
        "account": line_accounts,
        "amount_microunits": pa.array(split.microunits, pa.int64()),
        "amount_subunits": pa.array(split.subunits, pa.int64()),
    }
    lines = pa.table([columns[name] for name in EVIDENCE_SCHEMA.names], schema=EVIDENCE_SCHEMA)
    if source.run_id is None or not shares:  # per payee, the lines are already one per output and payee
        return lines
    return per_batch_table(
        lines, {w: [(s.payee, s.source_work, s.role, s.share) for s in got] for w, got in shares.items()}
    )


def line_table(event_id: str, usage: UsageBatch, agreement: Agreement, account_of: Mapping[str, str]) -> pa.Table:
    """The evidence lines of ``usage`` accrued in batch ``event_id`` under ``agreement``: each output's pool
    split over its lines as accrual splits it (the same tie keys, so the same subunits), each line with the
    account ``account_of`` names for its payee. How evidence kept per payee re-derives its lines."""
    missing = next((p for p in usage.payees if p not in account_of), None)
    if missing is not None:
        raise EvidenceError(f"the evidence names no account for payee {missing}: it is incomplete")
    texts = _Texts.of(usage)
    split = split_batch(
        pools_of(usage.revenue_microunits, agreement), usage.offsets, usage.weights, tie_keys(usage, texts)
    )
    columns = {
        **_evidence_columns(event_id, usage, texts),
        "account": coded(usage.payee_codes, [account_of[p] for p in usage.payees]),
        "amount_microunits": pa.array(split.microunits, pa.int64()),
        "amount_subunits": pa.array(split.subunits, pa.int64()),
    }
    return pa.table([columns[name] for name in EVIDENCE_SCHEMA.names], schema=EVIDENCE_SCHEMA)


def refuse_accrued(conn: Connection, output_ids: list[str], *, unless_in: Collection[str] = ()) -> None:
    """A one-line ``ConflictError`` naming the first of ``output_ids`` already accrued, and its batch (one of
    the batches ``unless_in`` excepted: a worker started again finds its own batches)."""
    rows = select_in(conn, "SELECT id, batch_event_id FROM outputs WHERE id {in}", output_ids)
    dup = [r for r in rows if r[1] not in unless_in]
    if dup:
        first = min(dup)
        raise ConflictError(f"output {first[0]} was already accrued in batch {first[1]}; it is never paid twice")


class _OutputsTaken(Exception):
    """Raised inside the write transaction when an output's id is already in ``outputs``."""


class _DryRun(Exception):
    """Raised inside the write transaction to roll a dry run back."""


def accrue(
    store: Store, usage: UsageBatch, agreement: Agreement, *, event_id: str, source: ScoreSource, dry_run: bool = False
) -> AccrualSummary:
    """Accrue a batch of usage (see the module docstring), recording where its scores came from (``source``).
    Idempotent by ``event_id``; the source is part of the batch's content."""
    usage, normalized, content = _opened(usage, agreement, event_id, source)
    plans: list[_Plan] = []
    try:
        summary = _accrue_in(store, usage, _Batch(event_id, content, agreement, source), dry_run, plans, normalized)
    except _DryRun:
        summary = None
    except _OutputsTaken:
        # Rolled back; say which output, and in which batch it was paid (a lookup only this case needs).
        with store.read() as conn:
            refuse_accrued(conn, usage.output_ids)
        raise ConflictError("an output of this batch was accrued concurrently; nothing was written") from None
    if summary is not None:
        return summary
    _fault("committed")
    return AccrualSummary(
        event_id,
        "dry_run" if dry_run else "created",
        len(usage.output_ids),
        len(usage.payee_codes),
        sum(usage.revenue_microunits),
        sum(_pool_total(p.pools) for p in plans),
        sum(p.posted for p in plans),
        sum(p.escrowed for p in plans),
        sum(p.suspense_delta for p in plans),
        tuple(p.event_id for p in plans),
        agreement.currency,
        source,
        sum(p.floored for p in plans),
    )


def _opened(
    usage: UsageBatch, agreement: Agreement, event_id: str, source: ScoreSource
) -> tuple[UsageBatch, dict[str, str], str]:
    """The checks ``accrue`` makes before it reads the store, the batch with its times normalized (a copy:
    the caller's is left as it is), each distinct time's normal form, and the batch's content hash."""
    check_id(event_id, "batch event id")
    if len(event_id) > ID_LENGTH_MAX - 20 or "/" in event_id:
        raise ValidationError(f"batch event id must be 1..{ID_LENGTH_MAX - 20} characters without '/'")
    for ccy in set(usage.currencies):
        if ccy != agreement.currency:
            raise ValidationError(
                f"output currency {ccy} differs from agreement {agreement.id} currency {agreement.currency}"
            )
    normalized = {t: normalize_time(t) for t in set(usage.occurred_at)}  # a batch repeats few times
    usage = copy.copy(usage)  # nothing else of the batch changes, nor is re-checked
    usage.occurred_at = list(map(normalized.__getitem__, usage.occurred_at))
    content = hashlib.sha256((usage.content_sha256() + agreement.body_sha256 + source.key()).encode()).hexdigest()
    return usage, normalized, content


def check_accrual(
    store: Store, usage: UsageBatch, agreement: Agreement, *, event_id: str, source: ScoreSource
) -> AccrualSummary:
    """What ``accrue`` would refuse before it splits anything, checked in one read and nothing written: the
    batch id, currencies, models, floors, an output accrued before, other content under the id. Status
    ``exists`` (the batch as accrued before) or ``checked`` (totals of outputs, lines and revenue only).
    A batch checked may still be refused by ``accrue`` when the store changed in between (an output of it
    accrued meanwhile by another batch, the agreement's terms replaced)."""
    usage, _, content = _opened(usage, agreement, event_id, source)
    with store.read() as conn:
        prior = _existing(conn, _Batch(event_id, content, agreement, source))
        if prior is not None:
            return prior
        model_ids_exist(conn, usage.model_ids)
        output_floors(conn, usage, agreement)
        refuse_accrued(conn, usage.output_ids)
    revenue = sum(usage.revenue_microunits)
    outputs, lines = len(usage.output_ids), len(usage.payee_codes)
    return AccrualSummary(event_id, "checked", outputs, lines, revenue, 0, 0, 0, 0, (), agreement.currency, source)


def _existing(conn: Connection, batch: _Batch) -> AccrualSummary | None:
    """The summary of the batch accrued before under this id (``exists``), None when there is none; other
    content under the id is a ``ConflictError``."""
    event_id = batch.event_id
    prior = conn.execute(select(accrual_batches).where(accrual_batches.c.batch_event_id == event_id)).all()
    if not prior:
        return None
    if any(r.content_sha256 != batch.content for r in prior):
        raise ConflictError(f"batch {event_id} was already accrued with other content; use a new batch id")
    return _summary_of(event_id, prior, batch.agreement.currency, batch.source)


def _summary_of(event_id: str, rows: Sequence[Any], currency: str, source: ScoreSource) -> AccrualSummary:
    """A batch's ``exists`` summary from its ``accrual_batches`` rows: what accruing it again answers."""
    return AccrualSummary(
        event_id,
        "exists",
        sum(r.output_count for r in rows),
        sum(r.line_count for r in rows),
        sum(int(r.revenue_microunits) for r in rows),
        sum(int(r.pool_microunits) for r in rows),
        0,
        0,
        0,
        tuple(sorted(r.event_id for r in rows)),
        currency,
        source,
    )


def accrued_batch(store: Store, batch_id: str) -> AccrualSummary | None:
    """The ledger's record of batch ``batch_id`` (status ``exists``, as accruing it again would answer), or
    None when no batch was committed under that id: how a caller whose answer was lost learns it landed."""
    with store.read() as conn:
        rows = conn.execute(select(accrual_batches).where(accrual_batches.c.batch_event_id == batch_id)).all()
    if not rows:
        return None
    first = rows[0]
    source = (
        ScoreSource.run(first.scores_run_id)
        if first.scores_run_id is not None
        else ScoreSource.external(first.scores_external_reason or "not recorded")
    )
    return _summary_of(batch_id, rows, first.currency, source)


def _accrue_in(
    store: Store,
    usage: UsageBatch,
    batch: _Batch,
    dry_run: bool,
    plans: list[_Plan],
    normalized: dict[str, str],
) -> AccrualSummary | None:
    event_id, agreement = batch.event_id, batch.agreement
    with store.write(beside_others=not dry_run) as conn:
        store.lock(conn, f"accrual-batch:{event_id}")  # the same batch twice at once: the second finds the first
        prior = _existing(conn, batch)
        if prior is not None:
            return prior
        model_ids_exist(conn, usage.model_ids)
        floors = output_floors(conn, usage, agreement)  # refuses a floor in another currency: nothing written
        if dry_run:  # a real run finds an output accrued before by its primary key when it is written
            refuse_accrued(conn, usage.output_ids)
        groups = [(c, p, _payees_paid(sub)) for c, p, sub in _groups(usage, normalized)]
        written: list[Path] = []
        writers: list[_EvidenceWriter] = []
        try:
            prepared = [_prepare_group(conn, event_id, sub, agreement, write_outputs=not dry_run) for *_, sub in groups]
            # From here on, one accrual at a time: carries, transfers and audit entries follow each other.
            store.lock(conn, ACCRUAL_LOCK)
            # The terms that split this money are kept with it (other terms under the same version are refused).
            save_agreement_terms(conn, agreement)
            if not dry_run and fold_due(conn):
                fold_pending(conn)  # readers read through at most FOLD_PENDING_* and one batch
            for (currency, period, sub), prep in zip(groups, prepared):
                overrides = (
                    {
                        p: c
                        for q in plans
                        if q.currency == currency
                        for p, c in zip(q.carry_payees.to_pylist(), q.carry_out.tolist())
                    }
                    if dry_run
                    else {}
                )
                writer = None if dry_run else _EvidenceWriter(store, batch.source)
                writers += [writer] if writer is not None else []
                plan = _plan_group(conn, prep, event_id, sub, currency, period, overrides, floors, writer)
                plans.append(plan)
                if writer is not None:
                    _write_group(store, conn, batch, plan, writer, written)
            if dry_run:
                raise _DryRun  # rolls back the accounts a plan may have created
        except _DryRun:
            raise
        except BaseException:
            for each in writers:  # a file still being written is waited for, then removed with the others
                each.wait(written)
            for path in written:
                path.unlink(missing_ok=True)
            raise
    return None


def _groups(usage: UsageBatch, normalized: dict[str, str]) -> list[tuple[str, str, UsageBatch]]:
    """The batch cut into its (currency, period) groups, in key order: each one's outputs and lines."""
    periods = {t: t[:7] for t in normalized.values()}  # YYYY-MM of each distinct time
    keys = sorted({(c, periods[t]) for c, t in zip(usage.currencies, usage.occurred_at)})
    if len(keys) == 1:
        return [(*keys[0], usage)]
    group_of = {k: i for i, k in enumerate(keys)}
    out_group = np.fromiter(
        (group_of[(c, periods[t])] for c, t in zip(usage.currencies, usage.occurred_at)),
        dtype=np.int64,
        count=len(usage.output_ids),
    )
    return [(c, p, usage.select(np.flatnonzero(out_group == gi))) for gi, (c, p) in enumerate(keys)]


def _payees_paid(usage: UsageBatch) -> UsageBatch:
    """``usage`` with its payee dictionary cut to the payees its lines pay, in the same order (so the same
    legs, carries and ties): a batch may carry a dictionary of 10^6 payees and pay a fraction of them, and
    nothing after this costs anything per payee it does not pay. The batch's content hash is taken before."""
    paid = np.flatnonzero(np.bincount(usage.payee_codes, minlength=len(usage.payees)))
    if len(paid) == len(usage.payees):
        return usage
    code_of = np.zeros(len(usage.payees), dtype=np.int64)
    code_of[paid] = np.arange(len(paid), dtype=np.int64)
    out = copy.copy(usage)  # the same outputs, lines, weights and works; only the payees are renumbered
    out.payees = [usage.payees[c] for c in paid.tolist()]
    out.payee_codes = code_of[usage.payee_codes]
    return out


class _EvidenceWriter:
    """A group's evidence file, written on its own thread (encoding, hashing, writing and syncing release the
    GIL) from when its lines' accounts are known: beside reading the carries and posting the transfer."""

    def __init__(self, store: Store, source: ScoreSource) -> None:
        self.store, self.source = store, source
        self.path: Path | None = None
        self.thread: threading.Thread | None = None
        self.result: dict[str, object] = {}

    def start(self, period: str, group_id: str, table: pa.Table) -> None:
        self.path = evidence_path(self.store.data_dir, period, group_id)
        # accrue holds the write lock and found no batch row for this id: a file here is an orphan.
        write_file = prepare_evidence(self.path, table, replace_orphan=True)

        def write() -> None:
            try:
                self.result["sha"] = write_file()
                _fault("evidence")
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread and re-raised there
                self.result["error"] = exc

        self.thread = threading.Thread(target=write, name="endcredits-evidence")
        self.thread.start()

    def wait(self, written: list[Path]) -> None:
        """Wait for the file (if started and not waited for); a file this writer wrote is listed in
        ``written``, removed if the transaction fails."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
            if "sha" in self.result and self.path is not None:
                written.append(self.path)

    def sha256(self) -> str:
        """The written file's SHA-256, once waited for; the writer's error raised here."""
        if "error" in self.result:
            raise self.result["error"]  # type: ignore[misc]
        return str(self.result["sha"])


def _write_group(
    store: Store, conn: Connection, batch: _Batch, plan: _Plan, writer: _EvidenceWriter, written: list[Path]
) -> None:
    """Post the group's transfer while its evidence file is written (started by ``_plan_group``), then its
    batch row, which records the file's hash."""
    event_id, agreement = batch.event_id, batch.agreement
    at = utc_now()
    try:
        # A group whose pools are all 0 moves no money and changes no carry: its outputs are still recorded.
        if plan.legs:
            post_accrual(
                conn,
                TransferRequest(
                    event_id=plan.event_id,
                    code="accrual",
                    currency=plan.currency,
                    legs=plan.legs,
                    memo={"batch": event_id, "period": plan.period, "agreement": f"{agreement.id}@{agreement.version}"},
                    legs_in_order=isinstance(plan.legs, LegColumns),
                ),
                (plan.carry_payees, plan.carry_out),
                at=at,
            )
            record_floor_lines(conn, plan.floor_lines)
        record_minimum_lines(conn, group_minimum_lines(plan.event_id, plan.usage, agreement))
        _fault("posted")
    finally:
        writer.wait(written)
    sha = writer.sha256()
    assert writer.path is not None
    _record_group(conn, batch, plan, str(writer.path.relative_to(store.data_dir)), sha, at)
    _fault("recorded")


def _record_group(conn: Connection, batch: _Batch, plan: _Plan, evidence: str, sha: str, at: str) -> None:
    """The group's ``accrual_batches`` row, with its evidence file and scores source, and its audit entry."""
    sub = plan.usage
    conn.execute(
        accrual_batches.insert().values(
            event_id=plan.event_id,
            batch_event_id=batch.event_id,
            content_sha256=batch.content,
            agreement_id=batch.agreement.id,
            agreement_version=batch.agreement.version,
            period=plan.period,
            currency=plan.currency,
            output_count=len(sub.output_ids),
            line_count=len(sub.payee_codes),
            revenue_microunits=sum(sub.revenue_microunits),
            pool_microunits=_pool_total(plan.pools),
            evidence_path=evidence,
            evidence_sha256=sha,
            transfer_event_id=plan.event_id if plan.legs else "",
            created_at=at,
            scores_run_id=batch.source.run_id,
            scores_external_reason=batch.source.external_reason,
        )
    )
    source = batch.source
    scores = {"scores_run_id": source.run_id} if source.run_id else {"scores_external_reason": source.external_reason}
    append_audit(
        conn,
        "accrual",
        plan.event_id,
        {
            "outputs": len(sub.output_ids),
            "lines": len(sub.payee_codes),
            "pool": str(_pool_total(plan.pools)),
            "evidence_sha256": sha,
            **scores,
            **({"floors": str(plan.floored)} if plan.floored else {}),
        },
        at=at,
    )


def scored_usage(
    store: Store,
    outputs: Sequence[OutputIn],
    scores: Mapping[str, Mapping[str, float]] | None,
    *,
    source: ScoreSource,
    per: Literal["work", "payee"] | None,
    agreement_id: str,
    manifest_id: str | None = None,
) -> tuple[UsageBatch, Agreement, tuple[str, str] | None]:
    """The lines ``accrue_scored`` accrues for these arguments, the agreement (its newest version) they were
    built under, and (model id, manifest id) where the model's newest manifest was read because the batch
    named none (else None); every refusal of ``accrue_scored`` before it writes."""
    with store.read() as conn:
        agreement = load_agreement(conn, agreement_id)
        manifest: ManifestRecord | None
        newest: tuple[str, str] | None = None
        if source.run_id is not None:
            if scores is not None or per is not None:
                raise ValidationError(
                    f"attribution run {source.run_id} brings its own scores: send scores only marked external"
                )
            scores, per, manifest = _run_scores(store, conn, source.run_id, outputs, agreement, manifest_id)
        else:
            if scores is None or per is None:
                raise ValidationError("external scores need their values, per work or per payee")
            manifest = _manifest_of(conn, outputs, per, agreement, manifest_id)
            newest = (manifest.model_id, manifest.id) if manifest is not None and manifest_id is None else None
        return build_usage(conn, outputs, scores, agreement, manifest, per=per), agreement, newest


def accrue_scored(
    store: Store,
    outputs: Sequence[OutputIn],
    scores: Mapping[str, Mapping[str, float]] | None,
    *,
    source: ScoreSource,
    per: Literal["work", "payee"] | None,
    agreement_id: str,
    batch_id: str,
    manifest_id: str | None = None,
    dry_run: bool = False,
    contents: Sequence[tuple[str, bytes]] = (),
    check_only: bool = False,
) -> AccrualSummary:
    """Accrue outputs with their attribution scores: the one path of ``endcredits accrue``,
    ``POST /api/v1/usage-batches`` and the demo.

    From a recorded run (``source.run_id``; ``scores`` and ``per`` None), the scores are the run's, read back
    and checked against its record, under the run's manifest; the run must be of the outputs' model, of
    ``manifest_id`` when named, still fit that manifest (root, model, bound checkpoint), and have scored
    every output. External scores (``source.external_reason``) come per work or per payee (``per``).

    The agreement is its newest version. The manifest (``manifest_id``, or the model's newest) is read when
    the scores are per work, when the agreement pays a baseline share (spread over the manifest's works by
    volume, so per-payee scores need it too), or when it is named; the batch then covers one model.

    ``contents`` are what the model generated, ``(output id, bytes)`` for outputs of this batch: checked before
    anything is written and kept (``royalties.output_contents``) once the batch has accrued, so statements show
    them whatever scored the outputs.

    ``check_only``: refuse what ``check_accrual`` refuses and write nothing (``POST /usage-batches`` before it
    acknowledges a batch).
    """
    if contents:
        _check_contents(store, outputs, contents)
    usage, agreement, _ = scored_usage(
        store, outputs, scores, source=source, per=per, agreement_id=agreement_id, manifest_id=manifest_id
    )
    if check_only:
        return check_accrual(store, usage, agreement, event_id=batch_id, source=source)
    summary = accrue(store, usage, agreement, event_id=batch_id, source=source, dry_run=dry_run)
    if contents and not dry_run:
        record_output_contents(store, contents)
    return summary


def _check_contents(store: Store, outputs: Sequence[OutputIn], contents: Sequence[tuple[str, bytes]]) -> None:
    """Refuse content for an output the batch does not hold, and what ``record_output_contents`` refuses."""
    ids = {o.output_id for o in outputs}
    stray = next((oid for oid, _ in contents if oid not in ids), None)
    if stray is not None:
        raise ValidationError(f"content is given for output {stray[:200]!r}, which is not in the batch")
    check_output_contents(store, contents)


def _manifest_of(
    conn: Connection, outputs: Sequence[OutputIn], per: str, agreement: Agreement, manifest_id: str | None
) -> ManifestRecord | None:
    """The manifest an external batch is checked against, when it needs one (see ``accrue_scored``)."""
    if per == "work" or agreement.baseline_share or manifest_id is not None:
        model_ids = {o.model_id for o in outputs}
        if len(model_ids) != 1:
            raise ValidationError("an accrual batch that needs a manifest covers one model: split it by model_id")
        (model_id,) = model_ids
        return load_manifest(conn, manifest_id or latest_manifest_id(conn, model_id))
    return None


def run_of_outputs(
    conn: Connection, run_id: str, outputs: Sequence[OutputIn], manifest_id: str | None = None
) -> tuple[AttributionRun, ManifestRecord]:
    """The recorded run and the manifest (``manifest_id``, or the run's) it must still fit (root, model,
    bound checkpoint): refused in one line when the run is unknown, does not fit, or an output is of
    another model than the run scored."""
    run = load_run(conn, run_id)
    other = next((o for o in outputs if o.model_id != run.model_id), None)
    if other is not None:
        raise ManifestError(
            f"attribution run {run.id} scored model {run.model_id}; output {other.output_id} is of model "
            f"{other.model_id}"
        )
    manifest = load_manifest(conn, manifest_id or run.manifest_id)
    problem = binding_problem(run, manifest)
    if problem is not None:
        raise ManifestError(problem)
    return run, manifest


def _run_scores(
    store: Store,
    conn: Connection,
    run_id: str,
    outputs: Sequence[OutputIn],
    agreement: Agreement,
    manifest_id: str | None,
) -> tuple[dict[str, dict[str, float]], Literal["work", "payee"], ManifestRecord]:
    """The recorded run's scores of ``outputs``, how they are given, and its manifest: refused in one line
    when the run does not fit the batch or its scores file no longer hashes to its record."""
    run, manifest = run_of_outputs(conn, run_id, outputs, manifest_id)
    terms = f"{agreement.id}@{agreement.version}"
    if run.per == "payee" and run.payee_agreement != terms:
        raise ManifestError(
            f"attribution run {run.id} scored payees by the credit shares of agreement {run.payee_agreement}, and "
            f"this batch accrues under {terms}: attribute again with --per-payee {agreement.id}"
        )
    scores = read_run_scores(store.data_dir, run).for_outputs(o.output_id for o in outputs)
    missing = next((o.output_id for o in outputs if o.output_id not in scores), None)
    if missing is not None:
        raise ValidationError(
            f"attribution run {run.id} did not score output {missing}: accrue it with the run that scored it"
        )
    return scores, run.per, manifest
