"""``build_usage`` for columnar input: the same lines, found with array operations instead of Python loops.

``UsageColumns`` holds a batch's outputs and their scores as arrays (the scores of output ``i`` are
``offsets[i]:offsets[i+1]``, keys dictionary-coded), as an Arrow stream or a Parquet file delivers them.
``build_usage_columns`` gives exactly the ``UsageBatch`` that ``build_usage`` gives for the same outputs
and scores: the same lines, integer weights, dictionaries and codes. Scores are quantized per output
with segment sums under the same proven error bound as ``attribution_weights``; a work's exact credit
shares are expanded once into integer numerators over a common denominator, and each output's lines
are scaled by the least common multiple of their reduced denominators, as ``output_lines`` does. An
output whose quantization the bound cannot settle, or whose denominators grow past
``FAST_DENOMINATOR_MAX``, takes the exact per-output path (``attribution_weights``/``output_lines``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from endcredits.errors import LimitExceededError, ManifestError, ValidationError
from endcredits.limits import BATCH_SIZE_MAX, OUTPUTS_PER_BATCH_MAX
from endcredits.manifest.records import ManifestRecord
from endcredits.royalties.agreement import Agreement
from endcredits.royalties.shares import (
    ATTRIBUTION_WEIGHT_BITS,
    CreditGraph,
    GuildMinimum,
    PayeeShare,
    _influence_weights,
    attribution_weights,
    guild_minimums_applied,
    output_lines,
    work_shares,
)
from endcredits.royalties.usage import OutputIn, UsageBatch, _recorded_shares, load_credit_graph, usage_baseline

FAST_DENOMINATOR_MAX = (1 << 30) - 1
"""Largest common denominator of one output's lines (and of one work's shares) kept in int64 arithmetic:
with at most 2^32 of attribution weight per output, every line weight stays below 2^62."""

PAYEE_ROLE = "endcredits:attributed"
I64 = npt.NDArray[np.int64]
Text = Callable[[str], int]
"""Codes a text into the one table of texts a batch's lines use ("" -- no work -- is -1)."""


@dataclass
class UsageColumns:
    """Outputs (one entry each) and their scores (``offsets``; ``keys[key_codes[j]]`` scored ``scores[j]``)."""

    output_ids: list[str]
    model_ids: list[str]
    revenue_microunits: list[int]
    currencies: list[str]
    occurred_at: list[str]
    offsets: I64
    keys: list[str]
    key_codes: I64
    scores: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        n, entries = len(self.output_ids), len(self.key_codes)
        if n > OUTPUTS_PER_BATCH_MAX:
            raise LimitExceededError(f"batch of {n} outputs exceeds OUTPUTS_PER_BATCH_MAX={OUTPUTS_PER_BATCH_MAX}")
        if entries > BATCH_SIZE_MAX:
            raise LimitExceededError(f"batch of {entries} scores exceeds BATCH_SIZE_MAX={BATCH_SIZE_MAX}")
        if not (len(self.model_ids) == len(self.revenue_microunits) == len(self.currencies) == len(self.occurred_at)):
            raise ValidationError("usage columns of the outputs have different lengths")
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or self.offsets[-1] != entries:
            raise ValidationError("usage score offsets must run from 0 to the score count, one per output + 1")
        if np.any(np.diff(self.offsets) < 0) or len(self.scores) != entries:
            raise ValidationError("usage score offsets must not decrease, with one score per key")
        if entries and (self.key_codes.min() < 0 or self.key_codes.max() >= len(self.keys)):
            raise ValidationError("usage score keys out of their dictionary's range")
        if len(set(self.keys)) != len(self.keys):
            raise ValidationError("usage score keys must be a dictionary: each key once")
        if len(set(self.output_ids)) != n:
            first = next(o for i, o in enumerate(self.output_ids) if o in set(self.output_ids[:i]))
            raise ValidationError(f"output {first} appears twice in the batch")

    def outputs(self) -> list[OutputIn]:
        """The outputs as ``build_usage`` takes them."""
        return [
            OutputIn(*row)
            for row in zip(self.output_ids, self.model_ids, self.revenue_microunits, self.currencies, self.occurred_at)
        ]

    def output_of(self, entry: int) -> int:
        return int(np.searchsorted(self.offsets, entry, side="right")) - 1

    @classmethod
    def of_scores(cls, outputs_in: Sequence[OutputIn], scores: Mapping[str, Mapping[str, float]]) -> UsageColumns:
        """The columns of ``build_usage``'s arguments (scores given as dicts per output id)."""
        keys: dict[str, int] = {}
        codes: list[int] = []
        values: list[float] = []
        offsets = [0]
        for o in outputs_in:
            for k, v in scores.get(o.output_id, {}).items():
                codes.append(keys.setdefault(k, len(keys)))
                values.append(v)
            offsets.append(len(codes))
        return cls(
            [o.output_id for o in outputs_in],
            [o.model_id for o in outputs_in],
            [o.revenue_microunits for o in outputs_in],
            [o.currency for o in outputs_in],
            [o.occurred_at for o in outputs_in],
            np.asarray(offsets, dtype=np.int64),
            list(keys),
            np.asarray(codes, dtype=np.int64),
            np.asarray(values, dtype=np.float64),
        )


@dataclass
class _Entries:
    """Integer attribution weights: output ``out[e]`` weighs key ``key[e]`` (codes into ``keys``) by ``weight[e]``."""

    keys: list[str]
    out: I64
    key: I64
    weight: I64


def _check_columns(cols: UsageColumns, manifest: ManifestRecord | None, per: str) -> None:
    """The checks of ``build_usage`` (model and manifest), plus what a dict cannot hold: a key twice in
    one output, and a score that is not a finite number."""
    if manifest is not None:
        wrong = [i for i, m in enumerate(cols.model_ids) if m != manifest.model_id][:1]
        if wrong:
            o = cols.output_ids[wrong[0]]
            raise ManifestError(f"output {o} is from model {cols.model_ids[wrong[0]]}, not {manifest.model_id}")
        if per == "work" and len(cols.key_codes):
            included = set(manifest.included)
            known = np.asarray([k in included for k in cols.keys], dtype=bool)
            bad = np.flatnonzero(~known[cols.key_codes])
            if len(bad):
                o, k = cols.output_ids[cols.output_of(int(bad[0]))], cols.keys[int(cols.key_codes[bad[0]])]
                raise ManifestError(
                    f"output {o} attributes work {k}, which is not in manifest {manifest.id}: a model pays only "
                    "for works it was trained on"
                )
    out = np.repeat(np.arange(len(cols.output_ids), dtype=np.int64), np.diff(cols.offsets))
    order = np.lexsort((cols.key_codes, out))
    twice = np.flatnonzero((np.diff(out[order]) == 0) & (np.diff(cols.key_codes[order]) == 0))
    if len(twice):
        j = int(order[twice[0]])
        raise ValidationError(f"output {cols.output_ids[int(out[j])]} scores {cols.keys[int(cols.key_codes[j])]} twice")
    bad = np.flatnonzero(~np.isfinite(cols.scores))
    if len(bad):
        j = int(bad[0])
        raise ValidationError(
            f"attribution score of output {cols.output_ids[cols.output_of(j)]} for {cols.keys[int(cols.key_codes[j])]} "
            f"is {float(cols.scores[j])}, not a finite number; re-run attribution"
        )


def _influence(cols: UsageColumns, agreement: Agreement) -> tuple[I64, I64, I64]:
    """(output, key code, weight) of every positive score quantized as ``attribution_weights`` does: per
    output floor(scale * s / sum), settled by the error bound of ``shares._floors`` for any summation order,
    and the few outputs it cannot settle recomputed exactly (``_influence_weights``)."""
    scale = int((1 << ATTRIBUTION_WEIGHT_BITS) * (1 - agreement.baseline_share))
    out_all = np.repeat(np.arange(len(cols.output_ids), dtype=np.int64), np.diff(cols.offsets))
    positive = cols.scores > 0.0
    values, out, key = cols.scores[positive], out_all[positive], cols.key_codes[positive]
    if not len(values):
        return out, key, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], out[1:] != out[:-1]]))
    counts = np.diff(np.append(starts, len(values)))
    group = np.repeat(np.arange(len(starts)), counts)
    top = np.frexp(np.maximum.reduceat(values, starts))[1]
    scaled = np.ldexp(values, -top[group])
    total = np.add.reduceat(scaled, starts)
    q = scaled * (scale / total)[group]
    slack = q * ((counts + 4) * 2.0**-52)[group] + 2.0**-900
    low = np.floor(np.maximum(q - slack, 0.0))
    weight = low.astype(np.int64)
    unsettled = np.flatnonzero(np.logical_or.reduceat(low != np.floor(q + slack), starts))
    for g in unsettled.tolist():
        s, e = int(starts[g]), int(starts[g] + counts[g])
        weight[s:e] = _influence_weights(values[s:e], scale)
    kept = weight > 0
    return out[kept], key[kept], weight[kept]


def _entries(cols: UsageColumns, agreement: Agreement, baseline: list[str] | dict[str, Fraction], per: str) -> _Entries:
    """Every output's integer weights per key: influence plus the baseline share (the same for every
    output, ``attribution_weights`` of no scores), and per work an even weight over the manifest for an
    output with no positive weight at all."""
    out, key, weight = _influence(cols, agreement)
    keys = list(cols.keys)
    index = {k: i for i, k in enumerate(keys)}

    def codes(names: Sequence[str]) -> I64:
        return np.asarray([index.setdefault(k, len(index)) for k in names], dtype=np.int64)

    n = len(cols.output_ids)
    base = attribution_weights({}, agreement, baseline)
    if base:
        base_codes, base_w = codes(sorted(base)), np.asarray([base[k] for k in sorted(base)], dtype=np.int64)
        out = np.concatenate([out, np.repeat(np.arange(n, dtype=np.int64), len(base_codes))])
        key, weight = np.concatenate([key, np.tile(base_codes, n)]), np.concatenate([weight, np.tile(base_w, n)])
    empty = np.setdiff1d(np.arange(n, dtype=np.int64), out)
    if len(empty) and per == "work" and baseline:
        every = codes(list(baseline))
        out = np.concatenate([out, np.repeat(empty, len(every))])
        key = np.concatenate([key, np.tile(every, len(empty))])
        weight = np.concatenate([weight, np.ones(len(empty) * len(every), dtype=np.int64)])
    elif len(empty):
        raise ValidationError(f"output {cols.output_ids[int(empty[0])]} has no positive attribution: nobody to pay")
    keys += [k for k in index if index[k] >= len(keys)]
    order = np.lexsort((key, out))
    out, key, weight = out[order], key[order], weight[order]
    first = np.concatenate([[True], (out[1:] != out[:-1]) | (key[1:] != key[:-1])])
    starts = np.flatnonzero(first)
    return _Entries(keys, out[starts], key[starts], np.add.reduceat(weight, starts) if len(weight) else weight)


@dataclass
class _Lines:
    """Lines as codes into one table of texts (``texts``; -1: no work), with their output and weight."""

    out: I64
    payee: I64
    attributed: I64
    source: I64
    role: I64
    weight: npt.NDArray[Any]


@dataclass
class _Templates:
    """Each work's exact shares as ``num / denominator``: rows ``start[k]:start[k]+count[k]`` of the flat arrays."""

    start: I64
    count: I64
    denominator: I64
    fast: npt.NDArray[np.bool_]
    payee: I64
    source: I64
    role: I64
    num: I64
    shares: dict[int, list[PayeeShare]]


def _templates(
    works: list[int],
    keys: list[str],
    graph: CreditGraph,
    agreement: Agreement,
    text: Text,
    memo: dict[str, list[PayeeShare]],
) -> _Templates:
    """Each of ``works``' exact shares (``work_shares``, read from ``memo`` where it holds them)."""
    size = len(keys)
    start, count = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
    denominator, fast = np.ones(size, dtype=np.int64), np.zeros(size, dtype=bool)
    payee: list[int] = []
    source: list[int] = []
    role: list[int] = []
    num: list[int] = []
    shares: dict[int, list[PayeeShare]] = {}
    for k in works:
        got = shares[k] = work_shares(keys[k], graph, agreement, memo)
        d = math.lcm(*(s.share.denominator for s in got))
        if d > FAST_DENOMINATOR_MAX:
            continue
        start[k], count[k], denominator[k], fast[k] = len(num), len(got), d, True
        payee += [text(s.payee) for s in got]
        source += [text(s.source_work) for s in got]
        role += [text(s.role) for s in got]
        num += [s.share.numerator * (d // s.share.denominator) for s in got]
    p, src, r, n = (np.asarray(x, dtype=np.int64) for x in (payee, source, role, num))
    return _Templates(start, count, denominator, fast, p, src, r, n, shares)


def _lcm_per_output(out: I64, d: I64, outputs: int) -> tuple[I64, npt.NDArray[np.bool_]]:
    """Each output's least common multiple of its lines' denominators ``d``, and whether it stayed within
    ``FAST_DENOMINATOR_MAX`` (one pass per distinct denominator rank, with the overflow checked first)."""
    lcm = np.ones(outputs, dtype=np.int64)
    ok = np.ones(outputs, dtype=bool)
    # Distinct (output, denominator) pairs in that order, as one int64 each (d <= FAST_DENOMINATOR_MAX, so
    # out * 2^30 + d < 2^63): a plain sort (np.unique(axis=0) sorts rows as records: about 30x slower on 256,000 pairs).
    pairs = np.unique(out * (FAST_DENOMINATOR_MAX + 1) + d)
    pair_out, pair_d = pairs // (FAST_DENOMINATOR_MAX + 1), pairs % (FAST_DENOMINATOR_MAX + 1)
    rank = np.arange(len(pairs)) - np.searchsorted(pair_out, pair_out, side="left")
    for r in range(int(rank.max()) + 1 if len(rank) else 0):
        o, v = pair_out[rank == r], pair_d[rank == r]
        cur = lcm[o]
        step = cur // np.gcd(cur, v)
        fits = ok[o] & (step <= FAST_DENOMINATOR_MAX // v)
        ok[o[~fits]] = False
        lcm[o[fits]] = step[fits] * v[fits]
    return lcm, ok


def _work_lines(
    e: _Entries, graph: CreditGraph, agreement: Agreement, outputs: int, text: Text, memo: dict[str, list[PayeeShare]]
) -> tuple[_Lines, npt.NDArray[np.bool_], _Templates]:
    """The lines of every output its credit shares and denominators allow in int64 (``ok``), as
    ``output_lines`` makes them: share x weight, scaled by the output's least common denominator."""
    t = _templates(np.unique(e.key).tolist(), e.keys, graph, agreement, text, memo)
    ok = np.ones(outputs, dtype=bool)
    ok[e.out[~t.fast[e.key]]] = False
    keep = ok[e.out]
    out, key, weight = e.out[keep], e.key[keep], e.weight[keep]
    per = t.count[key]
    first = np.repeat(np.cumsum(per) - per, per)
    row = np.repeat(t.start[key], per) + np.arange(int(per.sum()), dtype=np.int64) - first
    out, key, weight = np.repeat(out, per), np.repeat(key, per), np.repeat(weight, per)
    d_work = t.denominator[key]
    product = t.num[row] * weight
    g = np.gcd(product, d_work)
    numerator, d = product // g, d_work // g
    lcm, fits = _lcm_per_output(out, d, outputs)
    ok[np.flatnonzero(~fits)] = False
    keep = ok[out]
    lines = _Lines(
        out[keep],
        t.payee[row][keep],
        np.asarray([text(w) for w in e.keys], dtype=np.int64)[key][keep],
        t.source[row][keep],
        t.role[row][keep],
        numerator[keep] * (lcm[out[keep]] // d[keep]),
    )
    return lines, ok, t


def _exact_lines(
    e: _Entries, outputs: list[int], graph: CreditGraph, agreement: Agreement, t: _Templates, text: Text
) -> _Lines:
    """The lines of ``outputs`` by ``output_lines`` itself, in exact Python integers."""
    memo = {e.keys[k]: s for k, s in t.shares.items()}
    cols: list[list[int]] = [[], [], [], [], []]
    weights: list[int] = []
    for o in outputs:
        at = np.flatnonzero(e.out == o)
        weights_in = {e.keys[int(k)]: int(w) for k, w in zip(e.key[at], e.weight[at])}
        lines = output_lines(weights_in, graph, agreement, memo)
        cols[0] += [o] * len(lines.payee)
        cols[1] += [text(p) for p in lines.payee]
        cols[2] += [text(w) for w in lines.attributed_work]
        cols[3] += [text(w) for w in lines.source_work]
        cols[4] += [text(r) for r in lines.role]
        weights += lines.weights
    out, payee, attributed, source, role = (np.asarray(c, dtype=np.int64) for c in cols)
    return _Lines(out, payee, attributed, source, role, np.asarray(weights, dtype=object))


def _first_seen(codes: I64) -> tuple[I64, I64]:
    """Codes renumbered in order of first appearance (as ``build_usage`` assigns them), and the old code
    of each new one."""
    uniq, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    renumber = np.empty(len(uniq), dtype=np.int64)
    renumber[order] = np.arange(len(uniq), dtype=np.int64)
    return renumber[inverse.reshape(-1)], uniq[order]


def _assemble(
    cols: UsageColumns, lines: _Lines, texts: list[str], guild_minimums: dict[tuple[str, str, str], GuildMinimum]
) -> UsageBatch:
    """The ``UsageBatch`` of ``lines``: sorted per output by (payee, source, role, attributed work) text,
    with dictionaries in order of first appearance."""
    rank = np.empty(len(texts) + 1, dtype=np.int64)  # code -1 (no work) reads the last slot
    rank[:-1] = np.argsort(np.argsort(np.asarray(texts, dtype=object), kind="stable"), kind="stable")
    rank[-1] = -1
    order = np.lexsort((rank[lines.attributed], rank[lines.role], rank[lines.source], rank[lines.payee], lines.out))
    out, weight = lines.out[order], lines.weight[order]
    counts = np.bincount(out, minlength=len(cols.output_ids))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    payee_codes, payee_texts = _first_seen(lines.payee[order])
    role_codes, role_texts = _first_seen(lines.role[order])
    attributed, source = lines.attributed[order], lines.source[order]
    works: list[str] = []
    attributed_codes = source_codes = np.full(len(out), -1, dtype=np.int64)
    if len(out) and attributed.max() >= 0:
        j = np.arange(len(out), dtype=np.int64)
        both = np.empty(2 * len(out), dtype=np.int64)
        both[offsets[out] + j], both[offsets[out + 1] + j] = attributed, source
        coded, work_texts = _first_seen(both)
        attributed_codes, source_codes = coded[offsets[out] + j], coded[offsets[out + 1] + j]
        works = [texts[int(w)] for w in work_texts]
    big = weight.dtype == object and any(int(w) >= (1 << 62) for w in weight)
    return UsageBatch(
        output_ids=cols.output_ids,
        model_ids=cols.model_ids,
        revenue_microunits=cols.revenue_microunits,
        currencies=cols.currencies,
        occurred_at=cols.occurred_at,
        offsets=offsets,
        payees=[texts[int(p)] for p in payee_texts],
        payee_codes=payee_codes,
        weights=weight if big else weight.astype(np.int64),
        works=works,
        attributed_codes=attributed_codes,
        source_codes=source_codes,
        roles=[texts[int(r)] for r in role_texts],
        role_codes=role_codes,
        guild_minimums=guild_minimums,
    )


def build_usage_columns(
    conn: Connection,
    cols: UsageColumns,
    agreement: Agreement,
    manifest: ManifestRecord | None,
    *,
    per: str,
    shares: Mapping[str, list[PayeeShare]] | None = None,
) -> UsageBatch:
    """``build_usage`` for columns: exactly the same ``UsageBatch`` for the same outputs and scores, per work
    through credits or, when given, the recorded ``shares`` of each work (as evidence re-derives lines)."""
    if per not in ("work", "payee"):
        raise ValidationError("attribution must be per work or per payee")
    if per == "work" and manifest is None:
        raise ManifestError("attribution per work needs the model's manifest")
    _check_columns(cols, manifest, per)
    baseline = usage_baseline(conn, agreement, manifest, per)
    e = _entries(cols, agreement, baseline, per)
    index: dict[str, int] = {}

    def text(value: str) -> int:
        return -1 if value == "" else index.setdefault(value, len(index))

    if per == "payee":
        key_text = np.asarray([text(k) for k in e.keys], dtype=np.int64)
        none = np.full(len(e.out), -1, dtype=np.int64)
        role = np.full(len(e.out), text(PAYEE_ROLE), dtype=np.int64)
        lines = _Lines(e.out, key_text[e.key], none, none, role, e.weight)
        return _assemble(cols, lines, list(index), {})
    needed = sorted({e.keys[int(k)] for k in np.unique(e.key)})
    graph = load_credit_graph(conn, needed) if shares is None else CreditGraph()
    memo = {} if shares is None else _recorded_shares(shares, needed)
    lines, ok, t = _work_lines(e, graph, agreement, len(cols.output_ids), text, memo)
    slow = np.flatnonzero(~ok).tolist()
    if slow:
        exact = _exact_lines(e, slow, graph, agreement, t, text)
        lines = _Lines(
            np.concatenate([lines.out, exact.out]),
            np.concatenate([lines.payee, exact.payee]),
            np.concatenate([lines.attributed, exact.attributed]),
            np.concatenate([lines.source, exact.source]),
            np.concatenate([lines.role, exact.role]),
            np.concatenate([lines.weight.astype(object), exact.weight]),
        )
    usage = _assemble(cols, lines, list(index), guild_minimums_applied(graph, agreement))
    usage.shares = {w: memo[w] for w in needed if w in memo}
    return usage
