"""Import a credited collection: one row per work, with its credits, rights holder, lineage and consent,
from a CSV, JSON Lines or Parquet file (`endcredits works import`).

Why: a studio, an archive or a stock library holds its credits in a spreadsheet or a data lake export, not
in C2PA manifests; this reads such a file in bounded batches (``collection_formats``) and registers each
row through the registry's own functions, exactly as `works add`, `credits add` and `consent grant` would.

- A row is all or nothing: it is checked whole (its content file read and hashed, an image decoded, its
  roles, weights, shares and consent read) before anything of it is written; a refused row is reported
  with its number and one line, and nothing of it is stored.
- Each batch commits on its own, so an interrupted import keeps what it committed; works are
  content-addressed and credits, lineage and grants are added only when missing, so importing the same
  file again adds nothing and finishes what an interrupted run left.
- A row may name a parent work (or, as a work row, a registered work) that a later row registers: it
  waits until the end of the file (at most ``DEFERRED_ROWS_MAX`` rows), then is written after its parent;
  rows whose parents form a cycle within the file are refused.

The schema: docs/concepts/registry.md, "Importing a collection".
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from endcredits.consent.records import add_grants, grants_for
from endcredits.consent.rules import DECISIONS, USES, Grant
from endcredits.errors import EndcreditsError, ValidationError, invariant
from endcredits.interop._common import (
    IMPORT_FILE_BYTES_MAX,
    SOURCE_TEXT_MAX,
    Window,
    clip,
    grants_not_in_force,
    read_bounded,
)
from endcredits.interop.collection_formats import (
    CREDIT_KEYS,
    LINEAGE_KEYS,
    LIST_FIELDS,
    SCALAR_FIELDS,
    SCHEMA_VERSION,
    Progress,
    RawRow,
    detect_format,
    read_rows,
)
from endcredits.interop.svg import CREATOR_ROLE, read_svg_metadata
from endcredits.limits import (
    CREDITS_PER_WORK_MAX,
    LINEAGE_DEPTH_MAX,
    LINEAGE_PARENTS_PER_WORK_MAX,
    NAME_LENGTH_MAX,
    TITLE_LENGTH_MAX,
    WEIGHT_MAX,
)
from endcredits.registry.fingerprints import IMAGE_KINDS, image_fingerprint, is_svg, register_works, svg_text
from endcredits.registry.records import (
    CreditIn,
    WorkIn,
    add_credits,
    add_lineage,
    clean_text,
    has_lineage,
    name_ids,
    parse_role,
)
from endcredits.registry.roles import check_role
from endcredits.store.audit import append_audit
from endcredits.store.blobs import put_blob
from endcredits.store.bulk import select_in
from endcredits.store.engine import Store
from endcredits.store.files import PRIVATE_FILE_MODE, private_dir

BATCH_ROWS_DEFAULT = 1_000
"""Rows checked, written and committed together."""

BATCH_ROWS_MAX = 100_000

BATCH_CONTENT_BYTES_MAX = 512 * 1024 * 1024
"""A batch is written early once its rows' content adds up to this many bytes."""

DEFERRED_ROWS_MAX = 100_000
"""Most rows that may wait at once for a parent work a later row of the file registers."""

REFUSALS_KEPT_MAX = 1_000
"""Refusals kept in the report object; ``refusals_path`` receives every one."""

KIND_LENGTH_MAX = 32

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PAYEE_REF = re.compile(r"(person|name):([1-9][0-9]{0,17})")
_NON_COMMERCIAL = re.compile(r"(^|[^a-z])(nc|non-?commercial)([^a-z]|$)")

invariant(BATCH_CONTENT_BYTES_MAX >= IMPORT_FILE_BYTES_MAX, "one content file must fit in a batch")
invariant(1 <= BATCH_ROWS_DEFAULT <= BATCH_ROWS_MAX, "the default batch is within its bound")


@dataclass(frozen=True)
class Refusal:
    """A row not imported: its number among the file's data rows, and why, in one line."""

    row: int
    reason: str


@dataclass(frozen=True)
class CollectionReport:
    """What `import_collection` read and changed. ``rows_new`` rows registered their work here;
    ``rows_present`` rows named a work already registered (by an earlier import or an earlier row),
    and only what was missing of them was added."""

    path: str
    format: str
    rows_read: int
    rows_new: int
    rows_present: int
    rows_refused: int
    works_added: int
    works_linked: int
    credits_added: int
    lineage_added: int
    grants_added: int
    batches: int
    refusals: tuple[Refusal, ...]  # the first REFUSALS_KEPT_MAX, by row

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {k: v for k, v in self.__dict__.items() if k != "refusals"}
        out["refusals"] = [{"row": r.row, "reason": r.reason} for r in self.refusals]
        return out


Ref = tuple[str, str]
"""A reference to a work: ("id", sha256) or ("source", source text)."""


@dataclass
class _Row:
    """One row, checked on its own (no database yet)."""

    number: int
    work_id: str | None = None  # the SHA-256 of the content; for a work row, once resolved
    work_ref: Ref | None = None  # a work row: the registered work it adds to
    content_path: Path | None = None
    content: bytes | None = None
    kind: str = ""
    title: str = ""
    source: str | None = None
    holder: tuple[str, str] | None = None  # ("payee", "person:1") or ("name", "Acme Films")
    credits: list[tuple[str, str, str, int]] = field(default_factory=list)  # (payee kind, value, role, weight)
    parents: list[tuple[Ref, Fraction | None]] = field(default_factory=list)
    resolved: list[tuple[str, Fraction | None]] = field(default_factory=list)
    grants: list[tuple[str, str, str]] = field(default_factory=list)  # (use, decision, source)

    def provides(self) -> list[Ref]:
        if self.work_ref is not None or self.work_id is None:
            return []
        return [("id", self.work_id)] + ([("source", self.source)] if self.source else [])

    def refs(self) -> list[Ref]:
        return ([self.work_ref] if self.work_ref else []) + [ref for ref, _ in self.parents]


# Reading one row -----------------------------------------------------------------------------------
def _text(fields: dict[str, Any], key: str, length_max: int = NAME_LENGTH_MAX) -> str | None:
    value = fields.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be text, not {type(value).__name__}")
    return clean_text(value, key, length_max)


def _ref(value: Any, what: str) -> Ref:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must name a work by its SHA-256 or its source")
    text = value.strip().lower() if _SHA256.fullmatch(value.strip().lower()) else value
    if _SHA256.fullmatch(text):
        return ("id", text)
    return ("source", clean_text(text, what, TITLE_LENGTH_MAX))


def _integer(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,20}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{what} must be a whole number in {low}..{high}, not {value!r:.40}")
    return value


def _share(value: Any) -> Fraction | None:
    if value is None or value == "":
        return None
    if isinstance(value, float):  # a Parquet double: its shortest decimal form, exactly
        value = Decimal(repr(value))
    try:
        if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
            raise ValueError
        share = Fraction(value.strip() if isinstance(value, str) else value)
    except (ValueError, ZeroDivisionError, InvalidOperation):
        raise ValidationError(
            f"lineage share {value!r:.40} is not a decimal such as 0.2 or a ratio such as 1/5"
        ) from None
    if not 0 <= share <= 1:
        raise ValidationError(f"lineage share {value} must be between 0 and 1")
    return share


def _objects(value: Any, what: str, keys: tuple[str, ...], count_max: int) -> list[dict[str, Any]]:
    items = [] if value is None else value
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValidationError(f"{what} must be a list of objects with {', '.join(keys)}")
    if len(items) > count_max:
        raise ValidationError(f"{len(items)} {what}; at most {count_max} on one row")
    for item in items:
        unknown = sorted(set(item) - set(keys))
        if unknown:
            raise ValidationError(f"unknown key {unknown[0]!r:.40} in {what}: the keys are {', '.join(keys)}")
    return items


def _credits(value: Any, allow_unknown_scheme: bool) -> list[tuple[str, str, str, int]]:
    out: list[tuple[str, str, str, int]] = []
    for i, c in enumerate(_objects(value, "credits", CREDIT_KEYS, CREDITS_PER_WORK_MAX), start=1):
        name, person = c.get("name"), c.get("person")
        if (name in (None, "")) == (person in (None, "")):
            raise ValidationError(f"credit {i} must name exactly one of name (a credited name) or person (an id)")
        role = c.get("role")
        if not isinstance(role, str) or not role.strip():
            raise ValidationError(f"credit {i} has no role (scheme:code, see `endcredits roles list`)")
        scheme, code = parse_role(role.strip())
        check_role(scheme, code, allow_unknown_scheme=allow_unknown_scheme)
        weight = 1 if c.get("weight") in (None, "") else _integer(c["weight"], f"credit {i} weight", 1, WEIGHT_MAX)
        if person not in (None, ""):
            text = str(person).strip().removeprefix("person:")
            payee = ("payee", f"person:{_integer(text, f'credit {i} person', 1, 2**63 - 1)}")
        else:
            payee = ("name", clean_text(str(name) if not isinstance(name, str) else name, "credited name"))
        out.append((*payee, f"{scheme}:{code}", weight))
    return out


def _lineage(value: Any) -> list[tuple[Ref, Fraction | None]]:
    out = []
    for i, p in enumerate(_objects(value, "lineage", LINEAGE_KEYS, LINEAGE_PARENTS_PER_WORK_MAX), start=1):
        if p.get("parent") in (None, ""):
            raise ValidationError(f"lineage {i} has no parent (the parent work's SHA-256 or source)")
        out.append((_ref(p["parent"], f"lineage {i} parent"), _share(p.get("share"))))
    if sum(s for _, s in out if s is not None) > 1:
        raise ValidationError("the lineage shares add up to more than 1")
    if len({ref for ref, _ in out}) != len(out):
        raise ValidationError("the same parent is named twice")
    return out


def _grants(fields: dict[str, Any], label: str) -> list[tuple[str, str, str]]:
    consent = fields.get("consent") or {}
    if not isinstance(consent, dict):
        raise ValidationError("consent must map uses to allowed or notAllowed")
    out: dict[str, tuple[str, str, str]] = {}
    for use, decision in sorted(consent.items()):
        if decision is None or decision == "":
            continue  # a Parquet struct names every use; an empty one says nothing
        if use not in USES:
            raise ValidationError(f"unknown use {use!r:.40} in consent: one of {', '.join(USES)}")
        if decision not in DECISIONS:
            raise ValidationError(f"consent for {use} is {decision!r:.40}: allowed or notAllowed")
        out[use] = (use, decision, f"collection {label}: consent {use}")
    licence = _text(fields, "licence", SOURCE_TEXT_MAX)
    if licence is not None and _NON_COMMERCIAL.search(licence.lower()):
        if out.get("commercial", ("", "notAllowed"))[1] == "allowed":
            raise ValidationError(f"licence {licence} is non-commercial, but consent allows commercial use")
        out["commercial"] = (
            "commercial",
            "notAllowed",
            clip(f"collection {label}: licence {licence} (non-commercial)"),
        )
    return [out[u] for u in USES if u in out]


def _content(fields: dict[str, Any], base_dir: Path, row: _Row) -> None:
    text = fields["content"]
    if not isinstance(text, str):
        raise ValidationError(f"content must be a path, not {type(text).__name__}")
    path = Path(text.strip())
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise ValidationError(f"content file {text.strip()!r:.120} does not exist (looked for {path})")
    content = read_bounded(path, "content file", IMPORT_FILE_BYTES_MAX)
    if not content:
        raise ValidationError(f"content file {path.name} is empty")
    row.content_path, row.content, row.work_id = path, content, hashlib.sha256(content).hexdigest()
    if row.kind.lower().split("/", 1)[0] in IMAGE_KINDS:
        image_fingerprint(content)  # raises when the image cannot be decoded


def _with_embedded_metadata(fields: dict[str, Any], row: _Row) -> dict[str, Any]:
    """The row's fields, with what an SVG's own RDF record says filling the ones the row leaves empty: the
    title, the creators as credits (``cawg:creator``, when the row credits nobody) and the licence; its
    rights holder goes to ``row.holder`` as a credited name (a record never names a payee id). What the
    row gives always wins; a record that cannot be read refuses the row."""
    if row.content is None or not is_svg(row.content, row.kind):
        return fields
    meta = read_svg_metadata(svg_text(row.content), where="the SVG's metadata")
    out = dict(fields)
    if out.get("title") in (None, "") and meta.title:
        out["title"] = meta.title[:TITLE_LENGTH_MAX]
    if not out.get("credits") and meta.creators:
        out["credits"] = [{"name": n, "role": CREATOR_ROLE} for n in meta.creators]
    if out.get("rights_holder") in (None, "") and meta.rights_holder:
        row.holder = ("name", clean_text(meta.rights_holder, "credited name"))  # a name, never a payee id
    if out.get("licence") in (None, "") and meta.license_url:
        out["licence"] = meta.license_url
    return out


def parse_row(
    fields: dict[str, Any], number: int, base_dir: Path, label: str, *, allow_unknown_scheme: bool = False
) -> _Row:
    """One row checked on its own, its content read; ``ValidationError`` says what is wrong with it."""
    unknown = sorted(set(fields) - set(SCALAR_FIELDS) - set(LIST_FIELDS))
    if unknown:
        raise ValidationError(f"unknown column {unknown[0]!r:.60}")
    version = fields.get("schema")
    if version not in (None, "") and str(version).strip() != str(SCHEMA_VERSION):
        raise ValidationError(f"schema version {version!r:.20} is not known: this endcredits reads {SCHEMA_VERSION}")
    row = _Row(number)
    has_content, has_work = fields.get("content") not in (None, ""), fields.get("work") not in (None, "")
    if has_content == has_work:
        raise ValidationError("missing column: give exactly one of content (a file) or work (a registered work)")
    if has_work:
        given = [k for k in ("kind", "title", "source", "rights_holder") if fields.get(k) not in (None, "")]
        if given:
            raise ValidationError(
                f"a work row adds credits, lineage and consent only; {given[0]} is set at registration"
            )
        row.work_ref = _ref(fields["work"], "work")
    else:
        if fields.get("kind") in (None, ""):
            raise ValidationError("missing column: kind")
        row.kind = _text(fields, "kind", KIND_LENGTH_MAX) or ""
        _content(fields, base_dir, row)
        fields = _with_embedded_metadata(fields, row)
        if fields.get("title") in (None, ""):
            svg = row.content is not None and is_svg(row.content, row.kind)
            raise ValidationError("missing column: title" + (" (and the SVG's record has no dc:title)" if svg else ""))
        row.title = _text(fields, "title", TITLE_LENGTH_MAX) or ""
        row.source = _text(fields, "source", TITLE_LENGTH_MAX)
        holder = _text(fields, "rights_holder")
        if holder is not None:
            row.holder = ("payee", holder) if _PAYEE_REF.fullmatch(holder) else ("name", holder)
    row.credits = _credits(fields.get("credits"), allow_unknown_scheme)
    row.parents = _lineage(fields.get("lineage"))
    row.grants = _grants(fields, label)
    if has_content:
        if any(ref in row.provides() for ref, _ in row.parents):
            raise ValidationError("a work cannot derive from itself")
    return row


# Refusals ------------------------------------------------------------------------------------------
class _Refusals:
    """Every refusal: counted, the first ``REFUSALS_KEPT_MAX`` kept, each written to the report file."""

    def __init__(self, out: IO[str] | None, as_jsonl: bool, also: Callable[[int, str], None] | None = None) -> None:
        self.count = 0
        self._also = also
        self.kept: list[Refusal] = []
        self._out = out
        self._writer = csv.writer(out) if out is not None and not as_jsonl else None
        if self._writer is not None:
            self._writer.writerow(["row", "reason"])

    def add(self, number: int, reason: str) -> None:
        line = " ".join(reason.split())
        self.count += 1
        if len(self.kept) < REFUSALS_KEPT_MAX:
            self.kept.append(Refusal(number, line))
        if self._writer is not None:
            self._writer.writerow([number, line])
        elif self._out is not None:
            self._out.write(json.dumps({"row": number, "reason": line}, ensure_ascii=False) + "\n")
        if self._also is not None:
            self._also(number, line)


def _open_private(path: Path) -> IO[str]:
    """``path`` for writing, created or emptied, 0600 in a 0700 folder: refusals quote credited names."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    os.fchmod(fd, PRIVATE_FILE_MODE)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


# Checking a batch against the store ----------------------------------------------------------------
@dataclass
class _Known:
    """What the store already holds of the works, sources, people and names a batch names."""

    source_of: dict[str, str | None]  # registered work id -> its source
    id_of_source: dict[str, str]
    payees: set[str]  # "person:N" and "name:N" that exist

    @classmethod
    def load(cls, conn: Connection, rows: list[_Row]) -> _Known:
        ids = {r.work_id for r in rows if r.work_id} | {v for r in rows for k, v in r.refs() if k == "id"}
        sources = {r.source for r in rows if r.source} | {v for r in rows for k, v in r.refs() if k == "source"}
        named = {v for r in rows for k, v, _, _ in r.credits if k == "payee"}
        named |= {r.holder[1] for r in rows if r.holder is not None and r.holder[0] == "payee"}
        payees: set[str] = set()
        for table, kind in (("people", "person"), ("names", "name")):
            wanted = sorted({int(p.split(":")[1]) for p in named if p.startswith(f"{kind}:")})
            payees |= {f"{kind}:{r[0]}" for r in select_in(conn, f"SELECT id FROM {table} WHERE id {{in}}", wanted)}
        return cls(
            {str(w): s for w, s in select_in(conn, "SELECT id, source FROM works WHERE id {in}", sorted(ids))},
            {
                str(s): str(w)
                for s, w in select_in(conn, "SELECT source, id FROM works WHERE source {in}", sorted(sources))
            },
            payees,
        )


class _Batch:
    """The works and sources of the rows of one batch accepted so far (a later row may name them)."""

    def __init__(self, known: _Known) -> None:
        self.known = known
        self.rows_of: dict[str, _Row] = {}
        self.id_of_source: dict[str, str] = {}

    def resolve(self, ref: Ref) -> str | None:
        kind, value = ref
        if kind == "id":
            return value if value in self.rows_of or value in self.known.source_of else None
        return self.id_of_source.get(value) or self.known.id_of_source.get(value)

    def check(self, row: _Row) -> Ref | None:
        """Raise when the row conflicts with the store or the batch; return the first work it names that is
        not registered yet (it waits), else None (its work and parents resolved)."""
        for kind, value, _, _ in row.credits + ([(*row.holder, "", 0)] if row.holder else []):
            if kind == "payee" and value not in self.known.payees:
                raise ValidationError(f"no {value.replace(':', ' ')} is registered: add them first, or credit a name")
        if row.work_ref is None:
            invariant(row.work_id is not None, "a content row has its SHA-256")
            self._check_source(row)
        else:
            found = self.resolve(row.work_ref)
            if found is None:
                return row.work_ref
            row.work_id = found
        row.resolved = []
        for ref, share in row.parents:
            parent = self.resolve(ref)
            if parent is None:
                return ref
            if parent == row.work_id:
                raise ValidationError("a work cannot derive from itself")
            row.resolved.append((parent, share))
        return None

    def _check_source(self, row: _Row) -> None:
        wid = row.work_id
        if row.source:
            other = self.id_of_source.get(row.source) or self.known.id_of_source.get(row.source)
            if other is not None and other != wid:
                raise ValidationError(
                    f"source {row.source!r:.120} is already registered with other content (work {other})"
                )
        earlier = self.rows_of.get(wid or "")
        registered = earlier.source if earlier is not None else self.known.source_of.get(wid or "")
        if registered and row.source and registered != row.source:
            raise ValidationError(f"this content is already registered as work {wid} under source {registered!r:.120}")

    def accept(self, row: _Row) -> None:
        if row.work_ref is None and row.work_id is not None:
            self.rows_of.setdefault(row.work_id, row)
            if row.source:
                self.id_of_source.setdefault(row.source, row.work_id)


# Writing -------------------------------------------------------------------------------------------
@dataclass
class _Counts:
    rows_new: int = 0
    rows_present: int = 0
    works_added: int = 0
    works_linked: int = 0
    credits_added: int = 0
    lineage_added: int = 0
    grants_added: int = 0

    def add(self, other: _Counts) -> None:
        for k, v in other.__dict__.items():
            setattr(self, k, getattr(self, k) + v)


def _write_rows(
    conn: Connection,
    rows: list[_Row],
    window: Window,
    label: str,
    allow_unknown_scheme: bool,
    data_dir: Path | None = None,
) -> _Counts:
    """Write checked rows in the caller's transaction: names, works, credits, lineage, grants, one audit."""
    from endcredits.registry.records import existing_work_ids

    names = {v for r in rows for k, v, _, _ in r.credits if k == "name"}
    names |= {r.holder[1] for r in rows if r.holder is not None and r.holder[0] == "name"}
    ids = name_ids(conn, sorted(names)) if names else {}

    def payee(kind: str, value: str) -> str:
        return value if kind == "payee" else f"name:{ids[value]}"

    made = [r for r in rows if r.work_ref is None]
    before = existing_work_ids(conn, [r.work_id or "" for r in made])
    works = [WorkIn(r.content or b"", r.title, r.kind, r.source, payee(*r.holder) if r.holder else None) for r in made]
    registered = register_works(conn, works, data_dir=data_dir) if works else []
    out = _Counts(works_added=len({r.work_id for r in made} - before))
    out.works_linked = sum(1 for x in registered if x.similarity is not None and x.canonical_work_id is not None)
    seen = set(before)
    for r in rows:
        is_new = r.work_ref is None and r.work_id not in seen
        out.rows_new, out.rows_present = out.rows_new + is_new, out.rows_present + (not is_new)
        seen.add(r.work_id or "")
    credits = [CreditIn(r.work_id or "", payee(k, v), role, w) for r in rows for k, v, role, w in r.credits]
    out.credits_added = add_credits(conn, credits, allow_unknown_scheme=allow_unknown_scheme) if credits else 0
    for r in rows:
        for parent, share in r.resolved:
            if not has_lineage(conn, r.work_id or "", parent):
                add_lineage(conn, r.work_id or "", parent, share)
                out.lineage_added += 1
    planned = [
        Grant("work", r.work_id or "", use, decision, window.valid_from, window.valid_until, window.perpetual, source)  # type: ignore[arg-type]
        for r in rows
        for use, decision, source in r.grants
    ]
    existing = [g for _, g in grants_for(conn, sorted({g.subject_id for g in planned}), [])] if planned else []
    fresh = grants_not_in_force(existing, planned)
    add_grants(conn, fresh)
    out.grants_added = len(fresh)
    append_audit(
        conn,
        "registry.imported",
        "import:collection",
        {"source": label[:SOURCE_TEXT_MAX], "rows": [rows[0].number, rows[-1].number], **out.__dict__},
    )
    return out


def _one_line(exc: Exception) -> str:
    if isinstance(exc, IntegrityError):
        return f"the database refused the row: {str(exc.orig).splitlines()[0][:200]}"
    return str(exc)


class _Importer:
    """Rows in, batches out: check each batch against the store, hold back rows waiting for a later row's
    work, write the rest in one transaction (row by row if that fails, so one bad row stays alone)."""

    def __init__(self, store: Store, window: Window, label: str, batch_rows: int, refusals: _Refusals) -> None:
        self.store, self.window, self.label, self.batch_rows, self.refusals = store, window, label, batch_rows, refusals
        self.batch: list[_Row] = []
        self.batch_bytes = 0
        self.waiting: list[_Row] = []
        self.final = False
        self.counts = _Counts()
        self.allow_unknown_scheme = False
        self.batches = 0

    def add(self, row: _Row) -> None:
        self.batch.append(row)
        self.batch_bytes += len(row.content or b"")
        if len(self.batch) >= self.batch_rows or self.batch_bytes >= BATCH_CONTENT_BYTES_MAX:
            self.flush()

    def flush(self) -> None:
        rows, self.batch, self.batch_bytes = self.batch, [], 0
        if not rows:
            return
        with self.store.read() as conn:
            batch = _Batch(_Known.load(conn, rows))
        ready: list[_Row] = []
        for row in rows:
            try:
                missing = batch.check(row)
            except EndcreditsError as exc:
                self.refusals.add(row.number, str(exc))
                continue
            if missing is None:
                batch.accept(row)
                ready.append(row)
            elif self.final:
                self.refusals.add(
                    row.number,
                    f"{_describe(missing)} is not registered, and no row of the file that registers it was imported",
                )
            elif len(self.waiting) >= DEFERRED_ROWS_MAX:
                self.refusals.add(
                    row.number,
                    f"{_describe(missing)} is not registered yet, and DEFERRED_ROWS_MAX={DEFERRED_ROWS_MAX} rows "
                    "already wait for later rows: put parent works before the works derived from them",
                )
            else:
                row.content = None  # read again when its turn comes
                self.waiting.append(row)
        self._write(ready)

    def _write(self, rows: list[_Row]) -> None:
        if not rows:
            return
        for r in rows:
            if r.content is not None:
                put_blob(self.store.data_dir, r.content)  # content-addressed: written once, safe to repeat
        self.batches += 1
        try:
            with self.store.write() as conn:
                self.counts.add(
                    _write_rows(conn, rows, self.window, self.label, self.allow_unknown_scheme, self.store.data_dir)
                )
            return
        except (EndcreditsError, IntegrityError):
            pass  # one row the checks could not foresee (a cycle through registered lineage): find it alone
        for r in rows:
            try:
                with self.store.write() as conn:
                    self.counts.add(
                        _write_rows(conn, [r], self.window, self.label, self.allow_unknown_scheme, self.store.data_dir)
                    )
            except (EndcreditsError, IntegrityError) as exc:
                self.refusals.add(r.number, _one_line(exc))

    def finish(self) -> None:
        """Write the last batch, then the rows that waited for a later row, parents first."""
        self.flush()
        waiting, self.waiting, self.final = self.waiting, [], True
        ordered, stuck = _parents_first(waiting)
        for row, reason in stuck:
            self.refusals.add(row.number, reason)
        for row in ordered:
            try:
                _reload(row)
            except EndcreditsError as exc:
                self.refusals.add(row.number, str(exc))
                continue
            self.add(row)
        self.flush()


def _describe(ref: Ref) -> str:
    return f"work {ref[1]}" if ref[0] == "id" else f"the work with source {ref[1]!r:.120}"


def _reload(row: _Row) -> None:
    if row.content_path is None:
        return
    content = row.content_path.read_bytes() if row.content_path.is_file() else b""
    if hashlib.sha256(content).hexdigest() != row.work_id:
        raise ValidationError(f"content file {row.content_path.name} changed during the import")
    row.content = content


def _parents_first(rows: list[_Row]) -> tuple[list[_Row], list[tuple[_Row, str]]]:
    """The rows in an order where each comes after the rows whose works it names, and the rows that cannot
    be ordered (a lineage cycle within the file, or a row whose parents lead into one) with the reason."""
    by_number = {r.number: r for r in rows}
    provider: dict[Ref, int] = {}
    for r in rows:
        for ref in r.provides():
            provider.setdefault(ref, r.number)
    needs = {r.number: sorted({provider[f] for f in r.refs() if f in provider} - {r.number}) for r in rows}
    users: dict[int, list[int]] = {}
    for n, deps in needs.items():
        for d in deps:
            users.setdefault(d, []).append(n)
    left = {n: len(deps) for n, deps in needs.items()}
    ready = sorted(n for n, c in left.items() if c == 0)
    order: list[int] = []
    while ready:
        n = ready.pop()
        order.append(n)
        for u in users.get(n, []):
            left[u] -= 1
            if left[u] == 0:
                ready.append(u)
    stuck = sorted(set(by_number) - set(order))
    return [by_number[n] for n in order], [(by_number[n], _cycle_reason(n, needs, set(stuck))) for n in stuck]


def _cycle_reason(start: int, needs: dict[int, list[int]], stuck: set[int]) -> str:
    path = [start]
    while len(path) <= LINEAGE_DEPTH_MAX:
        nxt = next(d for d in needs[path[-1]] if d in stuck)  # a stuck row always needs another stuck row
        if nxt in path:
            loop = path[path.index(nxt) :] + [nxt]
            shown = " -> ".join(f"row {n}" for n in loop)
            if nxt == start:
                return f"lineage cycle within the file: {shown}"
            return f"its parents lead into a lineage cycle within the file: {shown}"
        path.append(nxt)
    return f"its parents lead, more than LINEAGE_DEPTH_MAX={LINEAGE_DEPTH_MAX} rows on, into a lineage cycle"


# The public functions ------------------------------------------------------------------------------
def import_rows(
    store: Store,
    rows: Iterable[RawRow],
    *,
    base_dir: Path,
    label: str,
    window: Window,
    fmt: str = "rows",
    batch_rows: int = BATCH_ROWS_DEFAULT,
    on_refusal: Callable[[int, str], None] | None = None,
    allow_unknown_scheme: bool = False,
) -> CollectionReport:
    """Import rows of the collection schema (from ``collection_formats.read_rows``, or any producer of
    ``RawRow``): content paths resolve against ``base_dir``; ``label`` names the collection in grant sources
    and the audit log; ``on_refusal`` hears of every refused row as it is refused."""
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or not 1 <= batch_rows <= BATCH_ROWS_MAX:
        raise ValidationError(f"batch rows must be 1..BATCH_ROWS_MAX={BATCH_ROWS_MAX}, not {batch_rows!r}")
    refusals = _Refusals(None, False, on_refusal)
    importer = _Importer(store, window, label, batch_rows, refusals)
    importer.allow_unknown_scheme = allow_unknown_scheme
    read = 0
    for raw in rows:
        read += 1
        if raw.fields is None:
            refusals.add(raw.number, raw.problem or "the row cannot be read")
            continue
        try:
            row = parse_row(raw.fields, raw.number, base_dir, label, allow_unknown_scheme=allow_unknown_scheme)
        except EndcreditsError as exc:
            refusals.add(raw.number, str(exc))
            continue
        importer.add(row)
    importer.finish()
    c = importer.counts
    return CollectionReport(
        label, fmt, read, c.rows_new, c.rows_present, refusals.count, c.works_added, c.works_linked,
        c.credits_added, c.lineage_added, c.grants_added, importer.batches,
        tuple(sorted(refusals.kept, key=lambda r: r.row)),
    )  # fmt: skip


def import_collection(
    store: Store,
    path: Path,
    *,
    window: Window,
    fmt: str | None = None,
    batch_rows: int = BATCH_ROWS_DEFAULT,
    refusals_path: Path | None = None,
    progress: Progress | None = None,
    allow_unknown_scheme: bool = False,
) -> CollectionReport:
    """Register the works of a CSV, JSON Lines or Parquet file (one row per work) with their credits, rights
    holder, lineage and consent, in batches of ``batch_rows`` rows, each committed on its own.

    A file that is not ``fmt`` (by default the format its extension names) is refused before anything is
    written. Each refused row is counted, the first ``REFUSALS_KEPT_MAX`` kept in the report, and every one
    written to ``refusals_path`` (CSV, or JSON Lines when it ends in .jsonl; 0600 in a 0700 folder: a
    reason may quote a name). Consent grants read from the file hold over ``window``; a role scheme outside
    ``registry.roles`` passes only with ``allow_unknown_scheme``."""
    chosen = detect_format(path, fmt)
    rows = read_rows(path, chosen, progress)
    out: IO[str] | None = None
    try:
        if refusals_path is not None:
            out = _open_private(refusals_path)
        sink = _Refusals(out, refusals_path is not None and refusals_path.suffix.lower() in (".jsonl", ".ndjson"))
        report = import_rows(
            store, rows, base_dir=path.parent, label=path.name, window=window, fmt=chosen, batch_rows=batch_rows,
            on_refusal=sink.add if out is not None else None, allow_unknown_scheme=allow_unknown_scheme,
        )  # fmt: skip
    finally:
        if out is not None:
            out.close()
        close = getattr(rows, "close", None)
        if close is not None:
            close()
    return dataclasses.replace(report, path=str(path))


__all__ = [
    "BATCH_ROWS_DEFAULT",
    "BATCH_ROWS_MAX",
    "DEFERRED_ROWS_MAX",
    "REFUSALS_KEPT_MAX",
    "CollectionReport",
    "Refusal",
    "import_collection",
    "import_rows",
    "parse_row",
]
