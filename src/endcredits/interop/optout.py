"""Opt-out signals read into consent grants on a work: W3C TDMRep, IPTC ``plus:DataMining`` and ai.txt.

Every function here is pure: it reads text that the caller read from a file (no network) and returns the
decisions per use plus the ``source`` that names the signal. ``import_signals`` stores them as grants on
one work, in one transaction. The mapping tables are in docs/concepts/imports.md.

TDMRep (W3C TDM Reservation Protocol, Community Group final report 2024)
    ``tdm-reservation: 1`` reserves text-and-data-mining rights (the EU DSM Art. 4(3) opt-out): notAllowed
    for the four training-and-data-mining uses. ``0`` says the rights are not reserved: allowed for the
    same four. Any other value is a protocol error and counts as unset. ``tdm-policy`` (a URL) is named
    in the source; it is not fetched. Carriers, later overriding earlier when set: the
    ``/.well-known/tdmrep.json`` rules (first rule whose ``location`` matches the work's path wins),
    then the HTTP response headers, then the HTML ``<meta>`` elements.

IPTC Photo Metadata 2023.1 ``plus:DataMining`` (XMP, namespace ``http://ns.useplus.org/ldf/xmp/1.0/``)
    One value from the PLUS vocabulary ``http://ns.useplus.org/ldf/vocab/DMI-...``; see ``DMI_DECISIONS``.
    A value not in the vocabulary counts as notAllowed for the four uses, as an unknown CAWG value does.

ai.txt (Spawning, 2023)
    robots.txt syntax: ``User-Agent`` groups of ``Allow``/``Disallow`` rules whose patterns match paths or
    file types (``*.jpg``). The group for the named agent applies, else the ``*`` group; the longest
    matching pattern wins, and an Allow wins a tie (RFC 9309). Disallow: notAllowed for AI training
    (generative or not); Allow: allowed for the same. ai.txt says nothing about mining or inference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit
from xml.etree import ElementTree

from endcredits.errors import LimitExceededError, ValidationError
from endcredits.interop._common import (
    TDM_USES,
    TRAINING_USES,
    ImportReport,
    Plan,
    Window,
    apply_plan,
    clip,
    grants_for_decisions,
)
from endcredits.store.engine import Store

TDMREP_RULES_MAX = 10_000
AI_TXT_LINES_MAX = 100_000


@dataclass(frozen=True)
class Signal:
    """Decisions per use read from one signal, and the source text naming it. No decisions: the signal
    says nothing about this work (no matching rule, an unspecified value)."""

    decisions: Mapping[str, str]
    source: str


# Paths ---------------------------------------------------------------------------------------------
def location_path(location: str) -> str:
    """The path part of a URL or path, starting with ``/``: what robots-style patterns match."""
    if not isinstance(location, str) or not location.strip():
        raise ValidationError("a work's location must be a URL or a path such as /images/a.jpg")
    text = location.strip()
    parts = urlsplit(text)
    path = parts.path if parts.scheme or parts.netloc else text
    return path if path.startswith("/") else "/" + path


def pattern_matches(pattern: str, path: str) -> bool:
    """robots.txt matching (RFC 9309 with the common ``*`` and ``$`` extensions), anchored at the start."""
    anchored = pattern.endswith("$")
    body = pattern[:-1] if anchored else pattern
    regex = "".join(".*" if ch == "*" else re.escape(ch) for ch in body)
    return re.match(regex + ("$" if anchored else ""), path, flags=re.DOTALL) is not None


# TDMRep --------------------------------------------------------------------------------------------
def _reservation(value: object) -> int | None:
    """1 or 0, or None for anything else (the spec's protocol error, treated as unset)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    return None


def _tdm_signal(reservation: int | None, policy: str | None, source: str) -> Signal:
    if reservation is None:
        return Signal({}, source)
    if reservation == 1:
        named = f"{source}: tdm-reservation 1" + (f", tdm-policy {clip(policy)}" if policy else "")
        return Signal({u: "notAllowed" for u in TDM_USES}, named)
    return Signal({u: "allowed" for u in TDM_USES}, f"{source}: tdm-reservation 0")


def tdmrep_well_known(text: str, location: str, *, name: str) -> Signal:
    """The first rule of a ``/.well-known/tdmrep.json`` whose ``location`` pattern matches ``location``."""
    try:
        rules = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"malformed tdmrep.json {name}: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(rules, list):
        raise ValidationError(f"tdmrep.json {name} must be a JSON array of rules, not {type(rules).__name__}")
    if len(rules) > TDMREP_RULES_MAX:
        raise LimitExceededError(f"tdmrep.json {name} has {len(rules)} rules; at most {TDMREP_RULES_MAX}")
    path = location_path(location)
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or not isinstance(rule.get("location"), str):
            raise ValidationError(f"tdmrep.json {name} rule {index} must be an object with a 'location' string")
        pattern = location_path(rule["location"]) if rule["location"] else "/"
        if pattern_matches(pattern, path):
            policy = rule.get("tdm-policy")
            return _tdm_signal(
                _reservation(rule.get("tdm-reservation")),
                policy if isinstance(policy, str) else None,
                f"tdmrep:well-known {clip(name)} rule {index} ({clip(rule['location'])})",
            )
    return Signal({}, f"tdmrep:well-known {clip(name)}")


def parse_headers(text: str) -> dict[str, str]:
    """HTTP header lines (``Name: value``; a status line and blank lines are skipped), names lower-cased."""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("HTTP/") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        headers.setdefault(key.strip().lower(), value.strip())
    return headers


def tdmrep_headers(headers: Mapping[str, str], *, name: str) -> Signal:
    lowered = {k.lower(): v for k, v in headers.items()}
    return _tdm_signal(
        _reservation(lowered.get("tdm-reservation")), lowered.get("tdm-policy"), f"tdmrep:http-header {clip(name)}"
    )


class _MetaReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta":
            return
        values = {k.lower(): (v or "") for k, v in attrs}
        key = values.get("name", "").strip().lower()
        if key in ("tdm-reservation", "tdm-policy") and key not in self.meta:
            self.meta[key] = values.get("content", "").strip()


def tdmrep_html(text: str, *, name: str) -> Signal:
    reader = _MetaReader()
    reader.feed(text)
    reader.close()
    return _tdm_signal(
        _reservation(reader.meta.get("tdm-reservation")),
        reader.meta.get("tdm-policy"),
        f"tdmrep:html-meta {clip(name)}",
    )


def tdmrep_combined(signals: Sequence[Signal]) -> Signal:
    """TDMRep's priority: each carrier that says something overrides the ones before it; one that says
    nothing leaves them. Pass the signals as well-known file, HTTP headers, HTML."""
    chosen = Signal({}, "tdmrep: no reservation found")
    for signal in signals:
        if signal.decisions:
            chosen = signal
    return chosen


def tdmrep_from_text(text: str, *, name: str, location: str | None) -> Signal:
    """Read one TDMRep carrier, recognized by its content: a JSON array is a tdmrep.json, text starting with
    ``<`` is HTML, anything else HTTP header lines."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")) or name.endswith(".json"):
        if location is None:
            raise ValidationError(
                f"{name} is a tdmrep.json: give the work's location (its URL or path) to match its rules"
            )
        return tdmrep_well_known(text, location, name=name)
    if stripped.startswith("<"):
        return tdmrep_html(text, name=name)
    return tdmrep_headers(parse_headers(text), name=name)


# IPTC plus:DataMining ------------------------------------------------------------------------------
PLUS_XMP_NS = "http://ns.useplus.org/ldf/xmp/1.0/"
PLUS_VOCAB = "http://ns.useplus.org/ldf/vocab/"
_NOT_ALL = {u: "notAllowed" for u in TDM_USES}

DMI_DECISIONS: dict[str, dict[str, str]] = {
    "DMI-UNSPECIFIED": {},
    "DMI-ALLOWED": {u: "allowed" for u in TDM_USES},
    "DMI-PROHIBITED-AIMLTRAINING": {u: "notAllowed" for u in TRAINING_USES},
    "DMI-PROHIBITED-GENAIMLTRAINING": {"ai_generative_training": "notAllowed"},
    "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING": dict(_NOT_ALL),
    "DMI-PROHIBITED": dict(_NOT_ALL),
    "DMI-PROHIBITED-SEECONSTRAINT": dict(_NOT_ALL),
    "DMI-PROHIBITED-SEEEMBEDDEDRIGHTSEXPR": dict(_NOT_ALL),
    "DMI-PROHIBITED-SEELINKEDRIGHTSEXPR": dict(_NOT_ALL),
}
"""PLUS ``DataMining`` value -> decision per use. Search-engine indexing is not a use endcredits tracks, so
"prohibited except search engine indexing" forbids all four. The SEE* values point to a constraint or a
rights expression that is not read by machine here; like CAWG's ``constrained`` they count as notAllowed."""

_XMP_START = re.compile(rb"<x:xmpmeta\b|<rdf:RDF\b")
_XMP_END = (b"</x:xmpmeta>", b"</rdf:RDF>")


def xmp_packet(data: bytes, *, name: str) -> bytes:
    """The XMP packet inside ``data`` (an .xmp sidecar, or a JPEG/PNG/PDF that embeds one)."""
    start = _XMP_START.search(data)
    if start is None:
        raise ValidationError(f"{name} has no XMP packet (no x:xmpmeta or rdf:RDF element)")
    end_tag = _XMP_END[0] if data.startswith(b"<x:xmpmeta", start.start()) else _XMP_END[1]
    end = data.find(end_tag, start.start())
    if end >= 0:
        return data[start.start() : end + len(end_tag)]
    raise ValidationError(f"{name}: the XMP packet is not closed")


def plus_data_mining(data: bytes, *, name: str) -> tuple[str | None, str | None]:
    """(``plus:DataMining`` value, ``plus:OtherConstraints`` text) from an XMP packet; None when absent."""
    packet = xmp_packet(data, name=name)
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        raise ValidationError(f"{name}: an XMP packet with a DOCTYPE or entities is refused")
    try:
        root = ElementTree.fromstring(packet)
    except ElementTree.ParseError as exc:
        raise ValidationError(f"{name}: malformed XMP: {exc}") from None
    mining_tag, other_tag = f"{{{PLUS_XMP_NS}}}DataMining", f"{{{PLUS_XMP_NS}}}OtherConstraints"
    resource = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}resource"
    value: str | None = None
    other: str | None = None
    for element in root.iter():
        if value is None and mining_tag in element.attrib:
            value = element.attrib[mining_tag]
        if other is None and other_tag in element.attrib:
            other = element.attrib[other_tag]
        if value is None and element.tag == mining_tag:
            value = element.attrib.get(resource) or "".join(element.itertext())
        if other is None and element.tag == other_tag:
            other = "".join(element.itertext())
    return (value.strip() if value else None), (" ".join(other.split()) if other else None)


def xmp_signal(data: bytes, *, name: str) -> Signal:
    value, other = plus_data_mining(data, name=name)
    if value is None:
        return Signal({}, f"iptc:plus:DataMining {clip(name)}: absent")
    code = value.removeprefix(PLUS_VOCAB)
    source = f"iptc:plus:DataMining {clip(name)}: {clip(code)}"
    if code == "DMI-PROHIBITED-SEECONSTRAINT" and other:
        source += f" (plus:OtherConstraints: {clip(other)})"
    decisions = DMI_DECISIONS.get(code)
    if decisions is None:
        return Signal(dict(_NOT_ALL), source + " (not in the PLUS vocabulary: counted as notAllowed)")
    return Signal(dict(decisions), source)


# ai.txt --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AiTxtRule:
    allow: bool
    pattern: str
    line: int


def parse_ai_txt(text: str, *, name: str) -> dict[str, list[AiTxtRule]]:
    """User agent (lower case) -> its rules, in file order. Consecutive User-Agent lines share a group."""
    lines = text.splitlines()
    if len(lines) > AI_TXT_LINES_MAX:
        raise LimitExceededError(f"ai.txt {name} has {len(lines)} lines; at most {AI_TXT_LINES_MAX}")
    groups: dict[str, list[AiTxtRule]] = {}
    agents: list[str] = []
    last_was_agent = False
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ValidationError(f"ai.txt {name} line {number}: expected 'Field: value', got {clip(raw)!r}")
        key, value = key.strip().lower(), value.strip()
        if key == "user-agent":
            if not last_was_agent:
                agents = []
            agents.append(value.lower())
            groups.setdefault(value.lower(), [])
            last_was_agent = True
            continue
        last_was_agent = False
        if key in ("allow", "disallow"):
            if not agents:
                raise ValidationError(f"ai.txt {name} line {number}: a rule before any User-Agent line")
            if value:
                for agent in agents:
                    groups[agent].append(AiTxtRule(key == "allow", value, number))
    return groups


def ai_txt_signal(text: str, location: str, *, name: str, agent: str = "*") -> Signal:
    groups = parse_ai_txt(text, name=name)
    rules = groups.get(agent.lower())
    used = agent.lower()
    if rules is None:
        rules, used = groups.get("*", []), "*"
    path = location_path(location)
    best: AiTxtRule | None = None
    for rule in rules:
        pattern = rule.pattern if rule.pattern.startswith(("/", "*")) else "*" + rule.pattern
        if not pattern_matches(pattern, path):
            continue
        if best is None or (len(rule.pattern), rule.allow) > (len(best.pattern), best.allow):
            best = rule
    if best is None:
        return Signal({}, f"ai.txt {clip(name)}: no rule for {clip(path)}")
    verb = "Allow" if best.allow else "Disallow"
    return Signal(
        {u: ("allowed" if best.allow else "notAllowed") for u in TRAINING_USES},
        f"ai.txt {clip(name)} line {best.line}: {verb}: {clip(best.pattern)} (User-Agent: {used})",
    )


# Storing -------------------------------------------------------------------------------------------
def import_signals(store: Store, work_id: str, signals: Sequence[Signal], window: Window, *, kind: str) -> ImportReport:
    """Store each signal's decisions as grants on ``work_id`` (which must be registered), in one transaction."""
    plan = Plan()
    for signal in signals:
        if signal.decisions:
            plan.grants.extend(grants_for_decisions(work_id, signal.decisions, window, signal.source))
        else:
            plan.notes.append(f"{signal.source}: says nothing about this work; no grant")
    return apply_plan(store, plan, kind=kind, source="; ".join(s.source for s in signals), work_ids=[work_id])


__all__ = [
    "DMI_DECISIONS",
    "Signal",
    "ai_txt_signal",
    "import_signals",
    "location_path",
    "parse_ai_txt",
    "parse_headers",
    "pattern_matches",
    "plus_data_mining",
    "tdmrep_combined",
    "tdmrep_from_text",
    "tdmrep_headers",
    "tdmrep_html",
    "tdmrep_well_known",
    "xmp_signal",
]
