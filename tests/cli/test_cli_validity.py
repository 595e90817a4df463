"""`endcredits attribution validate`: the figure in words, recorded with the model and shown by `attribution
validity` and `manifest show`; bad input is one line, exit status 1, and nothing recorded, on both backends."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.store.engine import Store, init_store
from helpers_money import row_counts

ATTRIBUTION_TESTS = Path(__file__).resolve().parents[1] / "attribution"
SETTINGS = ["--k", "32", "--projection", "gaussian", "--length-chars", "48", "--chunk-size", "8", "--lambda", "1"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread, above all on a shared machine; restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The operator's training module of the attribution tests, importable as ``validity_tasks``."""
    monkeypatch.syspath_prepend(str(ATTRIBUTION_TESTS))
    import validity_tasks

    yield validity_tasks


def _world(
    store: Store, db_url: str | None, tmp_path: Path, tasks: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], Path]:
    """The base arguments (data, db, and the store's manifest, checkpoint and outputs) and the outputs file."""
    monkeypatch.setenv(tasks.DATA_ENV, str(store.data_dir))
    manifest = tasks.register(store, tasks.corpus(8))
    checkpoint = tasks.trained_on(store, manifest, tmp_path / "main")
    outputs = tmp_path / "outputs.jsonl"
    (tmp_path / "o3.txt").write_text(tasks.corpus(8)[5][:30])
    lines = [{"output_id": "o1", "text": tasks.corpus(8)[0][:30]}, {"output_id": "o2", "path": "o3.txt"}]
    outputs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    where = ["--data", str(store.data_dir)] + (["--db", db_url] if db_url else [])
    validate = ["attribution", "validate", "--manifest", manifest.id, "--checkpoint", str(checkpoint)]
    return [*where, *validate, "--outputs", str(outputs), *SETTINGS], outputs


def _invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


def test_validate_prints_records_and_shows_the_figure(
    tmp_path: Path, tasks: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = init_store(tmp_path / "data", None)
    try:
        args, _ = _world(store, None, tmp_path, tasks, monkeypatch)
        code, out, err = _invoke([*args, "--train", "validity_tasks:train", "--subsets", "4", "--seeds", "2"])
        assert code == 0, err
        assert "against the mean of 2 retrainings per subset (noise ceiling" in out and "4 subsets, 2 outputs" in out
        assert "recorded as validity 1 of model m" in out
        where = args[:2]
        code, out, err = _invoke([*where, "attribution", "validity", "--model", "m", "--json"])
        shown = json.loads(out)["validity"]
        assert code == 0 and (shown["subsets"], shown["seeds"], shown["outputs"]) == (4, 2, 2)
        assert shown["train_function"] == "validity_tasks:train" and shown["summary"].startswith("LDS ")
        manifest_id = args[args.index("--manifest") + 1]
        code, out, _ = _invoke([*where, "manifest", "show", manifest_id])
        assert code == 0 and f"validity of model m: {shown['summary']}" in out
        code, out, _ = _invoke([*where, "attribution", "validity", "--model", "other"])
        assert code == 0 and "model other: validity not measured" in out
    finally:
        store.dispose()


def test_bad_validations_are_one_line_and_record_nothing(
    store: Store, db_url: str | None, tmp_path: Path, tasks: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, outputs = _world(store, db_url, tmp_path, tasks, monkeypatch)
    (tmp_path / "bad.jsonl").write_text('{"output_id": "o1", "text": "a", "path": "b"}\n')
    train = ["--train", "validity_tasks:train"]
    cases = {
        "no_such_operator_module:train": "cannot import no_such_operator_module for training function",
        "validity_tasks:fails": "the training function failed on subset 0, seed 0: RuntimeError: out of GPUs",
        "validity_tasks:no_model": "the checkpoint trained for subset 0, seed 0 does not load as charlm",
        "validity_tasks:no_path": "the training function returned int for subset 0, seed 0",
    }
    runs = [([*args, "--train", name, "--subsets", "2", "--seeds", "1"], message) for name, message in cases.items()]
    runs += [
        ([*args, *train, "--subsets", "1"], r"subsets must be in \[2, 1000\], not 1"),
        ([*args, *train, "--seeds", "0"], r"seeds must be in \[1, 16\], not 0"),
        ([*args, *train, "--k", "1"], r"--k 1 must be in"),
        ([*args, *train, "--outputs", str(tmp_path / "bad.jsonl")], "must give exactly one of text"),
        ([*args, *train, "--model-kind", "hf-causal-lm"], "error"),
    ]
    before = row_counts(store)
    for argv, message in runs:
        code, out, err = _invoke(argv)
        assert code == 1, (argv, out, err)
        said = [line for line in err.splitlines() if line.strip()]  # a progress bar may leave a blank line
        assert len(said) == 1 and said[0].startswith("error ["), err
        assert re.search(message, err), (message, err)
    assert row_counts(store) == before
    sys.modules.pop("no_such_operator_module", None)
