"""The accrual benchmark (benchmarks/ledger.py) accrues what it says, folds, verifies, and reports it."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

import endcredits.ledger.folding as folding
import ledger as ledger_bench


@pytest.fixture
def arrow_pool() -> Iterator[None]:
    """The benchmark picks Arrow's allocator as the endcredits command does; put the test process's back."""
    before = pa.default_memory_pool()
    try:
        yield
    finally:
        pa.set_memory_pool(before)


def test_a_small_run_accrues_folds_and_verifies(arrow_pool: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folding, "FOLD_PENDING_SEGMENTS_MAX", 2)  # fold inside the run, as 8 segments would
    result = ledger_bench.run(items=1_000, db="sqlite", batch_items=200)
    assert (result["items"], result["outputs"], result["batches"]) == (1_000, 100, 5)
    assert result["verify_ok"] is True
    # Batches 3 and 5 fold the two before them; the fifth's own segment is folded after the run.
    assert (result["folds_in_run"], result["fold_segments"]) == (2, 1)
    assert len(result["fold_s_in_run"]) == 2 and min(result["fold_s_in_run"]) > 0  # type: ignore[arg-type]
    assert result["fold_accounts"] > 0 and result["fold_s"] > 0
    assert result["line_items_per_s"] > 0 and result["storage_floor_s"] > 0  # type: ignore[operator]
    assert result["arrow_allocator"] == "system"


def test_a_run_may_skip_the_baseline_and_verify(arrow_pool: None) -> None:
    result = ledger_bench.run(items=100, db="sqlite", batch_items=100, warm_up=False, baseline=False, check=False)
    assert result["batches"] == 1 and result["line_items_per_s"] > 0  # type: ignore[operator]
    assert (result["baseline_line_items_per_s"], result["storage_floor_s"], result["verify_ok"]) == (None, None, None)
