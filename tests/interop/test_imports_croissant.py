"""Croissant JSON-LD in (files, records, creators, labelers, RAI fields) and manifests out, with mlcroissant."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import mlcroissant as mlc
import pytest
from imports_fixtures import png, register, row_counts, work_credits

from endcredits.errors import ManifestError, ValidationError
from endcredits.interop.croissant import croissant_sha256s, export_croissant, import_croissant, load_croissant
from endcredits.manifest.build import build_manifest
from endcredits.registry.records import content_sha256
from endcredits.store.engine import Store

CSV = b"text,annotator\nthe first label,Bea Label\nthe second label,Cy Mark\n"


def _dataset(tmp_path: Path, *, files: dict[str, bytes], labelled: bool = True) -> Path:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    fields = [
        mlc.Field(
            id="labels/text",
            name="text",
            data_types=[mlc.DataType.TEXT],
            source=mlc.Source(file_object="labels.csv", extract=mlc.Extract(column="text")),
        )
    ]
    if labelled:
        fields.append(
            mlc.Field(
                id="labels/annotator",
                name="annotator",
                data_types=[mlc.DataType.TEXT],
                equivalentProperty=["prov:wasAttributedTo"],
                source=mlc.Source(file_object="labels.csv", extract=mlc.Extract(column="annotator")),
            )
        )
    metadata = mlc.Metadata(
        name="tiny-labels",
        description="Two labelled lines and an image.",
        url="https://data.example/tiny",
        license=["https://creativecommons.org/licenses/by/4.0/"],
        conforms_to="http://mlcommons.org/croissant/1.0",
        version="1.0.0",
        cite_as="tiny-labels 2026",
        date_published=dt.datetime(2026, 1, 1),
        creators=[mlc.Person(name="Ada Curator"), mlc.Organization(name="Label Co-op")],
        data_annotation_platform=["Label Studio, self-hosted"],
        annotator_demographics=["12 adults, 3 countries"],
        data_collection="Lines written by the curators",
        data_annotation_protocol="two passes per line",
        distribution=[
            mlc.FileObject(
                id=name,
                name=name,
                content_url=name,
                sha256=hashlib.sha256(data).hexdigest(),
                encoding_formats=["text/csv" if name.endswith(".csv") else "image/png"],
            )
            for name, data in files.items()
        ],
        record_sets=[mlc.RecordSet(id="labels", name="labels", fields=fields)],
    )
    path = tmp_path / "croissant.json"
    path.write_text(json.dumps(metadata.to_json(), default=str, indent=1))
    return path


def test_files_become_works_with_creators_and_rai_notes(store: Store, tmp_path: Path) -> None:
    path = _dataset(tmp_path, files={"labels.csv": CSV, "cover.png": png(30)})
    report = import_croissant(store, path)
    assert report.works_added == 2
    assert set(report.work_ids) == {content_sha256(CSV), content_sha256(png(30))}
    assert work_credits(store, content_sha256(png(30))) == {
        ("Ada Curator", "endcredits:creator"),
        ("Label Co-op", "endcredits:creator"),
    }
    assert "rai:dataAnnotationPlatform: Label Studio, self-hosted" in report.notes
    assert "rai:annotatorDemographics: 12 adults, 3 countries" in report.notes


def test_records_become_works_and_their_labelers_are_credited(store: Store, tmp_path: Path) -> None:
    path = _dataset(tmp_path, files={"labels.csv": CSV})
    report = import_croissant(store, path, record_set="labels")
    assert report.works_added == 2
    first = json.dumps(
        {"labels/annotator": "Bea Label", "labels/text": "the first label"}, sort_keys=True, separators=(",", ":")
    ).encode()
    assert content_sha256(first) in report.work_ids
    assert ("Bea Label", "endcredits:data_labeler") in work_credits(store, content_sha256(first))
    again = import_croissant(store, path, record_set="labels")
    assert (again.works_added, again.credits_added) == (0, 0)


def test_malformed_or_invalid_json_ld_and_a_wrong_hash_change_nothing(store: Store, tmp_path: Path) -> None:
    path = _dataset(tmp_path, files={"labels.csv": CSV})
    before = row_counts(store)
    broken = tmp_path / "broken.json"
    broken.write_text(path.read_text()[:-40])
    with pytest.raises(ValidationError, match=r"^malformed JSON-LD broken.json: .* line \d+") as caught:
        import_croissant(store, broken)
    assert "\n" not in str(caught.value)
    not_ld = tmp_path / "plain.json"
    not_ld.write_text('{"name": "no context"}')
    with pytest.raises(ValidationError, match="expected one JSON object with an @context"):
        import_croissant(store, not_ld)
    invalid = tmp_path / "invalid.json"
    document = json.loads(path.read_text())
    del document["distribution"][0]["contentUrl"]
    invalid.write_text(json.dumps(document))
    with pytest.raises(ValidationError, match="invalid Croissant invalid.json: .*contentUrl.* is mandatory") as caught:
        import_croissant(store, invalid)
    assert "\n" not in str(caught.value)
    (tmp_path / "labels.csv").write_bytes(CSV + b"tampered,Eve\n")
    with pytest.raises(ManifestError, match="does not match"):
        import_croissant(store, path)
    with pytest.raises(ValidationError, match="record set 'nope' is not in the dataset"):
        import_croissant(store, path, record_set="nope")
    assert row_counts(store) == before


def test_manifest_exports_as_croissant_that_mlcroissant_accepts(store: Store, tmp_path: Path) -> None:
    ids = [register(store, png(40 + i), f"image {i}") for i in range(3)]
    record = build_manifest(
        store, model_id="m1", uses=["ai_training"], as_of=dt.datetime(2026, 2, 1, tzinfo=dt.UTC), default="opt-out"
    )
    document = export_croissant(store, record.id)
    assert sorted(croissant_sha256s(document)) == sorted(ids) == sorted(record.included)
    out = tmp_path / "manifest.json"
    out.write_text(json.dumps(document))
    dataset = load_croissant(out)
    assert sorted(f.sha256 for f in dataset.metadata.distribution) == sorted(ids)
    assert record.merkle_root in str(dataset.metadata.description)


def test_a_lightly_edited_copy_of_a_registered_text_is_linked_not_paid_twice(store: Store, tmp_path: Path) -> None:
    """Imports register works the way `endcredits works add` does: by content, then by fingerprint."""
    from endcredits.registry.fingerprints import register_works
    from endcredits.registry.records import WorkIn, linked_canonical

    words = [
        "reel",
        "jig",
        "hornpipe",
        "polka",
        "slide",
        "march",
        "air",
        "waltz",
        "strathspey",
        "mazurka",
        "barndance",
        "fling",
        "highland",
        "set",
        "dance",
        "slip",
        "double",
        "single",
    ]
    text = " ".join(f"{words[(i * 7) % len(words)]}-{i % 13}" for i in range(160)) + "\n"
    edited = text.replace("jig-", "jigg-", 2).encode()  # two small edits: a different SHA-256, the same work
    with store.write() as conn:
        (original,) = register_works(conn, [WorkIn(content=text.encode(), title="the original", kind="text")])
    path = _dataset(tmp_path, files={"labels.csv": CSV, "copy.csv": edited})
    report = import_croissant(store, path)
    assert report.works_added == 2 and report.works_linked == 1
    assert any("linked, credits merged" in n for n in report.notes)
    with store.read() as conn:
        assert linked_canonical(conn, [content_sha256(edited)]) == {content_sha256(edited): original.work_id}
        assert linked_canonical(conn, [content_sha256(CSV)]) == {}
