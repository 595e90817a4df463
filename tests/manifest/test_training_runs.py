"""Training runs on both backends: a run records its model, the manifest and its Merkle root, and the
checkpoints' SHA-256s; it is idempotent by id, audited, and bad input changes nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from endcredits.cli.app import app
from endcredits.errors import ConflictError, ManifestError, NotFoundError, ValidationError
from endcredits.manifest.build import build_manifest
from endcredits.manifest.merkle import merkle_root
from endcredits.manifest.records import ManifestRecord, record_training_run, training_runs_list
from endcredits.registry.records import WorkIn, add_works
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store
from endcredits.store.schema import audit_log, training_runs

UTC = dt.UTC
START = dt.datetime(2026, 3, 1, 9, tzinfo=UTC)
END = dt.datetime(2026, 3, 1, 17, tzinfo=UTC)
CKPT = ["0" * 63 + "1", "ab" * 32]


@pytest.fixture
def manifest(store: Store) -> ManifestRecord:
    with store.write() as conn:
        add_works(conn, [WorkIn(t.encode(), t, "text") for t in ("one", "two", "three")])
    return build_manifest(store, model_id="lm", uses=["ai_training"], as_of=START, default="opt-out")


def _counts(store: Store) -> tuple[int, int]:
    with store.read() as conn:
        return (
            int(conn.execute(select(func.count()).select_from(training_runs)).scalar_one()),
            int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one()),
        )


def test_a_run_records_the_model_the_root_and_the_checkpoints(store: Store, manifest: ManifestRecord) -> None:
    with store.write() as conn:
        run = record_training_run(
            conn, run_id="lm-run-1", manifest_id=manifest.id, checkpoint_sha256s=CKPT, started_at=START, finished_at=END
        )
    assert (run.model_id, run.manifest_id, run.checkpoint_sha256s) == ("lm", manifest.id, tuple(CKPT))
    assert run.merkle_root == manifest.merkle_root == merkle_root(manifest.included)
    assert (run.started_at, run.finished_at) == ("2026-03-01T09:00:00.000000Z", "2026-03-01T17:00:00.000000Z")
    with store.read() as conn:
        assert training_runs_list(conn, model_id="lm") == [run]
        assert training_runs_list(conn, manifest_id="other") == []
        (entry,) = iter_audit(conn, kind="training_run.recorded")
    assert entry.subject == "lm-run-1"
    assert json.loads(entry.payload)["root"] == manifest.merkle_root
    assert json.loads(entry.payload)["checkpoints"] == CKPT


def test_the_same_run_twice_is_one_run_and_other_content_under_its_id_is_refused(
    store: Store, manifest: ManifestRecord
) -> None:
    args = {"run_id": "r", "manifest_id": manifest.id, "started_at": START, "finished_at": END}
    with store.write() as conn:
        first = record_training_run(conn, checkpoint_sha256s=CKPT, **args)  # type: ignore[arg-type]
    before = _counts(store)
    with store.write() as conn:
        assert record_training_run(conn, checkpoint_sha256s=CKPT, **args) == first  # type: ignore[arg-type]
    assert _counts(store) == before
    with (
        pytest.raises(ConflictError, match="training run r is already recorded with other content"),
        store.write() as conn,
    ):
        record_training_run(conn, checkpoint_sha256s=CKPT[:1], **args)  # type: ignore[arg-type]
    assert _counts(store) == before


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"checkpoint_sha256s": []}, ValidationError, "needs a list of at least one checkpoint SHA-256"),
        ({"checkpoint_sha256s": ["AB" * 32]}, ValidationError, "checkpoint 0 'ABAB.* must be 64 lowercase hex"),
        ({"checkpoint_sha256s": [CKPT[0], CKPT[0]]}, ValidationError, "lists a checkpoint SHA-256 twice"),
        ({"finished_at": START - dt.timedelta(seconds=1)}, ValidationError, "finished at .* before it started"),
        ({"manifest_id": "nope"}, NotFoundError, "no manifest nope"),
        ({"model_id": "other"}, ManifestError, "is for model lm, not other"),
        ({"run_id": "has space"}, ValidationError, "training run id 'has space' must be"),
    ],
)
def test_bad_runs_are_refused_and_nothing_changes(
    store: Store, manifest: ManifestRecord, change: dict[str, object], error: type[Exception], message: str
) -> None:
    args: dict[str, object] = {
        "run_id": "r",
        "manifest_id": manifest.id,
        "checkpoint_sha256s": CKPT,
        "started_at": START,
        "finished_at": END,
        **change,
    }
    before = _counts(store)
    with pytest.raises(error, match=message), store.write() as conn:
        record_training_run(conn, **args)  # type: ignore[arg-type]
    assert _counts(store) == before


def test_cli_records_a_run_from_checkpoint_files_and_lists_it(
    store: Store, manifest: ManifestRecord, tmp_path: Path, db_url: str | None
) -> None:
    from endcredits.attribution.charlm import load_lm, save_lm, train_char_lm

    ckpt = tmp_path / "model.pt"
    save_lm(train_char_lm(["a tune", "another"], seed=0, steps_max=1, time_s_max=30.0, batch_size=2, window=8), ckpt)
    where = ["--db", db_url] if db_url else ["--data", str(tmp_path / "data")]
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            *where,
            "manifest",
            "run",
            "record",
            "--run",
            "cli-run",
            "--manifest",
            manifest.id,
            "--checkpoint",
            str(ckpt),
            "--checkpoint-sha256",
            CKPT[1],
            "--started",
            "2026-03-01T09:00:00Z",
            "--finished",
            "2026-03-01T10:00:00Z",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    recorded = json.loads(out.stdout)
    # the model's checksum (what the attribution engine checks on loading it), not the file's bytes
    assert recorded["checkpoint_sha256s"] == [load_lm(ckpt).checksum(), CKPT[1]]
    assert recorded["checkpoint_sha256s"][0] != hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert recorded["merkle_root"] == manifest.merkle_root and recorded["model"] == "lm"
    listed = runner.invoke(app, [*where, "manifest", "run", "list", "--model", "lm", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["runs"] == [recorded]
    bad = runner.invoke(
        app,
        [
            *where,
            "manifest",
            "run",
            "record",
            "--run",
            "x",
            "--manifest",
            manifest.id,
            "--started",
            "2026-03-01",
            "--finished",
            "2026-03-02",
        ],
    )
    assert bad.exit_code == 1 and "needs a list of at least one checkpoint" in bad.stderr
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"weights" * 1000)
    refused = runner.invoke(
        app,
        [*where, "manifest", "run", "record", "--run", "y", "--manifest", manifest.id, "--checkpoint", str(junk)]
        + ["--started", "2026-03-01", "--finished", "2026-03-02"],
    )
    assert refused.exit_code == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
