"""Crashes during ingestion and posting lose no microunit and duplicate none.

A client sends a seeded sequence of usage batches (several outputs each, over several months, so one
batch is several ledger transfers; payees paid, escrowed and carrying fractions). The process doing the
work dies at a random point, the way SIGKILL ends it: no cleanup, no rollback by Python. It restarts,
the client retries every batch it has no answer for (and, by a coin, re-sends the last one it has an
answer for), and the ledger (every balance, transfer, leg, carry, output and accrual record, and the
evidence files' lines) must equal a run without faults, byte for byte; ``verify`` must pass; and the
evidence directory must hold exactly the files the ledger records (no orphan, no partial file).

Two levels:
- *In process*, ``TRIALS_PER_RUN`` trials per run: a forked child accrues the batches and dies either at
  a named step inside ``accrue`` (``ledger.accrue.FAULT_AT``: evidence written, transfer posted, batch
  row written, transaction committed) or by SIGKILL from the parent after a random delay. A trial may
  crash several times before a run gets through. The trials' seeds rotate with the UTC day
  (``ENDCREDITS_FAULT_SEED`` fixes one), so every run is reproducible and successive days try new points:
  100 trials per run, more than 100 across any two runs.
- *The real service*: ``endcredits serve`` on SQLite and on PostgreSQL (a fresh schema), an HTTP client
  that waits for each batch's accrual (``Prefer: wait``) with retries, the server killed by SIGKILL after a
  random delay or ended by ``ENDCREDITS_FAULT_AT`` inside a request, then restarted; at the end the
  ``endcredits verify`` command must pass.

And ``serve --workers 3`` on PostgreSQL, acknowledging batches (202) before they accrue, killed whole by
SIGKILL while batches are queued or being accrued and started again: every acknowledged batch accrues once.

A torn evidence file (bytes flipped in place after the commit) is reported by ``endcredits verify``
(exit 1) and refused by statements, never trusted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from endcredits.errors import EvidenceError
from endcredits.ledger import accrue as accrue_mod
from endcredits.ledger.intake import backlog
from endcredits.ledger.verify import verify
from endcredits.manifest.records import load_manifest
from endcredits.money import format_amount
from endcredits.royalties import Agreement
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage import OutputIn, build_usage
from endcredits.service.auth import create_api_key
from endcredits.store.engine import Store, init_store, open_store
from endcredits.store.schema import accrual_batches, usage_intake, usage_requests
from helpers_money import EXTERNAL, World, agreement, evidence_files, ledger_snapshot

TRIALS_PER_RUN = int(os.environ.get("ENDCREDITS_FAULT_TRIALS", "100"))
BATCHES = 6
STEPS = ("evidence", "posted", "recorded", "committed")
SEED = int(os.environ.get("ENDCREDITS_FAULT_SEED", str(dt.datetime.now(dt.UTC).toordinal())))
AG = agreement(pool_rate="0.5", payout_threshold="0.01")


@dataclass(frozen=True)
class Batch:
    batch_id: str
    outputs: tuple[tuple[str, int, str, tuple[tuple[str, float], ...]], ...]  # id, revenue, time, scores


def _batches(works: list[str], seed: int) -> list[Batch]:
    """A seeded client workload: odd revenues over three months and three works, so pools split into
    fractions of a microunit, groups span periods, and every kind of payee appears."""
    rng = random.Random(seed)
    out = []
    for b in range(BATCHES):
        rows = []
        for o in range(rng.randint(1, 4)):
            chosen = rng.sample(works, rng.randint(1, len(works)))
            scores = tuple((w, round(rng.uniform(0.01, 1.0), 6)) for w in sorted(chosen))
            rows.append(
                (
                    f"b{b}-o{o}",
                    rng.randint(1, 10**11) | 1,
                    f"2026-{rng.randint(1, 3):02d}-{rng.randint(1, 28):02d}T12:00:00Z",
                    scores,
                )
            )
        out.append(Batch(f"batch-{b}", tuple(rows)))
    return out


def _build_world(data_dir: Path, db_url: str | None) -> list[str]:
    store = init_store(data_dir, db_url)
    try:
        w = World(store)
        with store.write() as conn:
            save_agreement(conn, AG.id, AG.version, AG.body, AG.body_sha256)
        return [w.song, w.film, w.orphan]
    finally:
        store.dispose()


def _accrue_one(store: Store, batch: Batch, ag: Agreement) -> str:
    from endcredits.manifest.records import latest_manifest_id

    with store.read() as conn:
        manifest = load_manifest(conn, latest_manifest_id(conn, "m"))
        usage = build_usage(
            conn,
            [OutputIn(o, "m", r, ag.currency, t) for o, r, t, _ in batch.outputs],
            {o: dict(s) for o, _, _, s in batch.outputs},
            ag,
            manifest,
        )
    return accrue_mod.accrue(store, usage, ag, event_id=batch.batch_id, source=EXTERNAL).status


def _assert_whole(store: Store, baseline: dict[str, Any], what: str) -> None:
    """The ledger equals the run without faults; verify passes; the evidence directory holds exactly the
    recorded files."""
    got = ledger_snapshot(store)
    for part, want in baseline.items():
        assert got[part] == want, f"{what}: {part} differ from the run without faults"
    report = verify(store)
    assert report.ok, f"{what}: {report.problems}"
    recorded = {store.data_dir / path for _, _, _, path, _ in got["accruals"]}
    assert set(evidence_files(store)) == recorded, f"{what}: orphan or partial evidence files"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str], dict[str, Any]]]:
    """A SQLite world to copy per trial, its works, and the ledger after all batches without faults
    (for the module's fixed workload seed, so every trial compares against the same baseline)."""
    root = tmp_path_factory.mktemp("faults")
    works = _build_world(root / "template", None)
    shutil.copytree(root / "template", root / "baseline")
    store = open_store(root / "baseline")
    try:
        for b in _batches(works, 0):
            assert _accrue_one(store, b, AG) == "created"
        baseline = ledger_snapshot(store)
        assert verify(store).ok
    finally:
        store.dispose()
    yield root / "template", works, baseline


# In process ---------------------------------------------------------------------------------------
def _attempt(
    data_dir: Path, batches: list[Batch], start: int, fault: str, kill_after_s: float | None
) -> tuple[int, int]:
    """Accrue ``batches[start:]`` in a forked child that may die (a fault step, or SIGKILL after a delay).
    Returns (how the child ended, the index after the last batch it acknowledged)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest teardown, no Python cleanup, whatever happens
        status = 0
        try:
            os.close(read_end)
            accrue_mod.FAULT_AT = fault
            store = open_store(data_dir)
            for i in range(start, len(batches)):
                _accrue_one(store, batches[i], AG)
                os.write(write_end, f"{i}\n".encode())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent by the exit status
            sys.stderr.write(f"fault trial child failed: {exc!r}\n")
            status = 1
        os._exit(status)
    os.close(write_end)
    reaped, wait_status = 0, 0
    if kill_after_s is not None:
        deadline = time.monotonic() + kill_after_s
        while time.monotonic() < deadline:
            reaped, wait_status = os.waitpid(pid, os.WNOHANG)
            if reaped:
                break
            time.sleep(0.002)
        if not reaped:  # still running, so the pid is still this child's
            os.kill(pid, signal.SIGKILL)
    with os.fdopen(read_end) as pipe:
        acked = [int(line) for line in pipe.read().split()]
    if not reaped:
        _, wait_status = os.waitpid(pid, 0)
    ended = os.waitstatus_to_exitcode(wait_status)
    return ended, (acked[-1] + 1 if acked else start)


def _trial(
    template_dir: Path, work_dir: Path, works: list[str], baseline: dict[str, Any], seed: int, full_run_s: float
) -> list[str]:
    rng = random.Random(seed)
    data_dir = work_dir / f"trial-{seed}"
    shutil.copytree(template_dir, data_dir)
    batches = _batches(works, 0)
    start, crashes = 0, []
    for attempt in range(20):  # a bound: each attempt crashes with probability 2/3 at most
        roll = rng.random()
        fault, kill_after_s = "", None
        if attempt < 4 and roll < 0.4:
            fault = f"{rng.choice(STEPS)}:{rng.randint(1, 8)}"
        elif attempt < 4 and roll < 0.8:
            kill_after_s = rng.uniform(0, full_run_s)
        ended, acked_to = _attempt(data_dir, batches, start, fault, kill_after_s)
        assert ended in (0, accrue_mod.FAULT_EXIT_STATUS, -signal.SIGKILL), f"seed {seed}: child ended with {ended}"
        if ended != 0:
            crashes.append(fault or f"kill after {kill_after_s:.3f}s")
        if ended == 0 and acked_to == len(batches):
            break
        # The client retries from the first batch it has no answer for, and by a coin the one before it.
        start = max(0, acked_to - rng.randint(0, 1))
    else:
        pytest.fail(f"seed {seed}: no attempt got through")
    store = open_store(data_dir)
    try:
        _assert_whole(store, baseline, f"seed {seed} after crashes {crashes}")
    finally:
        store.dispose()
    shutil.rmtree(data_dir)
    return crashes


def test_crashes_inside_accrual_lose_and_duplicate_nothing(
    template: tuple[Path, list[str], dict[str, Any]], tmp_path: Path
) -> None:
    template_dir, works, baseline = template
    began = time.monotonic()
    ended, _ = _attempt(shutil.copytree(template_dir, tmp_path / "timing"), _batches(works, 0), 0, "", None)
    assert ended == 0
    full_run_s = time.monotonic() - began
    crashes = 0
    for t in range(TRIALS_PER_RUN):
        crashes += len(_trial(template_dir, tmp_path, works, baseline, SEED * 1_000 + t, full_run_s))
    assert crashes >= TRIALS_PER_RUN // 2, f"only {crashes} crashes in {TRIALS_PER_RUN} trials: the faults missed"


def test_every_fault_step_is_reached_by_a_normal_run(
    template: tuple[Path, list[str], dict[str, Any]], tmp_path: Path
) -> None:
    """Each named step ends the child where it should: a misspelt or moved step would make trials vacuous."""
    template_dir, works, _ = template
    for step in STEPS:
        data_dir = shutil.copytree(template_dir, tmp_path / step)
        ended, acked_to = _attempt(data_dir, _batches(works, 0), 0, f"{step}:1", None)
        assert (ended, acked_to) == (accrue_mod.FAULT_EXIT_STATUS, 0), step


# The real service ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _body(batch: Batch) -> dict[str, Any]:
    return {
        "batch_id": batch.batch_id,
        "agreement_id": AG.id,
        "external": {"reason": EXTERNAL.external_reason},  # as _accrue_one marks them
        "outputs": [
            {
                "output_id": o,
                "model_id": "m",
                "revenue": format_amount(r, AG.currency),
                "currency": AG.currency,
                "occurred_at": t,
                "work_scores": dict(s),
            }
            for o, r, t, s in batch.outputs
        ],
    }


class Server:
    """``endcredits serve`` as a child process, started and killed on demand."""

    def __init__(self, where: list[str], workers: int = 1) -> None:
        self.where = where
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.workers = workers

    def start(self, fault: str = "") -> None:
        env = {**os.environ, "ENDCREDITS_FAULT_AT": fault}
        at = ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "endcredits", "serve", *self.where, *at],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                assert self.proc.poll() is None, "serve exited before it was ready"
                time.sleep(0.1)
        raise AssertionError("serve was not ready within 90 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            workers = self.worker_pids() if self.workers > 1 else []
            self.proc.send_signal(signal.SIGKILL)
            for pid in workers:  # the supervisor killed cannot end its workers: they would keep the port
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def sigkill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def worker_pids(self) -> list[int]:
        """The worker processes uvicorn's supervisor runs (spawned children; not its resource tracker)."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        found = []
        for pid in children:
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except FileNotFoundError:  # it ended meanwhile
                continue
        return found


def _serve_trial(where: list[str], data_dir: Path, db_url: str | None, batches: list[Batch], seed: int) -> list[str]:
    """Ingest every batch over HTTP while the server is killed now and then; returns what crashed."""
    rng = random.Random(seed)
    store = open_store(data_dir, db_url)
    try:
        with store.write() as conn:
            key = create_api_key(conn, role="operator", scopes=["ingest"], label="faults").key
    finally:
        store.dispose()
    waits = {"Authorization": f"Bearer {key}", "Prefer": "wait"}  # answered once accrued, as a client that waits
    server = Server(where)
    crashes: list[str] = []
    killer: threading.Timer | None = None
    i, starts = 0, 0
    try:
        while i < len(batches):
            if not server.alive():
                assert starts <= 10, f"seed {seed}: more than 10 restarts"
                if killer is not None:
                    killer.cancel()
                fault = f"{rng.choice(STEPS)}:{rng.randint(1, 6)}" if starts < 3 and rng.random() < 0.5 else ""
                server.start(fault)
                starts += 1
                killer_s = rng.uniform(0.05, 2.0) if starts < 4 and not fault and rng.random() < 0.7 else None
                if killer_s is not None:  # SIGKILL from another thread, whatever the server is doing then
                    killer = threading.Timer(killer_s, server.sigkill)
                    killer.start()
                crashes.append(fault or (f"kill after {killer_s:.2f}s" if killer_s else "none"))
            try:
                r = httpx.post(f"{server.url}/usage-batches", json=_body(batches[i]), headers=waits, timeout=60)
            except httpx.TransportError:
                server.kill()  # it died mid-request: the client has no answer, so it retries this batch
                continue
            assert r.status_code in (200, 201), r.text
            assert r.json()["batch_id"] == batches[i].batch_id
            i += 1
            if rng.random() < 0.2:  # a duplicate retry of an answered batch changes nothing
                try:
                    again = httpx.post(
                        f"{server.url}/usage-batches", json=_body(batches[i - 1]), headers=waits, timeout=60
                    )
                    assert again.status_code == 200, again.text
                except httpx.TransportError:
                    server.kill()
    finally:
        if killer is not None:
            killer.cancel()
        server.kill()
    return crashes


@pytest.mark.parametrize("trial", range(2))
def test_the_service_killed_while_ingesting_loses_and_duplicates_nothing(
    template: tuple[Path, list[str], dict[str, Any]], tmp_path: Path, db_url: str | None, trial: int
) -> None:
    template_dir, works, baseline = template
    data_dir = tmp_path / "data"
    if db_url is None:
        shutil.copytree(template_dir, data_dir)
    else:
        assert _build_world(data_dir, db_url) == works  # content-addressed: the same works
    where = ["--data", str(data_dir)] + (["--db", db_url] if db_url else [])
    crashes = _serve_trial(where, data_dir, db_url, _batches(works, 0), SEED * 1_000 + 900 + trial)
    store = open_store(data_dir, db_url)
    try:
        _assert_whole(store, baseline, f"serve trial {trial} after {crashes}")
        with store.read() as conn:
            assert len(conn.execute(select(usage_requests.c.batch_id)).all()) == BATCHES
    finally:
        store.dispose()
    done = subprocess.run(
        [sys.executable, "-m", "endcredits", *where, "verify"], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _pg_world(works: list[str], tmp_path: Path, db_url: str | None) -> tuple[Store, list[str], dict[str, str]]:
    """The template's world built again in a fresh PostgreSQL schema: its store, ``serve``'s arguments for
    it, and an ingest key's headers."""
    data_dir = tmp_path / "data"
    assert _build_world(data_dir, db_url) == works
    store = open_store(data_dir, db_url)
    with store.write() as conn:
        headers = {"Authorization": f"Bearer {create_api_key(conn, role='operator', scopes=['ingest'], label='w').key}"}
    return store, ["--data", str(data_dir), "--db", str(db_url)], headers


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_workers_killed_while_ingesting_side_by_side_lose_and_duplicate_nothing(
    template: tuple[Path, list[str], dict[str, Any]], tmp_path: Path, db_url: str | None
) -> None:
    """``serve --workers 3`` on PostgreSQL, three clients sending their batches at once, and a worker killed
    by SIGKILL now and then (the supervisor starts another): every batch accrues exactly once, and the
    balances and carries equal the serial run's (the batches' order, and so each transfer's legs, differ)."""
    _, works, baseline = template
    store, where, headers = _pg_world(works, tmp_path, db_url)
    batches = _batches(works, 0)
    server = Server(where, workers=3)
    server.start()
    rng = random.Random(SEED * 1_000 + 990)
    kills: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.wait(rng.uniform(0.05, 0.6)) and len(kills) < 4:
            pids = server.worker_pids()
            if pids:
                victim = rng.choice(pids)
                os.kill(victim, signal.SIGKILL)
                kills.append(victim)

    def client(mine: list[Batch], answers: dict[str, int]) -> None:
        for batch in mine:
            for _ in range(60):
                try:
                    r = httpx.post(
                        f"{server.url}/usage-batches",
                        json=_body(batch),
                        headers={**headers, "Prefer": "wait"},
                        timeout=60,
                    )
                except httpx.TransportError:
                    time.sleep(0.2)  # its worker died mid-request: no answer, so it sends the batch again
                    continue
                if r.status_code in (429, 502, 503):
                    time.sleep(0.2)
                    continue
                answers[batch.batch_id] = r.status_code
                break

    answers: dict[str, int] = {}
    threads = [threading.Thread(target=client, args=(batches[i::3], answers)) for i in range(3)]
    murderer = threading.Thread(target=killer)
    try:
        murderer.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    finally:
        stop.set()
        murderer.join()
        server.kill()
    assert kills, "no worker was killed: the trial tested nothing"
    assert sorted(answers) == sorted(b.batch_id for b in batches) and set(answers.values()) <= {200, 201}, answers
    got = ledger_snapshot(store)
    for part in ("balances", "carries", "outputs"):
        assert got[part] == baseline[part], f"after killing workers {kills}: {part} differ from the serial run"
    assert sorted(a[0] for a in got["accruals"]) == sorted(a[0] for a in baseline["accruals"])
    report = verify(store)
    assert report.ok, report.problems
    recorded = {store.data_dir / path for _, _, _, path, _ in got["accruals"]}
    assert set(evidence_files(store)) == recorded, "orphan or partial evidence files"
    store.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_serve_killed_with_acknowledged_batches_queued_loses_and_duplicates_none(
    template: tuple[Path, list[str], dict[str, Any]], tmp_path: Path, db_url: str | None
) -> None:
    """``serve --workers 3`` on PostgreSQL acknowledges each batch (202) once it is durable and accrues it
    in the background. The whole service, supervisor and workers, is killed by SIGKILL right after an
    acknowledgement (batches still queued, or being accrued) and started again: every acknowledged batch
    ends accrued exactly once, the balances equal the serial run's, and ``endcredits verify`` passes."""
    _, works, baseline = template
    store, where, headers = _pg_world(works, tmp_path, db_url)
    batches = _batches(works, 0)
    rng = random.Random(SEED * 1_000 + 995)
    server = Server(where, workers=3)
    acknowledged: list[str] = []
    queued_at_kills: list[int] = []
    try:
        for n, batch in enumerate(batches):
            while True:
                if not server.alive():
                    server.start()
                try:
                    r = httpx.post(f"{server.url}/usage-batches", json=_body(batch), headers=headers, timeout=60)
                except httpx.TransportError:
                    server.kill()
                    continue
                assert r.status_code in (200, 202), r.text
                acknowledged.append(batch.batch_id)
                break
            if n in (1, 3, len(batches) - 1):  # SIGKILL at once or a moment later: batches queued or accruing
                time.sleep(rng.uniform(0, 0.3) if n == 3 else 0)
                server.kill()
                with store.read() as conn:
                    queued_at_kills.append(backlog(conn).batches)
        server.start()  # the batches queued when it died are accrued after this start
        deadline = time.monotonic() + 120
        while True:
            states = [
                httpx.get(f"{server.url}/usage-batches/{b}", headers=headers).json()["state"] for b in acknowledged
            ]
            if all(s == "accrued" for s in states):
                break
            assert time.monotonic() < deadline, f"not all accrued within 120 s: {states}"
            time.sleep(0.2)
    finally:
        server.kill()
    assert any(queued_at_kills), f"no batch was queued at any kill ({queued_at_kills}): the trial tested nothing"
    assert sorted(acknowledged) == sorted(b.batch_id for b in batches)
    got = ledger_snapshot(store)
    for part in ("balances", "carries", "outputs"):
        assert got[part] == baseline[part], (
            f"after kills with {queued_at_kills} queued: {part} differ from the serial run"
        )
    assert sorted(a[0] for a in got["accruals"]) == sorted(a[0] for a in baseline["accruals"])
    with store.read() as conn:
        assert {r.state for r in conn.execute(select(usage_intake.c.state))} == {"accrued"}
    store.dispose()
    done = subprocess.run(
        [sys.executable, "-m", "endcredits", *where, "verify"], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_several_workers_need_postgresql(tmp_path: Path) -> None:
    init_store(tmp_path / "d").dispose()
    done = subprocess.run(
        [sys.executable, "-m", "endcredits", "serve", "--data", str(tmp_path / "d"), "--workers", "2"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "several workers need PostgreSQL" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# Torn evidence ------------------------------------------------------------------------------------
def test_a_torn_evidence_file_is_reported_by_verify_and_never_trusted(
    template: tuple[Path, list[str], dict[str, Any]], tmp_path: Path
) -> None:
    from endcredits.payouts.statements import build_statement

    template_dir, works, _ = template
    data_dir = shutil.copytree(template_dir, tmp_path / "data")
    store = open_store(data_dir)
    try:
        for b in _batches(works, 0)[:2]:
            _accrue_one(store, b, AG)
        with store.read() as conn:
            path, period = conn.execute(
                select(accrual_batches.c.evidence_path, accrual_batches.c.period).order_by(accrual_batches.c.event_id)
            ).first() or ("", "")
        torn = data_dir / path
        data = bytearray(torn.read_bytes())
        for at in range(len(data) // 3, len(data) // 3 + 8):  # flipped in place: same size, same name
            data[at] ^= 0xFF
        torn.write_bytes(bytes(data))
        with pytest.raises(EvidenceError, match="does not match its recorded SHA-256"):
            build_statement(store, 1, period, "EUR")  # person 1: alice, paid in every batch
    finally:
        store.dispose()
    done = subprocess.run(
        [sys.executable, "-m", "endcredits", "--data", str(data_dir), "verify", "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert any(str(torn) in p and "altered or truncated" in p for p in report["problems"]), report["problems"]
