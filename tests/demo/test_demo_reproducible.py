"""A payments demo gives the same split for the same inputs and seed: `run_demo` trains a fixed number of
steps, so two runs on one machine agree to the microunit, and on the checkpoint they pay for."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from endcredits.demo import DemoSummary, run_demo
from endcredits.registry.private import KEY_ENV, KEY_FILE_ENV

MONEY_FIELDS = ("revenue_microunits", "pool_microunits", "paid_microunits", "escrow_microunits", "suspense_microunits")
# Where the run wrote, when, and its one-time sign-in link: the only parts of the summary that may differ.
RUN_LOCAL_FIELDS = ("data_dir", "timings_s", "portal_login_url")


def _small_demo(data_dir: Path, seed: int) -> DemoSummary:
    # The first 50 tunes, a few steps and outputs, and a small projection: seconds, not minutes.
    return run_demo(data_dir, None, outputs_n=3, train_steps=8, seed=seed, tunes_max=50, k=64)


def _comparable(summary: DemoSummary) -> dict[str, Any]:
    out = {k: v for k, v in summary.to_json().items() if k not in RUN_LOCAL_FIELDS}
    # The payout file and the statement live under the run's own data directory.
    out["payout_batch"] = {k: v for k, v in out["payout_batch"].items() if k != "pain001"}
    out["statement"] = {k: v for k, v in out["statement"].items() if k != "path"}
    fees = out["training_fees"]
    out["training_fees"] = fees | {"statement": {k: v for k, v in fees["statement"].items() if k != "path"}}
    # The guild's key is made afresh each run, and so is its id; the files live under the data directory.
    out["guild"] = {k: v for k, v in out["guild"].items() if k not in ("issuer", "terms", "file")}
    out["eu_training_summary"] = {k: v for k, v in out["eu_training_summary"].items() if k not in ("json", "html")}
    return out


@pytest.mark.slow
def test_two_demo_runs_with_the_same_seed_agree_to_the_microunit(tmp_path: Path) -> None:
    first = _small_demo(tmp_path / "first", seed=7)
    second = _small_demo(tmp_path / "second", seed=7)

    assert first.train_steps == second.train_steps == 8
    assert first.checkpoint_sha256 == second.checkpoint_sha256
    assert (first.manifest_id, first.merkle_root) == (second.manifest_id, second.merkle_root)
    for name in MONEY_FIELDS:
        assert getattr(first, name) == getattr(second, name), name
    assert first.conserved and first.pool_microunits > 0
    # Everything else the summary reports: the loss, the earners, the attribution scores, the payout batch.
    assert _comparable(first) == _comparable(second)


@pytest.mark.slow
def test_a_demo_without_a_key_makes_its_own_for_that_run_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no operator key configured, the demo seals payment details with a key file in its data
    directory, names that file in the portal command it prints, and leaves the environment as it found it."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    summary = _small_demo(tmp_path / "data", seed=7)
    key_file = tmp_path / "data" / "demo-secret.key"
    assert key_file.is_file()
    assert KEY_FILE_ENV not in os.environ
    assert summary.portal_command.startswith(f"{KEY_FILE_ENV}={key_file} endcredits --data ")
