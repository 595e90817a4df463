"""Shared builders for the ledger, royalties, payouts and store tests (imported as ``helpers_money``).

Only plain functions live here; fixtures live in each directory's ``conftest.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select, text

from endcredits.ledger.accrue import ScoreSource
from endcredits.ledger.evidence import read_evidence
from endcredits.ledger.records import account_balances, carried_fractions, derived_balances, load_transfer
from endcredits.manifest.records import add_model
from endcredits.registry.records import add_person, claim_name, name_ids, verify_person
from endcredits.royalties import Agreement, parse_agreement
from endcredits.royalties.usage import UsageBatch
from endcredits.store.engine import Store, format_time
from endcredits.store.schema import accrual_batches, credentials, metadata, outputs, transfers

EXTERNAL = ScoreSource.external("test weights")
"""The source of the tests' hand-made batches: scores of their own, marked external."""

ROLES = ("endcredits:composer", "endcredits:performer", "endcredits:scan_subject", "endcredits:vfx")


def agreement_text(
    *,
    pool_rate: str = "0.30",
    rights_holder_share: str = "0.25",
    lineage_pass_through: str = "0.20",
    payout_threshold: str = "10.00",
    currency: str = "EUR",
    agreement_id: str = "test-2026",
    version: int = 1,
    role_weights: dict[str, int] | None = None,
    baseline_share: str = "0",
) -> str:
    weights = role_weights if role_weights is not None else {r: 1 for r in ROLES}
    lines = [
        f'id = "{agreement_id}"',
        f"version = {version}",
        f'currency = "{currency}"',
        f'pool_rate = "{pool_rate}"',
        f'rights_holder_share = "{rights_holder_share}"',
        f'lineage_pass_through = "{lineage_pass_through}"',
        f'payout_threshold = "{payout_threshold}"',
        *([f'baseline_share = "{baseline_share}"'] if baseline_share != "0" else []),
        "escrow_period_days = 1095",
        "[role_weights]",
        *(f'"{role}" = {w}' for role, w in weights.items()),
    ]
    return "\n".join(lines) + "\n"


def agreement(**kwargs: Any) -> Agreement:
    return parse_agreement(agreement_text(**kwargs))


def usage(
    outputs: Sequence[tuple[str, int, str, Sequence[tuple[str, int]]]],
    *,
    model_id: str = "m",
    currency: str = "EUR",
) -> UsageBatch:
    """A usage batch from ``(output id, revenue, occurred at, [(payee, weight), ...])``, lines in the order given."""
    offsets = [0]
    payees: dict[str, int] = {}
    codes: list[int] = []
    weights: list[int] = []
    for _, _, _, lines in outputs:
        for p, w in lines:
            codes.append(payees.setdefault(p, len(payees)))
            weights.append(w)
        offsets.append(len(codes))
    return UsageBatch(
        output_ids=[o[0] for o in outputs],
        model_ids=[model_id] * len(outputs),
        revenue_microunits=[o[1] for o in outputs],
        currencies=[currency] * len(outputs),
        occurred_at=[o[2] for o in outputs],
        offsets=np.asarray(offsets, dtype=np.int64),
        payees=list(payees),
        payee_codes=np.asarray(codes, dtype=np.int64),
        weights=np.asarray(weights, dtype=np.int64),
    )


def people(store: Store, *handles: str, verified: bool = True, iban: str | None = None) -> list[int]:
    """Register people (verified unless told otherwise); returns their ids in order."""
    with store.write() as conn:
        ids = [add_person(conn, h, iban=iban) for h in handles]
        if verified:
            for pid in ids:
                verify_person(conn, pid, verified_by="test-guild")
    return ids


def guild_member(conn: Connection, person: int, issuer: str) -> None:
    """Attach a valid credential from ``issuer`` to ``person``: a member of that guild (the proof is not kept)."""
    conn.execute(
        credentials.insert().values(
            person_id=person,
            credential_id=f"urn:uuid:{issuer}:{person}",
            issuer=issuer,
            subject=f"did:example:{person}",
            valid_until=format_time(dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),
            credential_json="{}",
            added_at=format_time(dt.datetime(2025, 1, 1, tzinfo=dt.UTC)),
        )
    )


def row_counts(store: Store) -> dict[str, int]:
    """Rows in every table of the schema: equal before and after means nothing was written. The usage intake's
    rows are counted where they are kept (on SQLite, the intake's own file: ``ledger.intake.intake_store``)."""
    from endcredits.ledger.intake import intake_store
    from endcredits.store.schema import usage_intake

    with store.read() as conn:
        counts = {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in metadata.sorted_tables
        }
    with intake_store(store).read() as conn:
        counts[usage_intake.name] = int(conn.execute(select(func.count()).select_from(usage_intake)).scalar_one())
    return counts


def balances(store: Store, **filters: str) -> dict[str, int]:
    with store.read() as conn:
        return account_balances(conn, **filters)


def derived_by_key(store: Store) -> dict[str, int]:
    """Balances re-added from the legs, keyed like ``balances``."""
    with store.read() as conn:
        return derived_balances(conn)


def evidence_files(store: Store) -> list[Path]:
    """Every file under the evidence directory (Parquet or partial), sorted."""
    root = store.data_dir / "evidence"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def on_time(month: int, day: int = 1, year: int = 2026) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}T12:00:00Z"


def register_model(store: Store, model_id: str = "m") -> None:
    from endcredits.manifest.records import add_model

    with store.write() as conn:
        add_model(conn, model_id, ["commercial"], "test model")


class World:
    """A small registry with every kind of payee, and a manifest for model ``m`` (consent: opt-out).

    - ``alice``: a verified person with an IBAN, composer and rights holder of ``song``;
    - ``bob``: a credited name nobody has claimed, performer on ``song``;
    - ``dan``: a person not yet verified, performer on ``film``;
    - ``orphan``: a work nobody is credited on.
    """

    def __init__(self, store: Store) -> None:
        import datetime as dt

        from endcredits.manifest.build import build_manifest
        from endcredits.payouts.iban import make_test_iban
        from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_works, name_ids

        self.store = store
        with store.write() as conn:
            self.alice = add_person(conn, "alice", iban=make_test_iban("DE", 1))
            verify_person(conn, self.alice, verified_by="test-guild")
            self.dan = add_person(conn, "dan", iban=make_test_iban("FR", 2))
            self.bob = name_ids(conn, ["Bob Credited"])["Bob Credited"]
            self.song, self.film, self.orphan = add_works(
                conn,
                [
                    WorkIn(b"song bytes", "A Song", "audio", rights_holder=f"person:{self.alice}"),
                    WorkIn(b"film bytes", "A Film", "video"),
                    WorkIn(b"orphan bytes", "Nobody's", "text"),
                ],
            )
            add_credits(
                conn,
                [
                    CreditIn(self.song, f"person:{self.alice}", "endcredits:composer", 2),
                    CreditIn(self.song, f"name:{self.bob}", "endcredits:performer", 1),
                    CreditIn(self.film, f"person:{self.dan}", "endcredits:performer", 1),
                ],
            )
        self.manifest = build_manifest(
            store, model_id="m", uses=["commercial"], as_of=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), default="opt-out"
        )

    def usage(self, outputs: Sequence[tuple[str, int, str, dict[str, float]]], ag: Agreement) -> UsageBatch:
        """Usage from ``(output id, revenue, occurred at, {work id: score})`` through the manifest."""
        from endcredits.royalties.usage import OutputIn, build_usage

        with self.store.read() as conn:
            return build_usage(
                conn,
                [OutputIn(o, "m", r, ag.currency, t) for o, r, t, _ in outputs],
                {o: s for o, _, _, s in outputs},
                ag,
                self.manifest,
            )


def ledger_snapshot(store: Store) -> dict[str, Any]:
    """Everything the ledger holds that a replay must reproduce, without wall-clock times or row order:
    balances and carries as readers see them (rows and pending segments), every transfer's legs."""
    from endcredits.ledger.evidence_lines import LineSource

    with store.read() as conn:
        lines = LineSource(store, conn)
        return {
            "balances": sorted(account_balances(conn).items()),
            "transfers": sorted(
                (r.event_id, r.code, r.content_sha256, tuple(sorted(load_transfer(conn, r.event_id).legs.items())))
                for r in conn.execute(select(transfers))
            ),
            "carries": sorted(
                (payee, currency, subunits) for (payee, currency), subunits in carried_fractions(conn).items()
            ),
            "outputs": sorted((r.id, r.batch_event_id) for r in conn.execute(select(outputs))),
            "accruals": sorted(
                (
                    r.event_id,
                    r.content_sha256,
                    int(r.pool_microunits),
                    r.evidence_path,
                    evidence_lines_sha256(store.data_dir / r.evidence_path, lines, r),
                )
                for r in conn.execute(select(accrual_batches))
            ),
        }


def evidence_lines_sha256(path: Path, lines: Any = None, group: Any = None) -> str:
    """The evidence file's lines, hashed by value. Not the file's bytes: pyarrow may write a few different
    bytes for the same table in another process (seen: 3 bytes of an lz4 dictionary page), and ``verify``
    checks each file against the hash recorded for it. A file kept per payee hashes its lines re-derived
    (through ``lines``, a ``LineSource``, for accrual group row ``group``)."""
    table = read_evidence(path)
    if lines is not None:
        table = lines.lines(group, table)
    return hashlib.sha256(json.dumps(table.to_pydict(), sort_keys=True).encode()).hexdigest()


CHECKPOINT_SHA256 = "c" * 64
"""The checkpoint the test runs say they scored with (a manifest bound to none takes it)."""


def record_scores_run(
    store: Store,
    manifest: Any,
    scores: dict[str, dict[str, float]],
    *,
    per: str = "work",
    checkpoint_sha256: str = CHECKPOINT_SHA256,
    payee_agreement: str | None = None,
    method: str = "trak",
) -> Any:
    """Record an attribution run of ``scores`` ({output: {work or payee: score}}, every output over the
    same keys) on ``manifest``, as ``attribute`` would; returns the stored ``AttributionRun``."""
    from endcredits.attribution.records import RunScores, new_run, record_run
    from endcredits.attribution.settings import AttributionSettings

    outputs = list(scores)
    keys = sorted({k for s in scores.values() for k in s})
    matrix = np.array([[scores[o].get(k, 0.0) for k in keys] for o in outputs], dtype=np.float64)
    run_scores = RunScores.of_matrix(per, outputs, keys, matrix)  # type: ignore[arg-type]
    run = new_run(
        manifest,
        run_scores,
        checkpoint_sha256s=[checkpoint_sha256],
        method=method,
        weaker=False,
        settings=AttributionSettings(k=64),
        payee_agreement=payee_agreement,
    )
    return record_run(store, run, run_scores)[0]


def bound_char_lm(world: World) -> tuple:  # type: ignore[type-arg]
    """A tiny character LM trained on the World's works (as text), saved where the data directory keeps the
    model's checkpoint and bound to the World's manifest: (model, manifest)."""
    from endcredits.attribution.charlm import save_lm, train_char_lm
    from endcredits.attribution.pipeline import bound_checkpoint, checkpoint_path
    from endcredits.manifest.records import set_manifest_checkpoint
    from endcredits.store.blobs import put_blob

    store = world.store
    texts = ["song bytes", "film bytes", "orphan bytes"]
    for body in texts:
        put_blob(store.data_dir, body.encode())
    path = checkpoint_path(store, "m")
    path.parent.mkdir(parents=True, exist_ok=True)
    trained = train_char_lm(texts, seed=0, steps_max=2, time_s_max=30.0, batch_size=2, window=16)
    save_lm(trained, path)
    with store.write() as conn:
        set_manifest_checkpoint(conn, world.manifest.id, trained.checksum())
    return bound_checkpoint(store, world.manifest.id)


def names_world(store: Store, n: int, *, names_per_person: int = 1) -> list[str]:
    """``n`` registered names (``name:ID``), model ``m``, and four persons (one unverified) who each claim
    ``names_per_person`` names from names 0, 3, 6 and 9: money goes to payable and escrow accounts both."""
    with store.write() as conn:
        ids = name_ids(conn, [f"leg name {i:04d}" for i in range(n)])
        add_model(conn, "m", ["commercial"], "test model")
        for i in range(0, 12, 3):
            pid = add_person(conn, f"leg person {i}")
            if i:
                verify_person(conn, pid, verified_by="test")
            for j in range(i, i + names_per_person):
                claim_name(conn, ids[f"leg name {j:04d}"], pid)
    return [f"name:{ids[f'leg name {i:04d}']}" for i in range(n)]


def names_usage(payees: list[str], codes: np.ndarray, batch: int, rng: np.random.Generator | None = None) -> UsageBatch:
    """Outputs of four lines each over ``payees`` (lines' payee ``codes``), model ``m``, random revenue and
    weights (from ``rng``, else seeded by ``batch``)."""
    n_outputs = len(codes) // 4
    rng = rng if rng is not None else np.random.default_rng(batch)
    return UsageBatch(
        output_ids=[f"b{batch}-o{i}" for i in range(n_outputs)],
        model_ids=["m"] * n_outputs,
        revenue_microunits=rng.integers(1, 10**9, size=n_outputs).tolist(),
        currencies=["EUR"] * n_outputs,
        occurred_at=["2026-11-21T12:00:00Z"] * n_outputs,
        offsets=np.arange(0, len(codes) + 1, 4, dtype=np.int64),
        payees=payees,
        payee_codes=codes,
        weights=rng.integers(1, 1000, size=len(codes), dtype=np.int64),
        roles=["endcredits:attributed"],
        role_codes=np.zeros(len(codes), dtype=np.int64),
    )


def ledger_state(s: Store) -> tuple[object, ...]:
    """What two stores that accrued the same batches must hold alike: each transfer with its content and
    segment hashes, every balance and every carry."""
    with s.read() as conn:
        rows = conn.execute(
            text(
                "SELECT t.event_id, t.content_sha256, g.sha256 FROM transfers t JOIN ledger_segments g "
                "ON g.transfer_id = t.id ORDER BY t.id"
            )
        ).all()
        return rows, account_balances(conn), carried_fractions(conn)
