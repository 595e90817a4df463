"""benchmarks/attribution.py on a tiny configuration: the figures it reports are the ones it measured."""

from __future__ import annotations

import json

import pytest


def test_explanations_report_faiss_recall_against_the_exact_scan(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("faiss")
    import attribution

    argv = [
        "--skip-featurize",
        "--works",
        "3000",
        "--payees",
        "300",
        "--k",
        "32",
        "--queries",
        "6",
        "--explain-works",
        "2000",
        "--top-k",
        "5",
        "--nprobes",
        "1,4,100000",
        "--json",
    ]
    assert attribution.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    payees = report["payee_attribution"]
    assert payees["works"] == 3000 and payees["p50_ms"] > 0 and payees["ratio_to_raw_scan"] > 0
    explained = report["explanations"]
    assert explained["works"] == 2000 and explained["top_k"] == 5 and explained["queries"] == 6
    # A flat index is exact, and IVF searching every cell is too; fewer cells can only find fewer.
    assert explained["faiss_flat"]["recall_at_k"] == 1.0
    ivf = explained["faiss_ivf"]["nprobe"]
    assert ivf["100000"]["recall_at_k"] == 1.0
    assert 0.0 <= ivf["1"]["recall_at_k"] <= ivf["4"]["recall_at_k"] <= 1.0
