"""``benchmarks/image_order.py`` on two drawings of the Open Clip Art corpus: every kind of copy the labelled
set makes is asked in both registration orders, and the two orders agree (``image_rerender.drawing_first``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

OPENCLIPART = Path("/usr/share/openclipart/svg")


@pytest.mark.slow
@pytest.mark.skipif(not OPENCLIPART.is_dir(), reason="needs Debian's openclipart-svg (make install)")
def test_both_orders_agree_on_every_kind_of_copy(capsys: pytest.CaptureFixture[str]) -> None:
    import _image_pairs
    import image_order

    assert image_order.main(["--drawings", "2", "--seed", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    counts = report["counts"]
    assert set(counts) == {*_image_pairs.TRANSFORMS, "all"}
    assert counts["all"]["pairs"] == 2 * len(_image_pairs.TRANSFORMS)
    assert counts["all"]["disagree"] == 0
    assert counts["all"]["drawing_first"] == counts["all"]["copy_first"] > 0
