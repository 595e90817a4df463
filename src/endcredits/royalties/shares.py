"""Exact shares: from credits and lineage to each work's payees, and from one output to its lines.

A work's residual is divided in one step, as exact fractions:

1. Upstream first. Each parent in the work's lineage receives its edge's stated share, or an equal part
   of the agreement's ``lineage_pass_through`` when the edge states none; that part is divided among the
   parent's own payees the same way, recursively (a DAG; depth bounded by ``LINEAGE_DEPTH_MAX``).
2. The rest is the work's direct share. Its rights holder receives ``rights_holder_share`` of it and the
   credited people and names the remainder, in proportion to role weight x credit weight. With no
   rights holder the credits take all; with no credits the rights holder takes all; with neither it is
   held for the work itself (``work:<id>``, in escrow) until someone is credited.

Nothing is rounded here. ``money.split_batch`` rounds once per output, to 2^-32 of a microunit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from math import lcm
from typing import Any

import numpy as np
import numpy.typing as npt

from endcredits.errors import ValidationError
from endcredits.limits import LINEAGE_DEPTH_MAX, REVENUE_PER_OUTPUT_MICROUNITS_MAX
from endcredits.royalties.agreement import Agreement

ATTRIBUTION_WEIGHT_BITS = 32
"""Attribution scores become integers summing to at most 2^32 per output (see ``attribution_weights``)."""

RIGHTS_HOLDER_ROLE = "endcredits:rights_holder"
UNCLAIMED_WORK_ROLE = "endcredits:unclaimed_work"


@dataclass(frozen=True)
class CreditEntry:
    payee: str  # "person:ID" or "name:ID"
    role: str  # "scheme:code"
    weight: int


@dataclass(frozen=True)
class CreditGraph:
    """What the registry knows that decides who is paid for a work."""

    credits: Mapping[str, Sequence[CreditEntry]] = field(default_factory=dict)
    rights_holders: Mapping[str, str] = field(default_factory=dict)
    parents: Mapping[str, Sequence[tuple[str, Fraction | None]]] = field(default_factory=dict)


@dataclass(frozen=True)
class PayeeShare:
    """``share`` of one work's residual goes to ``payee`` for ``role`` on ``source_work``."""

    payee: str
    source_work: str
    role: str
    share: Fraction


def _direct(work_id: str, portion: Fraction, graph: CreditGraph, agreement: Agreement) -> list[PayeeShare]:
    credits = graph.credits.get(work_id, ())
    holder = graph.rights_holders.get(work_id)
    out: list[PayeeShare] = []
    credit_portion = portion
    if holder is not None:
        holder_portion = portion * agreement.rights_holder_share if credits else portion
        if holder_portion:
            out.append(PayeeShare(holder, work_id, RIGHTS_HOLDER_ROLE, holder_portion))
        credit_portion = portion - holder_portion
    if credits and credit_portion:
        weights = []
        for c in credits:
            scheme, _, code = c.role.partition(":")
            weights.append(agreement.role_weight(scheme, code) * c.weight)
        total = sum(weights)
        for c, w in zip(credits, weights):
            out.append(PayeeShare(c.payee, work_id, c.role, credit_portion * w / total))
    if holder is None and not credits and portion:
        out.append(PayeeShare(f"work:{work_id}", work_id, UNCLAIMED_WORK_ROLE, portion))
    return out


def work_shares(
    work_id: str,
    graph: CreditGraph,
    agreement: Agreement,
    memo: dict[str, list[PayeeShare]] | None = None,
    _path: tuple[str, ...] = (),
) -> list[PayeeShare]:
    """Every payee's exact share of one unit of ``work_id``'s residual. The shares sum to exactly 1."""
    if memo is not None and work_id in memo:
        return memo[work_id]
    if work_id in _path:
        raise ValidationError(f"lineage has a cycle through work {work_id}: {' -> '.join(_path + (work_id,))}")
    if len(_path) >= LINEAGE_DEPTH_MAX:
        raise ValidationError(f"lineage of work {work_id} is deeper than LINEAGE_DEPTH_MAX={LINEAGE_DEPTH_MAX}")
    parents = graph.parents.get(work_id, ())
    unstated = [p for p, s in parents if s is None]
    default_each = agreement.lineage_pass_through / len(unstated) if unstated else Fraction(0)
    upstream = [(p, s if s is not None else default_each) for p, s in parents]
    passed = sum((s for _, s in upstream), Fraction(0))
    if passed > 1:
        raise ValidationError(f"work {work_id} passes {passed} of its residual upstream, more than the whole")
    merged: dict[tuple[str, str, str], Fraction] = {}
    for share in _direct(work_id, 1 - passed, graph, agreement):
        key = (share.payee, share.source_work, share.role)
        merged[key] = merged.get(key, Fraction(0)) + share.share
    for parent, portion in upstream:
        if not portion:
            continue
        for share in work_shares(parent, graph, agreement, memo, _path + (work_id,)):
            key = (share.payee, share.source_work, share.role)
            merged[key] = merged.get(key, Fraction(0)) + share.share * portion
    result = [PayeeShare(p, w, r, s) for (p, w, r), s in sorted(merged.items()) if s]
    if sum((s.share for s in result), Fraction(0)) != 1:
        raise ValidationError(f"shares of work {work_id} do not sum to one")
    if memo is not None:
        memo[work_id] = result
    return result


def pool_of(revenue_microunits: int, agreement: Agreement) -> int:
    """The residual pool split off one output's revenue, in whole microunits (rounded down).

    The sub-microunit below the pool rate stays with the operator: at most one microunit per output.
    """
    if revenue_microunits < 0:
        raise ValidationError(
            f"negative revenue {revenue_microunits}: revenue must be >= 0 (refunds are not accrued as negative revenue)"
        )
    if revenue_microunits > REVENUE_PER_OUTPUT_MICROUNITS_MAX:
        raise ValidationError(f"revenue {revenue_microunits} exceeds REVENUE_PER_OUTPUT_MICROUNITS_MAX")
    rate = agreement.pool_rate
    return revenue_microunits * rate.numerator // rate.denominator


def pools_of(revenue_microunits: Sequence[int], agreement: Agreement) -> npt.NDArray[Any]:
    """``pool_of`` for many outputs at once: int64 when every product fits, else exact Python ints."""
    rate = agreement.pool_rate
    low, top = min(revenue_microunits, default=0), max(revenue_microunits, default=0)
    if low < 0 or top > REVENUE_PER_OUTPUT_MICROUNITS_MAX:
        pool_of(low if low < 0 else top, agreement)  # raises with the reason
    if top * rate.numerator < (1 << 63):
        revenue = np.fromiter(revenue_microunits, dtype=np.int64, count=len(revenue_microunits))
        return revenue * rate.numerator // rate.denominator
    return np.asarray([r * rate.numerator // rate.denominator for r in revenue_microunits], dtype=object)


def attribution_weights(
    scores: Mapping[str, float],
    agreement: Agreement,
    baseline: Sequence[str] | Mapping[str, int | Fraction] = (),
) -> dict[str, int]:
    """The one place scores become shares: integer weights per work (or payee) for one output.

    Negative and zero scores earn nothing (``negative_influence = "zero"``). Positive scores are
    quantized once, to integers summing to at most 2^32 (a key below 2^-32 of the output's positive
    mass gets 0); with a ``baseline_share`` b > 0, b of the weight goes by volume over ``baseline`` and
    1 - b follows influence. ``baseline`` is the manifest's works (each of volume 1: per work) or a
    volume per payee (their credited share of the manifest: per payee, as stock-photo funds pay by
    contribution). Deterministic given the scores.
    """
    keys = sorted(scores)
    values = np.asarray([scores[k] for k in keys], dtype=np.float64)
    bad = [keys[i] for i in np.flatnonzero(~np.isfinite(values))[:3]]
    if bad:
        raise ValidationError(f"attribution scores for {', '.join(bad)} are not finite; re-run attribution")
    scale = 1 << ATTRIBUTION_WEIGHT_BITS
    base = agreement.baseline_share
    weights: dict[str, int] = {}
    positive = values > 0.0
    if positive.any():
        influence_scale = int(scale * (1 - base))
        quantized = np.floor(values[positive] / values[positive].sum() * influence_scale).astype(np.int64)
        for key, w in zip((k for k, p in zip(keys, positive) if p), quantized.tolist()):
            if w > 0:
                weights[key] = w
    volume = dict(baseline) if isinstance(baseline, Mapping) else dict.fromkeys(baseline, 1)
    if any(v < 0 for v in volume.values()):
        raise ValidationError("baseline volumes must be >= 0")
    total = sum(volume.values(), Fraction(0))
    if base and total > 0:
        for key in sorted(volume):
            each = int(scale * base * volume[key] / total)  # floor: the weights never sum past 2^32
            if each > 0:
                weights[key] = weights.get(key, 0) + each
    return weights


def payee_volumes(work_ids: Sequence[str], graph: CreditGraph, agreement: Agreement) -> dict[str, Fraction]:
    """Each payee's credited share of ``work_ids`` (a work counts 1, split exactly as its residual is):
    the volume a baseline share pays by when attribution comes per payee."""
    memo: dict[str, list[PayeeShare]] = {}
    out: dict[str, Fraction] = {}
    for work in work_ids:
        for share in work_shares(work, graph, agreement, memo):
            out[share.payee] = out.get(share.payee, Fraction(0)) + share.share
    return out


@dataclass(frozen=True)
class OutputLines:
    """The lines of one output, sorted; ``weights`` are integers in the exact ratio of their shares."""

    attributed_work: list[str]
    source_work: list[str]
    payee: list[str]
    role: list[str]
    weights: list[int]


def output_lines(
    work_weights: Mapping[str, int], graph: CreditGraph, agreement: Agreement, memo: dict[str, list[PayeeShare]]
) -> OutputLines:
    """Lines (attributed work, source work, payee, role) with exact integer weights for one output."""
    rows: list[tuple[str, str, str, str, Fraction]] = []
    for work, weight in work_weights.items():
        if weight <= 0:
            continue
        for share in work_shares(work, graph, agreement, memo):
            rows.append((share.payee, share.source_work, share.role, work, share.share * weight))
    rows.sort(key=lambda r: r[:4])
    denominator = 1
    for r in rows:
        denominator = lcm(denominator, r[4].denominator)
    ints = [int(r[4] * denominator) for r in rows]
    return OutputLines(
        attributed_work=[r[3] for r in rows],
        source_work=[r[1] for r in rows],
        payee=[r[0] for r in rows],
        role=[r[2] for r in rows],
        weights=ints,
    )


def payee_lines(payee_weights: Mapping[str, int]) -> OutputLines:
    """Lines for attribution given per payee (no works): one line per payee with a positive weight."""
    keys = sorted(k for k, w in payee_weights.items() if w > 0)
    return OutputLines(
        attributed_work=[""] * len(keys),
        source_work=[""] * len(keys),
        payee=keys,
        role=["endcredits:attributed"] * len(keys),
        weights=[payee_weights[k] for k in keys],
    )
