"""``endcredits guild``: the issuers the operator trusts to speak for members, and the terms they publish."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from endcredits.cli.common import JsonOpt, make_console, open_store_of, print_json, print_table
from endcredits.errors import ValidationError

guild_app = typer.Typer(
    no_args_is_help=True,
    help="Guilds and unions: trusted issuers whose terms their members inherit, and what they see.",
)
terms_app = typer.Typer(no_args_is_help=True, help="A guild's terms: consent defaults, escrow, minimum role weights.")
guild_app.add_typer(terms_app, name="terms")

IssuerOpt = Annotated[str, typer.Option("--issuer", help="The issuer id, as its credentials name it (did:key:...).")]
GUILD_TERMS_FILE_BYTES_MAX = 1 << 20


@guild_app.command("trust")
def guild_trust(
    ctx: typer.Context,
    issuer: Annotated[str, typer.Argument(help="The issuer id, as its credentials name it.")],
    note: Annotated[str, typer.Option(help="Why it is trusted, e.g. 'SAG-AFTRA, agreement of 2026-01-05'.")],
    as_json: JsonOpt = False,
) -> None:
    """Trust an issuer to speak for its members: it may then publish terms they inherit."""
    from endcredits.registry.identity.trusted import trust_issuer

    with open_store_of(ctx) as store, store.write() as conn:
        added = trust_issuer(conn, issuer, note=note)
    status = "trusted" if added else "already trusted"
    print_json({"issuer": issuer, "status": status}) if as_json else make_console().print(f"{issuer}: {status}")


@guild_app.command("distrust")
def guild_distrust(
    ctx: typer.Context,
    issuer: Annotated[str, typer.Argument(help="The issuer id.")],
    as_json: JsonOpt = False,
) -> None:
    """Stop trusting an issuer: its terms then apply to nobody (they stay on record)."""
    from endcredits.registry.identity.trusted import distrust_issuer

    with open_store_of(ctx) as store, store.write() as conn:
        distrust_issuer(conn, issuer)
    print_json({"issuer": issuer, "status": "distrusted"}) if as_json else make_console().print(
        f"{issuer}: no longer trusted"
    )


@guild_app.command("list")
def guild_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every issuer the operator trusts or trusted."""
    from endcredits.registry.identity.trusted import trusted_list

    with open_store_of(ctx) as store, store.read() as conn:
        rows = trusted_list(conn)
    if as_json:
        print_json(rows)
        return
    cells = [[r["issuer"], r["note"], r["added_at"], r["removed_at"] or ""] for r in rows]
    print_table("trusted issuers", ["issuer", "note", "added", "removed"], cells)


@terms_app.command("load")
def guild_terms_load(ctx: typer.Context, file: Path, issuer: IssuerOpt, as_json: JsonOpt = False) -> None:
    """Load a guild's terms file (TOML) as its newest version; refused unless the issuer is trusted."""
    from endcredits.consent.guilds import load_guild_terms

    if not file.is_file():
        raise ValidationError(f"guild terms file {file} does not exist")
    with file.open("rb") as f:
        raw = f.read(GUILD_TERMS_FILE_BYTES_MAX + 1)  # longer than the bound: parse_guild_terms refuses it
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"guild terms file {file} is not UTF-8 text") from None
    with open_store_of(ctx) as store, store.write() as conn:
        terms, new = load_guild_terms(conn, issuer, body, file.name)
    out = {**terms.to_json(), "status": "stored" if new else "unchanged"}
    print_json(out) if as_json else make_console().print(f"{terms.label}: {out['status']}")


@terms_app.command("show")
def guild_terms_show(ctx: typer.Context, issuer: IssuerOpt, as_json: JsonOpt = False) -> None:
    """Every version of a guild's terms, oldest first."""
    from endcredits.consent.guilds import guild_terms_versions

    with open_store_of(ctx) as store, store.read() as conn:
        versions = [t.to_json() for t in guild_terms_versions(conn, issuer)]
    if as_json:
        print_json(versions)
        return
    for v in versions:
        make_console().print(
            f"v{v['version']} from {v['effective_from']} ({v['source']}): consent {v['consent'] or 'no defaults'}; "
            f"escrow {v['escrow']}; role minimums {v['role_weights_min'] or 'none'}"
        )


@guild_app.command("view")
def guild_view_cmd(ctx: typer.Context, issuer: IssuerOpt, as_json: JsonOpt = False) -> None:
    """What a guild sees of its members: sums per currency and consent counts, never one member."""
    import datetime as dt

    from endcredits.ledger.guilds import guild_view

    with open_store_of(ctx) as store, store.read() as conn:
        view = guild_view(conn, issuer, dt.datetime.now(dt.UTC)).to_json()
    if as_json:
        print_json(view)
        return
    console = make_console()
    console.print(f"{issuer}: {view['members']} members; terms v{view['terms_version'] or '-'}")
    for what in ("accrued", "payable", "escrow", "fund"):
        amounts = view[f"{what}_microunits"]
        shown = "withheld (too few members)" if amounts is None else (amounts or "nothing")
        console.print(f"  {what}: {shown}")
    for use, counts in view["consent"].items():
        console.print(f"  {use}: {counts.get('allowed', 0)} allow, {counts.get('notAllowed', 0)} refuse")


@guild_app.command("unclaimed")
def guild_unclaimed_cmd(
    ctx: typer.Context,
    issuer: IssuerOpt,
    query: Annotated[str, typer.Option(help="Part of a name to look for.")] = "",
    limit: Annotated[int, typer.Option(help="Most lines to show.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The published unclaimed residuals held for a guild's members: names and amounts only."""
    from endcredits.ledger.guilds import guild_unclaimed

    with open_store_of(ctx) as store, store.read() as conn:
        rows = [r.to_json() for r in guild_unclaimed(conn, issuer, query, limit=limit)]
    if as_json:
        print_json(rows)
        return
    cells = [[r["name"], r["amount"], r["currency"], r["status"], r["due_on"] or "", r["fund"] or ""] for r in rows]
    print_table(f"unclaimed for members of {issuer}", ["name", "amount", "ccy", "status", "due", "fund"], cells)
