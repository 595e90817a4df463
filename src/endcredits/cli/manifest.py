"""`manifest` and `manifest run`: what one model was trained on, Merkle-committed, and its training runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from endcredits.cli.common import (
    JsonOpt,
    LimitOpt,
    make_console,
    open_store_of,
    print_json,
    print_table,
    time_option,
)
from endcredits.errors import ValidationError
from endcredits.money import format_amount

manifest_app = typer.Typer(no_args_is_help=True, help="Manifests: what one model was trained on, Merkle-committed.")


run_app = typer.Typer(
    no_args_is_help=True, help="Training runs: the model, its checkpoints' SHA-256s and the manifest root."
)


manifest_app.add_typer(run_app, name="run")


@manifest_app.command("build")
def manifest_build(
    ctx: typer.Context,
    model: Annotated[str, typer.Option()],
    use: Annotated[
        list[str], typer.Option(help="Repeat for each use, e.g. --use ai_generative_training --use commercial")
    ],
    default: Annotated[
        str, typer.Option(help="Operator default where no grant decides: opt-in or opt-out (no default: say it)")
    ],
    as_of: Annotated[str | None, typer.Option()] = None,
    project: Annotated[
        str | None, typer.Option(help="The project the model is built for: likeness grants count only for theirs")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide every registered work for the model's uses and commit to the included ones."""
    from endcredits.manifest.build import build_manifest

    with open_store_of(ctx) as store:
        m = build_manifest(
            store,
            model_id=model,
            uses=use,
            as_of=time_option(as_of, "--as-of"),
            default=default,  # type: ignore[arg-type]
            project=project,
        )
    data = {
        "manifest_id": m.id,
        "model": m.model_id,
        "project": m.project,
        "uses": list(m.uses),
        "as_of": m.as_of,
        "merkle_root": m.merkle_root,
        "included": len(m.included),
        "excluded": len(m.excluded),
    }
    print_json(data) if as_json else make_console().print(
        f"manifest {m.id}: {len(m.included)} works included, {len(m.excluded)} excluded, root {m.merkle_root}"
    )


@manifest_app.command("list")
def manifest_list(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option()] = None,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """Manifests, newest first, with their roots and counts."""
    from endcredits.manifest.records import manifests_list

    with open_store_of(ctx) as store, store.read() as conn:
        listed = manifests_list(conn, model_id=model, limit=limit)
    data = [
        {
            "manifest_id": m.id,
            "model": m.model_id,
            "uses": list(m.uses),
            "as_of": m.as_of,
            "merkle_root": m.merkle_root,
            "included": m.included_count,
            "excluded": m.excluded_count,
        }
        for m in listed
    ]
    if as_json:
        print_json({"manifests": data})
    else:
        print_table(
            "manifests",
            ["id", "model", "as of", "root", "included", "excluded"],
            [[m.id, m.model_id, m.as_of, m.merkle_root[:16], m.included_count, m.excluded_count] for m in listed],
        )


@manifest_app.command("show")
def manifest_show(
    ctx: typer.Context,
    manifest_id: str,
    works: Annotated[bool, typer.Option("--works", help="Also list the included works (ids, titles)")] = False,
    limit: LimitOpt = 1_000,
    as_json: JsonOpt = False,
) -> None:
    """A manifest's root, counts and excluded works with reasons; with --works, its included works in
    leaf order (at most --limit)."""
    from endcredits.attribution.validity_records import latest_validity
    from endcredits.manifest.records import load_manifest, manifest_works

    with open_store_of(ctx) as store, store.read() as conn:
        m = load_manifest(conn, manifest_id)
        listed = manifest_works(conn, manifest_id, limit=limit) if works else []
        validity = latest_validity(conn, m.model_id)
    data: dict[str, Any] = {
        "manifest_id": m.id,
        "model": m.model_id,
        "uses": list(m.uses),
        "as_of": m.as_of,
        "merkle_root": m.merkle_root,
        "checkpoint_sha256": m.checkpoint_sha256,
        "included": len(m.included),
        "excluded": [{"work": w, "reason": r} for w, r in m.excluded],
        "model_validity": None if validity is None else validity.to_json(),
    }
    if works:
        data["works"] = [{"leaf": i, "work_id": w, "title": t} for i, w, t in listed]
    if as_json:
        print_json(data)
        return
    console = make_console()
    console.print(f"manifest {m.id} for model {m.model_id} ({', '.join(m.uses)}) as of {m.as_of}")
    console.print(f"root {m.merkle_root}; {len(m.included)} included; {len(m.excluded)} excluded")
    if validity is not None:
        console.print(f"validity of model {m.model_id}: {validity.sentence()} (measured {validity.measured_at})")
    for w, r in m.excluded[:20]:
        console.print(f"  excluded {w[:16]}: {r}")
    if works:
        print_table(
            f"included works ({len(listed)} of {len(m.included)})",
            ["leaf", "work", "title"],
            [[i, w[:16], t] for i, w, t in listed],
        )


@manifest_app.command("prove")
def manifest_prove(ctx: typer.Context, manifest_id: str, work_id: str) -> None:
    """Print a JSON proof that a work is (or is not) in a manifest; check it with `manifest check`."""
    from endcredits.manifest.merkle import proof_to_json, prove_exclusion, prove_inclusion
    from endcredits.manifest.records import load_manifest

    with open_store_of(ctx) as store, store.read() as conn:
        m = load_manifest(conn, manifest_id)
    proof = prove_inclusion(m.included, work_id) if work_id in set(m.included) else prove_exclusion(m.included, work_id)
    print_json({"manifest_id": m.id, "root": m.merkle_root, "proof": proof_to_json(proof)})


@manifest_app.command("check")
def manifest_check(
    proof_file: Path,
    root: Annotated[str | None, typer.Option(help="The published root (default: the file's)")] = None,
    works: Annotated[int | None, typer.Option(help="The published number of works in the manifest")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a proof from `manifest prove` against a published root. Needs no database; a proof that does
    not check exits 1."""
    from endcredits.manifest.merkle import ExclusionProof, proof_from_json, verify_exclusion, verify_inclusion

    try:
        data = json.loads(proof_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{proof_file} is not a proof file: {exc}") from None
    expected = root or data.get("root", "")
    proof = proof_from_json(data.get("proof", data))
    if isinstance(proof, ExclusionProof):
        ok, what = verify_exclusion(expected, proof, leaf_count=works), "excluded from"
    else:
        ok, what = verify_inclusion(expected, proof, leaf_count=works), "included in"
    if not ok:
        raise ValidationError(f"proof does not check against root {expected}")
    if as_json:
        print_json({"valid": True, "work_id": proof.work_id, "included": what == "included in", "root": expected})
    else:
        make_console().print(f"valid: work {proof.work_id} is {what} the manifest with root {expected}")


def _run_json(r: Any) -> dict[str, Any]:
    return {
        "run_id": r.id,
        "model": r.model_id,
        "manifest_id": r.manifest_id,
        "merkle_root": r.merkle_root,
        "checkpoint_sha256s": list(r.checkpoint_sha256s),
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "recorded_at": r.recorded_at,
    }


@run_app.command("record")
def run_record(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Option("--run", help="The run's id (idempotency key)")],
    manifest: Annotated[str, typer.Option(help="The manifest the run trained on")],
    started: Annotated[str, typer.Option(help="When training started (ISO-8601)")],
    finished: Annotated[str, typer.Option(help="When training finished (ISO-8601)")],
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(help="A checkpoint (file or folder) to load and hash as --model-kind; repeat for each"),
    ] = None,
    model_kind: Annotated[
        str,
        typer.Option(help="How to load --checkpoint: charlm, hf-causal-lm, diffusers-unet or module:function"),
    ] = "charlm",
    checkpoint_sha256: Annotated[
        list[str] | None,
        typer.Option(help="A checkpoint's model checksum, computed elsewhere the same way; repeat for each"),
    ] = None,
    model: Annotated[str | None, typer.Option(help="The model; must be the manifest's")] = None,
    agreement: Annotated[
        str | None,
        typer.Option(help="Agreement id: post the training fees the manifest's licence terms price, once"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a training run: which checkpoints the manifest's model produced from exactly that manifest.

    A checkpoint is hashed the one way the attribution engine checks it when it loads one (the model's
    config and tensors, never its files), so the run names the model attribution will accept. With
    --agreement, the training fees the manifest owes under it (RSL payment type "training") are posted in
    the same transaction, once per manifest (as `endcredits ledger training-fees`)."""
    from endcredits.ledger.training_fees import record_training
    from endcredits.royalties.records import load_agreement

    hashes = []
    if checkpoint:
        from endcredits.attribution.models import load_model

        hashes = [load_model(path, model_kind).checksum() for path in checkpoint]
    hashes += list(checkpoint_sha256 or [])
    started_at, finished_at = time_option(started, "--started"), time_option(finished, "--finished")
    with open_store_of(ctx) as store:
        with store.read() as conn:
            terms = load_agreement(conn, agreement) if agreement is not None else None
        r, fees = record_training(
            store,
            run_id=run_id,
            manifest_id=manifest,
            checkpoint_sha256s=hashes,
            started_at=started_at,
            finished_at=finished_at,
            agreement=terms,
            model_id=model,
        )
    if as_json:
        print_json(_run_json(r) | ({"training_fees": fees.to_json()} if fees is not None else {}))
        return
    console = make_console()
    console.print(
        f"training run {r.id}: model {r.model_id}, manifest {r.manifest_id} (root {r.merkle_root}), "
        f"{len(r.checkpoint_sha256s)} checkpoints"
    )
    if fees is not None:
        owed = format_amount(fees.total_microunits, fees.currency)
        console.print(f"training fees: {fees.status}; {owed} {fees.currency} for {fees.works} works ({fees.event_id})")


@run_app.command("list")
def run_list(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option()] = None,
    manifest: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Recorded training runs, newest first, with their manifest roots and checkpoint hashes."""
    from endcredits.manifest.records import training_runs_list

    with open_store_of(ctx) as store, store.read() as conn:
        runs = training_runs_list(conn, model_id=model, manifest_id=manifest, limit=limit)
    if as_json:
        print_json({"runs": [_run_json(r) for r in runs]})
    else:
        print_table(
            "training runs",
            ["run", "model", "manifest", "root", "checkpoints", "finished"],
            [
                [r.id, r.model_id, r.manifest_id, r.merkle_root[:16], len(r.checkpoint_sha256s), r.finished_at]
                for r in runs
            ],
        )
