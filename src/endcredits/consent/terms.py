"""Licence terms: the price a licence states for the uses it grants on a work, kept beside the grants.

A consent grant says whether a use is allowed; a ``LicenceTerm`` says what the licence that allows it asks
in return: a payment type (RSL 1.0's ``purchase``, ``subscription``, ``training``, ``crawl``, ``use``,
``contribution``, ``attribution`` or ``free``), an amount in integer microunits and its currency, the uses
it covers, the source that stated it and the window in which it holds. Terms are stored, never edited;
an agreement decides how it applies them (docs/concepts/licences.md). ``add_terms`` and ``terms_for``
are the storage; everything else here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from endcredits.consent.rules import SOURCE_LENGTH_MAX, USES
from endcredits.errors import NotFoundError, ValidationError
from endcredits.limits import TRANSFER_AMOUNT_MICROUNITS_MAX, check_id
from endcredits.money import check_currency
from endcredits.store.audit import append_audit
from endcredits.store.bulk import chunks
from endcredits.store.engine import format_time, parse_time, utc_now
from endcredits.store.schema import licence_terms, works

PAYMENT_TYPES: tuple[str, ...] = (
    "purchase",
    "subscription",
    "training",
    "crawl",
    "use",
    "contribution",
    "attribution",
    "free",
)
"""RSL 1.0 payment types. ``training``: a fee per training use; ``use``: a fee per use at inference;
``crawl``: a fee per access; ``purchase`` and ``subscription``: a price for the licence itself;
``contribution``: a payment the publisher asks for but does not set; ``attribution`` and ``free``: no money."""


@dataclass(frozen=True)
class LicenceTerm:
    """A licence on ``work_id`` asks ``amount_microunits`` of ``currency`` (``payment_type``) for ``uses``."""

    work_id: str
    payment_type: str
    amount_microunits: int
    currency: str
    uses: tuple[str, ...]
    source: str
    valid_from: datetime
    valid_until: datetime | None
    perpetual: bool

    def __post_init__(self) -> None:
        check_id(self.work_id, "licence term work id")
        if self.payment_type not in PAYMENT_TYPES:
            raise ValidationError(
                f"licence term payment type {self.payment_type!r:.40} is not one of {', '.join(PAYMENT_TYPES)}"
            )
        if isinstance(self.amount_microunits, bool) or not isinstance(self.amount_microunits, int):
            raise ValidationError("a licence term's amount must be an int of microunits")
        if not 0 <= self.amount_microunits <= TRANSFER_AMOUNT_MICROUNITS_MAX:
            raise ValidationError(
                f"licence term amount {self.amount_microunits} microunits for work {self.work_id} must be "
                f"between 0 and {TRANSFER_AMOUNT_MICROUNITS_MAX}"
            )
        check_currency(self.currency)
        if not self.uses or any(u not in USES for u in self.uses) or list(self.uses) != sorted(set(self.uses)):
            raise ValidationError(
                f"licence term for work {self.work_id} needs its uses sorted, without repeats, each one of "
                f"{', '.join(USES)}; got {', '.join(self.uses) or 'none'}"
            )
        if not isinstance(self.source, str) or not 1 <= len(self.source) <= SOURCE_LENGTH_MAX:
            raise ValidationError(
                f"licence term for work {self.work_id} needs a source of 1..{SOURCE_LENGTH_MAX} chars"
            )
        if (self.valid_until is None) != self.perpetual:
            raise ValidationError(
                f"licence term for work {self.work_id}: give valid_until, or perpetual=True explicitly, not both"
            )
        if self.valid_from.tzinfo is None:
            raise ValidationError("licence term valid_from has no time zone; give it in UTC")
        if self.valid_until is not None and not self.valid_until > self.valid_from:
            raise ValidationError(f"licence term for work {self.work_id} ends before it starts")

    def in_force(self, at: datetime) -> bool:
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)


def add_terms(conn: Connection, terms: Sequence[LicenceTerm]) -> list[int]:
    """Store terms (each already validated); every work they name must be registered. Returns their ids."""
    at = utc_now()
    ids: list[int] = []
    known: set[str] = set()
    for t in terms:
        if t.work_id not in known:
            if conn.execute(select(works.c.id).where(works.c.id == t.work_id)).first() is None:
                raise NotFoundError(f"licence term names work {t.work_id}, which is not registered")
            known.add(t.work_id)
        q = licence_terms.insert().values(
            work_id=t.work_id,
            payment_type=t.payment_type,
            amount_microunits=t.amount_microunits,
            currency=t.currency,
            uses=",".join(t.uses),
            source=t.source,
            valid_from=format_time(t.valid_from),
            valid_until=format_time(t.valid_until) if t.valid_until else None,
            perpetual=t.perpetual,
            created_at=at,
        )
        ids.append(int(conn.execute(q.returning(licence_terms.c.id)).scalar_one()))
    if terms:
        append_audit(conn, "consent.terms_added", "consent", {"ids": ids[:1000], "count": len(ids)}, at=at)
    return ids


def _to_term(r: Any) -> LicenceTerm:
    return LicenceTerm(
        work_id=r.work_id,
        payment_type=r.payment_type,
        amount_microunits=int(r.amount_microunits),
        currency=r.currency,
        uses=tuple(r.uses.split(",")),
        source=r.source,
        valid_from=parse_time(r.valid_from),
        valid_until=parse_time(r.valid_until) if r.valid_until else None,
        perpetual=bool(r.perpetual),
    )


def terms_for(conn: Connection, work_ids: Iterable[str]) -> list[tuple[int, LicenceTerm]]:
    """Every stored term on ``work_ids``, by work then id."""
    out: list[tuple[int, LicenceTerm]] = []
    for part in chunks(sorted(set(work_ids))):
        q = select(licence_terms).where(licence_terms.c.work_id.in_(part))
        out.extend(
            (int(r.id), _to_term(r)) for r in conn.execute(q.order_by(licence_terms.c.work_id, licence_terms.c.id))
        )
    return out


def same_term(a: LicenceTerm, b: LicenceTerm) -> bool:
    """The same price for the same uses from the same source: a re-import that adds nothing."""
    return (a.work_id, a.payment_type, a.amount_microunits, a.currency, a.uses, a.source) == (
        b.work_id,
        b.payment_type,
        b.amount_microunits,
        b.currency,
        b.uses,
        b.source,
    )


__all__ = ["PAYMENT_TYPES", "LicenceTerm", "add_terms", "same_term", "terms_for"]
