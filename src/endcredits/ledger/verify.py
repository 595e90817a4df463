"""``endcredits verify``: re-derive everything the ledger claims and report any difference.

Checks, in order: the audit hash chain; every transfer balances and has its audit entry; every leg,
balance, output and credit refers to a transfer, account, model, work or payee that exists (those tables have no foreign
keys, for speed); the balance table equals the sum of legs; no account that may not go negative is negative; every currency's
balances sum to zero; suspense equals the carried fractions; every evidence file is intact and its
lines add up to its batch's pool exactly; replaying the evidence in posting order reproduces every
accrual's legs and, at the end, every payee's carried fraction; payout clearing equals the pending items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import func, select, text

from endcredits.audit import verify_chain
from endcredits.errors import EvidenceError
from endcredits.ledger import NEGATIVE_ALLOWED_KINDS
from endcredits.limits import SUBUNITS_PER_MICROUNIT
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store
from endcredits.store.evidence import read_evidence
from endcredits.store.ledger import derived_balances
from endcredits.store.schema import (
    accounts,
    accrual_batches,
    carries,
    credits,
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

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: Store) -> VerifyReport:
    report = VerifyReport()
    p = report.problems
    with store.read() as conn:
        entries = list(iter_audit(conn))
        p.extend(verify_chain(entries))
        report.checked["audit_entries"] = len(entries)
        audited = {e.subject: json.loads(e.payload).get("content_sha256") for e in entries if e.kind == "transfer"}

        leg_sums: dict[int, int] = {}
        leg_counts: dict[int, int] = {}
        for transfer_id, amount in conn.execution_options(yield_per=50_000).execute(
                select(legs.c.transfer_id, legs.c.amount_microunits)):
            leg_sums[transfer_id] = leg_sums.get(transfer_id, 0) + amount
            leg_counts[transfer_id] = leg_counts.get(transfer_id, 0) + 1
        n_transfers = 0
        for t in conn.execute(select(transfers.c.id, transfers.c.event_id, transfers.c.leg_count, transfers.c.content_sha256)):
            n_transfers += 1
            if leg_sums.get(t.id, 0) != 0:
                p.append(f"transfer {t.event_id} does not balance (legs sum to {leg_sums.get(t.id, 0)})")
            if leg_counts.get(t.id, 0) != t.leg_count:
                p.append(f"transfer {t.event_id} has {leg_counts.get(t.id, 0)} legs, recorded {t.leg_count}")
            if audited.get(t.event_id) != t.content_sha256:
                p.append(f"transfer {t.event_id} has no matching audit entry")
        report.checked["transfers"] = n_transfers

        derived = derived_balances(conn)
        acct = {r.id: r for r in conn.execute(select(accounts))}
        # The hot tables have no foreign keys (see store.schema): check every reference here.
        transfer_ids = {r.id for r in conn.execute(select(transfers.c.id))}
        orphan_transfers = set(leg_sums) - transfer_ids
        if orphan_transfers:
            p.append(f"legs refer to transfers that do not exist: {sorted(orphan_transfers)[:5]}")
        orphan_accounts = set(derived) - set(acct)
        if orphan_accounts:
            p.append(f"legs refer to accounts that do not exist: {sorted(orphan_accounts)[:5]}")
        model_ids = {r.id for r in conn.execute(select(models.c.id))}
        orphan_models = {r.model_id for r in conn.execute(select(outputs.c.model_id).distinct())} - model_ids
        if orphan_models:
            p.append(f"outputs refer to models that are not registered: {sorted(orphan_models)[:5]}")
        for column, table, key, what in (("work_seq", "works", "seq", "works"), ("person_id", "people", "id", "people"),
                                         ("name_id", "names", "id", "credited names")):
            missing = [r[0] for r in conn.execute(text(
                f"SELECT DISTINCT c.{column} FROM credits c LEFT JOIN {table} t ON t.{key} = c.{column} "
                f"WHERE c.{column} IS NOT NULL AND t.{key} IS NULL ORDER BY 1 LIMIT 5"))]
            if missing:
                p.append(f"credits refer to {what} that are not registered ({column} {missing})")
        report.checked["credits"] = int(conn.execute(select(func.count()).select_from(credits)).scalar_one())
        stored = {account_id: row.balance_microunits for account_id, row in acct.items()}
        per_currency: dict[str, int] = {}
        for account_id, row in acct.items():
            value = derived.get(account_id, 0)
            if stored.get(account_id, 0) != value:
                p.append(f"account {row.key}: stored balance {stored.get(account_id, 0)} != sum of legs {value}")
            if value < 0 and row.kind not in NEGATIVE_ALLOWED_KINDS:
                p.append(f"account {row.key} is negative ({value})")
            per_currency[row.currency] = per_currency.get(row.currency, 0) + value
        for currency, total in sorted(per_currency.items()):
            if total != 0:
                p.append(f"balances in {currency} sum to {total}, not 0: money was created or destroyed")
        report.checked["accounts"] = len(acct)

        carried: dict[str, int] = {}
        for r in conn.execute(select(carries.c.currency, carries.c.subunits)):
            carried[r.currency] = carried.get(r.currency, 0) + r.subunits
        suspense = {row.currency: derived.get(i, 0) for i, row in acct.items() if row.kind == "suspense"}
        for currency in sorted(set(carried) | set(suspense)):
            if carried.get(currency, 0) != suspense.get(currency, 0) * SUBUNITS_PER_MICROUNIT:
                p.append(f"suspense:{currency} holds {suspense.get(currency, 0)} microunits but carried fractions "
                         f"add up to {carried.get(currency, 0)} / 2^32")

        # Replay every accrual from its evidence alone, in posting order: each batch's lines must add up
        # to its pool, its per-payee whole microunits (after carry-forward) to its transfer's legs, and
        # the fractions left at the end to the carries table (invariant 6: everything re-derivable).
        n_files = 0
        running: dict[tuple[str, str], int] = {}
        key_of = {i: row.key for i, row in acct.items()}
        legs_by_transfer: dict[str, dict[str, int]] = {}
        for event_id, account_id, amount in conn.execute(
                select(transfers.c.event_id, legs.c.account_id, legs.c.amount_microunits)
                .join(transfers, transfers.c.id == legs.c.transfer_id).where(transfers.c.code == "accrual")):
            legs_by_transfer.setdefault(event_id, {})[key_of.get(account_id, f"?{account_id}")] = amount
        batches = conn.execute(
            select(accrual_batches, transfers.c.id.label("transfer_id"))
            .join(transfers, transfers.c.event_id == accrual_batches.c.transfer_event_id, isouter=True)
            .order_by(transfers.c.id.is_(None), transfers.c.id, accrual_batches.c.created_at)).all()
        replayed_all = True
        for b in batches:
            n_files += 1
            try:
                table = read_evidence(store.data_dir / b.evidence_path, expected_sha256=b.evidence_sha256)
            except EvidenceError as exc:
                p.append(str(exc))
                replayed_all = False  # the carries can no longer be replayed; the cause is reported
                continue
            micro = sum(table["amount_microunits"].to_pylist())
            sub = sum(table["amount_subunits"].to_pylist())
            if micro * SUBUNITS_PER_MICROUNIT + sub != b.pool_microunits * SUBUNITS_PER_MICROUNIT:
                p.append(f"evidence of {b.event_id} adds up to {micro} + {sub}/2^32, not its pool {b.pool_microunits}")
            per_payee: dict[str, tuple[str, int]] = {}
            for payee, account, m, su in zip(table["payee"].to_pylist(), table["account"].to_pylist(),
                                             table["amount_microunits"].to_pylist(), table["amount_subunits"].to_pylist()):
                _, total = per_payee.get(payee, (account, 0))
                per_payee[payee] = (account, total + m * SUBUNITS_PER_MICROUNIT + su)
            expected: dict[str, int] = {}
            for payee, (account, amount) in per_payee.items():
                before = running.get((payee, b.currency), 0)
                running[(payee, b.currency)] = before + amount
                whole = (before + amount) // SUBUNITS_PER_MICROUNIT - before // SUBUNITS_PER_MICROUNIT
                if whole:
                    expected[account] = expected.get(account, 0) + whole
            posted = {k: v for k, v in legs_by_transfer.get(b.transfer_event_id, {}).items()
                      if not k.startswith(("pool:", "suspense:"))}
            if replayed_all and posted != expected:
                wrong = sorted(set(posted) ^ set(expected) | {k for k in posted if posted.get(k) != expected.get(k)})
                p.append(f"accrual {b.event_id}: legs differ from what its evidence posts, e.g. account {wrong[0]} "
                         f"(ledger {posted.get(wrong[0], 0)}, evidence {expected.get(wrong[0], 0)})")
        stored_carries = {(r.payee, r.currency): r.subunits for r in conn.execute(select(carries))}
        for payee_ccy in sorted(set(running) | set(stored_carries)) if replayed_all else []:
            want = running.get(payee_ccy, 0) % SUBUNITS_PER_MICROUNIT
            if stored_carries.get(payee_ccy, 0) != want:
                p.append(f"carry of {payee_ccy[0]} in {payee_ccy[1]} is {stored_carries.get(payee_ccy, 0)}/2^32; "
                         f"the evidence replays to {want}/2^32")
                break
        report.checked["evidence_files"] = n_files

        pending = conn.execute(select(payout_batches.c.currency, payout_items.c.amount_microunits).join(
            payout_batches, payout_batches.c.id == payout_items.c.batch_id).where(payout_items.c.status == "pending")).all()
        pending_by_ccy: dict[str, int] = {}
        for r in pending:
            pending_by_ccy[r.currency] = pending_by_ccy.get(r.currency, 0) + r.amount_microunits
        clearing_by_ccy: dict[str, int] = {}
        for i, row in acct.items():
            if row.kind == "clearing":
                clearing_by_ccy[row.currency] = clearing_by_ccy.get(row.currency, 0) + derived.get(i, 0)
        for currency in sorted(set(pending_by_ccy) | set(clearing_by_ccy)):
            if clearing_by_ccy.get(currency, 0) != pending_by_ccy.get(currency, 0):
                p.append(f"payout clearing in {currency} holds {clearing_by_ccy.get(currency, 0)} but pending payout "
                         f"items add up to {pending_by_ccy.get(currency, 0)}")
        report.checked["payout_items_pending"] = len(pending)
        report.checked["outputs"] = int(conn.execute(select(func.count()).select_from(outputs)).scalar_one())
    return report
