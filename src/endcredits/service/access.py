"""Who is asking, and what they may see: the principal of an API request, and the checks every route of
the API and the portal makes with it (a scope, one person's own data, one guild's aggregates, a signed-in
contributor)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from endcredits.errors import NotFoundError
from endcredits.service import auth
from endcredits.service.auth import AuthError, Principal
from endcredits.service.gate import PRINCIPAL_KEY
from endcredits.store.engine import Store

_bearer = HTTPBearer(
    auto_error=False, description="An operator, auditor or guild API key (eck_...) or a session token (ecs_...)"
)


def store_of(request: Request) -> Store:
    """The open store the app was made around."""
    store: Store = request.app.state.store
    return store


def principal(request: Request, _doc: Annotated[Any, Depends(_bearer)] = None) -> Principal:
    """The principal behind the request's ``Authorization`` header (none: the public), as the gate found
    it before reading the body; 401 when those credentials are bad."""
    found: Principal | AuthError | None = request.scope.get(PRINCIPAL_KEY)
    if found is None:
        with store_of(request).read() as conn:
            found = auth.principal_for(conn, request.headers.get("authorization"))
    if isinstance(found, AuthError):
        raise found
    return found


Who = Annotated[Principal, Depends(principal)]
StoreDep = Annotated[Store, Depends(store_of)]


def need(who: Principal, scope: str) -> None:
    """401 for the public, 403 for a role without ``scope``."""
    if who.kind == "public":
        raise AuthError(401, "unauthorized", f"this needs credentials: an API key with scope {scope}")
    if not who.can(scope):
        raise AuthError(403, "forbidden", f"a {who.kind} may not do this: it needs an operator key with scope {scope}")


def needs(scope: str) -> Callable[[Principal], Principal]:
    """A dependency that refuses a caller without ``scope`` before the body is even parsed."""

    def check(who: Who) -> Principal:
        need(who, scope)
        return who

    return check


Ingest = Annotated[Principal, Depends(needs("ingest"))]
Registry = Annotated[Principal, Depends(needs("registry"))]
Payouts = Annotated[Principal, Depends(needs("payouts"))]
Reader = Annotated[Principal, Depends(needs("read"))]


def see_person(who: Principal, person_id: int) -> None:
    """A contributor sees only their own person; anyone else's is 'not found', as for a person that does
    not exist. Operators with ``read`` and auditors see everyone."""
    if who.kind == "contributor":
        if who.person_id != person_id:
            raise NotFoundError(f"no person {person_id}")
        return
    need(who, "read")


def see_guild(who: Principal, issuer: str) -> None:
    """A guild key sees its own issuer's aggregates and nobody else's (403); operators with ``read`` and
    auditors see any trusted guild's; every other role is refused (403, the public 401)."""
    if who.kind == "guild":
        if who.issuer != issuer:
            raise AuthError(403, "forbidden", f"this guild key speaks for {who.issuer}, not for {issuer}")
        return
    need(who, "read")


def contributor_self(who: Principal) -> int:
    """The signed-in contributor's person id; 401 for the public, 403 for a key."""
    if who.kind != "contributor" or who.person_id is None:
        raise AuthError(
            401 if who.kind == "public" else 403,
            "unauthorized" if who.kind == "public" else "forbidden",
            "this is for a signed-in contributor (a session token)",
        )
    return who.person_id
