"""Issuing, revoking and verifying credentials: every reason a credential is refused, one test each."""

from __future__ import annotations

import copy
import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from endcredits.errors import ConflictError, CredentialError, NotFoundError, ValidationError
from endcredits.registry.identity import load_status_lists, load_trust, verify_credential
from endcredits.registry.identity.credential import parse_json
from endcredits.registry.identity.eddsa_jcs import add_proof
from endcredits.registry.identity.issuer import (
    KEY_FILE,
    STATUS_LIST_FILE,
    Issuer,
    init_issuer,
    issue_credential,
    open_issuer,
    revoke_credential,
)
from endcredits.registry.identity.multibase import base64url
from endcredits.registry.identity.statuslist import bit_at, decode_bits, encode_bits, set_bit

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
MID = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    return init_issuer(tmp_path / "guild", status_list_id="https://guild.example/status/1", at=T0)


def _issue(issuer: Issuer, subject: str = "did:example:ann", **kw: Any) -> dict[str, Any]:
    return issue_credential(
        issuer, subject, valid_from=kw.pop("valid_from", T0), valid_until=kw.pop("valid_until", T1), at=T0, **kw
    )


def _lists(issuer: Issuer) -> dict[str, dict[str, Any]]:
    return load_status_lists([issuer.directory / STATUS_LIST_FILE])


def _verify(issuer: Issuer, doc: Any, at: dt.datetime = MID, trust: list[str] | None = None) -> Any:
    return verify_credential(doc, load_trust(trust or [issuer.key.did]), _lists(issuer), at)


def _reason(issuer: Issuer, doc: Any, **kw: Any) -> str:
    with pytest.raises(CredentialError) as err:
        _verify(issuer, doc, **kw)
    assert str(err.value).startswith(err.value.reason + ": ")
    assert "\n" not in str(err.value)
    return err.value.reason


def test_issued_credential_verifies(issuer: Issuer) -> None:
    doc = _issue(issuer, identifiers={"orcid": "https://orcid.org/0000-0002-1825-0097"})
    vc = _verify(issuer, doc)
    assert vc.subject == "did:example:ann" and vc.issuer == issuer.key.did
    assert doc["credentialSubject"]["orcid"] == "0000-0002-1825-0097"
    assert doc["validUntil"] == "2027-01-01T00:00:00Z"
    assert [s.purpose for s in vc.status] == ["revocation"]
    assert vc.summary()["valid"] is True


def test_window_edges(issuer: Issuer) -> None:
    doc = _issue(issuer)
    _verify(issuer, doc, at=T0)
    _verify(issuer, doc, at=T1)
    assert _reason(issuer, doc, at=T0 - dt.timedelta(seconds=1)) == "not_yet_valid"
    assert _reason(issuer, doc, at=T1 + dt.timedelta(seconds=1)) == "expired"


def test_revoked_after_revoke(issuer: Issuer) -> None:
    doc, other = _issue(issuer), _issue(issuer, "did:example:bob")
    index = revoke_credential(issuer, doc["id"], at=MID)
    assert int(doc["credentialStatus"]["statusListIndex"]) == index
    assert _reason(issuer, doc) == "revoked"
    _verify(issuer, other)
    revoke_credential(issuer, doc["id"], at=MID)  # idempotent
    assert _reason(issuer, doc) == "revoked"


def test_untrusted_issuer(issuer: Issuer, tmp_path: Path) -> None:
    stranger = init_issuer(tmp_path / "stranger", at=T0)
    assert _reason(issuer, _issue(issuer), trust=[stranger.key.did]) == "untrusted_issuer"


def test_forged_with_another_key_reads_as_forged(issuer: Issuer, tmp_path: Path) -> None:
    """A credential claiming the trusted issuer but signed by someone else's key."""
    stranger = init_issuer(tmp_path / "stranger", at=T0)
    doc = _issue(issuer)
    body = {k: v for k, v in doc.items() if k != "proof"}
    forged = stranger.key.sign(body, T0)
    forged["proof"]["verificationMethod"] = issuer.key.verification_method
    assert _reason(issuer, forged) == "signature"


def test_key_of_one_issuer_cannot_speak_for_another(issuer: Issuer, tmp_path: Path) -> None:
    stranger = init_issuer(tmp_path / "stranger", at=T0)
    doc = {k: v for k, v in _issue(issuer).items() if k != "proof"}
    signed = stranger.key.sign(doc, T0)  # issuer says the guild; the key is the stranger's
    assert _reason(issuer, signed, trust=[issuer.key.did, stranger.key.did]) == "untrusted_issuer"


def test_status_list_not_supplied(issuer: Issuer) -> None:
    doc = _issue(issuer)
    with pytest.raises(CredentialError, match="status_unknown: .*--status-list"):
        verify_credential(doc, load_trust([issuer.key.did]), {}, MID)


def test_tampered_status_list_is_refused(issuer: Issuer) -> None:
    doc = _issue(issuer)
    revoke_credential(issuer, doc["id"], at=MID)
    lists = _lists(issuer)
    (status,) = lists.values()
    status["credentialSubject"]["encodedList"] = encode_bits(bytearray(131072 // 8))  # "un-revoke" without the key
    with pytest.raises(CredentialError) as err:
        verify_credential(doc, load_trust([issuer.key.did]), lists, MID)
    assert err.value.reason == "signature"


def test_status_list_from_another_issuer_is_refused(issuer: Issuer, tmp_path: Path) -> None:
    stranger = init_issuer(tmp_path / "stranger", status_list_id="https://guild.example/status/1", at=T0)
    doc = _issue(issuer)
    lists = load_status_lists([stranger.directory / STATUS_LIST_FILE])
    with pytest.raises(CredentialError) as err:
        verify_credential(doc, load_trust([issuer.key.did, stranger.key.did]), lists, MID)
    assert err.value.reason == "untrusted_issuer"


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"a": 1, "a": 2}', "twice"),
        ('{"a": NaN}', "NaN"),
    ],
)
def test_malformed_json(text: str, what: str) -> None:
    with pytest.raises(CredentialError, match=what) as err:
        parse_json(text)
    assert err.value.reason == "malformed"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update({"@context": ["https://www.w3.org/2018/credentials/v1"]}),
        lambda d: d.update(type=["AlumniCredential"]),
        lambda d: d.pop("issuer"),
        lambda d: d.update(credentialSubject={"name": "no id"}),
        lambda d: d.update(validUntil="2026-13-01T00:00:00Z"),
        lambda d: d.update(validUntil="2027-01-01T00:00:00"),
        lambda d: d.update(validUntil="2025-01-01T00:00:00Z"),
        lambda d: d["credentialSubject"].update(orcid="0000-0002-1825-0098"),
        lambda d: d["credentialSubject"].update(isni="0000 0001 2103 2684"),
        lambda d: d.pop("proof"),
        lambda d: d["proof"].update(proofValue="uAAAA"),
        lambda d: d["credentialStatus"].update(statusListIndex="-1"),
    ],
)
def test_malformed_credential(issuer: Issuer, change: Any) -> None:
    doc = copy.deepcopy(_issue(issuer))
    change(doc)
    assert _reason(issuer, doc) == "malformed"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["proof"].update(cryptosuite="eddsa-rdfc-2022"),
        lambda d: d["proof"].update(proofPurpose="authentication"),
        lambda d: d["credentialStatus"].update(type="StatusList2021Entry"),
    ],
)
def test_unsupported(issuer: Issuer, change: Any) -> None:
    doc = copy.deepcopy(_issue(issuer))
    change(doc)
    assert _reason(issuer, doc) == "unsupported"


def test_did_web_document_from_a_file(issuer: Issuer, tmp_path: Path) -> None:
    """A guild known by did:web: the operator saved its DID document; nothing is fetched."""
    web = "did:web:guild.example"
    did_doc = {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": web,
        "verificationMethod": [
            {
                "id": f"{web}#key-1",
                "type": "Multikey",
                "controller": web,
                "publicKeyMultibase": issuer.key.public_key_multibase,
            }
        ],
        "assertionMethod": [f"{web}#key-1"],
    }
    (tmp_path / "did.json").write_text(json.dumps(did_doc))
    body = {k: v for k, v in _issue(issuer).items() if k != "proof"}
    body["issuer"] = web
    trust = load_trust([str(tmp_path / "did.json")])
    doc = add_proof(body, issuer.key.secret, f"{web}#key-1", "2026-01-01T00:00:00Z")
    with pytest.raises(CredentialError, match="untrusted_issuer"):  # its status list is the did:key issuer's
        verify_credential(doc, trust, _lists(issuer), MID)
    del body["credentialStatus"]
    doc = add_proof(body, issuer.key.secret, f"{web}#key-1", "2026-01-01T00:00:00Z")
    assert verify_credential(doc, trust, {}, MID).issuer == web


@pytest.mark.parametrize("entry", ["did:key:z6MkNOTAKEY", "z6Mk", "/no/such/file.json", "did:web:not-a-file"])
def test_bad_trust_entries(entry: str) -> None:
    with pytest.raises(ValidationError):
        load_trust([entry])


def test_did_document_without_assertion_key(tmp_path: Path, issuer: Issuer) -> None:
    (tmp_path / "d.json").write_text(
        json.dumps(
            {
                "id": "did:web:x",
                "verificationMethod": [
                    {"id": "did:web:x#k", "type": "Multikey", "publicKeyMultibase": issuer.key.public_key_multibase}
                ],
            }
        )
    )
    with pytest.raises(ValidationError, match="assertionMethod"):
        load_trust([str(tmp_path / "d.json")])


# Issuer side --------------------------------------------------------------------------------------
def test_key_file_is_private_and_never_printed(issuer: Issuer) -> None:
    mode = (issuer.directory / KEY_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    secret = json.loads((issuer.directory / KEY_FILE).read_text())["secretKeyMultibase"]
    assert secret not in repr(issuer) and secret not in repr(issuer.key)
    assert secret not in (issuer.directory / STATUS_LIST_FILE).read_text()
    assert open_issuer(issuer.directory).key.did == issuer.key.did


def test_init_never_overwrites_a_key(issuer: Issuer) -> None:
    with pytest.raises(ConflictError):
        init_issuer(issuer.directory, at=T0)


def test_issue_refuses_bad_windows_and_ids(issuer: Issuer) -> None:
    with pytest.raises(ValidationError, match="after validFrom"):
        _issue(issuer, valid_until=T0)
    with pytest.raises(ValidationError, match="at most"):
        _issue(issuer, valid_until=T0 + dt.timedelta(days=4000))
    with pytest.raises(ValidationError, match="URL"):
        _issue(issuer, "Ann Example")
    with pytest.raises(ValidationError, match="check digit"):
        _issue(issuer, identifiers={"isni": "0000 0001 2103 2684"})


def test_revoke_unknown_credential(issuer: Issuer) -> None:
    with pytest.raises(NotFoundError):
        revoke_credential(issuer, "urn:uuid:00000000-0000-0000-0000-000000000000", at=MID)


def test_indexes_are_distinct(issuer: Issuer) -> None:
    docs = [_issue(issuer, f"did:example:{i}") for i in range(50)]
    assert len({d["credentialStatus"]["statusListIndex"] for d in docs}) == 50


# Bitstring ----------------------------------------------------------------------------------------
def test_bit_order_is_left_most_first() -> None:
    bits = bytearray(16)
    set_bit(bits, 0)
    set_bit(bits, 9)
    assert bits[0] == 0b1000_0000 and bits[1] == 0b0100_0000
    decoded = decode_bits(encode_bits(bits))
    assert bit_at(decoded, 0) and bit_at(decoded, 9) and not bit_at(decoded, 1)
    with pytest.raises(CredentialError, match="beyond"):
        bit_at(decoded, 128)


def test_gzip_bomb_is_refused() -> None:
    import gzip

    with pytest.raises(CredentialError, match="STATUS_LIST_BITS_MAX"):
        decode_bits(base64url(gzip.compress(bytes((1 << 24) + 1))))
    with pytest.raises(CredentialError, match="GZIP"):
        decode_bits(base64url(b"not gzip"))
