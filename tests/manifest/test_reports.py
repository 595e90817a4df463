"""The EU AI Act training summary and the impact report, on both backends and through the CLI: each value
says where it came from, files are private, perpetual grants are flagged, and bad input writes nothing."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.consent.records import add_grants
from endcredits.consent.rules import Grant
from endcredits.errors import NotFoundError, ValidationError
from endcredits.manifest.build import build_manifest
from endcredits.manifest.eu_summary import ProviderFacts, modality_of, size_band, write_eu_training_summary
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_works
from endcredits.store.engine import Store
from helpers_money import people

UTC = dt.UTC
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)
AS_OF = dt.datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def model(store: Store) -> dict[str, str]:
    """Four works: crawled from two domains, one licensed in perpetuity by its author, one opted out by
    TDMRep, one from a public dataset; model "m" trained on what consent allows."""
    (author,) = people(store, "author")
    items = [
        WorkIn(b"a" * 4000, "crawled page", "text", "https://news.example/a"),
        WorkIn(b"b" * 400, "crawled photo", "image/png", "https://photos.example/b.png"),
        WorkIn(b"c" * 800, "licensed essay", "text", "https://press.example/essay"),
        WorkIn(b"d" * 800, "opted out", "text", "https://blog.example/d"),
        WorkIn(b"e" * 1200, "tune", "abc-tune", "abc:collection/1"),
    ]
    with store.write() as conn:
        ids = dict(zip(["crawled", "photo", "licensed", "optout", "tune"], add_works(conn, items)))
        add_credits(conn, [CreditIn(ids["licensed"], f"person:{author}", "endcredits:composer")])
        add_grants(
            conn,
            [
                Grant("person", str(author), "ai_training", "allowed", T0, None, True, "licence/2019.pdf"),
                Grant("work", ids["optout"], "ai_training", "notAllowed", T0, None, True, "tdmrep:blog.example"),
            ],
        )
    build_manifest(store, model_id="m", uses=["ai_training"], as_of=AS_OF, default="opt-out")
    return ids


def test_modalities_and_bands() -> None:
    assert [modality_of(k) for k in ("image/svg+xml", "abc-tune", "video/mp4", "audio/wav", "3d-mesh")] == [
        "image",
        "text",
        "video",
        "audio",
        "other",
    ]
    assert size_band("text", 10**9 - 1) == "Less than 1 billion tokens"
    assert size_band("text", 10**9) == "1 billion to 10 trillion tokens"
    assert size_band("image", 2 * 10**9) == "More than 1 billion images"
    with pytest.raises(ValidationError, match="one of text"):
        ProviderFacts(sizes={"smell": 3})


def test_the_summary_follows_the_template_and_says_where_each_value_came_from(
    store: Store, model: dict[str, str], tmp_path: Path
) -> None:
    facts = ProviderFacts(provider_name="Example AI SAS", datasets={"ABC tunes": "abc:"}, crawlers=("ExampleBot",))
    files = write_eu_training_summary(store, "m", tmp_path / "out", facts)
    for path in (files.json_path, files.html_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700
    s = json.loads(files.json_path.read_text())
    general, sources, processing = s["1_general_information"], s["2_list_of_data_sources"], s["3_data_processing"]
    assert general["provider"]["name"] == {"value": "Example AI SAS", "origin": "operator"}
    assert general["provider"]["contact"] == {"value": None, "origin": "not held"}
    text = general["modalities"]["text"]
    assert text["works"] == 3 and text["size_bytes"] == 6000
    assert text["size"] == {
        "value": 1500,
        "origin": "estimate",
        "rule": "bytes / 4",
        "unit": "tokens",
        "band": "Less than 1 billion tokens",
    }
    assert general["modalities"]["image"]["size"]["value"] == 1
    assert sources["publicly_available_datasets"]["datasets"][0]["name"] == "ABC tunes"
    assert sources["licensed_or_private"]["works"] == 1
    crawled = sources["crawled_and_scraped"]
    assert crawled["works"] == 2 and crawled["crawlers"] == {"value": ["ExampleBot"], "origin": "operator"}
    assert crawled["top_domains"] == [{"domain": "news.example", "size_bytes": 4000}]
    assert processing["tdm_opt_outs"]["works_excluded"]["value"] == {"refusal_or_opt_out_signal": 1}
    assert processing["tdm_opt_outs"]["refusing_grant_sources"]["value"] == {"tdmrep": 1}
    (flag,) = s["perpetual_grants"]
    assert flag["work"] == model["licensed"] and flag["source"] == "licence/2019.pdf"
    page = files.html_path.read_text()
    for heading in ("1.1 Provider identification", "2.3 Data crawled", "3.1 Respect of reservation"):
        assert heading in page
    assert 'Example AI SAS <span class="origin">(operator)</span>' in page
    assert "perpetual: granted in perpetuity" in page


def test_an_unknown_model_writes_nothing(store: Store, model: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="model nope is not registered"):
        write_eu_training_summary(store, "nope", tmp_path / "out", ProviderFacts())
    assert not (tmp_path / "out").exists()


def _cli(store: Store, db_url: str | None, *args: str) -> tuple[int, str]:
    base = ["--data", str(store.data_dir)] + (["--db", db_url] if db_url else [])
    result = CliRunner().invoke(app, [*base, *args])
    return result.exit_code, result.stdout + result.stderr


def test_the_cli_writes_the_summary_and_refuses_bad_input(
    store: Store, db_url: str | None, model: dict[str, str], tmp_path: Path
) -> None:
    code, out = _cli(store, db_url, "report", "eu-training-summary", "--model", "nope", "--out", str(tmp_path / "x"))
    assert code == 1 and len(out.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    code, out = _cli(
        store, db_url, "report", "eu-training-summary", "--model", "m", "--out", str(tmp_path / "y"), "--json"
    )
    assert code == 0 and Path(json.loads(out)["html"]).exists()
    code, out = _cli(
        store, db_url, "consent", "suspend", "--person", "1", "--reason", "strike",
        "--starts", "2026-03-01T00:00:00Z", "--ends", "2026-02-01T00:00:00Z",
    )  # fmt: skip
    assert code == 1 and "not after it starts" in out and len(out.strip().splitlines()) == 1
    code, out = _cli(
        store, db_url, "consent", "grant", "--person", "1", "--use", "likeness_voice",
        "--decision", "allowed", "--source", "email", "--perpetual", "--project", "game-7",
    )  # fmt: skip
    assert code == 1 and "without a description of the use" in out
    code, out = _cli(store, db_url, "consent", "suspensions", "--json")
    assert json.loads(out) == {"suspensions": []}
    code, out = _cli(store, db_url, "report", "impact", "--work", model["licensed"], "--json")
    assert code == 0 and json.loads(out)["models"] == ["m"]
