"""The root command: `endcredits [--data DIR] [--db URL]`, its sub-commands by noun, `init` and `demo`.

Each noun's commands live in their own module; this one only assembles them. A noun's module is imported,
and its commands built, only when the noun is called or help lists it: `endcredits people list` pays for
its own few commands, not for the other fifty (see ``tests/cli/test_cli_fast_start.py``)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
import typer.main
from typer.core import TyperGroup

from endcredits.cli import attribution, money, registry
from endcredits.cli.common import (
    ErrorsAsLines,
    JsonOpt,
    Where,
    make_console,
    print_json,
)
from endcredits.cli.service import serve_cmd
from endcredits.store.engine import DATA_ENV, DB_ENV, init_store

if TYPE_CHECKING:
    from click import Command, Context

NOUNS: dict[str, tuple[str, str]] = {
    "people": ("endcredits.cli.registry", "people_app"),
    "works": ("endcredits.cli.registry", "works_app"),
    "credits": ("endcredits.cli.registry", "credits_app"),
    "roles": ("endcredits.cli.registry", "roles_app"),
    "consent": ("endcredits.cli.consent", "consent_app"),
    "manifest": ("endcredits.cli.manifest", "manifest_app"),
    "report": ("endcredits.cli.report", "report_app"),
    "attribution": ("endcredits.cli.validity", "attribution_app"),
    "agreement": ("endcredits.cli.money", "agreement_app"),
    "payouts": ("endcredits.cli.money", "payouts_app"),
    "escrow": ("endcredits.cli.money", "escrow_app"),
    "ledger": ("endcredits.cli.money", "ledger_app"),
    "credential": ("endcredits.cli.identity", "credential_app"),
    "issuer": ("endcredits.cli.identity", "issuer_app"),
    "guild": ("endcredits.cli.guild", "guild_app"),
    "interop": ("endcredits.cli.interop", "interop_app"),
    "operator-key": ("endcredits.cli.service", "operator_key_app"),
    "login-link": ("endcredits.cli.service", "login_link_app"),
}
"""Each noun's Typer app as (module, attribute), in the order `endcredits --help` lists them."""


class RootGroup(ErrorsAsLines):
    """The root group: the root commands, then the nouns of ``NOUNS``, each built on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*(n for n in super().list_commands(ctx) if n not in NOUNS), *NOUNS]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in NOUNS:
            module, attribute = NOUNS[cmd_name]
            group = typer.main.get_group(getattr(importlib.import_module(module), attribute))
            group.name = cmd_name
            self.commands[cmd_name] = group
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] not in self.commands and args[0] not in NOUNS:
            for name in NOUNS:  # a typo: "Did you mean" looks among every noun
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=RootGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Residuals for the humans whose work trains AI.",
)


def walk_commands() -> Iterator[tuple[tuple[str, ...], Command]]:
    """Every command and group of the tree as (path of names, command), the root first, in help order;
    builds every noun."""
    root = typer.main.get_command(app)

    def walk(command: Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Command]]:
        yield path, command
        if isinstance(command, TyperGroup):
            ctx = typer.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None:
                    yield from walk(sub, (*path, name))

    yield from walk(root, ("endcredits",))


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


def init_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create (or upgrade) the database and data directory."""
    where: Where = ctx.obj
    store = init_store(where.data, where.db)
    store.dispose()
    if as_json:
        print_json({"backend": store.backend, "data_dir": str(store.data_dir)})
    else:
        make_console().print(f"initialised {store.backend} store in {store.data_dir}")


DEMO_CORPORA = ("abc", "openclipart")


def demo_cmd(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    corpus: Annotated[
        str,
        typer.Option(
            click_type=click.Choice(DEMO_CORPORA),
            help="abc: the ABC folk tunes and a character LM; openclipart: Debian's openclipart-svg drawings "
            "and a small DDPM",
        ),
    ] = "abc",
    outputs: Annotated[int, typer.Option(min=1, max=10_000, help="Outputs to generate and pay for")] = 60,
    train_steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100_000,
            help="Training steps: a fixed count, so the same seed gives the same split on one machine "
            "(default: 1,000 for abc, about a minute on a 2-core CPU; 1,500 for openclipart)",
        ),
    ] = None,
    seed: int = 0,
    tunes: Annotated[int | None, typer.Option(min=10, help="abc: use only the first N tunes (default: all)")] = None,
    works: Annotated[
        int, typer.Option(min=1, max=10_000, help="openclipart: a seeded sample of N drawings (logos/ left out)")
    ] = 300,
    corpus_dir: Annotated[
        Path,
        typer.Option(help="openclipart: the folder of SVG drawings (apt-get install openclipart-svg)"),
    ] = Path("/usr/share/openclipart/svg"),
) -> None:
    """The whole flow on the ABC folk tunes (or the Open Clip Art drawings): register, consent, manifest,
    train, generate, attribute, pay."""
    from endcredits.demo import TRAIN_STEPS_DEFAULT, DemoSummary, StepProgress, run_demo

    where: Where = ctx.obj

    def run(progress: Any = None, step: StepProgress | None = None) -> DemoSummary:
        hooks: dict[str, Any] = {"progress": progress, "step": step} if progress is not None else {}
        if corpus == "openclipart":
            from endcredits.demo_images import TRAIN_STEPS_DEFAULT as IMAGE_STEPS
            from endcredits.demo_images import run_image_demo

            return run_image_demo(
                where.data,
                where.db,
                corpus_dir=corpus_dir,
                works_n=works,
                outputs_n=outputs,
                train_steps=train_steps or IMAGE_STEPS,
                seed=seed,
                **hooks,
            )
        return run_demo(
            where.data,
            where.db,
            outputs_n=outputs,
            train_steps=train_steps or TRAIN_STEPS_DEFAULT,
            seed=seed,
            tunes_max=tunes,
            **hooks,
        )

    if as_json:
        print_json(run().to_json())
        return
    console = make_console()
    _with_step_bars(console, run).print(console)


def _with_step_bars(console: Any, run: Callable[..., Any]) -> Any:
    """``run(progress, step)`` with a line per message and a bar per step of the demo; its summary."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

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

        # Messages name did:key: ids and file paths: printed as text, never as markup or emoji.
        return run(lambda m: console.print(m, style="dim", markup=False, emoji=False), step)


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


ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def main() -> None:
    """Entry point of the ``endcredits`` command.

    Arrow allocates with the C library's ``malloc`` here unless ``ARROW_DEFAULT_MEMORY_POOL`` names a pool
    (why: ``ledger.evidence.use_system_allocator``). It is said through the environment, which Arrow reads
    when it loads, so a command that never touches Arrow never imports it (0.1-0.2 s)."""
    if not os.environ.get(ARROW_POOL_ENV):
        os.environ[ARROW_POOL_ENV] = "system"
    app()
