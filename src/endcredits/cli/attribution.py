"""`featurize` and `attribute`: the manifest's works featurized once, and outputs scored against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from endcredits.cli.common import (
    make_console,
    open_store_of,
    progress_bar,
)
from endcredits.errors import ValidationError

RayOpt = Annotated[str | None, typer.Option("--ray", help="Run shards as Ray tasks: 'auto' or a cluster address")]


def featurize_cmd(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Option(help="The model checkpoint (from the demo, or save_lm)")],
    manifest: Annotated[str, typer.Option(help="The manifest the model was trained on")],
    k: Annotated[int, typer.Option(min=8, max=65_536)] = 1_024,
    seed: int = 0,
    ray: RayOpt = None,
) -> None:
    """Featurize every work in the manifest once (projected gradients, memory-mapped); resumable."""
    from endcredits.attribution.texts import bound_checkpoint, featurize_manifest

    with open_store_of(ctx) as store:
        lm, m = bound_checkpoint(store, manifest, checkpoint)
        with progress_bar("featurizing works", len(m.included)) as advance:
            fs = featurize_manifest(store, m, lm, k=k, seed=seed, ray=ray, progress=lambda d, _t: advance(d))
    make_console().print(f"features of {len(fs.ids)} works ({fs.manifest['dim']} dims) in {fs.directory}")


def _read_text_outputs(path: Path) -> list[tuple[str, str]]:
    lines = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.strip():
            try:
                obj = json.loads(line)
                lines.append((str(obj["output_id"]), str(obj["text"])))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValidationError(f'{path} line {i + 1} is not {{"output_id": ..., "text": ...}}') from None
    return lines


def attribute_cmd(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Option(help="The model checkpoint (from the demo, or save_lm)")],
    outputs: Annotated[Path, typer.Option(help='JSON lines: {"output_id": ..., "text": ...}')],
    out: Annotated[Path, typer.Option(help="Where to write output_id, work_id, score (CSV)")],
    manifest: Annotated[str, typer.Option(help="The manifest the model was trained on")],
    k: Annotated[int, typer.Option(min=8, max=65_536)] = 1_024,
    seed: int = 0,
    method: Annotated[str, typer.Option(help="trak (default) or tracin")] = "trak",
    explain: Annotated[Path | None, typer.Option(help="Also write each output's top works here (JSON lines)")] = None,
    top_k: Annotated[int, typer.Option(min=1, max=1_000)] = 5,
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
) -> None:
    """Score each output against every work in the manifest (TRAK by default); features are reused."""
    import csv

    from endcredits.attribution.texts import METHODS, attribute_manifest, bound_checkpoint

    if method not in METHODS:
        raise ValidationError(f"--method must be one of {', '.join(METHODS)}")
    if per_payee is not None and (explain is not None or ray is not None):
        raise ValidationError("--per-payee writes payee scores only; run without --explain and --ray")
    lines = _read_text_outputs(outputs)
    with open_store_of(ctx) as store:
        lm, m = bound_checkpoint(store, manifest, checkpoint)
        with progress_bar("featurizing works", len(m.included)) as advance:
            if per_payee is not None:
                from endcredits.royalties.payees import attribute_manifest_payees
                from endcredits.royalties.records import load_agreement

                with store.read() as conn:
                    agreement = load_agreement(conn, per_payee)
                ps = attribute_manifest_payees(
                    store, m, lm, lines, agreement, k=k, seed=seed, method=method, progress=lambda d, _t: advance(d)
                )
            else:
                att = attribute_manifest(
                    store,
                    m,
                    lm,
                    lines,
                    k=k,
                    seed=seed,
                    method=method,
                    top_k=top_k,
                    ray=ray,
                    progress=lambda d, _t: advance(d),
                )
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        if per_payee is not None:
            w.writerow(["output_id", "payee", "score"])
            rows = ps.nonzero()
            w.writerows([oid, payee, repr(score)] for oid, payee, score in rows)
            make_console().print(f"wrote {len(rows)} non-zero {method} payee scores for {len(lines)} outputs to {out}")
            return
        w.writerow(["output_id", "work_id", "score"])
        for i, oid in enumerate(att.output_ids):
            w.writerows([oid, wid, repr(float(att.scores[i, j]))] for j, wid in enumerate(att.work_ids))
    if explain is not None:
        with explain.open("w", encoding="utf-8") as f:
            for i, oid in enumerate(att.output_ids):
                top = [{"work_id": w_, "score": s_} for w_, s_ in att.top_works(i)]
                f.write(json.dumps({"output_id": oid, "method": att.method, "weaker": att.weaker, "top_works": top}))
                f.write("\n")
    weaker = " (a weaker method)" if att.weaker else ""
    make_console().print(
        f"wrote {len(lines) * len(m.included)} {att.method} scores{weaker} to {out}"
        + (f"; top {top_k} works per output to {explain}" if explain else "")
    )
