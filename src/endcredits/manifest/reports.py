"""Reports over manifests: which models, manifests and training runs used the works a revocation, a
suspension or a person's withdrawal touches, and which perpetual grants a manifest leans on.

A grant "in perpetuity" is legal but never hidden: every report that rests on one lists it
(``perpetual_terms``). A suspension's report marks the manifests built before it started, whose models
were trained on the works it now withholds. Read only: nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from endcredits.consent.records import add_suspension, get_suspension, grant_subject, grants_for
from endcredits.consent.rules import Grant, Suspension
from endcredits.errors import NotFoundError, ValidationError, invariant
from endcredits.manifest.records import ManifestRecord, load_manifest, revocation_report
from endcredits.registry.identity.members import members_of_issuer
from endcredits.registry.records import credited_people, get_person, get_work, works_of_person
from endcredits.store.engine import format_time, parse_time

PERPETUAL_FLAG = "perpetual: granted in perpetuity, with no end date"
"""The words every report puts beside a grant that claims to last forever."""


@dataclass(frozen=True)
class PerpetualTerm:
    """An allowed, perpetual grant a manifest's included work rests on."""

    work_id: str
    grant_id: int
    subject: str
    use: str
    source: str
    project: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "work": self.work_id,
            "grant": self.grant_id,
            "subject": self.subject,
            "use": self.use,
            "source": self.source,
            "project": self.project,
            "flag": PERPETUAL_FLAG,
        }


def _perpetual(grant: Grant, uses: Sequence[str], project: str | None) -> bool:
    return grant.perpetual and grant.decision == "allowed" and grant.use in uses and grant.applies_to(project)


def perpetual_terms(conn: Connection, manifest: ManifestRecord) -> list[PerpetualTerm]:
    """The perpetual grants (on an included work, or by a person credited on it) that allowed one of the
    manifest's uses at its as-of time, each with the work it covered; sorted by work, then grant."""
    at = parse_time(manifest.as_of)
    people = credited_people(conn, manifest.included)
    everyone = set().union(*people.values()) if people else set()
    by_subject: dict[tuple[str, str], list[tuple[int, Grant]]] = {}
    for gid, g in grants_for(conn, manifest.included, everyone):
        if _perpetual(g, manifest.uses, manifest.project) and g.in_force(at):
            by_subject.setdefault((g.subject_kind, g.subject_id), []).append((gid, g))
    out: list[PerpetualTerm] = []
    for w in manifest.included:
        keys = [("work", w), *(("person", p) for p in sorted(people.get(w, ())))]
        for key in keys:
            out.extend(
                PerpetualTerm(w, gid, f"{g.subject_kind}:{g.subject_id}", g.use, g.source, g.project)
                for gid, g in by_subject.get(key, [])
            )
    return sorted(out, key=lambda t: (t.work_id, t.grant_id))


@dataclass(frozen=True)
class ImpactReport:
    """Who used the affected works: every (model, manifest, work) use with its training runs, the
    manifests built before the suspension (if one), and the perpetual grants those manifests rest on."""

    subject: str
    starts_at: str | None
    affected_work_ids: tuple[str, ...]
    uses: tuple[dict[str, Any], ...]
    manifests: tuple[dict[str, Any], ...]
    perpetual: tuple[PerpetualTerm, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "suspension_starts_at": self.starts_at,
            "affected_works": list(self.affected_work_ids),
            "models": sorted({m["model"] for m in self.manifests}),
            "manifests": list(self.manifests),
            "training_runs": sorted({r for m in self.manifests for r in m["training_runs"]}),
            "uses": list(self.uses),
            "perpetual_grants": [t.to_json() for t in self.perpetual],
        }


def _affected(
    conn: Connection, person_id: int | None, work_id: str | None, suspension_id: int | None, grant_id: int | None
) -> tuple[str, list[str], str | None]:
    """(what the report is about, the works it touches, when the suspension starts if it is one)."""
    given = [x for x in (person_id, work_id, suspension_id, grant_id) if x is not None]
    if len(given) != 1:
        raise ValidationError("an impact report is about exactly one person, work, suspension or grant")
    if person_id is not None:
        get_person(conn, person_id)
        return f"person:{person_id}", works_of_person(conn, person_id), None
    if work_id is not None:
        get_work(conn, work_id)
        return f"work:{work_id}", [work_id], None
    if grant_id is not None:
        subject = grant_subject(conn, grant_id)
        if subject is None:
            raise NotFoundError(f"no consent grant {grant_id}: list them with `endcredits consent list`")
        kind, sid = subject
        return f"grant:{grant_id}", [sid] if kind == "work" else works_of_person(conn, int(sid)), None
    invariant(suspension_id is not None, "exactly one subject was given")
    assert suspension_id is not None  # for the type checker; invariant() above holds under -O  # noqa: S101
    s = get_suspension(conn, suspension_id)
    members = [int(s.subject_id)] if s.subject_kind == "person" else members_of_issuer(conn, s.subject_id)
    works = sorted({w for p in members for w in works_of_person(conn, p)})
    return f"suspension:{suspension_id} ({s.subject_kind} {s.subject_id})", works, format_time(s.starts_at)


def impact_report(
    conn: Connection,
    *,
    person_id: int | None = None,
    work_id: str | None = None,
    suspension_id: int | None = None,
    grant_id: int | None = None,
) -> ImpactReport:
    """Every model, manifest and training run that used the works of one person, one work, the subject of
    one grant, or the people one suspension covers (and the works derived from them). Reads only."""
    subject, work_ids, starts_at = _affected(conn, person_id, work_id, suspension_id, grant_id)
    used = revocation_report(conn, work_ids)
    manifests: dict[str, ManifestRecord] = {}
    for u in used:
        if u.manifest_id not in manifests:
            manifests[u.manifest_id] = load_manifest(conn, u.manifest_id)
    runs = {u.manifest_id: list(u.training_run_ids) for u in used}
    touched = set(work_ids) | {u.work_id for u in used}
    rows = tuple(
        {
            "manifest": m.id,
            "model": m.model_id,
            "project": m.project,
            "as_of": m.as_of,
            "merkle_root": m.merkle_root,
            "training_runs": runs[m.id],
            "built_before_suspension": None if starts_at is None else m.as_of < starts_at,
        }
        for m in sorted(manifests.values(), key=lambda m: (m.model_id, m.id))
    )
    perpetual = [t for m in manifests.values() for t in perpetual_terms(conn, m) if t.work_id in touched]
    uses = tuple(
        {
            "model": u.model_id,
            "manifest": u.manifest_id,
            "work": u.work_id,
            "via": u.via,
            "training_runs": list(u.training_run_ids),
        }
        for u in used
    )
    return ImpactReport(
        subject,
        starts_at,
        tuple(work_ids),
        uses,
        rows,
        tuple(sorted(set(perpetual), key=lambda t: (t.work_id, t.grant_id))),
    )


def suspend_and_report(conn: Connection, suspension: Suspension) -> tuple[int, ImpactReport]:
    """Record ``suspension`` and report every model, manifest and training run that already used the works
    it covers (those built before it started are marked). One transaction: the caller's."""
    sid = add_suspension(conn, suspension)
    return sid, impact_report(conn, suspension_id=sid)
