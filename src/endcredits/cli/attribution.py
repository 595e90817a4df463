"""`featurize` and `attribute`: the manifest's works featurized once, and outputs scored against them."""

from __future__ import annotations

import base64
import binascii
import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from endcredits.attribution.settings import AttributionSettings, SettingError
from endcredits.cli.common import JsonOpt, make_console, open_store_of, print_json, progress_bar
from endcredits.errors import ValidationError

if TYPE_CHECKING:
    from endcredits.attribution.featurizer import Progress
    from endcredits.attribution.models import AttributionModel
    from endcredits.attribution.pipeline import Attribution, Output
    from endcredits.manifest.records import ManifestRecord
    from endcredits.royalties.payees import PayeeScores
    from endcredits.store.engine import Store

OUTPUT_BYTES_MAX = 64 << 20
"""Largest output one --outputs line may give (text, image or file)."""
NAMES_SHOWN_MAX = 10
"""Excluded parameter names printed by ``featurize`` (``--json`` lists them all)."""

RayOpt = Annotated[str | None, typer.Option("--ray", help="Run shards as Ray tasks: 'auto' or a cluster address")]

OPTION_OF = {
    "k": "--k",
    "projection": "--projection",
    "exclude": "--exclude",
    "seed": "--seed",
    "chunk_size": "--chunk-size",
    "length_chars": "--length-chars",
    "ensemble": "--ensemble",
    "timesteps": "--timesteps",
    "measurement": "--measurement",
    "method": "--method",
    "lambda_": "--lambda",
    "top_k": "--top-k",
}
"""Each ``AttributionSettings`` field's option: same name, same default, the field's help and check."""


def _option(name: str) -> Any:
    return typer.Option(OPTION_OF[name], help=AttributionSettings.help(name))


S = AttributionSettings
KOpt = Annotated[int, _option("k")]
ProjectionOpt = Annotated[str, _option("projection")]
ExcludeOpt = Annotated[
    list[str] | None, typer.Option(OPTION_OF["exclude"], metavar="PATTERN", help=AttributionSettings.help("exclude"))
]
SeedOpt = Annotated[int, _option("seed")]
ChunkSizeOpt = Annotated[int, _option("chunk_size")]
LengthCharsOpt = Annotated[int, _option("length_chars")]
EnsembleOpt = Annotated[str, _option("ensemble")]
TimestepsOpt = Annotated[int, _option("timesteps")]
MeasurementOpt = Annotated[str, _option("measurement")]
CheckpointOpt = Annotated[
    Path,
    typer.Option(
        help="The model checkpoint: a save_lm file (charlm), a save_pretrained folder (hf-causal-lm, "
        "diffusers-unet), or what --model-kind's function loads"
    ),
]
ModelKindOpt = Annotated[
    str,
    typer.Option(
        "--model-kind",
        help="charlm, hf-causal-lm, diffusers-unet, or module:function returning an AttributionModel",
    ),
]


def settings_of(options: dict[str, Any]) -> AttributionSettings:
    """The settings a command's options name (its ``locals()``: every option of ``OPTION_OF`` it has); an
    option out of range is refused by its own name."""
    values = {name: options[name] for name in OPTION_OF if name in options}
    if "exclude" in values:
        values["exclude"] = values["exclude"] or []
    try:
        return AttributionSettings.from_dict(values)
    except SettingError as exc:
        raise ValidationError(f"{OPTION_OF[exc.field]} {exc.problem}") from None


def featurize_cmd(
    ctx: typer.Context,
    checkpoint: CheckpointOpt,
    manifest: Annotated[str, typer.Option(help="The manifest the model was trained on")],
    model_kind: ModelKindOpt = "charlm",
    k: KOpt = S.k,
    projection: ProjectionOpt = S.projection,
    exclude: ExcludeOpt = None,
    seed: SeedOpt = S.seed,
    chunk_size: ChunkSizeOpt = S.chunk_size,
    length_chars: LengthCharsOpt = S.length_chars,
    ensemble: EnsembleOpt = S.ensemble,
    timesteps: TimestepsOpt = S.timesteps,
    measurement: MeasurementOpt = S.measurement,
    ray: RayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Featurize every work in the manifest once (projected gradients, memory-mapped); resumable."""
    from endcredits.attribution.pipeline import bound_checkpoint, featurize_manifest

    settings = settings_of(locals())
    with open_store_of(ctx) as store:
        model, m = bound_checkpoint(store, manifest, checkpoint, kind=model_kind)
        with progress_bar("featurizing works", len(m.included)) as advance:
            fs = featurize_manifest(store, m, model, settings=settings, ray=ray, progress=lambda d, _t: advance(d))
    coverage = fs.manifest["coverage"]
    if as_json:
        print_json(
            {
                "manifest_id": m.id,
                "works": len(fs.ids),
                "dim": fs.manifest["dim"],
                "directory": str(fs.directory),
                "settings": settings.to_dict() | {"projection": fs.manifest["projection"]},
                "coverage": coverage,
            }
        )
        return
    console = make_console()
    console.print(f"features of {len(fs.ids)} works ({fs.manifest['dim']} dims) in {fs.directory}")
    console.print(coverage_line(coverage), highlight=False)


def coverage_line(coverage: dict[str, Any]) -> str:
    """The share of the model's parameters the features cover, by path, and the names left out."""
    names = coverage["excluded_names"]
    shown = ", ".join(names[:NAMES_SHOWN_MAX]) + (
        f" and {len(names) - NAMES_SHOWN_MAX} more" if len(names) > NAMES_SHOWN_MAX else ""
    )
    paths = ", ".join(f"{path} {coverage[path]:,}" for path in ("kronecker", "exact", "projected") if coverage[path])
    return (
        f"covers {coverage['covered']:,} of {coverage['parameters']:,} parameters"
        f" ({100 * coverage['share_covered']:.2f}%: {paths}); excluded by name: {shown or 'none'}"
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
    return [(obj["output_id"], content) for obj, content, _ in read_output_lines(path)]


def read_output_lines(path: Path) -> list[tuple[dict[str, Any], bytes, str]]:
    """Each JSON line of ``path`` with an ``output_id``: (the object, the output's bytes, where it is)."""
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
        lines.append((obj, _output_bytes(obj, path.parent, where), where))
    return lines


def attribute_cmd(
    ctx: typer.Context,
    checkpoint: CheckpointOpt,
    outputs: Annotated[
        Path,
        typer.Option(
            help='JSON lines: {"output_id": ..., "text": ...}, or "image_base64" or "path" (an image file) '
            "instead of text"
        ),
    ],
    out: Annotated[Path, typer.Option(help="Where to write output_id, work_id, score (CSV)")],
    manifest: Annotated[str, typer.Option(help="The manifest the model was trained on")],
    model_kind: ModelKindOpt = "charlm",
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
    explain: Annotated[Path | None, typer.Option(help="Also write each output's top works here (JSON lines)")] = None,
    top_k: Annotated[int, _option("top_k")] = S.top_k,
    ray: RayOpt = None,
    per_payee: Annotated[
        str | None,
        typer.Option(
            "--per-payee",
            metavar="AGREEMENT",
            help="Write output_id, payee, score instead: every payee's exact score through Psi = W^T G, with the "
            "credit shares of this agreement",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score each output against every work in the manifest (TRAK by default); features are reused."""
    from endcredits.attribution.pipeline import bound_checkpoint
    from endcredits.royalties.payees import attribute_and_keep

    settings = settings_of(locals())
    if per_payee is not None and (explain is not None or ray is not None):
        raise ValidationError("--per-payee writes payee scores only; run without --explain and --ray")
    lines = read_outputs(outputs)
    with open_store_of(ctx) as store:
        model, m = bound_checkpoint(store, manifest, checkpoint, kind=model_kind)
        with progress_bar("featurizing works", len(m.included)) as advance:
            if per_payee is not None:
                ps = _per_payee(store, m, model, lines, per_payee, settings, lambda d, _t: advance(d))
            else:
                att = attribute_and_keep(
                    store, m, model, lines, settings=settings, ray=ray, progress=lambda d, _t: advance(d)
                )
    if per_payee is not None:
        rows = _write_payee_scores(out, ps)
        summary = {"manifest_id": m.id, "outputs": len(lines), "scores": rows, "per": "payee", "method": ps.method}
        text = f"wrote {rows} non-zero {ps.method} payee scores for {len(lines)} outputs to {out}"
    else:
        _write_work_scores(out, att, explain)
        rows = len(lines) * len(m.included)
        summary = {"manifest_id": m.id, "outputs": len(lines), "scores": rows, "per": "work", "method": att.method}
        summary |= {"weaker": att.weaker, "explain": str(explain) if explain else None}
        text = f"wrote {rows} {att.method} scores{' (a weaker method)' if att.weaker else ''} to {out}"
        text += f"; top {top_k} works per output to {explain}" if explain else ""
    run_id = ps.run_id if per_payee is not None else att.run_id
    used = ps.settings if per_payee is not None else att.settings  # projection "auto" resolved
    _report_run(out, str(run_id), {**summary, "out": str(out), "settings": used.to_dict()}, text, as_json)


def _per_payee(
    store: Store,
    manifest: ManifestRecord,
    model: AttributionModel,
    lines: list[Output],
    agreement_id: str,
    settings: AttributionSettings,
    progress: Progress,
) -> PayeeScores:
    from endcredits.royalties.payees import attribute_manifest_payees
    from endcredits.royalties.records import load_agreement

    with store.read() as conn:
        agreement = load_agreement(conn, agreement_id)
    return attribute_manifest_payees(store, manifest, model, lines, agreement, settings=settings, progress=progress)


def _report_run(out: Path, run_id: str, summary: dict[str, Any], text: str, as_json: bool) -> None:
    """The recorded run's id, printed and written beside the scores (``OUT.run.json``): what
    ``endcredits accrue --run`` takes."""
    note = out.with_suffix(".run.json")
    summary = {**summary, "attribution_run_id": run_id, "run_file": str(note)}
    note.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if as_json:
        print_json(summary)
    else:
        make_console().print(f"{text}; attribution run {run_id} (accrue it with --run {run_id}), noted in {note}")


def _write_payee_scores(out: Path, ps: PayeeScores) -> int:
    """``output_id, payee, score`` for every non-zero score; returns how many rows."""
    rows = ps.nonzero()
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["output_id", "payee", "score"])
        w.writerows([oid, payee, repr(score)] for oid, payee, score in rows)
    return len(rows)


def _write_work_scores(out: Path, att: Attribution, explain: Path | None) -> None:
    """``output_id, work_id, score`` for every pair, and each output's top works to ``explain``."""
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["output_id", "work_id", "score"])
        for i, oid in enumerate(att.output_ids):
            w.writerows([oid, wid, repr(float(att.scores[i, j]))] for j, wid in enumerate(att.work_ids))
    if explain is not None:
        with explain.open("w", encoding="utf-8") as f:
            for i, oid in enumerate(att.output_ids):
                top = [{"work_id": w_, "score": s_} for w_, s_ in att.top_works(i)]
                f.write(json.dumps({"output_id": oid, "method": att.method, "weaker": att.weaker, "top_works": top}))
                f.write("\n")
