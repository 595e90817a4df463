"""Payout files: a batch of ``PayoutInstruction`` as a SEPA credit transfer (pain.001) or as CSV.

``write_pain001`` builds the XML with ``sepaxml`` (``PAIN001_SCHEMA``, the newest pain.001 it bundles)
and validates every file against the same bundled XSD before returning it; a file that fails is never
returned. The output is a pure function of the arguments: sepaxml's random message and payment-information
ids and its wall-clock creation time are replaced by ``message_id`` and ``created_at``.

Both writers check the whole batch first and raise ``ValidationError`` on the first bad instruction;
nothing is written for a batch with an error. The XSD does not carry the SEPA rulebook, so these
rules are checked here: EUR only, amounts from 0.01 to 999,999,999.99 in whole cents, IBANs of SEPA
countries, text in the SEPA basic Latin character set (``to_sepa_text``), ids of at most 35 characters.
"""

from __future__ import annotations

import csv
import datetime
import functools
import io
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import sepaxml
import xmlschema

from endcredits.errors import ValidationError, invariant
from endcredits.limits import ID_LENGTH_MAX, NAME_LENGTH_MAX
from endcredits.money import check_currency, format_amount, to_minor_units
from endcredits.payouts.iban import SEPA_COUNTRIES, normalize_bic, normalize_iban

PAIN001_SCHEMA = "pain.001.001.11"
"""The newest pain.001 version sepaxml 2.7.0 bundles (it also has .03, .09 and .10); its XSD has no imports."""

PAYOUT_INSTRUCTIONS_PER_FILE_MAX = 100_000
"""Most transfers in one payout file (pain.001 or CSV); a larger batch is split by the caller."""

SEPA_AMOUNT_CENTS_MAX = 99_999_999_999
"""EPC rulebook: one SEPA credit transfer is at most 999,999,999.99 EUR."""

SEPA_NAME_LENGTH_MAX = 70
"""ISO 20022 ``Max70Text``: longer names are cut at 70 characters in pain.001 (the CSV keeps them whole)."""

REMITTANCE_LENGTH_MAX = 140
"""Unstructured remittance information (``Max140Text``), before and after SEPA transliteration."""

END_TO_END_ID_PATTERN = re.compile(r"[A-Za-z0-9-]{1,35}")
"""What an ``end_to_end_id`` may look like: letters, digits and '-', 1 to 35 characters."""

MESSAGE_ID_PATTERN = re.compile(r"[A-Za-z0-9-]{1,35}")
"""What a pain.001 ``message_id`` may look like (it is also the payment-information id)."""

CSV_COLUMNS = ("batch_id", "end_to_end_id", "payee_id", "payee_name", "iban", "bic", "amount", "currency", "remittance")

_SEPA_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-?:().,'+ ")
# Letters that Unicode does not decompose into a base letter plus marks, and common punctuation.
_SEPA_REPLACEMENTS = str.maketrans({
    "ß": "ss", "ẞ": "SS", "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe", "Ø": "O", "ø": "o", "Ł": "L", "ł": "l",
    "Đ": "D", "đ": "d", "Ð": "D", "ð": "d", "Þ": "TH", "þ": "th", "ı": "i", "Ħ": "H", "ħ": "h", "Ŧ": "T",
    "ŧ": "t", "Ŋ": "N", "ŋ": "n", "ĸ": "k", "ſ": "s", "&": "+", "‘": "'", "’": "'", "‚": "'", "‛": "'",
    "ʼ": "'", "`": "'", "´": "'", '"': "'", "“": "'", "”": "'", "„": "'", "‐": "-", "‑": "-", "‒": "-",
    "–": "-", "—": "-", "_": "-",
})  # fmt: skip
_CSV_FORMULA_PREFIXES = ("=", "+", "-", "@")  # OWASP also lists tab and CR: control characters are refused earlier


@dataclass(frozen=True)
class PayoutInstruction:
    """One transfer to one payee. Checked when a file is written, not when constructed."""

    end_to_end_id: str
    """At most 35 characters of [A-Za-z0-9-], unique in a batch; the bank reports status by it."""
    payee_id: str
    """Our payee id, such as ``"person:12"``."""
    payee_name: str
    """Display name; may be a pseudonym. Transliterated to the SEPA character set in pain.001."""
    iban: str
    bic: str | None
    amount_microunits: int
    """A whole number of the currency's minor units (cents): 12.34 EUR is ``1_234_000_000``."""
    currency: str
    remittance: str
    """At most 140 characters; shown to the payee on their bank statement."""


@dataclass(frozen=True)
class Debtor:
    """Our own account, the one the money leaves from."""

    name: str
    iban: str
    bic: str


@dataclass(frozen=True)
class _Checked:
    instruction: PayoutInstruction
    iban: str
    bic: str | None
    amount_minor: int


def to_sepa_text(text: str) -> str:
    """Transliterate ``text`` to the SEPA basic Latin set ``a-z A-Z 0-9 / - ? : ( ) . , ' + space``.

    Accents are dropped ("Ó Riada" -> "O Riada", "Müller" -> "Muller"), a few letters are spelled out
    ("ß" -> "ss"), "&" becomes "+", and any other character (markup, emoji, control characters, other
    scripts) becomes a space; runs of spaces are collapsed. The result may be empty.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_SEPA_REPLACEMENTS))
    kept = (ch if ch in _SEPA_CHARS else " " for ch in decomposed if not unicodedata.combining(ch))
    return " ".join("".join(kept).split())


def _check_text(value: object, what: str, length_max: int, where: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} of {where} must be text, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(f"{what} of {where} is empty")
    if len(value) > length_max:
        raise ValidationError(f"{what} of {where} is {len(value)} characters; at most {length_max}")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValidationError(f"{what} of {where} contains a control character (such as a newline); remove it")
    return value


def _check_instructions(instructions: Sequence[PayoutInstruction], *, sepa: bool) -> list[_Checked]:
    if isinstance(instructions, (str, bytes)) or not isinstance(instructions, Sequence):
        raise ValidationError("instructions must be a sequence of PayoutInstruction")
    if not instructions:
        raise ValidationError("the payout batch is empty: give at least one PayoutInstruction")
    if len(instructions) > PAYOUT_INSTRUCTIONS_PER_FILE_MAX:
        raise ValidationError(
            f"{len(instructions)} instructions exceed PAYOUT_INSTRUCTIONS_PER_FILE_MAX="
            f"{PAYOUT_INSTRUCTIONS_PER_FILE_MAX}; split the batch into several files"
        )
    checked: list[_Checked] = []
    seen: set[str] = set()
    for index, ins in enumerate(instructions):
        item = _check_one(ins, index, sepa=sepa)
        if ins.end_to_end_id in seen:
            raise ValidationError(
                f"duplicate end_to_end_id {ins.end_to_end_id}: each transfer in a batch needs its own id"
            )
        seen.add(ins.end_to_end_id)
        checked.append(item)
    return checked


def check_instruction(instruction: PayoutInstruction, *, sepa: bool) -> None:
    """Raise the one-line ``ValidationError`` that would keep ``instruction`` out of a file: a pain.001
    (``sepa``: EUR, at most ``SEPA_AMOUNT_CENTS_MAX``, a SEPA IBAN, a name and remittance in the SEPA
    character set) or the CSV. A batch checks each payee with it before writing its files, so one payee
    the bank file cannot carry never holds up the others."""
    _check_one(instruction, 0, sepa=sepa)
    if sepa:
        where = f"end_to_end_id {instruction.end_to_end_id}"
        _sepa_name(instruction.payee_name, f"payee_name of {where}")
        _sepa_remittance(instruction.remittance, where)


def _check_one(ins: PayoutInstruction, index: int, *, sepa: bool) -> _Checked:
    if not isinstance(ins, PayoutInstruction):
        raise ValidationError(f"instruction {index} is a {type(ins).__name__}, not a PayoutInstruction")
    e2e = ins.end_to_end_id
    if not isinstance(e2e, str) or END_TO_END_ID_PATTERN.fullmatch(e2e) is None:
        raise ValidationError(
            f"end_to_end_id {e2e!r} of instruction {index} must be 1 to 35 characters of A-Z, a-z, 0-9 and '-'"
        )
    where = f"end_to_end_id {e2e}"
    _check_text(ins.payee_id, "payee_id", ID_LENGTH_MAX, where)
    _check_text(ins.payee_name, "payee_name", NAME_LENGTH_MAX, where)
    _check_text(ins.remittance, "remittance", REMITTANCE_LENGTH_MAX, where)
    currency = check_currency(ins.currency)
    if sepa and currency != "EUR":
        raise ValidationError(
            f"{where}: currency {currency} cannot be paid by SEPA credit transfer, which is EUR only; "
            "pay it through another rail such as write_payout_csv"
        )
    amount = ins.amount_microunits
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationError(f"{where}: amount_microunits must be an int, got {type(amount).__name__}")
    if amount <= 0:
        raise ValidationError(f"{where}: amount {amount} microunits is not positive; only payments > 0 are paid")
    minor, dust = to_minor_units(amount, currency)
    if dust:
        raise ValidationError(
            f"{where}: amount {format_amount(amount, currency)} {currency} is not a whole number of minor "
            f"units (cents); pay {format_amount(amount - dust, currency)} and carry the rest forward"
        )
    if sepa and minor > SEPA_AMOUNT_CENTS_MAX:
        raise ValidationError(
            f"{where}: amount {format_amount(amount, currency)} EUR is above the SEPA maximum of "
            "999999999.99 EUR per transfer; split it"
        )
    try:
        iban = normalize_iban(ins.iban)
        bic = None if ins.bic is None else normalize_bic(ins.bic)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc}") from exc
    if sepa and iban[:2] not in SEPA_COUNTRIES:
        raise ValidationError(
            f"{where}: a SEPA credit transfer cannot pay an IBAN from {iban[:2]}, which is outside SEPA; "
            "pay it through another rail"
        )
    return _Checked(ins, iban, bic, minor)


def _sepa_name(name: str, what: str) -> str:
    text = to_sepa_text(name)[:SEPA_NAME_LENGTH_MAX].rstrip()
    if not text:
        raise ValidationError(
            f"{what} {name!r} has no characters in the SEPA character set (Latin letters, digits, basic "
            "punctuation); record a Latin-script name or pseudonym for bank transfers"
        )
    return text


def _sepa_remittance(remittance: str, where: str) -> str:
    text = to_sepa_text(remittance)
    if not text:
        raise ValidationError(f"remittance of {where} has no characters in the SEPA character set")
    if len(text) > REMITTANCE_LENGTH_MAX:
        raise ValidationError(
            f"remittance of {where} is {len(text)} characters after transliteration to the SEPA character "
            f"set; shorten it to {REMITTANCE_LENGTH_MAX}"
        )
    return text


def pain001_xsd_path() -> Path:
    """The XSD every pain.001 is validated against: the copy bundled with sepaxml."""
    return Path(str(resources.files(sepaxml) / "schemas" / f"{PAIN001_SCHEMA}.xsd"))


@functools.lru_cache(maxsize=1)
def _pain001_schema() -> xmlschema.XMLSchema:
    # Parsing the XSD takes a while; it is read-only, so one copy per process is kept.
    return xmlschema.XMLSchema(str(pain001_xsd_path()))


def _first_schema_error(document: bytes) -> str | None:
    error = next(iter(_pain001_schema().iter_errors(io.BytesIO(document))), None)
    if error is None:
        return None
    return f"{error.reason} (at {error.path})"


class _FixedIdTransfer(sepaxml.SepaTransfer):  # type: ignore[misc]
    """sepaxml's SepaTransfer with caller-given ids and time in place of its random ids and clock.

    sepaxml 2.7.0 draws the message id (``make_msg_id``) and the payment-information id (``make_id``)
    from a random generator and the creation time from ``datetime.now()``; the id nodes are rewritten
    after sepaxml has built them.
    """

    def __init__(self, config: dict[str, Any], *, message_id: str, created_at_text: str) -> None:
        super().__init__(config, schema=PAIN001_SCHEMA, clean=False)
        self.msg_id = message_id
        header = self._xml.find("CstmrCdtTrfInitn/GrpHdr")
        header.find("MsgId").text = message_id
        header.find("CreDtTm").text = created_at_text
        self._payment_info_id = message_id

    def _finalize_batch(self) -> None:
        super()._finalize_batch()
        nodes = self._xml.findall("CstmrCdtTrfInitn/PmtInf/PmtInfId")
        invariant(len(nodes) == 1, "a payout file has exactly one payment-information block")
        nodes[0].text = self._payment_info_id

    def header_text(self, tag: str) -> str:
        text = self._xml.find(f"CstmrCdtTrfInitn/GrpHdr/{tag}").text
        return str(text)


def write_pain001(
    instructions: Sequence[PayoutInstruction],
    *,
    message_id: str,
    debtor: Debtor,
    execution_date: datetime.date,
    created_at: datetime.datetime,
) -> bytes:
    """A SEPA credit transfer initiation (``PAIN001_SCHEMA``) paying ``instructions`` from ``debtor``.

    One payment-information block (batch booking, service level SEPA, charges SLEV) whose id is
    ``message_id``; transfers in the order given. ``created_at`` must be timezone-aware; it is written in
    UTC. Names are transliterated with ``to_sepa_text`` and cut at 70 characters. Raises
    ``ValidationError`` for a bad batch or for a document that fails the XSD (with the first error).
    """
    checked = _check_instructions(instructions, sepa=True)
    if not isinstance(message_id, str) or MESSAGE_ID_PATTERN.fullmatch(message_id) is None:
        raise ValidationError(f"message_id {message_id!r} must be 1 to 35 characters of A-Z, a-z, 0-9 and '-'")
    if not isinstance(debtor, Debtor):
        raise ValidationError(f"debtor must be a Debtor, got {type(debtor).__name__}")
    if not isinstance(execution_date, datetime.date) or isinstance(execution_date, datetime.datetime):
        raise ValidationError("execution_date must be a datetime.date (a day, without a time)")
    if not isinstance(created_at, datetime.datetime) or created_at.utcoffset() is None:
        raise ValidationError("created_at must be a timezone-aware datetime, such as one with tzinfo=datetime.UTC")
    _check_text(debtor.name, "name", NAME_LENGTH_MAX, "the debtor")
    try:
        debtor_iban = normalize_iban(debtor.iban)
        debtor_bic = normalize_bic(debtor.bic)
    except ValidationError as exc:
        raise ValidationError(f"debtor account: {exc}") from exc
    if debtor_iban[:2] not in SEPA_COUNTRIES:
        raise ValidationError(f"debtor IBAN is from {debtor_iban[:2]}, outside SEPA; use an account in a SEPA country")
    created_at_text = created_at.astimezone(datetime.UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"

    transfer = _FixedIdTransfer(
        {
            "name": _sepa_name(debtor.name, "debtor name"),
            "IBAN": debtor_iban,
            "BIC": debtor_bic,
            "batch": True,
            "currency": "EUR",
        },
        message_id=message_id,
        created_at_text=created_at_text,
    )
    for item in checked:
        ins = item.instruction
        where = f"end_to_end_id {ins.end_to_end_id}"
        payment: dict[str, Any] = {
            "name": _sepa_name(ins.payee_name, f"payee_name of {where}"),
            "IBAN": item.iban,
            "amount": item.amount_minor,  # sepaxml takes integer cents
            "currency": "EUR",
            "execution_date": execution_date,
            "description": _sepa_remittance(ins.remittance, where),
            "endtoend_id": ins.end_to_end_id,
        }
        if item.bic is not None:
            payment["BIC"] = item.bic
        transfer.add_payment(payment)
    document: bytes = transfer.export(validate=False)

    total_microunits = sum(item.instruction.amount_microunits for item in checked)
    invariant(transfer.header_text("NbOfTxs") == str(len(checked)), "pain.001 NbOfTxs differs from the batch")
    invariant(transfer.header_text("CtrlSum") == format_amount(total_microunits, "EUR"), "pain.001 CtrlSum differs")
    error = _first_schema_error(document)
    if error is not None:
        raise ValidationError(f"the pain.001 for message {message_id} fails the {PAIN001_SCHEMA} XSD: {error}")
    return document


def _csv_cell(value: str) -> str:
    """Text a spreadsheet will not run as a formula: a leading = + - or @ gets a ' in front."""
    return "'" + value if value.startswith(_CSV_FORMULA_PREFIXES) else value


def write_payout_csv(instructions: Sequence[PayoutInstruction], *, batch_id: str) -> bytes:
    """The batch as UTF-8 CSV (RFC 4180, CRLF) with a header row of ``CSV_COLUMNS``, in the order given.

    Any currency; each amount is exact decimal text in major units (``format_amount``, whole minor
    units). Names and remittance are kept as given (not transliterated). Every text cell that a
    spreadsheet would read as a formula is prefixed with ``'``.
    """
    _check_text(batch_id, "batch_id", ID_LENGTH_MAX, "the payout CSV")
    checked = _check_instructions(instructions, sepa=False)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    for item in checked:
        ins = item.instruction
        writer.writerow(
            [
                _csv_cell(batch_id),
                _csv_cell(ins.end_to_end_id),
                _csv_cell(ins.payee_id),
                _csv_cell(ins.payee_name),
                item.iban,
                item.bic or "",
                format_amount(ins.amount_microunits, ins.currency),
                ins.currency,
                _csv_cell(ins.remittance),
            ]
        )
    return out.getvalue().encode("utf-8")


__all__ = [
    "CSV_COLUMNS",
    "END_TO_END_ID_PATTERN",
    "MESSAGE_ID_PATTERN",
    "PAIN001_SCHEMA",
    "PAYOUT_INSTRUCTIONS_PER_FILE_MAX",
    "SEPA_AMOUNT_CENTS_MAX",
    "Debtor",
    "PayoutInstruction",
    "check_instruction",
    "pain001_xsd_path",
    "to_sepa_text",
    "write_pain001",
    "write_payout_csv",
]
