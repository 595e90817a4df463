"""Running the app: uvicorn with bounds on what a client may hold open before its request even starts.

uvicorn times out idle keep-alive connections but not a request whose headers trickle in a byte at a time
(a "slowloris"), nor a connection that never sends anything. ``H11WithHeaderDeadline`` closes a
connection whose request headers are not complete ``headers_timeout_s`` after its first byte (or after
the connection opened); h11 refuses headers past ``HEADER_BYTES_MAX``; the gate (``gate.py``) bounds and
times out the body.

On PostgreSQL, ``workers`` > 1 runs that many worker processes on one listening socket (uvicorn's
supervisor, which replaces a worker that dies): each opens its own store (``worker_app``) and runs its own
accrual worker (``service.ingest.AccrualWorker``), which takes queued usage batches that no other worker holds
and accrues them beside the others (``Store.write(beside_others=True)``). SQLite keeps one process: it has one writer.

Each process warms up before it takes requests (``service.warm``): the usage check run once on a synthetic
batch, nothing written, and the start-up's objects frozen out of the garbage collector.
"""

from __future__ import annotations

import asyncio
import logging
import os

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from endcredits.errors import ValidationError
from endcredits.limits import FOLD_IDLE_S
from endcredits.service.app import create_app
from endcredits.service.ingest import IdleFolder
from endcredits.store.engine import DATA_ENV, DB_ENV, Store, open_store

HEADERS_TIMEOUT_S = 10
"""A request's line and headers must be complete within this many seconds of its first byte."""
HEADER_BYTES_MAX = 16 << 10
"""The most bytes of a request line and headers (h11's ``max_incomplete_event_size``): 400 past it."""
KEEP_ALIVE_TIMEOUT_S = 5
"""An idle connection between requests is closed after this many seconds."""
CONNECTIONS_MAX = 1_000
"""Open connections (and requests in flight) at once; past it new requests answer 503."""
WORKERS_MAX = 64
"""Most worker processes ``serve`` starts."""
_log = logging.getLogger("endcredits.service")
_WORKER_ENV = "ENDCREDITS_SERVE_WORKER"
"""What a worker process needs besides the store's place: headers timeout and idle-fold seconds."""


class H11WithHeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers take too long to arrive."""

    headers_timeout_s: float = HEADERS_TIMEOUT_S
    _headers_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm()  # a new request starts: its headers have headers_timeout_s from now
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._headers_deadline is None:
            self._headers_deadline = self.loop.call_later(self.headers_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
            self._headers_deadline = None

    def _headers_too_slow(self) -> None:
        self._headers_deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took over %s s", self.headers_timeout_s)
            self.transport.close()


def serve(
    store: Store,
    *,
    host: str,
    port: int,
    headers_timeout_s: float = HEADERS_TIMEOUT_S,
    connections_max: int = CONNECTIONS_MAX,
    forwarded_allow_ips: str | None = None,
    idle_fold_s: float = FOLD_IDLE_S,
    workers: int = 1,
) -> None:
    """Serve the API and the portal around ``store`` until interrupted. ``forwarded_allow_ips``: the
    proxies whose ``X-Forwarded-For`` names the client (uvicorn's default: this machine only); the
    per-client limits count the address this yields. The ledger's pending segments are folded once no usage
    batch has come for ``idle_fold_s`` seconds. ``workers`` processes (PostgreSQL only) share the port;
    ``connections_max`` bounds each."""
    check_workers(store, workers)
    options = {
        "host": host,
        "port": port,
        "h11_max_incomplete_event_size": HEADER_BYTES_MAX,
        "timeout_keep_alive": KEEP_ALIVE_TIMEOUT_S,
        "limit_concurrency": connections_max,
        "proxy_headers": True,
        "forwarded_allow_ips": forwarded_allow_ips,
        "log_level": "info",
        "access_log": False,
    }
    if workers > 1:
        _serve_workers(store, workers, headers_timeout_s, idle_fold_s, options)
        return
    protocol = type("H11WithHeaderDeadline", (H11WithHeaderDeadline,), {"headers_timeout_s": headers_timeout_s})
    app = create_app(store)
    config = uvicorn.Config(app, http=protocol, **options)  # type: ignore[arg-type]
    warm(store)
    worker = app.state.accrual_worker
    folder = IdleFolder(store, app.state.usage_admission, idle_fold_s, worker)
    worker.start()
    folder.start()
    try:
        uvicorn.Server(config).run()
    finally:
        folder.stop()
        worker.stop()


def warm(store: Store) -> None:
    """``service.warm.warm_up`` before the process takes requests; a warm-up that fails is logged and the
    service starts cold (nothing was written either way)."""
    from endcredits.service.warm import warm_up

    try:
        took_s = warm_up(store)
    except Exception:  # noqa: BLE001 - warming only saves the first requests time
        _log.warning("warming up failed; the first usage batches will be slower", exc_info=True)
        return
    _log.info("warmed up in %.2f s", took_s)


def check_workers(store: Store, workers: int) -> None:
    """Refuse a worker count ``serve`` cannot run: outside 1..``WORKERS_MAX``, or several on SQLite."""
    if not 1 <= workers <= WORKERS_MAX:
        raise ValidationError(f"workers must be between 1 and {WORKERS_MAX}")
    if workers > 1 and store.backend != "postgresql":
        raise ValidationError("several workers need PostgreSQL (--db): SQLite has one writer, so serve one process")


def _serve_workers(
    store: Store, workers: int, headers_timeout_s: float, idle_fold_s: float, options: dict[str, object]
) -> None:
    """``workers`` processes under uvicorn's supervisor, each building its app with ``worker_app`` from the
    store's place and the settings passed in the environment (the processes are spawned, not forked)."""
    from uvicorn.supervisors import Multiprocess

    os.environ[DATA_ENV] = str(store.data_dir)
    os.environ[DB_ENV] = store.engine.url.render_as_string(hide_password=False)
    os.environ[_WORKER_ENV] = f"{headers_timeout_s}:{idle_fold_s}"
    config = uvicorn.Config(
        f"{__name__}:worker_app",
        factory=True,
        workers=workers,
        http=H11WithHeaderDeadline,
        **options,  # type: ignore[arg-type]
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def worker_app() -> FastAPI:
    """One worker process's app (``serve`` with several workers): its own store, opened from the
    environment ``serve`` set, its own accrual worker and idle folder (daemon threads that end with the
    process)."""
    headers_timeout_s, _, idle_fold_s = os.environ[_WORKER_ENV].partition(":")
    H11WithHeaderDeadline.headers_timeout_s = float(headers_timeout_s)
    store = open_store(os.environ[DATA_ENV], os.environ[DB_ENV])
    app = create_app(store)
    warm(store)
    app.state.accrual_worker.start()
    IdleFolder(store, app.state.usage_admission, float(idle_fold_s), app.state.accrual_worker).start()
    return app
