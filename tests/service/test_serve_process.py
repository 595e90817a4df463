"""The real `endcredits serve` process on a free port: ready when /api/v1/health answers 200."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_health_and_an_operator_key_works(tmp_path: Path, db_url: str | None) -> None:
    data = tmp_path / "data"
    where = ["--data", str(data)] + (["--db", db_url] if db_url else [])
    made = subprocess.run(
        [sys.executable, "-m", "endcredits", "operator-key", "create", "--scope", "read", "--json", *where],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = json.loads(made.stdout)["key"]
    with _serving(where) as port:
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        listed = httpx.get(f"http://127.0.0.1:{port}/api/v1/payout-batches", headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200 and listed.json() == {"batches": []}
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["openapi"].startswith("3.")
        revoked = subprocess.run(
            [
                sys.executable,
                "-m",
                "endcredits",
                "operator-key",
                "revoke",
                json.loads(made.stdout)["id"],
                "--json",
                *where,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert json.loads(revoked.stdout) == {"id": json.loads(made.stdout)["id"], "revoked": True}
        refused = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/payout-batches", headers={"Authorization": f"Bearer {key}"}
        )
        assert refused.status_code == 401  # from the next request on


@contextmanager
def _serving(where: list[str], *extra: str) -> Iterator[int]:
    """`endcredits serve` on a free port, once /api/v1/health answers; stopped afterwards."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "endcredits", "serve", *where, "--host", "127.0.0.1", "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "serve exited"
                assert time.monotonic() < deadline, "serve did not answer within 60 s"
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()


def _closed_after_s(sock: socket.socket, trickle: bytes = b"", every_s: float = 0.25) -> float:
    """Seconds until the server closes ``sock`` while the client sends ``trickle`` a byte at a time."""
    started = time.monotonic()
    sock.settimeout(every_s)
    sent = 0
    while time.monotonic() - started < 30:
        try:
            if sock.recv(65_536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
        if trickle:
            try:
                sock.sendall(trickle[sent % len(trickle) : sent % len(trickle) + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
            sent += 1
    raise AssertionError("the server kept the connection open for 30 s")


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(65_536)
        if not chunk:
            break
        got += chunk
    return got


def test_serve_drops_slow_headers_and_refuses_anonymous_bulk(tmp_path: Path) -> None:
    """What only a real server shows: a request whose headers trickle in, or a connection that sends
    nothing, is closed after --headers-timeout-s; headers past 16 KiB are not buffered but refused; an
    anonymous request that declares a 32 MiB body is answered 413 at once, before a byte of it is sent; the
    server still serves."""
    with _serving(["--data", str(tmp_path / "data")], "--headers-timeout-s", "1") as port:
        address = ("127.0.0.1", port)
        with socket.create_connection(address) as slow:
            slow.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
            assert 0.9 < _closed_after_s(slow, b"X-Slow: 1\r\n") < 5
        with socket.create_connection(address) as idle:
            assert 0.9 < _closed_after_s(idle) < 5
        with socket.create_connection(address) as huge:
            huge.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (20 << 10))  # not ended
            assert _answer(huge).startswith(b"HTTP/1.1 400")
        with socket.create_connection(address) as bulk:
            bulk.sendall(
                b"POST /api/v1/usage-batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 33554432\r\n\r\n"
            )
            head = _answer(bulk)
            assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
            assert _closed_after_s(bulk) < 5
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).status_code == 200
