"""The public summary of training content a general-purpose model's provider publishes under the EU AI Act,
Article 53(1)(d), in the sections of the European Commission's template of July 2025, from what the
model's manifests hold: their works, sources, sizes, consent and the opt-outs they honoured.

Each field says where its value came from: ``manifests`` (derived here), ``estimate`` (derived, with the
rule stated), ``operator`` (a fact endcredits does not hold, supplied as an option), or ``not held``.
Written as JSON and as an HTML page, both private (0600) until the provider publishes them.
See docs/concepts/reports.md.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection

from endcredits.consent.records import grants_for
from endcredits.errors import NotFoundError, ValidationError
from endcredits.manifest.eu_summary_html import render_html
from endcredits.manifest.records import ManifestRecord, load_manifest, manifests_list, model_ids_exist
from endcredits.manifest.reports import perpetual_terms
from endcredits.registry.records import WorkRow, credited_people, work_rows
from endcredits.store.engine import Store, parse_time, utc_now
from endcredits.store.files import private_dir, write_private

TEMPLATE = (
    "European Commission, Template for the Public Summary of Training Content for general-purpose AI models "
    "(Article 53(1)(d) AI Act), July 2025"
)
MANIFESTS_PER_SUMMARY_MAX = 1_000
DOMAINS_LISTED_MAX = 1_000
DOMAIN_SHARE_LISTED = 0.10
"""The template asks for the top 10% of crawled domain names by content size."""
TEXT_BYTES_PER_TOKEN_ESTIMATE = 4
"""Without a stated token count, text size is estimated as bytes / 4 (a rule of thumb for English text)."""

SIZE_BANDS: dict[str, tuple[str, tuple[tuple[int, str], ...], str]] = {
    "text": (
        "tokens",
        ((10**9, "Less than 1 billion tokens"), (10**13, "1 billion to 10 trillion tokens")),
        "More than 10 trillion tokens",
    ),
    "image": (
        "images",
        ((10**6, "Less than 1 million images"), (10**9, "1 million to 1 billion images")),
        "More than 1 billion images",
    ),
    "audio": (
        "hours",
        ((10**4, "Less than 10,000 hours"), (10**6, "10,000 to 1 million hours")),
        "More than 1 million hours",
    ),
    "video": (
        "hours",
        ((10**4, "Less than 10,000 hours"), (10**6, "10,000 to 1 million hours")),
        "More than 1 million hours",
    ),
}
"""Per modality: the template's unit of size and its bands (upper bound exclusive, label), then the top band."""

_MODALITY_WORDS = (
    ("image", ("image", "svg", "photo", "scan", "drawing", "picture")),
    ("audio", ("audio", "sound", "music", "voice", "recording")),
    ("video", ("video", "film", "movie")),
    ("text", ("text", "document", "abc", "book", "code", "article")),
)


@dataclass(frozen=True)
class ProviderFacts:
    """Facts the template asks for that endcredits does not hold; each one given is marked as supplied."""

    provider_name: str | None = None
    provider_contact: str | None = None
    authorised_representative: str | None = None
    model_name: str | None = None
    placed_on_market: str | None = None
    crawlers: tuple[str, ...] = ()
    crawl_period: str | None = None
    datasets: Mapping[str, str] = field(default_factory=dict)  # dataset name -> source prefix of its works
    sizes: Mapping[str, int] = field(default_factory=dict)  # modality -> size in the template's unit
    user_data: str | None = None
    synthetic_data: str | None = None
    other_sources: str | None = None
    tdm_measures: str | None = None
    code_of_practice_signatory: bool | None = None
    illegal_content_measures: str | None = None

    def __post_init__(self) -> None:
        for modality, size in self.sizes.items():
            if modality not in SIZE_BANDS:
                raise ValidationError(f"size for modality {modality!r}: one of {', '.join(SIZE_BANDS)}")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ValidationError(f"size for {modality} must be a whole number >= 0, not {size!r}")
        for name, prefix in self.datasets.items():
            if not name.strip() or not prefix.strip():
                raise ValidationError("a dataset needs a name and the source prefix of its works (NAME=PREFIX)")


def _fact(value: Any, origin: str) -> dict[str, Any]:
    return {"value": value, "origin": origin}


def _given(value: Any) -> dict[str, Any]:
    """A fact the operator supplied, or ``not held`` when they did not."""
    missing = value is None or (isinstance(value, str | list | tuple) and len(value) == 0)
    return _fact(None, "not held") if missing else _fact(value, "operator")


def modality_of(kind: str) -> str:
    """The template's modality of a work kind (``image/png``, ``abc-tune``...): text, image, audio, video, other."""
    lowered = kind.lower()
    for modality, words in _MODALITY_WORDS:
        if any(w in lowered for w in words):
            return modality
    return "other"


def size_band(modality: str, size: int) -> str:
    _, bands, top = SIZE_BANDS[modality]
    return next((label for bound, label in bands if size < bound), top)


def _load(conn: Connection, model_id: str) -> tuple[list[ManifestRecord], dict[str, WorkRow]]:
    model_ids_exist(conn, [model_id])
    listed = manifests_list(conn, model_id=model_id, limit=MANIFESTS_PER_SUMMARY_MAX)
    if not listed:
        raise NotFoundError(f"model {model_id} has no manifest: run `endcredits manifest build --model {model_id}`")
    manifests = [load_manifest(conn, m.id) for m in sorted(listed, key=lambda m: (m.as_of, m.id))]
    included = sorted({w for m in manifests for w in m.included})
    return manifests, work_rows(conn, included)


def _categories(
    conn: Connection, manifests: list[ManifestRecord], rows: dict[str, WorkRow], facts: ProviderFacts
) -> dict[str, str]:
    """Each included work's source category: a named public dataset, licensed (an explicit allowed grant),
    crawled (a web address), or other."""
    licensed: set[str] = set()
    for m in manifests:
        people = credited_people(conn, m.included)
        allowed = {
            (g.subject_kind, g.subject_id)
            for _, g in grants_for(conn, m.included, set().union(*people.values()) if people else set())
            if g.decision == "allowed"
            and g.use in m.uses
            and g.applies_to(m.project)
            and g.in_force(parse_time(m.as_of))
        }
        licensed |= {
            w for w in m.included if ("work", w) in allowed or any(("person", p) in allowed for p in people.get(w, ()))
        }
    out = {}
    for w, row in rows.items():
        source = row.source or ""
        dataset = next((n for n, prefix in sorted(facts.datasets.items()) if source.startswith(prefix)), None)
        if dataset is not None:
            out[w] = f"dataset:{dataset}"
        elif w in licensed:
            out[w] = "licensed"
        elif urlsplit(source).scheme in ("http", "https"):
            out[w] = "crawled"
        else:
            out[w] = "other"
    return out


def _modalities(rows: Sequence[WorkRow], facts: ProviderFacts) -> dict[str, Any]:
    """Per modality: works, bytes, and the size in the template's unit with its band and origin."""
    out: dict[str, Any] = {}
    for modality in sorted({modality_of(r.kind) for r in rows}):
        mine = [r for r in rows if modality_of(r.kind) == modality]
        size_bytes = sum(r.size_bytes for r in mine)
        entry: dict[str, Any] = {"works": len(mine), "size_bytes": size_bytes}
        if modality in facts.sizes:
            size: dict[str, Any] = _fact(facts.sizes[modality], "operator")
        elif modality == "text":
            size = _fact(size_bytes // TEXT_BYTES_PER_TOKEN_ESTIMATE, "estimate")
            size["rule"] = f"bytes / {TEXT_BYTES_PER_TOKEN_ESTIMATE}"
        elif modality == "image":
            size = _fact(len(mine), "manifests")
        else:
            size = _fact(None, "not held")
        if modality in SIZE_BANDS:
            size["unit"] = SIZE_BANDS[modality][0]
            size["band"] = None if size["value"] is None else size_band(modality, size["value"])
        entry["size"] = size
        out[modality] = entry
    return out


def _general(
    model_id: str, manifests: list[ManifestRecord], rows: dict[str, WorkRow], facts: ProviderFacts
) -> dict[str, Any]:
    latest = max((r.created_at for r in rows.values()), default=None)
    return {
        "provider": {
            "name": _given(facts.provider_name),
            "contact": _given(facts.provider_contact),
            "authorised_representative": _given(facts.authorised_representative),
        },
        "model": {
            "name": _given(facts.model_name) if facts.model_name else _fact(model_id, "manifests"),
            "endcredits_model_id": _fact(model_id, "manifests"),
            "placed_on_market": _given(facts.placed_on_market),
            "manifests": _fact(
                [
                    {
                        "id": m.id,
                        "as_of": m.as_of,
                        "merkle_root": m.merkle_root,
                        "project": m.project,
                        "works_included": len(m.included),
                        "works_excluded": len(m.excluded),
                    }
                    for m in manifests
                ],
                "manifests",
            ),
        },
        "modalities": _modalities(list(rows.values()), facts),
        "latest_data_registered": _fact(latest, "manifests"),
    }


def _top_domains(crawled: Sequence[WorkRow]) -> list[dict[str, Any]]:
    by_domain: Counter[str] = Counter()
    for r in crawled:
        by_domain[(urlsplit(r.source or "").hostname or "").lower()] += r.size_bytes
    listed = min(DOMAINS_LISTED_MAX, max(1, math.ceil(len(by_domain) * DOMAIN_SHARE_LISTED))) if by_domain else 0
    ranked = sorted(by_domain.items(), key=lambda item: (-item[1], item[0]))[:listed]
    return [{"domain": d, "size_bytes": n} for d, n in ranked]


def _group(rows: Sequence[WorkRow]) -> dict[str, Any]:
    return {
        "used": bool(rows),
        "works": len(rows),
        "size_bytes": sum(r.size_bytes for r in rows),
        "modalities": sorted({modality_of(r.kind) for r in rows}),
    }


def _sources(rows: dict[str, WorkRow], category: dict[str, str], facts: ProviderFacts) -> dict[str, Any]:
    def of(cat: str) -> list[WorkRow]:
        return [rows[w] for w in sorted(rows) if category[w] == cat]

    crawled = of("crawled")
    registered = sorted(r.created_at for r in crawled)
    period = (
        _fact(facts.crawl_period, "operator")
        if facts.crawl_period
        else _fact(f"{registered[0]} to {registered[-1]}", "estimate") | {"rule": "when the works were registered"}
        if registered
        else _fact(None, "not held")
    )
    datasets = sorted({c.removeprefix("dataset:") for c in category.values() if c.startswith("dataset:")})
    return {
        "publicly_available_datasets": _group([r for w, r in rows.items() if category[w].startswith("dataset:")])
        | {"datasets": [{"name": n, "prefix_origin": "operator"} | _group(of(f"dataset:{n}")) for n in datasets]},
        "licensed_or_private": _group(of("licensed"))
        | {
            "description": "works whose rights holder or credited people allowed the model's uses by an explicit "
            "consent grant recorded in endcredits"
        },
        "crawled_and_scraped": _group(crawled)
        | {
            "crawlers": _given(list(facts.crawlers)),
            "period": period,
            "top_domains": _top_domains(crawled),
            "domain_rule": f"top {DOMAIN_SHARE_LISTED:.0%} of domain names by size of content",
        },
        "user_data": _given(facts.user_data),
        "synthetic_data": _given(facts.synthetic_data),
        "other": _group(of("other"))
        | {
            "description": "works registered in endcredits from files, without a web address",
            "operator_note": _given(facts.other_sources),
        },
    }


def _reason_family(reason: str) -> str:
    if reason.startswith("duplicate of"):
        return "duplicate"
    if "suspended by" in reason:
        return "suspension"
    if "inherited from upstream" in reason:
        return "lineage"
    if "operator default" in reason:
        return "operator_default_opt_in"
    return "refusal_or_opt_out_signal"


def _processing(conn: Connection, manifests: list[ManifestRecord], facts: ProviderFacts) -> dict[str, Any]:
    """Section 3: how opt-outs were honoured (works excluded and the signals that excluded them)."""
    excluded: dict[str, str] = {}
    signals: Counter[str] = Counter()
    for m in manifests:
        excluded.update(m.excluded)
        at = parse_time(m.as_of)
        refused = [w for w, r in m.excluded if _reason_family(r) == "refusal_or_opt_out_signal"]
        people = credited_people(conn, refused)
        for _, g in grants_for(conn, refused, set().union(*people.values()) if people else set()):
            if g.decision == "notAllowed" and g.in_force(at):
                signals[g.source.partition(":")[0] if ":" in g.source else g.source] += 1
    return {
        "tdm_opt_outs": {
            "code_of_practice_signatory": _given(facts.code_of_practice_signatory),
            "how_honoured": _fact(
                "every work is decided against the consent grants in force when its manifest is built: opt-out "
                "signals read from the work (TDMRep, IPTC data mining, ai.txt, C2PA) and refusals by credited "
                "people keep it out of the manifest, and the manifest's Merkle root commits to what was used",
                "manifests",
            ),
            "works_excluded": _fact(dict(sorted(Counter(map(_reason_family, excluded.values())).items())), "manifests"),
            "refusing_grant_sources": _fact(dict(sorted(signals.items())), "manifests"),
            "operator_measures": _given(facts.tdm_measures),
        },
        "illegal_content_removal": _given(facts.illegal_content_measures),
    }


def eu_training_summary(conn: Connection, model_id: str, facts: ProviderFacts) -> dict[str, Any]:
    """The summary of ``model_id``'s training content from its manifests (at most
    ``MANIFESTS_PER_SUMMARY_MAX``), as JSON-ready data in the template's sections. Reads only."""
    manifests, rows = _load(conn, model_id)
    category = _categories(conn, manifests, rows, facts)
    perpetual = sorted({t for m in manifests for t in perpetual_terms(conn, m)}, key=lambda t: (t.work_id, t.grant_id))
    return {
        "template": TEMPLATE,
        "generated_by": "endcredits",
        "generated_at": utc_now(),
        "model": model_id,
        "origins": {
            "manifests": "derived by endcredits from the model's manifests and the registry",
            "estimate": "derived by endcredits by the stated rule",
            "operator": "supplied by the operator as an option; endcredits does not hold it",
            "not held": "not held by endcredits and not supplied",
        },
        "1_general_information": _general(model_id, manifests, rows, facts),
        "2_list_of_data_sources": _sources(rows, category, facts),
        "3_data_processing": _processing(conn, manifests, facts),
        "perpetual_grants": [t.to_json() for t in perpetual],
    }


@dataclass(frozen=True)
class SummaryFiles:
    json_path: Path
    html_path: Path
    summary: dict[str, Any]


def _file_stem(model_id: str) -> str:
    return "eu-training-summary-" + re.sub(r"[^A-Za-z0-9._-]", "_", model_id)[:100]


def write_eu_training_summary(store: Store, model_id: str, out_dir: Path, facts: ProviderFacts) -> SummaryFiles:
    """Build ``model_id``'s summary and write it to ``out_dir`` as JSON and HTML, each 0600 (in a 0700
    folder when created here). An unknown model, or one without manifests, writes nothing."""
    with store.read() as conn:
        summary = eu_training_summary(conn, model_id, facts)
    body = json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    page = render_html(summary)
    private_dir(out_dir)
    stem = _file_stem(model_id)
    json_path, html_path = out_dir / f"{stem}.json", out_dir / f"{stem}.html"
    write_private(json_path, body.encode())
    write_private(html_path, page.encode())
    return SummaryFiles(json_path, html_path, summary)
