"""``endcredits credential`` and ``endcredits issuer`` through the real command line."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from endcredits.cli import app

VECTORS = Path(__file__).parent / "fixtures" / "w3c-eddsa-jcs-2022"
W3C_KEY = json.loads((VECTORS / "keyPair.json").read_text())["publicKeyMultibase"]


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_verify_the_w3c_vector_given_its_issuer_key() -> None:
    code, out, err = _run("credential", "verify", str(VECTORS / "signedJCS.json"), "--trust", W3C_KEY)
    assert (code, out, err) == (0, "did:example:abcdefgh\n", "")
    code, out, _ = _run("credential", "verify", str(VECTORS / "signedJCS.json"), "--trust", W3C_KEY, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["valid"] is True and summary["issuer"] == "https://vc.example/issuers/5678"


def test_verify_refuses_with_one_line_and_the_reason(tmp_path: Path) -> None:
    altered = json.loads((VECTORS / "signedJCS.json").read_text())
    altered["credentialSubject"]["id"] = "did:example:mallory"
    (tmp_path / "altered.json").write_text(json.dumps(altered))
    (tmp_path / "broken.json").write_text('{"@context": [')
    cases = [
        (str(tmp_path / "altered.json"), W3C_KEY, "signature"),
        (str(VECTORS / "signedJCS.json"), "did:key:" + W3C_KEY, "untrusted_issuer"),
        (str(tmp_path / "broken.json"), W3C_KEY, "malformed"),
        (str(VECTORS / "signedJCS.json") + "-missing", W3C_KEY, "does not exist"),
    ]
    for path, trust, reason in cases:
        code, out, err = _run("credential", "verify", path, "--trust", trust)
        assert code == 1 and out == "" and err.count("\n") == 1 and reason in err, (reason, err)
    code, out, _ = _run("credential", "verify", str(tmp_path / "altered.json"), "--trust", W3C_KEY, "--json")
    assert code == 1 and json.loads(out)["reason"] == "signature"


def test_issuer_lifecycle_through_the_cli(tmp_path: Path) -> None:
    guild = tmp_path / "guild"
    code, out, _ = _run("issuer", "init", "--dir", str(guild), "--json")
    did = json.loads(out)["did"]
    secret = json.loads((guild / "issuer-key.json").read_text())["secretKeyMultibase"]
    assert code == 0 and did.startswith("did:key:z6Mk") and secret not in out
    cred = tmp_path / "ann.json"
    code, out, err = _run(
        "issuer",
        "issue",
        "did:example:ann",
        "--valid-from",
        "2026-01-01",
        "--valid-until",
        "2027-01-01T00:00:00Z",
        "--isni",
        "0000000121032683",
        "--dir",
        str(guild),
        "--out",
        str(cred),
    )
    assert code == 0, err
    doc = json.loads(cred.read_text())
    assert doc["credentialSubject"] == {"id": "did:example:ann", "isni": "0000 0001 2103 2683"}
    verify = (
        "credential",
        "verify",
        str(cred),
        "--trust",
        did,
        "--status-list",
        str(guild / "status-list.json"),
        "--at",
        "2026-06-01T00:00:00Z",
    )
    assert _run(*verify)[:2] == (0, "did:example:ann\n")
    code, out, _ = _run("issuer", "revoke", doc["id"], "--dir", str(guild))
    assert code == 0 and "revoked" in out
    code, _, err = _run(*verify)
    assert code == 1 and err.startswith("error [credential]: revoked:")
    code, _, err = _run(*verify[:-1], "2027-06-01T00:00:00Z")
    assert code == 1 and "expired" in err


@pytest.mark.parametrize(
    "args",
    [
        ("--valid-from", "2026-01-01"),  # no end: never perpetual by default
        ("--valid-from", "2026-01-01", "--valid-until", "2025-01-01"),
        ("--valid-from", "2026-01-01", "--valid-until", "2027-01-01", "--orcid", "0000-0002-1825-0098"),
    ],
)
def test_issue_refuses_bad_input(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert _run("issuer", "init", "--dir", str(tmp_path / "g"))[0] == 0
    code, out, err = _run("issuer", "issue", "did:example:ann", *args, "--dir", str(tmp_path / "g"))
    assert code in (1, 2) and out == "" and err


def test_attach_and_refresh_on_the_store(tmp_path: Path, db_url: str | None) -> None:
    base = ["--data", str(tmp_path / "data"), *(["--db", db_url] if db_url else [])]
    assert _run(*base, "init")[0] == 0
    assert _run(*base, "people", "add", "ann")[0] == 0
    guild = tmp_path / "guild"
    did = json.loads(_run("issuer", "init", "--dir", str(guild), "--json")[1])["did"]
    cred = tmp_path / "ann.json"
    _run(
        "issuer",
        "issue",
        "urn:uuid:0b8e7c1e-5d0f-4a51-9d39-1c1f0b7a2f10",
        "--valid-from",
        "2026-01-01",
        "--valid-until",
        "2027-01-01",
        "--dir",
        str(guild),
        "--out",
        str(cred),
    )
    status = ("--status-list", str(guild / "status-list.json"))
    at = ("--at", "2026-06-01T00:00:00Z")
    tampered = copy.deepcopy(json.loads(cred.read_text()))
    tampered["validUntil"] = "2099-01-01T00:00:00Z"
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    code, _, err = _run(
        *base, "credential", "attach", "1", str(tmp_path / "tampered.json"), "--trust", did, *status, *at
    )
    assert code == 1 and "signature" in err
    people = json.loads(_run(*base, "people", "list", "--json")[1])["people"]
    assert people[0]["verified"] is False
    code, out, err = _run(*base, "credential", "attach", "1", str(cred), "--trust", did, *status, *at, "--json")
    assert code == 0, err
    assert json.loads(out)["attached"] is True
    assert json.loads(_run(*base, "people", "list", "--json")[1])["people"][0]["verified"] is True
    code, out, _ = _run(
        *base, "credential", "refresh", "--trust", did, *status, "--at", "2027-02-01T00:00:00Z", "--json"
    )
    assert code == 0 and json.loads(out)["unverified"][0]["reason"] == "expired"
    assert json.loads(_run(*base, "people", "list", "--json")[1])["people"][0]["verified"] is False
