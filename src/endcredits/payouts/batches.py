"""Payout batches: balances at or above the threshold leave the system as bank files.

Creating a batch moves each payee's whole minor units (cents) from ``payable`` to
``clearing:payouts`` in one transfer and writes an ISO 20022 pain.001 file and a CSV. The dust below a
cent stays on the payee's balance, and so does any balance below the threshold: it carries forward.
The batch stays ``pending`` until statuses come back (a pain.002 or the operator's word): settled
items move from clearing to ``bank:payouts``; failed items go back to the payee's payable balance.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from endcredits.errors import ConflictError, NotFoundError, ValidationError
from endcredits.ledger import TransferRequest, account_key, parse_account_key
from endcredits.ledger.records import account_balances, post_transfer
from endcredits.money import to_minor_units
from endcredits.payouts.files import MESSAGE_ID_PATTERN, Debtor, PayoutInstruction, write_pain001, write_payout_csv
from endcredits.payouts.iban import normalize_iban
from endcredits.registry.private import private_of, with_payout_account
from endcredits.registry.records import people_verification
from endcredits.store.audit import append_audit
from endcredits.store.engine import Store, utc_now
from endcredits.store.schema import payout_batches, payout_items


@dataclass(frozen=True)
class PayoutPlanItem:
    person_id: int
    handle: str
    amount_microunits: int
    end_to_end_id: str


@dataclass(frozen=True)
class PayoutBatchResult:
    batch_id: str
    status: str  # "created", "exists", "dry_run", "empty"
    currency: str
    items: tuple[PayoutPlanItem, ...]
    total_microunits: int
    below_threshold: int
    missing_bank_details: int
    pain001_path: Path | None
    csv_path: Path | None


@dataclass(frozen=True)
class _Payable:
    id: int
    handle: str
    verified_at: str | None
    balance_microunits: int


def _e2e(batch_id: str, person_id: int) -> str:
    return "EC" + hashlib.sha256(f"{batch_id}/{person_id}".encode()).hexdigest()[:30].upper()


def create_payout_batch(
    store: Store,
    *,
    batch_id: str,
    currency: str,
    threshold_microunits: int,
    debtor: Debtor,
    execution_date: dt.date,
    dry_run: bool = False,
) -> PayoutBatchResult:
    """Pay every verified person whose payable balance is at least the threshold and who has an IBAN."""
    if not isinstance(batch_id, str) or MESSAGE_ID_PATTERN.fullmatch(batch_id) is None:
        raise ValidationError(
            f"payout batch id {batch_id!r} must be a pain.001 message id: 1-35 letters, digits or '-'"
        )
    # Bank files are written to a staging folder and moved into payouts/<batch id> only after the
    # transaction that moves the money has committed: a file an operator can pick up always has its
    # ledger transfer, and a failed attempt leaves nothing a bank could be sent.
    out_dir = store.data_dir / "payouts" / batch_id
    staging = store.data_dir / "payouts" / ".staging" / batch_id
    with store.write() as conn:
        prior = conn.execute(select(payout_batches).where(payout_batches.c.id == batch_id)).first()
        if prior is not None:
            _publish(staging, out_dir)  # a crash between commit and publishing is finished here
            items = conn.execute(select(payout_items).where(payout_items.c.batch_id == batch_id)).all()
            return PayoutBatchResult(
                batch_id,
                "exists",
                prior.currency,
                tuple(PayoutPlanItem(i.person_id, "", i.amount_microunits, i.end_to_end_id) for i in items),
                prior.total_microunits,
                0,
                0,
                Path(prior.pain001_path) if prior.pain001_path else None,
                Path(prior.csv_path) if prior.csv_path else None,
            )
        # Balances as of now (accrual segments not yet folded included; posting below folds them first).
        owed: dict[int, int] = {}
        for key, balance in account_balances(conn, kind="payable", currency=currency).items():
            holder = parse_account_key(key)[1] or ""
            if holder.startswith("person:"):
                owed[int(holder.removeprefix("person:"))] = balance
        rows = [
            _Payable(pid, handle, verified_at, owed[pid])
            for pid, handle, verified_at in people_verification(conn, list(owed))
        ]
        plan: list[PayoutPlanItem] = []
        instructions: list[PayoutInstruction] = []
        below = missing = 0
        # Only the payable people's details are opened, and only here, where the bank file needs them.
        accounts_on_file = with_payout_account(conn, [r.id for r in rows])
        details = private_of(conn, accounts_on_file) if accounts_on_file else {}
        for r in rows:
            _minor, dust = to_minor_units(r.balance_microunits, currency)
            amount = r.balance_microunits - dust  # whole minor units; the dust stays on the balance
            if r.verified_at is None:
                continue  # not yet verified: their money waits in escrow, not here
            if amount <= 0 or amount < threshold_microunits:
                below += 1 if r.balance_microunits > 0 else 0
                continue
            bank = details.get(r.id)
            if bank is None or not bank.iban:
                missing += 1
                continue
            e2e = _e2e(batch_id, r.id)
            plan.append(PayoutPlanItem(r.id, r.handle, amount, e2e))
            instructions.append(
                PayoutInstruction(
                    end_to_end_id=e2e,
                    payee_id=f"person:{r.id}",
                    payee_name=r.handle,
                    iban=normalize_iban(bank.iban),
                    bic=bank.bic,
                    amount_microunits=amount,
                    currency=currency,
                    remittance=f"endcredits residuals {batch_id}",
                )
            )
        total = sum(p.amount_microunits for p in plan)
        if dry_run or not plan:
            return PayoutBatchResult(
                batch_id, "dry_run" if dry_run else "empty", currency, tuple(plan), total, below, missing, None, None
            )
        at = utc_now()
        # pain.001 here is the SEPA credit transfer (EUR only); other currencies get the CSV alone.
        pain = (
            write_pain001(
                instructions,
                message_id=batch_id,
                debtor=debtor,
                execution_date=execution_date,
                created_at=dt.datetime.fromisoformat(at),
            )
            if currency == "EUR"
            else None
        )
        csv_bytes = write_payout_csv(instructions, batch_id=batch_id)
        legs = {account_key("payable", currency, f"person:{p.person_id}"): -p.amount_microunits for p in plan}
        legs[account_key("clearing", currency, "payouts")] = total
        post_transfer(
            conn,
            TransferRequest(
                event_id=f"payout/{batch_id}",
                code="payout_sent",
                currency=currency,
                legs=legs,
                memo={"batch": batch_id},
            ),
            at=at,
        )
        if out_dir.exists():
            raise ConflictError(
                f"{out_dir} exists but no payout batch {batch_id} was recorded: move it aside and retry"
            )
        # No batch row and the write lock held: anything staged for this id is from an attempt that never
        # committed, and was never where an operator could take it.
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        pain_path: Path | None = out_dir / "pain001.xml" if pain is not None else None
        csv_path = out_dir / "payouts.csv"
        if pain is not None:
            _write_durably(staging / "pain001.xml", pain)
        _write_durably(staging / "payouts.csv", csv_bytes)
        conn.execute(
            payout_batches.insert().values(
                id=batch_id,
                currency=currency,
                status="pending",
                item_count=len(plan),
                total_microunits=total,
                pain001_path=str(pain_path) if pain_path else None,
                csv_path=str(csv_path),
                created_at=at,
            )
        )
        conn.execute(
            payout_items.insert(),
            [
                {
                    "end_to_end_id": p.end_to_end_id,
                    "batch_id": batch_id,
                    "person_id": p.person_id,
                    "amount_microunits": p.amount_microunits,
                    "status": "pending",
                    "resolved_at": None,
                }
                for p in plan
            ],
        )
        append_audit(
            conn,
            "payout.created",
            batch_id,
            {
                "items": len(plan),
                "total": str(total),
                "csv_sha256": hashlib.sha256(csv_bytes).hexdigest(),
                "pain001_sha256": hashlib.sha256(pain).hexdigest() if pain is not None else None,
            },
            at=at,
        )
    _publish(staging, out_dir)
    return PayoutBatchResult(batch_id, "created", currency, tuple(plan), total, below, missing, pain_path, csv_path)


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _publish(staging: Path, out_dir: Path) -> None:
    """Move a committed batch's files from staging into place (once; a no-op when already there)."""
    if staging.exists() and not out_dir.exists():
        staging.rename(out_dir)


@dataclass(frozen=True)
class StatusResult:
    batch_id: str
    settled: int
    failed: int
    unchanged: int
    batch_status: str


def apply_payout_status(store: Store, batch_id: str, statuses: Mapping[str, str]) -> StatusResult:
    """Apply bank statuses (end-to-end id -> "settled" | "failed") to a pending batch. Idempotent."""
    for e2e, status in statuses.items():
        if status not in ("settled", "failed"):
            raise ValidationError(f"status for {e2e} is {status!r}; it must be settled or failed")
    with store.write() as conn:
        batch = conn.execute(select(payout_batches).where(payout_batches.c.id == batch_id)).first()
        if batch is None:
            raise NotFoundError(f"no payout batch {batch_id}")
        items = {
            i.end_to_end_id: i for i in conn.execute(select(payout_items).where(payout_items.c.batch_id == batch_id))
        }
        unknown = sorted(set(statuses) - set(items))
        if unknown:
            raise NotFoundError(f"payout batch {batch_id} has no item {unknown[0]}")
        currency = batch.currency
        clearing = account_key("clearing", currency, "payouts")
        legs_by_status: dict[str, dict[str, int]] = {"settled": {}, "failed": {}}
        settled = failed = unchanged = 0
        at = utc_now()
        changes = []
        for e2e, status in sorted(statuses.items()):
            item = items[e2e]
            if item.status == status:
                unchanged += 1
                continue
            if item.status != "pending":
                raise ConflictError(f"payout item {e2e} is already {item.status}; a resolved item does not change")
            legs = legs_by_status[status]
            legs[clearing] = legs.get(clearing, 0) - item.amount_microunits
            if status == "settled":
                target = account_key("bank", currency, "payouts")
                settled += 1
            else:
                # The bank returned it: the money goes back to the payee's balance for the next batch.
                target = account_key("payable", currency, f"person:{item.person_id}")
                failed += 1
            legs[target] = legs.get(target, 0) + item.amount_microunits
            changes.append((e2e, status))
        if changes:
            digest = hashlib.sha256(repr(changes).encode()).hexdigest()[:16]
            for status, legs in legs_by_status.items():
                if legs:
                    post_transfer(
                        conn,
                        TransferRequest(
                            event_id=f"payout-{status}/{batch_id}/{digest}",
                            code=f"payout_{status}",
                            currency=currency,
                            legs=legs,
                            memo={"batch": batch_id},
                        ),
                        at=at,
                    )
            for e2e, status in changes:
                conn.execute(
                    update(payout_items)
                    .where(payout_items.c.end_to_end_id == e2e)
                    .values(status=status, resolved_at=at)
                )
            append_audit(conn, "payout.status", batch_id, {"settled": settled, "failed": failed}, at=at)
        pending = conn.execute(
            select(payout_items.c.end_to_end_id).where(
                payout_items.c.batch_id == batch_id, payout_items.c.status == "pending"
            )
        ).first()
        status_now = "pending" if pending is not None else "resolved"
        if status_now != batch.status:
            conn.execute(update(payout_batches).where(payout_batches.c.id == batch_id).values(status=status_now))
    return StatusResult(batch_id, settled, failed, unchanged, status_now)
