"""An operator's own models, tried as the docs tell them to: a `transformers` GPT-2 over text works and a
`diffusers` UNet over image works (sklearn's handwritten digits), each trained here, go through
`manifest run record` -> `featurize` -> `attribute` -> `accrue --run` -> `statements` -> `verify` by the CLI,
and through `POST /api/v1/attributions` -> `POST /api/v1/usage-batches`, with no workaround."""

from __future__ import annotations

import base64
import io
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.payouts.iban import make_test_iban
from hf_models import save_gpt2, save_unet, train_gpt2, train_unet

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

AGREEMENT = """\
id = "own"
version = 1
currency = "EUR"
pool_rate = "0.5"
rights_holder_share = "0"
lineage_pass_through = "0"
payout_threshold = "0.01"
escrow_period_days = 365
[role_weights]
"endcredits:author" = 1
"""

TEXTS = [
    "the tide comes in over the grey stones at dawn",
    "a fiddler plays a reel for the harvest dance",
    "snow on the hill and smoke above the chimney",
    "the ferryman counts his coins by lantern light",
    "bees in the clover and a lark above the field",
    "an old map of the harbour with its seven piers",
]


def _digits_png(n: int) -> list[bytes]:
    """The first ``n`` of sklearn's 8x8 handwritten digits, as 16x16 grayscale PNG files."""
    from PIL import Image
    from sklearn.datasets import load_digits

    files = []
    for pixels in load_digits().images[:n]:
        image = Image.fromarray((pixels * (255 / 16)).astype(np.uint8), mode="L").resize((16, 16))
        out = io.BytesIO()
        image.save(out, format="PNG")
        files.append(out.getvalue())
    return files


def _gpt2(folder: Path, contents: list[bytes]) -> Path:
    return train_gpt2(save_gpt2(folder), [c.decode() for c in contents], steps=10)


def _unet(folder: Path, contents: list[bytes]) -> Path:
    from endcredits.attribution.diffusion import images_from_bytes

    images = images_from_bytes(contents, channels=1, side=16, what=[str(i) for i in range(len(contents))])
    return train_unet(save_unet(folder), images, steps=5)


CASES: dict[str, tuple[str, str, Callable[[], list[bytes]], Callable[[Path, list[bytes]], Path]]] = {
    # kind: (work kind, output field, the works' contents, build and train the model)
    "hf-causal-lm": ("text", "text", lambda: [t.encode() for t in TEXTS], _gpt2),
    "diffusers-unet": ("image", "image_base64", lambda: _digits_png(6), _unet),
}


class Operator:
    """The CLI with one data directory, failing loudly."""

    def __init__(self, tmp_path: Path, db_url: str | None) -> None:
        self.runner = CliRunner()
        self.data = tmp_path / "data"
        self.base = ["--data", str(self.data)] + (["--db", db_url] if db_url else [])

    def json(self, *args: str) -> dict:  # type: ignore[type-arg]
        result = self.runner.invoke(app, [*self.base, *args, "--json"])
        assert result.exit_code == 0, f"{args}: {result.stderr or result.stdout}"
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def text(self, *args: str) -> str:
        result = self.runner.invoke(app, [*self.base, *args])
        assert result.exit_code == 0, f"{args}: {result.stderr or result.stdout}"
        return result.stdout

    def fails(self, *args: str) -> str:
        result = self.runner.invoke(app, [*self.base, *args])
        assert result.exit_code != 0, f"{args} succeeded"
        return result.stderr


def _register(op: Operator, tmp_path: Path, work_kind: str, contents: list[bytes]) -> tuple[int, str]:
    """One person credited as author on every work; a manifest of them all for model ``own``."""
    (tmp_path / "agreement.toml").write_text(AGREEMENT)
    op.json("agreement", "load", str(tmp_path / "agreement.toml"))
    person = op.json("people", "add", "Ada Byrne", "--iban", make_test_iban("DE", 7), "--bic", "TESTDEFF")
    pid = person["person_id"]
    for i, content in enumerate(contents):
        path = tmp_path / f"work-{i}.{'txt' if work_kind == 'text' else 'png'}"
        path.write_bytes(content)
        work = op.json("works", "add", str(path), "--title", f"work {i}", "--kind", work_kind)["work_id"]
        op.json("credits", "add", work, "--payee", f"person:{pid}", "--role", "endcredits:author")
    manifest = op.json(
        "manifest", "build", "--model", "own", "--use", "ai_generative_training", "--default", "opt-out",
        "--as-of", "2026-06-01T00:00:00Z",
    )  # fmt: skip
    assert manifest["included"] == len(contents)
    return pid, manifest["manifest_id"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CASES))
def test_an_operators_model_goes_from_checkpoint_to_statement_by_the_cli(
    kind: str, tmp_path: Path, db_url: str | None
) -> None:
    work_kind, field, contents_of, build = CASES[kind]
    contents = contents_of()
    op = Operator(tmp_path, db_url)
    op.json("init")
    pid, manifest_id = _register(op, tmp_path, work_kind, contents)
    checkpoint = build(tmp_path / "model", contents)
    featurize = ("featurize", "--checkpoint", str(checkpoint), "--model-kind", kind, "--manifest", manifest_id)
    assert "from no recorded training run" in op.fails(*featurize, "--k", "32")
    op.json(
        "manifest", "run", "record", "--run", "own-1", "--manifest", manifest_id, "--started",
        "2026-06-02T00:00:00Z", "--finished", "2026-06-02T01:00:00Z", "--checkpoint", str(checkpoint),
        "--model-kind", kind,
    )  # fmt: skip
    features = op.json(*featurize, "--k", "32")
    assert features["works"] == len(contents) and features["coverage"]["share_covered"] == 1.0  # every parameter

    outputs = tmp_path / "outputs.jsonl"
    values = (
        [contents[0].decode(), TEXTS[1][:20]]
        if field == "text"
        else [base64.b64encode(c).decode() for c in contents[:2]]
    )
    outputs.write_text("".join(json.dumps({"output_id": f"o{i}", field: v}) + "\n" for i, v in enumerate(values)))
    scores = tmp_path / "scores.csv"
    att = op.json(
        "attribute", "--checkpoint", str(checkpoint), "--model-kind", kind, "--manifest", manifest_id,
        "--outputs", str(outputs), "--out", str(scores), "--k", "32",
    )  # fmt: skip
    assert (att["scores"], att["method"]) == (2 * len(contents), "trak")
    (tmp_path / "sales.csv").write_text(
        "output_id,model_id,revenue,currency,occurred_at\no0,own,3.00,EUR,2026-11-02T10:00:00Z\n"
        "o1,own,1.00,EUR,2026-11-03T10:00:00Z\n"
    )
    accrued = op.json(
        "accrue", "--outputs", str(tmp_path / "sales.csv"), "--run", att["attribution_run_id"], "--agreement",
        "own", "--batch-id", "nov",
    )  # fmt: skip
    assert accrued["pool_microunits"] == 200_000_000  # half of 4.00 EUR, in 10^-8 EUR
    assert accrued["pool_microunits"] == (
        accrued["posted_microunits"] + accrued["escrow_microunits"] + accrued["suspense_delta_microunits"]
    )
    statement = json.loads(op.text("statements", "--person", str(pid), "--period", "2026-11", "--format", "json"))
    assert statement["reconciles"] is True and statement["lines"]
    assert att["attribution_run_id"] in json.dumps(statement)  # each line traces to the recorded run
    assert op.json("verify")["ok"] is True


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CASES))
def test_an_operators_model_is_attributed_over_the_api(kind: str, tmp_path: Path, db_url: str | None) -> None:
    from endcredits.attribution.models import load_model
    from endcredits.attribution.pipeline import checkpoint_path
    from endcredits.service import create_app
    from endcredits.service.auth import create_api_key
    from endcredits.store.engine import open_store

    work_kind, field, contents_of, build = CASES[kind]
    contents = contents_of()
    op = Operator(tmp_path, db_url)
    op.json("init")
    _, manifest_id = _register(op, tmp_path, work_kind, contents)
    store = open_store(op.data, db_url)
    try:
        folder = checkpoint_path(store, "own", kind)
        build(tmp_path / "model", contents)
        shutil.copytree(tmp_path / "model", folder)
        sha = load_model(folder, kind).checksum()
        with store.write() as conn:
            key = create_api_key(conn, role="operator", scopes=["ingest"], label="own").key
        auth = {"Authorization": f"Bearer {key}"}
        value = contents[0].decode() if field == "text" else base64.b64encode(contents[0]).decode()
        body = {"manifest_id": manifest_id, "model_kind": kind, "outputs": [{"output_id": "o0", field: value}], "k": 32}
        with TestClient(create_app(store)) as client:
            refused = client.post("/api/v1/attributions", json={**body, "model_kind": "os:system"}, headers=auth)
            assert refused.status_code == 422 and "not one of charlm" in refused.json()["error"]["message"]
            unbound = client.post("/api/v1/attributions", json=body, headers=auth)  # no training run names it yet
            assert unbound.status_code == 422 and unbound.json()["error"]["code"] == "manifest_mismatch"
            assert "from no recorded training run" in unbound.json()["error"]["message"]
            op.json(
                "manifest", "run", "record", "--run", "own-1", "--manifest", manifest_id, "--started",
                "2026-06-02T00:00:00Z", "--finished", "2026-06-02T01:00:00Z", "--checkpoint-sha256", sha,
            )  # fmt: skip
            answer = client.post("/api/v1/attributions", json=body, headers=auth)
            assert answer.status_code == 200, answer.text
            run_id = answer.json()["attribution_run_id"]
            assert len(answer.json()["outputs"][0]["work_scores"]) == len(contents)
            batch = {
                "batch_id": "api-1",
                "agreement_id": "own",
                "attribution_run_id": run_id,
                "outputs": [
                    {"output_id": "o0", "model_id": "own", "revenue": "2.00", "currency": "EUR",
                     "occurred_at": "2026-11-02T10:00:00Z"}
                ],
            }  # fmt: skip
            accrued = client.post("/api/v1/usage-batches", json=batch, headers={**auth, "Prefer": "wait"})
        assert accrued.status_code == 201, accrued.text
        assert accrued.json()["attribution_run_id"] == run_id and accrued.json()["pool"] == "1.00"
    finally:
        store.dispose()
    assert op.json("verify")["ok"] is True


def test_an_image_output_that_does_not_decode_is_named(tmp_path: Path) -> None:
    from endcredits.cli.attribution import read_outputs
    from endcredits.errors import ValidationError

    bad = tmp_path / "outputs.jsonl"
    bad.write_text(json.dumps({"output_id": "o1", "image_base64": "not base64!"}) + "\n")
    with pytest.raises(ValidationError, match="line 1: image_base64 is not base64"):
        read_outputs(bad)
    bad.write_text(json.dumps({"output_id": "o1", "text": "a", "path": "x.png"}) + "\n")
    with pytest.raises(ValidationError, match="line 1 must give exactly one of text, image_base64 or path"):
        read_outputs(bad)
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    bad.write_text(json.dumps({"output_id": "o1", "path": "img.png"}) + "\n")
    assert read_outputs(bad) == [("o1", b"\x89PNG")]
