"""Gradient features: determinism, chunk and padding invariance, JL accuracy, a quality floor, guards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from endcredits.attribution import gradients
from endcredits.attribution.charlm import TrainedLM, generate, train_char_lm
from endcredits.attribution.gradients import featurize, per_example_gradients, tracin_scores
from endcredits.errors import ValidationError
from endcredits.interop.abc import corpus_dir, iter_tunes

LENGTH_MAX = 160


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def texts() -> list[str]:
    # Ryan's Mammoth: one tune a file, English titles, varied tunes.
    return [t.text for t in iter_tunes(corpus_dir() / "ryansMammoth", limit=36)]


@pytest.fixture(scope="module")
def lm(texts: list[str]) -> TrainedLM:
    return train_char_lm(texts, seed=1, steps_max=200, time_s_max=600.0, window=32, batch_size=16)


@pytest.fixture(scope="module")
def features(lm: TrainedLM, texts: list[str]) -> np.ndarray:
    return featurize(lm, texts, k=256, seed=7, chunk_size=16, length_max=LENGTH_MAX)


def test_featurize_shape_determinism_and_seed(lm: TrainedLM, texts: list[str], features: np.ndarray) -> None:
    assert features.shape == (len(texts), 256) and features.dtype == np.float32
    assert np.isfinite(features).all()
    done: list[int] = []
    again = featurize(lm, texts, k=256, seed=7, chunk_size=16, length_max=LENGTH_MAX, progress=done.append)
    assert np.array_equal(again, features)
    assert done == [16, 32, len(texts)]
    other_seed = featurize(lm, texts[:4], k=256, seed=8, chunk_size=16, length_max=LENGTH_MAX)
    assert _relative_error(other_seed, features[:4]) > 0.5


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_featurize_is_invariant_to_chunk_size(
    lm: TrainedLM, texts: list[str], features: np.ndarray, chunk_size: int
) -> None:
    subset = texts[:10] if chunk_size == 1 else texts
    got = featurize(lm, subset, k=256, seed=7, chunk_size=chunk_size, length_max=LENGTH_MAX)
    assert _relative_error(got, features[: len(subset)]) < 1e-5


def test_projection_without_its_cache_is_the_same(
    lm: TrainedLM, texts: list[str], features: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks regenerated for every chunk equal blocks generated once: the projection depends on the seed only."""
    monkeypatch.setattr(gradients, "PROJECTION_CACHE_BYTES_MAX", 0)
    got = featurize(lm, texts[:20], k=256, seed=7, chunk_size=7, length_max=LENGTH_MAX)
    assert _relative_error(got, features[:20]) < 1e-5


def test_padding_and_truncation_do_not_change_a_text(lm: TrainedLM, texts: list[str]) -> None:
    short = "X:1\nT:Short\nK:G\nGABc dedB|"
    long_text = texts[0] * 3  # forces the chunk to a longer padded length
    alone = featurize(lm, [short], k=64, seed=2, length_max=LENGTH_MAX)
    with_long = featurize(lm, [short, long_text], k=64, seed=2, length_max=LENGTH_MAX)
    roomy = featurize(lm, [short, long_text], k=64, seed=2, length_max=4 * LENGTH_MAX)
    assert _relative_error(with_long[:1], alone) < 1e-5
    assert _relative_error(roomy[:1], alone) < 1e-5
    # A text longer than length_max is scored on its first length_max characters.
    truncated = featurize(lm, [long_text[:LENGTH_MAX]], k=64, seed=2, length_max=LENGTH_MAX)
    assert _relative_error(with_long[1:], truncated) < 1e-5
    assert _relative_error(roomy[1:], truncated) > 1e-3


def test_projection_preserves_inner_products(lm: TrainedLM, texts: list[str]) -> None:
    subset = texts[:24]
    exact = per_example_gradients(lm, subset, length_max=LENGTH_MAX).double()
    exact_dots = (exact @ exact.T).numpy()
    projected = featurize(lm, subset, k=512, seed=4, length_max=LENGTH_MAX).astype(np.float64)
    projected_dots = projected @ projected.T
    upper = np.triu_indices(len(subset), k=1)
    off_diagonal = np.corrcoef(exact_dots[upper], projected_dots[upper])[0, 1]
    everything = np.corrcoef(exact_dots.ravel(), projected_dots.ravel())[0, 1]
    assert off_diagonal > 0.9 and everything > 0.9, (off_diagonal, everything)
    norms_ratio = np.diag(projected_dots) / np.diag(exact_dots)
    assert np.all(np.abs(norms_ratio - 1.0) < 0.25), norms_ratio


def test_a_copy_of_a_training_text_points_at_it(lm: TrainedLM, texts: list[str], features: np.ndarray) -> None:
    copies = featurize(lm, texts[:12], k=256, seed=7, length_max=LENGTH_MAX)
    scores = tracin_scores(copies, features)
    for i in range(12):
        others = np.delete(scores[i], i)
        assert scores[i, i] > np.median(others)
    # Most copies rank their own text first.
    assert sum(int(np.argmax(scores[i]) == i) for i in range(12)) >= 9


def test_an_output_continuing_a_training_text_points_at_it(
    lm: TrainedLM, texts: list[str], features: np.ndarray
) -> None:
    outputs = []
    for i in range(12):
        prefix = texts[i][: int(LENGTH_MAX * 0.6)]
        outputs.append(generate(lm, n=1, seed=100 + i, length_max=LENGTH_MAX, prompt=prefix)[0])
    scores = tracin_scores(featurize(lm, outputs, k=256, seed=7, length_max=LENGTH_MAX), features)
    above_median = [scores[i, i] > np.median(np.delete(scores[i], i)) for i in range(12)]
    assert sum(above_median) >= 10, scores.diagonal()


def test_non_finite_gradients_name_the_texts(lm: TrainedLM, texts: list[str]) -> None:
    broken = train_char_lm(texts, seed=1, steps_max=1, time_s_max=60.0, window=32, batch_size=4)
    marker = "~"
    marker_id = broken.vocab.encode(marker)[0]
    assert marker_id != 0, "the corpus slice must contain the marker character"
    with torch.no_grad():
        broken.model.embed.weight[marker_id] = float("nan")
    sample = [t for t in texts[:8] if marker not in t[:LENGTH_MAX]][:4]
    sample.insert(1, "X:1\nT:Turn\nK:G\n~G3 ABc|")
    sample.append("X:2\nT:Turns\nK:D\nd2 ~f2 ~a2 " + "d" * 300)  # the longest: in another chunk
    assert np.isfinite(featurize(broken, sample[2:5], k=16, seed=0, length_max=LENGTH_MAX)).all()
    with pytest.raises(ValidationError, match=r"texts \[1, 5\] are NaN or infinite"):
        featurize(broken, sample, k=16, seed=0, chunk_size=2, length_max=LENGTH_MAX)
    with pytest.raises(ValidationError, match=r"texts \[1\] are NaN"):
        per_example_gradients(broken, sample[:3], length_max=LENGTH_MAX)


def test_tracin_scores_are_float64_dot_products() -> None:
    rng = np.random.default_rng(0)
    outputs = rng.standard_normal((3, 8)).astype(np.float32)
    works = rng.standard_normal((5, 8)).astype(np.float32)
    scores = tracin_scores(outputs, works)
    assert scores.shape == (3, 5) and scores.dtype == np.float64
    assert np.allclose(scores, outputs.astype(np.float64) @ works.astype(np.float64).T, rtol=0, atol=1e-12)
    with pytest.raises(ValidationError, match="same k"):
        tracin_scores(outputs, works[:, :4])
    works[2, 1] = np.nan
    with pytest.raises(ValidationError, match=r"rows \[2\]"):
        tracin_scores(outputs, works)


def test_featurize_rejects_bad_arguments(lm: TrainedLM) -> None:
    with pytest.raises(ValidationError, match="k 0"):
        featurize(lm, ["X:1\n"], k=0, seed=0)
    with pytest.raises(ValidationError, match="chunk_size"):
        featurize(lm, ["X:1\n"], k=8, seed=0, chunk_size=0)
    with pytest.raises(ValidationError, match=r"texts \[1\]"):
        featurize(lm, ["X:1\n", "X"], k=8, seed=0)
