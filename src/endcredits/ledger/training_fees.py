"""Posting training fees: what a manifest's training run owes under licence terms of payment type ``training``.

``royalties.training_fees`` decides each payee's part; ``owe_training_fees`` posts them in one balanced
transfer (code ``training_fee``, event id ``training-fee:MANIFEST/CCY/YYYY-MM``): ``pool:CCY`` (the operator)
pays, each payee's account (payable, or escrow, as an accrual routes it) receives, in whole microunits, so
no fraction carries. One row per part goes to ``training_fees`` in the same database transaction; statements
show each as a line citing its term, and ``verify`` checks that the rows add up to the transfer's legs. A
manifest owes its fees once: asking again answers ``exists`` and posts nothing. Where a member's guild minimum
raised a part's role weight, a ``guild_minimums`` row (``ledger.guild_minimums``) keyed by the fee's event id
says so, as an accrual group's do. ``record_training`` records a training run and posts its manifest's fees
in one transaction: the way a run is recorded under an agreement (``endcredits manifest run record
--agreement``, the demo).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, select

from endcredits.ledger import TransferRequest, account_key
from endcredits.ledger.expiry import save_agreement_terms
from endcredits.ledger.guild_minimums import GuildMinimumLine, record_minimum_lines
from endcredits.ledger.records import post_transfer
from endcredits.manifest.records import TrainingRun, load_manifest, record_training_run
from endcredits.registry.records import payee_routes
from endcredits.royalties import Agreement
from endcredits.royalties.training_fees import FeePart, training_fee_parts
from endcredits.store.bulk import chunks
from endcredits.store.engine import Store, utc_now
from endcredits.store.schema import training_fees

TRANSFER_CODE = "training_fee"


@dataclass(frozen=True)
class FeeLine:
    """``amount_microunits`` of licence term ``term_id``'s training fee for ``work_id``, owed by manifest
    ``manifest_id``'s run, paid to ``payee`` (into ``account``) for ``role`` on ``source_work``."""

    event_id: str
    manifest_id: str
    model_id: str
    occurred_at: str
    work_id: str
    source_work: str
    payee: str
    role: str
    account: str
    term_id: int
    amount_microunits: int


@dataclass(frozen=True)
class TrainingFees:
    manifest_id: str
    status: str  # "created", "exists" or "none" (no training term applies)
    event_id: str | None
    currency: str
    total_microunits: int
    works: int
    lines: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def owe_training_fees(store: Store, manifest_id: str, agreement: Agreement) -> TrainingFees:
    """Post the training fees manifest ``manifest_id`` owes under ``agreement`` (see the module doc)."""
    with store.write() as conn:
        return _owe(conn, manifest_id, agreement)


def record_training(
    store: Store,
    *,
    run_id: str,
    manifest_id: str,
    checkpoint_sha256s: Sequence[str],
    started_at: dt.datetime,
    finished_at: dt.datetime,
    agreement: Agreement | None,
    model_id: str | None = None,
) -> tuple[TrainingRun, TrainingFees | None]:
    """Record a training run (``manifest.records.record_training_run``) and, under ``agreement`` when one is
    given, post the training fees its manifest owes, in one database transaction: a refused fee (a term in
    another currency) records no run either. A second run of the same manifest, or the same run again, owes
    nothing more (``exists``)."""
    with store.write() as conn:
        run = record_training_run(
            conn,
            run_id=run_id,
            manifest_id=manifest_id,
            checkpoint_sha256s=checkpoint_sha256s,
            started_at=started_at,
            finished_at=finished_at,
            model_id=model_id,
        )
        fees = _owe(conn, manifest_id, agreement) if agreement is not None else None
    return run, fees


def _owe(conn: Connection, manifest_id: str, agreement: Agreement) -> TrainingFees:
    """``owe_training_fees`` inside the caller's write transaction."""
    before = fee_lines_of_manifest(conn, manifest_id)
    if before:
        total = sum(x.amount_microunits for x in before)
        works = len({x.work_id for x in before})
        return TrainingFees(manifest_id, "exists", before[0].event_id, agreement.currency, total, works, len(before))
    manifest = load_manifest(conn, manifest_id)
    parts = training_fee_parts(conn, manifest, agreement)  # refuses a term in another currency
    if not parts:
        return TrainingFees(manifest_id, "none", None, agreement.currency, 0, 0, 0)
    at = utc_now()
    event_id = f"training-fee:{manifest_id}/{agreement.currency}/{at[:7]}"
    routes = payee_routes(conn, sorted({p.payee for p in parts}))
    lines = [
        FeeLine(event_id, manifest_id, manifest.model_id, at, p.work_id, p.source_work, p.payee, p.role,
                account_key(routes[p.payee][0], agreement.currency, routes[p.payee][1]), p.term_id,
                p.amount_microunits)
        for p in parts
    ]  # fmt: skip
    legs: dict[str, int] = {}
    for x in lines:
        legs[x.account] = legs.get(x.account, 0) + x.amount_microunits
    total = sum(legs.values())
    legs[account_key("pool", agreement.currency)] = -total
    save_agreement_terms(conn, agreement)  # escrowed parts wait under this agreement's period
    memo = {"manifest": manifest_id, "agreement": f"{agreement.id}@{agreement.version}"}
    post_transfer(conn, TransferRequest(event_id, TRANSFER_CODE, agreement.currency, legs, memo), at=at)
    for part in chunks(lines):
        conn.execute(training_fees.insert(), [asdict(x) for x in part])
    record_minimum_lines(conn, _raised(event_id, parts, agreement))
    works = len({p.work_id for p in parts})
    return TrainingFees(manifest_id, "created", event_id, agreement.currency, total, works, len(lines))


def _raised(event_id: str, parts: Sequence[FeePart], agreement: Agreement) -> list[GuildMinimumLine]:
    """The guild minimum rows of a fee transfer: one per (payee, source work, role) a guild term raised, so
    its statement lines say which term applied (``ledger.guild_minimums``)."""
    out: dict[tuple[str, str, str], GuildMinimumLine] = {}
    for p in parts:
        m = p.guild_minimum
        if m is not None:
            scheme, _, code = m.role.partition(":")
            weight = agreement.role_weight(scheme, code)
            out[(p.payee, p.source_work, p.role)] = GuildMinimumLine(
                event_id, p.payee, p.source_work, p.role, m.issuer, m.version, m.weight, weight
            )
    return [out[k] for k in sorted(out)]


def _line(r: Any) -> FeeLine:
    return FeeLine(
        r.event_id, r.manifest_id, r.model_id, r.occurred_at, r.work_id, r.source_work, r.payee, r.role, r.account,
        int(r.term_id), int(r.amount_microunits),
    )  # fmt: skip


def fee_lines_of_manifest(conn: Connection, manifest_id: str) -> list[FeeLine]:
    q = select(training_fees).where(training_fees.c.manifest_id == manifest_id).order_by(training_fees.c.id)
    return [_line(r) for r in conn.execute(q)]


def fee_event_ids(conn: Connection) -> list[str]:
    """The event id of every training fee transfer, sorted."""
    q = select(training_fees.c.event_id).distinct().order_by(training_fees.c.event_id)
    return [str(r.event_id) for r in conn.execute(q)]


def fee_lines(conn: Connection, event_ids: Collection[str] | None = None) -> list[FeeLine]:
    """Every training fee row (of the transfers ``event_ids`` when given), by transfer then id."""
    q = select(training_fees).order_by(training_fees.c.event_id, training_fees.c.id)
    if event_ids is None:
        return [_line(r) for r in conn.execute(q)]
    out: list[FeeLine] = []
    for part in chunks(sorted(set(event_ids))):
        out.extend(_line(r) for r in conn.execute(q.where(training_fees.c.event_id.in_(part))))
    return out


__all__ = [
    "TRANSFER_CODE",
    "FeeLine",
    "TrainingFees",
    "fee_event_ids",
    "fee_lines",
    "fee_lines_of_manifest",
    "owe_training_fees",
    "record_training",
]
