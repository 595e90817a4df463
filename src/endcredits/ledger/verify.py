"""``endcredits verify``: re-derive everything the ledger claims and report any difference.

Checks, in order: the audit hash chain; every transfer balances and has its audit entry; every accrual
segment hashes to what its audit entry recorded and holds the legs its transfer's content hash was
made of; every leg, balance, output and credit refers to a transfer, account, model, work or payee
that exists (those tables have no foreign keys, for speed); folds are in order; every account's
balance (its row, or the ledger snapshot's entry, never both) plus what pending segments add equals
the sum of its legs (rows and segments); no
account that may not go negative is negative; every currency's balances sum to zero; suspense
equals the carried fractions (carry rows, the snapshot's, then pending segments); every evidence file is intact and its
lines add up to its batch's pool exactly; replaying the evidence in posting order reproduces every
accrual's legs and, at the end, every payee's carried fraction; every guild minimum a statement cites is
what a stored version of those guild terms sets; payout clearing equals the pending items; every training
fee transfer's legs are what its fee rows add up to; and the chain
from each accrual to its scores: its attribution run is recorded, still fits its manifest (root, model,
bound checkpoint), its scores file hashes to what it recorded, and it scored every output the accrual
paid. Accruals on external scores are listed with their reasons, as such (not a problem).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Connection, func, select, text

from endcredits.attribution.records import AttributionRun, binding_problem, read_run_scores, run_count, runs_by_id
from endcredits.audit import verify_chain
from endcredits.consent.guilds import guild_terms_versions
from endcredits.consent.terms import terms_for
from endcredits.errors import EvidenceError, LedgerError, NotFoundError
from endcredits.ledger import NEGATIVE_ALLOWED_KINDS, LegColumns, TransferRequest
from endcredits.ledger.evidence import kept_per_batch, kept_per_payee, output_rows, payee_rows, read_evidence
from endcredits.ledger.evidence_lines import LineSource
from endcredits.ledger.floors import floor_line_count, floor_lines_of
from endcredits.ledger.guild_minimums import minimum_line_count, minimum_lines_of
from endcredits.ledger.records import carried_fractions, derived_balances
from endcredits.ledger.segments import (
    Segment,
    fold_watermark,
    pending_deltas,
    raw_segment_sha256,
    read_segment,
    segment_ids,
)
from endcredits.ledger.snapshot import SNAPSHOT_KINDS, read_snapshot, snapshot_count, snapshot_raw_sha256
from endcredits.ledger.training_fees import fee_event_ids, fee_lines
from endcredits.limits import SUBUNIT_BITS, SUBUNITS_PER_MICROUNIT
from endcredits.manifest.records import load_manifest
from endcredits.registry.roles import canonical_role
from endcredits.royalties import Agreement, pools_of
from endcredits.royalties.records import load_agreement
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store
from endcredits.store.schema import (
    accounts,
    accrual_batches,
    credits,
    ledger_folds,
    legs,
    models,
    outputs,
    payout_batches,
    payout_items,
    transfers,
)


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    external: list[str] = field(default_factory=list)  # accrual groups paid on external scores, with the reason

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: Store) -> VerifyReport:  # noqa: C901 - one pass over many independent checks
    report = VerifyReport()
    p = report.problems
    with store.read() as conn:
        entries = list(iter_audit(conn))
        p.extend(verify_chain(entries))
        report.checked["audit_entries"] = len(entries)
        payloads = {e.subject: json.loads(e.payload) for e in entries if e.kind == "transfer"}
        audited = {subject: payload.get("content_sha256") for subject, payload in payloads.items()}
        audited_segments = {subject: payload.get("segment_sha256") for subject, payload in payloads.items()}

        leg_sums: dict[int, int] = {}
        leg_counts: dict[int, int] = {}
        for transfer_id, amount in conn.execution_options(yield_per=50_000).execute(
            select(legs.c.transfer_id, legs.c.amount_microunits)
        ):
            leg_sums[transfer_id] = leg_sums.get(transfer_id, 0) + amount
            leg_counts[transfer_id] = leg_counts.get(transfer_id, 0) + 1
        transfer_rows = {
            t.id: t
            for t in conn.execute(
                select(
                    transfers.c.id,
                    transfers.c.event_id,
                    transfers.c.code,
                    transfers.c.currency,
                    transfers.c.leg_count,
                    transfers.c.content_sha256,
                    transfers.c.memo,
                    transfers.c.reverses_event_id,
                )
            )
        }
        # An accrual's legs are its segment: each must re-add to zero, hash to what was recorded, and give back
        # the content its transfer and audit entry recorded.
        segment_legs: dict[str, dict[str, int]] = {}  # accrual event id -> its legs
        stored_sha = {tid: (recorded, actual) for tid, recorded, actual in raw_segment_sha256(conn)}
        n_segments = unreadable = 0
        for seg_id in segment_ids(conn):
            n_segments += 1
            try:
                seg = read_segment(conn, seg_id)
            except LedgerError as exc:
                p.append(str(exc))
                unreadable += 1
                continue
            t = transfer_rows.get(seg.transfer_id)
            if t is None:
                p.append(f"segment {seg.transfer_id} belongs to no transfer")
                continue
            seg_legs = seg.legs()
            leg_sums[t.id] = leg_sums.get(t.id, 0) + sum(seg_legs.values())
            leg_counts[t.id] = leg_counts.get(t.id, 0) + len(seg_legs)
            recorded, actual = stored_sha[seg.transfer_id]
            if recorded != actual or audited_segments.get(t.event_id) != recorded:
                p.append(f"segment of transfer {t.event_id} does not match the SHA-256 its audit entry recorded")
            if _posted_content(t, seg, seg_legs, payloads.get(t.event_id, {})) != t.content_sha256:
                p.append(f"segment of transfer {t.event_id} does not hold the legs that were posted")
            segment_legs[t.event_id] = seg_legs
        report.checked["segments"] = n_segments
        if unreadable:  # balances and carries cannot be re-derived without them
            p.append(
                f"{unreadable} ledger segment(s) unreadable: restore the database from backup; later checks skipped"
            )
            return report
        _check_transfers(transfer_rows.values(), leg_sums, leg_counts, audited, p)
        report.checked["transfers"] = len(transfer_rows)

        derived = derived_balances(conn)  # by account key, from legs rows and segments
        acct = {r.id: r for r in conn.execute(select(accounts))}
        # The hot tables have no foreign keys (see store.schema): check every reference here.
        orphan_transfers = set(leg_sums) - set(transfer_rows)
        if orphan_transfers:
            p.append(f"legs refer to transfers that do not exist: {sorted(orphan_transfers)[:5]}")
        orphan_accounts = sorted(k for k in derived if k.startswith("?"))
        if orphan_accounts:
            p.append(f"legs refer to accounts that do not exist: {[int(k[1:]) for k in orphan_accounts][:5]}")
        model_ids = {r.id for r in conn.execute(select(models.c.id))}
        # Outputs accrued before migration 0002 name their model here; later ones in their evidence (below).
        orphan_models = {r.model_id for r in conn.execute(select(outputs.c.model_id).distinct())} - model_ids - {None}
        if orphan_models:
            p.append(f"outputs refer to models that are not registered: {sorted(orphan_models)[:5]}")
        for column, table, key, what in (
            ("work_seq", "works", "seq", "works"),
            ("person_id", "people", "id", "people"),
            ("name_id", "names", "id", "credited names"),
        ):
            missing = [
                r[0]
                for r in conn.execute(
                    text(
                        f"SELECT DISTINCT c.{column} FROM credits c LEFT JOIN {table} t ON t.{key} = c.{column} "
                        f"WHERE c.{column} IS NOT NULL AND t.{key} IS NULL ORDER BY 1 LIMIT 5"
                    )
                )
            ]
            if missing:
                p.append(f"credits refer to {what} that are not registered ({column} {missing})")
        report.checked["credits"] = int(conn.execute(select(func.count()).select_from(credits)).scalar_one())

        # Folds: each watermark above the one before, at a segment; what is above the last is read through.
        folds = conn.execute(select(ledger_folds.c.through_transfer_id).order_by(ledger_folds.c.id)).scalars().all()
        if list(folds) != sorted(set(folds)) or any(f not in stored_sha for f in folds):
            p.append(f"ledger folds are out of order or end between segments: {list(folds)[:5]}")
        watermark = fold_watermark(conn)
        unfolded = pending_deltas(conn)
        report.checked["segments_pending"] = sum(1 for tid in stored_sha if tid > watermark)
        stored = _rows_and_snapshot(conn, entries, acct, watermark, report)
        for key, delta in unfolded.items():
            stored[key] = stored.get(key, 0) + delta
        per_currency: dict[str, int] = {}
        for key in sorted(set(stored) | {k for k in derived if not k.startswith("?")}):
            value = derived.get(key, 0)
            if stored.get(key, 0) != value:
                p.append(f"account {key}: stored balance {stored.get(key, 0)} != sum of legs {value}")
            if value < 0 and key.partition(":")[0] not in NEGATIVE_ALLOWED_KINDS:  # an account's kind leads its key
                p.append(f"account {key} is negative ({value})")
            currency = key.rsplit(":", 1)[-1]
            per_currency[currency] = per_currency.get(currency, 0) + value
        for currency, total in sorted(per_currency.items()):
            if total != 0:
                p.append(f"balances in {currency} sum to {total}, not 0: money was created or destroyed")
        report.checked["accounts"] = len(acct)

        # Carried fractions as of now: the carries rows, then each pending segment's, the latest winning.
        stored_carries = carried_fractions(conn)
        carried: dict[str, int] = {}
        for (_, currency), subunits in stored_carries.items():
            carried[currency] = carried.get(currency, 0) + subunits
        suspense = {key.rsplit(":", 1)[-1]: value for key, value in derived.items() if key.startswith("suspense:")}
        for currency in sorted(set(carried) | set(suspense)):
            if carried.get(currency, 0) != suspense.get(currency, 0) * SUBUNITS_PER_MICROUNIT:
                p.append(
                    f"suspense:{currency} holds {suspense.get(currency, 0)} microunits but carried fractions "
                    f"add up to {carried.get(currency, 0)} / 2^32"
                )

        # Replay every accrual from its evidence alone, in posting order: each batch's lines must add up
        # to its pool, its per-payee whole microunits (after carry-forward) to its transfer's legs, and
        # the fractions left at the end to the carries table (invariant 6: everything re-derivable).
        n_files = 0
        running: dict[tuple[str, str], int] = {}
        key_of = {i: row.key for i, row in acct.items()}
        legs_by_transfer: dict[str, dict[str, int]] = dict(segment_legs)
        for event_id, account_id, amount in conn.execute(
            select(transfers.c.event_id, legs.c.account_id, legs.c.amount_microunits)
            .join(transfers, transfers.c.id == legs.c.transfer_id)
            .where(transfers.c.code == "accrual")
        ):
            legs_by_transfer.setdefault(event_id, {})[key_of.get(account_id, f"?{account_id}")] = amount
        batches = conn.execute(
            select(accrual_batches, transfers.c.id.label("transfer_id"))
            .join(transfers, transfers.c.event_id == accrual_batches.c.transfer_event_id, isouter=True)
            .order_by(transfers.c.id.is_(None), transfers.c.id, accrual_batches.c.created_at)
        ).all()
        replayed_all, lines = True, LineSource(store, conn)
        floors = _group_rows(conn, [b.event_id for b in batches], report)
        agreement_of: dict[tuple[str, int], Agreement | None] = {}
        for b in batches:
            n_files += 1
            try:  # a file kept per payee: its re-derived lines must give its rows, which the checks below read
                table = _rederived(lines, b, p)
            except EvidenceError as exc:
                p.append(str(exc))
                replayed_all = False  # the carries can no longer be replayed; the cause is reported
                continue
            micro = sum(table["amount_microunits"].to_pylist())
            sub = sum(table["amount_subunits"].to_pylist())
            if micro * SUBUNITS_PER_MICROUNIT + sub != b.pool_microunits * SUBUNITS_PER_MICROUNIT:
                p.append(f"evidence of {b.event_id} adds up to {micro} + {sub}/2^32, not its pool {b.pool_microunits}")
            unregistered = set(table["model_id"].combine_chunks().dictionary.to_pylist()) - model_ids
            if unregistered:
                p.append(f"evidence of {b.event_id} names models that are not registered: {sorted(unregistered)[:5]}")
            if "revenue_microunits" in table.column_names:  # evidence written since migration 0002
                terms = (b.agreement_id, b.agreement_version)
                if terms not in agreement_of:
                    try:
                        agreement_of[terms] = load_agreement(conn, *terms)
                    except NotFoundError:  # accrue stores its agreement: this one was removed
                        agreement_of[terms] = None
                terms_now = agreement_of[terms]
                off = output_off_its_pool(table, terms_now) if terms_now is not None else None
                if terms_now is None:
                    p.append(
                        f"evidence of {b.event_id}: its agreement {b.agreement_id} version {b.agreement_version} "
                        "is not stored, so its pools cannot be re-derived"
                    )
                elif off is not None:
                    p.append(
                        f"evidence of {b.event_id}: the lines of output {off} do not add up to its pool "
                        "(its revenue x the pool rate) or disagree on its revenue"
                    )
            per_payee: dict[str, tuple[str, int]] = {}
            for payee, account, m, su in zip(
                table["payee"].to_pylist(),
                table["account"].to_pylist(),
                table["amount_microunits"].to_pylist(),
                table["amount_subunits"].to_pylist(),
            ):
                _, total = per_payee.get(payee, (account, 0))
                per_payee[payee] = (account, total + m * SUBUNITS_PER_MICROUNIT + su)
            expected: dict[str, int] = {}
            for payee, (account, amount) in per_payee.items():
                before = running.get((payee, b.currency), 0)
                running[(payee, b.currency)] = before + amount
                whole = (before + amount) // SUBUNITS_PER_MICROUNIT - before // SUBUNITS_PER_MICROUNIT
                if whole:
                    expected[account] = expected.get(account, 0) + whole
            for account, amount in floors.get(b.event_id, {}).items():  # licence floors: whole microunits
                expected[account] = expected.get(account, 0) + amount
            posted = {
                k: v
                for k, v in legs_by_transfer.get(b.transfer_event_id, {}).items()
                if not k.startswith(("pool:", "suspense:"))
            }
            if replayed_all and posted != expected:
                wrong = sorted(set(posted) ^ set(expected) | {k for k in posted if posted.get(k) != expected.get(k)})
                p.append(
                    f"accrual {b.event_id}: legs differ from what its evidence posts, e.g. account {wrong[0]} "
                    f"(ledger {posted.get(wrong[0], 0)}, evidence {expected.get(wrong[0], 0)})"
                )
        for payee_ccy in sorted(set(running) | set(stored_carries)) if replayed_all else []:
            want = running.get(payee_ccy, 0) % SUBUNITS_PER_MICROUNIT
            if stored_carries.get(payee_ccy, 0) != want:
                p.append(
                    f"carry of {payee_ccy[0]} in {payee_ccy[1]} is {stored_carries.get(payee_ccy, 0)}/2^32; "
                    f"the evidence replays to {want}/2^32"
                )
                break
        report.checked["evidence_files"] = n_files

        _check_transfers_beside_accruals(conn, derived, report)
        report.checked["outputs"] = int(conn.execute(select(func.count()).select_from(outputs)).scalar_one())
        _check_score_sources(conn, store, report)
    return report


def _rows_and_snapshot(
    conn: Connection, entries: list[Any], acct: dict[int, Any], watermark: int, report: VerifyReport
) -> dict[str, int]:
    """The balances as of the last fold: the account rows and the snapshot's accounts. The snapshot must
    be the only one, the last fold's, hash to what that fold's audit entry recorded, and hold each account
    once and only those with no row (rows opened after it excepted: they hold the balance now)."""
    p = report.problems
    stored = {r.key: r.balance_microunits for r in acct.values()}
    raw = snapshot_raw_sha256(conn)
    if raw is None:
        return stored
    if snapshot_count(conn) != 1:
        p.append(f"{snapshot_count(conn)} ledger snapshots are stored; a fold keeps exactly one")
    try:
        snap = read_snapshot(conn, carries=False, live=False)
    except LedgerError as exc:
        p.append(f"{exc}: restore the database from backup")
        return stored
    folds = {e.subject: json.loads(e.payload) for e in entries if e.kind == "ledger_fold"}
    audited = folds.get(f"through:{snap.through_transfer_id}", {}).get("snapshot_sha256")
    if raw[0] != raw[1] or audited != raw[0]:
        p.append("the ledger snapshot does not match the SHA-256 its fold's audit entry recorded")
    if snap.through_transfer_id != watermark:
        p.append(f"the ledger snapshot is of the fold through {snap.through_transfer_id}, not of the last fold")
    keys = snap.keys.to_pylist()
    if len(set(keys)) != len(keys) or any(k.partition(":")[0] not in SNAPSHOT_KINDS for k in keys):
        p.append("the ledger snapshot holds an account twice, or an account of a kind it does not keep")
    rows = {r.key: r.id for r in acct.values()}
    twice = [k for k in keys if rows.get(k, snap.account_id_max + 1) <= snap.account_id_max]
    if twice:
        p.append(f"accounts counted twice, as a row and in the ledger snapshot: {twice[:5]}")
    live = {k: int(v) for k, v in zip(keys, snap.balances.tolist()) if k not in rows}
    report.checked["snapshot_accounts"] = len(live)
    return stored | live


def _posted_content(t: Any, seg: Segment, seg_legs: dict[str, int], payload: dict[str, Any]) -> str | None:
    """The content hash of the transfer ``t`` with the legs its segment holds: hashed as columns in their
    order when its audit entry says so (an accrual's), else as sorted text (None when the columns cannot
    be what was posted: amounts beyond int64)."""
    import pyarrow as pa

    memo = json.loads(t.memo)
    if not payload.get("legs_in_order"):
        return TransferRequest(t.event_id, t.code, t.currency, seg_legs, memo, t.reverses_event_id).content_sha256()
    if not pa.types.is_int64(seg.amounts.type):
        return None
    legs = LegColumns(seg.accounts, seg.amounts.to_numpy())
    return TransferRequest(t.event_id, t.code, t.currency, legs, memo, t.reverses_event_id, True).content_sha256()


def _check_transfers(
    rows: Iterable[Any], leg_sums: dict[int, int], leg_counts: dict[int, int], audited: dict[str, Any], p: list[str]
) -> None:
    """Every transfer balances, has the legs it recorded and its audit entry."""
    for t in rows:
        if leg_sums.get(t.id, 0) != 0:
            p.append(f"transfer {t.event_id} does not balance (legs sum to {leg_sums.get(t.id, 0)})")
        if leg_counts.get(t.id, 0) != t.leg_count:
            p.append(f"transfer {t.event_id} has {leg_counts.get(t.id, 0)} legs, recorded {t.leg_count}")
        if audited.get(t.event_id) != t.content_sha256:
            p.append(f"transfer {t.event_id} has no matching audit entry")


def _group_rows(conn: Connection, event_ids: list[str], report: VerifyReport) -> dict[str, dict[str, int]]:
    """The rows kept beside the accrual groups ``event_ids``, checked: the licence floors' legs per group
    (``_floor_legs``), and the guild minimums their statements cite (theirs and the training fees')."""
    cited = [*event_ids, *fee_event_ids(conn)]
    report.checked["guild_minimums"] = _check_guild_minimums(conn, cited, report.problems)
    return _floor_legs(conn, event_ids, report.problems)


def _floor_legs(conn: Connection, event_ids: list[str], p: list[str]) -> dict[str, dict[str, int]]:
    """Per accrual group, what its licence floor lines add to each account; a line whose licence term is not
    stored, or that belongs to no accrual group, is a problem."""
    lines = floor_lines_of(conn, event_ids)
    stored = {term_id for term_id, _ in terms_for(conn, {x.attributed_work for x in lines})}
    gone = sorted({x.term_id for x in lines} - stored)
    if gone:
        p.append(f"licence floor lines name licence term {gone[0]}, which is not stored")
    if len(lines) != floor_line_count(conn):
        p.append("licence floor lines belong to no accrual group: they paid money no evidence explains")
    out: dict[str, dict[str, int]] = {}
    for x in lines:
        per = out.setdefault(x.event_id, {})
        per[x.account] = per.get(x.account, 0) + x.amount_microunits
    return out


def _check_guild_minimums(conn: Connection, event_ids: list[str], p: list[str]) -> int:
    """Every guild minimum a statement cites belongs to an accrual group or a training fee and is what the
    stored version of those guild terms sets for the role (else a problem); returns how many rows were checked."""
    lines = minimum_lines_of(conn, event_ids)
    if len(lines) != minimum_line_count(conn):
        p.append("guild minimum rows belong to no accrual group or training fee: they cite terms nothing applied")
    versions: dict[str, dict[int, dict[str, int]]] = {}
    for x in lines:
        if x.issuer not in versions:
            versions[x.issuer] = {
                t.version: {f"{s}:{c}": w for (s, c), w in t.role_weights_min}
                for t in guild_terms_versions(conn, x.issuer)
            }
        scheme, _, code = x.role.partition(":")
        role = ":".join(canonical_role(scheme, code))
        if versions[x.issuer].get(x.terms_version, {}).get(role) != x.weight_min:
            p.append(
                f"{x.event_id} cites guild terms of {x.issuer} v{x.terms_version} as a minimum weight "
                f"{x.weight_min} for {x.role}, which no stored version of those terms sets"
            )
            break
    return len(lines)


def _check_training_fees(conn: Connection, p: list[str]) -> int:
    """Every training fee transfer's legs (but the pool's) are what its rows add up to per account, and every
    row belongs to such a transfer; returns how many transfers were checked."""
    posted: dict[str, dict[str, int]] = {}
    q = (
        select(transfers.c.event_id, accounts.c.key, legs.c.amount_microunits)
        .join(legs, legs.c.transfer_id == transfers.c.id)
        .join(accounts, accounts.c.id == legs.c.account_id)
        .where(transfers.c.code == "training_fee")
    )
    for event_id, key, amount in conn.execute(q):
        if not key.startswith("pool:"):
            posted.setdefault(event_id, {})[key] = int(amount)
    kept: dict[str, dict[str, int]] = {}
    for x in fee_lines(conn):
        per = kept.setdefault(x.event_id, {})
        per[x.account] = per.get(x.account, 0) + x.amount_microunits
    for event_id in sorted(set(posted) | set(kept)):
        if posted.get(event_id) != kept.get(event_id):
            p.append(f"training fee {event_id}: its legs differ from what its fee rows add up to")
            break
    return len(posted)


def _check_transfers_beside_accruals(conn: Connection, derived: dict[str, int], report: VerifyReport) -> None:
    """The transfers no evidence file explains: payout clearing, and training fees against their rows."""
    _check_payout_clearing(conn, derived, report)
    report.checked["training_fees"] = _check_training_fees(conn, report.problems)


def _check_payout_clearing(conn: Connection, derived: dict[str, int], report: VerifyReport) -> None:
    """Per currency, the payout clearing balance equals the pending payout items of its batches."""
    pending_items = conn.execute(
        select(payout_batches.c.currency, payout_items.c.amount_microunits)
        .join(payout_batches, payout_batches.c.id == payout_items.c.batch_id)
        .where(payout_items.c.status == "pending")
    ).all()
    pending_by_ccy: dict[str, int] = {}
    for r in pending_items:
        pending_by_ccy[r.currency] = pending_by_ccy.get(r.currency, 0) + r.amount_microunits
    clearing_by_ccy: dict[str, int] = {}
    for key, value in derived.items():
        if key.startswith("clearing:"):
            currency = key.rsplit(":", 1)[-1]
            clearing_by_ccy[currency] = clearing_by_ccy.get(currency, 0) + value
    for currency in sorted(set(pending_by_ccy) | set(clearing_by_ccy)):
        if clearing_by_ccy.get(currency, 0) != pending_by_ccy.get(currency, 0):
            report.problems.append(
                f"payout clearing in {currency} holds {clearing_by_ccy.get(currency, 0)} but pending payout "
                f"items add up to {pending_by_ccy.get(currency, 0)}"
            )
    report.checked["payout_items_pending"] = len(pending_items)


def _check_score_sources(conn: Connection, store: Store, report: VerifyReport) -> None:
    """Invariant 8, re-checked: each accrual group's attribution run is recorded, still fits its manifest
    (root, model, bound checkpoint), its scores file hashes to what it recorded, and it scored every output
    the group paid, of its model. Groups on external scores are listed in ``report.external`` (not a
    problem); groups accrued before sources were recorded are counted."""
    rows = conn.execute(
        select(
            accrual_batches.c.event_id,
            accrual_batches.c.evidence_path,
            accrual_batches.c.scores_run_id,
            accrual_batches.c.scores_external_reason,
        ).order_by(accrual_batches.c.event_id)
    ).all()
    runs = runs_by_id(conn, {r.scores_run_id for r in rows if r.scores_run_id is not None})
    scored: dict[str, set[str] | None] = {}  # per run: the outputs its scores file holds (None: unusable)
    for run_id, run in sorted(runs.items()):
        problem = _run_problem(conn, run)
        if problem is None:
            try:
                scored[run_id] = set(read_run_scores(store.data_dir, run).distinct()[0])
            except EvidenceError as exc:
                problem = str(exc)
        if problem is not None:
            report.problems.append(problem)
            scored[run_id] = None
    counts = {"accruals_from_runs": 0, "accruals_external": 0, "accruals_unsourced": 0}
    for r in rows:
        if r.scores_external_reason is not None:
            counts["accruals_external"] += 1
            report.external.append(f"{r.event_id}: external scores ({r.scores_external_reason})")
        elif r.scores_run_id is None:
            counts["accruals_unsourced"] += 1
        elif r.scores_run_id not in runs:
            report.problems.append(
                f"accrual {r.event_id} names attribution run {r.scores_run_id}, which is not recorded"
            )
        else:
            counts["accruals_from_runs"] += 1
            _check_paid_outputs(store, r.event_id, r.evidence_path, runs[r.scores_run_id], scored, report)
    report.checked |= {"attribution_runs": run_count(conn), **counts}


def _run_problem(conn: Connection, run: AttributionRun) -> str | None:
    """Why the run no longer fits the manifest it recorded, or None."""
    try:
        manifest = load_manifest(conn, run.manifest_id)
    except NotFoundError:
        return f"attribution run {run.id} names manifest {run.manifest_id}, which is not stored"
    return binding_problem(run, manifest)


def _check_paid_outputs(
    store: Store,
    event_id: str,
    evidence: str,
    run: AttributionRun,
    scored: dict[str, set[str] | None],
    report: VerifyReport,
) -> None:
    """Every output the group paid was scored by its run, and is of the run's model (an unreadable evidence
    file is reported by the evidence checks)."""
    outputs_scored = scored.get(run.id)
    if outputs_scored is None:
        return
    try:
        table = read_evidence(store.data_dir / evidence, columns=["output_id", "model_id"])
    except EvidenceError:
        return
    models_paid = set(table["model_id"].to_pylist()) - {run.model_id, ""}  # "": a recorded share's row
    if models_paid:
        report.problems.append(
            f"accrual {event_id} paid outputs of model {min(models_paid)} on attribution run {run.id}, which "
            f"scored model {run.model_id}"
        )
    unscored = set(table["output_id"].to_pylist()) - outputs_scored - {""}
    if unscored:
        report.problems.append(
            f"accrual {event_id} paid output {min(unscored)}, which attribution run {run.id} did not score"
        )


def _rederived(lines: LineSource, group: Any, problems: list[str]) -> pa.Table:
    """The money rows of ``group``'s evidence file, read and checked against its SHA-256. For one kept per
    payee, its lines are re-derived from the run, the agreement and the recorded shares first, and must add
    up, to the subunit and in the same account, to every row kept: per output and payee (files kept so), or
    per payee over the group and per output (files kept per batch; the re-derived lines are returned, so the
    checks that follow see every output). A difference is a problem naming the first row that differs."""
    table = read_evidence(lines.store.data_dir / group.evidence_path, expected_sha256=group.evidence_sha256)
    if not kept_per_payee(table):
        return table
    kept = payee_rows(table)
    derived = lines.lines(group, table)
    if not kept_per_batch(table):
        _compare(group, _part_sums(derived), _part_sums(kept), "output {0} and payee {1}", problems)
        return kept
    outputs = output_rows(table)
    _compare(group, _part_sums(derived, "payee"), _part_sums(kept, "payee"), "payee {1}", problems)
    _compare(group, _part_sums(derived, "output"), _part_sums(outputs, "output"), "output {0}", problems)
    return derived


Sums = dict[tuple[str, str, str], int]


def _compare(group: Any, got: Sums, want: Sums, what: str, problems: list[str]) -> None:
    if got == want:
        return
    key = min(set(got) ^ set(want) | {k for k in got if got[k] != want.get(k)})
    problems.append(
        f"evidence of {group.event_id}: the lines re-derived for {what.format(*key)} add up to "
        f"{got.get(key, 0)}/2^32, the row kept for them to {want.get(key, 0)}/2^32"
    )


def _part_sums(table: pa.Table, per: str = "part") -> Sums:
    """Per (output, payee, account) (``per`` "part"), per (payee, account) ("payee") or per output ("output"),
    the exact sum of the rows in 2^-32 microunits, keyed by (output, payee, account) with the others empty.
    int64 sums cannot overflow: whole microunits add up to at most an output's pool ("part", "output") or,
    for evidence kept per batch, to under 2^62 (``evidence.per_batch_table``); fractions to under rows x 2^32."""
    keys = {"part": ["output_id", "payee", "account"], "payee": ["payee", "account"], "output": ["output_id"]}[per]
    t = pa.table(
        [*(table[k].cast(pa.string()) for k in keys), table["amount_microunits"], table["amount_subunits"]],
        names=[*keys, "m", "s"],
    )
    g = t.group_by(keys, use_threads=False).aggregate([("m", "sum"), ("s", "sum")])
    got = {k: g[k].to_pylist() for k in keys}
    n = g.num_rows
    columns = [got.get(k, [""] * n) for k in ("output_id", "payee", "account")]
    sums = [m * SUBUNITS_PER_MICROUNIT + s for m, s in zip(g["m_sum"].to_pylist(), g["s_sum"].to_pylist(), strict=True)]
    return {(o, p, a): v for o, p, a, v in zip(*columns, sums, strict=True)}


def output_off_its_pool(table: pa.Table, agreement: Agreement) -> str | None:
    """The first output (in the evidence's dictionary order) whose lines do not add up, to the subunit,
    to floor(revenue x pool rate), or whose lines disagree on its revenue; None when every output does."""
    outputs_ = table["output_id"].combine_chunks()
    codes = outputs_.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(outputs_.dictionary)
    revenue = table["revenue_microunits"].to_numpy()
    revenue_of = np.zeros(n, dtype=np.int64)
    revenue_of[codes] = revenue
    micro = np.zeros(n, dtype=np.int64)
    sub = np.zeros(n, dtype=np.int64)
    np.add.at(micro, codes, table["amount_microunits"].to_numpy())  # <= the pool <= 2^62 per output
    np.add.at(sub, codes, table["amount_subunits"].to_numpy())  # < lines x 2^32
    pools = pools_of(revenue_of.tolist(), agreement)
    whole = (micro + (sub >> SUBUNIT_BITS)).astype(object) if pools.dtype == object else micro + (sub >> SUBUNIT_BITS)
    wrong = (whole != pools) | ((sub & (SUBUNITS_PER_MICROUNIT - 1)) != 0)
    wrong[np.unique(codes[revenue != revenue_of[codes]])] = True
    bad = np.flatnonzero(wrong.astype(bool))
    return str(outputs_.dictionary[int(bad[0])]) if len(bad) else None
