"""Double-entry ledger: accounts, balanced transfers, reversals. Pure rules; ``ledger.records`` persists.

A transfer is a set of legs, one per account, with signed amounts in microunits (credit > 0, debit < 0)
that sum to zero. Transfers are never changed: a mistake is undone by a reversing transfer that
negates every leg. Every transfer carries a caller-supplied ``event_id``; posting the same id with the
same content returns the first result, with other content it is a ``ConflictError``.

Accounts (one per holder per currency), keyed by text:

============================  =========================================================  ===========
key                           what it holds                                              may go < 0
============================  =========================================================  ===========
``pool:CCY``                  the operator's residual pools funded (the source)          yes
``payable:person:ID:CCY``     owed to a verified person                                  no
``escrow:person:ID:CCY``      owed to a person not yet verified                          no
``escrow:name:ID:CCY``        owed to a credited name nobody has claimed                 no
``escrow:work:ID:CCY``        owed for a work with no credited payee yet                 no
``fund:FUND/HOLDER:CCY``      escrow past its period, held by fund FUND for HOLDER       no
``suspense:CCY``              whole microunits behind the carried sub-microunit parts    no
``clearing:payouts:CCY``      payouts sent, status not yet back                          no
``bank:payouts:CCY``          payouts settled at the bank                                no
============================  =========================================================  ===========
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from endcredits.audit import canonical_json
from endcredits.errors import LedgerError, LimitExceededError, ValidationError
from endcredits.limits import LEGS_PER_TRANSFER_MAX, TRANSFER_AMOUNT_MICROUNITS_MAX, check_id
from endcredits.money import check_currency

if TYPE_CHECKING:  # NumPy and Arrow are imported where columnar legs are built or read: a plain post starts fast
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')
"""Characters ``json.dumps`` escapes in a string (with ``ensure_ascii=False``)."""

ACCOUNT_KINDS = ("pool", "payable", "escrow", "fund", "suspense", "clearing", "bank")
NEGATIVE_ALLOWED_KINDS = frozenset({"pool"})
_KINDS = frozenset(ACCOUNT_KINDS)

TRANSFER_CODES = (
    "accrual",  # a batch of residuals: pool -> payees, escrow, suspense
    "training_fee",  # a manifest's licence fees per training use: pool -> payees, escrow (ledger.training_fees)
    "escrow_claim",  # escrow -> payable when a name or person is claimed and verified
    "escrow_expiry",  # escrow -> fund once the agreement's escrow period has passed (ledger.expiry)
    "fund_claim",  # fund -> payable when money a fund holds for a name or person is claimed
    "payout_sent",  # payable -> clearing when a payout batch is written
    "payout_settled",  # clearing -> bank when the bank confirms
    "payout_failed",  # clearing -> payable when the bank rejects
    "reversal",  # negates an earlier transfer
)


def account_key(kind: str, currency: str, holder: str | None = None) -> str:
    """``payable:person:12:EUR`` for a holder; ``suspense:EUR`` for an operator account."""
    if kind not in ACCOUNT_KINDS:
        raise ValidationError(f"unknown account kind {kind!r}: one of {', '.join(ACCOUNT_KINDS)}")
    check_currency(currency)
    return f"{kind}:{holder}:{currency}" if holder else f"{kind}:{currency}"


def parse_account_key(key: str) -> tuple[str, str | None, str]:
    """(kind, holder or None, currency) from an account key."""
    parts = key.split(":")
    if len(parts) < 2 or parts[0] not in ACCOUNT_KINDS:
        raise ValidationError(f"malformed account key {key!r}")
    holder = ":".join(parts[1:-1]) or None
    return parts[0], holder, check_currency(parts[-1])


class LegColumns(Mapping[str, int]):
    """A transfer's legs as two columns: distinct account keys (an Arrow string array) and their int64
    amounts (NumPy), in the given order. An accrual's 10^5-10^6 legs are built, checked, hashed and stored
    this way, without a Python object per leg; read as a mapping, the dict is built once, on first use.
    ``distinct``: the caller built the keys distinct (an accrual's: a dictionary's keys, then the operator's
    accounts), so ``check_transfer`` does not sort them to find one twice; ``verify`` counts them again."""

    __slots__ = ("accounts", "amounts", "distinct", "_dict", "_order")

    def __init__(self, accounts: pa.Array, amounts: npt.NDArray[np.int64], *, distinct: bool = False) -> None:
        import numpy as np
        import pyarrow as pa

        if (
            not pa.types.is_string(accounts.type)
            or accounts.null_count
            or amounts.dtype != np.int64
            or len(accounts) != len(amounts)
        ):
            raise ValidationError("leg columns pair a string account with an int64 amount each")
        self.accounts = accounts
        self.amounts = amounts
        self.distinct = distinct
        self._dict: dict[str, int] | None = None
        self._order: pa.Array | None = None

    def order(self) -> pa.Array:
        """The positions of the legs in key order (UTF-8 bytes, which is Python's code point order); found
        once, for the check and the content hash."""
        import pyarrow.compute as pc

        if self._order is None:
            self._order = pc.sort_indices(self.accounts)
        return self._order

    def _as_dict(self) -> dict[str, int]:
        if self._dict is None:
            self._dict = dict(zip(self.accounts.to_pylist(), self.amounts.tolist()))
        return self._dict

    def __getitem__(self, key: str) -> int:
        return self._as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._as_dict())

    def __len__(self) -> int:
        return len(self.amounts)

    def total(self) -> int:
        """The exact sum of the amounts: the high and low 32 bits are summed apart, so no int64 sum of
        fewer than 2^31 legs can overflow."""
        hi = int((self.amounts >> 32).sum())
        lo = int((self.amounts & 0xFFFFFFFF).sum())
        return (hi << 32) + lo

    def negative(self) -> list[tuple[str, int]]:
        """The debits, (key, amount): the only legs that can overdraw an account."""
        import numpy as np
        import pyarrow as pa

        at = np.flatnonzero(self.amounts < 0)
        return list(zip(self.accounts.take(pa.array(at, pa.int64())).to_pylist(), self.amounts[at].tolist()))


def _columns_ok(legs: LegColumns, suffix: str) -> bool:
    """Whether every leg of ``legs`` is well formed, checked over the columns at C speed: distinct keys of a
    known kind in the transfer's currency, amounts non-zero (int64 amounts are within the limit)."""
    import pyarrow.compute as pc

    keys = legs.accounts
    if not bool((legs.amounts != 0).all()) or TRANSFER_AMOUNT_MICROUNITS_MAX < (1 << 63) - 1:
        return False
    known_kind = functools.reduce(pc.or_, [pc.starts_with(keys, f"{kind}:") for kind in ACCOUNT_KINDS])
    if not (pc.all(pc.ends_with(keys, suffix)).as_py() and pc.all(known_kind).as_py()):
        return False
    if legs.distinct:
        return True
    in_order = keys.take(legs.order())
    return pc.all(pc.not_equal(in_order.slice(1), in_order.slice(0, len(keys) - 1))).as_py() is not False


@dataclass(frozen=True)
class TransferRequest:
    """What a caller asks to post. ``legs`` maps account key -> signed microunits (credit > 0)."""

    event_id: str
    code: str
    currency: str
    legs: Mapping[str, int]
    memo: Mapping[str, str] = field(default_factory=dict)
    reverses_event_id: str | None = None
    legs_in_order: bool = False
    """Hash the legs (``LegColumns``) in their order, as bytes, not sorted as text: an accrual's, whose order
    is fixed by its batch's content (the payees in the order its lines meet them)."""

    def content_sha256(self) -> str:
        """What makes two postings with one event id "the same": everything but the id itself.

        The SHA-256 of the canonical JSON of ``code``, ``currency``, ``legs`` (sorted ``[key, amount as
        text]`` pairs), ``memo`` and ``reverses``. An accrual has 10^5 legs: when no key needs a JSON
        escape, their text is written directly, the same bytes ``canonical_json`` writes, in a third
        of the time. With ``legs_in_order``, ``legs`` is instead ``legs_columns_sha256`` of the columns
        as given, and ``legs_in_order`` is true: no sort and no text per leg."""
        if self.legs_in_order:
            if not isinstance(self.legs, LegColumns):
                raise ValidationError(f"transfer {self.event_id}: only leg columns are hashed in their order")
            return hashlib.sha256(
                canonical_json(
                    {
                        "code": self.code,
                        "currency": self.currency,
                        "legs": legs_columns_sha256(self.legs),
                        "legs_in_order": True,
                        "memo": dict(sorted(self.memo.items())),
                        "reverses": self.reverses_event_id,
                    }
                ).encode()
            ).hexdigest()
        head = canonical_json(
            {
                "code": self.code,
                "currency": self.currency,
                "legs": 0,
                "memo": dict(sorted(self.memo.items())),
                "reverses": self.reverses_event_id,
            }
        )
        # Keys sort code < currency < legs < memo: the first '"legs":0' is the key (a quote inside a value
        # is escaped).
        before, _, after = head.partition('"legs":0')
        h = hashlib.sha256(f'{before}"legs":'.encode())
        if len(self.legs) < _ARROW_LEGS_MIN or not _legs_text_in_arrow(h, self.legs):
            items = sorted(self.legs.items())  # keys are distinct: the order of sorted (key, text) pairs
            if _JSON_ESCAPED.search("".join(self.legs)) is None:
                legs = "[" + ",".join([f'["{k}","{v}"]' for k, v in items]) + "]"
            else:
                legs = canonical_json([[k, str(v)] for k, v in items])
            h.update(legs.encode())
        h.update(after.encode())
        return h.hexdigest()


def legs_columns_sha256(legs: LegColumns) -> str:
    """The SHA-256 of the legs in their order: their count, each key's end in the keys' UTF-8 bytes, those
    bytes, and the amounts (all integers as 8 bytes, little-endian): the key boundaries are explicit, so
    no two lists of legs give the same bytes."""
    import numpy as np
    import pyarrow as pa

    keys = legs.accounts.combine_chunks() if isinstance(legs.accounts, pa.ChunkedArray) else legs.accounts
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int32)[keys.offset : keys.offset + len(keys) + 1]
    start, end = (int(offsets[0]), int(offsets[-1])) if len(keys) else (0, 0)
    h = hashlib.sha256(b"endcredits legs in order 1\n")
    h.update(len(keys).to_bytes(8, "little"))
    h.update((offsets[1:].astype(np.int64) - start).astype("<i8").tobytes())
    h.update(memoryview(keys.buffers()[2] or b"")[start:end])
    h.update(legs.amounts.astype("<i8").tobytes())
    return h.hexdigest()


_ARROW_LEGS_MIN = 4096  # below this, Python's sort and join are as fast as building Arrow arrays


def _legs_text_in_arrow(h: Any, legs: Mapping[str, int] | LegColumns) -> bool:
    """Feed ``h`` the legs' canonical JSON (sorted ``[key, amount as text]`` pairs) built by Arrow, in C:
    an accrual's 10^5-10^6 legs sorted and formatted in Python took a second. False (``h`` untouched)
    when a key needs a JSON escape or an amount is beyond int64: the caller then writes them in Python.
    The bytes are the same: Arrow sorts UTF-8 by bytes, which is Python's code point order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        if isinstance(legs, LegColumns):
            keys, amounts, order = legs.accounts, pa.array(legs.amounts, pa.int64()), legs.order()
        else:
            keys = pa.array(list(legs), pa.string())
            amounts = pa.array(list(legs.values()), pa.int64())
            order = None
    except (OverflowError, TypeError, UnicodeEncodeError, pa.ArrowException):
        return False
    if _needs_escape(keys):
        return False
    order = pc.sort_indices(keys) if order is None else order
    pairs = pc.binary_join_element_wise(
        '["', keys.take(order), '","', pc.cast(amounts.take(order), pa.string()), '"]', ""
    )
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(pairs)], pa.int32()), pairs), ",")
    h.update(b"[")
    h.update(joined[0].as_buffer())
    h.update(b"]")
    return True


@functools.cache
def _escaped_bytes() -> npt.NDArray[np.bool_]:
    """Per byte value, whether JSON escapes it in a string: '"', '\\' and the control characters."""
    import numpy as np

    table = np.zeros(256, dtype=np.bool_)
    table[:0x20] = True
    table[[ord('"'), ord("\\")]] = True
    return table


def _needs_escape(keys: pa.Array) -> bool:
    """Whether any of ``keys`` (a string array) holds a byte JSON escapes: one table lookup per byte of the
    keys' data in NumPy, 4x faster than a regular expression per key (a multi-byte UTF-8 character has
    no byte below 0x80, so none is taken for one that is escaped)."""
    import numpy as np
    import pyarrow as pa

    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if not len(keys):
        return False
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int32)[keys.offset : keys.offset + len(keys) + 1]
    data = np.frombuffer(keys.buffers()[2] or b"", dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
    return bool(_escaped_bytes()[data].any())


def check_transfer(req: TransferRequest) -> None:
    """Raise unless the transfer is well formed and balanced. Changes nothing."""
    check_id(req.event_id, "event id")
    if req.code not in TRANSFER_CODES:
        raise ValidationError(f"unknown transfer code {req.code!r}: one of {', '.join(TRANSFER_CODES)}")
    check_currency(req.currency)
    if len(req.legs) < 2:
        raise LedgerError(f"transfer {req.event_id} needs at least two legs, got {len(req.legs)}")
    if len(req.legs) > LEGS_PER_TRANSFER_MAX:
        raise LimitExceededError(
            f"transfer {req.event_id} has {len(req.legs)} legs; LEGS_PER_TRANSFER_MAX={LEGS_PER_TRANSFER_MAX}"
        )
    suffix = f":{req.currency}"
    # Each check runs over all legs at C speed (an accrual has 10^5-10^6 legs, as columns); the loop that
    # names the first failing leg runs only when a check fails.
    if isinstance(req.legs, LegColumns):
        ok = _columns_ok(req.legs, suffix)
    else:
        keys = list(req.legs)
        amounts = list(req.legs.values())
        ok = (
            all(k.endswith(suffix) for k in keys)
            and {k.partition(":")[0] for k in keys} <= _KINDS
            and set(map(type, amounts)) <= {int}
            and 0 not in amounts
            and max(amounts) <= TRANSFER_AMOUNT_MICROUNITS_MAX
            and min(amounts) >= -TRANSFER_AMOUNT_MICROUNITS_MAX
        )
    if not ok:
        for key, amount in req.legs.items():
            _check_leg(req, suffix, key, amount)
        if len(set(req.legs)) != len(req.legs):
            raise LedgerError(f"transfer {req.event_id} names an account in more than one leg")
    total = req.legs.total() if isinstance(req.legs, LegColumns) else sum(amounts)
    if total != 0:
        raise LedgerError(f"transfer {req.event_id} does not balance: legs sum to {total} microunits, not 0")


def _check_leg(req: TransferRequest, suffix: str, key: str, amount: int) -> None:
    if not key.endswith(suffix):
        raise LedgerError(f"transfer {req.event_id}: account {key} is not in {req.currency}")
    if key.partition(":")[0] not in _KINDS:
        raise ValidationError(f"transfer {req.event_id}: malformed account key {key!r}")
    if type(amount) is not int:
        raise ValidationError(f"transfer {req.event_id}: leg {key} amount must be int microunits")
    if amount == 0:
        raise LedgerError(f"transfer {req.event_id}: leg {key} is zero; leave it out")
    if amount > TRANSFER_AMOUNT_MICROUNITS_MAX or amount < -TRANSFER_AMOUNT_MICROUNITS_MAX:
        raise LimitExceededError(f"transfer {req.event_id}: leg {key} exceeds TRANSFER_AMOUNT_MICROUNITS_MAX")


def reversal_of(original: TransferRequest, event_id: str, reason: str) -> TransferRequest:
    """The transfer that undoes ``original``: every leg negated, linked back to it."""
    return TransferRequest(
        event_id=event_id,
        code="reversal",
        currency=original.currency,
        legs={k: -v for k, v in original.legs.items()},
        memo={"reason": reason, "reverses_code": original.code},
        reverses_event_id=original.event_id,
    )


@dataclass(frozen=True)
class PostResult:
    """Per transfer: ``created`` the first time, ``exists`` when the same content was posted before."""

    event_id: str
    status: str
    transfer_id: int
