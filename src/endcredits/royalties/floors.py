"""Licence floors: a work attributed in an output is paid at least what its licence asks per use.

An agreement with ``licence_terms = ["output_floor"]`` applies the ``use`` and ``crawl`` licence terms
stored with works (``consent.terms``): when an output attributes a work that carries such a term, in force
at the output's time and covering a use its model is registered for, the work's share of that output is at
least the term's amount. The pool is split exactly as without the term; when the work's share falls short,
the operator adds the difference in whole microunits (the floor less the share rounded down, so the work
receives at least the floor and less than one microunit more), split over the work's lines in the ratio of
their shares (``money.allocate``): its rights holder, credited people and lineage parents as the agreement
divides the work. Nobody else's share changes. Of several terms on one work, the highest amount applies.

A term in force in another currency than the agreement's is refused in one line, and nothing is accrued:
endcredits does not convert currencies, and a floor left out would pay the licensor less than the licence
asks without anyone deciding so. The operator either records the licence in the agreement's currency or
accrues under an agreement version without ``output_floor``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from endcredits.consent.terms import LicenceTerm, terms_for
from endcredits.errors import ValidationError
from endcredits.limits import SUBUNIT_BITS
from endcredits.manifest.records import model_uses
from endcredits.money import allocate
from endcredits.royalties.agreement import Agreement
from endcredits.royalties.usage import UsageBatch
from endcredits.store.engine import parse_time

FLOOR_PAYMENT_TYPES: tuple[str, ...] = ("crawl", "use")
"""RSL payment types that are a price per use, so a floor per output."""


@dataclass(frozen=True)
class Floor:
    """The floor licence term ``term_id`` sets on one work in one output."""

    term_id: int
    amount_microunits: int
    payment_type: str


def output_floors(conn: Connection, usage: UsageBatch, agreement: Agreement) -> dict[tuple[str, int], Floor]:
    """Per (output id, attributed work code of ``usage``): the floor that applies (see the module docstring).
    Empty when the agreement applies no ``output_floor``, or when attribution is per payee (no works)."""
    if "output_floor" not in agreement.licence_terms or not usage.works:
        return {}
    assert usage.attributed_codes is not None
    priced: dict[str, list[tuple[int, LicenceTerm]]] = {}
    for term_id, term in terms_for(conn, usage.works):
        if term.payment_type in FLOOR_PAYMENT_TYPES:
            priced.setdefault(term.work_id, []).append((term_id, term))
    if not priced:
        return {}
    priced_codes = np.asarray([i for i, w in enumerate(usage.works) if w in priced], dtype=np.int64)
    hit = np.flatnonzero(np.isin(usage.attributed_codes, priced_codes))
    output_of_line = np.searchsorted(usage.offsets, hit, side="right") - 1
    pairs = sorted(set(zip(output_of_line.tolist(), usage.attributed_codes[hit].tolist())))
    uses_of = model_uses(conn, usage.model_ids)
    times: dict[str, datetime] = {}
    out: dict[tuple[str, int], Floor] = {}
    for i, code in pairs:
        when = usage.occurred_at[i]
        at = times.get(when) or times.setdefault(when, parse_time(when))
        uses = set(uses_of.get(usage.model_ids[i], ()))
        best: Floor | None = None
        for term_id, term in priced[usage.works[code]]:
            if not term.in_force(at) or not uses.intersection(term.uses):
                continue
            if term.currency != agreement.currency:
                raise ValidationError(
                    f"licence term {term_id} on work {term.work_id} asks {term.currency} and agreement "
                    f"{agreement.id} v{agreement.version} pays {agreement.currency}: record the licence in "
                    f"{agreement.currency}, or accrue under a version without output_floor"
                )
            if best is None or term.amount_microunits > best.amount_microunits:
                best = Floor(term_id, term.amount_microunits, term.payment_type)
        if best is not None and best.amount_microunits > 0:
            out[(usage.output_ids[i], code)] = best
    return out


def floor_top_ups(
    usage: UsageBatch,
    floors: Mapping[tuple[str, int], Floor],
    microunits: npt.NDArray[np.int64],
    subunits: npt.NDArray[np.int64],
) -> dict[int, tuple[int, int]]:
    """Per line index of ``usage`` that is topped up: (whole microunits the operator adds, term id).

    ``microunits`` and ``subunits`` are each line's exact part of its pool (``money.split_batch``). For each
    floored work of an output, the top-up is floor - (the work's exact share, rounded down) when positive,
    split over the work's lines in the ratio of their weights; the parts sum exactly to it."""
    assert usage.attributed_codes is not None
    index = {oid: i for i, oid in enumerate(usage.output_ids)}
    out: dict[int, tuple[int, int]] = {}
    for (oid, code), floor in sorted(floors.items()):
        i = index.get(oid)
        if i is None:
            continue
        start, end = int(usage.offsets[i]), int(usage.offsets[i + 1])
        lines = [start + j for j in np.flatnonzero(usage.attributed_codes[start:end] == code).tolist()]
        share_subunits = sum((int(microunits[j]) << SUBUNIT_BITS) + int(subunits[j]) for j in lines)
        top_up = floor.amount_microunits - (share_subunits >> SUBUNIT_BITS)
        if top_up <= 0 or not lines:
            continue
        for j, part in allocate(top_up, {j: int(usage.weights[j]) for j in lines}).items():
            if part:
                out[j] = (part, floor.term_id)
    return out


__all__ = ["FLOOR_PAYMENT_TYPES", "Floor", "floor_top_ups", "output_floors"]
