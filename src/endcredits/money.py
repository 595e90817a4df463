"""Money as integers: amounts are counts of microunits (10^-8 of a currency's major unit).

Nothing here touches a float. ``Decimal`` is not used either: text is parsed digit by digit.

- ``parse_amount`` / ``format_amount``: exact text <-> microunits, each the inverse of the other.
- ``allocate``: split a whole into parts that sum to it exactly (largest remainder, stable tie-break).
- ``split_batch``: the same rule for many outputs at once, to 2^-32 of a microunit (``Split``).
- ``carry_forward``: turn accrued subunits into whole microunits to post, carrying the fraction.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import lcm
from typing import TYPE_CHECKING, Any, TypeVar

from endcredits.errors import LimitExceededError, ValidationError, invariant
from endcredits.limits import (
    AMOUNT_DIGITS_MAX,
    AMOUNT_MICROUNITS_MAX,
    MICROUNITS_PER_UNIT,
    PAYEES_PER_OUTPUT_MAX,
    REVENUE_PER_OUTPUT_MICROUNITS_MAX,
    SUBUNIT_BITS,
    SUBUNITS_PER_MICROUNIT,
)

K = TypeVar("K", bound=Hashable)

DECIMALS = 8
"""Digits after the point that a microunit amount can carry."""

# ISO 4217 active codes -> digits of the currency's minor unit (what a bank can settle).
CURRENCY_MINOR_DIGITS: dict[str, int] = {
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2, "AZN": 2,
    "BAM": 2, "BBD": 2, "BDT": 2, "BHD": 3, "BIF": 0, "BMD": 2, "BND": 2, "BOB": 2, "BRL": 2,
    "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2, "CAD": 2, "CDF": 2, "CHF": 2, "CLP": 0,
    "CNY": 2, "COP": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2, "DJF": 0, "DKK": 2, "DOP": 2,
    "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2,
    "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0, "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2,
    "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3,
    "JPY": 0, "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2,
    "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3, "MAD": 2, "MDL": 2,
    "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2, "MVR": 2, "MWK": 2,
    "MXN": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2,
    "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2,
    "RON": 2, "RSD": 2, "RUB": 2, "RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2,
    "SGD": 2, "SHP": 2, "SLE": 2, "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2,
    "SZL": 2, "THB": 2, "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2,
    "TZS": 2, "UAH": 2, "UGX": 0, "USD": 2, "UYU": 2, "UZS": 2, "VES": 2, "VND": 0, "VUV": 0,
    "WST": 2, "XAF": 0, "XCD": 2, "XOF": 0, "XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
}  # fmt: skip

_AMOUNT_RE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


def check_currency(currency: str) -> str:
    """Return ``currency`` if it is an active ISO 4217 code, else raise ``ValidationError``."""
    if not isinstance(currency, str) or currency not in CURRENCY_MINOR_DIGITS:
        raise ValidationError(
            f"unknown currency {currency!r}: use an ISO 4217 code in capitals, such as 'EUR' or 'USD'"
        )
    return currency


def minor_unit_microunits(currency: str) -> int:
    """Microunits in one minor unit of ``currency`` (a cent of EUR is 10^6 microunits)."""
    digits: int = CURRENCY_MINOR_DIGITS[check_currency(currency)]
    return int(10 ** (DECIMALS - digits))  # DECIMALS >= every minor digit count: an exact int


def check_amount(microunits: int, what: str = "amount") -> int:
    """Return ``microunits`` if it is an int within the stored range, else raise."""
    if not isinstance(microunits, int) or isinstance(microunits, bool):
        raise ValidationError(f"{what} must be an integer count of microunits, got {type(microunits).__name__}")
    if abs(microunits) > AMOUNT_MICROUNITS_MAX:
        raise LimitExceededError(f"{what} {microunits} is beyond the largest storable amount {AMOUNT_MICROUNITS_MAX}")
    return microunits


def parse_amount(text: str, currency: str) -> int:
    """Exact decimal text in major units (``"12.34"``) to microunits (``1234000000``).

    Accepts an optional leading ``-``, digits, and at most 8 decimals; surrounding whitespace is ignored.
    Rejects exponents, NaN/inf, empty text, thousands separators and leading zeros.
    """
    check_currency(currency)
    if not isinstance(text, str):
        raise ValidationError(f"amount must be text, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise ValidationError("amount is empty: write a decimal such as '12.34'")
    if _AMOUNT_RE.fullmatch(stripped) is None:
        raise ValidationError(
            f"malformed amount {text!r}: write plain decimal digits such as '1234.56' "
            "(no exponent, sign '+', thousands separator, NaN or infinity)"
        )
    negative = stripped.startswith("-")
    whole, _, frac = stripped.lstrip("-").partition(".")
    if len(frac) > DECIMALS:
        raise ValidationError(f"amount {text!r} has {len(frac)} decimals; at most {DECIMALS} (one microunit)")
    if len(whole) > AMOUNT_DIGITS_MAX - DECIMALS:  # no leading zeros, so at least 10^22 major units
        raise LimitExceededError(
            f"amount of {len(whole)} whole digits is beyond the largest storable amount {AMOUNT_MICROUNITS_MAX}"
        )
    value = int(whole) * MICROUNITS_PER_UNIT + int(frac.ljust(DECIMALS, "0") or "0")
    return check_amount(-value if negative else value)


def format_amount(microunits: int, currency: str) -> str:
    """Microunits to exact decimal text; ``parse_amount(format_amount(x, c), c) == x``.

    Shows at least the currency's minor digits and as many more as needed to be exact.
    """
    check_amount(microunits)
    minor = CURRENCY_MINOR_DIGITS[check_currency(currency)]
    sign = "-" if microunits < 0 else ""
    whole, frac = divmod(abs(microunits), MICROUNITS_PER_UNIT)
    digits = str(frac).rjust(DECIMALS, "0").rstrip("0")
    digits = digits.ljust(minor, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def parse_fraction(text: str, what: str) -> Fraction:
    """Exact decimal or ``p/q`` text to a ``Fraction`` (for rates and shares in agreements)."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"{what} is empty: write a decimal such as '0.25' or a ratio such as '1/3'")
    t = text.strip()
    if re.fullmatch(r"[0-9]+/[1-9][0-9]*", t) or re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]+)?", t):
        return Fraction(t)
    raise ValidationError(f"{what} {text!r} is not a plain decimal or ratio such as '0.25' or '1/3'")


def _sort_key(key: object) -> tuple[str, object]:
    return (type(key).__name__, key)


def _ordered(keys: list[K]) -> list[K]:
    """Keys in a stable order that does not depend on input order (the tie-break order)."""
    try:
        return sorted(keys, key=_sort_key)
    except TypeError:
        return sorted(keys, key=lambda k: (type(k).__name__, repr(k)))


def _integer_weights(weights: Mapping[K, int | Fraction]) -> dict[K, int]:
    """Scale weights to integers with the same ratios (exact)."""
    denominator = 1
    for key, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, Fraction)):
            raise ValidationError(f"weight for {key!r} must be an int or Fraction, got {type(weight).__name__}")
        if weight < 0:
            raise ValidationError(f"weight for {key!r} is negative ({weight}); weights must be >= 0")
        if isinstance(weight, Fraction):
            denominator = lcm(denominator, weight.denominator)
    return {key: int(weight * denominator) for key, weight in weights.items()}


def allocate(total: int, weights: Mapping[K, int | Fraction]) -> dict[K, int]:
    """Split ``total`` into integer parts in proportion to ``weights``.

    The parts sum to ``total``; each is the floor or the ceiling of its exact share; the leftover goes
    to the largest remainders, ties to the smallest key. The result does not depend on input order.
    """
    if isinstance(total, bool) or not isinstance(total, int):
        raise ValidationError(f"total must be an integer count of microunits, got {type(total).__name__}")
    if total < 0:
        raise ValidationError(f"total {total} is negative; only a non-negative whole can be allocated")
    if len(weights) > PAYEES_PER_OUTPUT_MAX:
        raise LimitExceededError(f"{len(weights)} parts exceed PAYEES_PER_OUTPUT_MAX={PAYEES_PER_OUTPUT_MAX}")
    scaled = _integer_weights(weights)
    weight_sum = sum(scaled.values())
    if weight_sum == 0:
        raise ValidationError("weights sum to zero: at least one weight must be positive")
    parts: dict[K, int] = {}
    remainders: dict[K, int] = {}
    for key, weight in scaled.items():
        parts[key], remainders[key] = divmod(total * weight, weight_sum)
    leftover = total - sum(parts.values())
    invariant(0 <= leftover < max(1, len(parts)), "largest remainder leftover out of range")
    if leftover:
        order = _ordered(list(parts))
        rank = {key: i for i, key in enumerate(order)}
        winners = sorted(order, key=lambda k: (-remainders[k], rank[k]))[:leftover]
        for key in winners:
            parts[key] += 1
    invariant(sum(parts.values()) == total, "allocation does not sum to its total")
    return parts


# Batches: many outputs at once, to 2^-32 of a microunit --------------------------------------------

if TYPE_CHECKING:  # numpy is imported by the batch functions, so a command that only formats starts fast
    import numpy as np
    import numpy.typing as npt

    Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """Per line of a batch: ``microunits`` + ``subunits`` / 2^32 (0 <= subunits < 2^32).

    Lines are (output, payee) pairs, grouped by output through ``offsets``.
    """

    microunits: Int64Array
    subunits: Int64Array


_I64_MAX = (1 << 63) - 1


def _split_rows(
    pools: npt.NDArray[Any],
    offsets: Int64Array,
    weights: npt.NDArray[Any],
    weight_sums: npt.NDArray[Any],
    tie_keys: Int64Array,
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Largest-remainder split of every row, vectorized; exact for int64 or Python-int (object) arrays."""
    import numpy as np

    counts = np.diff(offsets)
    n_out = len(counts)
    rows = np.repeat(np.arange(n_out, dtype=np.int64), counts)
    pool = pools[rows]
    wsum = weight_sums[rows]
    product = pool * weights
    q = product // wsum  # whole microunits
    r = product - q * wsum  # remainder < wsum
    scaled = r * SUBUNITS_PER_MICROUNIT
    s = scaled // wsum  # subunits
    t = scaled - s * wsum  # remainder < wsum
    t64 = t.astype(np.int64)  # wsum < 2^63, so t fits
    sum_t = np.add.reduceat(t64.astype(object) if t.dtype == object else t64, offsets[:-1])
    leftover = np.asarray(sum_t // weight_sums, dtype=np.int64)  # whole subunits left per row, < lines in row
    if t.dtype != object and n_out < (1 << 31):
        # t < 2^31 here, so (row, t) packs into one int64: one sort, then only runs of equal (row, t)
        # (equal weights in one output) are re-sorted by tie key.
        composite = (rows << 31) | ((1 << 31) - 1 - t64)
        order = np.argsort(composite)
        sorted_c = composite[order]
        same = np.flatnonzero(sorted_c[1:] == sorted_c[:-1])
        if len(same):
            positions = np.unique(np.concatenate([same, same + 1]))
            members = order[positions]
            order[positions] = members[np.lexsort((tie_keys[members], sorted_c[positions]))]
    else:
        order = np.lexsort((tie_keys, -t64, rows))
    sorted_rows = rows[order]
    rank = np.arange(len(order), dtype=np.int64) - offsets[sorted_rows]  # rows are contiguous once sorted
    bonus = np.zeros(len(order), dtype=np.int64)
    bonus[order] = rank < leftover[sorted_rows]
    s = s + bonus
    return q + s // SUBUNITS_PER_MICROUNIT, s % SUBUNITS_PER_MICROUNIT


def _split_rows_int64(
    pools: Int64Array,
    offsets: Int64Array,
    weights: Int64Array,
    weight_sums: Int64Array,
    tie_keys: Int64Array,
) -> tuple[Int64Array, Int64Array]:
    """``_split_rows`` for a batch whose weight sums are below 2^31 and whose pool x weight sum fit in
    int64, with the same result, in place where it can: a batch of 10^6 lines makes 8 MB arrays, and
    every new one is memory the process may first have to fault in."""
    import numpy as np

    counts = np.diff(offsets)
    n = len(weights)
    rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    wsum = weight_sums[rows]
    product = pools[rows]
    product *= weights  # <= pool x weight sum: fits
    q, r = np.divmod(product, wsum)  # whole microunits, and the remainder (< wsum < 2^31)
    del product
    r <<= SUBUNIT_BITS  # < 2^63
    s, t = np.divmod(r, wsum)  # subunits, and the remainder left (< wsum < 2^31)
    del r, wsum
    leftover = np.add.reduceat(t, offsets[:-1]) // weight_sums  # whole subunits left per row, < its line count
    # (row, remainder descending) packed in one int64: one sort, then only runs of equal keys (equal
    # remainders in one output) are re-sorted by tie key.
    composite = rows
    composite <<= 31
    np.subtract((1 << 31) - 1, t, out=t)
    composite |= t
    del t
    order = np.argsort(composite)
    sorted_c = composite[order]
    del composite
    same = np.flatnonzero(sorted_c[1:] == sorted_c[:-1])
    if len(same):
        positions = np.unique(np.concatenate([same, same + 1]))
        members = order[positions]
        order[positions] = members[np.lexsort((tie_keys[members], sorted_c[positions]))]
    sorted_c >>= 31  # each sorted line's row
    rank = offsets[sorted_c]
    np.subtract(np.arange(n, dtype=np.int64), rank, out=rank)  # its place among its row's lines
    bonus = np.zeros(n, dtype=np.int64)
    bonus[order] = rank < leftover[sorted_c]
    s += bonus
    q += s >> SUBUNIT_BITS
    s &= SUBUNITS_PER_MICROUNIT - 1
    return q, s


def _split_rows_python(
    pools: npt.NDArray[Any], offsets: Int64Array, weights: npt.NDArray[Any], tie_keys: Int64Array
) -> Split:
    """The same rule as ``_split_rows``, one output at a time in Python integers, for weight sums of any
    size (exact credit shares with large common denominators). Slow, and only used when needed."""
    import numpy as np

    micro = np.zeros(len(weights), dtype=np.int64)
    sub = np.zeros(len(weights), dtype=np.int64)
    for row in range(len(pools)):
        lo, hi = int(offsets[row]), int(offsets[row + 1])
        w = [int(x) for x in weights[lo:hi]]
        total_w = sum(w)
        total_sub = int(pools[row]) << SUBUNIT_BITS
        parts = []
        rems = []
        for wi in w:
            q, r = divmod(total_sub * wi, total_w)
            parts.append(q)
            rems.append(r)
        keys = [int(k) for k in tie_keys[lo:hi]]
        for i in sorted(range(hi - lo), key=lambda j: (-rems[j], keys[j]))[: total_sub - sum(parts)]:
            parts[i] += 1
        for i, amount in enumerate(parts):
            micro[lo + i], sub[lo + i] = divmod(amount, SUBUNITS_PER_MICROUNIT)
    return Split(micro, sub)


def _python_ints(values: Sequence[Any] | npt.NDArray[Any], what: str) -> npt.NDArray[Any]:
    """Exact Python ints in an object array; floats, bools and text are refused, never truncated."""
    import numpy as np

    out = []
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValidationError(f"split_batch: {what} must be integers, got {type(value).__name__}")
        out.append(int(value))
    return np.asarray(out, dtype=object)


def split_batch(
    pools_microunits: Sequence[int] | npt.NDArray[Any],
    offsets: Int64Array,
    weights: Sequence[int] | npt.NDArray[Any],
    tie_keys: Int64Array,
) -> Split:
    """Split each output's pool over its lines in proportion to integer weights, to one subunit.

    Pools are Python ints, or an int64 array (taken as is, no per-value conversion).

    ``offsets`` has one more entry than ``pools_microunits``; lines ``offsets[i]:offsets[i+1]`` belong to
    output ``i`` and carry non-negative integer ``weights`` (positive sum per output) and int64
    ``tie_keys`` (unique within an output). Per output the parts sum to ``pool << 32`` subunits exactly,
    each within one subunit of its exact share; the leftover subunits go to the largest remainders, ties
    to the smallest key, so the order of lines within an output does not matter. A batch whose products
    all fit in int64 runs in int64; otherwise the same code runs on Python integers (object arrays), and
    a batch with an output whose weights sum beyond 2^63 runs output by output in Python.
    """
    import numpy as np

    n_out = len(pools_microunits)
    offsets = np.asarray(offsets, dtype=np.int64)
    tie_keys = np.asarray(tie_keys, dtype=np.int64)
    if isinstance(weights, np.ndarray) and weights.dtype.kind in "iu":
        w_obj = weights
    else:
        w_obj = _python_ints(weights, "weights")
    if offsets.shape != (n_out + 1,) or offsets[0] != 0 or offsets[-1] != len(w_obj) or len(tie_keys) != len(w_obj):
        raise ValidationError("split_batch: offsets must run from 0 to the line count, one more than the outputs")
    counts = np.diff(offsets)
    if n_out == 0:
        return Split(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if counts.min() <= 0:
        raise ValidationError("split_batch: every output needs at least one line")
    if len(w_obj) and w_obj.min() < 0:
        raise ValidationError("split_batch: weights must be >= 0")
    if isinstance(pools_microunits, np.ndarray) and pools_microunits.dtype == np.int64:
        pools = pools_microunits  # exact already: no per-value conversion
    else:
        pools = _python_ints(pools_microunits, "pools")
    if pools.min() < 0 or pools.max() > REVENUE_PER_OUTPUT_MICROUNITS_MAX:
        raise ValidationError(
            "split_batch: pools must be between 0 and "
            f"REVENUE_PER_OUTPUT_MICROUNITS_MAX={REVENUE_PER_OUTPUT_MICROUNITS_MAX}"
        )
    if w_obj.dtype != object and len(w_obj) and int(w_obj.max()) <= _I64_MAX // int(counts.max()):
        weight_sums = np.add.reduceat(w_obj.astype(np.int64, copy=False), offsets[:-1])  # cannot overflow
    else:
        weight_sums = np.add.reduceat(w_obj.astype(object) if w_obj.dtype != object else w_obj, offsets[:-1])
    if weight_sums.min() <= 0:
        raise ValidationError("split_batch: an output's weights sum to zero; give at least one line a positive weight")
    if weight_sums.max() > _I64_MAX:
        return _split_rows_python(pools, offsets, w_obj, tie_keys)
    sums_max = int(weight_sums.max())
    # Per output (not per line): pool x weight sum must fit in int64. The bound on the maxima settles
    # most batches at once; otherwise the exact products decide.
    fits = (
        sums_max < (1 << 31)
        and n_out < (1 << 31)
        and (
            int(pools.max()) * sums_max <= _I64_MAX
            or bool((pools.astype(object) * weight_sums.astype(object)).max() <= _I64_MAX)
        )
    )
    if fits:
        micro, sub = _split_rows_int64(
            pools.astype(np.int64, copy=False),
            offsets,
            np.asarray(w_obj, dtype=np.int64),
            weight_sums.astype(np.int64, copy=False),
            tie_keys,
        )
    else:
        micro, sub = _split_rows(
            pools.astype(object), offsets, w_obj.astype(object), weight_sums.astype(object), tie_keys
        )
    micro_i = np.asarray(micro, dtype=np.int64)
    sub_i = np.asarray(sub, dtype=np.int64)
    return Split(micro_i, sub_i)


def carry_forward(carry_in_subunits: int, microunits: int, subunits: int) -> tuple[int, int]:
    """Whole microunits to post and the subunits carried, from a payee's carry and accrued parts.

    ``(posted, carry_out)`` with ``posted << 32 + carry_out == (microunits << 32) + subunits + carry_in``
    and ``0 <= carry_out < 2^32``.
    """
    invariant(0 <= carry_in_subunits < SUBUNITS_PER_MICROUNIT, "carry must be below one microunit")
    whole, carry_out = divmod(carry_in_subunits + subunits, SUBUNITS_PER_MICROUNIT)
    return microunits + whole, carry_out


def to_minor_units(microunits: int, currency: str) -> tuple[int, int]:
    """Split microunits into whole minor units a bank can pay (cents) and the dust left behind."""
    check_amount(microunits)
    unit = minor_unit_microunits(currency)
    minor, dust = divmod(microunits, unit)
    return minor, dust


__all__ = [
    "CURRENCY_MINOR_DIGITS",
    "Split",
    "allocate",
    "carry_forward",
    "check_amount",
    "check_currency",
    "format_amount",
    "minor_unit_microunits",
    "parse_amount",
    "parse_fraction",
    "split_batch",
    "to_minor_units",
]
