"""What every import shares: the validity window of imported grants, bounded file reads, and the one
write transaction that stores works, credits, lineage and grants together (or nothing)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from endcredits.consent.records import add_grants, grants_for
from endcredits.consent.rules import USES, Grant
from endcredits.consent.terms import LicenceTerm, add_terms, same_term, terms_for
from endcredits.errors import LimitExceededError, ValidationError
from endcredits.registry.records import (
    CreditIn,
    WorkIn,
    add_credits,
    add_lineage,
    clean_text,
    content_sha256,
    existing_work_ids,
    get_work,
    has_lineage,
    name_ids,
)
from endcredits.store.audit import append_audit
from endcredits.store.engine import Store

TDM_USES: tuple[str, ...] = ("ai_generative_training", "ai_training", "ai_inference", "data_mining")
"""The four CAWG training-and-data-mining uses: what an opt-out signal speaks about. Never research,
commercial or likeness, which no signal here covers."""

TRAINING_USES: tuple[str, ...] = ("ai_generative_training", "ai_training")

SIGNAL_VALID_DAYS_DEFAULT = 365
"""How long a grant read from a signal holds when the caller names no end (the CLI's default): a signal is
evidence as of the day it was read, so it is re-read (re-imported) to renew. Never in perpetuity by default."""

IMPORT_FILE_BYTES_MAX = 256 * 1024 * 1024
"""Largest file any import reads (a C2PA asset, a Croissant file and the files it lists)."""

TEXT_FILE_BYTES_MAX = 16 * 1024 * 1024
"""Largest JSON-LD, tdmrep.json, header, HTML, XMP or ai.txt file read."""

SOURCE_TEXT_MAX = 300
"""Longest piece of a signal (a policy URL, a rule) quoted into a grant's source."""


@dataclass(frozen=True)
class Window:
    """When imported grants hold: from ``valid_from`` until ``valid_until``, or in perpetuity when the
    caller says so explicitly."""

    valid_from: dt.datetime
    valid_until: dt.datetime | None
    perpetual: bool = False

    def __post_init__(self) -> None:
        if self.valid_from.tzinfo is None:
            raise ValidationError("window start has no time zone; give it in UTC")
        if (self.valid_until is None) != self.perpetual:
            raise ValidationError("give a window an end (valid_until) or make it perpetual explicitly, not both")
        if self.valid_until is not None and not self.valid_until > self.valid_from:
            raise ValidationError(
                f"window ends at {self.valid_until.isoformat()}, before it starts at {self.valid_from.isoformat()}"
            )

    @classmethod
    def days(cls, valid_from: dt.datetime, days: int) -> Window:
        if days < 1:
            raise ValidationError(f"a window of {days} days is empty; give at least 1")
        return cls(valid_from, valid_from + dt.timedelta(days=days))


@dataclass(frozen=True)
class CreditName:
    """A credited name (not yet claimed by anyone) on a work, with a role ``scheme:code``."""

    work_id: str
    name: str
    role: str


@dataclass(frozen=True)
class LineageIn:
    work_id: str
    parent_work_id: str
    share: Fraction | None = None


@dataclass
class Plan:
    """Everything one import will write, gathered before the transaction opens."""

    works: list[WorkIn] = field(default_factory=list)
    credits: list[CreditName] = field(default_factory=list)
    lineage: list[LineageIn] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    terms: list[LicenceTerm] = field(default_factory=list)


@dataclass(frozen=True)
class ImportReport:
    """What an import changed. ``notes`` say what was read but not imported, and why."""

    kind: str
    source: str
    work_ids: tuple[str, ...]
    works_added: int
    credits_added: int
    lineage_added: int
    grants_added: int
    grants_unchanged: int
    notes: tuple[str, ...]
    works_linked: int = 0  # new works whose fingerprint matched a registered work: linked, credits merged
    terms_added: int = 0  # licence terms (a price for uses) stored with the works

    def summary(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "source": self.source,
            "work_ids": list(self.work_ids),
            "works_added": self.works_added,
            "credits_added": self.credits_added,
            "lineage_added": self.lineage_added,
            "grants_added": self.grants_added,
            "grants_unchanged": self.grants_unchanged,
            "works_linked": self.works_linked,
            "terms_added": self.terms_added,
            "notes": list(self.notes),
        }


def read_bounded(path: Path, what: str, bytes_max: int = TEXT_FILE_BYTES_MAX) -> bytes:
    """The bytes of ``path``, refusing a missing file or one beyond ``bytes_max``."""
    if not path.is_file():
        raise ValidationError(f"{what} {path} does not exist")
    with path.open("rb") as f:
        data = f.read(bytes_max + 1)
    if len(data) > bytes_max:
        raise LimitExceededError(f"{what} {path} is larger than {bytes_max} bytes")
    return data


def decode_text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{what} is not UTF-8 text (byte {exc.start})") from None


def clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SOURCE_TEXT_MAX else text[: SOURCE_TEXT_MAX - 3] + "..."


def grants_for_decisions(work_id: str, decisions: Mapping[str, str], window: Window, source: str) -> list[Grant]:
    """One grant per (use, decision) on ``work_id``, in ``USES`` order."""
    return [
        Grant(
            subject_kind="work",
            subject_id=work_id,
            use=use,
            decision=decision,  # type: ignore[arg-type]
            valid_from=window.valid_from,
            valid_until=window.valid_until,
            perpetual=window.perpetual,
            source=source,
        )
        for use, decision in sorted(decisions.items(), key=lambda kv: _use_order(kv[0]))
    ]


def _use_order(use: str) -> int:
    return USES.index(use) if use in USES else len(USES)


def work_source(store: Store, work_id: str) -> str | None:
    """The registered source (a path or URL) of a work; ``NotFoundError`` when it is not registered."""
    with store.read() as conn:
        return get_work(conn, work_id).source


def grants_not_in_force(existing: Iterable[Grant], planned: Iterable[Grant]) -> list[Grant]:
    """The planned grants that are not yet in force: no stored grant (nor an earlier planned one) with the
    same subject, use, decision and source holds when it starts. Re-importing a signal adds nothing."""
    index: dict[tuple[str, str, str, str], list[Grant]] = {}
    for e in existing:
        index.setdefault((e.subject_id, e.use, e.decision, e.source), []).append(e)
    out: list[Grant] = []
    for g in planned:
        same = index.setdefault((g.subject_id, g.use, g.decision, g.source), [])
        if not any(e.in_force(g.valid_from) for e in same):
            out.append(g)
            same.append(g)
    return out


def terms_not_in_force(existing: Iterable[LicenceTerm], planned: Iterable[LicenceTerm]) -> list[LicenceTerm]:
    """The planned terms that no stored (or earlier planned) identical term already covers when they start."""
    out: list[LicenceTerm] = []
    seen = list(existing)
    for t in planned:
        if not any(same_term(e, t) and e.in_force(t.valid_from) for e in seen):
            out.append(t)
            seen.append(t)
    return out


def apply_plan(store: Store, plan: Plan, *, kind: str, source: str, work_ids: Sequence[str]) -> ImportReport:
    """Write ``plan`` in one transaction: works, then credits, lineage and grants. Any error leaves the
    database as it was. A grant already in force with the same subject, use, decision and source is not
    stored twice, so re-importing the same signal changes nothing."""
    from endcredits.registry.fingerprints import register_works  # numpy: only when importing

    with store.write() as conn:
        planned = sorted({content_sha256(w.content) for w in plan.works})
        known = existing_work_ids(conn, planned)
        notes = list(plan.notes)
        works_linked = 0
        if plan.works:
            # The same path as `endcredits works add`: a new work whose fingerprint matches a registered
            # one (a re-encoded image, a lightly edited text) is linked to it and never paid twice.
            for r in register_works(conn, plan.works, data_dir=store.data_dir):
                if r.similarity is not None and r.canonical_work_id is not None:
                    works_linked += 1
                    notes.append(
                        f"work {r.work_id[:12]} matches registered work {r.canonical_work_id[:12]} "
                        f"({r.method}, similarity {r.similarity:.2f}); linked, credits merged"
                    )
        works_added = len(planned) - len(known)
        for wid in work_ids:
            get_work(conn, wid)
        credits_added = 0
        if plan.credits:
            ids = name_ids(conn, [c.name for c in plan.credits])
            credits_added = add_credits(
                conn,
                [CreditIn(c.work_id, f"name:{ids[clean_text(c.name, 'credited name')]}", c.role) for c in plan.credits],
            )
        lineage_added = 0
        for item in plan.lineage:
            if not has_lineage(conn, item.work_id, item.parent_work_id):
                add_lineage(conn, item.work_id, item.parent_work_id, item.share)
                lineage_added += 1
        existing = [g for _, g in grants_for(conn, sorted({g.subject_id for g in plan.grants}), [])]
        new_grants = grants_not_in_force(existing, plan.grants)
        add_grants(conn, new_grants)
        new_terms = terms_not_in_force([t for _, t in terms_for(conn, {t.work_id for t in plan.terms})], plan.terms)
        add_terms(conn, new_terms)
        append_audit(
            conn,
            "registry.imported",
            f"import:{kind}",
            {
                "source": source[:SOURCE_TEXT_MAX],
                "works": sorted(work_ids)[:1000],
                "works_added": works_added,
                "credits_added": credits_added,
                "lineage_added": lineage_added,
                "grants_added": len(new_grants),
                "works_linked": works_linked,
                "terms_added": len(new_terms),
                "notes": [n[:SOURCE_TEXT_MAX] for n in notes[:100]],
            },
        )
    return ImportReport(
        kind,
        source,
        tuple(work_ids),
        works_added,
        credits_added,
        lineage_added,
        len(new_grants),
        len(plan.grants) - len(new_grants),
        tuple(notes),
        works_linked,
        len(new_terms),
    )
