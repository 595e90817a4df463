"""What every command shares: the error-to-one-line group, the store of the context, progress bars, JSON and
table output, and the common options."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from endcredits.errors import EndcreditsError, ValidationError
from endcredits.limits import LIST_ROWS_MAX
from endcredits.store.engine import Store, open_store, parse_time


class ErrorsAsLines(TyperGroup):
    """Turns any error endcredits raises on purpose into one line on stderr and exit status 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EndcreditsError as exc:
            sys.stderr.write(f"error [{exc.code}]: {exc}\n")
            raise typer.Exit(1) from None


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]


DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Compute and show; write nothing.")]


LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=LIST_ROWS_MAX, help="Show at most this many rows.")]


@dataclass(frozen=True)
class Where:
    data: Path | None
    db: str | None


def make_console() -> Console:
    return Console(highlight=False, soft_wrap=True)


@contextmanager
def open_store_of(ctx: typer.Context) -> Iterator[Store]:
    where: Where = ctx.obj
    store = open_store(where.data, where.db)
    try:
        yield store
    finally:
        store.dispose()


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Any]:
    """A progress bar on standard error; yields ``advance(done)``."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bars:
        task = bars.add_task(description, total=total)
        yield lambda done: bars.update(task, completed=done)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def amounts_text(microunits_by_currency: Mapping[str, int], *, none: str = "nothing") -> str:
    """``1.50 EUR, 0.25 USD`` (exact, currencies in order), or ``none`` when there is no amount."""
    from endcredits.money import format_amount

    return ", ".join(f"{format_amount(v, c)} {c}" for c, v in sorted(microunits_by_currency.items())) or none


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(v) for v in r])
    make_console().print(t)


def time_option(value: str | None, what: str) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        return parse_time(value)
    except ValidationError as exc:
        raise ValidationError(f"{what}: {exc}") from None
