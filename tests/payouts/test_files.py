"""Payout files: pain.001 checked by an independent XSD validation and by reading it back; CSV; goldens."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import difflib
import io
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sepaxml
import xmlschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from endcredits.errors import ValidationError
from endcredits.money import format_amount, parse_amount
from endcredits.payouts.files import (
    CSV_COLUMNS,
    PAIN001_SCHEMA,
    Debtor,
    PayoutInstruction,
    pain001_xsd_path,
    to_sepa_text,
    write_pain001,
    write_payout_csv,
)
from endcredits.payouts.iban import make_test_iban

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "payouts"
NS = {"p": f"urn:iso:std:iso:20022:tech:xsd:{PAIN001_SCHEMA}"}
CENT = 10**6  # microunits in one euro cent
SEPA_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-?:().,'+ ")

DEBTOR = Debtor(name="Endcredits Residuals Trust & Co.", iban=make_test_iban("NL", 0), bic="ABNANL2A")
EXECUTION_DATE = datetime.date(2025, 3, 3)
CREATED_AT = datetime.datetime(2025, 3, 1, 9, 30, 15, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))


def _instruction(index: int, **changes: object) -> PayoutInstruction:
    base = PayoutInstruction(
        end_to_end_id=f"EC-2025Q1-{index:05d}",
        payee_id=f"person:{index}",
        payee_name=f"Payee {index}",
        iban=make_test_iban("DE", index),
        bic=None,
        amount_microunits=(index + 1) * 123 * CENT,
        currency="EUR",
        remittance=f"endcredits residuals 2025-Q1 statement {index}",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


SMALL_BATCH = [
    _instruction(1, payee_name="Ó Riada", bic="COBADEFFXXX", amount_microunits=1 * CENT),
    _instruction(2, payee_name="Müller, Jürgen", iban=make_test_iban("FR", 2), amount_microunits=1_234_567 * CENT),
    _instruction(3, payee_name="O'Neill 🎬", remittance="Straße – “Grip” & gaffer; see statement 3"),
    _instruction(4, payee_name="<script>alert('x')</script>", iban=make_test_iban("IE", 4), bic="AIBKIE2D"),
    _instruction(5, payee_name='=HYPERLINK("http://evil")', amount_microunits=99_999_999_999 * CENT),
]


def _pain001(batch: list[PayoutInstruction], **overrides: object) -> bytes:
    kwargs: dict[str, object] = {
        "message_id": "EC-PAY-2025Q1-0001",
        "debtor": DEBTOR,
        "execution_date": EXECUTION_DATE,
        "created_at": CREATED_AT,
    }
    kwargs.update(overrides)
    return write_pain001(batch, **kwargs)  # type: ignore[arg-type]


def _lines(data: bytes) -> list[str]:
    """One line per XML tag (the pain.001 is a single line), so that a diff shows what changed."""
    return data.replace(b"><", b">\n<").decode("utf-8", "replace").splitlines()


def _check_golden(name: str, data: bytes) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("ENDCREDITS_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if not path.exists():
        pytest.fail(f"golden file {path} is missing: run with ENDCREDITS_REGEN_GOLDEN=1 to create it, then review it")
    expected = path.read_bytes()
    if data != expected:
        diff = "\n".join(
            difflib.unified_diff(
                _lines(expected),
                _lines(data),
                "golden",
                "now",
                lineterm="",
            )
        )
        pytest.fail(f"{name} differs from its golden file (ENDCREDITS_REGEN_GOLDEN=1 to accept):\n{diff[:4000]}")


def _independent_schema() -> xmlschema.XMLSchema:
    path = Path(sepaxml.__file__).parent / "schemas" / f"{PAIN001_SCHEMA}.xsd"
    assert path.resolve() == pain001_xsd_path().resolve()
    return xmlschema.XMLSchema(str(path))


def _read_back(document: bytes, batch: list[PayoutInstruction]) -> ET.Element:
    """Everything a bank would check against what we meant to pay."""
    root = ET.fromstring(document)  # our own output: no DTD to worry about
    assert root.tag == f"{{{NS['p']}}}Document"
    header = root.find("p:CstmrCdtTrfInitn/p:GrpHdr", NS)
    assert header is not None
    assert header.findtext("p:NbOfTxs", namespaces=NS) == str(len(batch))
    ctrl_sum = header.findtext("p:CtrlSum", namespaces=NS)
    assert ctrl_sum is not None
    assert parse_amount(ctrl_sum, "EUR") == sum(i.amount_microunits for i in batch)
    blocks = root.findall("p:CstmrCdtTrfInitn/p:PmtInf", NS)
    assert len(blocks) == 1
    assert blocks[0].findtext("p:NbOfTxs", namespaces=NS) == str(len(batch))
    assert blocks[0].findtext("p:CtrlSum", namespaces=NS) == ctrl_sum
    transfers = blocks[0].findall("p:CdtTrfTxInf", NS)
    assert len(transfers) == len(batch)
    paid: dict[str, int] = {}
    for tx in transfers:
        e2e = tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS)
        amount = tx.find("p:Amt/p:InstdAmt", NS)
        assert e2e is not None and amount is not None and amount.text is not None
        assert amount.get("Ccy") == "EUR"
        paid[e2e] = parse_amount(amount.text, "EUR")
        name = tx.findtext("p:Cdtr/p:Nm", namespaces=NS)
        assert name and set(name) <= SEPA_CHARS and len(name) <= 70
        remittance = tx.findtext("p:RmtInf/p:Ustrd", namespaces=NS)
        assert remittance and set(remittance) <= SEPA_CHARS and len(remittance) <= 140
    assert paid == {i.end_to_end_id: i.amount_microunits for i in batch}
    return root


def test_small_batch_validates_independently_and_reads_back_exactly() -> None:
    document = _pain001(SMALL_BATCH)
    _independent_schema().validate(io.BytesIO(document))
    root = _read_back(document, SMALL_BATCH)
    names = [n.text for n in root.iterfind(".//p:CdtTrfTxInf/p:Cdtr/p:Nm", NS)]
    assert names == ["O Riada", "Muller, Jurgen", "O'Neill", "script alert('x') /script", "HYPERLINK('http://evil')"]
    assert b"<script" not in document
    assert root.findtext(".//p:RmtInf/p:Ustrd", namespaces=NS) == SMALL_BATCH[0].remittance
    assert root.findtext(".//p:GrpHdr/p:CreDtTm", namespaces=NS) == "2025-03-01T08:30:15Z"
    assert root.findtext(".//p:GrpHdr/p:MsgId", namespaces=NS) == "EC-PAY-2025Q1-0001"
    assert root.findtext(".//p:PmtInf/p:PmtInfId", namespaces=NS) == "EC-PAY-2025Q1-0001"
    assert root.findtext(".//p:PmtInf/p:Dbtr/p:Nm", namespaces=NS) == "Endcredits Residuals Trust + Co."


def test_small_batch_matches_golden_file() -> None:
    _check_golden("pain001_small.xml", _pain001(SMALL_BATCH))


def test_output_is_deterministic() -> None:
    assert _pain001(SMALL_BATCH) == _pain001(list(SMALL_BATCH))
    other = _pain001(SMALL_BATCH, message_id="EC-PAY-2025Q1-0002")
    assert other != _pain001(SMALL_BATCH) and b"EC-PAY-2025Q1-0002" in other


def test_bic_is_optional_and_written_when_given() -> None:
    root = ET.fromstring(_pain001(SMALL_BATCH))
    agents = [
        tx.findtext("p:CdtrAgt/p:FinInstnId/p:BICFI", namespaces=NS) for tx in root.iterfind(".//p:CdtTrfTxInf", NS)
    ]
    assert agents == ["COBADEFFXXX", None, None, "AIBKIE2D", None]


def test_long_names_are_cut_at_70_characters() -> None:
    batch = [_instruction(1, payee_name="Ab " * 60)]
    root = _read_back(_pain001(batch), batch)
    name = root.findtext(".//p:Cdtr/p:Nm", namespaces=NS)
    assert name == ("Ab " * 60).strip()[:70] and len(name) == 70


_names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=80).filter(
    lambda s: bool(s.strip()) and bool(to_sepa_text(s))
)


@given(
    rows=st.lists(
        st.tuples(_names, st.integers(1, 99_999_999_999), st.sampled_from(["DE", "FR", "IT", "NL", "MT", "GB"])),
        min_size=1,
        max_size=12,
    )
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_batch_validates_and_reads_back_exactly(rows: list[tuple[str, int, str]]) -> None:
    batch = [
        _instruction(i, payee_name=name, amount_microunits=cents * CENT, iban=make_test_iban(country, i))
        for i, (name, cents, country) in enumerate(rows)
    ]
    document = _pain001(batch)
    _independent_schema().validate(io.BytesIO(document))
    root = _read_back(document, batch)
    names = [n.text for n in root.iterfind(".//p:Cdtr/p:Nm", NS)]
    assert names == [to_sepa_text(name)[:70].rstrip() for name, _, _ in rows]


@pytest.mark.parametrize(
    ("text", "sepa"),
    [
        ("Ó Riada", "O Riada"),
        ("Müller", "Muller"),
        ("O'Neill", "O'Neill"),
        ("Straße", "Strasse"),
        ("Łódź & Søren", "Lodz + Soren"),
        ("🎬🎥", ""),
        ("山田太郎", ""),
        ("<b>bold</b>", "b bold /b"),
        ("a\u00a0\u2003b", "a b"),
        ("ﬁne", "fine"),
    ],
)
def test_to_sepa_text(text: str, sepa: str) -> None:
    assert to_sepa_text(text) == sepa


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ([], "payout batch is empty"),
        ([_instruction(1, amount_microunits=CENT + 1)], "not a whole number of minor units .* pay 0.01"),
        ([_instruction(1, amount_microunits=0)], "amount 0 microunits is not positive"),
        ([_instruction(1, amount_microunits=-5 * CENT)], "is not positive"),
        ([_instruction(1, currency="USD")], "currency USD cannot be paid by SEPA credit transfer, which is EUR only"),
        ([_instruction(1, currency="eur")], "unknown currency"),
        ([_instruction(1, iban="DE00370400440532013000")], "end_to_end_id EC-2025Q1-00001: IBAN"),
        ([_instruction(1, iban=make_test_iban("BR", 1))], "outside SEPA"),
        ([_instruction(1, bic="NOTABIC")], "BIC 'NOTABIC' is malformed"),
        (
            [_instruction(1), _instruction(2, end_to_end_id="EC-2025Q1-00001")],
            "duplicate end_to_end_id EC-2025Q1-00001",
        ),
        ([_instruction(1, end_to_end_id="EC 1")], "end_to_end_id 'EC 1'"),
        ([_instruction(1, end_to_end_id="E" * 36)], "1 to 35 characters"),
        ([_instruction(1, payee_name="🎬🎥")], "has no characters in the SEPA character set"),
        ([_instruction(1, payee_name="  ")], "payee_name of end_to_end_id EC-2025Q1-00001 is empty"),
        ([_instruction(1, payee_name="a\nb")], "control character"),
        ([_instruction(1, remittance="r" * 141)], "141 characters; at most 140"),
        ([_instruction(1, remittance="ß" * 71)], "142 characters after transliteration"),
        ([_instruction(1, amount_microunits=100_000_000_000 * CENT)], "above the SEPA maximum"),
        ([_instruction(1, amount_microunits=1.5)], "must be an int, got float"),
        (["not an instruction"], "not a PayoutInstruction"),
    ],
)
def test_bad_batches_raise_and_write_nothing(batch: list[PayoutInstruction], match: str) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        _pain001(batch)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"message_id": "has space"}, "message_id 'has space'"),
        ({"message_id": "M" * 36}, "1 to 35 characters"),
        ({"created_at": datetime.datetime(2025, 3, 1, 9, 30)}, "timezone-aware"),
        ({"execution_date": datetime.datetime(2025, 3, 3, tzinfo=datetime.UTC)}, "without a time"),
        ({"debtor": dataclasses.replace(DEBTOR, iban="NL00ABNA0417164300")}, "debtor account: IBAN"),
        ({"debtor": dataclasses.replace(DEBTOR, bic="ABN")}, "debtor account: BIC"),
        ({"debtor": dataclasses.replace(DEBTOR, iban=make_test_iban("TR", 3))}, "debtor IBAN is from TR, outside SEPA"),
        ({"debtor": dataclasses.replace(DEBTOR, name="🎬")}, "debtor name"),
    ],
)
def test_bad_file_arguments_raise(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        _pain001(SMALL_BATCH, **overrides)


def test_schema_errors_are_reported_with_the_first_error() -> None:
    from endcredits.payouts.files import _first_schema_error

    document = _pain001(SMALL_BATCH)
    assert _first_schema_error(document) is None
    tampered = document.replace(b"<NbOfTxs>5</NbOfTxs>", b"<NbOfTxs>five</NbOfTxs>", 1)
    error = _first_schema_error(tampered)
    assert error is not None and "NbOfTxs" in error


# CSV ---------------------------------------------------------------------------------------------


def _read_csv(data: bytes) -> list[dict[str, str]]:
    assert data.endswith(b"\r\n")
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_matches_golden_file() -> None:
    batch = [
        *SMALL_BATCH,
        _instruction(6, currency="JPY", amount_microunits=1500 * 10**8, iban=make_test_iban("TR", 6)),
    ]
    _check_golden("payout_small.csv", write_payout_csv(batch, batch_id="batch-2025Q1"))


def test_csv_reads_back_exactly() -> None:
    batch = [
        *SMALL_BATCH,
        _instruction(6, currency="USD", payee_name='Smith, "Ace" Jr.', amount_microunits=7 * CENT),
        _instruction(7, currency="BHD", amount_microunits=1_234 * 10**5),  # 3 minor digits: 1.234 BHD
    ]
    rows = _read_csv(write_payout_csv(batch, batch_id="batch-1"))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == len(batch)
    for row, ins in zip(rows, batch, strict=True):
        assert parse_amount(row["amount"], row["currency"]) == ins.amount_microunits
        assert row["amount"] == format_amount(ins.amount_microunits, ins.currency)
        assert row["end_to_end_id"] == ins.end_to_end_id
        assert row["iban"] == ins.iban
        assert row["bic"] == (ins.bic or "")
    assert rows[5]["payee_name"] == 'Smith, "Ace" Jr.'
    assert rows[6]["amount"] == "1.234"
    assert rows[0]["payee_name"] == "Ó Riada"  # the CSV keeps names as given


@pytest.mark.parametrize("name", ["=1+1", "+1", "-1", "@SUM(A1)", '=HYPERLINK("http://evil")'])
def test_csv_cells_that_look_like_formulas_are_quoted(name: str) -> None:
    rows = _read_csv(write_payout_csv([_instruction(1, payee_name=name, remittance=name)], batch_id="-b"))
    assert rows[0]["payee_name"] == "'" + name
    assert rows[0]["remittance"] == "'" + name
    assert rows[0]["batch_id"] == "'-b"


def test_csv_plain_names_are_untouched() -> None:
    rows = _read_csv(write_payout_csv([_instruction(1, payee_name="Anne-Marie O'Neill")], batch_id="b"))
    assert rows[0]["payee_name"] == "Anne-Marie O'Neill"


@pytest.mark.parametrize(
    ("batch", "batch_id", "match"),
    [
        ([], "b", "payout batch is empty"),
        ([_instruction(1, currency="JPY", amount_microunits=15 * 10**7)], "b", "not a whole number of minor units"),
        ([_instruction(1, amount_microunits=0)], "b", "not positive"),
        ([_instruction(1), _instruction(1)], "b", "duplicate end_to_end_id"),
        ([_instruction(1, iban="GB00NWBK60161331926819")], "b", "IBAN"),
        ([_instruction(1)], "", "batch_id of the payout CSV is empty"),
    ],
)
def test_csv_bad_batches_raise(batch: list[PayoutInstruction], batch_id: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        write_payout_csv(batch, batch_id=batch_id)
