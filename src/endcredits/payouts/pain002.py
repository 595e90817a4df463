"""Payment status reports from the bank (ISO 20022 pain.002): read them, and write them to simulate a bank.

``parse_pain002`` maps each ``OriginalEndToEndId`` to ``"settled"`` or ``"failed"``; ``read_pain002``
returns the whole report, including a group status that names no transaction. Status codes:

    settled   ACSC, ACCC, ACSP (ACSP: the bank has accepted it and settlement is under way)
    failed    RJCT, CANC
    pending   ACTC, ACCP, ACWC, ACWP, ACFC, ACIS, ACPD, PATC, PDNG, PRES, RCVD, BLCK, PART
              (not final: ``parse_pain002`` leaves such transactions out)

A transaction without its own status takes the status of its payment-information block, and failing
that the group status.

Parsing is safe against hostile input: a document with a DOCTYPE (and so with any entity
declaration) is refused before anything is expanded. This matters because the standard library does not
do it: ``xml.etree.ElementTree`` (expat 2.5.0 here) expands internal entities declared in a DTD; it does
not fetch external entities ("undefined entity" error); expat >= 2.4.1 stops exponential "billion laughs"
expansion by its amplification limit, but the expansion of smaller entities still happens.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from xml.parsers import expat

from endcredits.errors import ValidationError
from endcredits.payouts.files import END_TO_END_ID_PATTERN, MESSAGE_ID_PATTERN, PAIN001_SCHEMA

Pain002Status = Literal["settled", "failed"]

PAIN002_WRITE_SCHEMA = "pain.002.001.03"
"""The version ``write_pain002`` produces (the one the EPC SEPA implementation guidelines use)."""

PAIN002_READ_SCHEMAS = frozenset({"pain.002.001.03", "pain.002.001.10"})
"""Versions ``read_pain002`` accepts: EPC's 2019 rulebook pairs .03 with pain.001.001.03 and .10 with .09."""

PAIN002_BYTES_MAX = 64 * 1024 * 1024
"""Largest status report read."""

PAIN002_TRANSACTIONS_MAX = 1_000_000
"""Most transaction statuses in one report (read or written)."""

_NS_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"

SETTLED_CODES = frozenset({"ACSC", "ACCC", "ACSP"})
FAILED_CODES = frozenset({"RJCT", "CANC"})
PENDING_CODES = frozenset(
    {"ACTC", "ACCP", "ACWC", "ACWP", "ACFC", "ACIS", "ACPD", "PATC", "PDNG", "PRES", "RCVD", "BLCK", "PART"}
)
_KNOWN_CODES = SETTLED_CODES | FAILED_CODES | PENDING_CODES

WRITABLE_TRANSACTION_CODES = frozenset({"ACTC", "RJCT", "PDNG", "ACCP", "ACSP", "ACSC", "ACWC"})
"""Transaction status codes pain.002.001.03 allows (``TransactionIndividualStatus3Code``); no ACCC."""

REJECT_REASON_CODE = "MS03"
"""The reason ``write_pain002`` gives for a rejection: "not specified reason, agent generated"."""


@dataclass(frozen=True)
class Pain002Report:
    """One status report: its ids, the group status, and each transaction's resolved status code."""

    message_id: str
    original_message_id: str
    group_status: str | None
    transaction_codes: dict[str, str]
    """OriginalEndToEndId -> ISO status code, after applying payment-information and group status."""


def _qualified(name: str) -> str:
    uri, sep, local = name.rpartition("}")
    return f"{{{uri}}}{local}" if sep else local


def _parse_safely(data: bytes) -> ET.Element:
    """Parse XML with expat, refusing any DOCTYPE, entity declaration or external entity."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True

    def refuse_doctype(name: str, *_: object) -> None:
        raise ValidationError(f"pain.002 has a DOCTYPE ({name}); documents with a DTD or entities are refused")

    def refuse_entity(name: str, *_: object) -> None:
        raise ValidationError(f"pain.002 declares entity {name!r}; documents with entities are refused")

    def refuse_external(context: str, base: str | None, system_id: str | None, public_id: str | None) -> int:
        raise ValidationError(f"pain.002 refers to external entity {system_id!r}; documents with entities are refused")

    def start(tag: str, attrs: dict[str, str]) -> None:
        builder.start(_qualified(tag), {_qualified(k): v for k, v in attrs.items()})

    def end(tag: str) -> None:
        builder.end(_qualified(tag))

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_external
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ValidationError(
            f"pain.002 is not well-formed XML: {expat.ErrorString(exc.code)} at line {exc.lineno}, column {exc.offset}"
        ) from exc
    root: ET.Element = builder.close()
    return root


def _text(element: ET.Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _status(element: ET.Element, tag: str, ns: str, where: str) -> str | None:
    code = _text(element.find(f"{ns}{tag}"))
    if code is not None and code not in _KNOWN_CODES:
        raise ValidationError(f"pain.002 {where}: unknown status code {code!r} in {tag}; expected an ISO 20022 code")
    return code


def read_pain002(data: bytes) -> Pain002Report:
    """Read a pain.002 (``PAIN002_READ_SCHEMAS``) into a ``Pain002Report``; raise ``ValidationError`` if unusable."""
    if not isinstance(data, bytes):
        raise ValidationError(f"pain.002 must be bytes, got {type(data).__name__}")
    if len(data) > PAIN002_BYTES_MAX:
        raise ValidationError(f"pain.002 is {len(data)} bytes; at most PAIN002_BYTES_MAX={PAIN002_BYTES_MAX}")
    root = _parse_safely(data)
    uri, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
    version = uri.removeprefix(_NS_PREFIX)
    if local != "Document" or not uri.startswith(_NS_PREFIX) or version not in PAIN002_READ_SCHEMAS:
        raise ValidationError(
            f"not a pain.002 status report: root element {root.tag!r}; expected Document in namespace "
            f"{_NS_PREFIX}<version> with version one of {sorted(PAIN002_READ_SCHEMAS)}"
        )
    ns = f"{{{uri}}}"
    report = root.find(f"{ns}CstmrPmtStsRpt")
    if report is None:
        raise ValidationError("pain.002 has no CstmrPmtStsRpt element under Document")
    message_id = _text(report.find(f"{ns}GrpHdr/{ns}MsgId"))
    original = report.find(f"{ns}OrgnlGrpInfAndSts")
    original_message_id = _text(None if original is None else original.find(f"{ns}OrgnlMsgId"))
    if message_id is None or original is None or original_message_id is None:
        raise ValidationError("pain.002 lacks GrpHdr/MsgId or OrgnlGrpInfAndSts/OrgnlMsgId")
    group_status = _status(original, "GrpSts", ns, "group")

    codes: dict[str, str] = {}
    count = 0
    for block in report.iterfind(f"{ns}OrgnlPmtInfAndSts"):
        block_status = _status(block, "PmtInfSts", ns, "payment information") or group_status
        for tx in block.iterfind(f"{ns}TxInfAndSts"):
            count += 1
            if count > PAIN002_TRANSACTIONS_MAX:
                raise ValidationError(f"pain.002 has more than PAIN002_TRANSACTIONS_MAX={PAIN002_TRANSACTIONS_MAX}")
            e2e = _text(tx.find(f"{ns}OrgnlEndToEndId"))
            if e2e is None:
                raise ValidationError(f"pain.002 transaction {count} has no OrgnlEndToEndId")
            code = _status(tx, "TxSts", ns, f"transaction {e2e}") or block_status
            if code is None:
                raise ValidationError(f"pain.002 transaction {e2e} has no TxSts, PmtInfSts or GrpSts")
            if codes.setdefault(e2e, code) != code:
                raise ValidationError(f"pain.002 gives transaction {e2e} two statuses, {codes[e2e]} and {code}")
    return Pain002Report(message_id, original_message_id, group_status, codes)


def parse_pain002(data: bytes) -> dict[str, Pain002Status]:
    """OriginalEndToEndId -> ``"settled"`` or ``"failed"`` for each transaction with a final status.

    Transactions still pending are left out. A report with only a group status names no transaction,
    so it gives an empty mapping: use ``read_pain002`` to see the group status.
    """
    statuses: dict[str, Pain002Status] = {}
    for e2e, code in read_pain002(data).transaction_codes.items():
        if code in SETTLED_CODES:
            statuses[e2e] = "settled"
        elif code in FAILED_CODES:
            statuses[e2e] = "failed"
    return statuses


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def write_pain002(
    statuses: Mapping[str, str],
    *,
    original_message_id: str,
    message_id: str,
    created_at: datetime.datetime,
) -> bytes:
    """A pain.002.001.03 that reports ``statuses`` (EndToEndId -> code) on a pain.001 we sent; for tests and demos.

    Codes are those of ``WRITABLE_TRANSACTION_CODES`` (ACSC for settled, RJCT for rejected). Transactions
    are written sorted by EndToEndId in one payment-information block whose id is the original message id
    (``write_pain001`` uses the message id for it); the group status is the common code, or PART.
    Rejections carry reason ``REJECT_REASON_CODE``. ``created_at`` must be timezone-aware.
    """
    if not isinstance(statuses, Mapping) or not statuses:
        raise ValidationError("statuses is empty: give at least one EndToEndId and status code")
    if len(statuses) > PAIN002_TRANSACTIONS_MAX:
        raise ValidationError(f"{len(statuses)} statuses exceed PAIN002_TRANSACTIONS_MAX={PAIN002_TRANSACTIONS_MAX}")
    for name, value in (("original_message_id", original_message_id), ("message_id", message_id)):
        if not isinstance(value, str) or MESSAGE_ID_PATTERN.fullmatch(value) is None:
            raise ValidationError(f"{name} {value!r} must be 1 to 35 characters of A-Z, a-z, 0-9 and '-'")
    if not isinstance(created_at, datetime.datetime) or created_at.utcoffset() is None:
        raise ValidationError("created_at must be a timezone-aware datetime, such as one with tzinfo=datetime.UTC")
    for e2e, code in statuses.items():
        if not isinstance(e2e, str) or END_TO_END_ID_PATTERN.fullmatch(e2e) is None:
            raise ValidationError(f"EndToEndId {e2e!r} must be 1 to 35 characters of A-Z, a-z, 0-9 and '-'")
        if code not in WRITABLE_TRANSACTION_CODES:
            hint = "; use ACSC (settled)" if code == "ACCC" else ""
            raise ValidationError(
                f"status {code!r} for {e2e} is not a {PAIN002_WRITE_SCHEMA} transaction status "
                f"{sorted(WRITABLE_TRANSACTION_CODES)}{hint}"
            )
    codes = set(statuses.values())
    group_status = next(iter(codes)) if len(codes) == 1 else "PART"
    created_text = created_at.astimezone(datetime.UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"

    root = ET.Element("Document", {"xmlns": _NS_PREFIX + PAIN002_WRITE_SCHEMA})
    report = _sub(root, "CstmrPmtStsRpt")
    header = _sub(report, "GrpHdr")
    _sub(header, "MsgId", message_id)
    _sub(header, "CreDtTm", created_text)
    original = _sub(report, "OrgnlGrpInfAndSts")
    _sub(original, "OrgnlMsgId", original_message_id)
    _sub(original, "OrgnlMsgNmId", PAIN001_SCHEMA)
    _sub(original, "OrgnlNbOfTxs", str(len(statuses)))
    _sub(original, "GrpSts", group_status)
    block = _sub(report, "OrgnlPmtInfAndSts")
    _sub(block, "OrgnlPmtInfId", original_message_id)
    for e2e in sorted(statuses):
        tx = _sub(block, "TxInfAndSts")
        _sub(tx, "OrgnlEndToEndId", e2e)
        _sub(tx, "TxSts", statuses[e2e])
        if statuses[e2e] == "RJCT":
            _sub(_sub(_sub(tx, "StsRsnInf"), "Rsn"), "Cd", REJECT_REASON_CODE)
    document: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return document


__all__ = [
    "FAILED_CODES",
    "PAIN002_READ_SCHEMAS",
    "PAIN002_WRITE_SCHEMA",
    "PENDING_CODES",
    "SETTLED_CODES",
    "WRITABLE_TRANSACTION_CODES",
    "Pain002Report",
    "Pain002Status",
    "parse_pain002",
    "read_pain002",
    "write_pain002",
]
