"""AttributionSettings: each field's range or choices, one line each; round trips; the fingerprint; the
comparison of saved features settings."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from endcredits.attribution.settings import (
    FEATURES,
    GAUSSIAN_MATRIX_BYTES_MAX,
    IDENTITY_DIM_MAX,
    K_DEFAULT,
    SCORING,
    AttributionSettings,
    SettingError,
)
from endcredits.errors import ManifestError, ValidationError


def test_the_defaults_are_the_arguments_every_edge_passed_before() -> None:
    assert AttributionSettings().to_dict() == {
        "k": 1_024,
        "projection": "auto",
        "exclude": [],
        "seed": 0,
        "chunk_size": 32,
        "length_chars": 256,
        "ensemble": "final",
        "timesteps": 10,
        "measurement": "loss",
        "method": "trak",
        "lambda_": 1.0,
        "top_k": 5,
    }


def test_auto_keeps_exact_gradients_while_they_fit_and_projects_beyond() -> None:
    auto = AttributionSettings()
    # 111,061 parameters (the demo's model): 2,417 works fit in 1 GiB of exact features, 2,418 do not; past
    # that, its (111,061 x 1,024) Gaussian matrix fits in 1 GiB.
    assert auto.resolved(parameters=111_061, works=2_417, checkpoints=1).projection == "identity"
    assert auto.resolved(parameters=111_061, works=2_418, checkpoints=1).projection == "gaussian"
    assert auto.resolved(parameters=111_061, works=1_300, checkpoints=2).projection == "gaussian"  # per checkpoint
    # The dense matrix up to GAUSSIAN_MATRIX_BYTES_MAX at the given k, the Kronecker factors beyond.
    widest = GAUSSIAN_MATRIX_BYTES_MAX // (4 * K_DEFAULT)
    assert auto.resolved(parameters=widest, works=10**6, checkpoints=1).projection == "gaussian"
    assert auto.resolved(parameters=widest + 1, works=10**6, checkpoints=1).projection == "kronecker"
    narrow = AttributionSettings(k=256)
    assert narrow.resolved(parameters=4 * widest, works=10**6, checkpoints=1).projection == "gaussian"
    assert auto.resolved(parameters=IDENTITY_DIM_MAX + 1, works=1, checkpoints=1).projection == "kronecker"
    explicit = AttributionSettings(projection="kronecker")
    assert explicit.resolved(parameters=10, works=10, checkpoints=1) is explicit  # only auto is resolved
    resolved = auto.resolved(parameters=10, works=10, checkpoints=1)
    assert resolved.to_dict() == auto.to_dict() | {"projection": "identity"}
    assert resolved.fingerprint() != auto.fingerprint()


BAD: list[tuple[str, Any, str]] = [
    ("k", 7, r"k 7 must be in \[8, 65536\]"),
    ("k", 65_537, r"k 65537 must be in \[8, 65536\]"),
    ("k", 64.0, r"k must be an integer in \[8, 65536\], not 64.0"),
    ("k", True, r"k must be an integer"),
    ("k", "1024", r"k must be an integer in \[8, 65536\], not '1024'"),
    ("projection", "jl", r"projection must be one of auto, kronecker, eigen, gaussian, identity, not 'jl'"),
    ("exclude", "embed.*", r"exclude must be a list of parameter-name patterns, not 'embed.\*'"),
    ("exclude", [""], r"exclude pattern '' must be a name pattern of 1 to 200 characters"),
    ("exclude", ["x" * 201], r"exclude pattern 'x{201}' must be a name pattern of 1 to 200 characters"),
    ("exclude", [3], r"exclude pattern 3 must be a name pattern"),
    ("exclude", ["embed weight"], r"exclude pattern 'embed weight' has a space or control character"),
    ("exclude", ["a.*", "b", "a.*"], r"exclude repeats pattern 'a.\*'; name each pattern once"),
    ("exclude", [f"p{i}" for i in range(257)], r"exclude has 257 patterns, more than 256: use wider patterns"),
    ("seed", -1, r"seed -1 must be in \[0, 2147483647\]"),
    ("seed", 2**31, r"seed 2147483648 must be in \[0, 2147483647\]"),
    ("chunk_size", 0, r"chunk_size 0 must be in \[1, 4096\]"),
    ("chunk_size", 4_097, r"chunk_size 4097 must be in \[1, 4096\]"),
    ("length_chars", 1, r"length_chars 1 must be in \[2, 65536\]"),
    ("length_chars", 65_537, r"length_chars 65537 must be in \[2, 65536\]"),
    ("ensemble", "members", r"ensemble must be one of final, trajectory, not 'members'"),
    ("timesteps", 0, r"timesteps 0 must be in \[1, 1000\]"),
    ("timesteps", 1_001, r"timesteps 1001 must be in \[1, 1000\]"),
    ("measurement", "l2", r"measurement must be one of squared-norm, loss, not 'l2'"),
    ("method", "similarity", r"method must be one of trak, tracin, not 'similarity'"),
    ("lambda_", -0.5, r"lambda_ -0.5 must be in \[0, 1e\+06\]"),
    ("lambda_", 2e6, r"lambda_ 2000000.0 must be in \[0, 1e\+06\]"),
    ("lambda_", float("nan"), r"lambda_ nan must be in"),
    ("lambda_", float("inf"), r"lambda_ inf must be in"),
    ("lambda_", "100", r"lambda_ must be a number in \[0, 1e\+06\], not '100'"),
    ("top_k", 0, r"top_k 0 must be in \[1, 1000\]"),
    ("top_k", 1_001, r"top_k 1001 must be in \[1, 1000\]"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_each_field_out_of_range_is_refused_in_one_line_naming_it(name: str, value: Any, message: str) -> None:
    with pytest.raises(SettingError, match=f"^{message}") as caught:
        AttributionSettings(**{name: value})
    assert caught.value.field == name and isinstance(caught.value, ValidationError)
    assert "\n" not in str(caught.value)


def test_every_field_is_checked_at_both_ends_or_against_its_choices() -> None:
    checked = {name for name, _, _ in BAD}
    assert checked == {f.name for f in dataclasses.fields(AttributionSettings)}
    edges = AttributionSettings(k=8, seed=2**31 - 1, chunk_size=4_096, length_chars=65_536, lambda_=0, top_k=1_000)
    assert edges.lambda_ == 0.0 and isinstance(edges.lambda_, float)  # an integer lambda is stored as a float
    assert AttributionSettings(k=65_536, seed=0, chunk_size=1, length_chars=2, lambda_=1e6, top_k=1).k == 65_536
    widest = [f"p{i:03d}" + "x" * 196 for i in range(256)]  # 256 patterns of 200 characters
    assert AttributionSettings(exclude=widest).exclude == tuple(widest) and AttributionSettings(exclude=["*"]).exclude


def test_exclude_is_kept_sorted_so_the_same_patterns_name_the_same_features() -> None:
    one = AttributionSettings(exclude=["embed.weight", "*norm*"])
    assert one.exclude == ("*norm*", "embed.weight") and one.to_dict()["exclude"] == ["*norm*", "embed.weight"]
    assert one == AttributionSettings(exclude=("*norm*", "embed.weight"))
    assert one.fingerprint() == AttributionSettings(exclude=["*norm*", "embed.weight"]).fingerprint()
    assert one.fingerprint() != AttributionSettings().fingerprint()
    assert AttributionSettings(projection="gaussian", exclude=["*norm*"]).projection == "gaussian"  # any projection


def test_settings_are_frozen_and_round_trip_through_json() -> None:
    settings = AttributionSettings(k=64, seed=3, method="tracin", lambda_=2.5, ensemble="trajectory")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.k = 128  # type: ignore[misc]
    again = AttributionSettings.from_dict(json.loads(json.dumps(settings.to_dict())))
    assert again == settings and again.fingerprint() == settings.fingerprint()
    assert AttributionSettings.from_dict({"seed": 3}) == AttributionSettings(seed=3)  # missing: the defaults
    with pytest.raises(ValidationError, match=r"unknown attribution settings \['lambda'\]; known: chunk_size"):
        AttributionSettings.from_dict({"lambda": 1.0})
    with pytest.raises(SettingError, match="^k 2 must be"):
        AttributionSettings.from_dict({"k": 2})


def test_every_field_has_a_kind_and_a_help_text_that_states_its_range_or_choices() -> None:
    features = AttributionSettings.names(FEATURES)
    scoring = AttributionSettings.names(SCORING)
    assert features == (
        "k", "projection", "exclude", "seed", "chunk_size", "length_chars", "ensemble", "timesteps", "measurement"
    )  # fmt: skip
    assert scoring == ("method", "lambda_", "top_k")
    for f in dataclasses.fields(AttributionSettings):
        text = AttributionSettings.help(f.name)
        choices, high = f.metadata["choices"], f.metadata["high"]
        assert len(text) > 20 and "\n" not in text, f.name
        assert (
            all(c in text for c in choices) if choices else (f"{high:g}" if f.name == "lambda_" else str(high)) in text
        )
    with pytest.raises(ValidationError, match="no attribution setting 'lambda'"):
        AttributionSettings.help("lambda")


def test_the_fingerprint_follows_the_features_settings_and_nothing_else() -> None:
    base = AttributionSettings()
    changed = {
        "k": 512,
        "projection": "gaussian",
        "exclude": ["*norm*"],
        "seed": 1,
        "chunk_size": 16,
        "length_chars": 128,
        "ensemble": "trajectory",
    }
    prints = {base.fingerprint()}
    for name, value in changed.items():
        prints.add(AttributionSettings(**{name: value}).fingerprint())
    assert len(prints) == 1 + len(changed)  # each features setting names other features
    scoring = AttributionSettings(method="tracin", lambda_=1.0, top_k=50)
    assert scoring.fingerprint() == base.fingerprint() and scoring.features_dict() == base.features_dict()


def test_saved_settings_that_differ_are_refused_showing_both_values_and_how_to_start_over() -> None:
    saved = AttributionSettings(k=512, seed=1).features_dict()
    with pytest.raises(ManifestError) as caught:
        AttributionSettings(seed=2).check_saved(saved, "/data/features/x")
    message = str(caught.value)
    assert "k: saved 512, now 1024; seed: saved 1, now 2" in message
    assert "delete that directory to start over" in message and "\n" not in message
    with pytest.raises(ManifestError, match="length_chars: saved None, now 256"):
        AttributionSettings().check_saved({k: v for k, v in saved.items() if k != "length_chars"}, "d")
    # Settings saved by the version before, with its retired "parameters": featurize again.
    retired = {
        **{k: v for k, v in AttributionSettings().features_dict().items() if k != "exclude"},
        "parameters": "all",
    }
    with pytest.raises(ManifestError, match=r"this version no longer has \(parameters\); features are a cache: featur"):
        AttributionSettings().check_saved(retired, "d")
    AttributionSettings(exclude=("b", "a")).check_saved(
        json.loads(json.dumps(AttributionSettings(exclude=("a", "b")).features_dict())), "d"
    )
    # Scoring settings are applied to the features afresh each time: not compared.
    AttributionSettings(k=512, seed=1, method="tracin", lambda_=3.0, top_k=9).check_saved(saved, "d")
