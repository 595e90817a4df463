"""The ``eddsa-jcs-2022`` Data Integrity cryptosuite (W3C vc-di-eddsa, section 3.3), on dicts.

Hashing, exactly as the spec says:

    proof config  = the proof without ``proofValue`` (its ``@context`` is the document's)
    document      = the secured document without ``proof``
    hash data     = SHA-256(JCS(proof config)) || SHA-256(JCS(document))       (64 bytes)
    proofValue    = "z" + base58btc(Ed25519 signature over hash data)

JCS is RFC 8785 JSON canonicalization, through the ``rfc8785`` package. Resolving which key may sign
(the verification method) is the caller's: ``verify_proof`` takes the public key.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from endcredits.errors import CredentialError, ValidationError
from endcredits.registry.identity.multibase import base58btc, multibase_decode

PROOF_TYPE = "DataIntegrityProof"
CRYPTOSUITE = "eddsa-jcs-2022"
SIGNATURE_BYTES = 64


def canonicalize(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes; a value JSON cannot carry exactly is malformed input."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CredentialError("malformed", f"document cannot be canonicalized (RFC 8785): {exc}") from None


def hash_data(proof_config: Mapping[str, Any], document: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical proof configuration, then SHA-256 of the canonical document."""
    _check_suite(proof_config)
    return hashlib.sha256(canonicalize(proof_config)).digest() + hashlib.sha256(canonicalize(document)).digest()


def _check_suite(proof: Mapping[str, Any]) -> None:
    if proof.get("type") != PROOF_TYPE or proof.get("cryptosuite") != CRYPTOSUITE:
        raise CredentialError(
            "unsupported",
            f"proof is {proof.get('type')!r}/{proof.get('cryptosuite')!r}; only {PROOF_TYPE}/{CRYPTOSUITE} is accepted",
        )


def add_proof(
    document: Mapping[str, Any],
    secret_key: Ed25519PrivateKey,
    verification_method: str,
    created: str,
    proof_purpose: str = "assertionMethod",
) -> dict[str, Any]:
    """A copy of ``document`` with an ``eddsa-jcs-2022`` proof (spec 3.3.1 Create Proof)."""
    unsecured = {k: copy.deepcopy(v) for k, v in document.items() if k != "proof"}
    config: dict[str, Any] = {
        "type": PROOF_TYPE,
        "cryptosuite": CRYPTOSUITE,
        "created": created,
        "verificationMethod": verification_method,
        "proofPurpose": proof_purpose,
    }
    if "@context" in unsecured:
        config["@context"] = copy.deepcopy(unsecured["@context"])
    signature = secret_key.sign(hash_data(config, unsecured))
    return {**unsecured, "proof": {**config, "proofValue": base58btc(signature)}}


def split_proof(secured: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """(unsecured document, proof options, signature) as the Verify Proof algorithm prepares them.

    When the proof carries an ``@context``, the document's must start with the same values in the
    same order, and the document is hashed with the proof's ``@context`` (spec 3.3.2, step 4)."""
    proof = secured.get("proof")
    if isinstance(proof, list):
        if len(proof) != 1:
            raise CredentialError("unsupported", f"the document has {len(proof)} proofs; exactly one is accepted")
        proof = proof[0]
    if not isinstance(proof, dict):
        raise CredentialError("malformed", "the document has no proof object")
    _check_suite(proof)
    options = {k: copy.deepcopy(v) for k, v in proof.items() if k != "proofValue"}
    value = proof.get("proofValue")
    if not isinstance(value, str) or not value.startswith("z"):
        raise CredentialError("malformed", "proof.proofValue must be base58btc multibase text starting with 'z'")
    try:
        signature = multibase_decode(value, "proof.proofValue")
    except ValidationError as exc:
        raise CredentialError("malformed", str(exc)) from None
    if len(signature) != SIGNATURE_BYTES:
        raise CredentialError("signature", f"proofValue decodes to {len(signature)} bytes; an Ed25519 signature is 64")
    unsecured = {k: copy.deepcopy(v) for k, v in secured.items() if k != "proof"}
    if "@context" in options:
        wanted = options["@context"] if isinstance(options["@context"], list) else [options["@context"]]
        have = unsecured.get("@context")
        have_list = have if isinstance(have, list) else [have]
        if have_list[: len(wanted)] != wanted:
            raise CredentialError("signature", "the document's @context does not start with the proof's @context")
        unsecured["@context"] = copy.deepcopy(options["@context"])
    return unsecured, options, signature


def verify_proof(secured: Mapping[str, Any], public_key: bytes) -> None:
    """Check the ``eddsa-jcs-2022`` proof of ``secured`` with a raw Ed25519 public key, or raise
    ``CredentialError("signature", ...)``: any change to the document or the proof breaks it."""
    unsecured, options, signature = split_proof(secured)
    data = hash_data(options, unsecured)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except InvalidSignature:
        raise CredentialError(
            "signature", "the eddsa-jcs-2022 proof does not verify: the document was altered or not signed by this key"
        ) from None
