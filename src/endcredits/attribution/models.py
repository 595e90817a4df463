"""The models endcredits attributes, behind one interface: the demo's character model (``charlm``), Hugging
Face causal LMs (``hf-causal-lm``), diffusers UNets (``diffusers-unet``), and any model an operator describes
in a function of their own, named ``module:function``.

An ``AttributionModel`` gives the engine what it needs from a model and nothing more: its checksum (one
definition: its config and its tensors, never its files), its task under the settings (which checkpoints,
which functions), and how a work's or an output's bytes become a batch. ``load_model(path, kind)`` is the
one door the CLI, the API and the demo use; an operator's function takes the checkpoint path and returns
an ``AttributionModel``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from endcredits.attribution.settings import AttributionSettings
from endcredits.attribution.task import AttributionTask, Batch
from endcredits.errors import ValidationError

BUILTIN_KINDS = ("charlm", "hf-causal-lm", "diffusers-unet")
NOISE_SEED = 0
"""The seed of the diffusion measurement's noise, shared by every work, output and retraining."""


@runtime_checkable
class AttributionModel(Protocol):
    """What the engine needs from a model; see the module docstring."""

    @property
    def kind(self) -> str: ...

    def checksum(self) -> str: ...

    def task(self, settings: AttributionSettings) -> AttributionTask: ...

    def encode_works(self, contents: Sequence[bytes], ids: Sequence[str], settings: AttributionSettings) -> Batch: ...

    def encode_outputs(self, contents: Sequence[bytes], ids: Sequence[str], settings: AttributionSettings) -> Batch: ...


def _texts(contents: Sequence[bytes], ids: Sequence[str], what: str) -> list[str]:
    texts = []
    for data, item in zip(contents, ids, strict=True):
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise ValidationError(f"{what} {item} is not UTF-8 text; this model reads text") from None
    return texts


@dataclass(frozen=True)
class CharLMModel:
    """The demo's character model (``attribution.charlm``), saved with ``save_lm``."""

    lm: Any  # TrainedLM
    kind: str = "charlm"

    def checksum(self) -> str:
        return str(self.lm.checksum())

    def task(self, settings: AttributionSettings) -> AttributionTask:
        from endcredits.attribution.task import language_model_task

        return language_model_task(self.lm.model, ensemble_states(self.lm, settings))

    def encode_works(self, contents: Sequence[bytes], ids: Sequence[str], settings: AttributionSettings) -> Batch:
        from endcredits.attribution.task import encode_texts

        return encode_texts(self.lm.vocab, _texts(contents, ids, "work"), length_max=settings.length_chars)

    def encode_outputs(self, contents: Sequence[bytes], ids: Sequence[str], settings: AttributionSettings) -> Batch:
        from endcredits.attribution.task import encode_texts

        return encode_texts(self.lm.vocab, _texts(contents, ids, "output"), length_max=settings.length_chars)


def ensemble_states(lm: Any, settings: AttributionSettings) -> list[dict[str, Any]]:
    """The parameter states of a ``TrainedLM`` featurized, by ``settings.ensemble``: the final ones, or for
    ``trajectory`` every intermediate checkpoint the training run kept (``train_char_lm(checkpoint_steps=...)``),
    in step order, then the final ones."""
    final = lm.model.state_dict()
    if settings.ensemble == "final":
        return [final]
    kept = [lm.checkpoints[step] for step in sorted(lm.checkpoints) if step != lm.steps]
    if not kept:
        raise ValidationError(
            "ensemble 'trajectory' needs the intermediate checkpoints of the training run (train_char_lm("
            "checkpoint_steps=...)); a saved model holds only its final parameters: use ensemble 'final'"
        )
    return [*kept, final]


def _final_only(settings: AttributionSettings, kind: str) -> None:
    if settings.ensemble != "final":
        raise ValidationError(f"a {kind} model is attributed at its saved parameters: use ensemble 'final'")


@dataclass(frozen=True)
class CausalLMModel:
    """A Hugging Face causal LM from a ``save_pretrained`` folder; ``length_chars`` counts its tokens."""

    lm: Any  # attribution.hf.CausalLM
    kind: str = "hf-causal-lm"

    def checksum(self) -> str:
        return str(self.lm.checksum())

    def task(self, settings: AttributionSettings) -> AttributionTask:
        _final_only(settings, self.kind)
        task: AttributionTask = self.lm.task()
        return task

    def encode_works(self, contents: Sequence[bytes], ids: Sequence[str], settings: AttributionSettings) -> Batch:
        batch: Batch = self.lm.encode(_texts(contents, ids, "work"), length_max=settings.length_chars)
        return batch

    def encode_outputs(self, contents: Sequence[bytes], ids: Sequence[str], settings: AttributionSettings) -> Batch:
        batch: Batch = self.lm.encode(_texts(contents, ids, "output"), length_max=settings.length_chars)
        return batch


@dataclass(frozen=True)
class UNetModel:
    """A diffusers UNet and its scheduler; works and outputs are image files, resized to the UNet's side."""

    unet: Any  # attribution.diffusion.DiffusionUNet
    kind: str = "diffusers-unet"

    def checksum(self) -> str:
        return str(self.unet.checksum())

    def task(self, settings: AttributionSettings) -> AttributionTask:
        _final_only(settings, self.kind)
        task: AttributionTask = self.unet.task(measurement=settings.measurement)
        return task

    def _encode(self, contents: Sequence[bytes], ids: Sequence[str], what: str, settings: AttributionSettings) -> Batch:
        from endcredits.attribution.diffusion import images_from_bytes

        images = images_from_bytes(
            contents, channels=self.unet.channels, side=self.unet.side, what=[f"{what} {i}" for i in ids]
        )
        batch: Batch = self.unet.encode(images, timesteps=settings.timesteps, seed=NOISE_SEED)
        return batch

    def encode_works(self, contents: Sequence[bytes], ids: Sequence[str], settings: AttributionSettings) -> Batch:
        return self._encode(contents, ids, "work", settings)

    def encode_outputs(self, contents: Sequence[bytes], ids: Sequence[str], settings: AttributionSettings) -> Batch:
        return self._encode(contents, ids, "output", settings)


def _load_builtin(path: Path, kind: str) -> AttributionModel:
    if kind == "charlm":
        from endcredits.attribution.charlm import load_lm

        return CharLMModel(load_lm(path))
    if kind == "hf-causal-lm":
        from endcredits.attribution.hf import load_causal_lm

        return CausalLMModel(load_causal_lm(path))
    from endcredits.attribution.diffusion import load_unet

    return UNetModel(load_unet(path))


def import_function(name: str, what: str) -> Callable[..., Any]:
    """The operator's function ``module:function`` that ``name`` names (``what`` says what it is for, such as
    "model kind mod:fn"); a one-line ``ValidationError`` when it cannot be imported or is not callable."""
    module_name, _, function_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the operator's module raises on import, say it in one line
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ValidationError(f"cannot import {module_name} for {what}: {type(exc).__name__}: {first}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValidationError(f"{module_name} has no function {function_name} ({what})")
    return function  # type: ignore[no-any-return]


def is_module_function(name: str) -> bool:
    """Whether ``name`` has the shape ``module:function``."""
    module_name, _, function_name = name.partition(":")
    return bool(module_name) and function_name.isidentifier()


def operator_function(name: str) -> Callable[[Path], Any]:
    """The function ``module:function`` names; a one-line ``ValidationError`` when it cannot be had."""
    if not is_module_function(name):
        raise ValidationError(f"model kind {name!r} is neither one of {', '.join(BUILTIN_KINDS)} nor module:function")
    return import_function(name, f"model kind {name}")


def load_model(path: Path, kind: str) -> AttributionModel:
    """The model at ``path`` as ``kind``: a built-in kind, or ``module:function`` called with ``path``."""
    if kind in BUILTIN_KINDS:
        return _load_builtin(path, kind)
    try:
        built = operator_function(kind)(path)
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - the operator's function: say what it raised, in one line
        raise ValidationError(f"{kind} could not load {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(built, AttributionModel):
        raise ValidationError(
            f"{kind} returned {type(built).__name__}, not an AttributionModel (kind, checksum, task, encode_works,"
            " encode_outputs)"
        )
    return built
