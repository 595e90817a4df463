"""What a model generated reaches statements whatever scored it, on both backends: through ``endcredits
accrue`` (an outputs file's ``content`` column), through ``PUT /api/v1/outputs/{id}/content`` beside a usage
batch, and through ``accrue_scored`` itself. Bad content is refused in one line before anything is written."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.errors import ConflictError, ValidationError
from endcredits.ledger.accrue import ScoreSource, accrue_scored
from endcredits.money import format_amount
from endcredits.payouts.previews import output_previews
from endcredits.payouts.statement_layout import outputs_page
from endcredits.payouts.statements import build_statement
from endcredits.royalties import parse_agreement
from endcredits.royalties.output_contents import output_contents_of
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage import OutputIn
from endcredits.service import create_app
from endcredits.service.auth import create_api_key
from endcredits.store.engine import Store
from helpers_money import World, agreement_text, on_time, row_counts

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TEXT = agreement_text(pool_rate="0.37", payout_threshold="0.01")
REASON = "scored by the operator's own pipeline"
TUNE = "X:1\nT:A generated reel\nK:D\n|:defg abag|\n"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (10, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def world(store: Store) -> World:
    w = World(store)
    a = parse_agreement(TEXT)
    with store.write() as conn:
        save_agreement(conn, a.id, a.version, a.body, a.body_sha256)
    return w


def _files(w: World, folder: Path, content: dict[str, str]) -> tuple[Path, Path]:
    outputs, attributions = folder / "outputs.csv", folder / "attributions.csv"
    rows = [("o1", 123_456_789, on_time(1, 5)), ("o2", 98_765_431, on_time(1, 9)), ("o3", 7, on_time(1, 28))]
    with outputs.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["output_id", "model_id", "revenue", "currency", "occurred_at", "content"])
        out.writerows([o, "m", format_amount(r, "EUR"), "EUR", t, content.get(o, "")] for o, r, t in rows)
    with attributions.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["output_id", "work_id", "score"])
        out.writerows([o, work, "0.5"] for o, _, _ in rows for work in (w.song, w.film))
    return outputs, attributions


def _accrue_cli(store: Store, db_url: str | None, outputs: Path, attributions: Path) -> Any:
    where = ["--data", str(store.data_dir)] + (["--db", db_url] if db_url else [])
    args = ["accrue", "--outputs", str(outputs), "--attributions", str(attributions), "--external", REASON]
    return CliRunner().invoke(app, [*where, *args, "--agreement", "test-2026", "--batch-id", "b-1"])


def test_the_cli_keeps_the_content_an_outputs_file_names(
    world: World, store: Store, db_url: str | None, tmp_path: Path
) -> None:
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "o1.png").write_bytes(_png())
    (tmp_path / "o2.abc").write_text(TUNE)
    outputs, attributions = _files(world, tmp_path, {"o1": "gen/o1.png", "o2": "o2.abc"})
    result = _accrue_cli(store, db_url, outputs, attributions)
    assert result.exit_code == 0, result.output
    with store.read() as conn:
        kept = output_contents_of(conn, ["o1", "o2", "o3"])
    assert {k: v.media_type for k, v in kept.items()} == {"o1": "image/png", "o2": "text/plain; charset=utf-8"}
    page = outputs_page(build_statement(store, world.alice, "2026-01", "EUR"), 1, 10)
    shown = output_previews(store, [o.output_id for o in page.outputs])
    assert {o: p.kind for o, p in shown.items()} == {"o1": "image", "o2": "text", "o3": "none"}
    assert "generated reel" in shown["o2"].excerpt


def test_a_missing_content_file_refuses_the_batch_in_one_line(
    world: World, store: Store, db_url: str | None, tmp_path: Path
) -> None:
    outputs, attributions = _files(world, tmp_path, {"o1": "nowhere.png"})
    before = row_counts(store)
    result = _accrue_cli(store, db_url, outputs, attributions)
    assert result.exit_code != 0
    assert "content file" in result.output and "nowhere.png" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert row_counts(store) == before


def test_accrue_scored_refuses_content_for_an_output_not_in_the_batch_or_changed(world: World, store: Store) -> None:
    outs = [OutputIn("o1", "m", 1_000_000, "EUR", on_time(2, 1))]
    scores = {"o1": {world.song: 1.0}}
    kw: dict[str, Any] = {"source": ScoreSource.external(REASON), "per": "work", "agreement_id": "test-2026"}
    before = row_counts(store)
    with pytest.raises(ValidationError, match="not in the batch"):
        accrue_scored(store, outs, scores, batch_id="b", contents=[("o9", b"x")], **kw)
    assert row_counts(store) == before
    accrue_scored(store, outs, scores, batch_id="dry", contents=[("o1", b"first")], dry_run=True, **kw)
    assert row_counts(store) == before  # a dry run keeps nothing, content included
    accrue_scored(store, outs, scores, batch_id="b", contents=[("o1", b"first")], **kw)
    after = row_counts(store)
    with pytest.raises(ConflictError, match="already has other content"):
        accrue_scored(store, outs, scores, batch_id="b", contents=[("o1", b"second")], **kw)
    assert row_counts(store) == after


def test_the_api_keeps_an_outputs_content_once(world: World, store: Store) -> None:
    with store.write() as conn:
        ingest = create_api_key(conn, role="operator", scopes=["ingest"], label="ingest").key
        reader = create_api_key(conn, role="operator", scopes=["read"], label="read").key
    url = "/api/v1/outputs/o1/content"
    with TestClient(create_app(store)) as client:
        auth = {"Authorization": f"Bearer {ingest}"}
        assert client.put(url, content=b"", headers=auth).status_code == 422
        assert client.put(url, content=_png(), headers={"Authorization": f"Bearer {reader}"}).status_code == 403
        before = row_counts(store)
        first = client.put(url, content=_png(), headers=auth)
        assert first.status_code == 201, first.text
        assert first.json()["media_type"] == "image/png" and first.json()["status"] == "recorded"
        again = client.put(url, content=_png(), headers=auth)
        assert again.status_code == 200 and again.json()["content_sha256"] == first.json()["content_sha256"]
        other = client.put(url, content=TUNE.encode(), headers=auth)
        assert other.status_code == 409 and "already has other content" in other.text
    after = row_counts(store)
    assert after["output_contents"] == before["output_contents"] + 1
