"""Checks both demos share (`endcredits demo --json`, ABC tunes or Open Clip Art drawings): the guild's terms
applied and what the guild sees, the RSL licence and Content-Usage header imported on one work, the training
fees recording the run posted under the licence's training term, and the model's EU training summary."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

FEE_MICROUNITS = 50_000_000  # the demo licence's 0.50 EUR per training use


def check_guild(summary: dict[str, Any], kind: str) -> None:
    """The operator trusted the demo's guild and its members inherited its terms; the guild sees their money
    only as a sum."""
    guild = summary["guild"]
    assert guild["issuer"].startswith("did:key:") and guild["terms"] == f"guild terms of {guild['issuer']} v1"
    assert guild["consent"] == {"ai_index": "notAllowed", "ai_input": "notAllowed"}
    assert guild["escrow"] == {"period_days": 1825, "fund": f"{kind}-guild-fund"}
    assert Path(guild["file"]).read_text(encoding="utf-8").startswith(f"# The {kind}' guild's terms")
    view = guild["view"]
    assert view["terms_version"] == 1 and view["members"] == summary["verified_by_credential"] >= 3
    assert "person_id" not in json.dumps(view) and "name" not in view
    members_earned = sum(e["earned_microunits"] for e in summary["top_earners"] if e["status"] == "verified")
    assert int(view["accrued_microunits"]["EUR"]) >= members_earned > 0  # top earners: some of the members


def check_licence_and_fees(summary: dict[str, Any]) -> None:
    """One work is under the RSL licence and Content-Usage header; recording the training run posted the
    licence's fee per training use, once, and the work's person's statement for that month cites the term."""
    licence = summary["licence"]
    assert licence["work_id"] and licence["person_id"] == summary["statement"]["person_id"]
    assert any(n.startswith("ai_generative_training: allowed") for n in licence["notes"]), licence["notes"]
    fees = summary["training_fees"]
    assert (fees["status"], fees["total_microunits"], fees["works"]) == ("created", FEE_MICROUNITS, 1)
    assert fees["event_id"].startswith(f"training-fee:{summary['manifest_id']}/EUR/")
    st = fees["statement"]
    assert st["person_id"] == licence["person_id"] and st["reconciles"] is True and st["lines"] >= 1
    assert st["licence_terms"][0].startswith(
        f"training: 0.50 EUR per training use, manifest {summary['manifest_id']} (licence term "
    )
    assert summary["pool_microunits"] > FEE_MICROUNITS  # the pool funded the fee too, and it is conserved


def check_eu_summary(summary: dict[str, Any], data: Path, modality: str) -> None:
    """The model's EU training summary is in the data folder, private, in JSON and HTML."""
    eu = summary["eu_training_summary"]
    for key in ("json", "html"):
        path = Path(eu[key])
        assert path.parent == data / "reports" and stat.S_IMODE(path.stat().st_mode) == 0o600
    written = json.loads(Path(eu["json"]).read_text(encoding="utf-8"))
    manifests = written["1_general_information"]["model"]["manifests"]["value"]
    assert [m["id"] for m in manifests] == [summary["manifest_id"]]
    assert eu["modalities"] == [modality]
    assert sum(eu["works_by_source"].values()) == summary["works"] - summary["excluded_works"]
    assert eu["works_by_source"]["licensed_or_private"] >= 1  # the work under the RSL licence
    assert "<html" in Path(eu["html"]).read_text(encoding="utf-8").lower()
