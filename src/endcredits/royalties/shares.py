"""Exact shares: from credits and lineage to each work's payees, and from one output to its lines.

A work's residual is divided in one step, as exact fractions:

1. Upstream first. Each parent in the work's lineage receives its edge's stated share, or an equal part
   of the agreement's ``lineage_pass_through`` when the edge states none; that part is divided among the
   parent's own payees the same way, recursively (a DAG; depth bounded by ``LINEAGE_DEPTH_MAX``).
2. The rest is the work's direct share. Its rights holder receives ``rights_holder_share`` of it and the
   credited people and names the remainder, in proportion to role weight x credit weight. A credit that
   carries its guild's minimum for the role (``GuildMinimum``, a member's inherited term) takes the higher
   of the agreement's role weight and that minimum: the term that protects the member more. With no
   rights holder the credits take all; with no credits the rights holder takes all; with neither it is
   held for the work itself (``work:<id>``, in escrow) until someone is credited.

Nothing is rounded here. ``money.split_batch`` rounds once per output, to 2^-32 of a microunit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from math import fsum, isfinite, lcm
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
class GuildMinimum:
    """The least role weight guild ``issuer``'s terms (``version``) let an agreement give its member in ``role``."""

    issuer: str
    version: int
    role: str  # "scheme:code"
    weight: int

    @property
    def label(self) -> str:
        """How a statement line cites it: ``guild minimum weight ebu:actor=5 (guild terms of ISSUER v2)``."""
        return f"guild minimum weight {self.role}={self.weight} (guild terms of {self.issuer} v{self.version})"


@dataclass(frozen=True)
class CreditEntry:
    payee: str  # "person:ID" or "name:ID"
    role: str  # "scheme:code"
    weight: int
    guild_minimum: GuildMinimum | None = None  # the payee's guild's least weight for the role, when a member


def role_weight_of(entry: CreditEntry, agreement: Agreement) -> tuple[int, GuildMinimum | None]:
    """The role weight ``entry`` is paid by, and the guild term that set it when that term raised it above
    the agreement's (the higher weight protects the member more; a tie is the agreement's)."""
    scheme, _, code = entry.role.partition(":")
    weight = agreement.role_weight(scheme, code)
    floor = entry.guild_minimum
    if floor is not None and floor.weight > weight:
        return floor.weight, floor
    return weight, None


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
        weights = [role_weight_of(c, agreement)[0] * c.weight for c in credits]
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


def guild_minimums_applied(graph: CreditGraph, agreement: Agreement) -> dict[tuple[str, str, str], GuildMinimum]:
    """Per (payee, work, role) of ``graph``'s credits: the guild minimum that raised its role weight above the
    agreement's. What statements cite for the lines of that credit."""
    out: dict[tuple[str, str, str], GuildMinimum] = {}
    for work, entries in graph.credits.items():
        for c in entries:
            applied = role_weight_of(c, agreement)[1] if c.guild_minimum is not None else None
            if applied is not None:
                out[(c.payee, work, c.role)] = applied
    return out


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
    *,
    output_id: str | None = None,
) -> dict[str, int]:
    """The one place scores become shares: integer weights per work (or payee) for one output.

    Negative and zero scores earn nothing (``negative_influence = "zero"``). Positive scores are
    quantized once, exactly: key k gets floor(2^32 (1 - b) s_k / sum of positive s), computed for any
    finite float (1.7e308, subnormals, any mix) without overflow (``_influence_weights``), so the
    weights sum to at most 2^32 and a key below 2^-32 of the output's positive mass gets 0. With a
    ``baseline_share`` b > 0, b of the weight goes by volume over ``baseline`` and 1 - b follows
    influence. ``baseline`` is the manifest's works (each of volume 1: per work) or a volume per payee
    (their credited share of the manifest: per payee, as stock-photo funds pay by contribution). A
    score that is not a finite number (NaN, an infinity, text) is refused, naming ``output_id``.
    Deterministic given the scores.
    """
    keys = sorted(scores)
    values = _finite_scores(keys, scores, output_id)
    scale = 1 << ATTRIBUTION_WEIGHT_BITS
    base = agreement.baseline_share
    weights: dict[str, int] = {}
    positive = values > 0.0
    if positive.any():
        influence_scale = int(scale * (1 - base))
        quantized = _influence_weights(values[positive], influence_scale)
        for key, w in zip((k for k, p in zip(keys, positive.tolist()) if p), quantized):
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


def _finite_scores(keys: list[str], scores: Mapping[str, float], output_id: str | None) -> npt.NDArray[np.float64]:
    """The scores as float64, in ``keys`` order; a one-line ``ValidationError`` for any that is not a
    finite number (NaN, an infinity, text, a boolean, an int beyond float64)."""
    where = f" of output {output_id}" if output_id is not None else ""
    raw = [scores[k] for k in keys]
    try:
        values = np.asarray(raw)  # float64 or int64 for numbers; text, None or a huge int give another kind
        if values.shape != (len(keys),) or (len(keys) and values.dtype.kind not in "fiu"):
            raise TypeError("not one number per key")
        values = values.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        bad = next((k for k, v in zip(keys, raw) if not _is_number(v)), keys[0])
        raise ValidationError(f"attribution score{where} for {bad} is {scores[bad]!r:.40}, not a number") from None
    bad_at = np.flatnonzero(~np.isfinite(values))[:3].tolist()
    if bad_at:
        shown = ", ".join(f"{keys[i]} = {float(values[i])}" for i in bad_at)
        raise ValidationError(f"attribution scores{where} are not finite ({shown}); re-run attribution")
    return values


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        return isfinite(float(value))
    except OverflowError:
        return False


def _influence_weights(values: npt.NDArray[np.float64], scale: int) -> list[int]:
    """floor(scale * v / sum(values)) for each of ``values`` (positive, finite float64), exactly.

    The values are first scaled by a power of two so that the largest is in [0.5, 1): exact, except
    that a value below 2^-1022 of the largest may lose bits worth less than 2^-1074 of it, so nothing
    overflows (1.7e308 + 1.7e308 never forms a float). Then three tries, each settling the floors its
    proven error bound can (q is the float quotient, the bound covers every rounding):

    1. NumPy's sum: |q - exact| <= (n + 4) * 2^-52 * q + 2^-900 (any summation order of n positives);
    2. for the few left, ``math.fsum`` (correctly rounded): |q - exact| <= 2^-50 * q + 2^-900;
    3. for any still left, the floats' exact integer mantissas as Python ints.
    """
    top = int(np.frexp(values.max())[1])
    scaled = np.ldexp(values, -top)
    low, settled = _floors(scaled, float(scaled.sum()), (len(values) + 4) * 2.0**-52, scale)
    if settled.all():
        weights: list[int] = low.astype(np.int64).tolist()
        return weights
    left = np.flatnonzero(~settled)
    low_left, settled_left = _floors(scaled[left], fsum(scaled.tolist()), 2.0**-50, scale)
    low[left] = low_left
    left = left[~settled_left]
    weights = low.astype(np.int64).tolist()
    if len(left):
        mantissas, exponents = np.frexp(values)
        ints = [int(m) << e for m, e in zip((mantissas * 2.0**53).astype(np.int64).tolist(),
                                            (exponents - exponents.min()).tolist())]  # fmt: skip
        exact_total = sum(ints)
        for i in left.tolist():
            weights[i] = ints[i] * scale // exact_total
    return weights


def _floors(
    scaled: npt.NDArray[np.float64], total: float, error_relative: float, scale: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """floor(scale * scaled / total), and where the error bound settles it (floor(q - e) == floor(q + e))."""
    q = scaled * (scale / total)
    slack = q * error_relative + 2.0**-900
    low = np.floor(np.maximum(q - slack, 0.0))
    return low, low == np.floor(q + slack)


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
