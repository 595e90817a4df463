"""Every command of the CLI, in the order an operator would use them, on both backends."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from endcredits.attribution.charlm import save_lm, train_char_lm
from endcredits.cli import app
from endcredits.interop.abc import iter_tunes
from endcredits.manifest.records import load_manifest
from endcredits.payouts.iban import make_test_iban
from endcredits.payouts.pain002 import write_pain002
from endcredits.royalties import parse_agreement
from endcredits.royalties.records import load_agreement_body
from endcredits.royalties.usage import credit_matrix
from endcredits.store.engine import open_store

AGREEMENT = """\
id = "flow"
version = 1
currency = "EUR"
pool_rate = "0.5"
rights_holder_share = "0.25"
lineage_pass_through = "0.2"
payout_threshold = "0.10"
escrow_period_days = 365
[role_weights]
"endcredits:composer" = 3
"endcredits:transcriber" = 1
"endcredits:collector" = 1
"""


@pytest.mark.slow
def test_every_command_in_an_operators_order(tmp_path: Path, db_url: str | None) -> None:
    runner = CliRunner()
    base = ["--data", str(tmp_path / "data")] + (["--db", db_url] if db_url else [])

    def run(*args: str) -> str:
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 0, f"{args}: {result.stderr or result.stdout}"
        return result.stdout

    def run_json(*args: str) -> dict:  # type: ignore[type-arg]
        return json.loads(run(*args, "--json"))

    run("init")
    (tmp_path / "agreement.toml").write_text(AGREEMENT)
    run("agreement", "load", str(tmp_path / "agreement.toml"))
    assert 'id = "flow"' in run("agreement", "show", "flow")

    # Registry: the first tunes of the corpus, a person who claims the most credited name, a new work.
    run("works", "import-abc", "--limit", "24")
    assert run_json("works", "list", "--limit", "5")["total"] == 24
    pid = run_json("people", "add", "Jack Campin", "--iban", make_test_iban("DE", 42), "--bic", "TESTDEFF")["person_id"]
    (tmp_path / "sketch.abc").write_text("X:1\nT:A new sketch\nK:G\nGABc|d2d2|\n")
    sketch = run_json("works", "add", str(tmp_path / "sketch.abc"), "--title", "A new sketch", "--kind", "abc-tune")[
        "work_id"
    ]
    run("credits", "add", sketch, "--payee", f"person:{pid}", "--role", "endcredits:composer")
    assert run_json("credits", "list", sketch)["credits"][0]["payee"] == f"person:{pid}"
    listed = run_json("works", "list", "--limit", "30")["works"]
    assert len(listed) == 25 and listed[0]["id"] == sketch  # most recent first, in registration order
    first = listed[-1]["id"]
    run("credits", "lineage", sketch, first, "--share", "0.2")

    # Consent: the person allows generative training for a bounded time.
    run(
        "consent",
        "grant",
        "--person",
        str(pid),
        "--use",
        "ai_generative_training",
        "--decision",
        "allowed",
        "--from",
        "2026-01-01",
        "--until",
        "2030-01-01",
        "--source",
        "signed form",
    )
    assert run_json("consent", "list", "--person", str(pid))["grants"][0]["until"].startswith("2030-01-01")

    # Manifest, proofs, and a check that needs no database.
    m = run_json(
        "manifest",
        "build",
        "--model",
        "tiny-lm",
        "--use",
        "ai_generative_training",
        "--default",
        "opt-out",
        "--as-of",
        "2026-06-01T00:00:00Z",
    )
    assert m["included"] == 25 and run_json("manifest", "list")["manifests"][0]["manifest_id"] == m["manifest_id"]
    assert run_json("manifest", "show", m["manifest_id"])["merkle_root"] == m["merkle_root"]
    proof = tmp_path / "proof.json"
    proof.write_text(run("manifest", "prove", m["manifest_id"], first))
    assert "is included in" in runner.invoke(app, ["manifest", "check", str(proof), "--works", "25"]).stdout
    absent = tmp_path / "absent.json"
    absent.write_text(run("manifest", "prove", m["manifest_id"], "0" * 64))
    assert "is excluded from" in runner.invoke(app, ["manifest", "check", str(absent)]).stdout

    # Attribute two outputs of a small model trained on the manifest's tunes, then accrue them.
    texts = [t.text for t in iter_tunes(limit=24)]
    checkpoint = tmp_path / "tiny.pt"
    save_lm(train_char_lm(texts, seed=0, steps_max=3, time_s_max=30.0, batch_size=4, window=32), checkpoint)
    outputs_jsonl = tmp_path / "outputs.jsonl"
    outputs_jsonl.write_text(
        "".join(json.dumps({"output_id": f"out-{i}", "text": texts[i][:200]}) + "\n" for i in (0, 5))
    )
    scores = tmp_path / "scores.csv"
    # The model is attributed only once a training run of the manifest names its checkpoint.
    assert (
        "from no recorded training run"
        in runner.invoke(
            app, [*base, "featurize", "--checkpoint", str(checkpoint), "--manifest", m["manifest_id"], "--k", "32"]
        ).stderr
    )
    assert "1 checkpoints" in run(
        "manifest",
        "run",
        "record",
        "--run",
        "tiny-run",
        "--manifest",
        m["manifest_id"],
        "--started",
        "2026-06-02T00:00:00Z",
        "--finished",
        "2026-06-02T01:00:00Z",
        "--checkpoint",
        str(checkpoint),
    )
    assert "features of 25 works" in run(
        "featurize", "--checkpoint", str(checkpoint), "--manifest", m["manifest_id"], "--k", "32"
    )
    explain = tmp_path / "explain.jsonl"
    out = run(
        "attribute",
        "--checkpoint",
        str(checkpoint),
        "--outputs",
        str(outputs_jsonl),
        "--out",
        str(scores),
        "--manifest",
        m["manifest_id"],
        "--k",
        "32",
        "--explain",
        str(explain),
        "--top-k",
        "3",
    )
    assert "trak scores" in out
    noted = json.loads((tmp_path / "scores.run.json").read_text())
    run_id = noted["attribution_run_id"]
    assert f"attribution run {run_id} (accrue it with --run {run_id})" in out
    assert (noted["manifest_id"], noted["per"], noted["out"]) == (m["manifest_id"], "work", str(scores))
    with scores.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 25
    explained = [json.loads(line) for line in explain.read_text().splitlines()]
    assert [e["output_id"] for e in explained] == ["out-0", "out-5"]
    assert all(e["method"] == "trak" and e["weaker"] is False and len(e["top_works"]) == 3 for e in explained)
    best = max((r for r in rows if r["output_id"] == "out-0"), key=lambda r: float(r["score"]))
    assert explained[0]["top_works"][0]["work_id"] == best["work_id"]
    # Per payee: every payee's score is the credit-weighted sum of its works' scores (Psi = W^T G).
    payee_csv = tmp_path / "payees.csv"
    assert "payee scores" in run(
        "attribute",
        "--checkpoint",
        str(checkpoint),
        "--outputs",
        str(outputs_jsonl),
        "--out",
        str(payee_csv),
        "--manifest",
        m["manifest_id"],
        "--k",
        "32",
        "--per-payee",
        "flow",
    )
    with payee_csv.open() as f:
        payee_rows = list(csv.DictReader(f))
    store = open_store(tmp_path / "data", db_url)
    try:
        with store.read() as conn:
            included = load_manifest(conn, m["manifest_id"]).included
            payees, credits = credit_matrix(conn, included, parse_agreement(load_agreement_body(conn, "flow")))
    finally:
        store.dispose()
    work_order = {w: i for i, w in enumerate(included)}
    per_work = np.zeros((2, credits.works))
    for r in rows:
        per_work[0 if r["output_id"] == "out-0" else 1, work_order[r["work_id"]]] = float(r["score"])
    dense = np.zeros((credits.works, credits.payees))
    np.add.at(dense, (credits.work_index, credits.payee_index), credits.share)
    expected = per_work @ dense
    got = np.zeros_like(expected)
    for r in payee_rows:
        got[0 if r["output_id"] == "out-0" else 1, payees.index(r["payee"])] = float(r["score"])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max())
    again = run_json("featurize", "--checkpoint", str(checkpoint), "--manifest", m["manifest_id"], "--k", "32")
    assert (again["works"], again["settings"]["k"], again["settings"]["seed"]) == (25, 32, 0)  # reused
    tracin = tmp_path / "tracin.csv"
    traced = run_json(
        "attribute",
        "--checkpoint",
        str(checkpoint),
        "--outputs",
        str(outputs_jsonl),
        "--out",
        str(tracin),
        "--manifest",
        m["manifest_id"],
        "--k",
        "32",
        "--method",
        "tracin",
    )
    assert (traced["method"], traced["per"], traced["scores"], traced["out"]) == ("tracin", "work", 50, str(tracin))
    assert traced["attribution_run_id"] not in (run_id, None)  # another method: another run
    outputs_csv = tmp_path / "outputs.csv"
    outputs_csv.write_text(
        "output_id,model_id,revenue,currency,occurred_at\n"
        "out-0,tiny-lm,2.00,EUR,2026-11-02T10:00:00Z\nout-5,tiny-lm,0.75,EUR,2026-11-03T10:00:00Z\n"
    )
    dry = run_json(
        "accrue",
        "--outputs",
        str(outputs_csv),
        "--run",
        run_id,
        "--agreement",
        "flow",
        "--batch-id",
        "nov-1",
        "--dry-run",
    )
    assert dry["status"] == "dry_run"
    done = run_json(
        "accrue",
        "--outputs",
        str(outputs_csv),
        "--run",
        run_id,
        "--agreement",
        "flow",
        "--batch-id",
        "nov-1",
    )
    assert (done["attribution_run_id"], done["external_reason"]) == (run_id, None)
    assert done["pool_microunits"] == 137_500_000
    assert (
        done["pool_microunits"]
        == done["posted_microunits"] + done["escrow_microunits"] + done["suspense_delta_microunits"]
    )
    status = run_json("ledger", "status")  # the batch's legs and carries wait in one segment
    assert (status["pending_segments"], status["through_transfer_id"]) == (1, 0) and status["pending_legs"] > 2

    # The unverified person's money waits in escrow; claiming their name and verifying releases it.
    held = run_json("escrow", "list", "--query", "campin")["escrow"]
    assert held, "the corpus credits Jack Campin on these tunes"
    name_holder = held[0]["holder"]
    people_before = run_json("people", "list")["people"]
    assert people_before[0]["verified"] is False
    out = run("people", "verify", str(pid), "--issuer", "test guild")
    assert "verified by test guild" in out
    run("escrow", "claim", "--person", str(pid), "--name", name_holder.split(":")[1])
    assert run_json("escrow", "list", "--query", "campin")["escrow"] == []
    assert run_json("ledger", "status")["pending_segments"] == 0  # the claim folded the segment first
    folded = run_json("ledger", "fold")
    assert (folded["folded"], folded["segments"]) == (False, 0) and folded["through_transfer_id"] > 0

    # A statement with every line, then a payout, its bank answer, and verify.
    statement = json.loads(run("statements", "--person", str(pid), "--period", "2026-11", "--format", "json"))
    assert statement["reconciles"] is True and statement["lines"]
    run("statements", "--person", str(pid), "--period", "2026-11", "--format", "csv", "--out", str(tmp_path / "st.csv"))
    assert (tmp_path / "st.csv").read_text().startswith("output_id,")
    batch = run_json(
        "payouts",
        "create",
        "--batch-id",
        "PAY-1",
        "--agreement",
        "flow",
        "--debtor-name",
        "operator",
        "--debtor-iban",
        make_test_iban("DE", 1),
        "--debtor-bic",
        "TESTDEFF",
        "--execution-date",
        "2026-12-01",
    )
    assert batch["status"] == "created" and batch["items"] == 1 and Path(batch["pain001"]).exists()
    e2e = next(csv.DictReader(Path(batch["csv"]).read_text().splitlines()))["end_to_end_id"]
    report = tmp_path / "pain002.xml"
    report.write_bytes(
        write_pain002(
            {e2e: "ACSC"},
            original_message_id="PAY-1",
            message_id="BANK-1",
            created_at=dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
        )
    )
    assert "1 settled" in run("payouts", "status", "PAY-1", "--pain002", str(report))
    assert run_json("payouts", "list")["batches"][0]["status"] == "resolved"

    # Revoking consent reports every manifest that used the person's works, claimed name included.
    grant_id = run_json("consent", "list", "--person", str(pid))["grants"][0]["id"]
    revoked = run_json("consent", "revoke", str(grant_id), "--at", "2026-12-05T00:00:00Z")
    assert {a["work"] for a in revoked["affected"]} >= {sketch}
    assert len(revoked["affected"]) > 1  # the corpus tunes credited to the claimed name too
    assert run_json("verify")["ok"] is True
