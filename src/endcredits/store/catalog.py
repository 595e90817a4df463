"""Models, manifests and agreements: the named, fingerprinted artifacts that accruals refer to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from endcredits.errors import ConflictError, ManifestError, NotFoundError, ValidationError
from endcredits.limits import ID_LENGTH_MAX
from endcredits.store.audit import append_audit
from endcredits.store.bulk import bulk_insert
from endcredits.store.engine import utc_now
from endcredits.store.ledger import chunks
from endcredits.store.schema import agreements, manifest_entries, manifests, models, outputs


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > ID_LENGTH_MAX or any(c.isspace() for c in value):
        raise ValidationError(f"{what} {value!r} must be 1..{ID_LENGTH_MAX} characters without spaces")
    return value


def add_model(conn: Connection, model_id: str, uses: Sequence[str], description: str) -> None:
    _check_id(model_id, "model id")
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
            raise NotFoundError(f"model {missing[0]} is not registered: build its manifest first (`endcredits manifest build`)")


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


def save_manifest(conn: Connection, record: ManifestRecord) -> None:
    """Store a manifest. The same id with other content is refused; a manifest is never changed."""
    _check_id(record.id, "manifest id")
    row = conn.execute(select(manifests).where(manifests.c.id == record.id)).first()
    if row is not None:
        if row.merkle_root != record.merkle_root or row.model_id != record.model_id:
            raise ManifestError(f"manifest {record.id} already exists with root {row.merkle_root}; manifests never change")
        return
    conn.execute(manifests.insert().values(
        id=record.id, model_id=record.model_id, uses=",".join(record.uses), as_of=record.as_of,
        merkle_root=record.merkle_root, included_count=len(record.included), excluded_count=len(record.excluded),
        checkpoint_sha256=record.checkpoint_sha256, created_at=record.created_at))
    rows: list[tuple[str, str, int | None, str | None]] = [(record.id, w, i, None) for i, w in enumerate(record.included)]
    rows += [(record.id, w, None, reason) for w, reason in record.excluded]
    bulk_insert(conn, "manifest_entries", ("manifest_id", "work_id", "leaf_index", "excluded_reason"), rows)
    append_audit(conn, "manifest.built", record.id, {
        "model": record.model_id, "uses": list(record.uses), "as_of": record.as_of, "root": record.merkle_root,
        "included": len(record.included), "excluded": len(record.excluded)}, at=record.created_at)


def set_manifest_checkpoint(conn: Connection, manifest_id: str, checkpoint_sha256: str) -> None:
    row = conn.execute(select(manifests.c.checkpoint_sha256).where(manifests.c.id == manifest_id)).first()
    if row is None:
        raise NotFoundError(f"no manifest {manifest_id}")
    if row.checkpoint_sha256 not in (None, checkpoint_sha256):
        raise ManifestError(f"manifest {manifest_id} is bound to checkpoint {row.checkpoint_sha256}, not {checkpoint_sha256}")
    conn.execute(manifests.update().where(manifests.c.id == manifest_id).values(checkpoint_sha256=checkpoint_sha256))
    append_audit(conn, "manifest.checkpoint", manifest_id, {"checkpoint_sha256": checkpoint_sha256})


def load_manifest(conn: Connection, manifest_id: str) -> ManifestRecord:
    row = conn.execute(select(manifests).where(manifests.c.id == manifest_id)).first()
    if row is None:
        raise NotFoundError(f"no manifest {manifest_id}: list them with `endcredits manifest list`")
    entries = conn.execute(select(manifest_entries).where(manifest_entries.c.manifest_id == manifest_id)).all()
    included = tuple(e.work_id for e in sorted((e for e in entries if e.leaf_index is not None), key=lambda e: e.leaf_index))
    excluded = tuple(sorted((e.work_id, e.excluded_reason) for e in entries if e.leaf_index is None))
    return ManifestRecord(row.id, row.model_id, tuple(row.uses.split(",")), row.as_of, row.merkle_root, included,
                          excluded, row.checkpoint_sha256, row.created_at)


def latest_manifest_id(conn: Connection, model_id: str) -> str:
    row = conn.execute(select(manifests.c.id).where(manifests.c.model_id == model_id)
                       .order_by(manifests.c.created_at.desc(), manifests.c.id.desc()).limit(1)).first()
    if row is None:
        raise NotFoundError(f"model {model_id} has no manifest: run `endcredits manifest build --model {model_id}`")
    return str(row.id)


def manifests_using(conn: Connection, work_id: str) -> list[tuple[str, str]]:
    """(manifest id, model id) of every manifest that included ``work_id``: who to tell on revocation."""
    q = select(manifests.c.id, manifests.c.model_id).join(manifest_entries, manifest_entries.c.manifest_id == manifests.c.id
                                                          ).where(manifest_entries.c.work_id == work_id,
                                                                  manifest_entries.c.leaf_index.is_not(None))
    return [(r.id, r.model_id) for r in conn.execute(q.order_by(manifests.c.id))]


def works_of_person(conn: Connection, person_id: int) -> list[str]:
    """Works crediting the person directly or through a name they claimed."""
    from endcredits.store.schema import credits, names

    direct = select(credits.c.work_id).where(credits.c.person_id == person_id)
    via_names = select(credits.c.work_id).join(names, names.c.id == credits.c.name_id).where(names.c.person_id == person_id)
    return sorted({r.work_id for r in conn.execute(direct)} | {r.work_id for r in conn.execute(via_names)})


def save_agreement(conn: Connection, agreement_id: str, version: int, body: str, body_sha256: str) -> str:
    """Store an agreement version; re-loading the same text is a no-op, other text under the same
    version is refused (publish a new version instead)."""
    row = conn.execute(select(agreements).where(agreements.c.id == f"{agreement_id}@{version}")).first()
    if row is not None:
        if row.body_sha256 != body_sha256:
            raise ConflictError(f"agreement {agreement_id} version {version} exists with other terms; bump the version")
        return "exists"
    at = utc_now()
    conn.execute(agreements.insert().values(id=f"{agreement_id}@{version}", version=version, body=body,
                                            body_sha256=body_sha256, created_at=at))
    append_audit(conn, "agreement.loaded", f"{agreement_id}@{version}", {"sha256": body_sha256}, at=at)
    return "created"


def load_agreement_body(conn: Connection, agreement_id: str, version: int | None = None) -> str:
    q = select(agreements.c.body, agreements.c.version).where(agreements.c.id.like(f"{agreement_id}@%"))
    rows = [r for r in conn.execute(q) if version is None or r.version == version]
    if not rows:
        raise NotFoundError(f"no agreement {agreement_id}" + (f" version {version}" if version else "") +
                            ": load it with `endcredits agreement load FILE`")
    return str(max(rows, key=lambda r: r.version).body)


def output_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(outputs)).scalar_one())
