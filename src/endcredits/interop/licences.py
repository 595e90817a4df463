"""Priced licences and AI usage preferences read into grants and licence terms: RSL 1.0, the IETF AI
Preferences ``Content-Usage`` field and Cloudflare's ``Content-Signal``.

Readers are pure (text in, no network): a ``Reading`` is a ``Signal`` (decisions per use, with its source),
the ``LicenceTerm``s an RSL payment states, and notes on what was not understood. ``import_licences``
stores them on one work in one transaction. The mapping tables: docs/concepts/licences.md.

RSL 1.0 (Really Simple Licensing, rslstandard.org)
    ``<rsl xmlns="https://rslstandard.org/rsl">`` holds ``<content url>`` elements; the one whose URL
    pattern (RFC 9309 matching, longest wins) covers the work applies. Each of its ``<license>``s is an
    offer: ``<permits type="usage">`` lists the usages it grants (none listed: every usage),
    ``<prohibits type="usage">`` those it refuses, ``<payment type>`` with ``<amount currency>`` the price.
    A use is allowed when some licence grants it; a use a licence speaks of but no licence grants is not.
    Found through a ``License:`` line in robots.txt, a ``rel="license"`` link in HTML or an HTTP ``Link``
    header (``licence_links``), or given directly.

AI Preferences (IETF aipref vocabulary and attachment drafts)
    ``Content-Usage`` is an RFC 9651 structured-field dictionary (``train-ai=n, search=y``) in an HTTP
    header or a robots.txt rule (``Content-Usage: /path train-ai=n``). A more specific category overrides a
    broader one (``bots`` above ``train-ai`` above ``train-genai``; ``bots`` above ``search`` and ``ai-use``);
    where one category is stated more than once, any ``n`` wins.

Content-Signal (Cloudflare's Content Signals Policy): ``search=yes, ai-input=no, ai-train=no`` in robots.txt.
Unknown tokens and values are reported in the notes and never read as permission.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import cast
from urllib.parse import urlsplit
from xml.etree import ElementTree

from endcredits.consent.rules import USES
from endcredits.consent.terms import PAYMENT_TYPES, LicenceTerm
from endcredits.errors import LimitExceededError, ValidationError
from endcredits.interop._common import ImportReport, Plan, Window, apply_plan, clip, grants_for_decisions
from endcredits.interop.optout import Signal, location_path, pattern_matches
from endcredits.money import parse_amount
from endcredits.store.engine import Store

RSL_NS = "https://rslstandard.org/rsl"
RSL_ELEMENTS_MAX = 100_000
ROBOTS_LINES_MAX = 100_000

RSL_USAGE_USES: dict[str, tuple[str, ...]] = {
    "all": (
        "ai_generative_training",
        "ai_training",
        "ai_inference",
        "data_mining",
        "ai_input",
        "ai_index",
        "search",
    ),
    "ai-all": ("ai_generative_training", "ai_training", "ai_inference", "ai_input", "ai_index"),
    "ai-train": ("ai_generative_training", "ai_training"),
    "ai-input": ("ai_inference", "ai_input"),
    "ai-index": ("ai_index",),
    "search": ("search",),
}
"""RSL usage token -> the uses it names. ``ai-input`` (content given to a model at inference) is both
endcredits' ``ai_input`` and CAWG's ``ai_inference``."""

RSL_USES: tuple[str, ...] = RSL_USAGE_USES["all"]

AIPREF_CATEGORIES: dict[str, tuple[str, ...]] = {
    "bots": RSL_USES,
    "train-ai": ("ai_generative_training", "ai_training"),
    "train-genai": ("ai_generative_training",),
    "ai-use": ("ai_inference", "ai_input"),
    "search": ("search",),
}
"""AI Preferences category -> the uses it covers."""

AIPREF_DEPTH: dict[str, int] = {"bots": 0, "train-ai": 1, "search": 1, "ai-use": 1, "train-genai": 2}
"""How specific each category is: a preference for a deeper category overrides a broader one."""

CONTENT_SIGNAL_USES: dict[str, tuple[str, ...]] = {
    "search": ("search",),
    "ai-input": ("ai_inference", "ai_input"),
    "ai-train": ("ai_generative_training", "ai_training"),
}


@dataclass
class Reading:
    """What one carrier said: a signal, the licence terms it states, and notes on what was not understood."""

    signal: Signal
    terms: list[LicenceTerm] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# RSL: parsing with element lines -----------------------------------------------------------------------
def _local(tag: str) -> tuple[str, str]:
    namespace, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    return namespace, name


def _parse_rsl(text: str, name: str) -> tuple[ElementTree.Element, dict[int, int]]:
    """The root element and the line each element starts on; malformed XML names the open element and line."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ValidationError(f"RSL {name}: a document with a DOCTYPE or entities is refused")
    parser: ElementTree.XMLPullParser[ElementTree.Element] = ElementTree.XMLPullParser(events=("start", "end"))
    lines: dict[int, int] = {}
    stack: list[tuple[str, int]] = []
    root: ElementTree.Element | None = None
    number = 0
    try:
        for number, line in enumerate(text.splitlines(keepends=True), start=1):
            parser.feed(line)
            for event, element in cast("Iterator[tuple[str, object]]", parser.read_events()):
                if not isinstance(element, ElementTree.Element):
                    continue
                if event == "start":
                    lines[id(element)] = number
                    stack.append((_local(element.tag)[1], number))
                    root = element if root is None else root
                    if len(lines) > RSL_ELEMENTS_MAX:
                        raise LimitExceededError(f"RSL {name} has more than {RSL_ELEMENTS_MAX} elements")
                else:
                    stack.pop()
        parser.close()
    except ElementTree.ParseError as exc:
        where = f"inside <{stack[-1][0]}> opened at line {stack[-1][1]}" if stack else "before any element"
        line_no = exc.position[0] if exc.position and exc.position[0] else number
        reason = str(exc).split(":")[0]
        raise ValidationError(f"malformed RSL XML {name} line {line_no}: {reason}, {where}") from None
    if root is None:
        raise ValidationError(f"RSL {name} has no elements")
    return root, lines


def _children(element: ElementTree.Element, local: str) -> list[ElementTree.Element]:
    return [c for c in element if _local(c.tag) == (RSL_NS, local)]


def _tokens(text: str | None) -> list[str]:
    return [t for t in re.split(r"[\s,]+", (text or "").strip().lower()) if t]


def rsl_content_for(
    root: ElementTree.Element, lines: Mapping[int, int], location: str, *, name: str
) -> ElementTree.Element | None:
    """The ``<content>`` whose ``url`` covers ``location``: the longest matching pattern, the first on a tie."""
    if _local(root.tag) != (RSL_NS, "rsl"):
        raise ValidationError(
            f"RSL {name} line {lines.get(id(root), 1)}: the root element is <{_local(root.tag)[1]}>, "
            f'expected <rsl xmlns="{RSL_NS}">'
        )
    target = urlsplit(location.strip())
    path = location_path(location)
    best: tuple[int, ElementTree.Element] | None = None
    for content in _children(root, "content"):
        url = (content.get("url") or "").strip()
        if not url:
            raise ValidationError(f"RSL {name} line {lines.get(id(content))}: <content> has no url attribute")
        parts = urlsplit(url)
        if parts.netloc and target.netloc and parts.netloc.lower() != target.netloc.lower():
            continue
        pattern = location_path(url) if parts.netloc or url.startswith("/") else "/" + url
        if pattern_matches(pattern, path) and (best is None or len(pattern) > best[0]):
            best = (len(pattern), content)
    return None if best is None else best[1]


# RSL: licences into decisions and terms ----------------------------------------------------------------
def _usages(license_: ElementTree.Element, kind: str, notes: list[str], where: str) -> list[str] | None:
    """The known usage tokens of ``<permits type="usage">`` (kind "permits") or ``<prohibits ...>``; None
    when the licence has no such element. Unknown tokens go to ``notes`` and count for nothing."""
    elements = [e for e in _children(license_, kind) if (e.get("type") or "usage").strip().lower() == "usage"]
    if not elements:
        return None
    known: list[str] = []
    for element in elements:
        for token in _tokens(element.text):
            if token in RSL_USAGE_USES:
                known.append(token)
            else:
                notes.append(f"{where}: unknown usage token {clip(token)!r} in <{kind}>; not read as permission")
    return known


def _user_restriction(license_: ElementTree.Element) -> bool:
    """True when the licence leaves commercial users out (``<permits type="user">`` without ``commercial``,
    or ``<prohibits type="user">`` with it)."""
    for kind, forbids_when_listed in (("permits", False), ("prohibits", True)):
        for e in _children(license_, kind):
            if (e.get("type") or "").strip().lower() == "user":
                listed = "commercial" in _tokens(e.text)
                if listed == forbids_when_listed:
                    return True
    return False


def _licence_decisions(license_: ElementTree.Element, notes: list[str], where: str) -> dict[str, str]:
    permitted = _usages(license_, "permits", notes, where)
    prohibited = _usages(license_, "prohibits", notes, where) or []
    granted = set(RSL_USES) if permitted is None else {u for t in permitted for u in RSL_USAGE_USES[t]}
    refused = {u for t in prohibited for u in RSL_USAGE_USES[t]}
    out = {u: "notAllowed" for u in RSL_USES if u in refused or u not in granted}
    out.update({u: "allowed" for u in granted - refused})
    for e in _children(license_, "permits") + _children(license_, "prohibits"):
        if (e.get("type") or "usage").strip().lower() not in ("usage", "user"):
            notes.append(
                f"{where}: <{_local(e.tag)[1]} type={clip(e.get('type') or '')!r}> is not read by machine here"
            )
    return out


def _amounts(payment: ElementTree.Element, lines: Mapping[int, int], name: str) -> list[tuple[int, str]]:
    """(microunits, currency) of each ``<amount>``; refuses one without a currency or below zero."""
    out: list[tuple[int, str]] = []
    for amount in _children(payment, "amount"):
        line = lines.get(id(amount))
        currency = (amount.get("currency") or "").strip()
        if not currency:
            raise ValidationError(f"RSL {name} line {line}: <amount> has no currency attribute (an ISO 4217 code)")
        text = (amount.text or "").strip()
        if text.startswith("-"):
            raise ValidationError(f"RSL {name} line {line}: <amount> {clip(text)} is negative")
        try:
            out.append((parse_amount(text, currency.upper()), currency.upper()))
        except ValidationError as exc:
            raise ValidationError(f"RSL {name} line {line}: <amount>: {exc}") from None
    return out


def _licence_terms(
    license_: ElementTree.Element, granted: Sequence[str], source: str, ctx: tuple[str, str, Mapping[int, int], Window]
) -> tuple[list[LicenceTerm], list[str]]:
    work_id, name, lines, window = ctx
    terms: list[LicenceTerm] = []
    notes: list[str] = []
    for payment in _children(license_, "payment"):
        kind = (payment.get("type") or "free").strip().lower()
        line = lines.get(id(payment))
        if kind not in PAYMENT_TYPES:
            notes.append(f"RSL {name} line {line}: unknown payment type {clip(kind)!r}; no term recorded")
            continue
        amounts = _amounts(payment, lines, name)
        if not amounts:
            notes.append(f"RSL {name} line {line}: payment {kind} states no amount; no term recorded")
        if not granted:
            continue
        for microunits, currency in amounts:
            terms.append(
                LicenceTerm(
                    work_id,
                    kind,
                    microunits,
                    currency,
                    tuple(sorted(granted)),
                    f"{source}: payment {kind}",
                    window.valid_from,
                    window.valid_until,
                    window.perpetual,
                )
            )
    return terms, notes


def rsl_reading(text: str, location: str, *, name: str, work_id: str, window: Window, found_via: str = "") -> Reading:
    """The RSL document's decisions for the work at ``location``, and the terms its licences state."""
    root, lines = _parse_rsl(text, name)
    content = rsl_content_for(root, lines, location, name=name)
    base = f"rsl {clip(name)}" + (f" (found via {clip(found_via)})" if found_via else "")
    if content is None:
        return Reading(Signal({}, f"{base}: no <content> covers {clip(location)}"))
    source = f"{base} content {clip(content.get('url') or '')}"
    reading = Reading(Signal({}, source))
    combined: dict[str, str] = {}
    licences = _children(content, "license")
    if not licences:
        reading.notes.append(f"{source}: no <license>; nothing granted")
    for index, license_ in enumerate(licences):
        where = f"RSL {name} line {lines.get(id(license_))}"
        decisions = _licence_decisions(license_, reading.notes, where)
        granted = sorted(u for u, d in decisions.items() if d == "allowed")
        terms, notes = _licence_terms(license_, granted, f"{source} license {index}", (work_id, name, lines, window))
        reading.terms.extend(terms)
        reading.notes.extend(notes)
        for use, decision in decisions.items():
            if decision == "allowed" or combined.get(use) != "allowed":
                combined[use] = decision  # licences are alternative offers: one that grants a use is enough
    if licences and all(_user_restriction(licence) for licence in licences):
        combined["commercial"] = "notAllowed"  # no licence on offer admits commercial users
    reading.signal = Signal(combined, source)
    return reading


# Discovery: where a licence is named -------------------------------------------------------------------
class _LicenseLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag in ("link", "a") and "license" in values.get("rel", "").lower().split() and values.get("href"):
            self.hrefs.append(values["href"].strip())


_LINK_VALUE = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")


def link_header_licences(value: str) -> list[str]:
    """The targets of an HTTP ``Link`` field value (RFC 8288) whose ``rel`` includes ``license``."""
    out: list[str] = []
    for match in _LINK_VALUE.finditer(value):
        for param in match.group(2).split(";"):
            key, _, rel = param.partition("=")
            if key.strip().lower() == "rel" and "license" in rel.strip().strip('"').lower().split():
                out.append(match.group(1).strip())
    return out


def licence_links(text: str, *, name: str) -> list[str]:
    """Where a carrier says the licence is, in order: robots.txt ``License:`` lines, HTML ``rel="license"``
    links, or HTTP ``Link`` headers with ``rel=license``; each as ``URL (name line N)``."""
    stripped = text.lstrip()
    if stripped.startswith("<"):
        reader = _LicenseLinks()
        reader.feed(text)
        reader.close()
        return [f"{href} ({clip(name)} rel=license)" for href in reader.hrefs]
    out: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        key, sep, value = raw.split("#", 1)[0].partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "license" and value.strip():
            out.append(f"{value.strip()} ({clip(name)} line {number} License:)")
        elif key == "link":
            out.extend(f"{url} ({clip(name)} line {number} Link rel=license)" for url in link_header_licences(value))
    return out


# robots.txt groups -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RobotsRule:
    field: str
    path: str
    value: str
    line: int


def robots_rules(text: str, *, name: str, agent: str, fields: Iterable[str]) -> list[RobotsRule]:
    """The ``fields`` rules of the group for ``agent`` (else the ``*`` group), each with an optional path
    before its value (``Content-Usage: /images/ train-ai=n``); a rule without a path covers ``/``."""
    wanted = {f.lower() for f in fields}
    lines = text.splitlines()
    if len(lines) > ROBOTS_LINES_MAX:
        raise LimitExceededError(f"robots.txt {name} has {len(lines)} lines; at most {ROBOTS_LINES_MAX}")
    groups: dict[str, list[RobotsRule]] = {}
    agents: list[str] = []
    last_was_agent = False
    for number, raw in enumerate(lines, start=1):
        key, sep, value = raw.split("#", 1)[0].strip().partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            continue
        if key == "user-agent":
            agents = agents if last_was_agent else []
            agents.append(value.lower())
            groups.setdefault(value.lower(), [])
            last_was_agent = True
            continue
        last_was_agent = False
        if key in wanted and value:
            path, _, rest = value.partition(" ") if value.startswith("/") else ("/", "", value)
            for a in agents or ["*"]:
                groups.setdefault(a, []).append(RobotsRule(key, path, rest.strip(), number))
    return groups.get(agent.lower(), groups.get("*", []))


def _matching(rules: Sequence[RobotsRule], path: str) -> list[RobotsRule]:
    """The rules with the longest pattern matching ``path`` (RFC 9309's most specific match)."""
    hits = [r for r in rules if pattern_matches(r.path, path)]
    longest = max((len(r.path) for r in hits), default=-1)
    return [r for r in hits if len(r.path) == longest]


# Structured-field dictionaries (RFC 9651) --------------------------------------------------------------
def _sf_dictionary(value: str, *, what: str) -> list[tuple[str, object]]:
    """(key, bare value) of an RFC 9651 dictionary, parsed by ``http_sfv``; refuses an invalid one."""
    from http_sfv.dictionary import Dictionary

    parsed = Dictionary()
    try:
        parsed.parse(value.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValidationError(
            f"{what}: {clip(value)!r} is not a valid structured-field dictionary (RFC 9651), "
            "e.g. 'train-ai=n, search=y'"
        ) from None
    return [(str(key), getattr(member, "value", member)) for key, member in parsed.items()]


def _preferences(
    members: Iterable[tuple[str, object]], where: str, known: Iterable[str], words: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Category -> "y"/"n" (any "n" wins on a repeat), and notes on unknown keys and values."""
    vocabulary = set(known)
    out: dict[str, str] = {}
    notes: list[str] = []
    for key, raw in members:
        value = words.get(str(raw).lower()) if not isinstance(raw, bool) else None
        if key not in vocabulary:
            notes.append(f"{where}: unknown key {clip(key)!r}; not read as permission")
        elif value is None:
            notes.append(f"{where}: {clip(key)}={clip(str(raw))} is not a preference this vocabulary defines; ignored")
        elif out.get(key) != "n":
            out[key] = value
    return out, notes


_AIPREF_WORDS = {"y": "y", "n": "n"}
_SIGNAL_WORDS = {"yes": "y", "no": "n"}


def _aipref_decisions(stated: Mapping[str, str]) -> dict[str, str]:
    """Per use, the preference of the most specific category that states one."""
    out: dict[str, str] = {}
    for use in RSL_USES:
        covering = sorted((AIPREF_DEPTH[c], c) for c, uses in AIPREF_CATEGORIES.items() if use in uses and c in stated)
        if covering:
            out[use] = "allowed" if stated[covering[-1][1]] == "y" else "notAllowed"
    return out


def content_usage_reading(values: Sequence[tuple[str, str]], *, name: str) -> Reading:
    """AI Preferences from ``Content-Usage`` values, each as (where, value); all of them apply together."""
    stated: dict[str, str] = {}
    notes: list[str] = []
    for where, value in values:
        members = _sf_dictionary(value, what=f"Content-Usage in {where}")
        found, more = _preferences(members, f"Content-Usage in {where}", AIPREF_CATEGORIES, _AIPREF_WORDS)
        notes.extend(more)
        for key, pref in found.items():
            stated[key] = "n" if "n" in (pref, stated.get(key)) else pref
    said = ", ".join(f"{k}={v}" for k, v in sorted(stated.items()))
    places = "; ".join(clip(w) for w, _ in values)
    source = f"aipref Content-Usage {clip(name)} ({places}): {said or 'no known preference'}"
    return Reading(Signal(_aipref_decisions(stated), source), notes=notes)


def content_signal_reading(values: Sequence[tuple[str, str]], *, name: str) -> Reading:
    """Cloudflare Content-Signal values (``search=yes, ai-train=no``), each as (where, value)."""
    decisions: dict[str, str] = {}
    notes: list[str] = []
    stated: dict[str, str] = {}
    for where, value in values:
        members = _sf_dictionary(value, what=f"Content-Signal in {where}")
        found, more = _preferences(members, f"Content-Signal in {where}", CONTENT_SIGNAL_USES, _SIGNAL_WORDS)
        notes.extend(more)
        for key, pref in found.items():
            stated[key] = "n" if "n" in (pref, stated.get(key)) else pref
    for key, pref in stated.items():
        decisions.update({u: "allowed" if pref == "y" else "notAllowed" for u in CONTENT_SIGNAL_USES[key]})
    said = ", ".join(f"{k}={'yes' if v == 'y' else 'no'}" for k, v in sorted(stated.items()))
    places = "; ".join(clip(w) for w, _ in values)
    return Reading(Signal(decisions, f"content-signal {clip(name)} ({places}): {said or 'nothing known'}"), notes=notes)


def preference_readings(text: str, location: str, *, name: str, agent: str = "*") -> list[Reading]:
    """AI Preferences and Content-Signal from one file: robots.txt (rules for ``agent`` whose path covers
    ``location``) or HTTP header lines (``Content-Usage:``). Licences it names are listed in the notes."""
    path = location_path(location)
    is_robots = re.search(r"(?im)^\s*user-agent\s*:", text) is not None
    readings: list[Reading] = []
    if is_robots:
        rules = robots_rules(text, name=name, agent=agent, fields=("content-usage", "content-signal"))
        for field_name, reader in (
            ("content-usage", content_usage_reading),
            ("content-signal", content_signal_reading),
        ):
            chosen = _matching([r for r in rules if r.field == field_name], path)
            if chosen:
                readings.append(reader([(f"{name} line {r.line}", r.value) for r in chosen], name=name))
    else:
        lines = [(n, v.strip()) for n, v in _header_lines(text, "content-usage")]
        if lines:
            readings.append(content_usage_reading([(f"{name} line {n}", v) for n, v in lines], name=name))
    links = [f"licence named at {link}: import it with `interop import-rsl`" for link in licence_links(text, name=name)]
    if not readings:
        readings.append(Reading(Signal({}, f"{clip(name)}: no AI preference for {clip(path)}")))
    readings[0].notes.extend(links)
    return readings


def _header_lines(text: str, header: str) -> list[tuple[int, str]]:
    """(line number, value) of every ``header`` field line, in order."""
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        key, sep, value = raw.partition(":")
        if sep and key.strip().lower() == header:
            out.append((number, value))
    return out


# Storing -----------------------------------------------------------------------------------------------
def most_restrictive(signals: Sequence[Signal]) -> dict[str, tuple[str, list[str]]]:
    """Per use, across signals: notAllowed if any says so, else allowed; with every source that said it."""
    out: dict[str, tuple[str, list[str]]] = {}
    for use in USES:
        said = [(s.decisions[use], s.source) for s in signals if use in s.decisions]
        if said:
            decision = "notAllowed" if any(d == "notAllowed" for d, _ in said) else "allowed"
            out[use] = (decision, [src for d, src in said if d == decision])
    return out


def import_licences(
    store: Store, work_id: str, readings: Sequence[Reading], window: Window, *, kind: str
) -> ImportReport:
    """Store each reading's decisions as grants on ``work_id`` (each with its own source, so every signal is
    kept) and its licence terms, in one transaction; the notes say, per use, which decision is the most
    restrictive across the signals and which sources gave it."""
    plan = Plan()
    for reading in readings:
        if reading.signal.decisions:
            plan.grants.extend(grants_for_decisions(work_id, reading.signal.decisions, window, reading.signal.source))
        else:
            plan.notes.append(f"{reading.signal.source}: says nothing about this work; no grant")
        plan.terms.extend(reading.terms)
        plan.notes.extend(reading.notes)
    for use, (decision, sources) in most_restrictive([r.signal for r in readings]).items():
        plan.notes.append(f"{use}: {decision} (from {'; '.join(sources)})")
    source = "; ".join(r.signal.source for r in readings)
    return apply_plan(store, plan, kind=kind, source=source, work_ids=[work_id])


__all__ = [
    "AIPREF_CATEGORIES",
    "CONTENT_SIGNAL_USES",
    "RSL_NS",
    "RSL_USAGE_USES",
    "Reading",
    "content_signal_reading",
    "content_usage_reading",
    "import_licences",
    "licence_links",
    "link_header_licences",
    "most_restrictive",
    "preference_readings",
    "robots_rules",
    "rsl_content_for",
    "rsl_reading",
]
