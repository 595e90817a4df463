"""Building a manifest: the exact set of works one training run may use, committed by a Merkle root.

For (model, uses, as-of time) every registered work is decided by ``consent.rules.decide`` with the
grants on the work and on every person credited on it (directly or through a claimed name). Allowed
works are included, sorted by id, as the Merkle tree's leaves; the rest are listed with the reason.
A work whose consent forbids a use of the model is therefore never in its manifest (invariant 4).

Lineage: a derived work inherits the terms of every work upstream of it, and the most restrictive term
wins (``consent.rules.inherit_across_lineage``): a body scan whose subject refuses a use keeps the digital
double and the film made from it out of the manifest, with a reason naming the scan.

Duplicates: a work linked to a canonical work (``registry.fingerprints``) is the same content, so it is
never a leaf; it is listed as excluded, "duplicate of <canonical>". The canonical work stands for the
whole group: it is decided with the grants on every member and the people credited on every member, so
the most restrictive term of any copy wins. Lineage goes through the groups too: a work derived from a
duplicate inherits the terms of the duplicate's group, and a group inherits what any member derives from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Literal, TypedDict

from sqlalchemy import Connection

from endcredits.consent.guilds import consent_defaults
from endcredits.consent.records import grants_for, suspensions_list
from endcredits.consent.rules import USES, Decision, Grant, GuildDefault, Suspension, decide, inherit_across_lineage
from endcredits.errors import ValidationError
from endcredits.limits import check_id
from endcredits.manifest.merkle import merkle_root
from endcredits.manifest.records import ManifestRecord, add_model, save_manifest
from endcredits.registry.identity.members import issuers_of_people
from endcredits.registry.records import active_links, lineage_parents
from endcredits.store.bulk import fetch_all, without_gc
from endcredits.store.engine import Store, format_time, utc_now


@without_gc
def build_manifest(  # noqa: C901 - one pass over many independent checks
    store: Store,
    *,
    model_id: str,
    uses: Sequence[str],
    as_of: datetime,
    default: Literal["opt-in", "opt-out"],
    description: str = "",
    manifest_id: str | None = None,
    project: str | None = None,
) -> ManifestRecord:
    """Decide every registered work for ``uses`` at ``as_of`` (for ``project``, when the model is built for
    one: likeness grants count only for their own project) and save the manifest of the allowed ones."""
    if not uses:
        raise ValidationError("a manifest needs at least one use, such as commercial or ai_generative_training")
    for use in uses:
        if use not in USES:
            raise ValidationError(f"unknown use {use!r}: one of {', '.join(USES)}")
    if default not in ("opt-in", "opt-out"):
        raise ValidationError("default regime must be opt-in or opt-out")
    if project is not None:
        check_id(project, "project", spaces=False)
    uses_sorted = tuple(sorted(set(uses)))
    as_of_text = format_time(as_of)
    with store.write() as conn:
        add_model(conn, model_id, uses_sorted, description)
        work_ids, credited, by_work, by_person, suspending = _consent_inputs(conn, as_of)
        duplicate_of: dict[str, tuple[str, str]] = {}
        members: dict[str, list[str]] = {}
        for dup, canonical, method, ppm in active_links(conn):
            similar = f", similarity {ppm / 1_000_000:.3f}" if ppm is not None else ""
            duplicate_of[dup] = (
                canonical,
                f"duplicate of {canonical} ({method}{similar}): included once, as that work",
            )
            members.setdefault(canonical, []).append(dup)
        included: list[str] = []
        excluded: list[tuple[str, str]] = []
        own: dict[str, Decision] = {}
        no_grants: Decision | None = None
        for w in work_ids:
            if w in duplicate_of:
                excluded.append((w, duplicate_of[w][1]))
                continue
            group = [w, *members.get(w, ())]
            people_here = sorted(set().union(*(credited[m] for m in group)))
            work_grants = by_work.get(w, []) + [replace(g, subject_id=w) for m in group[1:] for g in by_work.get(m, [])]
            relevant = work_grants + [g for p in people_here for g in by_person.get(p, [])]
            relevant = [g for g in relevant if g.applies_to(project)]
            suspends = _suspends_any(suspending, people_here)
            if relevant or suspends or no_grants is None:
                decision = decide(
                    w, people_here, uses_sorted, as_of, relevant, default=default, project=project, **suspending
                )
                if not relevant and not suspends:
                    no_grants = decision
            else:
                decision = no_grants  # with no grant in play, the operator's default decides, the same for every work
            own[w] = decision

        # Across lineage the most restrictive term wins (consent.rules, "Across lineage"), over the graph
        # of canonical works: a work derived from a duplicate derives from its group's content, and a
        # group inherits what any of its members derives from.
        def canonical_of(work: str) -> str:
            return duplicate_of[work][0] if work in duplicate_of else work

        parents: dict[str, list[str]] = {}
        for child, ups in lineage_parents(conn).items():
            c = canonical_of(child)
            parents.setdefault(c, []).extend(u for u in map(canonical_of, ups) if u != c)
        for w, decision in sorted(inherit_across_lineage(sorted(own), parents, own).items()):
            if decision.allowed:
                included.append(w)
            else:
                excluded.append((w, decision.reason))
        excluded.sort()
        root = merkle_root(included)
        scope = root + as_of_text + ",".join(uses_sorted) + ("" if project is None else f"|{project}")
        mid = manifest_id or f"{model_id}@{hashlib.sha256(scope.encode()).hexdigest()[:12]}"
        record = ManifestRecord(
            mid, model_id, uses_sorted, as_of_text, root, tuple(included), tuple(excluded), None, utc_now(), project
        )
        save_manifest(conn, record)
    return record


class _Suspending(TypedDict):
    suspensions: list[Suspension]
    issuers_of: dict[str, list[str]]
    guild_defaults: dict[str, tuple[GuildDefault, ...]]


def _consent_inputs(
    conn: Connection, as_of: datetime
) -> tuple[list[str], dict[str, set[str]], dict[str, list[Grant]], dict[str, list[Grant]], _Suspending]:
    """Every work id (sorted), the people credited on each (directly or by a claimed name), the grants by
    work and by person, and the suspensions over those people with the issuers of their credentials and
    the consent defaults of the trusted guilds among those issuers, as of ``as_of``."""
    id_of = dict(fetch_all(conn, "SELECT seq, id FROM works"))
    work_ids = sorted(id_of.values())
    credited: dict[str, set[str]] = {w: set() for w in work_ids}
    for seq, person_id, name_person in fetch_all(
        conn, "SELECT c.work_seq, c.person_id, n.person_id FROM credits c LEFT JOIN names n ON n.id = c.name_id"
    ):
        person = person_id if person_id is not None else name_person
        if person is not None:
            credited[id_of[seq]].add(str(person))
    all_people = set().union(*credited.values()) if credited else set()
    by_work: dict[str, list[Grant]] = {}
    by_person: dict[str, list[Grant]] = {}
    for _, g in grants_for(conn, work_ids, all_people):
        (by_work if g.subject_kind == "work" else by_person).setdefault(g.subject_id, []).append(g)
    issuers = issuers_of_people(conn, [int(p) for p in all_people])
    issuers_of = {str(p): found for p, found in issuers.items()}
    all_issuers = {i for found in issuers_of.values() for i in found}
    suspensions = [s for _, s in suspensions_list(conn, person_ids=all_people, issuers=all_issuers)]
    defaults = {i: d for i, d in consent_defaults(conn, as_of).items() if i in all_issuers}
    return (
        work_ids,
        credited,
        by_work,
        by_person,
        _Suspending(suspensions=suspensions, issuers_of=issuers_of, guild_defaults=defaults),
    )


def _suspends_any(suspending: _Suspending, people_here: list[str]) -> bool:
    """True when some suspension names one of ``people_here`` or an issuer of their credentials, or one of
    those issuers is a guild whose terms set consent defaults."""
    issuers = {i for p in people_here for i in suspending["issuers_of"].get(p, ())}
    if any(i in suspending["guild_defaults"] for i in issuers):
        return True
    return any(s.subject_id in set(people_here) | issuers for s in suspending["suspensions"])
