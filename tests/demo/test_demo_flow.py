"""The main job end to end on a slice of the real corpus, on both backends: `endcredits demo --json`."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.interop.abc import iter_tunes
from endcredits.ledger.verify import verify
from endcredits.store.engine import open_store

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
    # One tune is under an RSL licence (0.002 EUR per use) with a Content-Usage header; the agreement applies
    # the price as a floor per output, and the statement of its composer cites the term on the raised lines.
    licence = summary["licence"]
    assert licence["work_id"] and licence["person_id"] == summary["statement"]["person_id"]
    assert any(n.startswith("ai_generative_training: allowed") for n in licence["notes"]), licence["notes"]
    assert summary["statement"]["licence_lines"] > 0
    assert summary["statement"]["licence_terms"][0].startswith("use: at least 0.002 EUR per output (licence term ")
    assert summary["verified_by_credential"] >= 1 and summary["attribution"]["method"] == "trak"
    _check_guild_and_eu_summary(summary, data)
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


def _check_guild_and_eu_summary(summary: dict[str, Any], data: Path) -> None:
    """The operator trusted the demo's guild and its members inherited its terms; the guild sees their money
    only as a sum; the model's EU training summary is in the data folder, private."""
    guild = summary["guild"]
    assert guild["issuer"].startswith("did:key:") and guild["terms"] == f"guild terms of {guild['issuer']} v1"
    assert guild["consent"] == {"ai_index": "notAllowed", "ai_input": "notAllowed"}
    assert guild["escrow"] == {"period_days": 1825, "fund": "musicians-guild-fund"}
    assert Path(guild["file"]).read_text(encoding="utf-8").startswith("# The musicians' guild's terms")
    view = guild["view"]
    assert view["terms_version"] == 1 and view["members"] == summary["verified_by_credential"] >= 3
    assert "person_id" not in json.dumps(view) and "name" not in view
    members_earned = sum(e["earned_microunits"] for e in summary["top_earners"] if e["status"] == "verified")
    assert int(view["accrued_microunits"]["EUR"]) == members_earned > 0
    eu = summary["eu_training_summary"]
    for key in ("json", "html"):
        path = Path(eu[key])
        assert path.parent == data / "reports" and stat.S_IMODE(path.stat().st_mode) == 0o600
    written = json.loads(Path(eu["json"]).read_text(encoding="utf-8"))
    manifests = written["1_general_information"]["model"]["manifests"]["value"]
    assert [m["id"] for m in manifests] == [summary["manifest_id"]]
    assert eu["modalities"] == ["text"]
    assert sum(eu["works_by_source"].values()) == summary["works"] - summary["excluded_works"]
    assert eu["works_by_source"]["licensed_or_private"] >= 1  # the tune under the RSL licence
    assert "<html" in Path(eu["html"]).read_text(encoding="utf-8").lower()
