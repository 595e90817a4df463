"""`attribution validate` and `attribution validity`: how well a model's attribution predicts retraining
(and `attribution worker`, from ``cli.worker``).

`validate` retrains the model on random half subsets of its manifest's works through the operator's own
training function and records the linear datamodeling score with the model; `validity` shows the latest
figure. The figure is also shown by `manifest show` and on statements."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from endcredits.attribution.settings import AttributionSettings
from endcredits.cli.attribution import (
    CheckpointOpt,
    ChunkSizeOpt,
    EnsembleOpt,
    ExcludeOpt,
    KOpt,
    LengthCharsOpt,
    MeasurementOpt,
    ModelKindOpt,
    ProjectionOpt,
    SeedOpt,
    TimestepsOpt,
    _option,
    read_outputs,
    settings_of,
)
from endcredits.cli.common import JsonOpt, make_console, open_store_of, print_json, progress_bar
from endcredits.cli.worker import worker_cmd

if TYPE_CHECKING:
    from endcredits.attribution.validity import TrainFunction
    from endcredits.attribution.validity_records import ModelValidity

S = AttributionSettings
attribution_app = typer.Typer(
    no_args_is_help=True,
    help="Attribution's validity (the LDS of a model's attribution against retraining) and the batched worker.",
)


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
    timesteps: TimestepsOpt = S.timesteps,
    measurement: MeasurementOpt = S.measurement,
    method: Annotated[str, _option("method")] = S.method,
    lambda_: Annotated[float, _option("lambda_")] = S.lambda_,
    as_json: JsonOpt = False,
) -> None:
    """Measure the LDS of the model's attribution against retraining on random half subsets of its
    manifest's works (SUBSETS x SEEDS retrainings), with its noise ceiling, and record it with the model."""
    from endcredits.attribution.validity import training_function

    settings = settings_of(locals())
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


attribution_app.command("worker")(worker_cmd)
