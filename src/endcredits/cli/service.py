"""Commands of the service edge: ``serve``, ``operator-key create|list|revoke`` (operator, auditor and guild
keys), ``login-link create``.

Each takes ``--data``/``--db`` after the command too (``endcredits serve --data DIR``), falling back to the
global options and the environment. They create or upgrade the store like ``init`` (idempotent), so a
fresh data directory can be served at once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from endcredits.cli.common import JsonOpt, print_json
from endcredits.store.engine import Store, init_store

operator_key_app = typer.Typer(
    no_args_is_help=True, help="Operator, auditor and guild API keys: shown once, stored hashed."
)
login_link_app = typer.Typer(no_args_is_help=True, help="One-time sign-in links for contributors without a did:key.")

DataOpt = Annotated[Path | None, typer.Option("--data", help="Data directory (default: the global --data).")]
DbOpt = Annotated[str | None, typer.Option("--db", help="Database URL (default: the global --db).")]


@contextmanager
def _store(ctx: typer.Context, data: Path | None, db: str | None) -> Iterator[Store]:
    store = init_store(data or getattr(ctx.obj, "data", None), db or getattr(ctx.obj, "db", None))
    try:
        yield store
    finally:
        store.dispose()


def serve_cmd(
    ctx: typer.Context,
    data: DataOpt = None,
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65_535, help="Port to listen on.")] = 8000,
    headers_timeout_s: Annotated[
        float, typer.Option("--headers-timeout-s", min=0.1, max=300, help="Close a request whose headers are slower.")
    ] = 10,
    connections_max: Annotated[
        int, typer.Option("--connections-max", min=1, max=1_000_000, help="Open connections at once (503 past it).")
    ] = 1_000,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            "--forwarded-allow-ips",
            help="Proxies whose X-Forwarded-For names the client, comma-separated (default: this machine only). "
            "Behind a proxy elsewhere, name it, or every client counts as the proxy's address.",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Worker processes on the one port (PostgreSQL only); each accrues beside the others."
        ),
    ] = 1,
) -> None:
    """Serve the REST API (/api/v1, OpenAPI at /openapi.json) until interrupted."""
    from endcredits.service.server import check_workers, serve

    with _store(ctx, data, db) as store:
        check_workers(store, workers)
        sys.stderr.write(
            f"endcredits serving {store.backend} store in {store.data_dir} at http://{host}:{port}/api/v1"
            f"{f' with {workers} workers' if workers > 1 else ''}\n"
        )
        serve(
            store,
            host=host,
            port=port,
            headers_timeout_s=headers_timeout_s,
            connections_max=connections_max,
            forwarded_allow_ips=forwarded_allow_ips,
            workers=workers,
        )


@operator_key_app.command("create")
def key_create(
    ctx: typer.Context,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="ingest, registry, payouts or read (repeat)")
    ] = None,
    role: Annotated[
        str,
        typer.Option(
            help="operator; auditor (reads everything, changes nothing); or guild (one trusted issuer's "
            "aggregates, with --issuer)"
        ),
    ] = "operator",
    label: Annotated[str, typer.Option(help="Who or what holds the key")] = "operator",
    issuer: Annotated[
        str | None, typer.Option(help="A guild key's issuer, as `endcredits guild trust` recorded it")
    ] = None,
    data: DataOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make an API key and print it once; only its SHA-256 is kept."""
    from endcredits.service.auth import create_api_key

    with _store(ctx, data, db) as store, store.write() as conn:
        k = create_api_key(conn, role=role, scopes=list(scope or []), label=label, issuer=issuer)
    if as_json:
        print_json({"id": k.id, "key": k.key, "role": k.role, "scopes": list(k.scopes), "issuer": k.issuer})
    else:
        what = f"for {k.issuer}" if k.issuer else ", ".join(k.scopes)
        Console(highlight=False, soft_wrap=True, emoji=False).print(
            f"{k.role} key {k.id} ({what}); shown once, keep it now:\n{k.key}", markup=False
        )


@operator_key_app.command("list")
def key_list(ctx: typer.Context, data: DataOpt = None, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """List keys (ids, roles, scopes, revocation); never the secrets."""
    from endcredits.service.auth import list_api_keys

    with _store(ctx, data, db) as store, store.read() as conn:
        keys = list_api_keys(conn)
    if as_json:
        print_json({"keys": keys})
        return
    console = Console(highlight=False, soft_wrap=True)
    for k in keys:
        state = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
        held = k["issuer"] or ",".join(k["scopes"])  # type: ignore[arg-type]
        console.print(f"{k['id']}  {k['role']}  {held}  {k['label']}  {state}", markup=False, emoji=False)


@operator_key_app.command("revoke")
def key_revoke(
    ctx: typer.Context, key_id: str, data: DataOpt = None, db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Revoke a key: it is refused from the next request on."""
    from endcredits.service.auth import revoke_api_key

    with _store(ctx, data, db) as store, store.write() as conn:
        revoke_api_key(conn, key_id)
    if as_json:
        print_json({"id": key_id, "revoked": True})
        return
    Console(highlight=False).print(f"key {key_id} revoked")


@login_link_app.command("create")
def link_create(
    ctx: typer.Context,
    person: Annotated[int, typer.Option(help="The person who signs in")],
    ttl_s: Annotated[int, typer.Option("--ttl-s", min=60, max=30 * 86_400, help="Lifetime in seconds")] = 86_400,
    data: DataOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a one-time sign-in token for a person; print it once (it is stored hashed)."""
    from endcredits.service.auth import create_login_link

    with _store(ctx, data, db) as store, store.write() as conn:
        link = create_login_link(conn, person, created_by="cli", ttl_s=ttl_s)
    if as_json:
        print_json({"person_id": link.person_id, "token": link.token, "expires_at": link.expires_at})
    else:
        Console(highlight=False, soft_wrap=True).print(
            f"login token for person {link.person_id}, one use, until {link.expires_at}:\n{link.token}"
        )
