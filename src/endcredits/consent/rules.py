"""Consent rules: may this work be used for these uses at this time? Pure functions, no I/O.

A ``Grant`` says that a person, or a work itself, allows or does not allow one ``Use`` over a half-open
window of time (or, explicitly, in perpetuity), citing where the statement came from (``source``).
``decide`` applies the grants in force to one work; ``inherit_across_lineage`` lets terms flow down to
the works derived from it.

Precedence, for each use: a suspension in force (by a credited person, or by the issuer of one of their
credentials) forbids; then the credited people's grants together with the notAllowed defaults of their
guilds' terms (``consent.guilds``: a guild's notAllowed protects its member more, so it beats the member's
own allowed); then the work's own grants; then an allowed default of a credited member's guild; then the
operator default ("opt-out" allows, "opt-in" forbids). At each level a notAllowed wins over an allowed, and a
notAllowed for ``ai_training`` also forbids ``ai_generative_training`` (and one for ``ai_inference`` forbids
``ai_input``). Every requested use must be allowed. Across lineage the most restrictive term wins: a work is
allowed only when it and every work upstream of it are. Whatever order the grants come in, the decision and
its reason are the same.
A grant naming a ``project`` counts only for a manifest built for that project; an allowed likeness grant
(a digital replica) must name its project and describe its use.

See docs/concepts/consent.md, "The rules, exactly" and "Across lineage: the most restrictive term wins".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from endcredits.errors import LimitExceededError, ValidationError
from endcredits.limits import CREDITS_PER_WORK_MAX, LINEAGE_DEPTH_MAX, TITLE_LENGTH_MAX, check_id

USES: tuple[str, ...] = (
    "ai_generative_training",
    "ai_training",
    "ai_inference",
    "data_mining",
    "ai_input",
    "ai_index",
    "search",
    "likeness_face",
    "likeness_voice",
    "research",
    "commercial",
)

SUBJECT_KINDS: tuple[str, ...] = ("work", "person")
DECISIONS: tuple[str, ...] = ("allowed", "notAllowed")
DEFAULT_REGIMES: tuple[str, ...] = ("opt-in", "opt-out")

IMPLIED_BY_NOT_ALLOWED: dict[str, tuple[str, ...]] = {
    "ai_generative_training": ("ai_training",),
    "ai_input": ("ai_inference",),
}
"""For a use, the broader uses whose notAllowed also forbids it. ``ai_input`` (content retrieved and given to
a model at inference, as retrieval-augmented generation does) is a kind of ``ai_inference``."""

SOURCE_LENGTH_MAX = 1_000
"""Longest ``source`` text (a path, a URL, a document id)."""

LIKENESS_USES: tuple[str, ...] = ("likeness_face", "likeness_voice")
"""Digital-replica uses: an allowed grant for one needs a use description and a project."""

USE_DESCRIPTION_LENGTH_MAX = 4_000
"""Longest description of a consented use (a paragraph or two, as a performer's contract states it)."""

SUSPENSION_SUBJECT_KINDS: tuple[str, ...] = ("person", "issuer")
"""Who suspends: a person for their own works, or an issuer (a guild) for everyone it credentialed."""


def _check_aware(value: object, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"{what} {value.isoformat()} has no time zone; pass an aware datetime, e.g. tzinfo=UTC")
    return value


def _check_use(use: object, what: str) -> str:
    if not isinstance(use, str) or use not in USES:
        raise ValidationError(f"unknown {what} {use!r:.60}: one of {', '.join(USES)}")
    return use


@dataclass(frozen=True)
class Grant:
    """A person or a work allows (or not) one use from ``valid_from`` until ``valid_until``, or in perpetuity."""

    subject_kind: Literal["work", "person"]
    subject_id: str
    use: str
    decision: Literal["allowed", "notAllowed"]
    valid_from: datetime
    valid_until: datetime | None
    perpetual: bool
    source: str
    revoked_at: datetime | None = None
    use_description: str | None = None
    project: str | None = None
    granted_by: str | None = None  # person id of the estate that granted for a deceased subject

    def __post_init__(self) -> None:
        self._check_terms()
        if self.subject_kind not in SUBJECT_KINDS:
            raise ValidationError(f"grant subject_kind {self.subject_kind!r:.40} must be 'work' or 'person'")
        check_id(self.subject_id, f"grant subject_id ({self.subject_kind})")
        _check_use(self.use, f"use in grant for {self.subject_kind} {self.subject_id}")
        if self.decision not in DECISIONS:
            raise ValidationError(
                f"grant decision {self.decision!r:.40} for {self.subject_kind} {self.subject_id} "
                "must be 'allowed' or 'notAllowed' (constrained grants are not supported yet)"
            )
        if not isinstance(self.source, str) or not 1 <= len(self.source) <= SOURCE_LENGTH_MAX:
            raise ValidationError(
                f"grant for {self.subject_kind} {self.subject_id} needs a source of 1..{SOURCE_LENGTH_MAX} "
                "characters saying where it came from (a file, a URL, a document id)"
            )
        if not isinstance(self.perpetual, bool):
            raise ValidationError(f"grant for {self.subject_kind} {self.subject_id}: perpetual must be True or False")
        _check_aware(self.valid_from, "grant valid_from")
        if self.valid_until is None:
            if not self.perpetual:
                raise ValidationError(
                    f"grant for {self.subject_kind} {self.subject_id} has no valid_until: set valid_until, "
                    "or set perpetual=True to grant in perpetuity explicitly"
                )
        else:
            _check_aware(self.valid_until, "grant valid_until")
            if self.perpetual:
                raise ValidationError(
                    f"grant for {self.subject_kind} {self.subject_id} is perpetual but has a valid_until: "
                    "drop valid_until, or set perpetual=False"
                )
            if not self.valid_until > self.valid_from:
                raise ValidationError(
                    f"grant for {self.subject_kind} {self.subject_id}: valid_until {self.valid_until.isoformat()} "
                    f"must be after valid_from {self.valid_from.isoformat()}"
                )
        if self.revoked_at is not None:
            _check_aware(self.revoked_at, "grant revoked_at")

    def _check_terms(self) -> None:
        """The replica terms: a project and a description of the use where they are needed, in bounds."""
        who = f"grant for {self.subject_kind} {self.subject_id}"
        if self.project is not None:
            check_id(self.project, f"project of {who}", spaces=False)
        if self.granted_by is not None:
            check_id(self.granted_by, f"granted_by of {who}")
        text = self.use_description
        if text is not None and (
            not isinstance(text, str) or not text.strip() or len(text) > USE_DESCRIPTION_LENGTH_MAX
        ):
            raise ValidationError(f"{who}: the use description must be 1..{USE_DESCRIPTION_LENGTH_MAX} characters")
        if self.use in LIKENESS_USES and self.decision == "allowed":
            if text is None:
                raise ValidationError(
                    f"{who} allows {self.use} (a digital replica) without a description of the use: "
                    "say what the replica will be used for"
                )
            if self.project is None:
                raise ValidationError(
                    f"{who} allows {self.use} (a digital replica) without a project: "
                    "consent to a replica covers one named project"
                )

    def applies_to(self, project: str | None) -> bool:
        """True when the grant counts for a manifest built for ``project``: it names none, or that one."""
        return self.project is None or self.project == project

    def in_force(self, at: datetime) -> bool:
        """True when the grant holds at ``at`` (an aware datetime): started, not ended, not yet revoked."""
        _check_aware(at, "time to decide at")
        if at < self.valid_from:
            return False
        if self.valid_until is not None and not at < self.valid_until:
            return False
        return self.revoked_at is None or at < self.revoked_at


@dataclass(frozen=True)
class Suspension:
    """A person, or an issuer for every person it credentialed, suspends consent to ``uses`` (empty: every
    use) from ``starts_at`` until ``ends_at`` (None: until lifted), for example during a strike."""

    subject_kind: Literal["person", "issuer"]
    subject_id: str
    uses: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime | None
    reason: str

    def __post_init__(self) -> None:
        if self.subject_kind not in SUSPENSION_SUBJECT_KINDS:
            raise ValidationError(f"suspension subject_kind {self.subject_kind!r:.40} must be 'person' or 'issuer'")
        check_id(self.subject_id, f"suspension subject_id ({self.subject_kind})")
        if isinstance(self.uses, str) or len(set(self.uses)) != len(self.uses):
            raise ValidationError("a suspension's uses must be a list of distinct uses (empty: every use)")
        for use in self.uses:
            _check_use(use, f"use in suspension by {self.subject_kind} {self.subject_id}")
        if (
            not isinstance(self.reason, str)
            or not 1 <= len(self.reason.strip()) <= len(self.reason) <= TITLE_LENGTH_MAX
        ):
            raise ValidationError(f"a suspension needs a reason of 1..{TITLE_LENGTH_MAX} characters (e.g. a strike)")
        _check_aware(self.starts_at, "suspension start")
        if self.ends_at is not None:
            _check_aware(self.ends_at, "suspension end")
            if not self.ends_at > self.starts_at:
                raise ValidationError(
                    f"suspension by {self.subject_kind} {self.subject_id} ends at {self.ends_at.isoformat()}, "
                    f"not after it starts at {self.starts_at.isoformat()}: give an end after the start"
                )

    def in_force(self, at: datetime) -> bool:
        """True when the suspension holds at ``at``: started and not yet ended."""
        _check_aware(at, "time to decide at")
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)

    def covers(self, use: str) -> bool:
        return not self.uses or use in self.uses

    def describe(self) -> str:
        until = "until lifted" if self.ends_at is None else f"until {self.ends_at.isoformat()}"
        return f"suspended by {self.subject_kind} {self.subject_id} from {self.starts_at.isoformat()} {until}"


@dataclass(frozen=True)
class GuildDefault:
    """A trusted guild's default for one use, inherited by every member (``consent.guilds``); ``label``
    names the terms version that set it."""

    issuer: str
    label: str
    use: str
    decision: Literal["allowed", "notAllowed"]

    def __post_init__(self) -> None:
        _check_use(self.use, f"use in {self.label}")
        if self.decision not in DECISIONS:
            raise ValidationError(f"{self.label}: decision for {self.use} must be 'allowed' or 'notAllowed'")


@dataclass(frozen=True)
class Decision:
    """Whether the uses are allowed, why, and the grant that decided (None: the operator default)."""

    allowed: bool
    reason: str
    grant: Grant | None


def _grant_order(g: Grant) -> tuple[str, str, str, str, str, str, str]:
    """A total order on grants, so that which one is cited never depends on input order."""
    return (
        g.subject_id,
        g.source,
        g.use,
        g.decision,
        g.valid_from.isoformat(),
        "" if g.valid_until is None else g.valid_until.isoformat(),
        "" if g.revoked_at is None else g.revoked_at.isoformat(),
    )


def _deciding(grants: list[Grant], use: str) -> Grant | None:
    """Among grants in force at one level: the notAllowed one to cite, else the allowed one, else None."""
    broader = IMPLIED_BY_NOT_ALLOWED.get(use, ())
    forbidding = [g for g in grants if g.decision == "notAllowed" and (g.use == use or g.use in broader)]
    if forbidding:
        return min(forbidding, key=_grant_order)
    allowing = [g for g in grants if g.decision == "allowed" and g.use == use]
    return min(allowing, key=_grant_order) if allowing else None


def _describe(grant: Grant, use: str) -> str:
    by = "work grant" if grant.subject_kind == "work" else f"person grant of {grant.subject_id}"
    via = "" if grant.use == use else f" for {grant.use}"
    return f"{grant.decision} for {use} by {by}{via} (source: {grant.source})"


def _guild_deciding(inherited: list[tuple[str, GuildDefault]], use: str, decision: str) -> str | None:
    """The reason of the first inherited guild default that says ``decision`` for ``use`` (a notAllowed for
    a broader use counts), or None."""
    uses = (use, *IMPLIED_BY_NOT_ALLOWED.get(use, ())) if decision == "notAllowed" else (use,)
    for person, d in inherited:
        if d.decision == decision and d.use in uses:
            via = "" if d.use == use else f" for {d.use}"
            return f"{decision} for {use} by {d.label}{via}, inherited by member {person}"
    return None


def _decide_one(
    use: str,
    person_grants: list[Grant],
    work_grants: list[Grant],
    default: str,
    suspended: list[Suspension],
    inherited: list[tuple[str, GuildDefault]],
) -> Decision:
    for s in suspended:
        if s.covers(use):
            return Decision(allowed=False, reason=f"notAllowed for {use}: {s.describe()} ({s.reason})", grant=None)
    grant = _deciding(person_grants, use)
    guild_no = _guild_deciding(inherited, use, "notAllowed")
    if guild_no is not None and (grant is None or grant.decision == "allowed"):
        return Decision(allowed=False, reason=guild_no, grant=None)
    for g in (grant, _deciding(work_grants, use)):
        if g is not None:
            return Decision(allowed=g.decision == "allowed", reason=_describe(g, use), grant=g)
    guild_yes = _guild_deciding(inherited, use, "allowed")
    if guild_yes is not None:
        return Decision(allowed=True, reason=guild_yes, grant=None)
    return Decision(allowed=default == "opt-out", reason=f"no grant for {use}; operator default {default}", grant=None)


def decide(
    work_id: str,
    credited_person_ids: Sequence[str],
    uses: Sequence[str],
    at: datetime,
    grants: Sequence[Grant],
    *,
    default: Literal["opt-in", "opt-out"],
    project: str | None = None,
    suspensions: Sequence[Suspension] = (),
    issuers_of: Mapping[str, Sequence[str]] | None = None,
    guild_defaults: Mapping[str, Sequence[GuildDefault]] | None = None,
) -> Decision:
    """May ``work_id`` be used for every one of ``uses`` at ``at``, in a manifest built for ``project``?

    ``suspensions`` apply to the credited people they name, and (by issuer) to the credited people whose
    credentials ``issuers_of`` says that issuer issued; so do ``guild_defaults`` (per trusted issuer, the
    consent defaults of its terms). The rules: docs/concepts/consent.md and docs/concepts/guilds.md."""
    check_id(work_id, "work id")
    _check_aware(at, "time to decide at")
    if default not in DEFAULT_REGIMES:
        raise ValidationError(f"operator default {default!r:.40} must be 'opt-in' or 'opt-out'")
    if isinstance(uses, str) or not uses:
        raise ValidationError(f"pass a non-empty list of uses, each one of {', '.join(USES)}")
    requested = {_check_use(u, "use") for u in uses}
    if isinstance(credited_person_ids, str):
        raise ValidationError("credited_person_ids must be a list of person ids, not one string")
    if len(credited_person_ids) > CREDITS_PER_WORK_MAX:
        raise LimitExceededError(
            f"work {work_id} has {len(credited_person_ids)} credited people; "
            f"CREDITS_PER_WORK_MAX={CREDITS_PER_WORK_MAX}"
        )
    people = {check_id(p, "credited person id") for p in credited_person_ids}
    for g in grants:
        if not isinstance(g, Grant):
            raise ValidationError(f"grants must be Grant objects, got {type(g).__name__}")

    in_force = [g for g in grants if g.in_force(at) and g.applies_to(project)]
    suspended = _suspended(people, at, suspensions, issuers_of or {})
    person_grants = [g for g in in_force if g.subject_kind == "person" and g.subject_id in people]
    work_grants = [g for g in in_force if g.subject_kind == "work" and g.subject_id == work_id]

    inherited = _inherited(people, issuers_of or {}, guild_defaults or {})
    per_use = [
        _decide_one(u, person_grants, work_grants, default, suspended, inherited) for u in USES if u in requested
    ]
    forbidden = [d for d in per_use if not d.allowed]
    if forbidden:
        return Decision(allowed=False, reason="; ".join(d.reason for d in forbidden), grant=forbidden[0].grant)
    return Decision(allowed=True, reason="; ".join(d.reason for d in per_use), grant=per_use[0].grant)


def _suspended(
    people: set[str], at: datetime, suspensions: Sequence[Suspension], issuers_of: Mapping[str, Sequence[str]]
) -> list[Suspension]:
    """The suspensions in force at ``at`` over any of ``people``, in a stable order."""
    issuers = {i for p in people for i in issuers_of.get(p, ())}
    out = []
    for s in suspensions:
        if not isinstance(s, Suspension):
            raise ValidationError(f"suspensions must be Suspension objects, got {type(s).__name__}")
        mine = s.subject_id in people if s.subject_kind == "person" else s.subject_id in issuers
        if mine and s.in_force(at):
            out.append(s)
    return sorted(out, key=lambda s: (s.subject_kind, s.subject_id, s.starts_at.isoformat(), s.reason))


def _inherited(
    people: set[str], issuers_of: Mapping[str, Sequence[str]], guild_defaults: Mapping[str, Sequence[GuildDefault]]
) -> list[tuple[str, GuildDefault]]:
    """(member, default) for every guild default reaching one of ``people``, in a stable order."""
    out = []
    for person in sorted(people):
        for issuer in sorted(issuers_of.get(person, ())):
            for d in guild_defaults.get(issuer, ()):
                if not isinstance(d, GuildDefault) or d.issuer != issuer:
                    raise ValidationError(f"guild defaults of {issuer} must be its own GuildDefault objects")
                out.append((person, d))
    return sorted(out, key=lambda pd: (pd[0], pd[1].issuer, pd[1].use, pd[1].decision))


INHERITED_REASONS_MAX = 5
"""Most upstream works one inherited reason names; the rest are counted."""


def _upstream(work_id: str, parents: Mapping[str, Sequence[str]]) -> list[str]:
    """Every ancestor of ``work_id``, nearest first (by hops, then id); refuses cycles and deep chains."""
    seen: set[str] = {work_id}
    frontier = sorted(set(parents.get(work_id, ())))
    order: list[str] = []
    paths: dict[str, str] = {p: f"{work_id} <- {p}" for p in frontier}
    for _ in range(LINEAGE_DEPTH_MAX):
        if not frontier:
            return order
        if work_id in frontier:
            raise ValidationError(
                f"lineage cycle: {paths[work_id]}; remove one of these links (a work cannot "
                "derive from itself through other works)"
            )
        order.extend(w for w in frontier if w not in seen)
        seen.update(frontier)
        following: set[str] = set()
        for w in frontier:
            for p in parents.get(w, ()):
                if p not in seen or p == work_id:
                    paths.setdefault(p, f"{paths[w]} <- {p}")
                    following.add(p)
        frontier = sorted(following)
    if frontier:
        raise ValidationError(
            f"lineage above work {work_id} is deeper than LINEAGE_DEPTH_MAX={LINEAGE_DEPTH_MAX} links, or has a cycle"
        )
    return order


def inherit_across_lineage(
    work_ids: Sequence[str], parents: Mapping[str, Sequence[str]], own: Mapping[str, Decision]
) -> dict[str, Decision]:
    """Each of ``work_ids`` decided across its lineage: the most restrictive term wins (docs/concepts/consent.md).

    ``parents`` maps a work to the works it derives from; ``own`` holds each work's decision by its own
    grants (a work missing from ``own`` counts as allowed: it adds no restriction). Returns a decision for
    every one of ``work_ids``: its own (or an allowed one) when nothing upstream forbids, else not allowed.
    """
    out: dict[str, Decision] = {}
    for w in work_ids:
        mine = own.get(w)
        forbidding = [(u, own[u]) for u in _upstream(w, parents) if u in own and not own[u].allowed]
        if not forbidding:
            out[w] = mine if mine is not None else Decision(allowed=True, reason="no restriction", grant=None)
            continue
        reasons = [mine.reason] if mine is not None and not mine.allowed else []
        reasons += [f"inherited from upstream work {u}: {d.reason}" for u, d in forbidding[:INHERITED_REASONS_MAX]]
        if len(forbidding) > INHERITED_REASONS_MAX:
            reasons.append(f"and {len(forbidding) - INHERITED_REASONS_MAX} more upstream works")
        grant = mine.grant if mine is not None and not mine.allowed else forbidding[0][1].grant
        out[w] = Decision(allowed=False, reason="; ".join(reasons), grant=grant)
    return out


__all__ = [
    "DECISIONS",
    "DEFAULT_REGIMES",
    "LIKENESS_USES",
    "SUBJECT_KINDS",
    "SUSPENSION_SUBJECT_KINDS",
    "USES",
    "Decision",
    "Grant",
    "GuildDefault",
    "Suspension",
    "decide",
    "inherit_across_lineage",
]
