"""`attribution validate` and `attribution validity`: how well a model's attribution predicts retraining.

`validate` retrains the model on random half subsets of its manifest's works through the operator's own
training function and records the linear datamodeling score with the model; `validity` shows the latest
figure. The figure is also shown by `manifest show` and on statements."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from endcredits.attribution.settings import AttributionSettings
from endcredits.cli.attribution import (
    CheckpointOpt,
    ChunkSizeOpt,
    EnsembleOpt,
    ExcludeOpt,
    KOpt,
    LengthCharsOpt,
    ModelKindOpt,
    ProjectionOpt,
    SeedOpt,
    _option,
    _settings,
)
from endcredits.cli.common import JsonOpt, make_console, open_store_of, print_json, progress_bar
from endcredits.errors import ValidationError

if TYPE_CHECKING:
    from endcredits.attribution.validity import TrainFunction
    from endcredits.attribution.validity_records import ModelValidity

S = AttributionSettings
OUTPUT_BYTES_MAX = 64 << 20
"""Largest output one --outputs line may give (text, image or file)."""

attribution_app = typer.Typer(
    no_args_is_help=True,
    help="Attribution's validity: the LDS of a model's attribution against retraining, measured and shown.",
)


def _output_bytes(obj: dict[str, Any], base: Path, where: str) -> bytes:
    """One output's bytes from ``text``, ``image_base64`` or ``path`` (relative to the outputs file)."""
    given = [k for k in ("text", "image_base64", "path") if k in obj]
    if len(given) != 1:
        raise ValidationError(f"{where} must give exactly one of text, image_base64 or path")
    value = obj[given[0]]
    if not isinstance(value, str):
        raise ValidationError(f"{where}: {given[0]} must be a string")
    if given[0] == "text":
        data = value.encode("utf-8")
    elif given[0] == "image_base64":
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(f"{where}: image_base64 is not base64") from None
    else:
        path = base / value
        if not path.is_file():
            raise ValidationError(f"{where}: no file {path}")
        data = path.read_bytes()
    if len(data) > OUTPUT_BYTES_MAX:
        raise ValidationError(f"{where}: the output has {len(data)} bytes, over {OUTPUT_BYTES_MAX}")
    return data


def read_outputs(path: Path) -> list[tuple[str, bytes]]:
    """JSON lines ``{"output_id": ..., "text" | "image_base64" | "path": ...}`` as (id, bytes)."""
    if not path.is_file():
        raise ValidationError(f"no outputs file {path}")
    lines = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        where = f"{path} line {i + 1}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise ValidationError(f"{where} is not JSON") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("output_id"), str):
            raise ValidationError(f'{where} is not {{"output_id": ..., "text" | "image_base64" | "path": ...}}')
        lines.append((obj["output_id"], _output_bytes(obj, path.parent, where)))
    return lines


def _validate(
    ctx: typer.Context,
    manifest_id: str,
    checkpoint: Path,
    model_kind: str,
    train: tuple[str, TrainFunction],
    lines: list[tuple[str, bytes]],
    settings: AttributionSettings,
    subsets: int,
    seeds: int,
) -> ModelValidity:
    """Load the manifest and the model trained on it, and validate with a progress bar over the retrainings."""
    from endcredits.attribution.pipeline import bound_checkpoint
    from endcredits.attribution.validity import validate_manifest

    with open_store_of(ctx) as store:
        model, m = bound_checkpoint(store, manifest_id, checkpoint, kind=model_kind)
        with progress_bar("retraining", max(1, subsets * seeds)) as advance:
            return validate_manifest(
                store,
                m,
                model,
                train[1],
                lines,
                settings=settings,
                subsets=subsets,
                seeds=seeds,
                train_function_name=train[0],
                progress=lambda done, _total: advance(done),
            )


@attribution_app.command("validate")
def validate_cmd(
    ctx: typer.Context,
    manifest: Annotated[str, typer.Option(help="The manifest the model was trained on")],
    checkpoint: CheckpointOpt,
    train: Annotated[
        str,
        typer.Option(
            metavar="MODULE:FUNCTION",
            help="Your training function, train(subset_work_ids, seed) -> the path of a checkpoint of the same "
            "--model-kind trained on those works alone",
        ),
    ],
    outputs: Annotated[
        Path, typer.Option(help='JSON lines: {"output_id": ..., and "text", "image_base64" or "path": ...}')
    ],
    model_kind: ModelKindOpt = "charlm",
    subsets: Annotated[int, typer.Option(help="Random half subsets of the works, each retrained (at least 2)")] = 32,
    seeds: Annotated[int, typer.Option(help="Retrainings per subset, with different seeds (at least 1)")] = 3,
    k: KOpt = S.k,
    projection: ProjectionOpt = S.projection,
    exclude: ExcludeOpt = None,
    seed: SeedOpt = S.seed,
    chunk_size: ChunkSizeOpt = S.chunk_size,
    length_chars: LengthCharsOpt = S.length_chars,
    ensemble: EnsembleOpt = S.ensemble,
    method: Annotated[str, _option("method")] = S.method,
    lambda_: Annotated[float, _option("lambda_")] = S.lambda_,
    as_json: JsonOpt = False,
) -> None:
    """Measure the LDS of the model's attribution against retraining on random half subsets of its
    manifest's works (SUBSETS x SEEDS retrainings), with its noise ceiling, and record it with the model."""
    from endcredits.attribution.validity import training_function

    settings = _settings(
        {
            "k": k,
            "projection": projection,
            "exclude": exclude or [],
            "seed": seed,
            "chunk_size": chunk_size,
            "length_chars": length_chars,
            "ensemble": ensemble,
            "method": method,
            "lambda_": lambda_,
        }
    )
    train_fn = training_function(train)
    lines = read_outputs(outputs)
    v = _validate(ctx, manifest, checkpoint, model_kind, (train, train_fn), lines, settings, subsets, seeds)
    if as_json:
        print_json(v.to_json())
        return
    make_console().print(f"{v.sentence()}; recorded as validity {v.id} of model {v.model_id}")


@attribution_app.command("validity")
def validity_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="The model")],
    as_json: JsonOpt = False,
) -> None:
    """The model's latest validity figure (from `attribution validate`)."""
    from endcredits.attribution.validity_records import latest_validity

    with open_store_of(ctx) as store, store.read() as conn:
        v = latest_validity(conn, model)
    if as_json:
        print_json({"model_id": model, "validity": None if v is None else v.to_json()})
        return
    if v is None:
        make_console().print(f"model {model}: validity not measured (run `endcredits attribution validate`)")
        return
    make_console().print(
        f"model {model}: {v.sentence()}; checkpoint {v.checkpoint_sha256[:16]}, manifest {v.manifest_id}, "
        f"{v.method}, measured {v.measured_at}"
    )
