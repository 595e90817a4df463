"""Attribution runs on both backends: recorded with what made their scores, read back exactly, idempotent
by their content-derived id, and refused once their scores file or their manifest no longer matches."""

from __future__ import annotations

import dataclasses
import json
import stat

import numpy as np
import pytest

from endcredits.attribution.records import (
    RunScores,
    binding_problem,
    load_run,
    new_run,
    read_run_scores,
    record_run,
    runs_by_id,
)
from endcredits.attribution.settings import AttributionSettings
from endcredits.errors import ConflictError, EvidenceError, LimitExceededError, NotFoundError, ValidationError
from endcredits.manifest.records import set_manifest_checkpoint
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store
from helpers_money import CHECKPOINT_SHA256, World, bound_char_lm, row_counts

SETTINGS = AttributionSettings(k=64, seed=7, method="tracin", lambda_=3.0)


def _scores(w: World, bump: float = 0.0) -> RunScores:
    works = list(w.manifest.included)
    matrix = np.array([[0.1 + bump, -2.5e-300, 3.0], [1e300, 0.0, 0.25]], dtype=np.float64)
    return RunScores.of_matrix("work", ["o1", "o2"], works, matrix[:, : len(works)])


def _run(w: World, scores: RunScores, checkpoint: str = CHECKPOINT_SHA256) -> tuple:  # type: ignore[type-arg]
    run = new_run(w.manifest, scores, checkpoint_sha256s=[checkpoint], method="tracin", weaker=False, settings=SETTINGS)
    return run, scores


@pytest.fixture
def world(store: Store) -> World:
    return World(store)


def test_a_run_is_recorded_with_what_made_it_and_read_back_exactly(world: World) -> None:
    store = world.store
    run, scores = _run(world, _scores(world))
    stored, status = record_run(store, run, scores)
    assert status == "created" and stored.id == run.id and stored.id.startswith("run-") and len(stored.id) == 36
    with store.read() as conn:
        loaded = load_run(conn, run.id)
        assert runs_by_id(conn, [run.id, "run-nothing"]) == {run.id: loaded}
        audited = [e for e in iter_audit(conn) if e.kind == "attribution_run"]
    assert loaded == stored and loaded.created_at
    assert (loaded.model_id, loaded.manifest_id, loaded.merkle_root) == (
        "m",
        world.manifest.id,
        world.manifest.merkle_root,
    )
    assert loaded.checkpoint_sha256s == (CHECKPOINT_SHA256,) and loaded.method == "tracin" and loaded.per == "work"
    assert AttributionSettings.from_dict(loaded.settings) == SETTINGS and loaded.seeds == {"projection": 7}
    assert set(loaded.engine) == {"endcredits", "torch"} and loaded.validity is None
    assert (loaded.output_count, loaded.key_count) == (2, len(world.manifest.included))
    assert [json.loads(e.payload)["scores_sha256"] for e in audited] == [scores.sha256()]
    back = read_run_scores(store.data_dir, loaded)
    assert back.sha256() == scores.sha256() == loaded.scores_sha256
    works = list(world.manifest.included)
    assert back.for_outputs(["o2"]) == {"o2": dict(zip(works, [1e300, 0.0, 0.25][: len(works)]))}
    assert back.for_outputs(["o1", "nope"])["o1"][works[1]] == -2.5e-300  # exact, subnormal included
    path = store.data_dir / loaded.scores_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_same_run_again_records_nothing_and_other_content_under_its_id_is_refused(world: World) -> None:
    store = world.store
    run, scores = _run(world, _scores(world))
    record_run(store, run, scores)
    before = row_counts(store)
    assert record_run(store, run, scores)[1] == "exists"
    other, other_scores = _run(world, _scores(world, bump=1e-12))
    assert other.id != run.id  # other scores are another run
    with pytest.raises(ConflictError, match=f"attribution run {run.id} is already recorded with other content"):
        record_run(store, dataclasses.replace(other, id=run.id, scores_path=run.scores_path), other_scores)
    with pytest.raises(ConflictError, match="the scores given are not the ones"):
        record_run(store, run, other_scores)
    assert row_counts(store) == before
    assert read_run_scores(store.data_dir, run).sha256() == scores.sha256()  # the file was left as it was


def test_an_altered_or_missing_scores_file_is_refused_and_recording_the_run_again_restores_it(world: World) -> None:
    store = world.store
    run, scores = _run(world, _scores(world))
    stored, _ = record_run(store, run, scores)
    path = store.data_dir / stored.scores_path
    forged = RunScores.of_matrix("work", ["o1"], [world.manifest.included[0]], np.array([[99.0]]))
    from endcredits.attribution.records import _write_scores

    _write_scores(path, forged)
    with pytest.raises(EvidenceError, match=f"scores file of attribution run {run.id} .* does not hash to the SHA-256"):
        read_run_scores(store.data_dir, stored)
    path.write_bytes(b"not parquet")
    with pytest.raises(EvidenceError, match="is unreadable"):
        read_run_scores(store.data_dir, stored)
    path.unlink()
    with pytest.raises(EvidenceError, match="is missing: restore it from backup"):
        read_run_scores(store.data_dir, stored)
    assert record_run(store, run, scores)[1] == "exists"
    assert read_run_scores(store.data_dir, stored).sha256() == stored.scores_sha256


def test_a_run_no_longer_fits_another_manifest_or_a_checkpoint_bound_since(world: World) -> None:
    store = world.store
    run, scores = _run(world, _scores(world))
    record_run(store, run, scores)
    m = world.manifest
    assert binding_problem(run, m) is None
    assert "scored against manifest" in str(binding_problem(run, dataclasses.replace(m, id="m@other")))
    assert "is of other-model" in str(binding_problem(run, dataclasses.replace(m, model_id="other-model")))
    assert "now has root" in str(binding_problem(run, dataclasses.replace(m, merkle_root="f" * 64)))
    with store.write() as conn:
        set_manifest_checkpoint(conn, m.id, "b" * 64)
        from endcredits.manifest.records import load_manifest

        bound = load_manifest(conn, m.id)
    assert binding_problem(run, bound) == (
        f"attribution run {run.id} scored checkpoint {'c' * 16}, but manifest {m.id} is bound to checkpoint "
        f"{'b' * 16}: attribute again with the bound checkpoint"
    )


def test_bad_runs_are_refused_in_one_line_and_nothing_is_written(world: World) -> None:
    store = world.store
    before = row_counts(store)
    outside = RunScores.of_matrix("work", ["o1"], ["0" * 64], np.array([[1.0]]))
    with pytest.raises(
        ValidationError, match=f"run scores name work 0{{64}}, which is not in manifest {world.manifest.id}"
    ):
        _run(world, outside)
    with pytest.raises(ValidationError, match="must be finite"):
        RunScores.of_matrix("work", ["o1"], [world.song], np.array([[np.nan]]))
    with pytest.raises(ValidationError, match="64 lowercase hex digits"):
        _run(world, _scores(world), checkpoint="C" * 64)
    with pytest.raises(ValidationError, match="output id .* printable"):
        _run(world, RunScores.of_matrix("work", ["o\n1"], [world.song], np.array([[1.0]])))
    with pytest.raises(ValidationError, match="name the agreement"):
        new_run(world.manifest, _scores(world), checkpoint_sha256s=[CHECKPOINT_SHA256], method="trak", weaker=False,
                settings=SETTINGS, payee_agreement="a@1")  # fmt: skip
    with pytest.raises(LimitExceededError, match="RUN_SCORES_MAX"):
        RunScores.of_matrix("work", ["o"] * 10_001, ["w"] * 10_000, np.broadcast_to(np.zeros(1), (10_001, 10_000)))
    with pytest.raises(NotFoundError, match="no attribution run run-x: use the run id `endcredits attribute` printed"):
        with store.read() as conn:
            load_run(conn, "run-x")
    assert row_counts(store) == before
    assert not (store.data_dir / "attribution-runs").exists()


def test_attributing_records_the_run_which_a_usage_batch_then_accrues(world: World) -> None:
    import warnings

    from endcredits.attribution.pipeline import attribute_manifest
    from endcredits.royalties import parse_agreement
    from endcredits.royalties.records import save_agreement
    from endcredits.service import create_app
    from endcredits.service.auth import create_api_key
    from helpers_money import agreement_text

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    store = world.store
    lm, manifest = bound_char_lm(world)
    settings = AttributionSettings(k=16, chunk_size=2, top_k=2)
    texts_out = [("o1", "song film"), ("o2", "orphan song")]
    outputs = [(o, t.encode()) for o, t in texts_out]
    att = attribute_manifest(store, manifest, lm, outputs, settings=settings)
    assert att.run_id is not None
    with store.read() as conn:
        run = load_run(conn, att.run_id)
    assert run.checkpoint_sha256s == (lm.checksum(),)
    assert run.settings == settings.to_dict() | {"projection": "identity"}  # "auto", resolved for 3 works
    assert (run.method, run.per, run.output_count, run.key_count) == ("trak", "work", 2, 3)
    expected = {o: dict(zip(att.work_ids, att.scores[i].tolist())) for i, (o, _) in enumerate(outputs)}
    assert read_run_scores(store.data_dir, run).for_outputs(["o1", "o2"]) == expected  # exactly
    a = parse_agreement(agreement_text(payout_threshold="0.01"))
    with store.write() as conn:
        save_agreement(conn, a.id, a.version, a.body, a.body_sha256)
        key = create_api_key(conn, role="operator", scopes=["ingest"], label="runs").key
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(store)) as client:
        body = {"manifest_id": manifest.id, "outputs": [{"output_id": o, "text": t} for o, t in texts_out], "k": 16}
        again = client.post("/api/v1/attributions", json={**body, "chunk_size": 2, "top_k": 2}, headers=auth)
        assert again.status_code == 200 and again.json()["attribution_run_id"] == att.run_id  # the same run
        batch = {
            "batch_id": "from-run",
            "agreement_id": a.id,
            "attribution_run_id": att.run_id,
            "outputs": [
                {
                    "output_id": "o1",
                    "model_id": "m",
                    "revenue": "2.00",
                    "currency": "EUR",
                    "occurred_at": "2026-03-01T00:00:00Z",
                }
            ],
        }
        accrued = client.post("/api/v1/usage-batches", json=batch, headers={**auth, "Prefer": "wait"})
    assert accrued.status_code == 201, accrued.text
    assert accrued.json()["attribution_run_id"] == att.run_id and accrued.json()["pool"] == "0.60"


def test_attributing_through_the_edges_keeps_what_was_scored_and_refuses_other_bytes_first(world: World) -> None:
    from endcredits.royalties.output_contents import output_contents_of, read_output_content
    from endcredits.royalties.payees import attribute_and_keep

    store = world.store
    lm, manifest = bound_char_lm(world)
    settings = AttributionSettings(chunk_size=2, top_k=2)
    outputs = [("o1", b"song film"), ("o2", b"orphan song")]
    att = attribute_and_keep(store, manifest, lm, outputs, settings=settings)
    with store.read() as conn:
        kept = output_contents_of(conn, ["o1", "o2"])
    assert {o: read_output_content(store.data_dir, kept[o]) for o in kept} == dict(outputs)
    assert kept["o1"].media_type.startswith("text/")
    assert attribute_and_keep(store, manifest, lm, outputs, settings=settings).run_id == att.run_id  # again: same
    before = row_counts(store)
    with pytest.raises(ConflictError, match="output o2 already has other content"):
        attribute_and_keep(store, manifest, lm, [("o2", b"another song")], settings=settings)
    assert row_counts(store) == before  # refused before any run was recorded
