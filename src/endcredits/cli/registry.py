"""`people`, `works`, `credits`, `roles` and `secret-key`: who can be paid, for which works, in which roles."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import func, select

from endcredits.cli.common import (
    JsonOpt,
    make_console,
    open_store_of,
    print_json,
    print_table,
)
from endcredits.errors import ValidationError
from endcredits.money import format_amount, parse_fraction

people_app = typer.Typer(no_args_is_help=True, help="People who can be paid (verified or not).")


works_app = typer.Typer(no_args_is_help=True, help="Works: training data, content-addressed by SHA-256.")


credits_app = typer.Typer(no_args_is_help=True, help="Credits (who did what on a work) and lineage.")


roles_app = typer.Typer(no_args_is_help=True, help="Role vocabularies: CRediT, EBU role codes, CAWG, endcredits.")


@people_app.command("add")
def people_add(
    ctx: typer.Context,
    handle: str,
    iban: Annotated[str | None, typer.Option()] = None,
    bic: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option(help="Contact address, sealed at rest like the IBAN")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a person by handle (a pseudonym is fine); IBAN and e-mail are sealed with ENDCREDITS_SECRET_KEY."""
    from endcredits.payouts.iban import normalize_bic, normalize_iban
    from endcredits.registry.records import add_person

    with open_store_of(ctx) as store, store.write() as conn:
        pid = add_person(
            conn,
            handle,
            iban=normalize_iban(iban) if iban else None,
            bic=normalize_bic(bic) if bic else None,
            email=email,
        )
    print_json({"person_id": pid, "handle": handle}) if as_json else make_console().print(f"person {pid} added")


def secret_key_cmd(
    ctx: typer.Context,
    action: Annotated[
        str, typer.Argument(help="new: print a fresh key; rotate: re-seal every detail under the configured key")
    ],
    old_key_file: Annotated[
        Path | None,
        typer.Option("--old-key-file", help="rotate: the file holding the key the details are sealed with now"),
    ] = None,
) -> None:
    """Operator keys for sealing contact and payment details (ENDCREDITS_SECRET_KEY or _FILE).

    To rotate: make a key with `secret-key new`, configure it (ENDCREDITS_SECRET_KEY_FILE), then run
    `secret-key rotate --old-key-file OLD`: every detail is re-sealed under the new key in one
    transaction, and the rotation is in the audit log. Running it again changes nothing.
    """
    from endcredits.registry.private import configured_key, new_key_text, read_key_file, rotate_key

    if action == "new":
        if old_key_file is not None:
            raise ValidationError("--old-key-file goes with `secret-key rotate`")
        sys.stdout.write(new_key_text() + "\n")
        return
    if action != "rotate":
        raise ValidationError(
            f"unknown action {action!r}: `endcredits secret-key new` or `endcredits secret-key rotate`"
        )
    if old_key_file is None:
        raise ValidationError("`secret-key rotate` needs --old-key-file: the key the details are sealed with now")
    old, new = read_key_file(old_key_file), configured_key()
    with open_store_of(ctx) as store, store.write() as conn:
        count = rotate_key(conn, old, new)
    make_console().print(f"re-sealed {count} contact and payment details under key {new.key_id.hex()}")


@people_app.command("list")
def people_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List people, whether they are verified, and what they are owed."""
    from endcredits.ledger.records import account_balances
    from endcredits.registry.private import with_payout_account
    from endcredits.store.schema import people

    with open_store_of(ctx) as store, store.read() as conn:
        rows = conn.execute(select(people).order_by(people.c.id)).all()
        bal = account_balances(conn, kind="payable")
        banked = with_payout_account(conn, [r.id for r in rows])
    out = []
    for r in rows:
        owed = {k.rsplit(":", 1)[1]: v for k, v in bal.items() if k.startswith(f"payable:person:{r.id}:")}
        out.append(
            {
                "person_id": r.id,
                "handle": r.handle,
                "verified": r.verified_at is not None,
                "payout_account": r.id in banked,
                "payable": {c: format_amount(v, c) for c, v in sorted(owed.items())},
            }
        )
    if as_json:
        print_json({"people": out})
    else:
        print_table(
            "people",
            ["id", "handle", "verified", "bank", "payable"],
            [
                [
                    p["person_id"],
                    p["handle"],
                    p["verified"],
                    p["payout_account"],
                    ", ".join(f"{v} {c}" for c, v in p["payable"].items()),
                ]
                for p in out
            ],
        )


@people_app.command("verify")
def people_verify(
    ctx: typer.Context,
    person_id: int,
    issuer: Annotated[str, typer.Option(help="Who vouches for this person (a guild, a union, an IdP).")],
) -> None:
    """Mark a person verified and release whatever escrow holds for them."""
    from endcredits.ledger.escrow import claim_escrow_in
    from endcredits.registry.records import verify_person

    with open_store_of(ctx) as store, store.write() as conn:
        verify_person(conn, person_id, verified_by=issuer)
        result = claim_escrow_in(conn, person_id)
    moved = ", ".join(f"{format_amount(v, c)} {c}" for c, v in result.moved_microunits.items()) or "nothing"
    make_console().print(f"person {person_id} verified by {issuer}; released from escrow: {moved}")


@people_app.command("bank")
def people_bank(
    ctx: typer.Context,
    person_id: int,
    iban: Annotated[str, typer.Option()],
    bic: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Set where a person's payouts go."""
    from endcredits.payouts.iban import normalize_bic, normalize_iban
    from endcredits.registry.records import set_payout_account

    with open_store_of(ctx) as store, store.write() as conn:
        set_payout_account(conn, person_id, iban=normalize_iban(iban), bic=normalize_bic(bic) if bic else None)
    make_console().print(f"person {person_id}: payout account set")


@works_app.command("add")
def works_add(
    ctx: typer.Context,
    file: Path,
    title: Annotated[str, typer.Option()],
    kind: Annotated[str, typer.Option()] = "text",
    source: Annotated[str | None, typer.Option()] = None,
    rights_holder: Annotated[str | None, typer.Option(help="person:ID or name:ID")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a file as a work; its id is the SHA-256 of its bytes. A re-encoded or lightly edited copy
    of a registered work (by perceptual fingerprint) is linked to it, so it is never paid twice."""
    from endcredits.registry.fingerprints import register_works
    from endcredits.registry.records import WorkIn
    from endcredits.store.blobs import put_blob

    if not file.is_file():
        raise ValidationError(f"{file} is not a file")
    content = file.read_bytes()
    with open_store_of(ctx) as store:
        put_blob(store.data_dir, content)  # content-addressed: written once, safe to repeat
        with store.write() as conn:
            (r,) = register_works(conn, [WorkIn(content, title, kind, source, rights_holder)])
    data = {
        "work_id": r.work_id,
        "linked_to": r.canonical_work_id,
        "similarity": None if r.similarity is None else round(r.similarity, 4),
    }
    if as_json:
        print_json(data)
    else:
        make_console().print(
            f"work {r.work_id}"
            + (
                f" (a copy of {r.canonical_work_id}, similarity {data['similarity']}: credits merge there)"
                if r.canonical_work_id
                else ""
            )
        )


@works_app.command("link")
def works_link(ctx: typer.Context, work_id: str, canonical_work_id: str) -> None:
    """Link a work to the one it duplicates by hand (an operator's decision; audited)."""
    from endcredits.registry.records import link_works

    with open_store_of(ctx) as store, store.write() as conn:
        canonical = link_works(
            conn, work_id, canonical_work_id, method="operator", similarity_ppm=None, linked_by="operator"
        )
    make_console().print(f"work {work_id} is now a copy of {canonical}")


@works_app.command("unlink")
def works_unlink(
    ctx: typer.Context, work_id: str, reason: Annotated[str, typer.Option(help="Why it is not a copy")]
) -> None:
    """Undo a false match: the work is its own again, and is never re-linked by fingerprint."""
    from endcredits.registry.records import unlink_work

    with open_store_of(ctx) as store, store.write() as conn:
        former = unlink_work(conn, work_id, reason=reason)
    make_console().print(f"work {work_id} is no longer a copy of {former}")


@works_app.command("list")
def works_list(
    ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50, as_json: JsonOpt = False
) -> None:
    """List registered works (most recent first)."""
    from endcredits.store.schema import works

    with open_store_of(ctx) as store, store.read() as conn:
        total = conn.execute(select(func.count()).select_from(works)).scalar_one()
        rows = conn.execute(
            select(works.c.id, works.c.title, works.c.kind, works.c.source).order_by(works.c.seq.desc()).limit(limit)
        ).all()
    if as_json:
        print_json({"total": total, "works": [dict(r._mapping) for r in rows]})
    else:
        print_table(
            f"works ({total} in all)",
            ["id", "title", "kind", "source"],
            [[r.id[:16], r.title, r.kind, r.source or ""] for r in rows],
        )


@works_app.command("import-abc")
def works_import_abc(ctx: typer.Context, limit: Annotated[int | None, typer.Option(min=1)] = None) -> None:
    """Import the ABC folk tunes bundled with music21: works, credits and licence-based consent."""
    from endcredits.interop.abc_corpus import import_abc_corpus

    with open_store_of(ctx) as store:
        report = import_abc_corpus(store, limit=limit)
    make_console().print(
        f"imported {report.works} works, {report.credits} credits, {report.names} names, "
        f"{report.grants} consent grants; {report.linked} works linked to a registered duplicate"
    )


def _payee(conn: Any, payee: str | None, name: str | None) -> str:
    from endcredits.registry.records import name_ids, parse_payee

    if (payee is None) == (name is None):
        raise ValidationError("give exactly one of --payee person:ID|name:ID or --name TEXT")
    if payee is not None:
        parse_payee(payee)
        return payee
    assert name is not None
    return f"name:{name_ids(conn, [name])[name.strip()]}"


@credits_app.command("add")
def credits_add(
    ctx: typer.Context,
    work_id: str,
    role: Annotated[str, typer.Option(help="scheme:code, e.g. endcredits:composer")],
    payee: Annotated[str | None, typer.Option(help="person:ID or name:ID")] = None,
    name: Annotated[str | None, typer.Option(help="A credited name nobody has claimed yet")] = None,
    weight: Annotated[int, typer.Option(min=1)] = 1,
    allow_unknown_scheme: Annotated[
        bool, typer.Option("--allow-unknown-scheme", help="Accept a role scheme outside `endcredits roles list`")
    ] = False,
) -> None:
    """Credit a person or a name on a work, in a role (see `endcredits roles list`)."""
    from endcredits.registry.records import CreditIn, add_credits

    with open_store_of(ctx) as store, store.write() as conn:
        n = add_credits(
            conn,
            [CreditIn(work_id, _payee(conn, payee, name), role, weight)],
            allow_unknown_scheme=allow_unknown_scheme,
        )
    make_console().print(f"{n} credit added" if n else "credit already present")


@credits_app.command("list")
def credits_list(ctx: typer.Context, work_id: str, as_json: JsonOpt = False) -> None:
    """Credits on one work, and what it derives from."""
    from endcredits.registry.records import graph_rows

    with open_store_of(ctx) as store, store.read() as conn:
        rows = graph_rows(conn, [work_id])
    data: dict[str, list[dict[str, Any]]] = {
        "credits": [{"work": w, "payee": p, "role": r, "weight": wt} for w, p, r, wt in rows.credits],
        "rights_holders": [{"work": w, "payee": p} for w, p in rows.rights_holders],
        "lineage": [
            {"work": w, "parent": p, "share": str(s) if s is not None else "agreement default"}
            for w, p, s in rows.parents
        ],
    }
    if as_json:
        print_json(data)
    else:
        print_table(
            "credits",
            ["work", "payee", "role", "weight"],
            [[c["work"][:16], c["payee"], c["role"], c["weight"]] for c in data["credits"]],
        )


@credits_app.command("lineage")
def credits_lineage(
    ctx: typer.Context,
    work_id: str,
    parent_work_id: str,
    share: Annotated[
        str | None, typer.Option(help="Share passed upstream, e.g. 0.2 (default: the agreement's)")
    ] = None,
) -> None:
    """Record that a work derives from another (a scan -> a digital double -> a film)."""
    from endcredits.registry.records import add_lineage

    value: Fraction | None = parse_fraction(share, "lineage share") if share is not None else None
    with open_store_of(ctx) as store, store.write() as conn:
        add_lineage(conn, work_id, parent_work_id, value)
    make_console().print(f"{work_id[:16]} derives from {parent_work_id[:16]}")


@roles_app.command("list")
def roles_list(
    scheme: Annotated[str | None, typer.Option(help="Only this scheme: credit, ebu, cawg or endcredits")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The roles a credit may name, as scheme:code with their labels. Needs no database."""
    from endcredits.registry.roles import SCHEMES, roles

    listed = roles(scheme)
    if as_json:
        print_json(
            {
                "schemes": {
                    s.name: {"title": s.title, "source": s.source, "aliases": dict(s.aliases)}
                    for s in SCHEMES.values()
                    if scheme in (None, s.name)
                },
                "roles": [{"scheme": r.scheme, "code": r.code, "role": r.key, "label": r.label} for r in listed],
            }
        )
    else:
        print_table("roles", ["role", "label"], [[r.key, r.label] for r in listed])
