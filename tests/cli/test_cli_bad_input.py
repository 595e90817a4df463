"""Bad input through the CLI: one clear line, exit status 1, and nothing changed — on both backends."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.store.engine import open_store
from endcredits.store.schema import metadata

AGREEMENT = """\
id = "t"
version = 1
currency = "EUR"
pool_rate = "0.5"
rights_holder_share = "0.25"
lineage_pass_through = "0.2"
payout_threshold = "1.00"
escrow_period_days = 365
[role_weights]
"endcredits:composer" = 3
"endcredits:transcriber" = 1
"""


class Cli:
    def __init__(self, data: Path, db: str | None) -> None:
        self.base = ["--data", str(data)] + (["--db", db] if db else [])
        self.data = data
        self.db = db
        self.runner = CliRunner()

    def __call__(self, *args: str) -> tuple[int, str, str]:
        result = self.runner.invoke(app, [*self.base, *args])
        return result.exit_code, result.stdout, result.stderr

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert code == 0, f"{args} failed: {err or out}"
        return out

    def snapshot(self) -> dict[str, int]:
        """Row counts of every table plus the evidence files: what "nothing changed" compares."""
        store = open_store(self.data, self.db)
        try:
            with store.read() as conn:
                counts = {
                    t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                    for t in metadata.sorted_tables
                }
        finally:
            store.dispose()
        counts["evidence_files"] = (
            len(list((self.data / "evidence").rglob("*.parquet"))) if (self.data / "evidence").exists() else 0
        )
        return counts


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def cli(tmp_path: Path, db_url: str | None) -> Cli:
    c = Cli(tmp_path / "data", db_url)
    c.ok("init")
    (tmp_path / "agreement.toml").write_text(AGREEMENT)
    c.ok("agreement", "load", str(tmp_path / "agreement.toml"))
    (tmp_path / "tune.abc").write_text("X:1\nT:A tune\nK:D\nABcd|\n")
    work = c.ok("works", "add", str(tmp_path / "tune.abc"), "--title", "A tune", "--kind", "abc-tune", "--json")
    c.work_id = work.split('"work_id": "')[1].split('"')[0]  # type: ignore[attr-defined]
    c.ok("credits", "add", c.work_id, "--name", "Ann Composer", "--role", "endcredits:composer")  # type: ignore[attr-defined]
    c.ok("manifest", "build", "--model", "m1", "--use", "commercial", "--default", "opt-out")
    return c


def _usage(
    tmp: Path, cli: Cli, *, revenue: str = "1.00", currency: str = "EUR", score: str = "1.0", output_id: str = "o1"
) -> tuple[Path, Path]:
    outputs = _write_csv(
        tmp / "outputs.csv",
        ["output_id", "model_id", "revenue", "currency", "occurred_at"],
        [[output_id, "m1", revenue, currency, "2026-11-02T10:00:00Z"]],
    )
    attributions = _write_csv(
        tmp / "attributions.csv", ["output_id", "work_id", "score"], [[output_id, cli.work_id, score]]
    )  # type: ignore[attr-defined]
    return outputs, attributions


def _accrue(cli: Cli, outputs: Path, attributions: Path, batch: str = "b1") -> tuple[int, str, str]:
    return cli(
        "accrue",
        "--outputs",
        str(outputs),
        "--attributions",
        str(attributions),
        "--external",
        "the operator's own scores",
        "--agreement",
        "t",
        "--batch-id",
        batch,
    )


def _refused(cli: Cli, run: Callable[[], tuple[int, str, str]], fragment: str) -> None:
    before = cli.snapshot()
    code, out, err = run()
    assert code == 1, f"expected exit 1, got {code}: {out}{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line of error, got: {err!r}"
    assert fragment.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in out + err
    assert cli.snapshot() == before, "a refused command changed the store"


@pytest.mark.parametrize(
    "revenue,fragment",
    [
        ("1e5", "malformed amount"),
        ("1,000.00", "malformed amount"),
        ("0.123456789", "decimals"),
        ("NaN", "malformed amount"),
        ("", "empty"),
    ],
)
def test_malformed_amount(cli: Cli, tmp_path: Path, revenue: str, fragment: str) -> None:
    outputs, attributions = _usage(tmp_path, cli, revenue=revenue)
    _refused(cli, lambda: _accrue(cli, outputs, attributions), fragment)


def test_unknown_currency(cli: Cli, tmp_path: Path) -> None:
    outputs, attributions = _usage(tmp_path, cli, currency="EURO")
    _refused(cli, lambda: _accrue(cli, outputs, attributions), "unknown currency")


def test_negative_revenue(cli: Cli, tmp_path: Path) -> None:
    outputs, attributions = _usage(tmp_path, cli, revenue="-1.00")
    _refused(cli, lambda: _accrue(cli, outputs, attributions), "negative revenue")


def test_duplicate_event_id_with_other_content(cli: Cli, tmp_path: Path) -> None:
    outputs, attributions = _usage(tmp_path, cli)
    assert _accrue(cli, outputs, attributions)[0] == 0
    same = _accrue(cli, outputs, attributions)
    assert same[0] == 0 and "exists" in same[1]
    outputs2, attributions2 = _usage(tmp_path, cli, revenue="2.00", output_id="o2")
    _refused(cli, lambda: _accrue(cli, outputs2, attributions2), "already accrued with other content")


def test_same_output_in_another_batch_is_never_paid_twice(cli: Cli, tmp_path: Path) -> None:
    outputs, attributions = _usage(tmp_path, cli)
    assert _accrue(cli, outputs, attributions)[0] == 0
    _refused(cli, lambda: _accrue(cli, outputs, attributions, batch="b2"), "never paid twice")


def test_credits_naming_a_missing_work(cli: Cli) -> None:
    _refused(
        cli,
        lambda: cli("credits", "add", "ab" * 32, "--name", "Ann", "--role", "endcredits:composer"),
        "not registered",
    )


def test_weights_summing_to_zero(cli: Cli, tmp_path: Path) -> None:
    outputs, _ = _usage(tmp_path, cli, score="0")
    # A zero score is no influence; with nothing positive the manifest's works share the pool evenly,
    # so the batch goes through. A payee-level file whose weights are all zero has nobody to pay.
    payee_attr = _write_csv(tmp_path / "payees.csv", ["output_id", "payee", "score"], [["o1", "name:1", "0"]])
    _refused(cli, lambda: _accrue(cli, outputs, payee_attr), "no positive attribution")


def test_agreement_whose_shares_exceed_the_whole(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(AGREEMENT.replace("version = 1", "version = 2").replace('pool_rate = "0.5"', 'pool_rate = "1.5"'))
    _refused(cli, lambda: cli("agreement", "load", str(bad)), "exceeds the whole")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"output_floor"', "agreement licence_terms must be a list of names"),
        ('["training_fee"]', "agreement licence_terms names 'training_fee', which is not one of output_floor"),
        ('["output_floor", "output_floor"]', "agreement licence_terms names one application twice"),
    ],
)
def test_agreement_with_a_bad_licence_terms_key(cli: Cli, tmp_path: Path, value: str, message: str) -> None:
    bad = tmp_path / "bad.toml"
    body = AGREEMENT.replace("version = 1", "version = 2").replace(
        "[role_weights]", f"licence_terms = {value}\n[role_weights]"
    )
    assert body.count("licence_terms") == 1
    bad.write_text(body)
    _refused(cli, lambda: cli("agreement", "load", str(bad)), message)


def test_usage_file_with_missing_columns(cli: Cli, tmp_path: Path) -> None:
    _, attributions = _usage(tmp_path, cli)
    outputs = _write_csv(tmp_path / "short.csv", ["output_id", "model_id", "revenue"], [["o1", "m1", "1.00"]])
    _refused(cli, lambda: _accrue(cli, outputs, attributions), "missing columns currency, occurred_at")


def test_truncated_parquet_file(cli: Cli, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "outputs.parquet"
    pq.write_table(
        pa.table(
            {
                "output_id": ["o1"],
                "model_id": ["m1"],
                "revenue": ["1.00"],
                "currency": ["EUR"],
                "occurred_at": ["2026-11-02T10:00:00Z"],
            }
        ),
        path,
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _, attributions = _usage(tmp_path, cli)
    _refused(cli, lambda: _accrue(cli, path, attributions), "not a readable parquet file")


def test_a_work_outside_the_manifest_is_not_paid(cli: Cli, tmp_path: Path) -> None:
    outputs, _ = _usage(tmp_path, cli)
    attributions = _write_csv(tmp_path / "attr.csv", ["output_id", "work_id", "score"], [["o1", "cd" * 32, "1.0"]])
    _refused(cli, lambda: _accrue(cli, outputs, attributions), "not in manifest")


def test_dry_run_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    outputs, attributions = _usage(tmp_path, cli)
    before = cli.snapshot()
    out = cli.ok(
        "accrue",
        "--outputs",
        str(outputs),
        "--attributions",
        str(attributions),
        "--external",
        "the operator's own scores",
        "--agreement",
        "t",
        "--batch-id",
        "b1",
        "--dry-run",
    )
    assert "dry_run" in out
    assert cli.snapshot() == before


def test_a_database_file_that_is_not_ours(tmp_path: Path) -> None:
    data = tmp_path / "foreign"
    data.mkdir()
    (data / "endcredits.sqlite3").write_bytes(b"this is not a database at all" * 10)
    for command in (["init"], ["people", "list"]):
        result = CliRunner().invoke(app, ["--data", str(data), *command])
        assert result.exit_code == 1
        assert "not an endcredits database" in result.stderr
    assert (data / "endcredits.sqlite3").read_bytes() == b"this is not a database at all" * 10


def test_the_happy_path_conserves_and_verifies(cli: Cli, tmp_path: Path) -> None:
    outputs, attributions = _usage(tmp_path, cli, revenue="3.00")
    assert _accrue(cli, outputs, attributions)[0] == 0
    verified = cli.ok("verify")
    assert "verified" in verified and "1 accruals_external" in verified
    assert "external: b1/EUR/2026-11: external scores (the operator's own scores)" in verified
    escrow = cli.ok("escrow", "list", "--query", "ann", "--json")
    assert '"amount_microunits": 150000000' in escrow  # the whole pool, held for the unclaimed name


def test_unknown_attribution_method(cli: Cli, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.jsonl"
    outputs.write_text('{"output_id": "o1", "text": "X:1\\nK:D\\nabc|"}\n')
    _refused(
        cli,
        lambda: cli(
            "attribute",
            "--checkpoint",
            str(tmp_path / "none.pt"),
            "--outputs",
            str(outputs),
            "--out",
            str(tmp_path / "s.csv"),
            "--manifest",
            "m",
            "--method",
            "similarity",
        ),
        "--method must be one of trak, tracin",
    )
    assert not (tmp_path / "s.csv").exists()


def test_secret_key_rotate_reseals_and_refuses_bad_keys_changing_nothing(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from endcredits.payouts.iban import make_test_iban
    from endcredits.registry.private import KEY_ENV, KEY_FILE_ENV, new_key_text

    cli.ok("people", "add", "Ann", "--iban", make_test_iban("DE", 7), "--email", "ann@example.org")
    old_file = tmp_path / "old.key"
    old_file.write_text(os.environ[KEY_ENV])  # the key the tests run with (tests/conftest.py)
    new_file = tmp_path / "new.key"
    new_file.write_text(cli.ok("secret-key", "new"))
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv(KEY_FILE_ENV, str(new_file))
    (tmp_path / "junk.key").write_text("not a key")
    _refused(cli, lambda: cli("secret-key", "rotate"), "needs --old-key-file")
    _refused(cli, lambda: cli("secret-key", "rotate", "--old-key-file", str(tmp_path / "junk.key")), "not base64")
    _refused(cli, lambda: cli("secret-key", "rotate", "--old-key-file", str(tmp_path / "missing.key")), "cannot read")
    (tmp_path / "other.key").write_text(new_key_text())
    _refused(
        cli,
        lambda: cli("secret-key", "rotate", "--old-key-file", str(tmp_path / "other.key")),
        "sealed with another key",
    )
    _refused(cli, lambda: cli("secret-key", "spin"), "unknown action")
    assert "re-sealed 2 contact and payment details" in cli.ok("secret-key", "rotate", "--old-key-file", str(old_file))
    assert "re-sealed 0" in cli.ok("secret-key", "rotate", "--old-key-file", str(old_file))
    from endcredits.registry.private import private_of

    store = open_store(cli.data, cli.db)
    try:
        with store.read() as conn:  # opens with the new key, the one configured now
            assert [d.email for d in private_of(conn, [1]).values()] == ["ann@example.org"]
    finally:
        store.dispose()


def _record_run(cli: Cli, *, checkpoint: str = "c" * 64, output_id: str = "o1") -> tuple[str, str]:
    """A recorded attribution run of the fixture's manifest scoring ``output_id``; (run id, manifest id)."""
    from endcredits.manifest.records import latest_manifest_id, load_manifest
    from helpers_money import record_scores_run

    store = open_store(cli.data, cli.db)
    try:
        with store.read() as conn:
            manifest = load_manifest(conn, latest_manifest_id(conn, "m1"))
        run = record_scores_run(store, manifest, {output_id: {cli.work_id: 1.0}}, checkpoint_sha256=checkpoint)  # type: ignore[attr-defined]
    finally:
        store.dispose()
    return run.id, manifest.id


def _accrue_run(cli: Cli, outputs: Path, run_id: str, *more: str) -> tuple[int, str, str]:
    return cli("accrue", "--outputs", str(outputs), "--run", run_id, "--agreement", "t", "--batch-id", "b1", *more)


def test_scores_move_money_only_from_a_recorded_run_or_marked_external(cli: Cli, tmp_path: Path) -> None:
    outputs, attributions = _usage(tmp_path, cli)
    base = ["accrue", "--outputs", str(outputs), "--agreement", "t", "--batch-id", "b1"]
    _refused(cli, lambda: cli(*base, "--attributions", str(attributions)), "is not a recorded attribution run")
    _refused(cli, lambda: cli(*base), "give --run RUN_ID")
    _refused(cli, lambda: cli(*base, "--external", "mine"), "--external marks the scores of --attributions")
    run_id, _ = _record_run(cli)
    both = (*base, "--run", run_id, "--attributions", str(attributions), "--external", "mine")
    _refused(cli, lambda: cli(*both), "--run accrues the run's own scores")
    bad_reason = (*base, "--attributions", str(attributions), "--external", " padded")
    _refused(cli, lambda: cli(*bad_reason), "the reason for external scores must be")
    _refused(cli, lambda: _accrue_run(cli, outputs, "run-nothing"), "no attribution run run-nothing")


def test_a_run_that_does_not_fit_the_batch_is_refused(cli: Cli, tmp_path: Path) -> None:
    from endcredits.manifest.records import set_manifest_checkpoint

    run_id, manifest_id = _record_run(cli)
    other = _write_csv(
        tmp_path / "o2.csv",
        ["output_id", "model_id", "revenue", "currency", "occurred_at"],
        [["o2", "m1", "1.00", "EUR", "2026-11-02T10:00:00Z"]],
    )
    _refused(cli, lambda: _accrue_run(cli, other, run_id), f"attribution run {run_id} did not score output o2")
    cli.ok("manifest", "build", "--model", "m2", "--use", "commercial", "--default", "opt-out")
    m2 = _write_csv(
        tmp_path / "m2.csv",
        ["output_id", "model_id", "revenue", "currency", "occurred_at"],
        [["o1", "m2", "1.00", "EUR", "2026-11-02T10:00:00Z"]],
    )
    _refused(cli, lambda: _accrue_run(cli, m2, run_id), "scored model m1; output o1 is of model m2")
    outputs, _ = _usage(tmp_path, cli)
    m2_manifest = cli.ok("manifest", "list", "--json").split('"manifest_id": "')[1].split('"')[0]
    assert m2_manifest != manifest_id
    _refused(cli, lambda: _accrue_run(cli, outputs, run_id, "--manifest", m2_manifest), "scored against manifest")
    store = open_store(cli.data, cli.db)
    try:
        with store.write() as conn:
            set_manifest_checkpoint(conn, manifest_id, "b" * 64)  # bound since, to another checkpoint
    finally:
        store.dispose()
    _refused(cli, lambda: _accrue_run(cli, outputs, run_id), "is bound to checkpoint bbbbbbbbbbbbbbbb")


def test_a_run_whose_scores_file_was_altered_is_refused(cli: Cli, tmp_path: Path) -> None:
    run_id, _ = _record_run(cli)
    outputs, _ = _usage(tmp_path, cli)
    path = cli.data / "attribution-runs" / f"{run_id}.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(2, "score", pa.array([27.31])), path)  # another score for the one work
    _refused(cli, lambda: _accrue_run(cli, outputs, run_id), "does not hash to the SHA-256 the run recorded")
    code, out, _ = cli("verify")  # a run no accrual used is not checked; the accrued batches are
    assert code == 0 and "0 accruals_from_runs" in out
    path.unlink()
    _refused(cli, lambda: _accrue_run(cli, outputs, run_id), "is missing: restore it from backup")


def test_escrow_expiry_moves_once_publishes_per_fund_and_refuses_shortening(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs, attributions = _usage(tmp_path, cli, revenue="3.00")
    monkeypatch.setattr("endcredits.ledger.accrue.utc_now", lambda: "2024-01-10T09:00:00.000000Z")
    assert _accrue(cli, outputs, attributions)[0] == 0
    monkeypatch.undo()
    longer = AGREEMENT.replace("version = 1", "version = 2").replace(
        "escrow_period_days = 365", 'escrow_period_days = 400\nescrow_expiry_fund = "composers-fund"'
    )
    (tmp_path / "v2.toml").write_text(longer)
    cli.ok("agreement", "load", str(tmp_path / "v2.toml"))  # a running period may be lengthened
    (tmp_path / "v3.toml").write_text(longer.replace("version = 2", "version = 3").replace("= 400", "= 10"))
    _refused(cli, lambda: cli("agreement", "load", str(tmp_path / "v3.toml")), "would shorten escrow_period_days")
    _refused(cli, lambda: cli("escrow", "expire", "--as-of", "2999-01-01"), "is after today")
    _refused(cli, lambda: cli("escrow", "expire", "--as-of", "1 May"), "is not a date")
    assert '"moved": []' in cli.ok("escrow", "expire", "--as-of", "2025-02-12", "--json")  # a day early
    moved = cli.ok("escrow", "expire", "--as-of", "2025-02-13")
    assert "moved 1.50 EUR from 1 escrow holdings to funds" in moved
    before = cli.snapshot()
    assert "moved nothing from 0 escrow holdings" in cli.ok("escrow", "expire", "--as-of", "2025-02-13")
    assert cli.snapshot() == before
    cli.ok("escrow", "published", "--fund", "composers-fund", "--csv", str(tmp_path / "fund.csv"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "fund.csv").read_text())))
    assert [(r["name"], r["amount_microunits"], r["status"]) for r in rows] == [("Ann Composer", "150000000", "fund")]
    assert "conserved" in cli.ok("ledger", "balances") and "verified" in cli.ok("verify")
