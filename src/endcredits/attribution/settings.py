"""Attribution settings: every choice that changes an attribution's numbers, in one frozen dataclass.

The CLI, the API and the demo build an ``AttributionSettings``; each field carries its help text and its
range or choices, checked on construction (one-line ``SettingError``, a ``ValidationError``). Two kinds:

- features settings (k, projection, exclude, seed, chunk size, length, ensemble) decide the works'
  features. They are saved beside the features, name their directory (``fingerprint``) and must match
  when the features are reused (``check_saved``);
- scoring settings (method, lambda, top-k) are applied to the features at each attribution and may
  change freely between runs over the same features.

Importing this module loads no torch: the edges read the help texts at start-up.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from endcredits.errors import ManifestError, ValidationError

Projection = Literal["auto", "kronecker", "eigen", "gaussian", "identity"]
Ensemble = Literal["final", "trajectory"]
Method = Literal["trak", "tracin"]
Measurement = Literal["squared-norm", "loss"]

PROJECTIONS: tuple[Projection, ...] = ("auto", "kronecker", "eigen", "gaussian", "identity")
ENSEMBLES: tuple[Ensemble, ...] = ("final", "trajectory")
METHODS: tuple[Method, ...] = ("trak", "tracin")
MEASUREMENTS: tuple[Measurement, ...] = ("squared-norm", "loss")

K_MIN = 8
K_MAX = 65_536
"""Largest projected dimension (``kronecker`` and ``gaussian``)."""
SEED_MAX = 2**31 - 1
CHUNK_SIZE_MAX = 4_096
LENGTH_CHARS_MIN = 2
"""A text needs two characters for one next-character prediction."""
LENGTH_CHARS_MAX = 65_536
LAMBDA_MAX = 1e6
"""Beyond this the ridge swamps the kernel and TRAK is a scaled gradient dot product (use tracin)."""
TOP_K_MAX = 1_000
TIMESTEPS_MAX = 1_000
TIMESTEPS_DEFAULT = 10
"""Timesteps a diffusion measurement averages over (D-TRAK's smaller budget)."""
EXCLUDE_PATTERNS_MAX = 256
"""Patterns of parameter names left out of the features (``exclude``)."""
EXCLUDE_PATTERN_CHARS_MAX = 200

K_DEFAULT = 1_024
AUTO_EXACT_BYTES_MAX = 1 << 30
"""Projection ``auto`` keeps exact gradients while every work's features, over every checkpoint, fit in this
many bytes (float32): below it exact features cost less to compute than projected ones and no seed moves a
payee's share (docs/benchmarks.md, "Attribution stability and cost per output"); above it, ``kronecker``."""
GAUSSIAN_MATRIX_BYTES_MAX = 1 << 30
"""Past ``AUTO_EXACT_BYTES_MAX``, projection ``auto`` takes the dense seeded Gaussian while its matrix
(parameters x k, float32) fits in this many bytes, so it is generated once and kept
(``projection.BlockGaussianProjector``); beyond it, ``kronecker``. At the same k a dense projection estimates
inner products with less variance than two small factors per layer (docs/concepts/attribution.md, "Which
projection")."""
IDENTITY_DIM_MAX = 1 << 22
"""Largest parameter count featurized without projection."""
CHUNK_SIZE_DEFAULT = 32
LENGTH_CHARS_DEFAULT = 256
"""A tune's header and its first phrases (the median tune in the corpus has 305 characters); the
model's attention costs grow with the length."""
LAMBDA_DEFAULT = 1.0
"""Relative to the mean eigenvalue of the system TRAK solves (``TRAKScorer``): in these units the tuning
draws of ``benchmarks/lds.py`` (never the reported ground truth) chose 1 to 3 for the demo's model with exact
and with projected gradients, and 1 for MNIST's MLP and logistic regression at k = 2048."""

FEATURES = "features"
SCORING = "scoring"
SETTINGS_FORMAT = "endcredits.attribution-settings/2"
"""Version 2: ``exclude`` (parameter-name patterns) replaced ``parameters`` ("linear" or "all")."""


class SettingError(ValidationError):
    """One setting out of its range or choices. ``field`` names it, so an edge can name its own option."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.field = name
        self.problem = problem


def _meta(
    kind: str, text: str, *, low: float | None = None, high: float | None = None, choices: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """A field's metadata: its kind (``FEATURES`` or ``SCORING``), help text, and range or choices."""
    return {"kind": kind, "help": text, "low": low, "high": high, "choices": choices}


@dataclass(frozen=True)
class AttributionSettings:
    """How works are featurized and outputs scored; see the module docstring. The defaults are the demo's."""

    k: int = field(
        default=K_DEFAULT,
        metadata=_meta(
            FEATURES,
            f"Projected dimensions per checkpoint, in [{K_MIN}, {K_MAX}]: the width of every work's features "
            "(the layers share it by size; projection 'identity' ignores it)",
            low=K_MIN,
            high=K_MAX,
        ),
    )
    projection: Projection = field(
        default="auto",
        metadata=_meta(
            FEATURES,
            "How gradients are projected: auto (identity while every work's exact features fit in "
            f"{AUTO_EXACT_BYTES_MAX >> 30} GiB, else gaussian while its matrix fits in "
            f"{GAUSSIAN_MATRIX_BYTES_MAX >> 30} GiB, else kronecker), kronecker (two small seeded factors per "
            "layer), eigen (per layer, the top eigenvectors of the works' input and output-gradient covariances; no "
            "seed for those layers), gaussian (one blockwise seeded matrix) or identity (the exact gradient; no seed)",
            choices=PROJECTIONS,
        ),
    )
    exclude: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            FEATURES,
            "Parameters left out of the features, by name: shell-style patterns over the model's parameter names "
            f"(such as 'embed.*' or '*norm*'), at most {EXCLUDE_PATTERNS_MAX}, each matching at least one; every "
            "other parameter is featurized (none is left out unless named here)",
            high=EXCLUDE_PATTERNS_MAX,
        ),
    )
    seed: int = field(
        default=0,
        metadata=_meta(
            FEATURES,
            f"Seed of the random projection, in [0, {SEED_MAX}]: the same seed, the same features",
            high=SEED_MAX,
        ),
    )
    chunk_size: int = field(
        default=CHUNK_SIZE_DEFAULT,
        metadata=_meta(
            FEATURES,
            f"Examples differentiated at once, in [1, {CHUNK_SIZE_MAX}]: bounds memory; float sums follow it",
            low=1,
            high=CHUNK_SIZE_MAX,
        ),
    )
    length_chars: int = field(
        default=LENGTH_CHARS_DEFAULT,
        metadata=_meta(
            FEATURES,
            f"Characters featurized from the start of each text, work or output, in [{LENGTH_CHARS_MIN}, "
            f"{LENGTH_CHARS_MAX}]",
            low=LENGTH_CHARS_MIN,
            high=LENGTH_CHARS_MAX,
        ),
    )
    ensemble: Ensemble = field(
        default="final",
        metadata=_meta(
            FEATURES,
            "Checkpoints featurized and averaged: final (the trained parameters) or trajectory (also every "
            "intermediate checkpoint the training run kept, in step order)",
            choices=ENSEMBLES,
        ),
    )
    timesteps: int = field(
        default=TIMESTEPS_DEFAULT,
        metadata=_meta(
            FEATURES,
            f"Diffusion models: evenly spaced timesteps of the noise schedule the measurement averages over, in "
            f"[1, {TIMESTEPS_MAX}], with noise drawn from seeds every work, output and retraining share",
            low=1,
            high=TIMESTEPS_MAX,
        ),
    )
    measurement: Measurement = field(
        default="loss",
        metadata=_meta(
            FEATURES,
            "Diffusion models: the function differentiated, loss (minus the denoising loss, TRAK's) or "
            "squared-norm (D-TRAK's: the mean squared predicted noise)",
            choices=MEASUREMENTS,
        ),
    )
    method: Method = field(
        default="trak",
        metadata=_meta(SCORING, "trak (the default) or tracin (the plain gradient dot product)", choices=METHODS),
    )
    lambda_: float = field(
        default=LAMBDA_DEFAULT,
        metadata=_meta(
            SCORING,
            f"TRAK's ridge relative to the mean eigenvalue of the kernel it inverts, in [0, {LAMBDA_MAX:g}]; tracin "
            "ignores it",
            high=LAMBDA_MAX,
        ),
    )
    top_k: int = field(
        default=5,
        metadata=_meta(SCORING, f"Works that explain each output, in [1, {TOP_K_MAX}]", low=1, high=TOP_K_MAX),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            choices = f.metadata["choices"]
            if choices is not None:
                if value not in choices:
                    raise SettingError(f.name, f"must be one of {', '.join(choices)}, not {value!r}")
            elif isinstance(f.default, float):
                object.__setattr__(self, f.name, _checked_float(f.name, value, f.metadata))
            elif isinstance(f.default, tuple):
                object.__setattr__(self, f.name, _checked_patterns(f.name, value, f.metadata))
            else:
                _check_int(f.name, value, f.metadata)

    def resolved(self, *, parameters: int, works: int, checkpoints: int) -> AttributionSettings:
        """These settings with projection ``auto`` made concrete for a model of ``parameters`` featurized
        parameters, over ``works`` works and ``checkpoints`` checkpoints: ``identity`` while the exact
        features fit in ``AUTO_EXACT_BYTES_MAX``, else ``gaussian`` while its (parameters x k) matrix fits
        in ``GAUSSIAN_MATRIX_BYTES_MAX``, else ``kronecker``. Other projections are returned as they are.
        The features, their directory and the recorded run carry the concrete projection."""
        if self.projection != "auto":
            return self
        exact_bytes = 4 * parameters * works * checkpoints
        if parameters <= IDENTITY_DIM_MAX and exact_bytes <= AUTO_EXACT_BYTES_MAX:
            return replace(self, projection="identity")
        dense = 4 * parameters * self.k <= GAUSSIAN_MATRIX_BYTES_MAX
        return replace(self, projection="gaussian" if dense else "kronecker")

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of field ``name`` (what the CLI shows for its option)."""
        return str(_field(name).metadata["help"])

    @classmethod
    def names(cls, kind: str) -> tuple[str, ...]:
        """The fields of one kind, ``FEATURES`` or ``SCORING``, in declaration order."""
        return tuple(f.name for f in fields(cls) if f.metadata["kind"] == kind)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name: JSON-ready (``exclude`` as a list, as JSON reads it back)."""
        return {f.name: _json_ready(getattr(self, f.name)) for f in fields(self)}

    def features_dict(self) -> dict[str, Any]:
        """The features settings alone: what is saved beside the features and must match on reload."""
        return {name: _json_ready(getattr(self, name)) for name in self.names(FEATURES)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AttributionSettings:
        """Settings from ``to_dict()`` (or part of it: missing fields take their defaults); an unknown key
        or a value out of range raises ``ValidationError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValidationError(f"unknown attribution settings {unknown}; known: {', '.join(sorted(known))}")
        return cls(**dict(values))

    def fingerprint(self) -> str:
        """SHA-256 of the features settings: equal for settings that give the same features, and part of the
        name of their directory, so features of other settings are never mixed in."""
        canonical = json.dumps({"format": SETTINGS_FORMAT, FEATURES: self.features_dict()}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def check_saved(self, saved: Mapping[str, Any], where: str) -> None:
        """Refuse features saved under other features settings (``saved``: their ``features_dict()``),
        showing both values of each difference; scoring settings are not compared. Settings saved by an
        older version (a name no field has now, such as ``parameters``) are refused: featurize again."""
        mine = self.features_dict()
        retired = sorted(set(saved) - {f.name for f in fields(self)})
        if retired:
            raise ManifestError(
                f"features in {where} were saved with settings this version no longer has ({', '.join(retired)}); "
                "features are a cache: featurize again (delete that directory, or featurize into another one)"
            )
        differ = sorted(name for name in set(mine) | set(saved) if saved.get(name) != mine.get(name))
        if differ:
            shown = "; ".join(f"{name}: saved {saved.get(name)!r}, now {mine.get(name)!r}" for name in differ)
            raise ManifestError(
                f"features in {where} were computed with other settings ({shown}); features are a cache: delete"
                " that directory to start over, or featurize into another one"
            )


def _field(name: str) -> Any:
    for f in fields(AttributionSettings):
        if f.name == name:
            return f
    raise ValidationError(f"no attribution setting {name!r}")


def _check_int(name: str, value: Any, bounds: Mapping[str, Any]) -> None:
    low = 0 if bounds["low"] is None else bounds["low"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingError(name, f"must be an integer in [{low}, {bounds['high']}], not {value!r}")
    if not low <= value <= bounds["high"]:
        raise SettingError(name, f"{value} must be in [{low}, {bounds['high']}]")


def _checked_patterns(name: str, value: Any, bounds: Mapping[str, Any]) -> tuple[str, ...]:
    """Patterns as a sorted tuple: each a non-empty name pattern without spaces, none repeated."""
    high, chars = bounds["high"], EXCLUDE_PATTERN_CHARS_MAX
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SettingError(name, f"must be a list of parameter-name patterns, not {value!r}")
    if len(value) > high:
        raise SettingError(name, f"has {len(value)} patterns, more than {high}: use wider patterns such as 'blocks.*'")
    for pattern in value:
        if not isinstance(pattern, str) or not 1 <= len(pattern) <= chars:
            raise SettingError(name, f"pattern {pattern!r} must be a name pattern of 1 to {chars} characters")
        if not pattern.isprintable() or any(c.isspace() for c in pattern):
            raise SettingError(name, f"pattern {pattern!r} has a space or control character; parameter names have none")
    repeated = sorted({p for p in value if value.count(p) > 1})
    if repeated:
        raise SettingError(name, f"repeats pattern {repeated[0]!r}; name each pattern once")
    return tuple(sorted(value))


def _json_ready(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _checked_float(name: str, value: Any, bounds: Mapping[str, Any]) -> float:
    low = 0.0 if bounds["low"] is None else bounds["low"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingError(name, f"must be a number in [{low:g}, {bounds['high']:g}], not {value!r}")
    if not (math.isfinite(value) and low <= value <= bounds["high"]):
        raise SettingError(name, f"{value} must be in [{low:g}, {bounds['high']:g}]")
    return float(value)


__all__ = [
    "AUTO_EXACT_BYTES_MAX",
    "CHUNK_SIZE_MAX",
    "ENSEMBLES",
    "IDENTITY_DIM_MAX",
    "FEATURES",
    "K_DEFAULT",
    "K_MAX",
    "LAMBDA_DEFAULT",
    "LENGTH_CHARS_DEFAULT",
    "METHODS",
    "EXCLUDE_PATTERN_CHARS_MAX",
    "EXCLUDE_PATTERNS_MAX",
    "PROJECTIONS",
    "SCORING",
    "AttributionSettings",
    "Ensemble",
    "Method",
    "Projection",
    "SettingError",
]
