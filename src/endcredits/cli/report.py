"""`report`: what regulators and the people whose work is used are owed in writing: the EU AI Act training
summary of a model, and the impact of a revocation or a suspension."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from endcredits.cli.common import JsonOpt, make_console, open_store_of, print_json
from endcredits.errors import ValidationError

report_app = typer.Typer(no_args_is_help=True, help="Reports: the EU training summary, revocation impact.")


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise ValidationError(f"{option} {value!r:.80} must be NAME=VALUE")
        out[key.strip()] = rest.strip()
    return out


def _sizes(values: list[str] | None) -> dict[str, int]:
    out = {}
    for modality, size in _pairs(values, "--size").items():
        if not size.isdigit():
            raise ValidationError(f"--size {modality}={size!r:.40}: the size must be a whole number")
        out[modality] = int(size)
    return out


@report_app.command("eu-training-summary")
def eu_training_summary_cmd(  # noqa: PLR0913 - one option per fact the template asks for
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="The model whose manifests are summarised")],
    out: Annotated[Path, typer.Option(help="Folder for the JSON and HTML files (created 0700)")],
    provider: Annotated[str | None, typer.Option(help="Provider's name")] = None,
    contact: Annotated[str | None, typer.Option(help="Provider's contact details")] = None,
    representative: Annotated[str | None, typer.Option(help="Authorised representative in the EU")] = None,
    model_name: Annotated[str | None, typer.Option(help="Versioned model name (default: the model id)")] = None,
    placed_on_market: Annotated[str | None, typer.Option(help="Date placed on the EU market")] = None,
    crawler: Annotated[list[str] | None, typer.Option(help="A crawler's name; repeat")] = None,
    crawl_period: Annotated[str | None, typer.Option(help="When data was crawled, e.g. 2024-01 to 2025-06")] = None,
    dataset: Annotated[
        list[str] | None, typer.Option(help="NAME=PREFIX: works whose source starts with PREFIX are that dataset")
    ] = None,
    size: Annotated[
        list[str] | None, typer.Option(help="MODALITY=N in the template's unit: text tokens, images, audio/video hours")
    ] = None,
    user_data: Annotated[str | None, typer.Option(help="Description of user data used, if any")] = None,
    synthetic_data: Annotated[str | None, typer.Option(help="Description of synthetic data used, if any")] = None,
    other_sources: Annotated[str | None, typer.Option(help="Other sources of data")] = None,
    tdm_measures: Annotated[str | None, typer.Option(help="Further measures honouring TDM opt-outs")] = None,
    code_of_practice: Annotated[
        bool | None, typer.Option("--code-of-practice/--no-code-of-practice", help="Signatory of the GPAI code")
    ] = None,
    illegal_content: Annotated[str | None, typer.Option(help="Measures to remove illegal content")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the EU AI Act Article 53(1)(d) public summary of a model's training content (JSON and HTML)."""
    from endcredits.manifest.eu_summary import ProviderFacts, write_eu_training_summary

    facts = ProviderFacts(
        provider_name=provider,
        provider_contact=contact,
        authorised_representative=representative,
        model_name=model_name,
        placed_on_market=placed_on_market,
        crawlers=tuple(crawler or ()),
        crawl_period=crawl_period,
        datasets=_pairs(dataset, "--dataset"),
        sizes=_sizes(size),
        user_data=user_data,
        synthetic_data=synthetic_data,
        other_sources=other_sources,
        tdm_measures=tdm_measures,
        code_of_practice_signatory=code_of_practice,
        illegal_content_measures=illegal_content,
    )
    with open_store_of(ctx) as store:
        files = write_eu_training_summary(store, model, out, facts)
    if as_json:
        print_json({"json": str(files.json_path), "html": str(files.html_path)})
    else:
        make_console().print(f"EU training summary of {model}: {files.json_path} and {files.html_path}")


@report_app.command("impact")
def impact_cmd(
    ctx: typer.Context,
    person: Annotated[int | None, typer.Option(help="A person: all the works crediting them")] = None,
    work: Annotated[str | None, typer.Option(help="One work")] = None,
    suspension: Annotated[int | None, typer.Option(help="A suspension: the works of everyone it covers")] = None,
    grant: Annotated[int | None, typer.Option(help="A consent grant: the works of its subject")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every model, manifest and training run that used the affected works (and works derived from them),
    with the perpetual grants they rest on."""
    from endcredits.manifest.reports import impact_report

    with open_store_of(ctx) as store, store.read() as conn:
        report = impact_report(conn, person_id=person, work_id=work, suspension_id=suspension, grant_id=grant)
    data = report.to_json()
    if as_json:
        print_json(data)
        return
    from endcredits.cli.consent import print_impact

    print_impact(data, f"impact of {report.subject}")
