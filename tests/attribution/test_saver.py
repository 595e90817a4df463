"""Saving features apart from computing them: the saver alone, an interrupted run resumed to the same bytes,
settings saved beside the features and compared on reload, old and new formats never mixed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from endcredits.attribution import pipeline
from endcredits.attribution import saver as saver_module
from endcredits.attribution.charlm import TrainedLM, train_char_lm
from endcredits.attribution.distributed import LocalRunner, featurize_sharded
from endcredits.attribution.featurizer import Featurizer, checkpoint_seed
from endcredits.attribution.models import CharLMModel
from endcredits.attribution.pipeline import featurize_works, featurizer_for
from endcredits.attribution.saver import FeatureSaver, FeatureSet
from endcredits.attribution.settings import SEED_MAX, AttributionSettings
from endcredits.attribution.task import encode_texts, language_model_task
from endcredits.errors import LimitExceededError, ManifestError, ValidationError
from endcredits.interop.abc import iter_tunes

LINEAR_ONLY = ("*norm*", "embed.weight")
"""The embedding and the norms, left out by name: the demo's features (linear layers only)."""
SETTINGS = AttributionSettings(k=32, projection="kronecker", seed=3, chunk_size=4, exclude=LINEAR_ONLY)


def _utf8(texts: list[str]) -> list[bytes]:
    return [t.encode("utf-8") for t in texts]


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    texts = [t.text for t in iter_tunes(limit=14)]
    return [f"w{i:02d}" for i in range(len(texts))], texts


@pytest.fixture(scope="module")
def lm(corpus: tuple[list[str], list[str]]) -> TrainedLM:
    return train_char_lm(corpus[1], seed=0, steps_max=4, time_s_max=60.0, batch_size=4, window=32, checkpoint_steps=[2])


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory, lm: TrainedLM, corpus: tuple[list[str], list[str]]) -> FeatureSet:
    ids, texts = corpus
    return featurize_works(CharLMModel(lm), ids, _utf8(texts), tmp_path_factory.mktemp("whole"), settings=SETTINGS)


class Stop(Exception):
    pass


def _stop_at(rows: int) -> Any:
    def progress(done: int, _total: int) -> None:
        if done >= rows:
            raise Stop

    return progress


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


def test_a_featurize_interrupted_midway_resumes_to_bit_identical_features(
    tmp_path: Path, lm: TrainedLM, corpus: tuple[list[str], list[str]], whole: FeatureSet
) -> None:
    ids, texts = corpus
    with pytest.raises(Stop):
        featurize_works(CharLMModel(lm), ids, _utf8(texts), tmp_path / "one", settings=SETTINGS, progress=_stop_at(8))
    record = json.loads((tmp_path / "one" / "features.json").read_text())
    assert record["rows_done"] == [[[0, 8]]] and json.loads((tmp_path / "one" / "settings.json").read_text()) == {
        **SETTINGS.features_dict()
    }
    with pytest.raises(ManifestError, match="incomplete"):
        FeatureSet.open(tmp_path / "one")
    seen: list[int] = []
    resumed = featurize_works(
        CharLMModel(lm), ids, _utf8(texts), tmp_path / "one", settings=SETTINGS, progress=lambda d, t: seen.append(d)
    )
    assert seen == [12, 14]  # only the chunks after the interruption
    assert _files(resumed.directory) == _files(whole.directory)
    # The same directory, interrupted by one process and finished by shards: the same bytes again.
    with pytest.raises(Stop):
        featurize_works(CharLMModel(lm), ids, _utf8(texts), tmp_path / "two", settings=SETTINGS, progress=_stop_at(4))
    featurizer = featurizer_for(CharLMModel(lm), SETTINGS)
    batch = encode_texts(lm.vocab, texts, length_max=SETTINGS.length_chars)
    sharded = featurize_sharded(
        featurizer, batch, ids, tmp_path / "two", runner=LocalRunner(), shard_rows=8, settings=SETTINGS
    )
    assert _files(sharded.directory) == _files(whole.directory)


def test_resuming_with_other_features_settings_is_refused_and_changes_nothing(
    tmp_path: Path, lm: TrainedLM, corpus: tuple[list[str], list[str]]
) -> None:
    ids, texts = corpus
    out = tmp_path / "features"
    with pytest.raises(Stop):
        featurize_works(CharLMModel(lm), ids, _utf8(texts), out, settings=SETTINGS, progress=_stop_at(4))
    before = _files(out)
    for other, shown in [
        (_settings(seed=4), "seed: saved 3, now 4"),
        (_settings(length_chars=64), "length_chars: saved 256, now 64"),
        (_settings(exclude=["embed.weight"]), r"exclude: saved \['\*norm\*', 'embed.weight'\], now \['embed.weight'\]"),
    ]:
        with pytest.raises(ManifestError, match=f"other settings \\({shown}\\); features are a cache: delete"):
            featurize_works(CharLMModel(lm), ids, _utf8(texts), out, settings=other)
        assert _files(out) == before
    with pytest.raises(ManifestError, match="holds features made with attribution settings; pass the same"):
        featurizer_for(CharLMModel(lm), SETTINGS).featurize(encode_texts(lm.vocab, texts, length_max=256), ids, out)
    # Other scoring settings over the same features: resumed, then reused as they are.
    scoring = _settings(method="tracin", lambda_=1.0, top_k=2)
    done = featurize_works(CharLMModel(lm), ids, _utf8(texts), out, settings=scoring)
    assert FeatureSet.open(out, ids=ids, settings=SETTINGS).ids == done.ids
    calls: list[int] = []
    featurize_works(CharLMModel(lm), ids, _utf8(texts), out, settings=SETTINGS, progress=lambda d, t: calls.append(d))
    assert calls == []  # complete: nothing recomputed


def test_features_of_another_format_are_never_mixed_with_new_ones(
    tmp_path: Path, lm: TrainedLM, corpus: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, texts = corpus
    out = tmp_path / "old"
    with pytest.raises(Stop):
        featurize_works(CharLMModel(lm), ids, _utf8(texts), out, settings=SETTINGS, progress=_stop_at(4))
    record = json.loads((out / "features.json").read_text())
    (out / "features.json").write_text(json.dumps({**record, "format": "endcredits.features/1"}))
    before = _files(out)
    with pytest.raises(ManifestError, match="holds features in format 'endcredits.features/1', not endcredits"):
        featurize_works(CharLMModel(lm), ids, _utf8(texts), out, settings=SETTINGS)
    assert _files(out) == before
    # The pipeline names each directory by the format too: a new format rebuilds beside the old.
    here = pipeline.features_dir(tmp_path, "m@1", CharLMModel(lm), SETTINGS)
    monkeypatch.setattr(pipeline, "FORMAT", "endcredits.features/99")
    assert pipeline.features_dir(tmp_path, "m@1", CharLMModel(lm), SETTINGS) != here


def test_features_saved_with_the_retired_parameters_setting_are_refused_saying_to_featurize_again(
    tmp_path: Path, lm: TrainedLM, corpus: tuple[list[str], list[str]]
) -> None:
    ids, texts = corpus
    out = tmp_path / "old-settings"
    with pytest.raises(Stop):
        featurize_works(CharLMModel(lm), ids, _utf8(texts), out, settings=SETTINGS, progress=_stop_at(4))
    saved = json.loads((out / "settings.json").read_text())
    del saved["exclude"]
    (out / "settings.json").write_text(json.dumps({**saved, "parameters": "linear"}))  # as version 1 saved them
    before = _files(out)
    with pytest.raises(ManifestError, match=r"settings this version no longer has \(parameters\); .* featurize again"):
        featurize_works(CharLMModel(lm), ids, _utf8(texts), out, settings=SETTINGS)
    assert _files(out) == before


def test_the_settings_name_the_features_directory(tmp_path: Path, lm: TrainedLM) -> None:
    here = pipeline.features_dir(tmp_path, "m@1", CharLMModel(lm), SETTINGS)
    assert here.parent == tmp_path / "features" / "m-1" and here.name.startswith(lm.checksum()[:16])
    scoring = _settings(method="tracin", lambda_=7.0, top_k=1)
    assert pipeline.features_dir(tmp_path, "m@1", CharLMModel(lm), scoring) == here
    for other in [_settings(k=64), _settings(chunk_size=8), _settings(exclude=[])]:
        assert pipeline.features_dir(tmp_path, "m@1", CharLMModel(lm), other) != here


def test_the_settings_give_the_featurizer_arguments_of_before_bit_for_bit(
    tmp_path: Path, lm: TrainedLM, corpus: tuple[list[str], list[str]], whole: FeatureSet
) -> None:
    """Determinism unchanged: the settings path writes what ``Featurizer`` wrote with the loose arguments
    every edge passed before (linear layers only, the final checkpoint, 256 characters)."""
    ids, texts = corpus
    task = language_model_task(lm.model, [lm.model.state_dict()])
    featurizer = Featurizer(task, k=32, seed=3, projection="kronecker", chunk_size=4, exclude=LINEAR_ONLY)
    before = featurizer.featurize(encode_texts(lm.vocab, texts, length_max=256), ids, tmp_path / "before")
    assert np.array_equal(before.features(0), whole.features(0)) and np.array_equal(before.weights(0), whole.weights(0))
    assert whole.manifest["plan"] == before.manifest["plan"]
    again = featurize_works(CharLMModel(lm), ids, _utf8(texts), tmp_path / "again", settings=SETTINGS)
    assert _files(again.directory) == _files(whole.directory)


def _settings(**changes: Any) -> AttributionSettings:
    return AttributionSettings.from_dict({**SETTINGS.to_dict(), **changes})


def test_each_features_setting_changes_the_features(
    tmp_path: Path, lm: TrainedLM, corpus: tuple[list[str], list[str]]
) -> None:
    ids, texts = corpus
    ids, texts = ids[:6], texts[:6]

    def features(name: str, settings: AttributionSettings) -> FeatureSet:
        return featurize_works(CharLMModel(lm), ids, _utf8(texts), tmp_path / name, settings=settings)

    base = features("base", SETTINGS).features(0)
    assert not np.array_equal(features("seed", _settings(seed=4)).features(0), base)
    assert not np.array_equal(features("length", _settings(length_chars=40)).features(0), base)
    all_parameters = features("all", _settings(exclude=[]))
    assert all_parameters.manifest["plan"][-1]["rest"]  # embeddings and norms are featurized too
    assert all_parameters.manifest["coverage"]["share_covered"] == 1.0
    assert features("base-again", SETTINGS).manifest["coverage"]["excluded_names"][0] == "embed.weight"
    gaussian = features("gaussian", _settings(projection="gaussian", exclude=[]))
    assert gaussian.manifest["projection"] == "gaussian" and gaussian.features(0).shape == (6, 32)
    trajectory = features("trajectory", _settings(ensemble="trajectory"))
    # Step 2, then the final model, each projected with its own seed: the final model's features are those
    # of a one-checkpoint run at the second checkpoint's seed.
    second = features("second-seed", _settings(seed=checkpoint_seed(SETTINGS.seed, 1))).features(0)
    assert trajectory.models == 2 and np.array_equal(trajectory.features(1), second)
    assert not np.array_equal(trajectory.features(1), base)
    assert not np.array_equal(trajectory.features(0), base)


def test_checkpoints_are_projected_with_their_own_seeds_and_the_first_with_the_seed_given() -> None:
    assert checkpoint_seed(7, 0) == 7
    seeds = {checkpoint_seed(7, m) for m in range(1, 50)} | {checkpoint_seed(8, m) for m in range(1, 50)}
    assert len(seeds) == 98 and all(0 <= s <= SEED_MAX for s in seeds)
    assert checkpoint_seed(7, 3) == checkpoint_seed(7, 3)  # deterministic


def test_a_trajectory_needs_the_kept_checkpoints(lm: TrainedLM) -> None:
    bare = TrainedLM(lm.model, lm.vocab, lm.seed, lm.steps, lm.final_loss)  # as load_lm returns it
    with pytest.raises(ValidationError, match="ensemble 'trajectory' needs the intermediate checkpoints"):
        featurizer_for(CharLMModel(bare), _settings(ensemble="trajectory"))


@pytest.fixture
def no_free_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(saver_module.shutil, "disk_usage", lambda path: type("U", (), {"free": 10})())
    yield


def test_a_directory_that_will_not_fit_is_refused_before_anything_is_written(
    tmp_path: Path, lm: TrainedLM, corpus: tuple[list[str], list[str]], no_free_disk: None
) -> None:
    ids, texts = corpus
    with pytest.raises(LimitExceededError, match=r"need \d+ bytes; .* has 10 bytes free"):
        featurize_works(CharLMModel(lm), ids, _utf8(texts), tmp_path / "full", settings=SETTINGS)
    assert not (tmp_path / "full").exists()
