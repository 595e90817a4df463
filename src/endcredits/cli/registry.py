"""`people`, `works`, `credits`, `roles` and `secret-key`: who can be paid, for which works, in which roles."""

from __future__ import annotations

import dataclasses
import sys
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer

from endcredits.cli.common import (
    JsonOpt,
    LimitOpt,
    amounts_text,
    make_console,
    open_store_of,
    print_json,
    print_table,
    progress_bar,
    time_option,
)
from endcredits.cli.interop import DaysOpt, FromOpt, PerpetualOpt, UntilOpt, grant_window
from endcredits.errors import ValidationError
from endcredits.interop._common import SIGNAL_VALID_DAYS_DEFAULT
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
    as_json: JsonOpt = False,
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
        key = new_key_text()
        print_json({"key": key}) if as_json else sys.stdout.write(key + "\n")
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
    if as_json:
        print_json({"resealed": count, "key_id": new.key_id.hex()})
    else:
        make_console().print(f"re-sealed {count} contact and payment details under key {new.key_id.hex()}")


@people_app.command("list")
def people_list(ctx: typer.Context, limit: LimitOpt = 1_000, as_json: JsonOpt = False) -> None:
    """List people by id, whether they are verified, and what they are owed (payable, per currency)."""
    from endcredits.ledger.records import account_balances
    from endcredits.registry.private import with_payout_account
    from endcredits.registry.records import people_list as list_people

    with open_store_of(ctx) as store, store.read() as conn:
        total, listed = list_people(conn, limit=limit)
        balances = account_balances(conn, kind="payable")
        banked = with_payout_account(conn, [p.person_id for p in listed])
    owed: dict[int, dict[str, int]] = {p.person_id: {} for p in listed}
    for key, value in sorted(balances.items()):
        _, person, currency = key.rsplit(":", 2)  # payable:person:ID:CCY
        if int(person) in owed:
            owed[int(person)][currency] = value
    out = [
        {
            "person_id": p.person_id,
            "handle": p.handle,
            "verified": p.verified,
            "payout_account": p.person_id in banked,
            "payable_microunits": owed[p.person_id],
            "payable": {c: format_amount(v, c) for c, v in owed[p.person_id].items()},
        }
        for p in listed
    ]
    if as_json:
        print_json({"total": total, "people": out})
        return
    print_table(
        f"people ({total} in all)",
        ["id", "handle", "verified", "bank", "payable"],
        [
            [p.person_id, p.handle, p.verified, p.person_id in banked, amounts_text(owed[p.person_id], none="")]
            for p in listed
        ],
    )


@people_app.command("verify")
def people_verify(
    ctx: typer.Context,
    person_id: int,
    issuer: Annotated[str, typer.Option(help="Who vouches for this person (a guild, a union, an IdP).")],
    as_json: JsonOpt = False,
) -> None:
    """Mark a person verified and release whatever escrow holds for them."""
    from endcredits.ledger.escrow import claim_escrow_in
    from endcredits.registry.records import verify_person

    with open_store_of(ctx) as store, store.write() as conn:
        verify_person(conn, person_id, verified_by=issuer)
        result = claim_escrow_in(conn, person_id)
    if as_json:
        print_json({**result.to_json(), "verified_by": issuer})
    else:
        released = amounts_text(result.moved_microunits)
        make_console().print(f"person {person_id} verified by {issuer}; released from escrow: {released}")


@people_app.command("deceased")
def people_deceased(
    ctx: typer.Context,
    person_id: int,
    estate: Annotated[int, typer.Option(help="The person who grants and revokes consent for them from now on")],
    died: Annotated[str, typer.Option(help="Date of death (ISO-8601)")],
    as_json: JsonOpt = False,
) -> None:
    """Record a person as deceased, with the estate that consents for them."""
    from endcredits.registry.estates import record_death

    with open_store_of(ctx) as store, store.write() as conn:
        e = record_death(conn, person_id, deceased_at=time_option(died, "--died"), estate_person_id=estate)
    data = {"person": e.person_id, "deceased_at": e.deceased_at.isoformat(), "estate": e.estate_person_id}
    print_json(data) if as_json else make_console().print(
        f"person {e.person_id} recorded deceased; consent for them comes from person {e.estate_person_id}"
    )


@people_app.command("bank")
def people_bank(
    ctx: typer.Context,
    person_id: int,
    iban: Annotated[str, typer.Option()],
    bic: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set where a person's payouts go."""
    from endcredits.payouts.iban import normalize_bic, normalize_iban
    from endcredits.registry.records import set_payout_account

    with open_store_of(ctx) as store, store.write() as conn:
        set_payout_account(conn, person_id, iban=normalize_iban(iban), bic=normalize_bic(bic) if bic else None)
    if as_json:
        print_json({"person_id": person_id, "payout_account": True})
    else:
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
        try:
            with store.write() as conn:
                (r,) = register_works(
                    conn, [WorkIn(content, title, kind, source, rights_holder)], data_dir=store.data_dir
                )
        except ValidationError as exc:
            raise ValidationError(f"{file}: {exc}") from None
    data = {
        "work_id": r.work_id,
        "linked_to": r.canonical_work_id,
        "similarity": None if r.similarity is None else round(r.similarity, 4),
        "candidates": [{"work_id": w, "similarity": round(x, 4)} for w, x in r.candidates],
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
        for w, x in r.candidates:
            make_console().print(f"  may copy {w} (similarity {x:.4f}); if so: endcredits works link {r.work_id} {w}")


@works_app.command("link")
def works_link(ctx: typer.Context, work_id: str, canonical_work_id: str, as_json: JsonOpt = False) -> None:
    """Link a work to the one it duplicates by hand (an operator's decision; audited)."""
    from endcredits.registry.records import link_works

    with open_store_of(ctx) as store, store.write() as conn:
        canonical = link_works(
            conn, work_id, canonical_work_id, method="operator", similarity_ppm=None, linked_by="operator"
        )
    if as_json:
        print_json({"work_id": work_id, "linked_to": canonical})
    else:
        make_console().print(f"work {work_id} is now a copy of {canonical}")


@works_app.command("unlink")
def works_unlink(
    ctx: typer.Context,
    work_id: str,
    reason: Annotated[str, typer.Option(help="Why it is not a copy")],
    as_json: JsonOpt = False,
) -> None:
    """Undo a false match: the work is its own again, and is never re-linked by fingerprint."""
    from endcredits.registry.records import unlink_work

    with open_store_of(ctx) as store, store.write() as conn:
        former = unlink_work(conn, work_id, reason=reason)
    if as_json:
        print_json({"work_id": work_id, "was_linked_to": former, "reason": reason})
    else:
        make_console().print(f"work {work_id} is no longer a copy of {former}")


@works_app.command("list")
def works_list(ctx: typer.Context, limit: LimitOpt = 50, as_json: JsonOpt = False) -> None:
    """List registered works (most recent first)."""
    from endcredits.registry.records import works_list as list_works

    with open_store_of(ctx) as store, store.read() as conn:
        total, listed = list_works(conn, limit=limit)
    if as_json:
        rows = [{"id": w.work_id, "title": w.title, "kind": w.kind, "source": w.source} for w in listed]
        print_json({"total": total, "works": rows})
    else:
        print_table(
            f"works ({total} in all)",
            ["id", "title", "kind", "source"],
            [[w.work_id[:16], w.title, w.kind, w.source or ""] for w in listed],
        )


@works_app.command("import-abc")
def works_import_abc(
    ctx: typer.Context, limit: Annotated[int | None, typer.Option(min=1)] = None, as_json: JsonOpt = False
) -> None:
    """Import the ABC folk tunes bundled with music21: works, credits and licence-based consent."""
    from endcredits.interop.abc_corpus import import_abc_corpus

    with open_store_of(ctx) as store:
        report = import_abc_corpus(store, limit=limit)
    if as_json:
        print_json(dataclasses.asdict(report))
        return
    make_console().print(
        f"imported {report.works} works, {report.credits} credits, {report.names} names, "
        f"{report.grants} consent grants; {report.linked} works linked to a registered duplicate"
    )


@works_app.command("import")
def works_import(
    ctx: typer.Context,
    file: Path,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv, jsonl or parquet (default: from the file's extension)")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write every refused row here: CSV, or JSON Lines if it ends in .jsonl (0600)"),
    ] = None,
    batch_rows: Annotated[int, typer.Option("--batch-rows", min=1, help="Rows committed together")] = 1_000,
    allow_unknown_scheme: Annotated[
        bool, typer.Option("--allow-unknown-scheme", help="Accept a role scheme outside `endcredits roles list`")
    ] = False,
    valid_from: FromOpt = None,
    until: UntilOpt = None,
    days: DaysOpt = SIGNAL_VALID_DAYS_DEFAULT,
    perpetual: PerpetualOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import a credited collection: one row per work (content file, kind, title, source, licence, rights
    holder, credits, lineage, consent) from CSV, JSON Lines or Parquet; see docs/concepts/registry.md.
    An SVG drawing's own metadata (dc:title, dc:creator, dc:rights, cc:license) fills what its row
    leaves empty. Importing the same file again adds nothing and finishes an interrupted import. Exits 1 when a row
    was refused (each refused row is listed with its reason; the other rows are imported)."""
    from endcredits.interop.collection import import_collection

    window = grant_window(valid_from, until, days, perpetual)
    # A bar on a terminal only: piped into a log, stderr keeps just the one-line errors.
    bar = progress_bar(f"importing {file.name}", 100) if sys.stderr.isatty() else nullcontext(lambda _d: None)
    with open_store_of(ctx) as store, bar as advance:
        done = import_collection(
            store, file, window=window, fmt=fmt, batch_rows=batch_rows, refusals_path=report,
            progress=lambda d, t: advance(d * 100 // max(t, 1)), allow_unknown_scheme=allow_unknown_scheme,
        )  # fmt: skip
    if as_json:
        print_json(done.summary())
    else:
        _print_collection_report(done, report)
    if done.rows_refused:
        raise typer.Exit(1)


REFUSALS_SHOWN_MAX = 20
"""Refused rows `works import` lists on the terminal; --report or --json gives them all."""


def _print_collection_report(done: Any, report: Path | None) -> None:
    console = make_console()
    console.print(
        f"{done.path}: {done.rows_read} rows read; {done.rows_new} new, {done.rows_present} already present, "
        f"{done.rows_refused} refused; added {done.works_added} works ({done.works_linked} linked to a registered "
        f"duplicate), {done.credits_added} credits, {done.lineage_added} lineage links, {done.grants_added} grants"
    )
    shown = done.refusals[:REFUSALS_SHOWN_MAX]
    for r in shown:
        console.print(f"row {r.row}: {r.reason}", markup=False)
    if done.rows_refused > len(shown):
        more = done.rows_refused - len(shown)
        console.print(f"... and {more} more refused rows" + (f": all are in {report}" if report else ": use --report"))


def _payee(conn: Any, payee: str | None, name: str | None) -> tuple[str, int | None]:
    """The payee to credit, and the id of the credited name when it is one given by ``--name``."""
    from endcredits.registry.records import name_ids, parse_payee

    if (payee is None) == (name is None):
        raise ValidationError("give exactly one of --payee person:ID|name:ID or --name TEXT")
    if payee is not None:
        parse_payee(payee)
        return payee, None
    assert name is not None
    name_id = name_ids(conn, [name])[name.strip()]
    return f"name:{name_id}", name_id


@credits_app.command("add")
def credits_add(
    ctx: typer.Context,
    work_id: str,
    role: Annotated[str, typer.Option(help="scheme:code, e.g. endcredits:composer")],
    payee: Annotated[str | None, typer.Option(help="person:ID or name:ID")] = None,
    name: Annotated[
        str | None, typer.Option(help="A credited name nobody has claimed yet; its id (name_id) is printed")
    ] = None,
    weight: Annotated[int, typer.Option(min=1)] = 1,
    allow_unknown_scheme: Annotated[
        bool, typer.Option("--allow-unknown-scheme", help="Accept a role scheme outside `endcredits roles list`")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Credit a person or a name on a work, in a role (see `endcredits roles list`). A name's money waits
    in escrow until a person claims it: `endcredits escrow claim --person ID --name NAME_ID`."""
    from endcredits.registry.records import CreditIn, add_credits

    with open_store_of(ctx) as store, store.write() as conn:
        credited, name_id = _payee(conn, payee, name)
        n = add_credits(conn, [CreditIn(work_id, credited, role, weight)], allow_unknown_scheme=allow_unknown_scheme)
    if as_json:
        print_json(
            {"work_id": work_id, "payee": credited, "name_id": name_id, "role": role, "weight": weight, "added": n}
        )
        return
    said = f"{n} credit added" if n else "credit already present"
    make_console().print(f"{said}: {credited} on {work_id[:16]}" + (f" (name_id {name_id})" if name_id else ""))


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
    as_json: JsonOpt = False,
) -> None:
    """Record that a work derives from another (a scan -> a digital double -> a film)."""
    from endcredits.registry.records import add_lineage

    value: Fraction | None = parse_fraction(share, "lineage share") if share is not None else None
    with open_store_of(ctx) as store, store.write() as conn:
        add_lineage(conn, work_id, parent_work_id, value)
    if as_json:
        print_json(
            {"work_id": work_id, "parent_work_id": parent_work_id, "share": None if value is None else str(value)}
        )
    else:
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
