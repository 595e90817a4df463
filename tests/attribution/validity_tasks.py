"""An operator's training function for the validity tests: the demo's character model, tiny and brief.

``train(work_ids, seed)`` reads the works' texts from the data directory that
``ENDCREDITS_TEST_VALIDITY_DATA`` names (an operator reads their own corpus), trains a small ``CharLM``
for a few steps and returns where it saved it. The other functions fail in the ways the tests check."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

from endcredits.attribution.charlm import build_vocab, save_lm, train_char_lm
from endcredits.attribution.models import load_model
from endcredits.manifest.build import build_manifest
from endcredits.manifest.records import ManifestRecord, add_model, record_training_run
from endcredits.registry.records import WorkIn, add_works
from endcredits.store.blobs import get_blob, put_blob
from endcredits.store.engine import Store

DATA_ENV = "ENDCREDITS_TEST_VALIDITY_DATA"
ALPHABET = "abcdefghijklmnopqrstuvwxyz .,\n"
STEPS = 30


def corpus(n: int) -> list[str]:
    """``n`` texts, each a phrase of its own repeated: training on one raises the likelihood of its phrase."""
    words = ["do re mi", "fa so la", "ti do ti", "la la fa", "mi mi re", "so fa mi", "re do re", "ti la so"]
    return [" ".join([words[i % len(words)] + f" {chr(97 + i)}"] * 6) for i in range(n)]


def register(store: Store, texts: list[str]) -> ManifestRecord:
    """Model ``m`` and the texts as works (stored), and its manifest (consent: opt-out)."""
    with store.write() as conn:
        add_model(conn, "m", ["commercial"], "a tiny character model")
        add_works(conn, [WorkIn(t.encode(), f"work {i}", "text") for i, t in enumerate(texts)])
    for text in texts:
        put_blob(store.data_dir, text.encode())
    as_of = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return build_manifest(store, model_id="m", uses=["commercial"], as_of=as_of, default="opt-out")


def trained_on(store: Store, manifest: ManifestRecord, out_dir: Path) -> Path:
    """The model of the manifest (every included work, seed 0), recorded as the manifest's training run."""
    texts = [get_blob(store.data_dir, w).decode("utf-8") for w in manifest.included]
    path = train_texts(texts, 0, out_dir)
    at = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    with store.write() as conn:
        record_training_run(
            conn,
            run_id="train-m",
            manifest_id=manifest.id,
            checkpoint_sha256s=[load_model(path, "charlm").checksum()],
            started_at=at,
            finished_at=at,
        )
    return path


def train_texts(texts: list[str], seed: int, out_dir: Path) -> Path:
    lm = train_char_lm(
        texts, seed=seed, steps_max=STEPS, time_s_max=60.0, window=16, batch_size=8, vocab=build_vocab([ALPHABET])
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{seed}-{hashlib.sha256(''.join(texts).encode()).hexdigest()[:12]}.pt"
    save_lm(lm, path)
    return path


def train(work_ids: list[str], seed: int) -> Path:
    data = Path(os.environ[DATA_ENV])
    return train_texts([get_blob(data, w).decode("utf-8") for w in work_ids], seed, data.parent / "retrained")


def fails(work_ids: list[str], seed: int) -> Path:
    raise RuntimeError(f"out of GPUs for {len(work_ids)} works\nsecond line")


def no_model(work_ids: list[str], seed: int) -> Path:
    path = Path(os.environ[DATA_ENV]).parent / "not-a-model.pt"
    path.write_bytes(b"not a checkpoint")
    return path


def no_path(work_ids: list[str], seed: int) -> int:
    return 42
