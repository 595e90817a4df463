"""The W3C vc-di-eddsa ``eddsa-jcs-2022`` test vectors, reproduced exactly (see fixtures/README.md)."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from endcredits.errors import CredentialError
from endcredits.registry.identity import load_trust, verify_credential
from endcredits.registry.identity.eddsa_jcs import add_proof, canonicalize, hash_data, split_proof, verify_proof
from endcredits.registry.identity.multibase import (
    b58decode,
    b58encode,
    decode_public_key,
    decode_secret_key,
    did_key,
    multibase_decode,
)

VECTORS = Path(__file__).parent / "fixtures" / "w3c-eddsa-jcs-2022"
NOW = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)


def _text(name: str) -> str:
    return (VECTORS / name).read_text(encoding="utf-8")


def _json(name: str) -> Any:
    return json.loads(_text(name))


@pytest.fixture
def signed() -> dict[str, Any]:
    return dict(_json("signedJCS.json"))


@pytest.fixture
def public_key_multibase() -> str:
    return str(_json("keyPair.json")["publicKeyMultibase"])


def _secret() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(decode_secret_key(_json("keyPair.json")["privateKeyMultibase"]))


def test_key_pair_is_multikey_ed25519(public_key_multibase: str) -> None:
    raw = multibase_decode(public_key_multibase, "key")
    assert raw[:2] == b"\xed\x01" and len(raw) == 34
    assert did_key(_secret().public_key().public_bytes_raw()) == "did:key:" + public_key_multibase
    assert decode_public_key(public_key_multibase) == raw[2:]


def test_document_canonical_form_and_hash(signed: dict[str, Any]) -> None:
    unsecured, _, _ = split_proof(signed)
    assert canonicalize(unsecured) == _text("canonDocJCS.txt").encode()
    assert hashlib.sha256(canonicalize(unsecured)).hexdigest() == _text("docHashJCS.txt")


def test_proof_configuration_matches_the_vector(signed: dict[str, Any]) -> None:
    _, options, signature = split_proof(signed)
    assert options == _json("proofConfigJCS.json")
    assert signature.hex() == _text("sigHexJCS.txt")


def test_signing_reproduces_the_signature_exactly(signed: dict[str, Any]) -> None:
    unsecured, options, _ = split_proof(signed)
    data = hash_data(options, unsecured)
    assert data[32:].hex() == _text("docHashJCS.txt")
    assert _secret().sign(data).hex() == _text("sigHexJCS.txt")
    resigned = add_proof(unsecured, _secret(), options["verificationMethod"], options["created"])
    assert resigned == signed


def test_did_key_generation_hashes(signed: dict[str, Any], public_key_multibase: str) -> None:
    """The proof-side vectors written with a did:key verification method: canonical form, proof hash,
    combined hash; then sign and verify a credential built from them."""
    proof_canon = _text("proofCanonJCS.txt")
    config = json.loads(proof_canon)
    assert canonicalize(config) == proof_canon.encode()
    assert hashlib.sha256(proof_canon.encode()).hexdigest() == _text("proofHashJCS.txt")
    unsecured, _, _ = split_proof(signed)
    assert hash_data(config, unsecured).hex() == _text("combinedHashJCS.txt")
    doc = add_proof(
        {**unsecured, "issuer": "did:key:" + public_key_multibase},
        _secret(),
        config["verificationMethod"],
        config["created"],
    )
    vc = verify_credential(doc, load_trust(["did:key:" + public_key_multibase]), {}, NOW)
    assert vc.subject == "did:example:abcdefgh"


def test_verify_proof_with_the_vector_key(signed: dict[str, Any], public_key_multibase: str) -> None:
    verify_proof(signed, decode_public_key(public_key_multibase))


def test_verify_credential_trusting_the_bare_key(signed: dict[str, Any], public_key_multibase: str) -> None:
    vc = verify_credential(signed, load_trust([public_key_multibase]), {}, NOW)
    assert (vc.subject, vc.issuer, vc.id) == (
        "did:example:abcdefgh",
        "https://vc.example/issuers/5678",
        "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
    )
    assert vc.valid_from == dt.datetime(2023, 1, 1, tzinfo=dt.UTC) and vc.valid_until is None


def test_verify_credential_trusting_a_controller_document(
    signed: dict[str, Any], public_key_multibase: str, tmp_path: Path
) -> None:
    doc = {
        "id": "https://vc.example/issuers/5678",
        "verificationMethod": [
            {
                "id": "#" + public_key_multibase,
                "type": "Multikey",
                "controller": "https://vc.example/issuers/5678",
                "publicKeyMultibase": public_key_multibase,
            }
        ],
        "assertionMethod": ["#" + public_key_multibase],
    }
    (tmp_path / "issuer.json").write_text(json.dumps(doc))
    vc = verify_credential(signed, load_trust([str(tmp_path / "issuer.json")]), {}, NOW)
    assert vc.subject == "did:example:abcdefgh"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["credentialSubject"].update(alumniOf="The School of Exemplars"),
        lambda d: d.update(validFrom="2022-01-01T00:00:00Z"),
        lambda d: d["proof"].update(created="2023-02-24T23:36:39Z"),
        lambda d: d["type"].append("ExtraCredential"),
        lambda d: d.update(extra="added after signing"),
    ],
)
def test_any_change_breaks_the_signature(signed: dict[str, Any], public_key_multibase: str, change: Any) -> None:
    altered = copy.deepcopy(signed)
    change(altered)
    with pytest.raises(CredentialError) as err:
        verify_credential(altered, load_trust([public_key_multibase]), {}, NOW)
    assert err.value.reason == "signature"


def test_a_flipped_signature_byte_is_caught(signed: dict[str, Any], public_key_multibase: str) -> None:
    sig = bytearray(b58decode(signed["proof"]["proofValue"][1:]))
    sig[10] ^= 1
    signed["proof"] = {**signed["proof"], "proofValue": "z" + b58encode(bytes(sig))}
    with pytest.raises(CredentialError, match="signature"):
        verify_credential(signed, load_trust([public_key_multibase]), {}, NOW)


def test_base58_round_trip_keeps_leading_zeros() -> None:
    for data in (b"", b"\x00", b"\x00\x00\x01", bytes(range(40)), b"\xff" * 33):
        assert b58decode(b58encode(data)) == data
    assert b58encode(b"hello world") == "StV1DL6CwTryKyV"
