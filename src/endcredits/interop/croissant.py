"""Croissant (MLCommons) JSON-LD in and out, through ``mlcroissant``.

Import (``import_croissant``)
    The file must be JSON and pass mlcroissant's validation; otherwise one line says why and nothing is
    imported. Without ``record_set``, each local ``cr:FileObject`` of the distribution is a work (its bytes
    read next to the JSON-LD file and checked against the declared ``sha256``; remote ones are not fetched
    and are listed in the notes). With ``record_set``, each record of that record set is a work: its
    content is the record as canonical JSON. The dataset's ``creator`` entries (people and organizations)
    are credited on every imported work as ``endcredits:creator``. The values of any field of the record
    set declared ``equivalentProperty: prov:wasAttributedTo`` (Croissant 1.1's per-label provenance) name
    the person who labelled that record: credited on the record's work as ``endcredits:data_labeler``.
    The RAI fields that describe annotators and collection (``rai:dataAnnotationPlatform``,
    ``rai:annotatorDemographics``, ``rai:dataAnnotationProtocol``, ...) have no column of their own; they
    are kept in the import's notes and its audit entry. Croissant carries no consent, so no grant is made.

Export (``export_croissant``)
    A manifest as a Croissant 1.0 dataset whose distribution lists every included work as a
    ``cr:FileObject`` identified by its SHA-256, with the manifest's model, uses, time and Merkle root in the
    description. No credit or contact detail is exported.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import mlcroissant as mlc

from endcredits.errors import LimitExceededError, ManifestError, ValidationError
from endcredits.interop._common import (
    IMPORT_FILE_BYTES_MAX,
    TEXT_FILE_BYTES_MAX,
    CreditName,
    ImportReport,
    Plan,
    apply_plan,
    clip,
    decode_text,
    read_bounded,
)
from endcredits.manifest.records import load_manifest
from endcredits.registry.records import WorkIn, content_sha256, work_rows
from endcredits.store.engine import Store

RECORDS_MAX = 1_000_000
"""Most records one import reads from a record set."""

FILES_MAX = 100_000
"""Most file objects one import reads."""

CROISSANT_1_0 = "http://mlcommons.org/croissant/1.0"
PROV_ATTRIBUTED_TO = ("prov:wasAttributedTo", "http://www.w3.org/ns/prov#wasAttributedTo")
RAI_ANNOTATOR_FIELDS = (
    ("data_annotation_platform", "rai:dataAnnotationPlatform"),
    ("data_annotation_protocol", "rai:dataAnnotationProtocol"),
    ("data_annotation_analysis", "rai:dataAnnotationAnalysis"),
    ("annotations_per_item", "rai:annotationsPerItem"),
    ("annotator_demographics", "rai:annotatorDemographics"),
    ("machine_annotation_tools", "rai:machineAnnotationTools"),
    ("data_collection", "rai:dataCollection"),
    ("data_collection_type", "rai:dataCollectionType"),
)
"""RAI properties (mlcroissant attribute, JSON-LD name) kept in an import's notes."""

_KIND_BY_MIME_MAJOR = {"image": "image", "audio": "audio", "video": "video", "text": "text"}
_MIME_BY_KIND = {
    "image": "application/octet-stream",
    "audio": "application/octet-stream",
    "video": "application/octet-stream",
    "text": "text/plain",
    "abc": "text/vnd.abc",
}


@contextmanager
def _quiet_rdflib() -> Iterator[None]:
    """rdflib (under mlcroissant) warns that its ConjunctiveGraph is deprecated; not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"rdflib(\.|$)")
        yield


def _first_line(exc: BaseException) -> str:
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip(" -")]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def load_croissant(path: Path) -> mlc.Dataset:
    """The Croissant dataset in ``path``, validated by mlcroissant; ``ValidationError`` in one line when
    the file is not JSON, not JSON-LD, or not valid Croissant."""
    name = path.name
    text = decode_text(read_bounded(path, "Croissant JSON-LD file", TEXT_FILE_BYTES_MAX), f"JSON-LD file {name}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"malformed JSON-LD {name}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(document, dict) or "@context" not in document:
        raise ValidationError(f"malformed JSON-LD {name}: expected one JSON object with an @context")
    try:
        with _quiet_rdflib():
            dataset = mlc.Dataset(jsonld=path)
    except mlc.ValidationError as exc:
        raise ValidationError(f"invalid Croissant {name}: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - rdflib and mlcroissant raise many types on bad JSON-LD
        raise ValidationError(f"malformed JSON-LD {name}: {type(exc).__name__}: {_first_line(exc)}") from None
    errors = sorted(dataset.metadata.ctx.issues.errors)
    if errors:
        raise ValidationError(f"invalid Croissant {name}: {clip(errors[0])}")
    return dataset


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return str(value.get("en") or next(iter(value.values()), ""))
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _kind(formats: list[str] | None) -> str:
    major = (formats[0] if formats else "").partition("/")[0]
    return _KIND_BY_MIME_MAJOR.get(major, "document")


def rai_notes(metadata: Any) -> list[str]:
    notes = []
    for attribute, label in RAI_ANNOTATOR_FIELDS:
        value = getattr(metadata, attribute, None)
        for item in value if isinstance(value, list) else ([value] if value else []):
            notes.append(f"{label}: {clip(_text(item))}")
    return notes


def _labeler_fields(metadata: Any, record_set: str) -> tuple[Any, list[str]]:
    for rs in metadata.record_sets:
        if record_set in (rs.id, _text(rs.name)):
            fields = [f.id for f in rs.fields if any(p in PROV_ATTRIBUTED_TO for p in (f.equivalentProperty or []))]
            return rs, fields
    known = ", ".join(sorted(rs.id for rs in metadata.record_sets)) or "none"
    raise ValidationError(f"record set {record_set!r} is not in the dataset; its record sets: {known}")


def plan_croissant(dataset: mlc.Dataset, path: Path, *, record_set: str | None) -> tuple[Plan, list[str]]:  # noqa: C901 - one pass over many independent checks
    metadata = dataset.metadata
    title = _text(metadata.name)
    base_url = metadata.url
    plan = Plan()
    plan.notes.extend(rai_notes(metadata))
    creators = sorted({_text(c.name).strip() for c in metadata.creators if c.name and _text(c.name).strip()})
    work_ids: list[str] = []
    labelers: list[tuple[str, str]] = []
    if record_set is None:
        files = [f for f in metadata.distribution if isinstance(f, mlc.FileObject)]
        if len(files) > FILES_MAX:
            raise LimitExceededError(f"{path.name} lists {len(files)} files; at most {FILES_MAX}")
        for node in metadata.distribution:
            if not isinstance(node, mlc.FileObject):
                plan.notes.append(f"{type(node).__name__} {clip(node.id)} is not expanded into works")
        for f in files:
            url = f.content_url or ""
            if urlsplit(url).scheme not in ("", "file"):
                plan.notes.append(f"file {clip(f.id)} is remote ({clip(url)}); not fetched, not registered")
                continue
            local = path.parent / urlsplit(url).path
            content = read_bounded(local, f"file {f.id} of {path.name}", IMPORT_FILE_BYTES_MAX)
            digest = content_sha256(content)
            if f.sha256 and f.sha256.lower() != digest:
                raise ManifestError(f"{local.name}: SHA-256 {digest} does not match {f.sha256} declared in {path.name}")
            source = urljoin(base_url.rstrip("/") + "/", url) if base_url else None
            plan.works.append(
                WorkIn(
                    content=content,
                    title=clip(f"{title}: {_text(f.name)}"),
                    kind=_kind(f.encoding_formats),
                    source=source,
                )
            )
            work_ids.append(digest)
    else:
        _, fields = _labeler_fields(metadata, record_set)
        try:
            with _quiet_rdflib():
                for index, record in enumerate(dataset.records(record_set)):
                    if index >= RECORDS_MAX:
                        raise LimitExceededError(
                            f"record set {record_set} has more than RECORDS_MAX={RECORDS_MAX} records"
                        )
                    body = json.dumps(_json_value(record), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                    content = body.encode()
                    digest = content_sha256(content)
                    plan.works.append(
                        WorkIn(content=content, title=clip(f"{title}: {record_set} #{index}"), kind="text")
                    )
                    work_ids.append(digest)
                    for field_id in fields:
                        value = record.get(field_id)
                        for item in value if isinstance(value, (list, tuple)) else [value]:
                            name = _text(item).strip() if item is not None else ""
                            if name:
                                labelers.append((digest, name))
        except LimitExceededError:
            raise
        except Exception as exc:  # noqa: BLE001 - mlcroissant's record generation raises many types
            raise ValidationError(f"cannot read record set {record_set} of {path.name}: {_first_line(exc)}") from None
        if not fields:
            plan.notes.append(
                f"record set {record_set} has no field with equivalentProperty prov:wasAttributedTo; "
                "no data labeler credited"
            )
    unique_ids = sorted(set(work_ids))
    plan.credits.extend(CreditName(w, c, "endcredits:creator") for w in unique_ids for c in creators)
    plan.credits.extend(CreditName(w, n, "endcredits:data_labeler") for w, n in sorted(set(labelers)))
    return plan, unique_ids


def import_croissant(store: Store, path: Path, *, record_set: str | None = None) -> ImportReport:
    """Register a Croissant dataset's files (or one record set's records) as works, with their creators and
    labelers credited, in one transaction."""
    dataset = load_croissant(path)
    plan, work_ids = plan_croissant(dataset, path, record_set=record_set)
    return apply_plan(store, plan, kind="croissant", source=f"croissant:{path.name}", work_ids=work_ids)


# Export --------------------------------------------------------------------------------------------
def export_croissant(store: Store, manifest_id: str) -> dict[str, Any]:
    """Manifest ``manifest_id`` as Croissant JSON-LD (a dict ready for ``json.dump``)."""
    with store.engine.connect() as conn:
        record = load_manifest(conn, manifest_id)
        rows = work_rows(conn, record.included)
    files = []
    for work_id in record.included:
        row = rows[work_id]
        source = row.source if row.source and urlsplit(row.source).scheme in ("http", "https") else f"works/{work_id}"
        files.append(
            mlc.FileObject(
                id=f"sha256:{work_id}",
                name=f"sha256:{work_id}",
                content_url=source,
                content_size=f"{row.size_bytes} B",
                sha256=work_id,
                encoding_formats=[_MIME_BY_KIND.get(row.kind, "application/octet-stream")],
                description=clip(str(row.title)),
            )
        )
    description = (
        f"Training manifest {record.id} of model {record.model_id}: {len(record.included)} works "
        f"for uses {', '.join(record.uses)} as of {record.as_of}; Merkle root {record.merkle_root}; "
        f"{len(record.excluded)} works excluded by consent."
    )
    metadata = mlc.Metadata(
        name=f"endcredits manifest {record.id}",
        description=description,
        conforms_to=CROISSANT_1_0,
        version="1.0.0",
        date_published=record.created_at[:10],
        url=f"urn:endcredits:manifest:{record.id}",
        cite_as=f"endcredits manifest {record.id}",
        distribution=files,
    )
    with _quiet_rdflib():
        document: dict[str, Any] = metadata.to_json()
    plain: dict[str, Any] = json.loads(json.dumps(document, default=str))
    return plain


def croissant_sha256s(document: Mapping[str, Any]) -> list[str]:
    """The ``sha256`` of each file object in a Croissant document's distribution."""
    return [str(f["sha256"]) for f in document.get("distribution", []) if isinstance(f, dict) and "sha256" in f]


__all__ = ["croissant_sha256s", "export_croissant", "import_croissant", "load_croissant", "plan_croissant", "rai_notes"]
