"""Hugging Face causal LMs through the engine with no workaround: a GPT-2 (Conv1D layers, tied head) and a
Llama-style model (tied head, grouped-query attention), built here and saved with ``save_pretrained``.

The exact features (``projection="identity"``) must equal each text's true gradient, computed one text at a
time with autograd on the untouched model: the tied head and embedding counted once with their whole
gradient, the padding masked, nothing dropped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from endcredits.attribution.featurizer import Featurizer
from endcredits.attribution.hf import CausalLM, load_causal_lm
from endcredits.attribution.task import canonical_state
from endcredits.errors import ManifestError, ValidationError
from hf_models import save_gpt2, save_llama

TEXTS = ["the tune goes up", "and down again|", "ab"]

Save = Callable[..., Path]


@pytest.fixture(params=[save_gpt2, save_llama], ids=["gpt2", "llama"])
def lm(request: pytest.FixtureRequest, tmp_path: Path) -> CausalLM:
    save: Save = request.param
    return load_causal_lm(save(tmp_path / "model"))


def _true_gradient(lm: CausalLM, text: str, *, mean: bool) -> np.ndarray:
    """The gradient of one text's log-likelihood by plain autograd, in ``named_parameters`` order."""
    ids, mask = lm.encode([text], length_max=64)
    lm.model.zero_grad()
    logits = lm.model(input_ids=ids[:, :-1]).logits
    per_token = -F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none") * mask
    value = per_token.sum() / mask.sum() if mean else per_token.sum()
    value.backward()
    return torch.cat([p.grad.reshape(-1) for _, p in lm.model.named_parameters()]).numpy()  # type: ignore[union-attr]


def test_exact_features_are_each_texts_true_gradient(lm: CausalLM) -> None:
    featurizer = Featurizer(lm.task(), k=None, seed=0, projection="identity", chunk_size=2)
    batch = lm.encode(TEXTS, length_max=64)  # padded: the third text is much shorter than the others
    train = featurizer.compute(batch, role="train")
    target = featurizer.compute(batch, role="target")
    for row, text in enumerate(TEXTS):
        for got, mean in ((train[row], False), (target[row], True)):
            want = _true_gradient(lm, text, mean=mean)
            assert got.shape == want.shape  # every parameter, the tied one once
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_the_projected_path_runs_under_vmap_and_is_seeded(lm: CausalLM) -> None:
    batch = lm.encode(TEXTS, length_max=16)
    first = Featurizer(lm.task(), k=64, seed=3, projection="gaussian").compute(batch, role="train")
    again = Featurizer(lm.task(), k=64, seed=3, projection="gaussian").compute(batch, role="train")
    other = Featurizer(lm.task(), k=64, seed=4, projection="gaussian").compute(batch, role="train")
    assert first.shape == (3, 64) and np.isfinite(first).all()
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_the_checksum_covers_config_and_parameters_not_files(tmp_path: Path) -> None:
    a = load_causal_lm(save_gpt2(tmp_path / "a", seed=0))
    b = load_causal_lm(save_gpt2(tmp_path / "b", seed=0))
    c = load_causal_lm(save_gpt2(tmp_path / "c", seed=1))
    assert a.checksum() == b.checksum() != c.checksum()
    with_aliases = a.model.state_dict()  # holds the tied head under both names
    assert "lm_head.weight" in with_aliases and "lm_head.weight" not in a.state()
    assert canonical_state(a.model, with_aliases).keys() == a.state().keys()


def test_a_checkpoint_of_another_model_is_refused_naming_the_first_mismatch(tmp_path: Path) -> None:
    gpt2 = load_causal_lm(save_gpt2(tmp_path / "gpt2"))
    llama = load_causal_lm(save_llama(tmp_path / "llama"))
    with pytest.raises(
        ValidationError, match=r"checkpoint 0 has model\.embed_tokens\.weight, which the model does not"
    ):
        gpt2.task([llama.state()])
    state = gpt2.state()
    state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:10]
    with pytest.raises(ValidationError, match=r"transformer\.wpe\.weight has shape \(10, 32\), the model's \(64, 32\)"):
        gpt2.task([state])
    tied = gpt2.model.state_dict()
    tied["lm_head.weight"] = tied["lm_head.weight"] + 1.0
    with pytest.raises(ValidationError, match="lm_head.weight is tied to transformer.wte.weight"):
        gpt2.task([tied])


def test_a_folder_without_a_model_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="is not a save_pretrained folder") as err:
        load_causal_lm(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ManifestError, match="holds no causal LM with its tokenizer") as err:
        load_causal_lm(tmp_path)
    assert "\n" not in str(err.value)


def test_texts_too_short_or_too_long_are_refused(lm: CausalLM) -> None:
    with pytest.raises(ValidationError, match=r"texts \[0\] have fewer than 2 tokens"):
        lm.encode(["a", "abc"], length_max=8)
    with pytest.raises(ValidationError, match="length_max 1 must be in"):
        lm.encode(["abc"], length_max=1)
