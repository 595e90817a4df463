"""The fold's arithmetic over columns (``ledger.records.fold_pending``): per account key, the pending legs'
sum and last transfer; per payee, the latest carry; each matched against the snapshot in the same pass.

A fold meets each account key and payee once per segment (6-8 x 10^6 strings at 2 x 10^6 payees). Hashing
the strings is what costs, so each column is hashed once: the snapshot's keys (distinct) and the segments'
keys are dictionary-encoded together, the snapshot's first, so a code below the snapshot's size is its
position there. The sums are then plain NumPy scatters, one per segment: a transfer names an account in
one leg and a segment carries a payee once, so no position repeats within a segment, and ``x[codes] +=
amounts`` is exact (a segment where one does repeat, checked for each, takes ``ufunc.at``). Sums stay in
int64 while every amount times the number of segments is below 2^63 (each sum has at most one term per
segment), else they are Python ints. No string is sorted except the keys a fold appends to the snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

    from endcredits.ledger.segments import Segment


def encoded(
    base: pa.Array, parts: Sequence[pa.Array]
) -> tuple[pa.Array, npt.NDArray[np.int64], list[npt.NDArray[np.int64]]]:
    """One hash pass over ``base`` and ``parts`` (strings): (the dictionary, each entry's first position in
    ``base`` or -1, each part's codes). The dictionary holds the strings in the order first met, ``base``'s
    first, so when ``base`` is distinct its codes are its positions."""
    import numpy as np
    import pyarrow as pa

    chunks = pa.chunked_array([base, *parts], pa.string()).dictionary_encode().chunks
    if not chunks:
        return pa.array([], pa.string()), np.zeros(0, np.int64), [np.zeros(0, np.int64) for _ in parts]
    dictionary = chunks[-1].dictionary
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in chunks]).astype(np.int64)
    cuts = np.cumsum([len(base), *(len(p) for p in parts)])
    base_codes, *part_codes = np.split(codes, cuts[:-1])
    at_base = np.full(len(dictionary), -1, dtype=np.int64)
    positions = np.arange(len(base), dtype=np.int64)
    if np.array_equal(base_codes, positions):
        at_base[: len(base)] = positions
    elif len(base):  # a key twice in base: its first position, as ``pc.index_in`` gives it
        first = np.full(len(dictionary), len(base), dtype=np.int64)
        np.minimum.at(first, base_codes, positions)
        at_base = np.where(first < len(base), first, -1)
    return dictionary, at_base, part_codes


def _distinct(codes: npt.NDArray[np.int64], mark: npt.NDArray[np.bool_]) -> bool:
    """Whether no code repeats (``mark``: all False, of the dictionary's size; left all False)."""
    import numpy as np

    mark[codes] = True
    distinct = int(np.count_nonzero(mark)) == len(codes)
    mark[codes] = False
    return distinct


@dataclass(frozen=True)
class LegSums:
    """The pending legs per account key met (in dictionary order, not sorted)."""

    keys: pa.Array  # string, distinct
    at_base: npt.NDArray[np.int64]  # position in the snapshot's keys, -1 when not there
    sums: npt.NDArray[Any]  # int64, or Python ints (object)
    last: npt.NDArray[np.int64]  # the last transfer that touched each
    big: bool  # every amount's size times the number of legs reaches 2^63: the snapshot keeps its text form


def summed_legs(segments: Sequence[Segment], base: pa.Array) -> LegSums:
    """Sum the segments' legs (in transfer order) per account key, matched against ``base`` (the snapshot's
    keys) in the same hash pass."""
    import numpy as np
    import pyarrow as pa

    dictionary, at_base, codes = encoded(base, [seg.accounts for seg in segments])
    n = len(dictionary)
    mark = np.zeros(n, dtype=np.bool_)
    distinct = [_distinct(c, mark) for c in codes]
    amounts: list[npt.NDArray[Any]]
    if all(pa.types.is_integer(seg.amounts.type) for seg in segments):
        amounts = [seg.amounts.to_numpy().astype(np.int64, copy=False) for seg in segments]
        bound = max((max(-int(a.min(initial=0)), int(a.max(initial=0))) for a in amounts), default=0)
        big = bound * sum(len(a) for a in amounts) >= (1 << 63)
        terms = len(segments) if all(distinct) else sum(len(a) for a in amounts)
        dtype: Any = np.int64 if bound * terms < (1 << 63) else object
    else:
        amounts = [np.asarray(seg.amount_list(), dtype=object) for seg in segments]
        big, dtype = True, object
    sums = np.zeros(n, dtype=dtype)
    last = np.zeros(n, dtype=np.int64)
    for seg, c, a, once in zip(segments, codes, amounts, distinct):
        if once:
            sums[c] += a.astype(dtype, copy=False)
        else:
            np.add.at(sums, c, a.astype(dtype, copy=False))
        last[c] = np.maximum(last[c], seg.transfer_id)
        mark[c] = True
    met = np.flatnonzero(mark)
    return LegSums(dictionary.take(pa.array(met, pa.int64())), at_base[met], sums[met], last[met], big)


def folded_carries(
    base_payees: pa.Array, base_subunits: npt.NDArray[np.int64], segments: Sequence[Segment]
) -> tuple[pa.Array, npt.NDArray[np.int64], int]:
    """``base``'s carries (one currency) overridden by each payee's carry as the latest of ``segments`` (that
    currency, in transfer order) left it, and extended by the payees ``base`` lacks in the order first met;
    with how many payees the segments carried."""
    import numpy as np
    import pyarrow as pa

    parts = [
        (seg.payees, seg.subunits.to_numpy()) for seg in segments if seg.payees is not None and seg.subunits is not None
    ]
    dictionary, at_base, codes = encoded(base_payees, [payees for payees, _ in parts])
    n = len(dictionary)
    mark = np.zeros(n, dtype=np.bool_)  # the payees met so far
    scratch = np.zeros(n, dtype=np.bool_)
    latest = np.zeros(n, dtype=np.int64)
    for c, (_, subunits) in zip(codes, parts):
        if _distinct(c, scratch):
            latest[c] = subunits
        else:  # the last of a payee's carries in the segment
            last_at = np.full(n, -1, dtype=np.int64)
            np.maximum.at(last_at, c, np.arange(len(c), dtype=np.int64))
            met = np.flatnonzero(last_at >= 0)
            latest[met] = subunits[last_at[met]]
        mark[c] = True
    held = mark & (at_base >= 0)
    subunits = base_subunits.astype(np.int64)  # a writable copy
    subunits[at_base[held]] = latest[held]
    new = np.flatnonzero(mark & (at_base < 0))
    payees = pa.concat_arrays([base_payees, dictionary.take(pa.array(new, pa.int64()))])
    return payees, np.concatenate([subunits, latest[new]]), int(np.count_nonzero(mark))
