"""The heavy stages over shards: in this process, or as Ray tasks when given a cluster.

Featurizing splits the manifest's works into shards of whole chunks; attributing splits the output
stream into shards of outputs. Each shard is one task; the driver writes the results in order. The
same shard function runs in both modes, on the same rows, so a cluster gives the same bytes as one
process (tested on a local two-node Ray cluster).

- ``runner_for(None)`` runs shards here, one after another; ``runner_for("auto")`` joins the Ray
  cluster this machine belongs to (or starts a local one); ``runner_for("ray://host:10001")`` or
  ``"host:6379"`` joins that cluster. Workers import ``endcredits``: install it on every node.
- ``featurize_sharded`` writes the same feature directory as ``Featurizer.featurize``, through the same
  ``FeatureSaver``: each finished shard is recorded there, and a run started again (with any shard
  size, or by ``Featurizer.featurize``) computes only the rows not recorded.
- ``attribute_sharded`` featurizes each output with every checkpoint and scores it against every
  payee (``PayeeIndex``), shard by shard; the payee features travel to each worker once.
  ``attribute_batches`` does the same in batches of exactly B outputs (the attribution worker's batches,
  ``ledger.worker``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from endcredits.attribution.featurizer import Featurizer, Role, batch_size, map_batch
from endcredits.attribution.payees import PayeeIndex
from endcredits.attribution.saver import FeatureSaver, FeatureSet
from endcredits.attribution.settings import AttributionSettings
from endcredits.attribution.task import Batch
from endcredits.errors import LimitExceededError, StoreError, ValidationError

SHARD_ROWS_DEFAULT = 4_096
SHARDS_MAX = 1_000_000

Progress = Callable[[int, int], None]
"""``progress(rows_done, rows_total)`` after each shard."""


class Runner(Protocol):
    """Runs ``fn(shared, *args)`` for each args tuple and returns the results in order."""

    name: str

    def map(
        self,
        fn: Callable[..., Any],
        shared: Any,
        args: Sequence[tuple[Any, ...]],
        on_result: Callable[[int, Any], None],
    ) -> None: ...


class LocalRunner:
    """Shards one after another in this process."""

    name = "local"

    def map(
        self,
        fn: Callable[..., Any],
        shared: Any,
        args: Sequence[tuple[Any, ...]],
        on_result: Callable[[int, Any], None],
    ) -> None:
        for i, a in enumerate(args):
            on_result(i, fn(shared, *a))


class RayRunner:
    """Shards as Ray tasks; ``shared`` goes to the object store once; results arrive as they finish."""

    name = "ray"

    def __init__(self, address: str, *, in_flight_max: int = 64) -> None:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray is a dependency
            raise StoreError("--ray needs the ray package: pip install ray") from exc
        self._ray = ray
        self.in_flight_max = in_flight_max
        if not ray.is_initialized():
            try:
                ray.init(
                    address=None if address == "local" else address,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise StoreError(f"cannot join the Ray cluster at {address!r}: {exc}") from exc
        self.address = address

    def map(
        self,
        fn: Callable[..., Any],
        shared: Any,
        args: Sequence[tuple[Any, ...]],
        on_result: Callable[[int, Any], None],
    ) -> None:
        ray = self._ray
        remote = ray.remote(fn)
        shared_ref = ray.put(shared)
        pending: dict[Any, int] = {}
        next_index = 0
        while next_index < len(args) or pending:
            while next_index < len(args) and len(pending) < self.in_flight_max:
                pending[remote.remote(shared_ref, *args[next_index])] = next_index
                next_index += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                on_result(pending.pop(ref), ray.get(ref))


def runner_for(ray: str | None) -> LocalRunner | RayRunner:
    """``None``: this process. ``"auto"``: the cluster this machine is part of, or a new local one.
    Anything else: a cluster address (``host:port`` or ``ray://host:port``)."""
    if ray is None or ray == "":
        return LocalRunner()
    if ray == "auto":
        # Join a running cluster if there is one; otherwise start one on this machine.
        address = "auto" if os.environ.get("RAY_ADDRESS") or _local_cluster_running() else "local"
        return RayRunner(address)
    return RayRunner(ray)


def _local_cluster_running() -> bool:
    return Path("/tmp/ray/ray_current_cluster").exists()


# Featurizing -------------------------------------------------------------------------------------


def _slice(data: Batch, start: int, stop: int) -> Batch:
    return map_batch(data, lambda t: t[start:stop])


def _shard_bounds(n: int, shard_rows: int, chunk_size: int) -> list[tuple[int, int]]:
    if shard_rows < 1:
        raise ValidationError(f"shard_rows {shard_rows} must be at least 1")
    # Whole chunks per shard: each chunk then holds the same examples as in one process.
    rows = -(-shard_rows // chunk_size) * chunk_size
    bounds = [(s, min(n, s + rows)) for s in range(0, n, rows)]
    if len(bounds) > SHARDS_MAX:
        raise LimitExceededError(f"{len(bounds)} shards is over {SHARDS_MAX}; raise shard_rows")
    return bounds


def _featurize_shard(featurizer: Featurizer, data: Batch, role: Role) -> tuple[list[Any], list[Any]]:
    models = len(featurizer.task.checkpoints)
    features = [featurizer.compute(data, checkpoint_index=m, role=role) for m in range(models)]
    weights = [featurizer.weights(data, checkpoint_index=m) for m in range(models)] if role == "train" else []
    return features, weights


def featurize_sharded(
    featurizer: Featurizer,
    data: Batch,
    ids: Sequence[str],
    out_dir: Path,
    *,
    runner: LocalRunner | RayRunner,
    role: Role = "train",
    shard_rows: int = SHARD_ROWS_DEFAULT,
    progress: Progress | None = None,
    settings: AttributionSettings | None = None,
) -> FeatureSet:
    """``featurizer.featurize(data, ids, out_dir, role=role, settings=settings)``, one shard per task: the
    same files. Shards whose rows the directory records as written are skipped."""
    n = batch_size(data)
    if len(ids) != n:
        raise ValidationError(f"{len(ids)} ids for {n} examples; pass one id per example")
    if len(set(ids)) != len(ids):
        raise ValidationError("ids repeat; each example needs its own id")
    models = len(featurizer.task.checkpoints)
    bounds = _shard_bounds(n, shard_rows, featurizer.chunk_size)
    if role == "train":
        featurizer.prepare_basis(data, Path(out_dir))  # projection eigen: the basis before any shard
    saver = FeatureSaver(Path(out_dir), featurizer.header(role, False), ids, settings=settings)
    saver.begin()
    featurizer.save_basis(Path(out_dir))
    todo = [i for i, (a, b) in enumerate(bounds) if not all(saver.is_done(m, a, b) for m in range(models))]

    def store(j: int, result: tuple[list[Any], list[Any]]) -> None:
        start, _ = bounds[todo[j]]
        for m in range(models):
            saver.write(m, start, result[0][m], result[1][m] if role == "train" else None)
        saver.commit(range(models), *bounds[todo[j]])
        if progress is not None:
            progress(min(saver.rows_written(m) for m in range(models)), n)

    try:
        runner.map(_featurize_shard, featurizer, [(_slice(data, *bounds[i]), role) for i in todo], store)
    except ValidationError:
        saver.discard()
        raise
    return saver.finish()


# Attributing -------------------------------------------------------------------------------------


def _attribute_shard(shared: tuple[Featurizer, PayeeIndex], data: Batch) -> npt.NDArray[np.float64]:
    featurizer, index = shared
    targets = [featurizer.compute(data, checkpoint_index=m) for m in range(len(featurizer.task.checkpoints))]
    return index.score(targets)


def attribute_sharded(
    featurizer: Featurizer,
    index: PayeeIndex,
    outputs: Batch,
    *,
    runner: LocalRunner | RayRunner,
    shard_rows: int = SHARD_ROWS_DEFAULT,
    progress: Progress | None = None,
) -> npt.NDArray[np.float64]:
    """Payee scores float64 ``[outputs, payees]``: each shard of outputs featurized and scored in one task."""
    bounds = _shard_bounds(batch_size(outputs), shard_rows, featurizer.chunk_size)
    return _scores_by_bounds(featurizer, index, outputs, bounds, runner, progress)


def attribute_batches(
    featurizer: Featurizer,
    index: PayeeIndex,
    outputs: Batch,
    *,
    batch_outputs: int,
    runner: LocalRunner | RayRunner,
    progress: Progress | None = None,
) -> npt.NDArray[np.float64]:
    """Payee scores float64 ``[outputs, payees]``, ``batch_outputs`` outputs featurized and scored together
    in one task (the last batch may be smaller), one after another here or spread over a Ray cluster."""
    n = batch_size(outputs)
    if batch_outputs < 1:
        raise ValidationError(f"a batch of {batch_outputs} outputs: batches hold at least 1")
    if -(-n // batch_outputs) > SHARDS_MAX:
        raise LimitExceededError(f"{n} outputs in batches of {batch_outputs} is over {SHARDS_MAX} batches")
    bounds = [(s, min(n, s + batch_outputs)) for s in range(0, n, batch_outputs)]
    return _scores_by_bounds(featurizer, index, outputs, bounds, runner, progress)


def _scores_by_bounds(
    featurizer: Featurizer,
    index: PayeeIndex,
    outputs: Batch,
    bounds: list[tuple[int, int]],
    runner: LocalRunner | RayRunner,
    progress: Progress | None,
) -> npt.NDArray[np.float64]:
    n = batch_size(outputs)
    out = np.empty((n, index.psi.shape[0]), dtype=np.float64)
    finished = [0]

    def store(i: int, scores: npt.NDArray[np.float64]) -> None:
        start, stop = bounds[i]
        out[start:stop] = scores
        finished[0] += stop - start
        if progress is not None:
            progress(finished[0], n)

    runner.map(_attribute_shard, (featurizer, index), [(_slice(outputs, a, b),) for a, b in bounds], store)
    return out


__all__ = [
    "LocalRunner",
    "RayRunner",
    "Runner",
    "attribute_batches",
    "attribute_sharded",
    "featurize_sharded",
    "runner_for",
]
