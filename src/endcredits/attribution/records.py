"""Attribution runs: every computation whose scores may move money, recorded with what made them.

A run records the model, its checkpoints' SHA-256 (``TrainedLM.checksum()``), the manifest and its
Merkle root, the method, the ``AttributionSettings``, the seeds, the engine's versions, the model's
validity figure when one was measured, and the SHA-256 of the scores (``RunScores.sha256``). The scores
are kept as a Parquet file under ``DATA/attribution-runs/`` (0600 in 0700 folders), which an accrual reads
back exactly and ``verify`` re-hashes.

A run's id is ``run-`` and 32 hex digits of the SHA-256 of all of that, scores included: the same run
again records nothing new, and scores that differ are another run. The same id with other content is a
``ConflictError``. ``binding_problem`` says why a run no longer fits a manifest (another model, manifest
or root, or another checkpoint bound since); ``read_run_scores`` refuses a file that no longer hashes to
its record. This module imports no torch: the ledger reads runs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Connection, func, select

from endcredits.attribution.settings import AttributionSettings
from endcredits.audit import canonical_json
from endcredits.errors import ConflictError, EvidenceError, LimitExceededError, NotFoundError, ValidationError
from endcredits.limits import CHECKPOINTS_PER_RUN_MAX, RUN_SCORES_MAX, check_id, check_ids
from endcredits.manifest.records import ManifestRecord
from endcredits.store.audit import append_audit
from endcredits.store.engine import Store, utc_now
from endcredits.store.files import private_dir, write_private
from endcredits.store.schema import attribution_runs

RUNS_DIR = "attribution-runs"
SCORES_FORMAT = "endcredits.run-scores/1"
Per = Literal["work", "payee"]
_HEX = frozenset("0123456789abcdef")
_DICTIONARY_PAGE_BYTES_MAX = 1 << 28


def _string_bytes(column: pa.Array | pa.ChunkedArray) -> tuple[bytes, bytes]:
    """A text column's int64 offsets (from 0) and UTF-8 bytes: the same for the same strings, however the
    column was built, chunked or read."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    arr = arr.cast(pa.large_string())
    if arr.null_count:
        raise ValidationError("run scores name an output or a key that is empty (null)")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    start, end = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (0, 0)
    data = arr.buffers()[2]
    return (offsets - start).astype("<i8").tobytes(), (data.to_pybytes()[start:end] if data is not None else b"")


@dataclass(frozen=True)
class RunScores:
    """One run's scores in long form: row ``i`` is key ``keys[i]``'s score for output ``output_ids[i]``;
    a key is a work id (``per`` work) or a payee (``per`` payee)."""

    per: Per
    output_ids: pa.Array  # string
    keys: pa.Array  # string
    scores: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.per not in ("work", "payee"):
            raise ValidationError(f"run scores are per work or per payee, not {self.per!r}")
        if not (len(self.output_ids) == len(self.keys) == len(self.scores)):
            raise ValidationError("run scores have columns of different lengths")
        if len(self.scores) > RUN_SCORES_MAX:
            raise LimitExceededError(f"a run of {len(self.scores)} scores exceeds RUN_SCORES_MAX={RUN_SCORES_MAX}")
        if not np.isfinite(self.scores).all():
            raise ValidationError("run scores must be finite numbers: re-run attribution")

    @classmethod
    def of_matrix(
        cls, per: Per, output_ids: Sequence[str], keys: Sequence[str], scores: npt.NDArray[np.float64]
    ) -> RunScores:
        """Scores ``[outputs, keys]`` (every pair, output by output, keys in their order)."""
        n_out, n_keys = len(output_ids), len(keys)
        if scores.shape != (n_out, n_keys):
            raise ValidationError(f"scores of shape {scores.shape} for {n_out} outputs and {n_keys} keys")
        if n_out * n_keys > RUN_SCORES_MAX:
            raise LimitExceededError(f"a run of {n_out * n_keys} scores exceeds RUN_SCORES_MAX={RUN_SCORES_MAX}")
        outs = pa.array(list(output_ids), pa.string()).take(pa.array(np.repeat(np.arange(n_out), n_keys)))
        ks = pa.array(list(keys), pa.string()).take(pa.array(np.tile(np.arange(n_keys), n_out)))
        return cls(per, outs, ks, np.ascontiguousarray(scores, dtype=np.float64).ravel())

    def sha256(self) -> str:
        """SHA-256 over the format, ``per``, every output id, key and score (float64, little-endian), in
        row order: what a run records and what its file must give back."""
        h = hashlib.sha256(f"{SCORES_FORMAT}\x00{self.per}\x00{len(self.scores)}\x00".encode())
        for column in (self.output_ids, self.keys):
            offsets, data = _string_bytes(column)
            h.update(offsets)
            h.update(data)
        h.update(np.ascontiguousarray(self.scores, dtype="<f8").tobytes())
        return h.hexdigest()

    def distinct(self) -> tuple[list[str], list[str]]:
        """The distinct output ids and keys."""
        return pc.unique(self.output_ids).to_pylist(), pc.unique(self.keys).to_pylist()

    def for_outputs(self, output_ids: Iterable[str]) -> dict[str, dict[str, float]]:
        """``{output: {key: score}}`` for the outputs named that this run scored (exact float64 values)."""
        mask = pc.is_in(self.output_ids, value_set=pa.array(sorted(set(output_ids)), pa.string()))
        picked = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
        out: dict[str, dict[str, float]] = {}
        for o, k, s in zip(
            self.output_ids.filter(mask).to_pylist(), self.keys.filter(mask).to_pylist(), self.scores[picked].tolist()
        ):
            out.setdefault(o, {})[k] = s
        return out


@dataclass(frozen=True)
class AttributionRun:
    id: str
    model_id: str
    manifest_id: str
    merkle_root: str
    checkpoint_sha256s: tuple[str, ...]
    method: str
    weaker: bool
    per: Per
    payee_agreement: str | None  # per payee: the agreement ("id@version") whose credit shares made the scores
    settings: dict[str, Any]
    seeds: dict[str, int]
    engine: dict[str, str]
    validity: dict[str, Any] | None
    output_count: int
    key_count: int
    scores_path: str  # relative to the data directory
    scores_sha256: str
    created_at: str

    def content(self) -> dict[str, Any]:
        """Everything the run's id is derived from (all but the id, the file's place and the time)."""
        return {
            "model_id": self.model_id,
            "manifest_id": self.manifest_id,
            "merkle_root": self.merkle_root,
            "checkpoint_sha256s": list(self.checkpoint_sha256s),
            "method": self.method,
            "weaker": self.weaker,
            "per": self.per,
            "payee_agreement": self.payee_agreement,
            "settings": self.settings,
            "seeds": self.seeds,
            "engine": self.engine,
            "validity": self.validity,
            "output_count": self.output_count,
            "key_count": self.key_count,
            "scores_sha256": self.scores_sha256,
        }

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.id, **self.content(), "scores_path": self.scores_path, "created_at": self.created_at}


def engine_versions() -> dict[str, str]:
    """The versions of what computes scores (read from package metadata: torch is not imported)."""
    out = {}
    for dist in ("endcredits", "torch"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def _check_checkpoints(hashes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(hashes, str) or not hashes:
        raise ValidationError("an attribution run needs a list of at least one checkpoint SHA-256")
    if len(hashes) > CHECKPOINTS_PER_RUN_MAX:
        raise LimitExceededError(f"{len(hashes)} checkpoints exceed CHECKPOINTS_PER_RUN_MAX={CHECKPOINTS_PER_RUN_MAX}")
    for sha in hashes:
        if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _HEX:
            raise ValidationError(f"checkpoint SHA-256 {sha!r:.80} must be 64 lowercase hex digits")
    return tuple(hashes)


def new_run(
    manifest: ManifestRecord,
    scores: RunScores,
    *,
    checkpoint_sha256s: Sequence[str],
    method: str,
    weaker: bool,
    settings: AttributionSettings,
    payee_agreement: str | None = None,
    validity: Mapping[str, Any] | None = None,
) -> AttributionRun:
    """The run record of ``scores`` (not stored): checked, with its content-derived id."""
    check_id(method, "attribution method", spaces=False)
    if len(method) > 32:
        raise ValidationError(f"attribution method {method!r:.40} must be at most 32 characters")
    if (scores.per == "payee") != (payee_agreement is not None):
        raise ValidationError("a run's scores per payee name the agreement whose credit shares made them (only they)")
    outputs, keys = scores.distinct()
    check_ids(outputs, "output id")
    check_ids(keys, "work id" if scores.per == "work" else "payee")
    if scores.per == "work":
        outside = set(keys) - set(manifest.included)
        if outside:
            raise ValidationError(f"run scores name work {min(outside)}, which is not in manifest {manifest.id}")
    fields: dict[str, Any] = {
        "model_id": manifest.model_id,
        "manifest_id": manifest.id,
        "merkle_root": manifest.merkle_root,
        "checkpoint_sha256s": list(_check_checkpoints(checkpoint_sha256s)),
        "method": method,
        "weaker": bool(weaker),
        "per": scores.per,
        "payee_agreement": payee_agreement,
        "settings": settings.to_dict(),
        "seeds": {"projection": settings.seed},
        "engine": engine_versions(),
        "validity": dict(validity) if validity is not None else None,
        "output_count": len(outputs),
        "key_count": len(keys),
        "scores_sha256": scores.sha256(),
    }
    fields = json.loads(canonical_json(fields))  # as the database gives it back (JSON values)
    run_id = "run-" + hashlib.sha256(canonical_json(fields).encode()).hexdigest()[:32]
    fields["checkpoint_sha256s"] = tuple(fields["checkpoint_sha256s"])
    return AttributionRun(id=run_id, **fields, scores_path=f"{RUNS_DIR}/{run_id}.parquet", created_at="")


def record_run(store: Store, run: AttributionRun, scores: RunScores) -> tuple[AttributionRun, str]:
    """Store ``run`` (from ``new_run``) and its scores file; returns the stored run and ``created`` or
    ``exists``. The same id with other content is a ``ConflictError``; nothing is written then. A run
    recorded before whose file is missing or altered gets its file back (its content is the recorded one)."""
    check_id(run.id, "attribution run id", spaces=False)
    if scores.sha256() != run.scores_sha256:
        raise ConflictError(f"the scores given are not the ones attribution run {run.id} records")
    path = store.data_dir / run.scores_path
    with store.read() as conn:
        stored = _load(conn, run.id)
    if stored is not None:
        _same_content(stored, run)
        if not _file_intact(store.data_dir, stored):
            _write_scores(path, scores)
        return stored, "exists"
    _write_scores(path, scores)
    try:
        with store.write() as conn:
            stored = _load(conn, run.id)
            if stored is not None:  # recorded meanwhile by another process: the same file
                _same_content(stored, run)
                return stored, "exists"
            return _insert(conn, run), "created"
    except BaseException:
        with store.read() as conn:
            if _load(conn, run.id) is None:
                path.unlink(missing_ok=True)
        raise


def _insert(conn: Connection, run: AttributionRun) -> AttributionRun:
    at = utc_now()
    conn.execute(
        attribution_runs.insert().values(
            id=run.id,
            model_id=run.model_id,
            manifest_id=run.manifest_id,
            merkle_root=run.merkle_root,
            checkpoint_sha256s=json.dumps(list(run.checkpoint_sha256s)),
            method=run.method,
            weaker=run.weaker,
            per=run.per,
            payee_agreement=run.payee_agreement,
            settings=canonical_json(run.settings),
            seeds=canonical_json(run.seeds),
            engine=canonical_json(run.engine),
            validity=None if run.validity is None else canonical_json(run.validity),
            output_count=run.output_count,
            key_count=run.key_count,
            scores_path=run.scores_path,
            scores_sha256=run.scores_sha256,
            created_at=at,
        )
    )
    summary = {k: v for k, v in run.content().items() if k not in ("settings", "engine", "validity")}
    append_audit(
        conn, "attribution_run", run.id, {**summary, "checkpoint_sha256s": summary["checkpoint_sha256s"][:100]}
    )
    return _load_required(conn, run.id)


def _same_content(stored: AttributionRun, run: AttributionRun) -> None:
    if stored.content() != run.content():
        differ = sorted(k for k, v in run.content().items() if stored.content()[k] != v)
        raise ConflictError(
            f"attribution run {run.id} is already recorded with other content ({', '.join(differ)}); "
            "nothing was written"
        )


def _write_scores(path: Path, scores: RunScores) -> None:
    """The scores as Parquet, durably (fsync, rename): 0600 in 0700 folders."""
    table = pa.table(
        {"output_id": scores.output_ids, "key": scores.keys, "score": pa.array(scores.scores, pa.float64())}
    ).replace_schema_metadata({"endcredits.format": SCORES_FORMAT, "per": scores.per})
    sink = pa.BufferOutputStream()
    # Parquet dictionary pages up to 256 MiB: every (output, work) pair repeats an id, and with the default
    # 1 MiB a manifest of 10^5 works overflows the dictionary and stores each id whole (10^7 scores: 421 MB
    # instead of 152 MB).
    pq.write_table(table, sink, compression="zstd", dictionary_pagesize_limit=_DICTIONARY_PAGE_BYTES_MAX)
    private_dir(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        write_private(tmp, memoryview(sink.getvalue()))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_run_scores(data_dir: Path, run: AttributionRun) -> RunScores:
    """The run's scores, read back from its file and checked against the SHA-256 it recorded
    (``EvidenceError`` when the file is missing, unreadable or altered)."""
    path = Path(data_dir) / run.scores_path
    where = f"the scores file of attribution run {run.id} ({run.scores_path})"
    if not path.is_file():
        raise EvidenceError(f"{where} is missing: restore it from backup, or attribute again")
    try:
        table = pq.read_table(path)
        scores = RunScores(
            run.per,
            table["output_id"].combine_chunks().cast(pa.string()),
            table["key"].combine_chunks().cast(pa.string()),
            table["score"].combine_chunks().cast(pa.float64()).to_numpy(zero_copy_only=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, KeyError, ValidationError) as exc:
        raise EvidenceError(f"{where} is unreadable ({str(exc).splitlines()[0][:200]})") from None
    if scores.sha256() != run.scores_sha256:
        raise EvidenceError(f"{where} does not hash to the SHA-256 the run recorded: it was altered")
    return scores


def _file_intact(data_dir: Path, run: AttributionRun) -> bool:
    try:
        read_run_scores(data_dir, run)
    except EvidenceError:
        return False
    return True


def binding_problem(run: AttributionRun, manifest: ManifestRecord) -> str | None:
    """Why ``run``'s scores may not pay under ``manifest`` (one line), or None when they may: the same
    manifest, model and Merkle root as recorded, and the checkpoint the manifest is bound to among the
    run's checkpoints (a manifest bound to none takes the run's)."""
    if manifest.id != run.manifest_id:
        return f"attribution run {run.id} scored against manifest {run.manifest_id}, not {manifest.id}"
    if manifest.model_id != run.model_id:
        return f"attribution run {run.id} scored model {run.model_id}; manifest {manifest.id} is of {manifest.model_id}"
    if manifest.merkle_root != run.merkle_root:
        return (
            f"attribution run {run.id} recorded manifest root {run.merkle_root[:16]}, but manifest {manifest.id} "
            f"now has root {manifest.merkle_root[:16]}"
        )
    if manifest.checkpoint_sha256 is not None and manifest.checkpoint_sha256 not in run.checkpoint_sha256s:
        return (
            f"attribution run {run.id} scored checkpoint {run.checkpoint_sha256s[0][:16]}, but manifest {manifest.id} "
            f"is bound to checkpoint {manifest.checkpoint_sha256[:16]}: attribute again with the bound checkpoint"
        )
    return None


def _from_row(row: Any) -> AttributionRun:
    return AttributionRun(
        id=row.id,
        model_id=row.model_id,
        manifest_id=row.manifest_id,
        merkle_root=row.merkle_root,
        checkpoint_sha256s=tuple(json.loads(row.checkpoint_sha256s)),
        method=row.method,
        weaker=bool(row.weaker),
        per=row.per,
        payee_agreement=row.payee_agreement,
        settings=json.loads(row.settings),
        seeds=json.loads(row.seeds),
        engine=json.loads(row.engine),
        validity=None if row.validity is None else json.loads(row.validity),
        output_count=row.output_count,
        key_count=row.key_count,
        scores_path=row.scores_path,
        scores_sha256=row.scores_sha256,
        created_at=row.created_at,
    )


def _load(conn: Connection, run_id: str) -> AttributionRun | None:
    row = conn.execute(select(attribution_runs).where(attribution_runs.c.id == run_id)).first()
    return None if row is None else _from_row(row)


def _load_required(conn: Connection, run_id: str) -> AttributionRun:
    run = _load(conn, run_id)
    if run is None:
        raise NotFoundError(f"attribution run {run_id} was not stored")
    return run


def load_run(conn: Connection, run_id: str) -> AttributionRun:
    """The recorded run, or a one-line ``NotFoundError``."""
    check_id(run_id, "attribution run id", spaces=False)
    run = _load(conn, run_id)
    if run is None:
        raise NotFoundError(
            f"no attribution run {run_id[:80]}: use the run id `endcredits attribute` printed (or the API's "
            "attribution_run_id)"
        )
    return run


def runs_by_id(conn: Connection, run_ids: Iterable[str]) -> dict[str, AttributionRun]:
    """The recorded runs among ``run_ids`` (missing ones are left out)."""
    wanted = sorted(set(run_ids))
    out: dict[str, AttributionRun] = {}
    for i in range(0, len(wanted), 1000):
        for row in conn.execute(select(attribution_runs).where(attribution_runs.c.id.in_(wanted[i : i + 1000]))):
            out[row.id] = _from_row(row)
    return out


def run_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(attribution_runs)).scalar_one())


__all__ = [
    "RUNS_DIR",
    "AttributionRun",
    "RunScores",
    "binding_problem",
    "engine_versions",
    "load_run",
    "new_run",
    "read_run_scores",
    "record_run",
    "run_count",
    "runs_by_id",
]
