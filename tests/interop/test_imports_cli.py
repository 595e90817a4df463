"""``endcredits interop``: every import and export through the command line, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

from imports_fixtures import make_ca, png, row_counts, work_grants
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.registry.records import content_sha256
from endcredits.store.engine import open_store


def test_interop_commands(tmp_path: Path, db_url: str | None) -> None:
    runner = CliRunner()
    base = ["--data", str(tmp_path / "data")] + (["--db", db_url] if db_url else [])

    def run(*args: str) -> str:
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 0, f"{args}: {result.stderr or result.stdout}"
        return result.stdout

    run("init")
    asset = tmp_path / "scan.png"
    asset.write_bytes(png(50))
    work = content_sha256(png(50))
    run(
        "works", "add", str(asset), "--title", "scan", "--kind", "image", "--source", "https://example.org/img/scan.png"
    )

    ca = make_ca()
    chain, key = ca.leaf("cli signer", "endcredits tests")
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    (tmp_path / "root.pem").write_bytes(ca.root_pem)
    run(
        "interop",
        "sign-c2pa",
        work,
        "--asset",
        str(asset),
        "--cert",
        str(tmp_path / "chain.pem"),
        "--key",
        str(tmp_path / "key.pem"),
        "--out",
        str(tmp_path / "signed.png"),
    )
    report = json.loads(
        run("interop", "import-c2pa", str(tmp_path / "signed.png"), "--trust", str(tmp_path / "root.pem"), "--json")
    )
    assert report["work_ids"] == [work]

    (tmp_path / "tdmrep.json").write_text('[{"location": "/img/*", "tdm-reservation": 1}]')
    (tmp_path / "page.html").write_text('<meta name="tdm-reservation" content="0">')
    out = json.loads(
        run(
            "interop",
            "import-tdmrep",
            str(tmp_path / "tdmrep.json"),
            str(tmp_path / "page.html"),
            "--work",
            work,
            "--days",
            "30",
            "--json",
        )
    )
    assert out["grants_added"] == 4
    (tmp_path / "ai.txt").write_text("User-Agent: *\nDisallow: *.png\n")
    assert "2 grants added" in run("interop", "import-ai-txt", str(tmp_path / "ai.txt"), "--work", work, "--perpetual")
    (tmp_path / "a.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/"><rdf:Description plus:DataMining='
        '"http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-GENAIMLTRAINING"/></rdf:RDF></x:xmpmeta>'
    )
    run("interop", "import-xmp", str(tmp_path / "a.xmp"), "--work", work, "--until", "2030-01-01")

    store = open_store(tmp_path / "data", db_url)
    try:
        grants = work_grants(store, work)
        assert grants["ai_generative_training"][1].startswith("iptc:plus:DataMining a.xmp")
        assert grants["data_mining"] == ("allowed", "tdmrep:html-meta page.html: tdm-reservation 0")
        before = row_counts(store)
    finally:
        store.dispose()

    bad = runner.invoke(app, [*base, "interop", "import-tdmrep", str(tmp_path / "ai.txt"), "--work", "ab" * 32])
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1 and "not registered" in bad.stderr
    (tmp_path / "bad.json").write_text('{"@context": {}, ')
    bad = runner.invoke(app, [*base, "interop", "import-croissant", str(tmp_path / "bad.json")])
    assert bad.exit_code == 1 and bad.stderr.startswith("error [validation]: malformed JSON-LD bad.json")
    store = open_store(tmp_path / "data", db_url)
    try:
        assert row_counts(store) == before
    finally:
        store.dispose()

    built = json.loads(run("manifest", "build", "--model", "m", "--use", "research", "--default", "opt-out", "--json"))
    run("interop", "export-croissant", "--manifest", built["manifest_id"], "--out", str(tmp_path / "m.json"))
    document = json.loads((tmp_path / "m.json").read_text())
    assert [f["sha256"] for f in document["distribution"]] == [work]
