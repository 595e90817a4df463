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

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from endcredits.audit import canonical_json
from endcredits.errors import LedgerError, LimitExceededError, ValidationError
from endcredits.limits import LEGS_PER_TRANSFER_MAX, TRANSFER_AMOUNT_MICROUNITS_MAX, check_id
from endcredits.money import check_currency

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


@dataclass(frozen=True)
class TransferRequest:
    """What a caller asks to post. ``legs`` maps account key -> signed microunits (credit > 0)."""

    event_id: str
    code: str
    currency: str
    legs: Mapping[str, int]
    memo: Mapping[str, str] = field(default_factory=dict)
    reverses_event_id: str | None = None

    def content_sha256(self) -> str:
        """What makes two postings with one event id "the same": everything but the id itself.

        The SHA-256 of the canonical JSON of ``code``, ``currency``, ``legs`` (sorted ``[key, amount as
        text]`` pairs), ``memo`` and ``reverses``. An accrual has 10^5 legs: when no key needs a JSON
        escape, their text is written directly, the same bytes ``canonical_json`` writes, in a third
        of the time."""
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


_ARROW_LEGS_MIN = 4096  # below this, Python's sort and join are as fast as building Arrow arrays


def _legs_text_in_arrow(h: Any, legs: Mapping[str, int]) -> bool:
    """Feed ``h`` the legs' canonical JSON (sorted ``[key, amount as text]`` pairs) built by Arrow, in C:
    an accrual's 10^5-10^6 legs sorted and formatted in Python took a second. False (``h`` untouched)
    when a key needs a JSON escape or an amount is beyond int64: the caller then writes them in Python.
    The bytes are the same: Arrow sorts UTF-8 by bytes, which is Python's code point order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        keys = pa.array(list(legs), pa.string())
        amounts = pa.array(list(legs.values()), pa.int64())
    except (OverflowError, TypeError, UnicodeEncodeError, pa.ArrowException):
        return False
    if pc.any(pc.match_substring_regex(keys, r'["\\\x00-\x1f]')).as_py():
        return False
    order = pc.sort_indices(keys)
    pairs = pc.binary_join_element_wise(
        '["', keys.take(order), '","', pc.cast(amounts.take(order), pa.string()), '"]', ""
    )
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(pairs)], pa.int32()), pairs), ",")
    h.update(b"[")
    h.update(joined[0].as_buffer())
    h.update(b"]")
    return True


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
    keys = list(req.legs)
    amounts = list(req.legs.values())
    # Each check runs over all legs at C speed (an accrual has 10^5-10^6 legs); the loop that names the
    # first failing leg runs only when a check fails.
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
    total = sum(amounts)
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
