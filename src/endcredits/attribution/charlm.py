"""A small character-level language model: the demo model whose outputs endcredits attributes.

The model is a causal transformer with local attention: every layer looks back at most ``window``
characters, and positions enter only through ALiBi distance penalties. So the model computes the same
thing on a text of any length as on the windows it was trained on: a 2,000-character tune is scored the
way a 128-character training window was, and generation can keep a fixed-size cache.

Everything random comes from a ``torch.Generator`` seeded by the caller (parameter init, the training
windows, sampling); no global RNG or thread setting is touched. With the same seed, the same texts and
the same number of threads, a run bounded by ``steps_max`` is bit-for-bit repeatable; a run stopped by
``time_s_max`` is repeatable up to where it stopped.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from endcredits.errors import LimitExceededError, ManifestError, NotFoundError, ValidationError

UNKNOWN_ID = 0
"""The id of every character the vocabulary does not hold."""

UNKNOWN_CHAR = "\ufffd"
"""What ``Vocab.decode`` writes for ``UNKNOWN_ID``."""

VOCAB_CHARS_MAX = 4096
WINDOW_CHARS_MAX = 4096
BATCH_SIZE_MAX = 4096
TRAIN_STEPS_MAX = 10_000_000
TRAIN_TEXT_CHARS_MAX = 1 << 30
GENERATE_SAMPLES_MAX = 100_000
GENERATE_LENGTH_CHARS_MAX = 1 << 20

FORMAT = "endcredits.charlm/1"
"""The ``format`` key of a saved model; ``load_lm`` refuses any other."""

_LOSS_WINDOW_STEPS = 20
"""``final_loss`` is the mean training loss over this many last steps."""


@dataclass(frozen=True)
class Vocab:
    """Characters and their ids: ``chars[i]`` has id ``i + 1``; id 0 is ``UNKNOWN_ID``."""

    chars: str
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValidationError("vocabulary characters repeat; build it with build_vocab()")
        if UNKNOWN_CHAR in self.chars:
            raise ValidationError(f"vocabulary may not hold {UNKNOWN_CHAR!r}: it stands for unknown characters")
        if len(self.chars) + 1 > VOCAB_CHARS_MAX:
            raise LimitExceededError(
                f"vocabulary of {len(self.chars)} characters is over {VOCAB_CHARS_MAX - 1}; normalize the texts first"
            )
        object.__setattr__(self, "_index", {ch: i + 1 for i, ch in enumerate(self.chars)})

    @property
    def size(self) -> int:
        """Number of ids, the unknown id included."""
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        index = self._index
        return [index.get(ch, UNKNOWN_ID) for ch in text]

    def decode(self, ids: Sequence[int]) -> str:
        out: list[str] = []
        for i in ids:
            if not 0 <= i <= len(self.chars):
                raise ValidationError(f"id {i} is not in this vocabulary of {self.size} ids")
            out.append(UNKNOWN_CHAR if i == UNKNOWN_ID else self.chars[i - 1])
        return "".join(out)


def build_vocab(texts: Sequence[str]) -> Vocab:
    """The characters of ``texts``, in code-point order."""
    seen: set[str] = set()
    for text in texts:
        seen.update(text)
    seen.discard(UNKNOWN_CHAR)
    return Vocab("".join(sorted(seen)))


@dataclass(frozen=True)
class CharLMConfig:
    vocab_size: int
    window: int = 128
    """Characters each layer looks back over (the training window)."""
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256

    def __post_init__(self) -> None:
        if not 2 <= self.vocab_size <= VOCAB_CHARS_MAX:
            raise ValidationError(f"vocab_size {self.vocab_size} must be in [2, {VOCAB_CHARS_MAX}]")
        if not 2 <= self.window <= WINDOW_CHARS_MAX:
            raise ValidationError(f"window {self.window} must be in [2, {WINDOW_CHARS_MAX}]")
        if self.d_model < 1 or self.n_layers < 1 or self.n_heads < 1 or self.d_ff < 1:
            raise ValidationError("d_model, n_layers, n_heads and d_ff must be positive")
        if self.d_model % self.n_heads != 0:
            raise ValidationError(f"d_model {self.d_model} must be a multiple of n_heads {self.n_heads}")

    @property
    def receptive_field(self) -> int:
        """Characters that can influence one prediction: ``n_layers * (window - 1) + 1``."""
        return self.n_layers * (self.window - 1) + 1


class _Block(nn.Module):
    def __init__(self, config: CharLMConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.window = config.window
        self.norm1 = nn.LayerNorm(config.d_model)
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.ff_in = nn.Linear(config.d_model, config.d_ff)
        self.ff_out = nn.Linear(config.d_ff, config.d_model)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        # [..., T, d] -> [..., H, T, d / H]; q is scaled here, on [T, d / H] rather than on [T, T].
        q, k, v = (t.unflatten(-1, (self.n_heads, -1)).transpose(-3, -2) for t in (q, k, v))
        return q / math.sqrt(q.shape[-1]), k, v

    def _merge(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        x = x + self.proj(attended.transpose(-3, -2).flatten(-2))
        out: torch.Tensor = x + self.ff_out(F.gelu(self.ff_in(self.norm2(x))))
        return out

    def forward(self, x: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        length, window = q.shape[-2], self.window
        if length <= window:
            scores = q @ k.transpose(-2, -1) + _alibi_bias(slopes, length, length, window)
            return self._merge(x, torch.softmax(scores, dim=-1) @ v)
        # Banded: split into blocks of `window` queries; each sees its own block and the one before.
        blocks = -(-length // window)
        pad = blocks * window - length
        q, k, v = (F.pad(t, (0, 0, 0, pad)).reshape(*t.shape[:-2], blocks, window, t.shape[-1]) for t in (q, k, v))
        k = torch.cat([torch.cat([torch.zeros_like(k[..., :1, :, :]), k[..., :-1, :, :]], dim=-3), k], dim=-2)
        v = torch.cat([torch.cat([torch.zeros_like(v[..., :1, :, :]), v[..., :-1, :, :]], dim=-3), v], dim=-2)
        bias = _alibi_bias(slopes, window, 2 * window, window)[:, None, :, :].repeat(1, blocks, 1, 1)
        bias[:, 0, :, :window] = float("-inf")  # the first block has no block before it
        scores = q @ k.transpose(-2, -1) + bias  # [..., H, blocks, window, 2 * window]
        attended = (torch.softmax(scores, dim=-1) @ v).flatten(-3, -2)[..., :length, :]
        return self._merge(x, attended)

    def step(self, x: torch.Tensor, cache: dict[str, torch.Tensor], slopes: torch.Tensor) -> torch.Tensor:
        """One new position per row: ``x`` is [B, 1, d]; ``cache`` keeps the last ``window - 1`` keys/values."""
        q, k, v = self._heads(x)
        if "k" in cache:
            k = torch.cat([cache["k"], k], dim=-2)
            v = torch.cat([cache["v"], v], dim=-2)
        cache["k"], cache["v"] = k[..., -(self.window - 1) :, :], v[..., -(self.window - 1) :, :]
        keys = k.shape[-2]
        bias = _alibi_bias(slopes, 1, keys, self.window, query_offset=keys - 1)
        return self._merge(x, torch.softmax(q @ k.transpose(-2, -1) + bias, dim=-1) @ v)


def _alibi_bias(
    slopes: torch.Tensor, queries: int, keys: int, window: int, query_offset: int | None = None
) -> torch.Tensor:
    """[H, queries, keys]: ``-slope * (i - j)`` where key j is visible from query i, ``-inf`` elsewhere.

    Query i sits at position ``query_offset + i`` (default ``keys - queries``) and key j at position j;
    key j is visible when ``0 <= i - j < window``.
    """
    offset = keys - queries if query_offset is None else query_offset
    distance = (torch.arange(queries)[:, None] + offset) - torch.arange(keys)[None, :]
    visible = (distance >= 0) & (distance < window)
    bias = -slopes[:, None, None] * distance.to(torch.float32)
    return bias.masked_fill(~visible, float("-inf"))


class CharLM(nn.Module):
    """Causal transformer over character ids with local attention and ALiBi; see the module docstring."""

    def __init__(self, config: CharLMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList([_Block(config) for _ in range(config.n_layers)])
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    def _slopes(self) -> torch.Tensor:
        heads = torch.arange(1, self.config.n_heads + 1, dtype=torch.float32)
        return torch.exp2(-8.0 * heads / self.config.n_heads)  # [H]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits [..., T, vocab] for the next character after each position of ``ids`` [..., T]."""
        x = self.embed(ids)
        slopes = self._slopes()
        for block in self._blocks():
            x = block(x, slopes)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits

    def step(self, ids: torch.Tensor, caches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Logits [B, vocab] for one new character per row, ``ids`` [B]; ``caches`` (one per layer) grow."""
        x = self.embed(ids[:, None])
        slopes = self._slopes()
        for block, cache in zip(self._blocks(), caches, strict=True):
            x = block.step(x, cache, slopes)
        logits: torch.Tensor = self.head(self.norm(x))[:, 0, :]
        return logits

    def _blocks(self) -> list[_Block]:
        return [block for block in self.blocks if isinstance(block, _Block)]


def _init_parameters(model: CharLM, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
            elif ".norm" in name or name.startswith("norm"):
                parameter.fill_(1.0)
            else:
                std = (
                    0.02 / math.sqrt(2 * model.config.n_layers)
                    if name.endswith(("proj.weight", "ff_out.weight"))
                    else 0.02
                )
                parameter.normal_(0.0, std, generator=generator)


@dataclass
class TrainedLM:
    model: CharLM
    vocab: Vocab
    seed: int
    steps: int
    final_loss: float
    """Mean training cross entropy (nats per character) over the last steps."""
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Copies of the parameters after the steps named in ``train_char_lm(checkpoint_steps=...)``, by step
    (not saved by ``save_lm``)."""

    @property
    def config(self) -> CharLMConfig:
        return self.model.config

    def checksum(self) -> str:
        """SHA-256 over the parameters (names, dtypes, shapes, bytes) and the vocabulary."""
        digest = hashlib.sha256()
        digest.update(FORMAT.encode())
        digest.update(repr(sorted(asdict(self.config).items())).encode())
        digest.update(self.vocab.chars.encode("utf-8", "surrogatepass"))
        state = self.model.state_dict()
        for name in sorted(state):
            tensor = state[name].detach().to("cpu").contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()


def train_char_lm(
    texts: Sequence[str],
    *,
    seed: int,
    steps_max: int,
    time_s_max: float,
    window: int = 128,
    batch_size: int = 32,
    progress: Callable[[int, float], None] | None = None,
    vocab: Vocab | None = None,
    checkpoint_steps: Sequence[int] = (),
) -> TrainedLM:
    """Train a ``CharLM`` on random ``window``-character slices of the texts (joined by blank lines).

    Stops after ``steps_max`` steps or once ``time_s_max`` seconds have passed since the call (checked
    after each step, so at least one step runs), whichever comes first; ``progress(step, loss)`` is
    called after every step.

    ``vocab`` (default: ``build_vocab(texts)``) fixes the vocabulary, so that models trained on different
    subsets of a collection have the same shape (an ensemble of them can be attributed together);
    characters it lacks are encoded as ``UNKNOWN_ID``. ``checkpoint_steps`` names steps after which a
    copy of the parameters is kept in ``TrainedLM.checkpoints`` (steps the run does not reach are absent).
    """
    if not 1 <= steps_max <= TRAIN_STEPS_MAX:
        raise ValidationError(f"steps_max {steps_max} must be in [1, {TRAIN_STEPS_MAX}]")
    if not time_s_max > 0:
        raise ValidationError(f"time_s_max {time_s_max} must be > 0 seconds")
    if not 1 <= batch_size <= BATCH_SIZE_MAX:
        raise ValidationError(f"batch_size {batch_size} must be in [1, {BATCH_SIZE_MAX}]")
    started = time.monotonic()
    wanted = set(checkpoint_steps)
    if any(not 1 <= s <= steps_max for s in wanted):
        raise ValidationError(f"checkpoint_steps {sorted(wanted)} must be in [1, steps_max={steps_max}]")
    vocab = build_vocab(texts) if vocab is None else vocab
    config = CharLMConfig(vocab_size=max(vocab.size, 2), window=window)
    corpus = "\n".join(texts)
    if len(corpus) > TRAIN_TEXT_CHARS_MAX:
        raise LimitExceededError(
            f"{len(corpus)} characters of training text, over {TRAIN_TEXT_CHARS_MAX}; pass fewer texts"
        )
    if len(corpus) < window + 1:
        raise ValidationError(
            f"the texts hold {len(corpus)} characters; training needs at least window + 1 = {window + 1}"
        )
    data = torch.tensor(vocab.encode(corpus), dtype=torch.long)

    generator = torch.Generator().manual_seed(seed)
    model = CharLM(config)
    _init_parameters(model, generator)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("embed")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n.startswith("embed")]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=3e-3,
        betas=(0.9, 0.98),
        foreach=False,
    )
    warmup_steps = min(100, max(1, steps_max // 10))

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress_fraction = (step - warmup_steps) / max(1, steps_max - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_fraction)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    offsets = torch.arange(window + 1)
    recent: list[float] = []
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    step = 0
    model.train()
    while step < steps_max:
        starts = torch.randint(0, len(data) - window, (batch_size,), generator=generator)
        batch = data[starts[:, None] + offsets]
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, config.vocab_size), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=False)
        optimizer.step()
        scheduler.step()
        step += 1
        value = float(loss.item())
        if not math.isfinite(value):
            raise ValidationError(
                f"training loss became {value} at step {step}; lower the learning rate or check the texts"
            )
        recent = (recent + [value])[-_LOSS_WINDOW_STEPS:]
        if step in wanted:
            checkpoints[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress is not None:
            progress(step, value)
        if time.monotonic() - started >= time_s_max:
            break
    model.eval()
    return TrainedLM(
        model=model, vocab=vocab, seed=seed, steps=step, final_loss=sum(recent) / len(recent), checkpoints=checkpoints
    )


@torch.no_grad()
def generate(
    lm: TrainedLM,
    *,
    n: int,
    seed: int,
    length_max: int,
    prompt: str = "X:1\n",
    temperature: float = 1.0,
) -> list[str]:
    """``n`` samples, each the prompt plus generated characters up to the end of the tune.

    A sample ends before the first blank line (the end of an ABC tune) or at ``length_max`` characters,
    prompt included. The same seed gives the same samples.
    """
    if not 1 <= n <= GENERATE_SAMPLES_MAX:
        raise ValidationError(f"n {n} must be in [1, {GENERATE_SAMPLES_MAX}]")
    if not 1 <= len(prompt) <= length_max <= GENERATE_LENGTH_CHARS_MAX:
        raise ValidationError(
            f"need 1 <= len(prompt) ({len(prompt)}) <= length_max ({length_max}) <= {GENERATE_LENGTH_CHARS_MAX}"
        )
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValidationError(f"temperature {temperature} must be a positive number")
    model = lm.model
    was_training = model.training
    model.eval()
    try:
        generator = torch.Generator().manual_seed(seed)
        caches: list[dict[str, torch.Tensor]] = [{} for _ in model.blocks]
        prompt_ids = lm.vocab.encode(prompt)
        logits = torch.empty(0)
        for token in prompt_ids:
            logits = model.step(torch.full((n,), token, dtype=torch.long), caches)
        rows: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        last_newline = [prompt.endswith("\n")] * n
        newline_id = lm.vocab.encode("\n")[0]
        for _ in range(length_max - len(prompt)):
            probabilities = torch.softmax(logits / temperature, dim=-1)
            probabilities[:, UNKNOWN_ID] = 0.0  # never emit the unknown character
            chosen = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
            for row, token in enumerate(chosen.tolist()):
                if done[row]:
                    continue
                is_newline = token == newline_id
                if is_newline and last_newline[row]:
                    done[row] = True  # a blank line: the tune is over
                    continue
                rows[row].append(token)
                last_newline[row] = is_newline
            if all(done):
                break
            logits = model.step(chosen, caches)
        return [prompt + lm.vocab.decode(row) for row in rows]
    finally:
        model.train(was_training)


def save_lm(lm: TrainedLM, path: Path) -> None:
    """Write the model (parameters, vocabulary, config, checksum) to ``path`` with ``torch.save``."""
    payload = {
        "format": FORMAT,
        "config": asdict(lm.config),
        "vocab": lm.vocab.chars,
        "seed": lm.seed,
        "steps": lm.steps,
        "final_loss": lm.final_loss,
        "checksum": lm.checksum(),
        "state_dict": {k: v.detach().to("cpu").clone() for k, v in lm.model.state_dict().items()},
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)


def load_lm(path: Path) -> TrainedLM:
    """Read a model written by ``save_lm``; raises ``ManifestError`` if it does not match its checksum."""
    if not path.is_file():
        raise NotFoundError(f"no saved language model at {path}; train one and save it with save_lm()")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ManifestError(
            f"{path} is not a saved endcredits language model ({type(exc).__name__}); save it again"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ManifestError(f"{path} is not in format {FORMAT}; save it again with save_lm()")
    model = CharLM(CharLMConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"], strict=True)
    model.eval()
    lm = TrainedLM(
        model=model,
        vocab=Vocab(payload["vocab"]),
        seed=int(payload["seed"]),
        steps=int(payload["steps"]),
        final_loss=float(payload["final_loss"]),
    )
    if lm.checksum() != payload["checksum"]:
        raise ManifestError(
            f"{path}: parameters do not match the recorded checksum {payload['checksum']}; the file changed"
        )
    return lm


__all__ = [
    "CharLM",
    "CharLMConfig",
    "TrainedLM",
    "Vocab",
    "build_vocab",
    "generate",
    "load_lm",
    "save_lm",
    "train_char_lm",
]
