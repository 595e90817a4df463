"""`attribution worker`: outputs of a recorded run's model attributed in batches and accrued in process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from endcredits.cli.attribution import ModelKindOpt, RayOpt, read_output_lines
from endcredits.cli.common import JsonOpt, make_console, open_store_of, print_json, progress_bar
from endcredits.errors import ValidationError
from endcredits.money import parse_amount

if TYPE_CHECKING:
    from endcredits.royalties.usage import OutputIn

PRICED_FIELDS = ("model_id", "revenue", "currency", "occurred_at")


def read_priced_outputs(path: Path) -> tuple[list[OutputIn], list[bytes]]:
    """JSON lines ``{"output_id", "model_id", "revenue" (decimal text), "currency", "occurred_at", and "text" |
    "image_base64" | "path"}``: the outputs as accrual takes them, and their contents."""
    from endcredits.royalties.usage import OutputIn

    outputs, contents = [], []
    for obj, content, where in read_output_lines(path):
        missing = [f for f in PRICED_FIELDS if not isinstance(obj.get(f), str)]
        if missing:
            raise ValidationError(f"{where} lacks {missing[0]} (text): each output gives {', '.join(PRICED_FIELDS)}")
        revenue = parse_amount(obj["revenue"], obj["currency"])
        outputs.append(OutputIn(obj["output_id"], obj["model_id"], revenue, obj["currency"], obj["occurred_at"]))
        contents.append(content)
    return outputs, contents


def worker_cmd(
    ctx: typer.Context,
    run: Annotated[
        str,
        typer.Option("--run", metavar="RUN_ID", help="A recorded attribution run: its model, manifest and settings"),
    ],
    outputs: Annotated[
        Path,
        typer.Option(
            help='JSON lines: {"output_id", "model_id", "revenue", "currency", "occurred_at", and "text", '
            '"image_base64" or "path"}'
        ),
    ],
    agreement: Annotated[str, typer.Option(help="Agreement id (its newest version): its credit shares and split")],
    batch_id: Annotated[str, typer.Option(help="Idempotency id: usage batches are BATCH_ID-1, BATCH_ID-2, ...")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="The model checkpoint (default: the model's in the data directory)")
    ] = None,
    model_kind: ModelKindOpt = "charlm",
    batch_outputs: Annotated[int, typer.Option(help="Outputs featurized and scored together (one Ray task)")] = 32,
    usage_outputs: Annotated[int, typer.Option(help="Outputs per recorded run and usage batch")] = 1024,
    ray: RayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Attribute outputs in batches with a recorded run's model and settings, every payee scored, and accrue
    them in process: each usage batch names the run that recorded its scores."""
    from endcredits.ledger.worker import attribute_and_accrue

    outs, contents = read_priced_outputs(outputs)
    with open_store_of(ctx) as store, progress_bar("attributing outputs", len(outs)) as advance:
        report = attribute_and_accrue(
            store, run, outs, contents, agreement_id=agreement, batch_id=batch_id, checkpoint=checkpoint,
            model_kind=model_kind, batch_outputs=batch_outputs, usage_outputs=usage_outputs, ray=ray,
            progress=lambda done, _total: advance(done),
        )  # fmt: skip
    _render(report.to_json(), as_json)


def _render(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    statuses = [b["status"] for b in summary["batches"]]
    make_console().print(
        f"attributed {summary['outputs']} outputs in batches of {summary['batch_outputs']} ({summary['runner']}): "
        f"{summary['outputs_per_s']} outputs/s, {summary['outputs_per_s_end_to_end']} outputs/s with recording "
        f"and accrual; {len(statuses)} usage batches ({statuses.count('created')} created), on attribution runs "
        f"{', '.join(summary['attribution_run_ids'])}",
        highlight=False,
    )
