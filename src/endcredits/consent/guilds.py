"""Guild terms: what a trusted issuer (a guild, a union) sets for its members, who inherit it.

A guild publishes one TOML document (docs/concepts/guilds.md)::

    effective_from = "2026-01-01T00:00:00Z"
    [consent]                 # use = "allowed" | "notAllowed": the member's default for that use
    ai_training = "notAllowed"
    [escrow]                  # the member's unclaimed money waits at least this long, then goes to the fund
    period_days = 1825
    fund = "actors-fund"
    [role_weights_min]        # "scheme:code" = the least weight an agreement may give a member credited so
    "ebu:actor" = 5

Only an issuer on the operator's trust list (``registry.identity.trusted``) may load terms, and they reach
only the people holding a valid credential from it (``registry.identity.members``). Each load is a new
version, stored and never edited; loading the newest body again changes nothing. Where terms conflict the
one that protects the member more wins: a notAllowed over an allowed (``consent.rules.decide``), the longer
escrow period (``ledger.expiry``), the higher role weight. So a new version may not shorten the escrow
period of the one before, nor drop it. A member's minimum role weights reach accrual through
``role_minimums`` (``royalties.usage.load_credit_graph``). Parsing is pure; ``load_guild_terms`` and the
readers are storage.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, select

from endcredits.consent.rules import DECISIONS, SOURCE_LENGTH_MAX, USES, GuildDefault
from endcredits.errors import ConflictError, ValidationError
from endcredits.limits import WEIGHT_MAX
from endcredits.registry.identity.members import issuers_of_people
from endcredits.registry.identity.trusted import check_trusted, trusted_issuer_ids
from endcredits.registry.roles import canonical_role, check_role, split_role
from endcredits.store.audit import append_audit
from endcredits.store.engine import format_time, parse_time, utc_now
from endcredits.store.schema import guild_terms

GUILD_TERMS_BYTES_MAX = 1 << 20
"""Largest terms document read."""
ESCROW_PERIOD_DAYS_MAX = 36_500
"""Longest escrow period a guild may set (a century)."""
ROLE_MINIMUMS_MAX = 1_000
"""Most roles one terms document may set a minimum weight for."""
FUND_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
"""A fund id, as an agreement's ``escrow_expiry_fund`` is written."""

_SECTIONS = {"effective_from", "consent", "escrow", "role_weights_min"}


@dataclass(frozen=True)
class GuildTerms:
    """One version of ``issuer``'s terms for its members (see the module doc)."""

    issuer: str
    version: int
    effective_from: datetime
    consent: tuple[tuple[str, str], ...]  # (use, decision), by use
    escrow_period_days: int | None
    escrow_fund: str | None
    role_weights_min: tuple[tuple[tuple[str, str], int], ...]  # ((scheme, code), weight), by role
    body_sha256: str
    source: str

    @property
    def label(self) -> str:
        """How statements and reasons cite it: ``guild terms of ISSUER v2``."""
        return f"guild terms of {self.issuer} v{self.version}"

    def defaults(self) -> tuple[GuildDefault, ...]:
        return tuple(GuildDefault(self.issuer, self.label, use, cast(Any, d)) for use, d in self.consent)

    def to_json(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "version": self.version,
            "effective_from": format_time(self.effective_from),
            "consent": dict(self.consent),
            "escrow": {"period_days": self.escrow_period_days, "fund": self.escrow_fund},
            "role_weights_min": {f"{s}:{c}": w for (s, c), w in self.role_weights_min},
            "body_sha256": self.body_sha256,
            "source": self.source,
        }


def _int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"guild terms {what} must be an integer in {low}..{high}, got {value!r:.40}")
    return value


def _consent(data: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(data, dict) or not data:
        raise ValidationError('guild terms [consent] must map at least one use to "allowed" or "notAllowed"')
    for use, decision in data.items():
        if use not in USES:
            raise ValidationError(f"guild terms [consent]: unknown use {use!r:.60}: one of {', '.join(USES)}")
        if decision not in DECISIONS:
            raise ValidationError(f'guild terms [consent] {use} = {decision!r:.40}: say "allowed" or "notAllowed"')
    return tuple(sorted(data.items()))


def _escrow(data: object) -> tuple[int, str | None]:
    if not isinstance(data, dict) or set(data) - {"period_days", "fund"} or "period_days" not in data:
        raise ValidationError("guild terms [escrow] takes period_days (required) and fund (optional), nothing else")
    days = _int(data["period_days"], "[escrow] period_days", 1, ESCROW_PERIOD_DAYS_MAX)
    fund = data.get("fund")
    if fund is not None and (not isinstance(fund, str) or FUND_ID.fullmatch(fund) is None):
        raise ValidationError(
            f"guild terms [escrow] fund {fund!r:.80} must be 1..64 lower-case letters, digits, '.', '_' or '-'"
        )
    return days, fund


def _role_minimums(data: object) -> tuple[tuple[tuple[str, str], int], ...]:
    if not isinstance(data, dict) or not data or len(data) > ROLE_MINIMUMS_MAX:
        raise ValidationError(f'guild terms [role_weights_min] must list 1..{ROLE_MINIMUMS_MAX} "scheme:code" = weight')
    out: dict[tuple[str, str], int] = {}
    for role, weight in data.items():
        scheme, code = split_role(role)
        key = canonical_role(*check_role(scheme, code))
        if key in out:
            raise ValidationError(f"guild terms [role_weights_min] names {key[0]}:{key[1]} twice")
        out[key] = _int(weight, f"minimum weight for {role}", 1, WEIGHT_MAX)
    return tuple(sorted(out.items()))


def parse_guild_terms(body: str, issuer: str, source: str) -> GuildTerms:
    """Parse and check a terms document (version 0 until stored); ``ValidationError`` names the first problem."""
    if len(body.encode()) > GUILD_TERMS_BYTES_MAX:
        raise ValidationError(f"guild terms are over GUILD_TERMS_BYTES_MAX={GUILD_TERMS_BYTES_MAX} bytes")
    if not isinstance(source, str) or not 1 <= len(source) <= SOURCE_LENGTH_MAX:
        raise ValidationError(f"guild terms need a source of 1..{SOURCE_LENGTH_MAX} characters")
    try:
        data = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"guild terms are not valid TOML: {exc}") from None
    unknown = set(data) - _SECTIONS
    if unknown:
        raise ValidationError(f"guild terms have unknown keys {sorted(unknown)}; allowed: {sorted(_SECTIONS)}")
    if not set(data) & {"consent", "escrow", "role_weights_min"}:
        raise ValidationError("guild terms set nothing: give [consent], [escrow] or [role_weights_min]")
    when = data.get("effective_from")
    if not isinstance(when, str):
        raise ValidationError('guild terms need effective_from = "YYYY-MM-DDTHH:MM:SSZ" (quoted, with a zone)')
    days, fund = _escrow(data["escrow"]) if "escrow" in data else (None, None)
    return GuildTerms(
        issuer=issuer,
        version=0,
        effective_from=parse_time(when),
        consent=_consent(data["consent"]) if "consent" in data else (),
        escrow_period_days=days,
        escrow_fund=fund,
        role_weights_min=_role_minimums(data["role_weights_min"]) if "role_weights_min" in data else (),
        body_sha256=hashlib.sha256(body.encode()).hexdigest(),
        source=source,
    )


def _versions(conn: Connection, issuers: Iterable[str]) -> dict[str, list[GuildTerms]]:
    """Every stored version of ``issuers``' terms, oldest first."""
    wanted = sorted(set(issuers))
    out: dict[str, list[GuildTerms]] = {i: [] for i in wanted}
    q = select(guild_terms).where(guild_terms.c.issuer.in_(wanted)).order_by(guild_terms.c.version)
    for r in conn.execute(q):
        parsed = parse_guild_terms(r.body, r.issuer, r.source)
        stored = dict(parsed.__dict__, version=int(r.version), effective_from=parse_time(r.effective_from))
        out[r.issuer].append(GuildTerms(**stored))
    return out


def load_guild_terms(conn: Connection, issuer: str, body: str, source: str) -> tuple[GuildTerms, bool]:
    """Store ``body`` as ``issuer``'s newest terms, in the caller's write transaction; returns the stored
    version and whether it is new (the newest body again stores nothing). Refused, with nothing written, for
    an issuer the operator does not trust, a malformed document, an effective_from before the newest
    version's, or an escrow period shorter than the newest version's (or none where it had one)."""
    check_trusted(conn, issuer)
    terms = parse_guild_terms(body, issuer, source)
    before = _versions(conn, [issuer])[issuer]
    newest = before[-1] if before else None
    if newest is not None:
        if newest.body_sha256 == terms.body_sha256:
            return newest, False
        if terms.effective_from < newest.effective_from:
            raise ValidationError(
                f"guild terms of {issuer}: effective_from {format_time(terms.effective_from)} is before version "
                f"{newest.version}'s ({format_time(newest.effective_from)}); a new version starts later"
            )
        old_days = newest.escrow_period_days
        if old_days is not None and (terms.escrow_period_days or 0) < old_days:
            raise ConflictError(
                f"guild terms of {issuer} would shorten the escrow period from {old_days} days to "
                f"{terms.escrow_period_days or 'none'}: members' money waits under it; keep {old_days} days or more"
            )
    version = newest.version + 1 if newest is not None else 1
    at = utc_now()
    stored = GuildTerms(**dict(terms.__dict__, version=version))
    conn.execute(
        guild_terms.insert().values(
            issuer=issuer,
            version=version,
            effective_from=format_time(terms.effective_from),
            body=body,
            body_sha256=terms.body_sha256,
            source=source,
            created_at=at,
        )
    )
    payload = {"version": version, "body_sha256": terms.body_sha256, "source": source}
    append_audit(conn, "consent.guild_terms_loaded", f"issuer:{issuer}", payload, at=at)
    return stored, True


def guild_terms_in_force(conn: Connection, at: datetime | None = None) -> dict[str, GuildTerms]:
    """Per trusted issuer with terms: its newest version (effective at ``at`` when given)."""
    out: dict[str, GuildTerms] = {}
    for issuer, versions in _versions(conn, trusted_issuer_ids(conn)).items():
        usable = [v for v in versions if at is None or v.effective_from <= at]
        if usable:
            out[issuer] = usable[-1]
    return out


def guild_terms_versions(conn: Connection, issuer: str) -> list[GuildTerms]:
    """Every stored version of ``issuer``'s terms, oldest first (trusted or not: the history stays)."""
    return _versions(conn, [issuer])[issuer]


def consent_defaults(conn: Connection, at: datetime) -> dict[str, tuple[GuildDefault, ...]]:
    """Per trusted issuer, the consent defaults its members inherit at ``at`` (for ``consent.rules.decide``)."""
    return {i: t.defaults() for i, t in guild_terms_in_force(conn, at).items() if t.consent}


def role_minimums(
    conn: Connection, person_ids: Iterable[int], at: datetime
) -> dict[int, dict[tuple[str, str], GuildTerms]]:
    """Per person of ``person_ids`` who is a member of a trusted guild whose terms in force at ``at`` set
    ``[role_weights_min]``: per canonical role, the terms giving the highest minimum (ties: the issuer id
    first in order). Reads no membership when no guild sets a minimum."""
    setting = {i: t for i, t in guild_terms_in_force(conn, at).items() if t.role_weights_min}
    if not setting:
        return {}
    out: dict[int, dict[tuple[str, str], GuildTerms]] = {}
    for person, issuers in issuers_of_people(conn, person_ids).items():
        best: dict[tuple[str, str], GuildTerms] = {}
        for terms in (setting[i] for i in issuers if i in setting):  # sorted: the first of equal minimums stays
            for role, weight in terms.role_weights_min:
                held = best.get(role)
                if held is None or weight > dict(held.role_weights_min)[role]:
                    best[role] = terms
        if best:
            out[person] = best
    return out


def escrow_policies(conn: Connection) -> dict[str, GuildTerms]:
    """Per trusted issuer whose newest terms set an escrow period: those terms."""
    return {i: t for i, t in guild_terms_in_force(conn).items() if t.escrow_period_days is not None}


__all__ = [
    "ESCROW_PERIOD_DAYS_MAX",
    "GUILD_TERMS_BYTES_MAX",
    "GuildTerms",
    "consent_defaults",
    "escrow_policies",
    "guild_terms_in_force",
    "guild_terms_versions",
    "load_guild_terms",
    "parse_guild_terms",
    "role_minimums",
]
