"""pain.002 status reports: round trip, status inheritance, and refusal of hostile or foreign XML."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from endcredits.errors import ValidationError
from endcredits.payouts.pain002 import (
    PAIN002_WRITE_SCHEMA,
    WRITABLE_TRANSACTION_CODES,
    parse_pain002,
    read_pain002,
    write_pain002,
)

CREATED_AT = datetime.datetime(2025, 3, 4, 10, 0, tzinfo=datetime.UTC)
NS03 = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"


def _write(statuses: dict[str, str], **overrides: object) -> bytes:
    kwargs: dict[str, object] = {
        "original_message_id": "EC-PAY-2025Q1-0001",
        "message_id": "BANK-STS-0001",
        "created_at": CREATED_AT,
    }
    kwargs.update(overrides)
    return write_pain002(statuses, **kwargs)  # type: ignore[arg-type]


def _report(body: str, ns: str = NS03) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{ns}"><CstmrPmtStsRpt>'
        "<GrpHdr><MsgId>STS-1</MsgId><CreDtTm>2025-03-04T10:00:00</CreDtTm></GrpHdr>"
        f"{body}</CstmrPmtStsRpt></Document>"
    ).encode()


def _tx(e2e: str, status: str | None = None) -> str:
    own = f"<TxSts>{status}</TxSts>" if status else ""
    return f"<TxInfAndSts><OrgnlEndToEndId>{e2e}</OrgnlEndToEndId>{own}</TxInfAndSts>"


def test_round_trip_maps_final_codes_and_leaves_pending_out() -> None:
    statuses = {"E2E-3": "ACSP", "E2E-1": "ACSC", "E2E-2": "RJCT", "E2E-4": "PDNG", "E2E-5": "ACTC"}
    document = _write(statuses)
    assert parse_pain002(document) == {"E2E-1": "settled", "E2E-2": "failed", "E2E-3": "settled"}
    report = read_pain002(document)
    assert report.message_id == "BANK-STS-0001"
    assert report.original_message_id == "EC-PAY-2025Q1-0001"
    assert report.group_status == "PART"
    assert report.transaction_codes == statuses


def test_written_report_has_the_expected_shape() -> None:
    root = ET.fromstring(_write({"B": "RJCT", "A": "ACSC"}))
    assert root.tag == f"{{{NS03}}}Document"
    ns = {"p": NS03}
    assert root.findtext("p:CstmrPmtStsRpt/p:GrpHdr/p:CreDtTm", namespaces=ns) == "2025-03-04T10:00:00Z"
    assert root.findtext(".//p:OrgnlGrpInfAndSts/p:OrgnlNbOfTxs", namespaces=ns) == "2"
    assert root.findtext(".//p:OrgnlPmtInfAndSts/p:OrgnlPmtInfId", namespaces=ns) == "EC-PAY-2025Q1-0001"
    ids = [e.text for e in root.iterfind(".//p:TxInfAndSts/p:OrgnlEndToEndId", ns)]
    assert ids == ["A", "B"]
    assert root.findtext(".//p:TxInfAndSts[p:TxSts='RJCT']/p:StsRsnInf/p:Rsn/p:Cd", namespaces=ns) == "MS03"
    assert PAIN002_WRITE_SCHEMA == "pain.002.001.03"


def test_uniform_statuses_give_that_group_status() -> None:
    assert read_pain002(_write({"A": "ACSC", "B": "ACSC"})).group_status == "ACSC"
    assert read_pain002(_write({"A": "RJCT"})).group_status == "RJCT"


def test_written_bytes_do_not_depend_on_mapping_order() -> None:
    assert _write({"A": "ACSC", "B": "RJCT"}) == _write({"B": "RJCT", "A": "ACSC"})


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z0-9-]{1,35}", fullmatch=True),
        st.sampled_from(sorted(WRITABLE_TRANSACTION_CODES)),
        min_size=1,
        max_size=30,
    )
)
def test_any_written_report_reads_back(statuses: dict[str, str]) -> None:
    document = _write(statuses)
    assert read_pain002(document).transaction_codes == statuses
    expected = {
        e: ("failed" if c == "RJCT" else "settled") for e, c in statuses.items() if c in {"ACSC", "ACSP", "RJCT"}
    }
    assert parse_pain002(document) == expected


def test_group_status_applies_to_transactions_without_their_own() -> None:
    body = (
        "<OrgnlGrpInfAndSts><OrgnlMsgId>EC-1</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.11</OrgnlMsgNmId>"
        "<GrpSts>ACSC</GrpSts></OrgnlGrpInfAndSts>"
        f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>EC-1</OrgnlPmtInfId>{_tx('A')}{_tx('B', 'RJCT')}{_tx('C', 'ACCC')}"
        "</OrgnlPmtInfAndSts>"
    )
    assert parse_pain002(_report(body)) == {"A": "settled", "B": "failed", "C": "settled"}


def test_payment_information_status_comes_before_group_status() -> None:
    body = (
        "<OrgnlGrpInfAndSts><OrgnlMsgId>EC-1</OrgnlMsgId><OrgnlMsgNmId>x</OrgnlMsgNmId>"
        "<GrpSts>ACSC</GrpSts></OrgnlGrpInfAndSts>"
        f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>P1</OrgnlPmtInfId><PmtInfSts>RJCT</PmtInfSts>{_tx('A')}</OrgnlPmtInfAndSts>"
        f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>P2</OrgnlPmtInfId>{_tx('B')}{_tx('C', 'CANC')}</OrgnlPmtInfAndSts>"
    )
    assert parse_pain002(_report(body)) == {"A": "failed", "B": "settled", "C": "failed"}


def test_group_only_report_names_no_transaction() -> None:
    body = (
        "<OrgnlGrpInfAndSts><OrgnlMsgId>EC-1</OrgnlMsgId><OrgnlMsgNmId>x</OrgnlMsgNmId>"
        "<GrpSts>RJCT</GrpSts></OrgnlGrpInfAndSts>"
    )
    assert parse_pain002(_report(body)) == {}
    report = read_pain002(_report(body))
    assert (report.original_message_id, report.group_status) == ("EC-1", "RJCT")


def test_version_10_is_read() -> None:
    body = (
        "<OrgnlGrpInfAndSts><OrgnlMsgId>EC-1</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>"
        f"</OrgnlGrpInfAndSts><OrgnlPmtInfAndSts><OrgnlPmtInfId>P</OrgnlPmtInfId>{_tx('A', 'ACCC')}</OrgnlPmtInfAndSts>"
    )
    assert parse_pain002(_report(body, ns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10")) == {"A": "settled"}


def test_stdlib_expands_internal_entities_which_is_why_dtds_are_refused() -> None:
    # The reason for the custom parser: xml.etree expands entities declared in an internal DTD subset.
    expanded = ET.fromstring('<!DOCTYPE a [<!ENTITY x "expanded">]><a>&x;</a>')
    assert expanded.text == "expanded"


_OK_BODY = (
    "<OrgnlGrpInfAndSts><OrgnlMsgId>EC-1</OrgnlMsgId><OrgnlMsgNmId>x</OrgnlMsgNmId></OrgnlGrpInfAndSts>"
    f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>P</OrgnlPmtInfId>{_tx('A', 'ACSC')}</OrgnlPmtInfAndSts>"
)
_LAUGHS = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY x "ACSC">]>'
            + _report(_OK_BODY.replace("ACSC", "&x;")).split(b"?>", 1)[1],
            "has a DOCTYPE",
        ),
        (f'<!DOCTYPE d [<!ENTITY l0 "lol">{_LAUGHS}]><d>&l9;</d>'.encode(), "has a DOCTYPE"),
        (b'<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><d>&e;</d>', "has a DOCTYPE"),
        (b'<!DOCTYPE d SYSTEM "http://example.invalid/d.dtd"><d/>', "has a DOCTYPE"),
        (b"<d>&e;</d>", "not well-formed XML: undefined entity"),
        (_report(_OK_BODY)[:-20], "not well-formed XML"),
        (b"", "not well-formed XML"),
        (b"\xff\xfe<garbage", "not well-formed XML"),
        (_report(_OK_BODY, ns="urn:example:other"), "not a pain.002 status report"),
        (_report(_OK_BODY, ns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.11"), "not a pain.002 status report"),
        (_report(_OK_BODY, ns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.99"), "not a pain.002 status report"),
        (_report(_OK_BODY).replace(b' xmlns="' + NS03.encode() + b'"', b""), "not a pain.002 status report"),
        (_report(_OK_BODY).replace(b"CstmrPmtStsRpt", b"Other"), "no CstmrPmtStsRpt"),
        (_report(_OK_BODY.replace("<OrgnlMsgId>EC-1</OrgnlMsgId>", "")), "lacks GrpHdr/MsgId or OrgnlGrpInfAndSts"),
        (_report(_OK_BODY.replace("ACSC", "DONE")), "unknown status code 'DONE' in TxSts"),
        (_report(_OK_BODY.replace("<OrgnlEndToEndId>A</OrgnlEndToEndId>", "")), "has no OrgnlEndToEndId"),
        (_report(_OK_BODY.replace("<TxSts>ACSC</TxSts>", "")), "has no TxSts, PmtInfSts or GrpSts"),
        (_report(_OK_BODY.replace(_tx("A", "ACSC"), _tx("A", "ACSC") + _tx("A", "RJCT"))), "two statuses"),
        ("<Document/>", "must be bytes"),
    ],
)
def test_unusable_input_raises_one_line_validation_error(data: bytes, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        parse_pain002(data)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("statuses", "overrides", "match"),
    [
        ({}, {}, "statuses is empty"),
        ({"A": "ACCC"}, {}, "not a pain.002.001.03 transaction status .* use ACSC"),
        ({"A": "settled"}, {}, "'settled' for A is not a pain.002.001.03 transaction status"),
        ({"A B": "ACSC"}, {}, "EndToEndId 'A B'"),
        ({"A": "ACSC"}, {"message_id": ""}, "message_id ''"),
        ({"A": "ACSC"}, {"original_message_id": "x" * 36}, "original_message_id"),
        ({"A": "ACSC"}, {"created_at": datetime.datetime(2025, 3, 4)}, "timezone-aware"),
    ],
)
def test_write_refuses_bad_arguments(statuses: dict[str, str], overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        _write(statuses, **overrides)
