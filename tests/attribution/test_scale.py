"""Featurizing and attributing over shards: one process and a local two-node Ray cluster give the same bytes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_tasks import blobs, mlp, state

from endcredits.attribution import CreditMatrix, Featurizer, PayeeIndex, TRAKScorer, classification_task
from endcredits.attribution.distributed import (
    LocalRunner,
    RayRunner,
    attribute_batches,
    attribute_sharded,
    featurize_sharded,
    runner_for,
)
from endcredits.attribution.featurizer import FeatureSet
from endcredits.errors import ManifestError, ValidationError


def _featurizer(chunk_size: int = 8) -> Featurizer:
    members = [state(mlp(6, 10, 3, seed=s)) for s in (1, 2)]
    task = classification_task(mlp(6, 10, 3, seed=1), members)
    return Featurizer(task, k=48, seed=5, projection="kronecker", chunk_size=chunk_size)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def data() -> tuple[Any, list[str]]:
    x, y = blobs(70, seed=3)
    return (x, y), [f"work-{i:03d}" for i in range(70)]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, data: tuple[Any, list[str]]) -> FeatureSet:
    batch, ids = data
    return _featurizer().featurize(batch, ids, tmp_path_factory.mktemp("single"))


def test_local_shards_write_the_same_files_as_one_featurize(
    tmp_path: Path, data: tuple[Any, list[str]], single: FeatureSet
) -> None:
    batch, ids = data
    seen: list[tuple[int, int]] = []
    out = featurize_sharded(
        _featurizer(),
        batch,
        ids,
        tmp_path,
        runner=LocalRunner(),
        shard_rows=20,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert _files(out.directory) == _files(single.directory)
    assert seen[-1] == (70, 70) and len(seen) == 3  # 20 rows round up to 24 (whole chunks of 8): 3 shards


class _StopAfter:
    """A runner that runs the first ``n`` shards, then fails, as an interrupted run would."""

    name = "interrupted"

    def __init__(self, n: int) -> None:
        self.n = n

    def map(
        self,
        fn: Callable[..., Any],
        shared: Any,
        args: Sequence[tuple[Any, ...]],
        on_result: Callable[[int, Any], None],
    ) -> None:
        for i, a in enumerate(args[: self.n]):
            on_result(i, fn(shared, *a))
        raise KeyboardInterrupt


def test_an_interrupted_sharded_run_resumes_and_gives_the_same_files(
    tmp_path: Path, data: tuple[Any, list[str]], single: FeatureSet
) -> None:
    batch, ids = data
    with pytest.raises(KeyboardInterrupt):
        featurize_sharded(_featurizer(), batch, ids, tmp_path, runner=_StopAfter(2), shard_rows=16)  # type: ignore[arg-type]
    with pytest.raises(ManifestError):
        FeatureSet.open(tmp_path)
    ran: list[int] = []

    class Counting(LocalRunner):
        def map(
            self,
            fn: Callable[..., Any],
            shared: Any,
            args: Sequence[tuple[Any, ...]],
            on_result: Callable[[int, Any], None],
        ) -> None:
            ran.append(len(args))
            super().map(fn, shared, args, on_result)

    out = featurize_sharded(_featurizer(), batch, ids, tmp_path, runner=Counting(), shard_rows=16)
    assert ran == [3]  # 5 shards of 16, 2 were done
    assert _files(out.directory) == _files(single.directory)


def test_a_resumed_run_takes_any_shard_size_but_refuses_other_arguments(
    tmp_path: Path, data: tuple[Any, list[str]], single: FeatureSet
) -> None:
    batch, ids = data
    with pytest.raises(KeyboardInterrupt):
        featurize_sharded(_featurizer(), batch, ids, tmp_path, runner=_StopAfter(1), shard_rows=16)  # type: ignore[arg-type]
    before = _files(tmp_path)
    members = [state(mlp(6, 10, 3, seed=s)) for s in (1, 2)]
    other_seed = Featurizer(classification_task(mlp(6, 10, 3, seed=1), members), k=48, seed=6, chunk_size=8)
    with pytest.raises(ManifestError, match="seed: recorded 5, now 6"):
        featurize_sharded(other_seed, batch, ids, tmp_path, runner=LocalRunner(), shard_rows=16)
    assert _files(tmp_path) == before  # refused: nothing written
    # The shard size is not an argument of the features: shards of 32 finish what shards of 16 began.
    out = featurize_sharded(_featurizer(), batch, ids, tmp_path, runner=LocalRunner(), shard_rows=32)
    assert _files(out.directory) == _files(single.directory)


def _payee_index(single: FeatureSet) -> PayeeIndex:
    scorer = TRAKScorer(lambda_=1e-2).fit(single.features_per_model(), single.weights_per_model())
    rng = np.random.default_rng(0)
    works = rng.integers(0, 70, size=120)
    payees = rng.integers(0, 9, size=120)
    credits = CreditMatrix.from_triplets(works, payees, rng.random(120), works=70, payees=9)
    return PayeeIndex(scorer, credits)


def test_sharded_attribution_equals_scoring_all_outputs_at_once(single: FeatureSet) -> None:
    index = _payee_index(single)
    x, y = blobs(21, seed=9)
    featurizer = _featurizer()
    scores = attribute_sharded(featurizer, index, (x, y), runner=LocalRunner(), shard_rows=8)
    targets = [featurizer.compute((x, y), checkpoint_index=m) for m in range(2)]
    np.testing.assert_allclose(scores, index.score(targets), rtol=1e-12, atol=1e-12)
    per_work = index.scorer.score(targets)
    dense = np.zeros((70, 9))
    np.add.at(dense, (index.credits.work_index, index.credits.payee_index), index.credits.share)
    np.testing.assert_allclose(scores, per_work @ dense, rtol=1e-6)


def test_attributing_in_batches_of_b_outputs_equals_scoring_them_at_once(single: FeatureSet) -> None:
    index = _payee_index(single)
    x, y = blobs(21, seed=9)
    featurizer = _featurizer()
    at_once = index.score([featurizer.compute((x, y), checkpoint_index=m) for m in range(2)])
    for b in (1, 5, 64):
        scores = attribute_batches(featurizer, index, (x, y), batch_outputs=b, runner=LocalRunner())
        np.testing.assert_allclose(scores, at_once, rtol=1e-5, atol=1e-6 * np.abs(at_once).max())  # float32 rounding
    with pytest.raises(ValidationError, match="a batch of 0 outputs"):
        attribute_batches(featurizer, index, (x, y), batch_outputs=0, runner=LocalRunner())


def test_no_ray_address_runs_here() -> None:
    assert isinstance(runner_for(None), LocalRunner)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A head node and one more node, one CPU each: two workers, started (and stopped) by the test."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()


def test_a_two_node_ray_cluster_gives_the_same_bytes_as_one_process(
    ray_cluster: str, tmp_path: Path, data: tuple[Any, list[str]], single: FeatureSet
) -> None:
    import ray

    runner = runner_for(ray_cluster)
    assert isinstance(runner, RayRunner)
    batch, ids = data
    out = featurize_sharded(_featurizer(), batch, ids, tmp_path / "ray", runner=runner, shard_rows=16)
    assert _files(out.directory) == _files(single.directory)
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2

    index = _payee_index(single)
    x, y = blobs(40, seed=11)
    local = attribute_sharded(_featurizer(), index, (x, y), runner=LocalRunner(), shard_rows=8)
    remote = attribute_sharded(_featurizer(), index, (x, y), runner=runner, shard_rows=8)
    assert np.array_equal(local, remote)
    local = attribute_batches(_featurizer(), index, (x, y), batch_outputs=3, runner=LocalRunner())
    remote = attribute_batches(_featurizer(), index, (x, y), batch_outputs=3, runner=runner)
    assert np.array_equal(local, remote)  # the attribution worker's batches, spread over both nodes


def test_the_demo_models_works_featurize_the_same_on_the_cluster(ray_cluster: str, tmp_path: Path) -> None:
    """The path `endcredits featurize --ray ADDRESS` takes: texts -> scale -> Ray, against one process."""
    from endcredits.attribution.charlm import train_char_lm
    from endcredits.attribution.models import CharLMModel
    from endcredits.attribution.pipeline import featurize_works
    from endcredits.attribution.settings import AttributionSettings
    from endcredits.interop.abc import iter_tunes

    texts = [t.text for t in iter_tunes(limit=40)]
    ids = [f"w{i:02d}" for i in range(len(texts))]
    lm = train_char_lm(texts, seed=0, steps_max=2, time_s_max=30.0, batch_size=4, window=32)
    settings = AttributionSettings(k=64, seed=3)
    here = featurize_works(CharLMModel(lm), ids, [t.encode() for t in texts], tmp_path / "here", settings=settings)
    there = featurize_works(
        CharLMModel(lm), ids, [t.encode() for t in texts], tmp_path / "there", settings=settings, ray=ray_cluster
    )
    assert _files(here.directory) == _files(there.directory)
