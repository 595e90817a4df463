"""C2PA manifests in and out with c2pa-python, on files made here with a local certificate authority."""

from __future__ import annotations

import io
import json
from pathlib import Path

import c2pa
import pytest
from imports_fixtures import (
    T0,
    WINDOW,
    make_ca,
    parents_of,
    png,
    register,
    row_counts,
    sign_raw,
    work_credits,
    work_grants,
)

from endcredits.consent.records import add_grants
from endcredits.consent.rules import Grant
from endcredits.errors import ManifestError, ValidationError
from endcredits.interop.c2pa_manifests import Ingredient, import_c2pa, read_manifest_store, sign_work
from endcredits.registry.records import CreditIn, add_credits, content_sha256, name_ids
from endcredits.store.engine import Store


def _credit(store: Store, work_id: str, name: str, role: str) -> None:
    with store.write() as conn:
        nid = name_ids(conn, [name])[name]
        add_credits(conn, [CreditIn(work_id, f"name:{nid}", role)])


def _forbid(store: Store, work_id: str, use: str) -> None:
    with store.write() as conn:
        add_grants(conn, [Grant("work", work_id, use, "notAllowed", T0, None, True, "operator/test")])


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_signed_work_validates_as_trusted_with_our_anchor_and_reads_back(store: Store, tmp_path: Path) -> None:
    ca = make_ca()
    asset = png(1)
    work = register(store, asset, "body scan")
    _credit(store, work, "Sam Subject", "endcredits:scan_subject")
    _forbid(store, work, "ai_generative_training")

    signed = sign_work(store, work, asset, "image/png", ca.signing_key(), at=T0)

    with c2pa.Reader(
        "image/png",
        io.BytesIO(signed),
        None,
        c2pa.Context.from_dict({"trust": {"trust_anchors": ca.root_pem.decode()}, "verify": {"verify_trust": True}}),
    ) as reader:
        assert reader.get_validation_state() == "Trusted"
    with c2pa.Reader("image/png", io.BytesIO(signed)) as reader:
        assert reader.get_validation_state() == "Valid"  # without the anchor: valid, not trusted
    report = import_c2pa(store, _write(tmp_path, "scan.png", signed), WINDOW, trust_anchors_pem=ca.root_pem.decode())
    assert report.work_ids == (work,) and report.works_added == 0  # the manifest names the registered work
    grants = work_grants(store, work)
    assert grants["ai_generative_training"][0] == "notAllowed"
    assert grants["ai_generative_training"][1].startswith("c2pa:urn:c2pa:")
    assert ("Sam Subject", "endcredits:scan_subject") in work_credits(store, work)

    again = import_c2pa(store, _write(tmp_path, "scan.png", signed), WINDOW)
    assert (again.grants_added, again.credits_added, again.grants_unchanged) == (0, 0, 1)


def test_training_mining_under_both_labels_constrained_and_unknown_count_as_not_allowed(
    store: Store, tmp_path: Path
) -> None:
    ca = make_ca()
    definition = {
        "title": "found.png",
        "assertions": [
            {
                "label": "cawg.training-mining",
                "data": {
                    "entries": {
                        "cawg.ai_generative_training": {"use": "notAllowed"},
                        "cawg.ai_training": {"use": "constrained", "constraints_info": "https://example.org/licence"},
                        "cawg.data_mining": {"use": "allowed"},
                    }
                },
            },
            {"label": "c2pa.training-mining", "data": {"entries": {"c2pa.ai_inference": {"use": "perhaps"}}}},
            {
                "label": "stds.schema-org.CreativeWork",
                "data": {
                    "@context": "https://schema.org",
                    "@type": "CreativeWork",
                    "author": [{"@type": "Person", "name": "Ada Lens"}],
                    "contributor": [
                        {
                            "@type": "Role",
                            "roleName": "ebu:lighting",
                            "contributor": {"@type": "Person", "name": "Gaffer Gil"},
                        },
                        {"@type": "Person", "name": "Helper Hal"},
                    ],
                },
            },
        ],
    }
    asset = sign_raw(definition, png(2), ca.signing_key())
    report = import_c2pa(store, _write(tmp_path, "found.png", asset), WINDOW)
    (work,) = report.work_ids
    assert work == content_sha256(asset) and report.works_added == 1
    decisions = {use: d for use, (d, _) in work_grants(store, work).items()}
    assert decisions == {
        "ai_generative_training": "notAllowed",
        "ai_training": "notAllowed",
        "ai_inference": "notAllowed",
        "data_mining": "allowed",
    }
    assert work_credits(store, work) == {
        ("Ada Lens", "endcredits:author"),
        ("Gaffer Gil", "ebu:lighting"),
        ("Helper Hal", "endcredits:contributor"),
    }
    assert any("perhaps" in note for note in report.notes)


def test_roles_outside_the_known_schemes_are_credited_as_contributors_with_a_note(store: Store, tmp_path: Path) -> None:
    """An unknown scheme or code in a signed manifest must not fail the import, nor drop the person."""
    ca = make_ca()
    definition = {
        "title": "crew.png",
        "assertions": [
            {
                "label": "stds.schema-org.CreativeWork",
                "data": {
                    "@context": "https://schema.org",
                    "@type": "CreativeWork",
                    "contributor": [
                        {
                            "@type": "Role",
                            "roleName": "acme:best_boy",
                            "contributor": {"@type": "Person", "name": "Bo Grip"},
                        },
                        {
                            "@type": "Role",
                            "roleName": "ebu:no_such_role",
                            "contributor": {"@type": "Person", "name": "Ned Role"},
                        },
                        {
                            "@type": "Role",
                            "roleName": "Key Grip",
                            "contributor": {"@type": "Person", "name": "Kay Grip"},
                        },
                    ],
                },
            }
        ],
    }
    asset = sign_raw(definition, png(12), ca.signing_key())
    report = import_c2pa(store, _write(tmp_path, "crew.png", asset), WINDOW)
    (work,) = report.work_ids
    assert work_credits(store, work) == {
        ("Bo Grip", "endcredits:contributor"),
        ("Ned Role", "endcredits:contributor"),
        ("Kay Grip", "endcredits:contributor"),
    }
    for stated in ("acme:best_boy", "ebu:no_such_role", "Key Grip"):
        assert any(stated in note and "credited as endcredits:contributor" in note for note in report.notes), stated


def test_ingredient_chain_becomes_lineage_scan_double_film(store: Store, tmp_path: Path) -> None:
    ca = make_ca()
    key = ca.signing_key()
    scan_png, double_png, film_png = png(3), png(4), png(5)
    scan, double, film = (
        register(store, scan_png, "scan"),
        register(store, double_png, "digital double"),
        register(store, film_png, "film frame"),
    )
    _credit(store, scan, "Sam Subject", "endcredits:scan_subject")
    signed_scan = sign_work(store, scan, scan_png, "image/png", key, at=T0)
    signed_double = sign_work(
        store,
        double,
        double_png,
        "image/png",
        key,
        at=T0,
        ingredients=[Ingredient(signed_scan, "image/png", "scan", "parentOf")],
    )
    signed_film = sign_work(
        store,
        film,
        film_png,
        "image/png",
        key,
        at=T0,
        ingredients=[
            Ingredient(signed_double, "image/png", "double", "componentOf"),
            Ingredient(png(9), "image/png", "unregistered plate", "componentOf"),
        ],
    )

    report = import_c2pa(
        store, _write(tmp_path, "film.png", signed_film), WINDOW, trust_anchors_pem=ca.root_pem.decode()
    )
    assert report.lineage_added == 2
    assert parents_of(store, film) == {double} and parents_of(store, double) == {scan}
    assert any("unregistered plate" in note for note in report.notes)


def test_cawg_identity_assertion_credits_the_named_actor(store: Store, tmp_path: Path) -> None:
    ca = make_ca()
    key = ca.signing_key()
    actor_chain, actor_key = ca.leaf("Ada Scan", "Guild of Scanners")
    settings = {
        "signer": {
            "local": {
                "alg": "es256",
                "sign_cert": key.cert_chain_pem.decode(),
                "private_key": key.private_key_pem.decode(),
            }
        },
        "cawg_x509_signer": {
            "local": {"alg": "es256", "sign_cert": actor_chain.decode(), "private_key": actor_key.decode()}
        },
    }
    context = c2pa.Context.from_dict(settings)
    # c2pa-python 0.38.1 only knows a Context has a signer when given a Signer object; the settings'
    # dual signer (claim + CAWG X.509 identity) is the SDK's documented way to write a CAWG identity.
    context._has_signer = True
    builder = c2pa.Builder({"title": "portrait", "assertions": []}, context)
    builder.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.DIGITAL_CAPTURE)
    out = io.BytesIO()
    builder.sign("image/png", io.BytesIO(png(6)), out)
    store_json = read_manifest_store(out.getvalue(), name="portrait.png")
    active = store_json["manifests"][store_json["active_manifest"]]
    assert any(a["label"] == "cawg.identity" for a in active["assertions"])

    report = import_c2pa(store, _write(tmp_path, "portrait.png", out.getvalue()), WINDOW)
    assert ("Ada Scan", "endcredits:named_actor") in work_credits(store, report.work_ids[0])


def test_tampered_asset_is_refused_in_one_line_and_nothing_changes(store: Store, tmp_path: Path) -> None:
    ca = make_ca()
    asset = png(7)
    work = register(store, asset, "original")
    signed = bytearray(sign_work(store, work, asset, "image/png", ca.signing_key(), at=T0))
    at = bytes(signed).find(b"IDAT")
    signed[at + 12] ^= 0xFF
    before = row_counts(store)
    with pytest.raises(ManifestError, match="do not match the hash") as caught:
        import_c2pa(store, _write(tmp_path, "tampered.png", bytes(signed)), WINDOW)
    assert "\n" not in str(caught.value) and "assertion.dataHash.mismatch" in str(caught.value)
    assert row_counts(store) == before


def test_untrusted_signer_and_missing_manifest_are_refused(store: Store, tmp_path: Path) -> None:
    ca, other = make_ca(), make_ca("someone else's root")
    asset = sign_raw({"title": "x", "assertions": []}, png(8), ca.signing_key())
    before = row_counts(store)
    with pytest.raises(ManifestError, match="not trusted by the given anchors"):
        import_c2pa(store, _write(tmp_path, "x.png", asset), WINDOW, trust_anchors_pem=other.root_pem.decode())
    with pytest.raises(ValidationError, match="carries no C2PA manifest"):
        import_c2pa(store, _write(tmp_path, "plain.png", png(8)), WINDOW)
    assert row_counts(store) == before


def test_sign_refuses_bytes_that_are_not_the_work(store: Store) -> None:
    work = register(store, png(10), "a")
    with pytest.raises(ValidationError, match="sign the exact bytes"):
        sign_work(store, work, png(11), "image/png", make_ca().signing_key(), at=T0)


def test_manifest_definition_exports_consent_and_credits(store: Store) -> None:
    from endcredits.interop.c2pa_manifests import manifest_for_work

    work = register(store, png(12), "exported")
    _forbid(store, work, "ai_training")
    _credit(store, work, "Lee Label", "endcredits:data_labeler")
    with store.read() as conn:
        definition = manifest_for_work(conn, work, T0)
    by_label = {a["label"]: a["data"] for a in definition["assertions"]}
    assert by_label["org.endcredits.work"]["sha256"] == work
    # ai_training notAllowed also forbids generative training (consent rules): both are exported.
    assert by_label["cawg.training-mining"]["entries"] == {
        "cawg.ai_generative_training": {"use": "notAllowed"},
        "cawg.ai_training": {"use": "notAllowed"},
    }
    assert json.dumps(by_label["stds.schema-org.CreativeWork"]).count("Lee Label") == 1
