"""``endcredits interop``: provenance and consent formats in and out.

Imports (C2PA, Croissant, TDMRep, IPTC XMP, ai.txt, RSL, AI Preferences, Content-Signal) each run in one
transaction: on any error nothing is written. The root command's options (``--data``, ``--db``) arrive in
``ctx.obj``; errors endcredits raises on purpose become one line and exit status 1 in the root group.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from endcredits.cli.common import print_json
from endcredits.errors import ValidationError
from endcredits.interop._common import SIGNAL_VALID_DAYS_DEFAULT, ImportReport, Window
from endcredits.store.engine import open_store, parse_time

interop_app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Provenance and consent formats in and out: C2PA, Croissant, TDMRep, IPTC plus:DataMining, ai.txt, "
        "RSL licences, AI Preferences and Content-Signal."
    ),
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]
WorkOpt = Annotated[str, typer.Option("--work", help="The registered work (its SHA-256) the signal is about.")]
LocationOpt = Annotated[
    str | None,
    typer.Option(
        "--location", help="The work's URL or path, matched against the file's rules (default: the work's source)."
    ),
]
FromOpt = Annotated[str | None, typer.Option("--from", help="Grants hold from this time, ISO-8601 (default: now).")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Grants hold until this time, ISO-8601.")]
DaysOpt = Annotated[
    int,
    typer.Option(
        "--days", help="Without --until or --perpetual: grants hold this many days; re-import the signal to renew."
    ),
]
PerpetualOpt = Annotated[bool, typer.Option("--perpetual", help="Grants hold in perpetuity (an explicit term).")]


def _store(ctx: typer.Context) -> Any:
    obj = ctx.find_root().obj
    return open_store(getattr(obj, "data", None), getattr(obj, "db", None))


def grant_window(valid_from: str | None, until: str | None, days: int, perpetual: bool) -> Window:
    start = dt.datetime.now(dt.UTC) if valid_from is None else parse_time(valid_from)
    if perpetual and until is not None:
        raise ValidationError("give --until or --perpetual, not both")
    if perpetual:
        return Window(start, None, True)
    if until is not None:
        return Window(start, parse_time(until))
    return Window.days(start, days)


def _print(report: ImportReport, as_json: bool) -> None:
    if as_json:
        print_json(report.summary())
        return
    sys.stdout.write(
        f"{report.kind} {report.source}: {report.works_added} works, {report.credits_added} credits, "
        f"{report.lineage_added} lineage links, {report.grants_added} grants added "
        f"({report.grants_unchanged} already in force), {report.terms_added} licence terms added\n"
    )
    for work_id in report.work_ids[:20]:
        sys.stdout.write(f"  work {work_id}\n")
    for note in report.notes:
        sys.stdout.write(f"  note: {note}\n")


def _text(path: Path) -> str:
    from endcredits.interop._common import decode_text, read_bounded

    return decode_text(read_bounded(path, "signal file"), str(path.name))


def _location(store: Any, work: str, location: str | None) -> str | None:
    from endcredits.interop._common import work_source

    source = work_source(store, work)
    return location if location is not None else source


# Imports -------------------------------------------------------------------------------------------
@interop_app.command("import-c2pa")
def import_c2pa_cmd(
    ctx: typer.Context,
    file: Path,
    trust: Annotated[
        Path | None, typer.Option("--trust", help="PEM file of trust anchors; the signer must chain to one.")
    ] = None,
    valid_from: FromOpt = None,
    until: UntilOpt = None,
    days: DaysOpt = SIGNAL_VALID_DAYS_DEFAULT,
    perpetual: PerpetualOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Read an asset's C2PA manifests: training-and-data-mining into grants, credits, ingredient lineage."""
    from endcredits.interop._common import read_bounded
    from endcredits.interop.c2pa_manifests import import_c2pa

    anchors = None if trust is None else read_bounded(trust, "trust anchor file").decode("ascii", errors="replace")
    window = grant_window(valid_from, until, days, perpetual)
    store = _store(ctx)
    try:
        _print(import_c2pa(store, file, window, trust_anchors_pem=anchors), as_json)
    finally:
        store.dispose()


@interop_app.command("import-croissant")
def import_croissant_cmd(
    ctx: typer.Context,
    file: Path,
    record_set: Annotated[
        str | None,
        typer.Option("--record-set", help="Register this record set's records as works (default: the files)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a Croissant dataset's files or records as works, crediting its creators and data labelers."""
    from endcredits.interop.croissant import import_croissant

    store = _store(ctx)
    try:
        _print(import_croissant(store, file, record_set=record_set), as_json)
    finally:
        store.dispose()


@interop_app.command("import-tdmrep")
def import_tdmrep_cmd(
    ctx: typer.Context,
    files: list[Path],
    work: WorkOpt,
    location: LocationOpt = None,
    valid_from: FromOpt = None,
    until: UntilOpt = None,
    days: DaysOpt = SIGNAL_VALID_DAYS_DEFAULT,
    perpetual: PerpetualOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """W3C TDMRep into grants: a tdmrep.json, HTTP header lines and/or an HTML page, in that priority order."""
    from endcredits.interop.optout import import_signals, tdmrep_combined, tdmrep_from_text

    window = grant_window(valid_from, until, days, perpetual)
    store = _store(ctx)
    try:
        where = _location(store, work, location)
        signals = [tdmrep_from_text(_text(f), name=f.name, location=where) for f in files]
        _print(import_signals(store, work, [tdmrep_combined(signals)], window, kind="tdmrep"), as_json)
    finally:
        store.dispose()


@interop_app.command("import-xmp")
def import_xmp_cmd(
    ctx: typer.Context,
    file: Path,
    work: WorkOpt,
    valid_from: FromOpt = None,
    until: UntilOpt = None,
    days: DaysOpt = SIGNAL_VALID_DAYS_DEFAULT,
    perpetual: PerpetualOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """IPTC plus:DataMining from an XMP sidecar or a file that embeds XMP, into grants."""
    from endcredits.interop._common import IMPORT_FILE_BYTES_MAX, read_bounded
    from endcredits.interop.optout import import_signals, xmp_signal

    window = grant_window(valid_from, until, days, perpetual)
    signal = xmp_signal(read_bounded(file, "XMP file", IMPORT_FILE_BYTES_MAX), name=file.name)
    store = _store(ctx)
    try:
        _print(import_signals(store, work, [signal], window, kind="xmp"), as_json)
    finally:
        store.dispose()


@interop_app.command("import-ai-txt")
def import_ai_txt_cmd(
    ctx: typer.Context,
    file: Path,
    work: WorkOpt,
    location: LocationOpt = None,
    agent: Annotated[str, typer.Option("--agent", help="The User-Agent whose rules apply.")] = "*",
    valid_from: FromOpt = None,
    until: UntilOpt = None,
    days: DaysOpt = SIGNAL_VALID_DAYS_DEFAULT,
    perpetual: PerpetualOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Spawning's ai.txt (Allow/Disallow by path or file type) into AI-training grants."""
    from endcredits.interop.optout import ai_txt_signal, import_signals

    window = grant_window(valid_from, until, days, perpetual)
    store = _store(ctx)
    try:
        where = _location(store, work, location)
        if where is None:
            raise ValidationError(f"work {work} has no registered source: give --location (its URL or path)")
        signal = ai_txt_signal(_text(file), where, name=file.name, agent=agent)
        _print(import_signals(store, work, [signal], window, kind="ai.txt"), as_json)
    finally:
        store.dispose()


@interop_app.command("import-rsl")
def import_rsl_cmd(
    ctx: typer.Context,
    file: Path,
    work: WorkOpt,
    location: LocationOpt = None,
    via: Annotated[
        Path | None,
        typer.Option("--via", help="The robots.txt, HTML page or HTTP header lines that named this licence."),
    ] = None,
    valid_from: FromOpt = None,
    until: UntilOpt = None,
    days: DaysOpt = SIGNAL_VALID_DAYS_DEFAULT,
    perpetual: PerpetualOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """RSL 1.0 licence XML into grants per use and, where a price is stated, licence terms on the work."""
    from endcredits.interop.licences import import_licences, licence_links, rsl_reading

    window = grant_window(valid_from, until, days, perpetual)
    found = "; ".join(licence_links(_text(via), name=via.name)) if via is not None else ""
    if via is not None and not found:
        raise ValidationError(f"{via.name} names no licence (no License: line, rel=license link or Link header)")
    store = _store(ctx)
    try:
        where = _location(store, work, location)
        if where is None:
            raise ValidationError(f"work {work} has no registered source: give --location (its URL or path)")
        reading = rsl_reading(_text(file), where, name=file.name, work_id=work, window=window, found_via=found)
        _print(import_licences(store, work, [reading], window, kind="rsl"), as_json)
    finally:
        store.dispose()


@interop_app.command("import-ai-preferences")
def import_ai_preferences_cmd(
    ctx: typer.Context,
    files: list[Path],
    work: WorkOpt,
    location: LocationOpt = None,
    agent: Annotated[str, typer.Option("--agent", help="The User-Agent whose robots.txt rules apply.")] = "*",
    valid_from: FromOpt = None,
    until: UntilOpt = None,
    days: DaysOpt = SIGNAL_VALID_DAYS_DEFAULT,
    perpetual: PerpetualOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """AI Preferences (Content-Usage) and Content-Signal from robots.txt files or HTTP header lines, into
    grants; the most restrictive wins across them and every source is kept."""
    from endcredits.interop.licences import import_licences, preference_readings

    window = grant_window(valid_from, until, days, perpetual)
    store = _store(ctx)
    try:
        where = _location(store, work, location)
        if where is None:
            raise ValidationError(f"work {work} has no registered source: give --location (its URL or path)")
        readings = [r for f in files for r in preference_readings(_text(f), where, name=f.name, agent=agent)]
        _print(import_licences(store, work, readings, window, kind="ai-preferences"), as_json)
    finally:
        store.dispose()


# Exports -------------------------------------------------------------------------------------------
@interop_app.command("export-croissant")
def export_croissant_cmd(
    ctx: typer.Context,
    manifest: Annotated[str, typer.Option("--manifest", help="The manifest id.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the JSON-LD.")],
    as_json: JsonOpt = False,
) -> None:
    """Write a manifest as Croissant JSON-LD: a dataset whose distribution lists its works by SHA-256."""
    from endcredits.interop.croissant import export_croissant

    store = _store(ctx)
    try:
        document = export_croissant(store, manifest)
    finally:
        store.dispose()
    out.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    works = len(document.get("distribution", []))
    if as_json:
        print_json({"manifest_id": manifest, "out": str(out), "works": works})
    else:
        sys.stdout.write(f"wrote {out} ({works} works)\n")


@interop_app.command("sign-c2pa")
def sign_c2pa_cmd(
    ctx: typer.Context,
    work_id: str,
    asset: Annotated[Path, typer.Option("--asset", help="The work's registered content.")],
    cert: Annotated[Path, typer.Option("--cert", help="PEM certificate chain, signer first.")],
    key: Annotated[Path, typer.Option("--key", help="PEM private key of the signer.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the signed asset.")],
    alg: Annotated[str, typer.Option("--alg", help="es256, es384, es512, ps256 or ed25519.")] = "es256",
    parent: Annotated[Path | None, typer.Option("--parent", help="A parentOf ingredient asset.")] = None,
    component: Annotated[
        list[Path] | None, typer.Option("--component", help="A componentOf ingredient asset. Repeatable.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed a signed C2PA manifest (work id, consent in force, credits) in a registered work's asset."""
    import mimetypes

    from endcredits.interop._common import IMPORT_FILE_BYTES_MAX, read_bounded
    from endcredits.interop.c2pa_manifests import Ingredient, SigningKey, sign_work

    def mime_of(path: Path) -> str:
        mime = mimetypes.guess_type(path.name)[0]
        if mime is None:
            raise ValidationError(f"cannot tell the media type of {path.name} from its extension (.png, .jpg, ...)")
        return mime

    ingredients = [
        Ingredient(read_bounded(p, "ingredient", IMPORT_FILE_BYTES_MAX), mime_of(p), p.name, relation)
        for p, relation in ([(parent, "parentOf")] if parent else []) + [(c, "componentOf") for c in component or []]
    ]
    signing = SigningKey(read_bounded(cert, "certificate file"), read_bounded(key, "key file"), alg)
    data = read_bounded(asset, "asset", IMPORT_FILE_BYTES_MAX)
    store = _store(ctx)
    try:
        signed = sign_work(
            store, work_id, data, mime_of(asset), signing, at=dt.datetime.now(dt.UTC), ingredients=ingredients
        )
    finally:
        store.dispose()
    out.write_bytes(signed)
    if as_json:
        print_json({"work_id": work_id, "out": str(out), "bytes": len(signed)})
    else:
        sys.stdout.write(f"wrote {out}: work {work_id} with a signed C2PA manifest\n")
