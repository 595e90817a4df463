"""Validity per model: the LDS against a hand-computed example, the benchmark's functions being the same ones,
the ground truth through an operator's training function on a tiny character model, the figure recorded on
both backends, and every refusal one line with nothing recorded. (That benchmarks/lds.py measures with these
same functions is checked in tests/benchmarks/test_lds.py.)"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import validity_tasks as tasks

from endcredits.attribution.models import load_model
from endcredits.attribution.settings import AttributionSettings
from endcredits.attribution.validity import (
    ValidityReport,
    ground_truth,
    half_subsets,
    measure_outputs,
    training_function,
    validate,
    validate_manifest,
)
from endcredits.attribution.validity_records import (
    latest_validities,
    latest_validity,
    record_validity,
    validity_count,
)
from endcredits.errors import ManifestError, ValidationError
from endcredits.manifest.records import ManifestRecord
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store, init_store
from helpers_money import row_counts

SETTINGS = AttributionSettings(k=32, projection="gaussian", length_chars=48, chunk_size=8, lambda_=1.0)
CHECKPOINT = "ab" * 32

# One output, four works with scores 1..4, and four hand-picked half subsets: the predictions sum the
# scores of each subset's works.
SCORES = np.array([[1.0, 2.0, 3.0, 4.0]])
SUBSETS = np.array([[0, 1], [0, 2], [2, 3], [1, 3]])  # predicted 3, 4, 7, 6: ranks 1, 2, 4, 3
TRUTH = np.array([[1.0, 1.0], [2.0, 2.0], [4.0, 3.0], [3.0, 4.0]])[:, :, None]  # [m, seeds, outputs]


def test_the_lds_of_a_hand_computed_example() -> None:
    report = validate(SCORES, SUBSETS, TRUTH)
    # First seed: ranks 1, 2, 4, 3, as predicted. The second, 1, 2, 3, 4: rho = 1 - 6 * 2 / (4 * 15) = 0.8.
    # Their mean, 1, 2, 3.5, 3.5: rho = 4.5 / sqrt(5 * 4.5). The seeds agree with rho 0.8, so the ceilings
    # are sqrt(0.8) against one seed and sqrt(2 * 0.8 / 1.8) against the mean of two.
    assert report.lds == pytest.approx(1.0)
    assert report.lds_seed_mean == pytest.approx(4.5 / math.sqrt(22.5))
    assert report.seed_to_seed_spearman == pytest.approx(0.8)
    assert report.ceiling_one_seed == pytest.approx(math.sqrt(0.8))
    assert report.ceiling_seed_mean == pytest.approx(math.sqrt(1.6 / 1.8))
    assert (report.subsets, report.seeds, report.outputs, report.works) == (4, 2, 1, 4)
    assert report.lds_per_output == pytest.approx((4.5 / math.sqrt(22.5),))
    one = validate(SCORES, SUBSETS, TRUTH[:, :1])
    assert one.lds == one.lds_seed_mean == pytest.approx(1.0) and one.ceiling_seed_mean is None
    flat = validate(SCORES, SUBSETS, np.ones((4, 2, 1)))  # nothing varied: no figure, and no warning
    assert flat.lds is None and flat.lds_seed_mean is None and flat.ceiling_seed_mean is None
    assert flat.lds_per_output == (None,)


@pytest.mark.parametrize(
    ("subsets", "truth", "message"),
    [
        (SUBSETS[:1], TRUTH[:1], r"subsets must be in \[2, 1000\], not 1"),
        (SUBSETS, TRUTH[:, :0], r"seeds must be in \[1, 16\], not 0"),
        (SUBSETS, TRUTH[:3], "does not fit 4 subsets"),
        (SUBSETS + 3, TRUTH, r"outside \[0, 4\)"),
        (SUBSETS, TRUTH * np.nan, "must be finite"),
    ],
)
def test_validate_refuses_what_does_not_fit(subsets: np.ndarray, truth: np.ndarray, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate(SCORES, subsets, truth)


def _report(lds: float | None = 0.25) -> ValidityReport:
    return ValidityReport(lds, 0.3, 0.5, 0.7, 0.8, subsets=4, seeds=2, outputs=1, works=4, lds_per_output=(0.3,))


def test_the_figure_is_recorded_with_the_model_and_the_latest_is_shown(store: Store) -> None:
    manifest = tasks.register(store, tasks.corpus(2))
    with store.read() as conn:
        assert latest_validity(conn, "m") is None and validity_count(conn) == 0
    with store.write() as conn:
        first = record_validity(
            conn,
            _report(None),
            manifest=manifest,
            checkpoint_sha256=CHECKPOINT,
            model_kind="charlm",
            train_function="ops:train",
            settings=SETTINGS,
            draw_seed=1,
        )
        second = record_validity(
            conn,
            _report(0.25),
            manifest=manifest,
            checkpoint_sha256=CHECKPOINT,
            model_kind="charlm",
            train_function="ops:train",
            settings=SETTINGS,
            draw_seed=1,
        )
    with store.read() as conn:
        latest = latest_validity(conn, "m")
        assert latest == second and latest_validities(conn, ["m", "other"]) == {"m": second}
        audited = [json.loads(e.payload) for e in iter_audit(conn) if e.kind == "model.validity"]
    assert first.lds is None and second.id > first.id
    assert (latest.lds, latest.lds_seed_mean, latest.ceiling_seed_mean) == (0.25, 0.3, 0.8)
    assert (latest.manifest_id, latest.merkle_root, latest.checkpoint_sha256) == (
        manifest.id,
        manifest.merkle_root,
        CHECKPOINT,
    )
    assert AttributionSettings.from_dict(latest.settings) == SETTINGS and latest.method == "trak"
    assert latest.lds_per_output == (0.3,) and latest.measured_at
    assert latest.sentence() == (
        "LDS 0.30 against the mean of 2 retrainings per subset (noise ceiling 0.80); 4 subsets, 1 outputs"
    )
    assert [a["validity_id"] for a in audited] == [first.id, second.id] and audited[1]["lds_seed_mean"] == 0.3


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    s = init_store(tmp_path / "data", None)
    yield s  # type: ignore[misc]
    s.dispose()


def _setup(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ManifestRecord, Path]:
    monkeypatch.setenv(tasks.DATA_ENV, str(store.data_dir))
    manifest = tasks.register(store, tasks.corpus(8))
    return manifest, tasks.trained_on(store, manifest, tmp_path / "main")


OUTPUTS = [(f"o{i}", tasks.corpus(8)[i][:30].encode()) for i in (0, 3, 5)]


def test_validating_a_model_retrains_through_the_operators_function_and_records_the_figure(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_store
    manifest, checkpoint = _setup(store, tmp_path, monkeypatch)
    model = load_model(checkpoint, "charlm")
    measured = measure_outputs(model, OUTPUTS, SETTINGS)
    assert measured.shape == (3,) and np.isfinite(measured).all() and (measured < 0).all()  # log-likelihoods
    seen: list[tuple[int, int]] = []
    v = validate_manifest(
        store,
        manifest,
        model,
        tasks.train,
        OUTPUTS,
        settings=SETTINGS,
        subsets=6,
        seeds=2,
        train_function_name="validity_tasks:train",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (12, 12) and len(seen) == 12
    assert (v.subsets, v.seeds, v.outputs, v.works, v.model_id) == (6, 2, 3, 8, "m")
    assert v.checkpoint_sha256 == model.checksum() and v.train_function == "validity_tasks:train"
    for figure in (v.lds, v.lds_seed_mean, v.seed_to_seed_spearman, v.ceiling_one_seed, v.ceiling_seed_mean):
        assert figure is not None and -1.0 <= figure <= 1.0
    assert v.lds_seed_mean is not None and v.lds_seed_mean > 0.0  # training on a phrase raises its likelihood
    with store.read() as conn:
        assert latest_validity(conn, "m") == v
    # The ground truth alone, from the same training function: the same subsets give the same models.
    subsets = half_subsets(8, 2, 1)
    truth = ground_truth(tasks.train, "charlm", list(manifest.included), subsets, 1, OUTPUTS, SETTINGS)
    again = ground_truth(tasks.train, "charlm", list(manifest.included), subsets, 1, OUTPUTS, SETTINGS)
    assert truth.shape == (2, 1, 3) and np.array_equal(truth, again)


def test_bad_validations_are_refused_in_one_line_and_record_nothing(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_store
    manifest, checkpoint = _setup(store, tmp_path, monkeypatch)
    model = load_model(checkpoint, "charlm")
    before = row_counts(store)
    cases = [
        (tasks.fails, {}, "the training function failed on subset 0, seed 0: RuntimeError: out of GPUs for 4 works$"),
        (tasks.no_model, {}, "the checkpoint trained for subset 0, seed 0 does not load as charlm: .*not a saved"),
        (tasks.no_path, {}, "the training function returned int for subset 0, seed 0, not a checkpoint path"),
        (tasks.train, {"subsets": 1}, r"subsets must be in \[2, 1000\], not 1"),
        (tasks.train, {"seeds": 0}, r"seeds must be in \[1, 16\], not 0"),
        (tasks.train, {"outputs": []}, "no outputs to validate on"),
        (tasks.train, {"outputs": OUTPUTS[:1] * 2}, "an output id appears twice"),
    ]
    for train, changes, message in cases:
        kwargs = {"settings": SETTINGS, "subsets": 2, "seeds": 1, "outputs": OUTPUTS} | changes
        outputs = kwargs.pop("outputs")
        with pytest.raises(ValidationError, match=message) as err:
            validate_manifest(store, manifest, model, train, outputs, **kwargs)  # type: ignore[arg-type]
        assert "\n" not in str(err.value)
    bound = ManifestRecord(**{**manifest.__dict__, "checkpoint_sha256": CHECKPOINT})
    with pytest.raises(ManifestError, match="is not the one manifest .* is bound to"):
        validate_manifest(store, bound, model, tasks.train, OUTPUTS, settings=SETTINGS, subsets=2, seeds=1)
    stranger = load_model(tasks.train_texts(tasks.corpus(3), 5, tmp_path / "stranger"), "charlm")
    with pytest.raises(ManifestError, match="is from no recorded training run of manifest"):
        validate_manifest(store, manifest, stranger, tasks.train, OUTPUTS, settings=SETTINGS, subsets=2, seeds=1)
    assert row_counts(store) == before


def test_a_training_function_that_cannot_be_had_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ops_broken.py").write_text("import no_such_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    refusals = {
        "ops_broken:train": "cannot import ops_broken for training function ops_broken:train: ModuleNotFoundError",
        "validity_tasks:absent": "validity_tasks has no function absent",
        "no-colon": "training function 'no-colon' is not module:function",
    }
    for name, message in refusals.items():
        with pytest.raises(ValidationError, match=message) as err:
            training_function(name)
        assert "\n" not in str(err.value)
    assert training_function("validity_tasks:train") is tasks.train
    sys.modules.pop("ops_broken", None)
