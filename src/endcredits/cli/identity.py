"""``endcredits credential`` (verify, attach, refresh) and ``endcredits issuer`` (init, issue, revoke).

The root command's options (``--data``, ``--db``) arrive in ``ctx.obj``; errors endcredits raises on
purpose become one line and exit status 1 in the root group, as for every other command.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from endcredits.errors import CredentialError, ValidationError
from endcredits.store.engine import DATA_ENV, DEFAULT_DATA_DIR, open_store, parse_time

credential_app = typer.Typer(
    no_args_is_help=True, help="Verifiable credentials: check one, attach one to a person, re-check them all."
)
issuer_app = typer.Typer(
    no_args_is_help=True, help="Run an issuer (a guild, a union): a key, signed credentials, a revocation list."
)

TrustOpt = Annotated[
    list[str],
    typer.Option(
        "--trust",
        help="A trusted issuer: a did:key identifier, a bare z6Mk... public key, or a DID or controller document "
        "file. Repeatable.",
    ),
]
StatusOpt = Annotated[
    list[Path] | None,
    typer.Option("--status-list", help="A status list credential file (the issuer's status-list.json). Repeatable."),
]
AtOpt = Annotated[
    str | None, typer.Option("--at", help="Check as of this time, ISO-8601 with a timezone (default: now).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]
DirOpt = Annotated[Path | None, typer.Option("--dir", help="Issuer directory (default: DATA/issuer).")]


def _when(value: str | None) -> dt.datetime:
    return dt.datetime.now(dt.UTC) if value is None else parse_time(value)


def _read_credential(path: Path) -> bytes:
    from endcredits.registry.identity.credential import CREDENTIAL_BYTES_MAX

    if not path.is_file():
        raise ValidationError(f"credential file {path} does not exist")
    with path.open("rb") as f:
        data = f.read(CREDENTIAL_BYTES_MAX + 1)
    if len(data) > CREDENTIAL_BYTES_MAX:
        raise CredentialError("malformed", f"{path} is larger than {CREDENTIAL_BYTES_MAX} bytes")
    return data


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _where(ctx: typer.Context) -> tuple[Path | None, str | None]:
    obj = ctx.find_root().obj
    return getattr(obj, "data", None), getattr(obj, "db", None)


# credential ---------------------------------------------------------------------------------------
@credential_app.command("verify")
def credential_verify(
    file: Path, trust: TrustOpt, status_list: StatusOpt = None, at: AtOpt = None, as_json: JsonOpt = False
) -> None:
    """Check a credential's proof, issuer, validity window and revocation status.

    Exit 0 and print the subject's id when it is valid and trusted; exit 1 and the reason otherwise."""
    from endcredits.registry.identity import load_status_lists, load_trust, verify_credential

    trust_list = load_trust(trust)
    lists = load_status_lists(status_list or [])
    try:
        vc = verify_credential(_read_credential(file), trust_list, lists, _when(at))
    except CredentialError as exc:
        if not as_json:
            raise
        _print_json({"valid": False, "reason": exc.reason, "error": str(exc)})
        raise typer.Exit(1) from None
    if as_json:
        _print_json(vc.summary())
    else:
        sys.stdout.write(vc.subject + "\n")


@credential_app.command("attach")
def credential_attach(
    ctx: typer.Context,
    person_id: int,
    file: Path,
    trust: TrustOpt,
    status_list: StatusOpt = None,
    at: AtOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a credential and attach it to a person, who becomes verified by its issuer; release
    whatever escrow holds for them."""
    from endcredits.ledger.escrow import claim_escrow_in
    from endcredits.money import format_amount
    from endcredits.registry.identity import attach_credential, load_status_lists, load_trust

    trust_list = load_trust(trust)
    lists = load_status_lists(status_list or [])
    raw = _read_credential(file)
    data, db = _where(ctx)
    store = open_store(data, db)
    try:
        with store.write() as conn:
            done = attach_credential(conn, person_id, raw, trust_list, lists, _when(at))
            released = claim_escrow_in(conn, person_id).moved_microunits
    finally:
        store.dispose()
    vc = done.credential
    if as_json:
        _print_json({"person_id": person_id, "attached": done.new, "released_microunits": released, **vc.summary()})
    else:
        moved = ", ".join(f"{format_amount(v, c)} {c}" for c, v in sorted(released.items())) or "nothing"
        sys.stdout.write(
            f"person {person_id} verified by {vc.issuer} until {vc.summary()['valid_until']}; "
            f"released from escrow: {moved}\n"
        )


@credential_app.command("refresh")
def credential_refresh(
    ctx: typer.Context, trust: TrustOpt, status_list: StatusOpt = None, at: AtOpt = None, as_json: JsonOpt = False
) -> None:
    """Re-check every attached credential; un-verify people whose credentials expired or were revoked."""
    from endcredits.registry.identity import load_status_lists, load_trust, refresh_verification

    trust_list = load_trust(trust)
    lists = load_status_lists(status_list or [])
    data, db = _where(ctx)
    store = open_store(data, db)
    try:
        with store.write() as conn:
            lost = refresh_verification(conn, _when(at), trust_list, lists)
    finally:
        store.dispose()
    rows = [{"person_id": u.person_id, "credential_id": u.credential_id, "reason": u.reason} for u in lost]
    if as_json:
        _print_json({"unverified": rows})
    else:
        for r in rows:
            sys.stdout.write(f"person {r['person_id']} unverified: credential {r['credential_id']} {r['reason']}\n")
        sys.stdout.write(f"{len(rows)} people unverified\n")


# issuer -------------------------------------------------------------------------------------------
def _issuer_dir(ctx: typer.Context, directory: Path | None) -> Path:
    if directory is not None:
        return directory
    data, _ = _where(ctx)
    return Path(data or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR) / "issuer"


@issuer_app.command("init")
def issuer_init(
    ctx: typer.Context,
    directory: DirOpt = None,
    status_list_id: Annotated[
        str | None,
        typer.Option("--status-list-id", help="URL the status list will be published at (default: a urn:uuid)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate an Ed25519 key pair and an empty revocation list; print the issuer's did:key."""
    from endcredits.registry.identity.issuer import KEY_FILE, STATUS_LIST_FILE, init_issuer

    path = _issuer_dir(ctx, directory)
    issuer = init_issuer(path, status_list_id=status_list_id, at=dt.datetime.now(dt.UTC))
    out = {
        "did": issuer.key.did,
        "key_file": str(path / KEY_FILE),
        "status_list": issuer.status_list_id,
        "status_list_file": str(path / STATUS_LIST_FILE),
    }
    if as_json:
        _print_json(out)
    else:
        sys.stdout.write(
            f"{issuer.key.did}\nkey in {out['key_file']} (keep it secret); publish {out['status_list_file']}\n"
        )


@issuer_app.command("issue")
def issuer_issue(
    ctx: typer.Context,
    subject_id: Annotated[str, typer.Argument(help="The holder's id: a DID or URN; a pseudonym is enough.")],
    valid_from: Annotated[str, typer.Option("--valid-from", help="Start of validity (ISO-8601 or a date).")],
    valid_until: Annotated[str, typer.Option("--valid-until", help="End of validity (required: never perpetual).")],
    orcid: Annotated[str | None, typer.Option(help="The holder's ORCID iD, checked.")] = None,
    isni: Annotated[str | None, typer.Option(help="The holder's ISNI, checked.")] = None,
    ipi: Annotated[str | None, typer.Option(help="The holder's IPI name number (11 digits).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the credential here (default: print it).")] = None,
    directory: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign a credential for a subject, with a revocation entry in this issuer's status list."""
    from endcredits.registry.identity.issuer import issue_credential, open_issuer

    issuer = open_issuer(_issuer_dir(ctx, directory))
    ids = {k: v for k, v in (("orcid", orcid), ("isni", isni), ("ipi", ipi)) if v is not None}
    doc = issue_credential(
        issuer,
        subject_id,
        valid_from=parse_time(valid_from),
        valid_until=parse_time(valid_until),
        at=dt.datetime.now(dt.UTC),
        identifiers=ids,
    )
    text = json.dumps(doc, indent=2) + "\n"
    if out is not None:
        out.write_text(text, encoding="utf-8")
    if as_json:
        _print_json({"credential_id": doc["id"], "out": None if out is None else str(out), "credential": doc})
    elif out is None:
        sys.stdout.write(text)
    else:
        sys.stdout.write(f"{doc['id']} written to {out}\n")


@issuer_app.command("revoke")
def issuer_revoke(ctx: typer.Context, credential_id: str, directory: DirOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a credential: set its bit in the status list and sign the list again."""
    from endcredits.registry.identity.issuer import STATUS_LIST_FILE, open_issuer, revoke_credential

    path = _issuer_dir(ctx, directory)
    index = revoke_credential(open_issuer(path), credential_id, at=dt.datetime.now(dt.UTC))
    if as_json:
        _print_json(
            {"credential_id": credential_id, "status_index": index, "status_list_file": str(path / STATUS_LIST_FILE)}
        )
    else:
        sys.stdout.write(f"revoked {credential_id} (status index {index}); publish {path / STATUS_LIST_FILE}\n")
