"""What a request passes before a route sees it, on SQLite and PostgreSQL, driven at the ASGI level so the
test counts the bytes the server pulls from the client: credentials are read before the body, a client
without them may send only ``PUBLIC_BODY_BYTES_MAX``, a slow body times out, and no API answer may be
cached."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from endcredits.service import create_app, gate
from endcredits.service import models as m

CHUNK_BYTES = 4 << 10


@dataclass
class Answer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    pulled_bytes: int = 0


def _call(app: Any, method: str, path: str, body: list[bytes], headers: dict[str, str], *, then: str = "end") -> Answer:
    """Send ``body`` chunk by chunk; once it is spent, end it (``end``), go on forever (``more``), or stall."""
    answer = Answer()
    sent = 0

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent < len(body) or then == "more":
            chunk = body[sent] if sent < len(body) else b"x" * CHUNK_BYTES
            sent += 1
            answer.pulled_bytes += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": sent < len(body) or then != "end"}
        if then == "stall":
            await anyio.sleep(3_600)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("192.0.2.1", 5_000),
        "server": ("testserver", 80),
        "state": {},
    }
    anyio.run(app, scope, receive, send)
    return answer


@pytest.mark.parametrize("path", ["/api/v1/auth/challenges", "/api/v1/usage-batches", "/portal/signin/challenge"])
def test_an_anonymous_body_is_cut_off_at_a_small_bound(svc: Any, path: str) -> None:
    app = create_app(svc.store)
    streamed = _call(app, "POST", path, [], {"content-type": "application/json"}, then="more")
    assert streamed.status == 413 and b"limit_exceeded" in streamed.body
    assert streamed.pulled_bytes <= m.PUBLIC_BODY_BYTES_MAX + CHUNK_BYTES  # was up to 32 MiB
    assert streamed.headers["connection"] == "close"
    declared = _call(app, "POST", path, [], {"content-length": str(m.USAGE_BODY_BYTES_MAX)}, then="more")
    assert (declared.status, declared.pulled_bytes) == (413, 0)
    forged = {"authorization": "Bearer eck_abc_def", "content-type": "application/json"}
    bad_key = _call(app, "POST", path, [], forged, then="more")
    assert bad_key.status == 413 and bad_key.pulled_bytes <= m.PUBLIC_BODY_BYTES_MAX + CHUNK_BYTES


def test_a_key_with_the_scope_may_send_a_large_body(svc: Any) -> None:
    app = create_app(svc.store)
    body = [b"x" * CHUNK_BYTES] * 64  # 256 KiB of junk: past the public bound, within a usage batch's
    ingest = _call(app, "POST", "/api/v1/usage-batches", body, {**svc.headers("op_ingest"), "content-type": "a/b"})
    assert ingest.status == 422 and ingest.pulled_bytes == 64 * CHUNK_BYTES
    public = _call(app, "POST", "/api/v1/usage-batches", body, {"content-type": "application/json"})
    assert public.status == 413


def test_a_slow_anonymous_body_times_out(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "BODY_RECEIVE_TIMEOUT_S_PUBLIC", 0.5)
    app = create_app(svc.store)
    started = time.monotonic()
    slow = _call(app, "POST", "/api/v1/auth/challenges", [b'{"person_id": '], {}, then="stall")
    assert slow.status == 408 and b'"code":"timeout"' in slow.body and slow.headers["connection"] == "close"
    assert time.monotonic() - started < 30


def test_no_api_answer_may_be_cached(svc: Any) -> None:
    c = svc.client
    answers = [
        c.get("/api/v1/me", headers=svc.headers("contributor_a")),
        c.get("/api/v1/payout-batches", headers=svc.headers("op_read")),
        c.get("/api/v1/escrow"),
        c.get("/api/v1/people/1", headers=svc.headers("revoked")),
        c.get("/api/v1/nothing-here"),
    ]
    assert [r.status_code for r in answers] == [200, 200, 200, 401, 404]
    assert {r.headers["cache-control"] for r in answers} == {"no-store"}
