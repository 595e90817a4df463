"""The edges build AttributionSettings: the CLI's options are its fields (same names, defaults, help and
checks), the API's body validates through it (422), and a bad setting changes nothing."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from endcredits.attribution.settings import FEATURES, AttributionSettings
from endcredits.cli import app
from endcredits.cli.attribution import OPTION_OF
from endcredits.service import create_app
from endcredits.service.auth import create_api_key
from endcredits.service.models import AttributionIn
from endcredits.store.engine import Store
from helpers_money import World, bound_char_lm

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


def _params(command: str) -> dict[str, Any]:
    click = typer.main.get_command(app)
    return {p.name: p for p in click.commands[command].params}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("command", "kinds"), [("featurize", (FEATURES,)), ("attribute", None)])
def test_each_cli_option_is_a_settings_field_with_its_default_and_help(command: str, kinds: Any) -> None:
    params = _params(command)
    fields = [f for f in dataclasses.fields(AttributionSettings) if kinds is None or f.metadata["kind"] in kinds]
    for f in fields:
        option = params[f.name]
        assert option.opts == [OPTION_OF[f.name]], f.name
        default = tuple(option.default or ()) if f.name == "exclude" else option.default  # repeatable: none given
        assert default == f.default and option.help == AttributionSettings.help(f.name), f.name
    assert ("method" in params) == (kinds is None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["featurize", "--k", "4"], "--k 4 must be in [8, 65536]"),
        (["featurize", "--chunk-size", "0"], "--chunk-size 0 must be in [1, 4096]"),
        (["featurize", "--length-chars", "1"], "--length-chars 1 must be in [2, 65536]"),
        (["featurize", "--ensemble", "members"], "--ensemble must be one of final, trajectory, not 'members'"),
        (
            ["featurize", "--projection", "jl"],
            "--projection must be one of auto, kronecker, eigen, gaussian, identity, not 'jl'",
        ),
        (["featurize", "--exclude", "a", "--exclude", "a"], "--exclude repeats pattern 'a'; name each pattern once"),
        (["attribute", "--exclude", "embed weight"], "--exclude pattern 'embed weight' has a space"),
        (["attribute", "--lambda", "-1"], "--lambda -1.0 must be in [0, 1e+06]"),
        (["attribute", "--top-k", "0"], "--top-k 0 must be in [1, 1000]"),
        (["attribute", "--seed", "-3"], "--seed -3 must be in [0, 2147483647]"),
    ],
)
def test_a_cli_setting_out_of_range_is_one_line_naming_the_option_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    data = tmp_path / "data"
    where = ["--data", str(data), args[0], "--checkpoint", str(tmp_path / "m.pt"), "--manifest", "m"]
    if args[0] == "attribute":
        where += ["--outputs", str(tmp_path / "o.jsonl"), "--out", str(tmp_path / "s.csv")]
    result = CliRunner().invoke(app, where + args[1:])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error [validation]: {message}"), lines
    assert not data.exists() and not (tmp_path / "s.csv").exists()


@pytest.fixture
def served(store: Store) -> tuple[TestClient, World, dict[str, str]]:
    world = World(store)  # three works whose bytes are short texts, in a manifest for model m
    bound_char_lm(world)
    with store.write() as conn:
        key = create_api_key(conn, role="operator", scopes=["ingest"], label="settings").key
    return TestClient(create_app(store)), world, {"Authorization": f"Bearer {key}"}


def test_the_api_attributes_with_the_settings_it_is_given_and_refuses_bad_ones_with_422(
    store: Store, served: tuple[TestClient, World, dict[str, str]]
) -> None:
    client, world, auth = served
    body = {"manifest_id": world.manifest.id, "outputs": [{"output_id": "o1", "text": "song film"}]}
    features = store.data_dir / "features"
    for bad, message in [
        ({"k": 4}, "k 4 must be in [8, 65536]"),
        ({"exclude": ["embed weight"]}, "exclude pattern 'embed weight' has a space"),
        ({"exclude": ["nothing.*"]}, "exclude pattern 'nothing.*' (--exclude) matches no parameter of the model"),
        ({"lambda": -1.0}, "lambda_ -1.0 must be in [0, 1e+06]"),
        ({"chunk_size": 5000}, "chunk_size 5000 must be in [1, 4096]"),
    ]:
        r = client.post("/api/v1/attributions", json={**body, **bad}, headers=auth)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation", r.text
        assert message in r.json()["error"]["message"]
        assert not features.exists()
    settings = {"k": 16, "projection": "kronecker", "chunk_size": 2, "top_k": 2, "lambda": 10.0}
    one = client.post("/api/v1/attributions", json={**body, **settings}, headers=auth)
    assert one.status_code == 200, one.text
    expected = AttributionSettings(k=16, projection="kronecker", chunk_size=2, top_k=2, lambda_=10.0)
    assert one.json()["settings"] == expected.to_dict() and len(one.json()["outputs"][0]["top_works"]) == 2
    two = client.post("/api/v1/attributions", json={**body, **settings, "seed": 1}, headers=auth)
    assert two.json()["outputs"][0]["work_scores"] != one.json()["outputs"][0]["work_scores"]
    assert len(list(features.glob("*/*"))) == 2  # one features directory per features settings
    again = client.post("/api/v1/attributions", json={**body, **settings, "method": "tracin"}, headers=auth)
    assert again.json()["method"] == "tracin" and len(list(features.glob("*/*"))) == 2  # features reused
    # The default projection, auto: this small model's exact gradients fit, so no seed moves a score.
    exact = [client.post("/api/v1/attributions", json={**body, "seed": seed}, headers=auth).json() for seed in (0, 1)]
    assert [e["settings"]["projection"] for e in exact] == ["identity", "identity"]
    assert exact[0]["outputs"][0]["work_scores"] == exact[1]["outputs"][0]["work_scores"]


def test_the_api_body_builds_the_settings() -> None:
    body = AttributionIn.model_validate(
        {"manifest_id": "m", "outputs": [{"output_id": "o", "text": "ab"}], "ensemble": "final", "lambda": 5.0}
    )
    assert body.settings() == AttributionSettings(lambda_=5.0)
    named = AttributionIn.model_validate(
        {"manifest_id": "m", "outputs": [{"output_id": "o", "text": "ab"}], "exclude": ["b", "a"]}
    )
    assert named.settings() == AttributionSettings(exclude=("a", "b"))
