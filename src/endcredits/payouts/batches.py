"""Payout batches: balances at or above the threshold leave the system as bank files.

Creating a batch moves each payee's whole minor units (cents) from ``payable`` to
``clearing:payouts`` in one transfer and writes an ISO 20022 pain.001 file and a CSV. The dust below a
cent stays on the payee's balance, and so does any balance below the threshold: it carries forward.
The batch stays ``pending`` until statuses come back (a pain.002 or the operator's word): settled
items move from clearing to ``bank:payouts``; failed items go back to the payee's payable balance.
A payee the bank file cannot carry (above the SEPA maximum, say) is held for a later batch with its
reason, never blocking the others. The files (plaintext IBANs) are 0600 in 0700 folders.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update

from endcredits.audit import canonical_json
from endcredits.errors import ConflictError, NotFoundError, ValidationError
from endcredits.ledger import TransferRequest, account_key, parse_account_key
from endcredits.ledger.records import account_balances, load_transfer, post_transfer
from endcredits.money import check_currency, format_amount, to_minor_units
from endcredits.payouts.files import (
    MESSAGE_ID_PATTERN,
    PAYOUT_INSTRUCTIONS_PER_FILE_MAX,
    SEPA_AMOUNT_CENTS_MAX,
    Debtor,
    PayoutInstruction,
    check_instruction,
    write_pain001,
    write_payout_csv,
)
from endcredits.payouts.iban import normalize_bic, normalize_iban
from endcredits.registry.private import private_of, with_payout_account
from endcredits.registry.records import people_verification
from endcredits.royalties.records import load_agreement
from endcredits.store.audit import append_audit
from endcredits.store.engine import Store, utc_now
from endcredits.store.files import private_dir, write_private
from endcredits.store.schema import payout_batches, payout_items


@dataclass(frozen=True)
class PayoutPlanItem:
    person_id: int
    handle: str
    amount_microunits: int
    end_to_end_id: str


HOLD_ABOVE_SEPA_MAXIMUM = "above_sepa_maximum"
"""The whole minor units owed are above ``SEPA_AMOUNT_CENTS_MAX``: one SEPA credit transfer cannot carry them."""
HOLD_BANK_FILE_REFUSED = "bank_file_refused"
"""The bank file cannot carry this payee's transfer (such as an IBAN outside SEPA in a pain.001)."""
HOLD_BATCH_FULL = "batch_full"
"""The batch already holds ``PAYOUT_INSTRUCTIONS_PER_FILE_MAX`` transfers; the rest go in the next one."""


@dataclass(frozen=True)
class HeldPayee:
    """A payee at or above the threshold left out of this batch: their whole balance stays payable, and
    the next batch tries again. ``reason`` is one of the ``HOLD_*`` codes; ``message`` is one line."""

    person_id: int
    handle: str
    balance_microunits: int
    reason: str
    message: str


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
    held: tuple[HeldPayee, ...] = ()
    """Payees left for a later batch, with the reason (empty for "exists": holds are not recorded)."""

    def to_json(self) -> dict[str, Any]:
        """The result as the CLI's ``--json`` and the API print it: amounts in integer microunits, files by
        name (they live in ``payouts/<batch id>/`` of the data directory)."""
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "currency": self.currency,
            "items": len(self.items),
            "total_microunits": self.total_microunits,
            "below_threshold": self.below_threshold,
            "missing_bank_details": self.missing_bank_details,
            "held": [
                {
                    "person_id": h.person_id,
                    "handle": h.handle,
                    "balance_microunits": h.balance_microunits,
                    "reason": h.reason,
                    "message": h.message,
                }
                for h in self.held
            ],
            "pain001": self.pain001_path.name if self.pain001_path else None,
            "csv": self.csv_path.name if self.csv_path else None,
        }


@dataclass(frozen=True)
class _Payable:
    id: int
    handle: str
    verified_at: str | None
    balance_microunits: int


@dataclass
class _Plan:
    items: list[PayoutPlanItem] = field(default_factory=list)
    instructions: list[PayoutInstruction] = field(default_factory=list)
    held: list[HeldPayee] = field(default_factory=list)
    below: int = 0
    missing: int = 0

    def result(
        self, batch_id: str, status: str, currency: str, pain_path: Path | None, csv_path: Path | None
    ) -> PayoutBatchResult:
        total = sum(p.amount_microunits for p in self.items)
        return PayoutBatchResult(
            batch_id,
            status,
            currency,
            tuple(self.items),
            total,
            self.below,
            self.missing,
            pain_path,
            csv_path,
            tuple(self.held),
        )


def _e2e(batch_id: str, person_id: int) -> str:
    return "EC" + hashlib.sha256(f"{batch_id}/{person_id}".encode()).hexdigest()[:30].upper()


def _request_sha256(currency: str, threshold_microunits: int, debtor: Debtor, execution_date: dt.date) -> str:
    """What makes two requests for one batch id the same request (see ``create_payout_batch``)."""
    if not isinstance(debtor, Debtor):
        raise ValidationError(f"debtor must be a Debtor, got {type(debtor).__name__}")
    if not isinstance(execution_date, dt.date) or isinstance(execution_date, dt.datetime):
        raise ValidationError("execution_date must be a datetime.date (a day, without a time)")
    if isinstance(threshold_microunits, bool) or not isinstance(threshold_microunits, int):
        raise ValidationError(f"threshold_microunits must be an int, got {type(threshold_microunits).__name__}")
    try:
        iban, bic = normalize_iban(debtor.iban), normalize_bic(debtor.bic)
    except ValidationError as exc:
        raise ValidationError(f"debtor account: {exc}") from exc
    request = {
        "currency": check_currency(currency),
        "threshold_microunits": str(threshold_microunits),
        "debtor": [debtor.name, iban, bic],
        "execution_date": execution_date.isoformat(),
    }
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()


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
    """Pay every verified person whose payable balance is at least the threshold and who has an IBAN.

    Idempotent by ``batch_id``. The request's content is ``currency``, ``threshold_microunits``,
    ``debtor`` (name, IBAN and BIC, normalized) and ``execution_date`` (the agreement enters as its
    currency and threshold). The same id with the same content answers "exists" with the recorded items
    (the items come from the balances when the batch was created, so money accrued since waits for the
    next batch); with other content it is a ``ConflictError`` and nothing changes.

    A payee the bank file cannot carry (a balance above the SEPA maximum, an IBAN outside SEPA, a batch
    already full) is left out with its reason in ``held``; everybody else is paid, and the held payee's
    balance stays payable, exactly, for a later batch.
    """
    if not isinstance(batch_id, str) or MESSAGE_ID_PATTERN.fullmatch(batch_id) is None:
        raise ValidationError(
            f"payout batch id {batch_id!r} must be a pain.001 message id: 1-35 letters, digits or '-'"
        )
    request_sha256 = _request_sha256(currency, threshold_microunits, debtor, execution_date)
    # Bank files are written to a staging folder and moved into payouts/<batch id> only after the
    # transaction that moves the money has committed: a file an operator can pick up always has its
    # ledger transfer, and a failed attempt leaves nothing a bank could be sent.
    out_dir = store.data_dir / "payouts" / batch_id
    staging = store.data_dir / "payouts" / ".staging" / batch_id
    with store.write() as conn:
        prior = _prior_batch(conn, batch_id, currency, request_sha256)
        if prior is not None:
            _publish(staging, out_dir)  # a crash between commit and publishing is finished here
            return prior
        plan = _plan(conn, batch_id, currency, threshold_microunits)
        if dry_run or not plan.items:
            return plan.result(batch_id, "dry_run" if dry_run else "empty", currency, None, None)
        pain_path, csv_path = _record(
            conn, batch_id, currency, plan, debtor, execution_date, request_sha256, staging, out_dir
        )
    _publish(staging, out_dir)
    return plan.result(batch_id, "created", currency, pain_path, csv_path)


def pay_out(
    store: Store,
    *,
    batch_id: str,
    agreement_id: str,
    debtor: Debtor,
    execution_date: dt.date | None = None,
    dry_run: bool = False,
) -> PayoutBatchResult:
    """``create_payout_batch`` under an agreement's newest version (its currency and payout threshold),
    executed on ``execution_date`` (default: today, UTC): the one path of ``endcredits payouts create``
    and ``POST /api/v1/payout-batches``. A retry on another day must name the first day's date."""
    with store.read() as conn:
        agreement = load_agreement(conn, agreement_id)
    return create_payout_batch(
        store,
        batch_id=batch_id,
        currency=agreement.currency,
        threshold_microunits=agreement.payout_threshold_microunits,
        debtor=debtor,
        execution_date=execution_date or dt.datetime.now(dt.UTC).date(),
        dry_run=dry_run,
    )


def _prior_batch(conn: Connection, batch_id: str, currency: str, request_sha256: str) -> PayoutBatchResult | None:
    """The recorded batch ``batch_id`` when this request is the one that made it; ``ConflictError`` when
    it was made by another request; None when there is no such batch."""
    prior = conn.execute(select(payout_batches).where(payout_batches.c.id == batch_id)).first()
    if prior is None:
        return None
    # Batches recorded before requests were fingerprinted carry no request_sha256: only the currency is known.
    recorded = load_transfer(conn, f"payout/{batch_id}").memo.get("request_sha256")
    if prior.currency != currency or (recorded is not None and recorded != request_sha256):
        raise ConflictError(
            f"payout batch {batch_id} was already created with other content (currency, threshold, debtor "
            "or execution date); use a new batch id"
        )
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


def _payables(conn: Connection, currency: str) -> list[_Payable]:
    """Every person with a payable balance in ``currency``, as of now (accrual segments not yet folded
    included; posting the payout folds them first)."""
    owed: dict[int, int] = {}
    for key, balance in account_balances(conn, kind="payable", currency=currency).items():
        holder = parse_account_key(key)[1] or ""
        if holder.startswith("person:"):
            owed[int(holder.removeprefix("person:"))] = balance
    return [
        _Payable(pid, handle, verified_at, owed[pid])
        for pid, handle, verified_at in people_verification(conn, list(owed))
    ]


def _plan(conn: Connection, batch_id: str, currency: str, threshold_microunits: int) -> _Plan:
    """Who is paid how much, who waits below the threshold, who has no bank details and who is held."""
    rows = _payables(conn, currency)
    plan = _Plan()
    sepa = currency == "EUR"  # pain.001 here is the SEPA credit transfer (EUR only); others get the CSV alone
    # Only the payable people's details are opened, and only here, where the bank file needs them.
    accounts_on_file = with_payout_account(conn, [r.id for r in rows])
    details = private_of(conn, accounts_on_file) if accounts_on_file else {}
    for r in sorted(rows, key=lambda r: r.id):
        _minor, dust = to_minor_units(r.balance_microunits, currency)
        amount = r.balance_microunits - dust  # whole minor units; the dust stays on the balance
        if r.verified_at is None:
            continue  # not yet verified: their money waits in escrow, not here
        if amount <= 0 or amount < threshold_microunits:
            plan.below += 1 if r.balance_microunits > 0 else 0
            continue
        bank = details.get(r.id)
        if bank is None or not bank.iban:
            plan.missing += 1
            continue
        e2e = _e2e(batch_id, r.id)
        instruction = PayoutInstruction(
            end_to_end_id=e2e,
            payee_id=f"person:{r.id}",
            payee_name=r.handle,
            iban=bank.iban,
            bic=bank.bic,
            amount_microunits=amount,
            currency=currency,
            remittance=f"endcredits residuals {batch_id}",
        )
        held = _hold(r, instruction, sepa=sepa, planned=len(plan.items))
        if held is not None:
            plan.held.append(held)
            continue
        plan.items.append(PayoutPlanItem(r.id, r.handle, amount, e2e))
        plan.instructions.append(instruction)
    return plan


def _hold(payee: _Payable, instruction: PayoutInstruction, *, sepa: bool, planned: int) -> HeldPayee | None:
    """Why ``instruction`` cannot go in this batch's files, or None when it can."""
    minor, _dust = to_minor_units(instruction.amount_microunits, instruction.currency)
    if planned >= PAYOUT_INSTRUCTIONS_PER_FILE_MAX:
        reason = HOLD_BATCH_FULL
        message = (
            f"the batch already holds PAYOUT_INSTRUCTIONS_PER_FILE_MAX={PAYOUT_INSTRUCTIONS_PER_FILE_MAX} transfers"
        )
    elif sepa and minor > SEPA_AMOUNT_CENTS_MAX:
        reason = HOLD_ABOVE_SEPA_MAXIMUM
        message = (
            f"{format_amount(instruction.amount_microunits, instruction.currency)} EUR is above the SEPA maximum "
            f"of {format_amount(SEPA_AMOUNT_CENTS_MAX * 10**6, 'EUR')} EUR per transfer: pay it by another rail"
        )
    else:
        try:
            check_instruction(instruction, sepa=sepa)
            return None
        except ValidationError as exc:
            reason, message = HOLD_BANK_FILE_REFUSED, str(exc)
    return HeldPayee(payee.id, payee.handle, payee.balance_microunits, reason, message)


def _record(
    conn: Connection,
    batch_id: str,
    currency: str,
    plan: _Plan,
    debtor: Debtor,
    execution_date: dt.date,
    request_sha256: str,
    staging: Path,
    out_dir: Path,
) -> tuple[Path | None, Path]:
    """Write the files to staging and record the batch: the transfer, the rows and the audit entry."""
    at = utc_now()
    total = sum(p.amount_microunits for p in plan.items)
    pain = (
        write_pain001(
            plan.instructions,
            message_id=batch_id,
            debtor=debtor,
            execution_date=execution_date,
            created_at=dt.datetime.fromisoformat(at),
        )
        if currency == "EUR"
        else None
    )
    csv_bytes = write_payout_csv(plan.instructions, batch_id=batch_id)
    legs = {account_key("payable", currency, f"person:{p.person_id}"): -p.amount_microunits for p in plan.items}
    legs[account_key("clearing", currency, "payouts")] = total
    memo = {"batch": batch_id, "request_sha256": request_sha256}
    post_transfer(conn, TransferRequest(f"payout/{batch_id}", "payout_sent", currency, legs, memo=memo), at=at)
    if out_dir.exists():
        raise ConflictError(f"{out_dir} exists but no payout batch {batch_id} was recorded: move it aside and retry")
    # No batch row and the write lock held: anything staged for this id is from an attempt that never
    # committed, and was never where an operator could take it.
    shutil.rmtree(staging, ignore_errors=True)
    private_dir(staging)  # the files hold plaintext IBANs: 0600 files in 0700 folders
    pain_path: Path | None = out_dir / "pain001.xml" if pain is not None else None
    csv_path = out_dir / "payouts.csv"
    if pain is not None:
        write_private(staging / "pain001.xml", pain)
    write_private(staging / "payouts.csv", csv_bytes)
    _insert_batch(conn, batch_id, currency, plan, pain_path, csv_path, at)
    audit = {
        "items": len(plan.items),
        "total": str(total),
        "held": len(plan.held),
        "csv_sha256": hashlib.sha256(csv_bytes).hexdigest(),
        "pain001_sha256": hashlib.sha256(pain).hexdigest() if pain is not None else None,
    }
    append_audit(conn, "payout.created", batch_id, audit, at=at)
    return pain_path, csv_path


def _insert_batch(
    conn: Connection, batch_id: str, currency: str, plan: _Plan, pain_path: Path | None, csv_path: Path, at: str
) -> None:
    conn.execute(
        payout_batches.insert().values(
            id=batch_id,
            currency=currency,
            status="pending",
            item_count=len(plan.items),
            total_microunits=sum(p.amount_microunits for p in plan.items),
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
            for p in plan.items
        ],
    )


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
