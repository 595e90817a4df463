"""The portal's guild page: what a trusted guild sees of its members, in a browser.

``/portal/guild`` shows a guild's aggregates (``ledger.guilds.guild_view``: members, their accrued, payable,
escrow and fund money per currency, withheld below the member minimum, and per use how many members allow
or refuse it) and a search of its members' published unclaimed lines (``guild_unclaimed``: names and
amounts, never holder ids), so a guild can help its members claim. A guild key, entered once on the sign-in
page as an operator's is, sees its own issuer only; an operator who reads, or an auditor, names the issuer
(``?issuer=``). Never one person's private details.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from endcredits.errors import ValidationError
from endcredits.ledger.guilds import guild_unclaimed, guild_view
from endcredits.money import format_amount
from endcredits.service.access import see_guild, store_of
from endcredits.service.auth import Principal
from endcredits.service.portal import SignInNeeded, _who, render

UNCLAIMED_ROWS_SHOWN = 200
"""Unclaimed lines the page lists at most (the API's ``/guilds/{issuer}/unclaimed`` gives up to 10,000)."""


def _issuer_for(who: Principal, issuer: str) -> str:
    """The guild the page is about: a guild key's own; the one an operator or auditor names."""
    if who.kind == "public":
        raise SignInNeeded
    if who.kind == "guild" and who.issuer is not None:
        issuer = issuer or who.issuer
    elif not issuer:
        raise ValidationError("name the guild: /portal/guild?issuer=ISSUER (an issuer on the trust list)")
    see_guild(who, issuer)
    return issuer


def _money(amounts: dict[str, int] | None) -> list[str] | None:
    if amounts is None:
        return None
    return [f"{format_amount(a, c)} {c}" for c, a in sorted(amounts.items())] or ["0"]


def guild_context(request: Request, who: Principal, issuer: str, query: str) -> dict[str, Any]:
    """What the guild page shows: the view's figures formatted, and the unclaimed lines matching ``query``."""
    with store_of(request).read() as conn:
        view = guild_view(conn, issuer, dt.datetime.now(dt.UTC))
        rows = guild_unclaimed(conn, issuer, query, limit=UNCLAIMED_ROWS_SHOWN)
    return {
        "issuer": issuer,
        "own": who.kind == "guild",
        "members": view.members,
        "terms_version": view.terms_version,
        "money": [
            ("accrued", _money(view.accrued_microunits)),
            ("payable (owed to verified members)", _money(view.payable_microunits)),
            ("in escrow (waiting for a claim)", _money(view.escrow_microunits)),
            ("in funds (past the escrow period, still claimable)", _money(view.fund_microunits)),
        ],
        "withheld": view.accrued_microunits is None,
        "consent": sorted(view.consent.items()),
        "query": query,
        "unclaimed": [r.to_json() for r in rows],
        "unclaimed_max": UNCLAIMED_ROWS_SHOWN,
    }


def routes_guild(router: APIRouter) -> None:
    @router.get("/guild")
    def guild_page(
        request: Request,
        issuer: Annotated[str, Query(max_length=200)] = "",
        q: Annotated[str, Query(max_length=200)] = "",
    ) -> Response:
        who = _who(request)
        found = _issuer_for(who, issuer.strip())
        return render(request, who, "guild.html", g=guild_context(request, who, found, q.strip()))


__all__ = ["UNCLAIMED_ROWS_SHOWN", "guild_context", "routes_guild"]
