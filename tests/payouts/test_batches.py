"""Payout batches on both backends: whole cents at or above the threshold leave, dust and small balances
stay, the files add up, bank statuses settle or return the money, and verify passes at every step."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import stat
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from endcredits.errors import ConflictError, NotFoundError, ValidationError
from endcredits.ledger import TransferRequest
from endcredits.ledger.records import post_transfer
from endcredits.ledger.verify import verify
from endcredits.money import parse_amount
from endcredits.payouts import batches
from endcredits.payouts.batches import (
    HOLD_ABOVE_SEPA_MAXIMUM,
    HOLD_BANK_FILE_REFUSED,
    HOLD_BATCH_FULL,
    apply_payout_status,
    create_payout_batch,
)
from endcredits.payouts.files import PAIN001_SCHEMA, SEPA_AMOUNT_CENTS_MAX, Debtor
from endcredits.payouts.iban import make_test_iban
from endcredits.store.engine import Store, init_store
from helpers_money import balances, people, row_counts

DEBTOR = Debtor(name="Endcredits Residuals Trust", iban=make_test_iban("NL", 0), bic="ABNANL2A")
DAY = dt.date(2026, 2, 2)
THRESHOLD = 10 * 10**8  # 10.00 EUR
NS = {"p": f"urn:iso:std:iso:20022:tech:xsd:{PAIN001_SCHEMA}"}


def payable(pid: int) -> str:
    return f"payable:person:{pid}:EUR"


def credit(store: Store, event_id: str, amounts: dict[int, int]) -> None:
    legs = {payable(p): a for p, a in amounts.items()}
    legs["pool:EUR"] = -sum(amounts.values())
    with store.write() as conn:
        post_transfer(conn, TransferRequest(event_id, "accrual", "EUR", legs))


def pay(store: Store, batch_id: str, *, dry_run: bool = False):  # type: ignore[no-untyped-def]
    return create_payout_batch(
        store,
        batch_id=batch_id,
        currency="EUR",
        threshold_microunits=THRESHOLD,
        debtor=DEBTOR,
        execution_date=DAY,
        dry_run=dry_run,
    )


@pytest.fixture
def payees(store: Store) -> dict[str, int]:
    """dusty: 12.34567891 EUR; exact: 10.00; small: 9.99999999; no-iban: 25.50 without a bank account."""
    ids = {}
    for i, handle in enumerate(("dusty", "exact", "small")):
        (ids[handle],) = people(store, handle, iban=make_test_iban("DE", i + 10))
    (ids["no-iban"],) = people(store, "no-iban")
    credit(
        store,
        "fund-1",
        {
            ids["dusty"]: 1_234_567_891,
            ids["exact"]: THRESHOLD,
            ids["small"]: THRESHOLD - 1,
            ids["no-iban"]: 2_550_000_000,
        },
    )
    return ids


def test_only_whole_cents_of_balances_at_the_threshold_are_paid(store: Store, payees: dict[str, int]) -> None:
    before = row_counts(store)
    dry = pay(store, "pay-2026-01", dry_run=True)
    assert dry.status == "dry_run" and dry.pain001_path is None
    assert row_counts(store) == before and not (store.data_dir / "payouts").exists()

    result = pay(store, "pay-2026-01")
    assert result.status == "created"
    assert [(i.person_id, i.amount_microunits) for i in result.items] == [
        (payees["dusty"], 1_234_000_000),
        (payees["exact"], THRESHOLD),
    ]
    assert [(i.person_id, i.amount_microunits) for i in dry.items] == [
        (i.person_id, i.amount_microunits) for i in result.items
    ]
    assert result.total_microunits == dry.total_microunits == 2_234_000_000
    assert (result.below_threshold, result.missing_bank_details) == (1, 1)
    b = balances(store)
    assert b[payable(payees["dusty"])] == 567_891  # the sub-cent dust stays
    assert b[payable(payees["exact"])] == 0
    assert b[payable(payees["small"])] == THRESHOLD - 1  # carries forward to the next batch
    assert b[payable(payees["no-iban"])] == 2_550_000_000
    assert b["clearing:payouts:EUR"] == 2_234_000_000

    # The files: a pain.001 whose control sum and transactions match, and a CSV that adds up.
    assert result.pain001_path is not None and result.csv_path is not None
    assert result.pain001_path.is_file()
    root = ET.fromstring(result.pain001_path.read_bytes())
    assert root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", namespaces=NS) == "2"
    assert root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", namespaces=NS) == "22.34"
    amounts = [a.text for a in root.iterfind(".//p:CdtTrfTxInf/p:Amt/p:InstdAmt", NS)]
    assert amounts == ["12.34", "10.00"]
    rows = list(csv.DictReader(io.StringIO(result.csv_path.read_text(encoding="utf-8"))))
    assert len(rows) == 2
    assert sum(parse_amount(r["amount"], "EUR") for r in rows) == result.total_microunits
    assert {r["end_to_end_id"] for r in rows} == {i.end_to_end_id for i in result.items}
    report = verify(store)
    assert report.ok, report.problems

    # The same batch id again is the same batch.
    written = row_counts(store)
    again = pay(store, "pay-2026-01")
    assert again.status == "exists" and again.total_microunits == result.total_microunits
    assert row_counts(store) == written


def test_settled_items_reach_the_bank_and_failed_items_come_back(store: Store, payees: dict[str, int]) -> None:
    result = pay(store, "pay-1")
    e2e = {i.person_id: i.end_to_end_id for i in result.items}
    settled, failed = e2e[payees["dusty"]], e2e[payees["exact"]]

    first = apply_payout_status(store, "pay-1", {settled: "settled"})
    assert (first.settled, first.failed, first.batch_status) == (1, 0, "pending")
    b = balances(store)
    assert b["bank:payouts:EUR"] == 1_234_000_000 and b["clearing:payouts:EUR"] == THRESHOLD
    assert verify(store).ok

    second = apply_payout_status(store, "pay-1", {failed: "failed", settled: "settled"})
    assert (second.settled, second.failed, second.unchanged, second.batch_status) == (0, 1, 1, "resolved")
    b = balances(store)
    assert b["clearing:payouts:EUR"] == 0
    assert b[payable(payees["exact"])] == THRESHOLD  # back on the payee's balance
    assert b["bank:payouts:EUR"] == 1_234_000_000
    assert verify(store).ok

    # Statuses are idempotent; a resolved item never changes; unknown items and statuses are refused.
    written = row_counts(store)
    assert apply_payout_status(store, "pay-1", {failed: "failed"}).unchanged == 1
    with pytest.raises(ConflictError, match=f"payout item {failed} is already failed"):
        apply_payout_status(store, "pay-1", {failed: "settled"})
    with pytest.raises(NotFoundError, match="payout batch pay-1 has no item NOPE"):
        apply_payout_status(store, "pay-1", {"NOPE": "settled"})
    with pytest.raises(ValidationError, match="it must be settled or failed"):
        apply_payout_status(store, "pay-1", {settled: "lost"})
    with pytest.raises(NotFoundError, match="no payout batch pay-9"):
        apply_payout_status(store, "pay-9", {settled: "settled"})
    assert row_counts(store) == written

    # The returned money and a balance that has grown past the threshold go out in the next batch.
    credit(store, "fund-2", {payees["small"]: 1})
    nxt = pay(store, "pay-2")
    assert sorted((i.person_id, i.amount_microunits) for i in nxt.items) == sorted(
        [(payees["exact"], THRESHOLD), (payees["small"], THRESHOLD)]
    )
    assert balances(store)[payable(payees["dusty"])] == 567_891
    assert verify(store).ok


def test_nothing_to_pay_writes_nothing(store: Store) -> None:
    (pid,) = people(store, "poor", iban=make_test_iban("DE", 3))
    credit(store, "fund", {pid: THRESHOLD - 1})
    before = row_counts(store)
    result = pay(store, "pay-empty")
    assert (result.status, result.items, result.below_threshold) == ("empty", (), 1)
    assert row_counts(store) == before


@pytest.mark.parametrize("batch_id", ["pay_2026_01", "payout-batch-for-january-2026-run-0001"])
def test_a_batch_id_that_cannot_be_a_message_id_is_refused_up_front(
    store: Store, payees: dict[str, int], batch_id: str
) -> None:
    """The batch id is the pain.001 message id: '_' or more than 35 characters would fail late or collide."""
    before = row_counts(store)
    with pytest.raises(ValidationError, match=f"payout batch id '{batch_id}' must be a pain.001 message id"):
        pay(store, batch_id)
    assert row_counts(store) == before


def test_a_payout_outside_the_euro_writes_the_csv_only(store: Store) -> None:
    (pid,) = people(store, "usd-payee", iban=make_test_iban("DE", 4))
    with store.write() as conn:
        post_transfer(
            conn,
            TransferRequest(
                "fund-usd", "accrual", "USD", {"pool:USD": -12_345_678_901, f"payable:person:{pid}:USD": 12_345_678_901}
            ),
        )
    result = create_payout_batch(
        store, batch_id="pay-usd", currency="USD", threshold_microunits=THRESHOLD, debtor=DEBTOR, execution_date=DAY
    )
    assert (result.status, result.total_microunits, result.pain001_path) == ("created", 12_345_000_000, None)
    assert result.csv_path is not None
    rows = list(csv.DictReader(io.StringIO(result.csv_path.read_text(encoding="utf-8"))))
    assert [(r["payee_id"], r["amount"], r["currency"]) for r in rows] == [(f"person:{pid}", "123.45", "USD")]
    b = balances(store)
    assert (b[f"payable:person:{pid}:USD"], b["clearing:payouts:USD"]) == (678_901, 12_345_000_000)
    assert verify(store).ok


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "change",
    [
        {"threshold_microunits": THRESHOLD + 1},
        {"currency": "USD"},
        {"debtor": Debtor(DEBTOR.name + " II", DEBTOR.iban, DEBTOR.bic)},
        {"debtor": Debtor(DEBTOR.name, make_test_iban("NL", 1), DEBTOR.bic)},
        {"execution_date": DAY + dt.timedelta(days=1)},
    ],
    ids=["threshold", "currency", "debtor-name", "debtor-iban", "date"],
)
def test_a_batch_id_reused_with_other_content_is_a_conflict(
    store: Store, payees: dict[str, int], change: dict[str, object]
) -> None:
    """Like a usage batch: the same id and request is "exists"; the same id with another request is a 409."""
    first = pay(store, "pay-2026-03")
    assert first.status == "created"
    written, on_disk = row_counts(store), files_under(store.data_dir / "payouts")
    request: dict[str, object] = {
        "batch_id": "pay-2026-03",
        "currency": "EUR",
        "threshold_microunits": THRESHOLD,
        "debtor": DEBTOR,
        "execution_date": DAY,
    }
    with pytest.raises(ConflictError, match="payout batch pay-2026-03 was already created with other content"):
        create_payout_batch(store, **{**request, **change})  # type: ignore[arg-type]
    with pytest.raises(ConflictError, match="already created with other content"):
        create_payout_batch(store, **{**request, **change}, dry_run=True)  # type: ignore[arg-type]
    assert row_counts(store) == written and files_under(store.data_dir / "payouts") == on_disk

    # The same request, even after more money accrued, is the batch already made: the new money waits.
    credit(store, "fund-later", {payees["small"]: THRESHOLD})
    again = create_payout_batch(store, **request)  # type: ignore[arg-type]
    assert (again.status, again.items, again.total_microunits) == (
        "exists",
        tuple(replace(i, handle="") for i in first.items),
        first.total_microunits,
    )
    assert balances(store)[payable(payees["small"])] == 2 * THRESHOLD - 1


SEPA_MAX_MICROUNITS = SEPA_AMOUNT_CENTS_MAX * 10**6


@pytest.mark.parametrize("above", [10**6, 10**6 + 123, 10**12 * 10**8])
def test_a_balance_above_the_sepa_maximum_is_held_and_the_others_are_paid(
    store: Store, payees: dict[str, int], above: int
) -> None:
    """Policy (docs/concepts/payouts.md): that payee waits for another rail, with the reason in the result;
    the whole balance, dust included, stays payable; everybody else is paid."""
    (whale,) = people(store, "whale", iban=make_test_iban("DE", 99))
    credit(store, "fund-big", {whale: SEPA_MAX_MICROUNITS + above})
    dry = pay(store, "pay-big", dry_run=True)
    result = pay(store, "pay-big")
    for r in (dry, result):
        assert [(i.person_id, i.amount_microunits) for i in r.items] == [
            (payees["dusty"], 1_234_000_000),
            (payees["exact"], THRESHOLD),
        ]
        assert [(h.person_id, h.handle, h.balance_microunits, h.reason) for h in r.held] == [
            (whale, "whale", SEPA_MAX_MICROUNITS + above, HOLD_ABOVE_SEPA_MAXIMUM)
        ]
        assert "above the SEPA maximum of 999999999.99 EUR" in r.held[0].message
    assert balances(store)[payable(whale)] == SEPA_MAX_MICROUNITS + above
    assert result.pain001_path is not None and b"whale" not in result.pain001_path.read_bytes()
    assert verify(store).ok


def test_exactly_the_sepa_maximum_is_paid(store: Store) -> None:
    (pid,) = people(store, "edge", iban=make_test_iban("DE", 98))
    credit(store, "fund-edge", {pid: SEPA_MAX_MICROUNITS + 999_999})  # the dust below a cent stays
    result = pay(store, "pay-edge")
    assert ([i.amount_microunits for i in result.items], result.held) == ([SEPA_MAX_MICROUNITS], ())
    assert balances(store)[payable(pid)] == 999_999


def test_an_iban_outside_sepa_is_held_in_euro_and_paid_by_csv_in_another_currency(store: Store) -> None:
    (home, away) = (
        people(store, "home", iban=make_test_iban("DE", 5))[0],
        people(store, "away", iban=make_test_iban("BR", 5))[0],
    )
    credit(store, "fund-sepa", {home: THRESHOLD, away: THRESHOLD})
    result = pay(store, "pay-sepa")
    assert [i.person_id for i in result.items] == [home]
    assert [(h.person_id, h.reason) for h in result.held] == [(away, HOLD_BANK_FILE_REFUSED)]
    assert "outside SEPA" in result.held[0].message
    assert balances(store)[payable(away)] == THRESHOLD


def test_payout_files_are_private_whatever_the_umask(tmp_path: Path, db_url: str | None) -> None:
    """pain.001 and the CSV carry plaintext IBANs: 0600 files in 0700 folders, even under umask 000."""
    old = os.umask(0)
    try:
        store = init_store(tmp_path / "data", db_url)
        try:
            (pid,) = people(store, "payee", iban=make_test_iban("DE", 6))
            credit(store, "fund", {pid: THRESHOLD})
            result = pay(store, "pay-private")
        finally:
            store.dispose()
    finally:
        os.umask(old)
    assert result.pain001_path is not None and result.csv_path is not None
    for folder in (store.data_dir, store.data_dir / "payouts", store.data_dir / "payouts" / ".staging"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(result.pain001_path.parent.stat().st_mode) == 0o700
    for path in (result.pain001_path, result.csv_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_payees_beyond_one_file_are_held_for_the_next_batch(
    store: Store, payees: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "PAYOUT_INSTRUCTIONS_PER_FILE_MAX", 1)
    first = pay(store, "pay-full-1")
    assert [i.person_id for i in first.items] == [payees["dusty"]]
    assert [(h.person_id, h.reason) for h in first.held] == [(payees["exact"], HOLD_BATCH_FULL)]
    assert balances(store)[payable(payees["exact"])] == THRESHOLD
    second = pay(store, "pay-full-2")
    assert ([i.person_id for i in second.items], second.held) == ([payees["exact"]], ())
    assert verify(store).ok


def test_pay_out_takes_the_agreements_currency_and_threshold(store: Store, payees: dict[str, int]) -> None:
    """``pay_out`` is the edges' path: the newest agreement version gives the currency and the threshold."""
    from endcredits.payouts.batches import pay_out
    from endcredits.royalties import parse_agreement
    from endcredits.royalties.records import save_agreement
    from helpers_money import agreement_text

    with store.write() as conn:
        for version, threshold in ((1, "10.00"), (2, "12.00")):
            a = parse_agreement(agreement_text(payout_threshold=threshold, version=version))
            save_agreement(conn, a.id, a.version, a.body, a.body_sha256)
    r = pay_out(store, batch_id="edges-1", agreement_id="test-2026", debtor=DEBTOR, execution_date=DAY)
    assert r.currency == "EUR"
    assert [i.person_id for i in r.items] == [payees["dusty"]]  # 12.00 leaves exact (10.00) behind
    out = r.to_json()
    assert out["total_microunits"] == 1_234_000_000 and isinstance(out["total_microunits"], int)
    assert (out["items"], out["pain001"], out["csv"]) == (1, "pain001.xml", "payouts.csv")
    with pytest.raises(NotFoundError, match="no agreement nope"):
        pay_out(store, batch_id="edges-2", agreement_id="nope", debtor=DEBTOR, execution_date=DAY)
