"""What every request passes before a route sees it: its bearer credentials are checked first, then its
body is read, bounded by who sent it (an anonymous client may send only a small one) and within a
deadline; and no API answer may be cached."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from endcredits.errors import EndcreditsError
from endcredits.service import auth
from endcredits.service import models as m
from endcredits.service.auth import AuthError, Principal
from endcredits.service.errors import error_response, status_of

API = "/api/v1"
PRINCIPAL_KEY = "endcredits.principal"
"""Where the gate leaves the request's principal (or the ``AuthError`` its credentials raised) in the
ASGI scope, for ``access.principal``: credentials are read once per request."""

BODY_RECEIVE_TIMEOUT_S_PUBLIC = 10
"""An anonymous request's whole body must arrive within this many seconds (408 otherwise)."""
BODY_RECEIVE_TIMEOUT_S = 600
"""An authenticated request's body (up to 32 MiB of usage) must arrive within this many seconds."""

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Scope = MutableMapping[str, Any]


def body_bytes_max(path: str, who: Principal) -> int:
    """The most bytes a request may send: small for the public (sign-in forms and challenges), 32 MiB
    for usage batches, outputs' contents and blob uploads by a key with the scope to send them, 1 MiB
    otherwise."""
    if who.kind == "public":
        return m.PUBLIC_BODY_BYTES_MAX
    ingest = path.startswith((f"{API}/usage-batches", f"{API}/outputs/"))
    if (ingest and who.can("ingest")) or (path.startswith(f"{API}/blobs/") and who.can("registry")):
        return m.USAGE_BODY_BYTES_MAX
    return m.BODY_BYTES_MAX


class Gate:
    """ASGI middleware: credentials before body, a bound and a deadline on the body, ``no-store`` on the
    API. A refused body answers 413 (or 408 when it is too slow) before any endpoint sees it, whether the
    client declared its length or streamed it in chunks."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        who = auth.PUBLIC
        if scope["path"] == API or scope["path"].startswith(f"{API}/"):
            found = await _credentials(scope)
            scope[PRINCIPAL_KEY] = found
            who = found if isinstance(found, Principal) else auth.PUBLIC
            send = _no_store(send)
        limit = body_bytes_max(scope["path"], who)
        too_big = _refusal(413, "limit_exceeded", f"request body exceeds {limit} bytes: split it into smaller requests")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit():
                    await _refusal(400, "validation", "malformed Content-Length")(scope, receive, send)
                    return
                if int(value) > limit:
                    await too_big(scope, receive, send)
                    return
        timeout_s = BODY_RECEIVE_TIMEOUT_S_PUBLIC if who.kind == "public" else BODY_RECEIVE_TIMEOUT_S
        first: MutableMapping[str, Any] | None = None
        with anyio.move_on_after(timeout_s) as deadline:
            first = await _read_body(receive, limit)
        if deadline.cancelled_caught:
            slow = f"the request body did not arrive within {timeout_s} s: send it at once, or a smaller one"
            await _refusal(408, "timeout", slow)(scope, receive, send)
        elif first is None:
            await too_big(scope, receive, send)
        else:
            await self.app(scope, _replay(first, receive), send)


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    """An error answered before the body was read through: the server closes the connection after it,
    rather than read (and drop) whatever else the client goes on sending."""
    response = error_response(status, code, message)
    response.headers["Connection"] = "close"
    return response


async def _credentials(scope: Scope) -> Principal | AuthError:
    """The principal behind the request's ``Authorization`` header, or the ``AuthError`` it raises (kept
    for the routes that ask who is calling: a route that does not, such as health, ignores it)."""
    header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)
    if header is None:
        return auth.PUBLIC
    store = scope["app"].state.store

    def read() -> Principal:
        with store.read() as conn:
            return auth.principal_for(conn, header.decode("latin-1"))

    try:
        return await run_in_threadpool(read)
    except AuthError as exc:
        return exc
    except EndcreditsError as exc:  # the store is failing: the route would fail the same way
        return AuthError(status_of(exc), exc.code, exc.message)


async def _read_body(receive: Receive, limit: int) -> MutableMapping[str, Any] | None:
    """The whole body as one message (or the first message that is not body); None past ``limit``."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return message
        body = message.get("body", b"")
        seen += len(body)
        if seen > limit:
            return None
        chunks.append(body)
        if not message.get("more_body", False):
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}


def _replay(first: MutableMapping[str, Any], receive: Receive) -> Receive:
    pending = [first]

    async def replay() -> MutableMapping[str, Any]:
        return pending.pop(0) if pending else await receive()

    return replay


def _no_store(send: Send) -> Send:
    async def send_no_store(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
            message["headers"] = [*headers, (b"cache-control", b"no-store")]
        await send(message)

    return send_no_store
