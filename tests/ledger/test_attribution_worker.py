"""The attribution worker on both backends: outputs attributed in batches and accrued in process pay exactly
what attributing them one at a time and accruing each through ``accrue_scored`` pays, every microunit on
scores a recorded run holds; bad input is refused in one line with nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from endcredits.attribution.records import load_run, read_run_scores
from endcredits.attribution.settings import AttributionSettings
from endcredits.errors import ConflictError, ManifestError, NotFoundError, ValidationError
from endcredits.ledger.accrue import ScoreSource, accrue_scored
from endcredits.ledger.verify import verify
from endcredits.ledger.worker import attribute_and_accrue
from endcredits.royalties import parse_agreement
from endcredits.royalties.output_contents import record_output_contents
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage import OutputIn
from endcredits.store.engine import Store
from helpers_money import World, agreement_text, bound_char_lm, ledger_snapshot, on_time, row_counts

SETTINGS = AttributionSettings(k=16, chunk_size=2, top_k=2)
TEXTS = ["song film", "orphan song", "film film song", "bytes of a song", "a film", "orphan"]
OUTPUTS = [OutputIn(f"o{i}", "m", 1_000_000_00 + 37 * i, "EUR", on_time(3, 1 + i)) for i in range(len(TEXTS))]
CONTENTS = [t.encode() for t in TEXTS]


def _world(store: Store) -> tuple[str, str]:
    """The World with its character LM bound, an agreement, and a recorded run: (run id, agreement id)."""
    from endcredits.attribution.pipeline import attribute_manifest

    world = World(store)
    lm, manifest = bound_char_lm(world)
    a = parse_agreement(agreement_text(payout_threshold="0.01"))
    with store.write() as conn:
        save_agreement(conn, a.id, a.version, a.body, a.body_sha256)
    att = attribute_manifest(store, manifest, lm, [("seed", b"song film")], settings=SETTINGS)
    return str(att.run_id), a.id


@pytest.fixture
def twin(store_factory: Callable[[], Store]) -> Store:
    """A second empty store of the same backend."""
    return store_factory()


def _one_at_a_time(store: Store, run_id: str, agreement_id: str) -> list[str]:
    """The existing path: each output attributed alone (``endcredits attribute --per-payee``) and accrued
    through ``accrue_scored`` naming its run, batch ``one-N``."""
    from endcredits.attribution.pipeline import bound_checkpoint
    from endcredits.royalties.payees import attribute_manifest_payees
    from endcredits.royalties.records import load_agreement

    with store.read() as conn:
        run = load_run(conn, run_id)
        agreement = load_agreement(conn, agreement_id)
    model, manifest = bound_checkpoint(store, run.manifest_id)
    runs = []
    for n, (o, content) in enumerate(zip(OUTPUTS, CONTENTS, strict=True), start=1):
        ps = attribute_manifest_payees(store, manifest, model, [(o.output_id, content)], agreement, settings=SETTINGS)
        accrue_scored(
            store, [o], None, source=ScoreSource.run(ps.run_id), per=None, agreement_id=agreement_id,
            batch_id=f"one-{n}",
        )  # fmt: skip
        runs.append(ps.run_id)
    return runs


def _scores(store: Store, run_ids: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with store.read() as conn:
        for rid in run_ids:
            run = load_run(conn, rid)
            out |= read_run_scores(store.data_dir, run).for_outputs(o.output_id for o in OUTPUTS)
    return out


def test_usage_batches_of_one_output_are_the_ledger_of_attributing_one_at_a_time(store: Store, twin: Store) -> None:
    """Each output its own usage batch: the same runs, transfers, evidence and balances as attributing each
    output alone (``attribute_manifest_payees``) and accruing it through ``accrue_scored``."""
    run_id, agreement_id = _world(store)
    twin_run, _ = _world(twin)
    assert twin_run == run_id  # the same model, manifest and scores: the same recorded run
    report = attribute_and_accrue(
        store, run_id, OUTPUTS, CONTENTS, agreement_id=agreement_id, batch_id="one", usage_outputs=1
    )
    reference = _one_at_a_time(twin, run_id, agreement_id)
    assert report.outputs == len(OUTPUTS) and report.outputs_per_s() > 0 and report.runner == "local"
    assert [b.status for b in report.batches] == ["created"] * len(OUTPUTS)
    assert [b.source.run_id for b in report.batches] == list(report.run_ids) == reference
    assert ledger_snapshot(store) == ledger_snapshot(twin)  # to the microunit, evidence included
    assert verify(store).ok
    before = ledger_snapshot(store), row_counts(store)
    again = attribute_and_accrue(  # started again (after a crash, say): its own batches are found, not refused
        store, run_id, OUTPUTS, CONTENTS, agreement_id=agreement_id, batch_id="one", usage_outputs=1
    )
    assert [b.status for b in again.batches] == ["exists"] * len(OUTPUTS) and again.run_ids == report.run_ids
    assert (ledger_snapshot(store), row_counts(store)) == before


@pytest.mark.parametrize("batch_outputs", [1, 3, 32])
def test_one_usage_batch_scored_in_batches_pays_what_attributing_all_at_once_pays(
    store: Store, twin: Store, batch_outputs: int
) -> None:
    """All outputs in one usage batch, featurized B at a time, against ``attribute_manifest_payees`` of all
    of them and ``accrue_scored`` naming its run: every balance to the microunit. When one batch holds every
    output, to the bit: the same run, the same ledger, every carried fraction too. Otherwise the scores
    agree within float32 rounding (featurizing 1 or 3 outputs together rounds differently from 2, and with
    one torch thread differently again), which moves fractions of a microunit between the payees' carries:
    their sum is the same."""
    from endcredits.attribution.pipeline import bound_checkpoint
    from endcredits.royalties.payees import attribute_manifest_payees
    from endcredits.royalties.records import load_agreement

    run_id, agreement_id = _world(store)
    _world(twin)
    report = attribute_and_accrue(
        store, run_id, OUTPUTS, CONTENTS, agreement_id=agreement_id, batch_id="w", batch_outputs=batch_outputs
    )
    assert [b.outputs for b in report.batches] == [len(OUTPUTS)] and len(report.run_ids) == 1
    model, manifest = bound_checkpoint(twin, _manifest_of(twin, run_id))
    with twin.read() as conn:
        agreement = load_agreement(conn, agreement_id)
    items = [(o.output_id, c) for o, c in zip(OUTPUTS, CONTENTS, strict=True)]
    ps = attribute_manifest_payees(twin, manifest, model, items, agreement, settings=SETTINGS)
    accrue_scored(twin, OUTPUTS, None, source=ScoreSource.run(ps.run_id), per=None, agreement_id=agreement_id,
                  batch_id="w-1")  # fmt: skip
    worker, reference = ledger_snapshot(store), ledger_snapshot(twin)
    assert worker["balances"] == reference["balances"]
    assert sum(c for *_, c in worker["carries"]) == sum(c for *_, c in reference["carries"])
    worker_scores, all_scores = _scores(store, list(report.run_ids)), _scores(twin, [ps.run_id])
    for o in OUTPUTS:
        a, b = worker_scores[o.output_id], all_scores[o.output_id]
        assert list(a) == list(b)
        np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=1e-5, atol=1e-9)
    if batch_outputs >= len(OUTPUTS):
        assert report.run_ids == (ps.run_id,) and worker == reference
    assert verify(store).ok


def _manifest_of(store: Store, run_id: str) -> str:
    with store.read() as conn:
        return load_run(conn, run_id).manifest_id


def test_bad_input_is_refused_in_one_line_and_nothing_is_written(store: Store) -> None:
    run_id, agreement_id = _world(store)
    before, runs_dir = row_counts(store), sorted((store.data_dir / "attribution-runs").iterdir())

    def refused(exc: type[Exception], match: str, **change: object) -> None:
        args: dict[str, object] = {"run_id": run_id, "outputs": OUTPUTS[:2], "contents": CONTENTS[:2]}
        args |= change
        with pytest.raises(exc, match=match) as info:
            attribute_and_accrue(store, agreement_id=agreement_id, batch_id="bad", **args)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)

    refused(NotFoundError, "no attribution run run-0000", run_id="run-" + "0" * 32)
    other = [OUTPUTS[0], OutputIn("x", "other-model", 5, "EUR", on_time(3))]
    refused(ManifestError, "scored model m; output x is of model other-model", outputs=other)
    refused(ValidationError, "2 outputs for 1 contents", contents=CONTENTS[:1])
    refused(ValidationError, "is in USD", outputs=[OUTPUTS[0], OutputIn("u", "m", 5, "USD", on_time(3))])
    refused(ValidationError, "no outputs", outputs=[], contents=[])
    refused(ValidationError, "timezone", outputs=[OUTPUTS[0], OutputIn("t", "m", 5, "EUR", "2026-03-01T00:00:00")])
    assert row_counts(store) == before
    assert sorted((store.data_dir / "attribution-runs").iterdir()) == runs_dir
    attribute_and_accrue(store, run_id, OUTPUTS[:1], CONTENTS[:1], agreement_id=agreement_id, batch_id="ok")
    record_output_contents(store, [("o1", b"what was generated")])
    before = row_counts(store)
    refused(ConflictError, "output o0 was already accrued in batch ok-1")
    refused(ConflictError, "output o1 already has other content", outputs=[OUTPUTS[1]], contents=[b"another"])
    assert row_counts(store) == before


def test_the_cli_worker_accrues_a_file_of_outputs_and_refuses_an_unknown_run_in_one_line(
    store: Store, db_url: str | None, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from endcredits.cli import app

    run_id, agreement_id = _world(store)
    lines = [
        {"output_id": o.output_id, "model_id": "m", "revenue": "1.25", "currency": "EUR",
         "occurred_at": o.occurred_at, "text": t}
        for o, t in zip(OUTPUTS, TEXTS, strict=True)
    ]  # fmt: skip
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    base = ["--data", str(store.data_dir), *(["--db", db_url] if db_url else [])]
    args = ["attribution", "worker", "--outputs", str(path), "--agreement", agreement_id, "--batch-id", "cli"]
    runner = CliRunner()
    before = row_counts(store)
    bad = runner.invoke(app, [*base, *args, "--run", "run-" + "0" * 32])
    assert bad.exit_code == 1 and len(bad.output.strip().splitlines()) == 1 and "no attribution run" in bad.output
    assert row_counts(store) == before
    ok = runner.invoke(app, [*base, *args, "--run", run_id, "--batch-outputs", "4", "--usage-outputs", "4", "--json"])
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.output)
    assert [b["outputs"] for b in summary["batches"]] == [4, 2] and summary["outputs_per_s"] > 0
    assert sum(b["revenue_microunits"] for b in summary["batches"]) == 6 * 125_000_000
    assert verify(store).ok
