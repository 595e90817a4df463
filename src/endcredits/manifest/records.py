"""Models, manifests and training runs as stored: the records the manifest stage owns.

A manifest is never changed once saved; a training run names the manifest and its Merkle root.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from endcredits.errors import ConflictError, LimitExceededError, ManifestError, NotFoundError, ValidationError
from endcredits.limits import CHECKPOINTS_PER_RUN_MAX, check_id
from endcredits.registry.records import check_list_limit, derived_works
from endcredits.store.audit import append_audit
from endcredits.store.bulk import bulk_insert, chunks
from endcredits.store.engine import format_time, utc_now
from endcredits.store.schema import manifest_entries, manifests, models, training_runs, works


def add_model(conn: Connection, model_id: str, uses: Sequence[str], description: str) -> None:
    check_id(model_id, "model id", spaces=False)
    joined = ",".join(sorted(set(uses)))
    row = conn.execute(select(models).where(models.c.id == model_id)).first()
    if row is not None:
        if row.uses != joined:
            raise ConflictError(f"model {model_id} is registered for uses {row.uses}, not {joined}")
        return
    at = utc_now()
    conn.execute(models.insert().values(id=model_id, uses=joined, description=description, created_at=at))
    append_audit(conn, "model.added", model_id, {"uses": joined}, at=at)


def model_ids_exist(conn: Connection, model_ids: Sequence[str]) -> None:
    wanted = sorted(set(model_ids))
    for part in chunks(wanted):
        found = {r.id for r in conn.execute(select(models.c.id).where(models.c.id.in_(part)))}
        missing = sorted(set(part) - found)
        if missing:
            raise NotFoundError(
                f"model {missing[0]} is not registered: build its manifest first (`endcredits manifest build`)"
            )


def model_uses(conn: Connection, model_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The uses each registered model of ``model_ids`` is registered for (a model not registered is left out)."""
    out: dict[str, tuple[str, ...]] = {}
    for part in chunks(sorted(set(model_ids))):
        for r in conn.execute(select(models.c.id, models.c.uses).where(models.c.id.in_(part))):
            out[r.id] = tuple(r.uses.split(","))
    return out


@dataclass(frozen=True)
class ManifestRecord:
    id: str
    model_id: str
    uses: tuple[str, ...]
    as_of: str
    merkle_root: str
    included: tuple[str, ...]  # sorted work ids
    excluded: tuple[tuple[str, str], ...]  # (work id, reason)
    checkpoint_sha256: str | None
    created_at: str
    project: str | None = None  # the project it was built for: likeness grants count only for their own


def save_manifest(conn: Connection, record: ManifestRecord) -> None:
    """Store a manifest. The same id with other content is refused; a manifest is never changed."""
    check_id(record.id, "manifest id", spaces=False)
    row = conn.execute(select(manifests).where(manifests.c.id == record.id)).first()
    if row is not None:
        if row.merkle_root != record.merkle_root or row.model_id != record.model_id:
            raise ManifestError(
                f"manifest {record.id} already exists with root {row.merkle_root}; manifests never change"
            )
        return
    conn.execute(
        manifests.insert().values(
            id=record.id,
            model_id=record.model_id,
            uses=",".join(record.uses),
            as_of=record.as_of,
            merkle_root=record.merkle_root,
            included_count=len(record.included),
            excluded_count=len(record.excluded),
            checkpoint_sha256=record.checkpoint_sha256,
            created_at=record.created_at,
            project=record.project,
        )
    )
    rows: list[tuple[str, str, int | None, str | None]] = [
        (record.id, w, i, None) for i, w in enumerate(record.included)
    ]
    rows += [(record.id, w, None, reason) for w, reason in record.excluded]
    bulk_insert(conn, "manifest_entries", ("manifest_id", "work_id", "leaf_index", "excluded_reason"), rows)
    append_audit(
        conn,
        "manifest.built",
        record.id,
        {
            "model": record.model_id,
            "uses": list(record.uses),
            "as_of": record.as_of,
            "root": record.merkle_root,
            "included": len(record.included),
            "excluded": len(record.excluded),
            **({"project": record.project} if record.project is not None else {}),
        },
        at=record.created_at,
    )


def set_manifest_checkpoint(conn: Connection, manifest_id: str, checkpoint_sha256: str) -> None:
    row = conn.execute(select(manifests.c.checkpoint_sha256).where(manifests.c.id == manifest_id)).first()
    if row is None:
        raise NotFoundError(f"no manifest {manifest_id}")
    if row.checkpoint_sha256 not in (None, checkpoint_sha256):
        raise ManifestError(
            f"manifest {manifest_id} is bound to checkpoint {row.checkpoint_sha256}, not {checkpoint_sha256}"
        )
    conn.execute(manifests.update().where(manifests.c.id == manifest_id).values(checkpoint_sha256=checkpoint_sha256))
    append_audit(conn, "manifest.checkpoint", manifest_id, {"checkpoint_sha256": checkpoint_sha256})


def load_manifest(conn: Connection, manifest_id: str) -> ManifestRecord:
    row = conn.execute(select(manifests).where(manifests.c.id == manifest_id)).first()
    if row is None:
        raise NotFoundError(f"no manifest {manifest_id}: list them with `endcredits manifest list`")
    entries = conn.execute(select(manifest_entries).where(manifest_entries.c.manifest_id == manifest_id)).all()
    included = tuple(
        e.work_id for e in sorted((e for e in entries if e.leaf_index is not None), key=lambda e: e.leaf_index)
    )
    excluded = tuple(sorted((e.work_id, e.excluded_reason) for e in entries if e.leaf_index is None))
    return ManifestRecord(
        row.id,
        row.model_id,
        tuple(row.uses.split(",")),
        row.as_of,
        row.merkle_root,
        included,
        excluded,
        row.checkpoint_sha256,
        row.created_at,
        row.project,
    )


@dataclass(frozen=True)
class ManifestSummary:
    """A manifest's row without its entries: what `manifest list` shows."""

    id: str
    model_id: str
    uses: tuple[str, ...]
    as_of: str
    merkle_root: str
    included_count: int
    excluded_count: int
    created_at: str


def manifests_list(conn: Connection, *, model_id: str | None = None, limit: int) -> list[ManifestSummary]:
    """Manifests, newest first (of one model, when given); at most ``limit``."""
    q = select(manifests).order_by(manifests.c.created_at.desc(), manifests.c.id).limit(check_list_limit(limit))
    if model_id is not None:
        q = q.where(manifests.c.model_id == model_id)
    return [
        ManifestSummary(
            r.id,
            r.model_id,
            tuple(r.uses.split(",")),
            r.as_of,
            r.merkle_root,
            int(r.included_count),
            int(r.excluded_count),
            r.created_at,
        )
        for r in conn.execute(q)
    ]


def manifest_works(conn: Connection, manifest_id: str, *, limit: int) -> list[tuple[int, str, str]]:
    """The first ``limit`` included works of a manifest in leaf order: (leaf index, work id, title)."""
    q = (
        select(manifest_entries.c.leaf_index, manifest_entries.c.work_id, works.c.title)
        .join(works, works.c.id == manifest_entries.c.work_id)
        .where(manifest_entries.c.manifest_id == manifest_id, manifest_entries.c.leaf_index.is_not(None))
        .order_by(manifest_entries.c.leaf_index)
        .limit(check_list_limit(limit))
    )
    return [(int(i), w, t) for i, w, t in conn.execute(q)]


def latest_manifest_id(conn: Connection, model_id: str) -> str:
    row = conn.execute(
        select(manifests.c.id)
        .where(manifests.c.model_id == model_id)
        .order_by(manifests.c.created_at.desc(), manifests.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFoundError(f"model {model_id} has no manifest: run `endcredits manifest build --model {model_id}`")
    return str(row.id)


def manifests_using(conn: Connection, work_id: str) -> list[tuple[str, str]]:
    """(manifest id, model id) of every manifest that included ``work_id``: who to tell on revocation."""
    q = (
        select(manifests.c.id, manifests.c.model_id)
        .join(manifest_entries, manifest_entries.c.manifest_id == manifests.c.id)
        .where(manifest_entries.c.work_id == work_id, manifest_entries.c.leaf_index.is_not(None))
    )
    return [(r.id, r.model_id) for r in conn.execute(q.order_by(manifests.c.id))]


@dataclass(frozen=True)
class UseReport:
    """One manifest that included a work touched by a revocation, and how: ``via`` is the work the
    revoked grant covers when ``work_id`` is derived from it (None: the work itself)."""

    manifest_id: str
    model_id: str
    work_id: str
    via: str | None
    training_run_ids: tuple[str, ...]


def revocation_report(conn: Connection, work_ids: Sequence[str]) -> list[UseReport]:
    """Every manifest (and its model and recorded training runs) that included one of ``work_ids`` or a
    work derived from one of them: who to tell after a revocation (invariant 4). Sorted, deterministic."""
    derived = derived_works(conn, work_ids)
    via: dict[str, str | None] = {w: None for w in work_ids}
    via.update(derived)
    runs: dict[str, list[str]] = {}
    out: list[UseReport] = []
    for part in chunks(sorted(via)):
        q = (
            select(manifests.c.id, manifests.c.model_id, manifest_entries.c.work_id)
            .join(manifest_entries, manifest_entries.c.manifest_id == manifests.c.id)
            .where(manifest_entries.c.work_id.in_(part), manifest_entries.c.leaf_index.is_not(None))
        )
        rows = conn.execute(q).all()
        manifest_ids = sorted({r.id for r in rows} - set(runs))
        for mpart in chunks(manifest_ids):
            for mid in mpart:
                runs.setdefault(mid, [])
            q2 = select(training_runs.c.id, training_runs.c.manifest_id).where(training_runs.c.manifest_id.in_(mpart))
            for r in conn.execute(q2):
                runs[r.manifest_id].append(r.id)
        out.extend(UseReport(r.id, r.model_id, r.work_id, via[r.work_id], tuple(sorted(runs[r.id]))) for r in rows)
    return sorted(out, key=lambda u: (u.model_id, u.manifest_id, u.work_id))


# Training runs -----------------------------------------------------------------------------------
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TrainingRun:
    """A training run: which model was trained on which manifest (and its root), producing which checkpoints."""

    id: str
    model_id: str
    manifest_id: str
    merkle_root: str
    checkpoint_sha256s: tuple[str, ...]
    started_at: str
    finished_at: str
    recorded_at: str


def _run_from_row(r: Any) -> TrainingRun:
    return TrainingRun(
        r.id,
        r.model_id,
        r.manifest_id,
        r.merkle_root,
        tuple(json.loads(r.checkpoint_sha256s)),
        r.started_at,
        r.finished_at,
        r.recorded_at,
    )


def record_training_run(
    conn: Connection,
    *,
    run_id: str,
    manifest_id: str,
    checkpoint_sha256s: Sequence[str],
    started_at: dt.datetime,
    finished_at: dt.datetime,
    model_id: str | None = None,
) -> TrainingRun:
    """Record that the manifest's model was trained on exactly that manifest, producing these checkpoints.

    The model and the Merkle root come from the manifest (``model_id``, when given, must match it), so a
    run always names the root anyone can check proofs against. Idempotent by ``run_id``: the same run
    again returns the stored one; the same id with other content is refused. Audited.
    """
    check_id(run_id, "training run id", spaces=False)
    if isinstance(checkpoint_sha256s, str) or not checkpoint_sha256s:
        raise ValidationError(f"training run {run_id} needs a list of at least one checkpoint SHA-256")
    if len(checkpoint_sha256s) > CHECKPOINTS_PER_RUN_MAX:
        raise LimitExceededError(
            f"training run {run_id} lists {len(checkpoint_sha256s)} checkpoints; "
            f"CHECKPOINTS_PER_RUN_MAX={CHECKPOINTS_PER_RUN_MAX}"
        )
    for index, sha in enumerate(checkpoint_sha256s):
        if not isinstance(sha, str) or _SHA256_HEX.fullmatch(sha) is None:
            raise ValidationError(
                f"training run {run_id} checkpoint {index} {sha!r:.80} must be 64 lowercase hex "
                "digits (the checkpoint file's SHA-256)"
            )
    if len(set(checkpoint_sha256s)) != len(checkpoint_sha256s):
        raise ValidationError(f"training run {run_id} lists a checkpoint SHA-256 twice")
    started, finished = format_time(started_at), format_time(finished_at)
    if finished_at < started_at:
        raise ValidationError(f"training run {run_id} finished at {finished}, before it started at {started}")
    m = conn.execute(select(manifests.c.model_id, manifests.c.merkle_root).where(manifests.c.id == manifest_id)).first()
    if m is None:
        raise NotFoundError(f"no manifest {manifest_id}: list them with `endcredits manifest list`")
    if model_id is not None and model_id != m.model_id:
        raise ManifestError(f"manifest {manifest_id} is for model {m.model_id}, not {model_id}")
    hashes = json.dumps(list(checkpoint_sha256s))
    row = conn.execute(select(training_runs).where(training_runs.c.id == run_id)).first()
    if row is not None:
        stored = _run_from_row(row)
        if (stored.manifest_id, stored.checkpoint_sha256s, stored.started_at, stored.finished_at) != (
            manifest_id,
            tuple(checkpoint_sha256s),
            started,
            finished,
        ):
            raise ConflictError(
                f"training run {run_id} is already recorded with other content (manifest "
                f"{stored.manifest_id}); record a new run id"
            )
        return stored
    at = utc_now()
    conn.execute(
        training_runs.insert().values(
            id=run_id,
            model_id=m.model_id,
            manifest_id=manifest_id,
            merkle_root=m.merkle_root,
            checkpoint_sha256s=hashes,
            started_at=started,
            finished_at=finished,
            recorded_at=at,
        )
    )
    append_audit(
        conn,
        "training_run.recorded",
        run_id,
        {
            "model": m.model_id,
            "manifest": manifest_id,
            "root": m.merkle_root,
            "checkpoints": list(checkpoint_sha256s)[:100],
            "checkpoint_count": len(checkpoint_sha256s),
            "started_at": started,
            "finished_at": finished,
        },
        at=at,
    )
    return TrainingRun(run_id, m.model_id, manifest_id, m.merkle_root, tuple(checkpoint_sha256s), started, finished, at)


def training_runs_list(
    conn: Connection, *, model_id: str | None = None, manifest_id: str | None = None, limit: int = 1000
) -> list[TrainingRun]:
    """Recorded training runs, newest first, optionally for one model or one manifest; at most ``limit``."""
    q = select(training_runs).order_by(training_runs.c.recorded_at.desc(), training_runs.c.id).limit(limit)
    if model_id is not None:
        q = q.where(training_runs.c.model_id == model_id)
    if manifest_id is not None:
        q = q.where(training_runs.c.manifest_id == manifest_id)
    return [_run_from_row(r) for r in conn.execute(q)]
