"""The character language model: vocabulary, training, generation, the KV cache, saving."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from endcredits.attribution.charlm import (
    UNKNOWN_CHAR,
    UNKNOWN_ID,
    CharLM,
    CharLMConfig,
    TrainedLM,
    Vocab,
    build_vocab,
    generate,
    load_lm,
    save_lm,
    train_char_lm,
)
from endcredits.errors import ManifestError, NotFoundError, ValidationError
from endcredits.interop.abc import iter_tunes

STEPS = 120


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [t.text for t in iter_tunes(limit=48)]


@pytest.fixture(scope="module")
def lm(texts: list[str]) -> TrainedLM:
    return train_char_lm(texts, seed=3, steps_max=STEPS, time_s_max=600.0, window=32, batch_size=16)


def test_vocab_round_trip_and_unknown_characters() -> None:
    vocab = build_vocab(["X:1\nT:Tune\n", "K:G\nabc|"])
    assert vocab.chars == "".join(sorted(set("X:1\nT:Tune\nK:G\nabc|")))
    assert vocab.size == len(vocab.chars) + 1
    text = "T:abc|\n"
    assert vocab.decode(vocab.encode(text)) == text
    ids = vocab.encode("T:\u00e9")
    assert ids[-1] == UNKNOWN_ID and UNKNOWN_ID not in ids[:-1]
    assert vocab.decode(ids) == "T:" + UNKNOWN_CHAR
    with pytest.raises(ValidationError, match="repeat"):
        Vocab("aab")
    with pytest.raises(ValidationError, match="not in this vocabulary"):
        vocab.decode([vocab.size])


def test_training_learns_and_reports(lm: TrainedLM, texts: list[str]) -> None:
    assert lm.steps == STEPS
    uniform = math.log(lm.vocab.size)
    assert lm.final_loss < uniform - 1.0, (lm.final_loss, uniform)
    # Held-out tunes score better than chance too.
    held_out = [t.text for t in iter_tunes(limit=60)][48:]
    ids = torch.tensor(lm.vocab.encode("\n".join(held_out))[:2000])
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(lm.model(ids[:-1]), ids[1:]).item()
    assert loss < uniform - 1.0


def test_training_is_deterministic_when_the_step_bound_binds(texts: list[str]) -> None:
    seen: list[tuple[int, float]] = []
    a = train_char_lm(
        texts,
        seed=11,
        steps_max=12,
        time_s_max=600.0,
        window=32,
        batch_size=8,
        progress=lambda step, loss: seen.append((step, loss)),
    )
    b = train_char_lm(texts, seed=11, steps_max=12, time_s_max=600.0, window=32, batch_size=8)
    c = train_char_lm(texts, seed=12, steps_max=12, time_s_max=600.0, window=32, batch_size=8)
    assert a.checksum() == b.checksum() and a.final_loss == b.final_loss
    assert c.checksum() != a.checksum()
    assert [s for s, _ in seen] == list(range(1, 13))
    assert all(math.isfinite(loss) for _, loss in seen)


def test_a_fixed_vocabulary_gives_models_of_one_shape(texts: list[str]) -> None:
    whole = build_vocab(texts)
    part = texts[:5]
    assert build_vocab(part).chars != whole.chars
    a = train_char_lm(part, seed=11, steps_max=4, time_s_max=600.0, window=32, batch_size=8, vocab=whole)
    b = train_char_lm(texts[5:10], seed=12, steps_max=4, time_s_max=600.0, window=32, batch_size=8, vocab=whole)
    assert a.vocab == b.vocab == whole
    assert a.config == b.config and a.config.vocab_size == whole.size
    default = train_char_lm(part, seed=11, steps_max=4, time_s_max=600.0, window=32, batch_size=8)
    same = train_char_lm(part, seed=11, steps_max=4, time_s_max=600.0, window=32, batch_size=8, vocab=build_vocab(part))
    assert default.vocab.chars == build_vocab(part).chars and default.checksum() == same.checksum()


def test_checkpoints_are_kept_at_the_steps_asked_for(texts: list[str]) -> None:
    lm = train_char_lm(texts, seed=11, steps_max=6, time_s_max=600.0, window=32, batch_size=8, checkpoint_steps=(2, 6))
    plain = train_char_lm(texts, seed=11, steps_max=6, time_s_max=600.0, window=32, batch_size=8)
    assert sorted(lm.checkpoints) == [2, 6] and plain.checkpoints == {}
    assert lm.checksum() == plain.checksum()
    final = lm.model.state_dict()
    assert all(torch.equal(lm.checkpoints[6][name], final[name]) for name in final)
    assert not torch.equal(lm.checkpoints[2]["head.weight"], final["head.weight"])
    with pytest.raises(ValidationError, match="checkpoint_steps"):
        train_char_lm(texts, seed=0, steps_max=6, time_s_max=600.0, window=32, batch_size=8, checkpoint_steps=(7,))


def test_training_stops_at_the_time_bound(texts: list[str]) -> None:
    lm = train_char_lm(texts, seed=0, steps_max=1_000_000, time_s_max=0.2, window=32, batch_size=8)
    assert 1 <= lm.steps < 1_000_000


def test_training_rejects_bad_arguments(texts: list[str]) -> None:
    with pytest.raises(ValidationError, match="steps_max"):
        train_char_lm(texts, seed=0, steps_max=0, time_s_max=1.0)
    with pytest.raises(ValidationError, match="time_s_max"):
        train_char_lm(texts, seed=0, steps_max=1, time_s_max=0.0)
    with pytest.raises(ValidationError, match="at least window"):
        train_char_lm(["X:1\n"], seed=0, steps_max=1, time_s_max=1.0, window=32)


def test_cached_generation_path_matches_the_full_forward() -> None:
    """The KV cache (step) and the banded attention (forward on T > window) compute the same logits."""
    model = CharLM(CharLMConfig(vocab_size=30, window=8, d_model=32, n_heads=4, d_ff=64, n_layers=2))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        ids = torch.randint(0, 30, (3, 29), generator=generator)
        full = model(ids)
        caches: list[dict[str, torch.Tensor]] = [{} for _ in model.blocks]
        stepped = torch.stack([model.step(ids[:, t], caches) for t in range(ids.shape[1])], dim=1)
        assert torch.allclose(full, stepped, atol=1e-4, rtol=1e-4)
        # Causal: a prefix gives the same logits as the same positions of the whole text.
        for length in (5, 8, 9, 16, 17):
            assert torch.allclose(model(ids[:, :length]), full[:, :length], atol=1e-5, rtol=1e-5)


def test_generate_is_deterministic_and_well_formed(lm: TrainedLM) -> None:
    a = generate(lm, n=6, seed=5, length_max=300)
    b = generate(lm, n=6, seed=5, length_max=300)
    c = generate(lm, n=6, seed=6, length_max=300)
    assert a == b and a != c
    for text in a:
        assert text.startswith("X:1\n") and len(text) <= 300
        assert "\n\n" not in text and UNKNOWN_CHAR not in text
    # A trained model writes ABC headers: most samples have a T: or K: field.
    assert sum(("\nT:" in t or "\nK:" in t) for t in generate(lm, n=20, seed=1, length_max=400)) >= 10
    with pytest.raises(ValidationError, match="temperature"):
        generate(lm, n=1, seed=0, length_max=10, temperature=0.0)
    with pytest.raises(ValidationError, match="length_max"):
        generate(lm, n=1, seed=0, length_max=2)


def test_save_and_load_round_trip(lm: TrainedLM, tmp_path: Path) -> None:
    path = tmp_path / "lm.pt"
    save_lm(lm, path)
    loaded = load_lm(path)
    assert loaded.checksum() == lm.checksum()
    assert (loaded.vocab, loaded.seed, loaded.steps, loaded.final_loss) == (lm.vocab, lm.seed, lm.steps, lm.final_loss)
    ids = torch.tensor(lm.vocab.encode("X:1\nT:A tune\nK:G\nGABc|"))
    with torch.no_grad():
        assert torch.equal(loaded.model(ids), lm.model(ids))
    assert generate(loaded, n=3, seed=1, length_max=120) == generate(lm, n=3, seed=1, length_max=120)


def test_load_refuses_changed_or_foreign_files(lm: TrainedLM, tmp_path: Path) -> None:
    path = tmp_path / "lm.pt"
    save_lm(lm, path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["head.bias"][0] += 1.0
    torch.save(payload, path)
    with pytest.raises(ManifestError, match="checksum"):
        load_lm(path)
    torch.save({"format": "something-else"}, path)
    with pytest.raises(ManifestError, match="format"):
        load_lm(path)
    path.write_bytes(b"not a model")
    with pytest.raises(ManifestError):
        load_lm(path)
    with pytest.raises(NotFoundError):
        load_lm(tmp_path / "missing.pt")
