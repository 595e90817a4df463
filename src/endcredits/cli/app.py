"""The root command: `endcredits [--data DIR] [--db URL]`, its sub-commands by noun, `init` and `demo`.

Each noun's commands live in their own module; this one only assembles them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from endcredits.cli import attribution, consent, manifest, money, registry
from endcredits.cli.common import (
    ErrorsAsLines,
    JsonOpt,
    Where,
    make_console,
    print_json,
)
from endcredits.cli.identity import credential_app, issuer_app
from endcredits.cli.interop import interop_app
from endcredits.cli.service import login_link_app, operator_key_app, serve_cmd
from endcredits.store.engine import DATA_ENV, DB_ENV, init_store

app = typer.Typer(
    cls=ErrorsAsLines,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Residuals for the humans whose work trains AI.",
)
app.add_typer(registry.people_app, name="people")
app.add_typer(registry.works_app, name="works")
app.add_typer(registry.credits_app, name="credits")
app.add_typer(registry.roles_app, name="roles")
app.add_typer(consent.consent_app, name="consent")
app.add_typer(manifest.manifest_app, name="manifest")
app.add_typer(money.agreement_app, name="agreement")
app.add_typer(money.payouts_app, name="payouts")
app.add_typer(money.escrow_app, name="escrow")
app.add_typer(money.ledger_app, name="ledger")
app.add_typer(credential_app, name="credential")
app.add_typer(issuer_app, name="issuer")
app.add_typer(interop_app, name="interop")
app.add_typer(operator_key_app, name="operator-key")
app.add_typer(login_link_app, name="login-link")


@app.callback()
def _root(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option("--data", envvar=DATA_ENV, help="Data directory (SQLite file, evidence, payout files)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", envvar=DB_ENV, help="Database URL, e.g. postgresql://user@host/db (default: SQLite in --data)."
        ),
    ] = None,
) -> None:
    ctx.obj = Where(data, db)


def init_cmd(ctx: typer.Context) -> None:
    """Create (or upgrade) the database and data directory."""
    where: Where = ctx.obj
    store = init_store(where.data, where.db)
    make_console().print(f"initialised {store.backend} store in {store.data_dir}")
    store.dispose()


def demo_cmd(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    outputs: Annotated[int, typer.Option(min=1, max=10_000, help="Outputs to generate and pay for")] = 60,
    train_steps: Annotated[
        int,
        typer.Option(
            min=1,
            max=100_000,
            help="Training steps: a fixed count, so the same seed gives the same split on one machine "
            "(1,000 take about a minute on a 2-core CPU)",
        ),
    ] = 1_000,
    seed: int = 0,
    tunes: Annotated[int | None, typer.Option(min=10, help="Use only the first N tunes (default: all)")] = None,
) -> None:
    """The whole flow on the ABC folk tunes: register, consent, manifest, train, generate, attribute, pay."""
    from endcredits.demo import run_demo

    where: Where = ctx.obj
    if as_json:
        summary = run_demo(where.data, where.db, outputs_n=outputs, train_steps=train_steps, seed=seed, tunes_max=tunes)
        print_json(summary.to_json())
        return
    console = make_console()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bars:
        tasks: dict[str, Any] = {}

        def step(name: str, done: float, total: float) -> None:
            if name not in tasks:
                tasks[name] = bars.add_task(name, total=total)
            bars.update(tasks[name], completed=done)

        summary = run_demo(
            where.data,
            where.db,
            outputs_n=outputs,
            train_steps=train_steps,
            seed=seed,
            tunes_max=tunes,
            progress=lambda m: console.print(f"[dim]{m}[/dim]"),
            step=step,
        )
    summary.print(console)


# Root commands, in the order `endcredits --help` lists them.
app.command("serve")(serve_cmd)
app.command("init")(init_cmd)
app.command("secret-key")(registry.secret_key_cmd)
app.command("accrue")(money.accrue_cmd)
app.command("featurize")(attribution.featurize_cmd)
app.command("attribute")(attribution.attribute_cmd)
app.command("statements")(money.statements_cmd)
app.command("verify")(money.verify_cmd)
app.command("demo")(demo_cmd)


def main() -> None:
    """Entry point of the ``endcredits`` command."""
    from endcredits.ledger.evidence import use_system_allocator

    use_system_allocator()
    app()
