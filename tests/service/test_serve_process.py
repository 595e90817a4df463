"""The real `endcredits serve` process on a free port: ready when /api/v1/health answers 200."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
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
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "endcredits", "serve", *where, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "serve exited"
                time.sleep(0.2)
        assert health is not None and health.status_code == 200 and health.json()["status"] == "ok"
        listed = httpx.get(f"http://127.0.0.1:{port}/api/v1/payout-batches", headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200 and listed.json() == {"batches": []}
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["openapi"].startswith("3.")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
