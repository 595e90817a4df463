"""The main job end to end on a slice of the real corpus, on both backends: `endcredits demo --json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.interop.abc import iter_tunes
from endcredits.ledger.verify import verify
from endcredits.store.engine import open_store
from helpers_demo import check_eu_summary, check_guild, check_licence_and_fees

REQUIRED_INT_FIELDS = (
    "pool_microunits",
    "paid_microunits",
    "escrow_microunits",
    "suspense_microunits",
    "outputs",
    "works",
    "people",
    "excluded_works",
)


@pytest.mark.slow
def test_demo_json_conserves_every_microunit(tmp_path: Path, db_url: str | None) -> None:
    # The first 600 tunes (Aird's Airs, four credited names), a short training run and a few outputs;
    # consent exclusions are covered by the manifest tests, the full corpus by `make demo`.
    data = tmp_path / "demo"
    args = ["--data", str(data)] + (["--db", db_url] if db_url else [])
    result = CliRunner().invoke(
        app, [*args, "demo", "--json", "--tunes", "600", "--outputs", "8", "--train-steps", "40"]
    )
    assert result.exit_code == 0, result.stderr or result.stdout
    summary = json.loads(result.stdout)
    for field in REQUIRED_INT_FIELDS:
        assert isinstance(summary[field], int) and not isinstance(summary[field], bool), field
    assert summary["outputs"] == 8
    assert summary["pool_microunits"] > 0
    assert summary["pool_microunits"] == (
        summary["paid_microunits"] + summary["escrow_microunits"] + summary["suspense_microunits"]
    )
    assert summary["conserved"] is True and summary["verified"] is True
    assert summary["statement"]["reconciles"] is True
    # One tune is under an RSL licence (0.50 EUR per training use, 0.002 EUR per use) with a Content-Usage
    # header; recording the training run posted the fee, the agreement applies the price per use as a floor
    # per output, and the statements of its composer cite the terms.
    check_licence_and_fees(summary)
    assert summary["statement"]["licence_lines"] > 0
    assert summary["statement"]["licence_terms"][0].startswith("use: at least 0.002 EUR per output (licence term ")
    assert summary["verified_by_credential"] >= 1 and summary["attribution"]["method"] == "trak"
    check_guild(summary, "musicians")
    check_eu_summary(summary, data, "text")
    assert summary["works"] == len({t.text for t in iter_tunes(limit=600)})
    assert summary["portal_login_url"].startswith("http://127.0.0.1:8000/portal/login?token=ecl_")
    # The store it leaves behind verifies on its own, and the payout file is there.
    store = open_store(data, db_url)
    try:
        assert verify(store).ok
    finally:
        store.dispose()
    if summary["payout_batch"]["pain001"]:
        assert Path(summary["payout_batch"]["pain001"]).read_bytes().startswith(b"<?xml")
