"""Saving features apart from computing them: the saver alone resumes rows written in any order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from endcredits.attribution.saver import FeatureSaver, FeatureSet
from endcredits.errors import ManifestError, ValidationError


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_the_saver_alone_resumes_rows_written_in_any_order_to_the_same_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((2, 10, 3)).astype(np.float32)
    q = rng.random((2, 10)).astype(np.float32)
    header = {"role": "train", "checkpoint_sha256": ["a", "b"], "dim": 3, "curvature": False, "seed": 1}
    ids = [f"x{i}" for i in range(10)]

    def write(directory: Path, ranges: list[tuple[int, int]]) -> FeatureSaver:
        saver = FeatureSaver(directory, header, ids)
        saver.begin()
        for start, stop in ranges:
            for m in range(2):
                if not saver.is_done(m, start, stop):
                    saver.write(m, start, rows[m, start:stop], q[m, start:stop])
            saver.commit(range(2), start, stop)
        return saver

    straight = write(tmp_path / "straight", [(0, 4), (4, 8), (8, 10)]).finish()
    write(tmp_path / "resumed", [(8, 10), (0, 4)])  # shards finished out of order, then interrupted
    with pytest.raises(ManifestError, match="are incomplete; run featurize again"):
        FeatureSet.open(tmp_path / "resumed")
    again = FeatureSaver(tmp_path / "resumed", header, ids)
    again.begin()
    assert again.rows_done == [[[0, 4], [8, 10]]] * 2 and not again.is_done(0, 4, 8) and again.is_done(1, 8, 10)
    resumed = write(tmp_path / "resumed", [(4, 8)]).finish()
    assert _files(resumed.directory) == _files(straight.directory)
    assert np.array_equal(resumed.features(1), rows[1]) and np.array_equal(resumed.weights(0), q[0])
    with pytest.raises(ManifestError, match=r"other arguments \(seed: recorded 1, now 2\)"):
        FeatureSaver(tmp_path / "resumed", {**header, "seed": 2}, ids).begin()
    with pytest.raises(ValidationError, match="written with their weights"):
        again.write(0, 0, rows[0, :2], None)
