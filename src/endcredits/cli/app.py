"""Typer commands. Thin: each parses its options, calls one stage function, and prints the result."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from typer.core import TyperGroup

from endcredits.cli.identity import credential_app, issuer_app
from endcredits.cli.interop import interop_app
from endcredits.cli.service import login_link_app, operator_key_app, serve_cmd
from endcredits.errors import EndcreditsError, ValidationError
from endcredits.money import format_amount, parse_amount, parse_fraction
from endcredits.royalties.records import load_agreement
from endcredits.store.engine import DATA_ENV, DB_ENV, Store, init_store, open_store, parse_time


class _Group(TyperGroup):
    """Turns any error endcredits raises on purpose into one line on stderr and exit status 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EndcreditsError as exc:
            sys.stderr.write(f"error [{exc.code}]: {exc}\n")
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Residuals for the humans whose work trains AI.",
)
people_app = typer.Typer(no_args_is_help=True, help="People who can be paid (verified or not).")
works_app = typer.Typer(no_args_is_help=True, help="Works: training data, content-addressed by SHA-256.")
credits_app = typer.Typer(no_args_is_help=True, help="Credits (who did what on a work) and lineage.")
roles_app = typer.Typer(no_args_is_help=True, help="Role vocabularies: CRediT, EBU role codes, CAWG, endcredits.")
consent_app = typer.Typer(no_args_is_help=True, help="Consent grants per use, bounded in time, revocable.")
manifest_app = typer.Typer(no_args_is_help=True, help="Manifests: what one model was trained on, Merkle-committed.")
run_app = typer.Typer(
    no_args_is_help=True, help="Training runs: the model, its checkpoints' SHA-256s and the manifest root."
)
manifest_app.add_typer(run_app, name="run")
agreement_app = typer.Typer(no_args_is_help=True, help="The residual policy (a versioned TOML file).")
payouts_app = typer.Typer(no_args_is_help=True, help="Payout batches: pain.001 and CSV files, bank statuses.")
escrow_app = typer.Typer(no_args_is_help=True, help="Money held for people not yet verified or names not yet claimed.")
ledger_app = typer.Typer(no_args_is_help=True, help="The ledger's accrual segments and their folding into balances.")
app.add_typer(people_app, name="people")
app.add_typer(works_app, name="works")
app.add_typer(credits_app, name="credits")
app.add_typer(roles_app, name="roles")
app.add_typer(consent_app, name="consent")
app.add_typer(manifest_app, name="manifest")
app.add_typer(agreement_app, name="agreement")
app.add_typer(payouts_app, name="payouts")
app.add_typer(escrow_app, name="escrow")
app.add_typer(ledger_app, name="ledger")
app.add_typer(credential_app, name="credential")
app.add_typer(issuer_app, name="issuer")
app.add_typer(interop_app, name="interop")
app.add_typer(operator_key_app, name="operator-key")
app.add_typer(login_link_app, name="login-link")
app.command("serve")(serve_cmd)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Compute and show; write nothing.")]


@dataclass(frozen=True)
class _Where:
    data: Path | None
    db: str | None


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
    ctx.obj = _Where(data, db)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


@contextmanager
def _store(ctx: typer.Context) -> Iterator[Store]:
    where: _Where = ctx.obj
    store = open_store(where.data, where.db)
    try:
        yield store
    finally:
        store.dispose()


@contextmanager
def _bar(description: str, total: int) -> Iterator[Any]:
    """A progress bar on standard error; yields ``advance(done)``."""
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


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(v) for v in r])
    _console().print(t)


def _time(value: str | None, what: str) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        return parse_time(value)
    except ValidationError as exc:
        raise ValidationError(f"{what}: {exc}") from None


# init ---------------------------------------------------------------------------------------------
@app.command("init")
def init_cmd(ctx: typer.Context) -> None:
    """Create (or upgrade) the database and data directory."""
    where: _Where = ctx.obj
    store = init_store(where.data, where.db)
    _console().print(f"initialised {store.backend} store in {store.data_dir}")
    store.dispose()


# people -------------------------------------------------------------------------------------------
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

    with _store(ctx) as store, store.write() as conn:
        pid = add_person(
            conn,
            handle,
            iban=normalize_iban(iban) if iban else None,
            bic=normalize_bic(bic) if bic else None,
            email=email,
        )
    _print_json({"person_id": pid, "handle": handle}) if as_json else _console().print(f"person {pid} added")


@app.command("secret-key")
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
    with _store(ctx) as store, store.write() as conn:
        count = rotate_key(conn, old, new)
    _console().print(f"re-sealed {count} contact and payment details under key {new.key_id.hex()}")


@people_app.command("list")
def people_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List people, whether they are verified, and what they are owed."""
    from endcredits.ledger.records import account_balances
    from endcredits.registry.private import with_payout_account
    from endcredits.store.schema import people

    with _store(ctx) as store, store.read() as conn:
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
        _print_json({"people": out})
    else:
        _table(
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

    with _store(ctx) as store, store.write() as conn:
        verify_person(conn, person_id, verified_by=issuer)
        result = claim_escrow_in(conn, person_id)
    moved = ", ".join(f"{format_amount(v, c)} {c}" for c, v in result.moved_microunits.items()) or "nothing"
    _console().print(f"person {person_id} verified by {issuer}; released from escrow: {moved}")


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

    with _store(ctx) as store, store.write() as conn:
        set_payout_account(conn, person_id, iban=normalize_iban(iban), bic=normalize_bic(bic) if bic else None)
    _console().print(f"person {person_id}: payout account set")


# works and credits -------------------------------------------------------------------------------
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
    with _store(ctx) as store:
        put_blob(store.data_dir, content)  # content-addressed: written once, safe to repeat
        with store.write() as conn:
            (r,) = register_works(conn, [WorkIn(content, title, kind, source, rights_holder)])
    data = {
        "work_id": r.work_id,
        "linked_to": r.canonical_work_id,
        "similarity": None if r.similarity is None else round(r.similarity, 4),
    }
    if as_json:
        _print_json(data)
    else:
        _console().print(
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

    with _store(ctx) as store, store.write() as conn:
        canonical = link_works(
            conn, work_id, canonical_work_id, method="operator", similarity_ppm=None, linked_by="operator"
        )
    _console().print(f"work {work_id} is now a copy of {canonical}")


@works_app.command("unlink")
def works_unlink(
    ctx: typer.Context, work_id: str, reason: Annotated[str, typer.Option(help="Why it is not a copy")]
) -> None:
    """Undo a false match: the work is its own again, and is never re-linked by fingerprint."""
    from endcredits.registry.records import unlink_work

    with _store(ctx) as store, store.write() as conn:
        former = unlink_work(conn, work_id, reason=reason)
    _console().print(f"work {work_id} is no longer a copy of {former}")


@works_app.command("list")
def works_list(
    ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50, as_json: JsonOpt = False
) -> None:
    """List registered works (most recent first)."""
    from endcredits.store.schema import works

    with _store(ctx) as store, store.read() as conn:
        total = conn.execute(select(func.count()).select_from(works)).scalar_one()
        rows = conn.execute(
            select(works.c.id, works.c.title, works.c.kind, works.c.source).order_by(works.c.seq.desc()).limit(limit)
        ).all()
    if as_json:
        _print_json({"total": total, "works": [dict(r._mapping) for r in rows]})
    else:
        _table(
            f"works ({total} in all)",
            ["id", "title", "kind", "source"],
            [[r.id[:16], r.title, r.kind, r.source or ""] for r in rows],
        )


@works_app.command("import-abc")
def works_import_abc(ctx: typer.Context, limit: Annotated[int | None, typer.Option(min=1)] = None) -> None:
    """Import the ABC folk tunes bundled with music21: works, credits and licence-based consent."""
    from endcredits.interop.abc_corpus import import_abc_corpus

    with _store(ctx) as store:
        report = import_abc_corpus(store, limit=limit)
    _console().print(
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

    with _store(ctx) as store, store.write() as conn:
        n = add_credits(
            conn,
            [CreditIn(work_id, _payee(conn, payee, name), role, weight)],
            allow_unknown_scheme=allow_unknown_scheme,
        )
    _console().print(f"{n} credit added" if n else "credit already present")


@credits_app.command("list")
def credits_list(ctx: typer.Context, work_id: str, as_json: JsonOpt = False) -> None:
    """Credits on one work, and what it derives from."""
    from endcredits.registry.records import graph_rows

    with _store(ctx) as store, store.read() as conn:
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
        _print_json(data)
    else:
        _table(
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
    with _store(ctx) as store, store.write() as conn:
        add_lineage(conn, work_id, parent_work_id, value)
    _console().print(f"{work_id[:16]} derives from {parent_work_id[:16]}")


@roles_app.command("list")
def roles_list(
    scheme: Annotated[str | None, typer.Option(help="Only this scheme: credit, ebu, cawg or endcredits")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The roles a credit may name, as scheme:code with their labels. Needs no database."""
    from endcredits.registry.roles import SCHEMES, roles

    listed = roles(scheme)
    if as_json:
        _print_json(
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
        _table("roles", ["role", "label"], [[r.key, r.label] for r in listed])


# consent ------------------------------------------------------------------------------------------
@consent_app.command("grant")
def consent_grant(
    ctx: typer.Context,
    use: Annotated[str, typer.Option()],
    decision: Annotated[str, typer.Option(help="allowed or notAllowed")],
    source: Annotated[str, typer.Option(help="Where this decision comes from")],
    work: Annotated[str | None, typer.Option()] = None,
    person: Annotated[int | None, typer.Option()] = None,
    valid_from: Annotated[str | None, typer.Option("--from")] = None,
    until: Annotated[str | None, typer.Option()] = None,
    perpetual: Annotated[bool, typer.Option("--perpetual", help="No end date; must be said explicitly")] = False,
) -> None:
    """Record a consent decision for a work or a person, for one use and a time window."""
    from endcredits.consent.records import add_grants
    from endcredits.consent.rules import Grant

    if (work is None) == (person is None):
        raise ValidationError("give exactly one of --work ID or --person ID")
    if until is None and not perpetual:
        raise ValidationError("give --until TIME, or --perpetual to say explicitly that it never ends")
    grant = Grant(
        subject_kind="work" if work else "person",
        subject_id=work or str(person),
        use=use,
        decision=decision,  # type: ignore[arg-type]
        valid_from=_time(valid_from, "--from"),
        valid_until=_time(until, "--until") if until else None,
        perpetual=perpetual,
        source=source,
    )
    with _store(ctx) as store, store.write() as conn:
        (gid,) = add_grants(conn, [grant])
    _console().print(f"consent grant {gid}")


@consent_app.command("revoke")
def consent_revoke(
    ctx: typer.Context, grant_id: int, at: Annotated[str | None, typer.Option()] = None, as_json: JsonOpt = False
) -> None:
    """Revoke a grant, and report every model, manifest and training run that already used the work
    (or a work derived from it)."""
    from endcredits.consent.records import revoke_grant
    from endcredits.manifest.records import revocation_report
    from endcredits.registry.records import works_of_person

    with _store(ctx) as store, store.write() as conn:
        grant = revoke_grant(conn, grant_id, _time(at, "--at"))
        work_ids = [grant.subject_id] if grant.subject_kind == "work" else works_of_person(conn, int(grant.subject_id))
        affected = revocation_report(conn, work_ids)
    affected_rows = [
        {
            "model": u.model_id,
            "manifest": u.manifest_id,
            "work": u.work_id,
            "via": u.via,
            "training_runs": list(u.training_run_ids),
        }
        for u in affected
    ]
    report: dict[str, Any] = {
        "grant": grant_id,
        "revoked_use": grant.use,
        "subject": f"{grant.subject_kind}:{grant.subject_id}",
        "models": sorted({u.model_id for u in affected}),
        "manifests": sorted({u.manifest_id for u in affected}),
        "affected": affected_rows,
    }
    if as_json:
        _print_json(report)
    else:
        _console().print(
            f"grant {grant_id} revoked; {len(report['models'])} models and {len(report['manifests'])} "
            f"manifests used the work: {len(affected)} (manifest, work) uses to report"
        )
        for a in affected_rows:
            via = f" (derived from {a['via']})" if a["via"] else ""
            runs = f"; training runs {', '.join(a['training_runs'])}" if a["training_runs"] else ""
            _console().print(f"  model {a['model']} manifest {a['manifest']} used work {a['work']}{via}{runs}")


@consent_app.command("list")
def consent_list(
    ctx: typer.Context,
    work: Annotated[str | None, typer.Option()] = None,
    person: Annotated[int | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Grants on a work or a person."""
    from endcredits.consent.records import grants_for

    with _store(ctx) as store, store.read() as conn:
        grants = grants_for(conn, [work] if work else [], [str(person)] if person is not None else [])
    rows: list[dict[str, Any]] = [
        {
            "id": i,
            "subject": f"{g.subject_kind}:{g.subject_id}",
            "use": g.use,
            "decision": g.decision,
            "from": g.valid_from.isoformat(),
            "until": g.valid_until.isoformat() if g.valid_until else "perpetual",
            "revoked_at": g.revoked_at.isoformat() if g.revoked_at else None,
            "source": g.source,
        }
        for i, g in grants
    ]
    if as_json:
        _print_json({"grants": rows})
    else:
        _table(
            "consent",
            ["id", "subject", "use", "decision", "until", "revoked", "source"],
            [
                [r["id"], r["subject"][:24], r["use"], r["decision"], r["until"], r["revoked_at"] or "", r["source"]]
                for r in rows
            ],
        )


# manifest -----------------------------------------------------------------------------------------
@manifest_app.command("build")
def manifest_build(
    ctx: typer.Context,
    model: Annotated[str, typer.Option()],
    use: Annotated[
        list[str], typer.Option(help="Repeat for each use, e.g. --use ai_generative_training --use commercial")
    ],
    default: Annotated[
        str, typer.Option(help="Operator default where no grant decides: opt-in or opt-out (no default: say it)")
    ],
    as_of: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide every registered work for the model's uses and commit to the included ones."""
    from endcredits.manifest.build import build_manifest

    with _store(ctx) as store:
        m = build_manifest(store, model_id=model, uses=use, as_of=_time(as_of, "--as-of"), default=default)  # type: ignore[arg-type]
    data = {
        "manifest_id": m.id,
        "model": m.model_id,
        "uses": list(m.uses),
        "as_of": m.as_of,
        "merkle_root": m.merkle_root,
        "included": len(m.included),
        "excluded": len(m.excluded),
    }
    _print_json(data) if as_json else _console().print(
        f"manifest {m.id}: {len(m.included)} works included, {len(m.excluded)} excluded, root {m.merkle_root}"
    )


@manifest_app.command("list")
def manifest_list(
    ctx: typer.Context, model: Annotated[str | None, typer.Option()] = None, as_json: JsonOpt = False
) -> None:
    """Manifests, newest first, with their roots and counts."""
    from endcredits.store.schema import manifests

    with _store(ctx) as store, store.read() as conn:
        q = select(manifests).order_by(manifests.c.created_at.desc(), manifests.c.id)
        rows = conn.execute(q.where(manifests.c.model_id == model) if model else q).all()
    data = [
        {
            "manifest_id": r.id,
            "model": r.model_id,
            "uses": r.uses.split(","),
            "as_of": r.as_of,
            "merkle_root": r.merkle_root,
            "included": r.included_count,
            "excluded": r.excluded_count,
        }
        for r in rows
    ]
    if as_json:
        _print_json({"manifests": data})
    else:
        _table(
            "manifests",
            ["id", "model", "as of", "root", "included", "excluded"],
            [
                [d["manifest_id"], d["model"], d["as_of"], d["merkle_root"][:16], d["included"], d["excluded"]]
                for d in data
            ],
        )


@manifest_app.command("show")
def manifest_show(ctx: typer.Context, manifest_id: str, as_json: JsonOpt = False) -> None:
    """A manifest's root, counts and excluded works with reasons."""
    from endcredits.manifest.records import load_manifest

    with _store(ctx) as store, store.read() as conn:
        m = load_manifest(conn, manifest_id)
    data = {
        "manifest_id": m.id,
        "model": m.model_id,
        "uses": list(m.uses),
        "as_of": m.as_of,
        "merkle_root": m.merkle_root,
        "checkpoint_sha256": m.checkpoint_sha256,
        "included": len(m.included),
        "excluded": [{"work": w, "reason": r} for w, r in m.excluded],
    }
    if as_json:
        _print_json(data)
    else:
        _console().print(f"manifest {m.id} for model {m.model_id} ({', '.join(m.uses)}) as of {m.as_of}")
        _console().print(f"root {m.merkle_root}; {len(m.included)} included; {len(m.excluded)} excluded")
        for w, r in m.excluded[:20]:
            _console().print(f"  excluded {w[:16]}: {r}")


@manifest_app.command("prove")
def manifest_prove(ctx: typer.Context, manifest_id: str, work_id: str) -> None:
    """Print a JSON proof that a work is (or is not) in a manifest; check it with `manifest check`."""
    from endcredits.manifest.merkle import proof_to_json, prove_exclusion, prove_inclusion
    from endcredits.manifest.records import load_manifest

    with _store(ctx) as store, store.read() as conn:
        m = load_manifest(conn, manifest_id)
    proof = prove_inclusion(m.included, work_id) if work_id in set(m.included) else prove_exclusion(m.included, work_id)
    _print_json({"manifest_id": m.id, "root": m.merkle_root, "proof": proof_to_json(proof)})


@manifest_app.command("check")
def manifest_check(
    proof_file: Path,
    root: Annotated[str | None, typer.Option(help="The published root (default: the file's)")] = None,
    works: Annotated[int | None, typer.Option(help="The published number of works in the manifest")] = None,
) -> None:
    """Check a proof from `manifest prove` against a published root. Needs no database."""
    from endcredits.manifest.merkle import ExclusionProof, proof_from_json, verify_exclusion, verify_inclusion

    try:
        data = json.loads(proof_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{proof_file} is not a proof file: {exc}") from None
    expected = root or data.get("root", "")
    proof = proof_from_json(data.get("proof", data))
    if isinstance(proof, ExclusionProof):
        ok, what = verify_exclusion(expected, proof, leaf_count=works), "excluded from"
    else:
        ok, what = verify_inclusion(expected, proof, leaf_count=works), "included in"
    if not ok:
        raise ValidationError(f"proof does not check against root {expected}")
    _console().print(f"valid: work {proof.work_id} is {what} the manifest with root {expected}")


def _file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ValidationError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    return digest.hexdigest()


def _run_json(r: Any) -> dict[str, Any]:
    return {
        "run_id": r.id,
        "model": r.model_id,
        "manifest_id": r.manifest_id,
        "merkle_root": r.merkle_root,
        "checkpoint_sha256s": list(r.checkpoint_sha256s),
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "recorded_at": r.recorded_at,
    }


@run_app.command("record")
def run_record(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Option("--run", help="The run's id (idempotency key)")],
    manifest: Annotated[str, typer.Option(help="The manifest the run trained on")],
    started: Annotated[str, typer.Option(help="When training started (ISO-8601)")],
    finished: Annotated[str, typer.Option(help="When training finished (ISO-8601)")],
    checkpoint: Annotated[list[Path] | None, typer.Option(help="A checkpoint file to hash; repeat for each")] = None,
    checkpoint_sha256: Annotated[list[str] | None, typer.Option(help="A checkpoint's SHA-256; repeat for each")] = None,
    model: Annotated[str | None, typer.Option(help="The model; must be the manifest's")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a training run: which checkpoints the manifest's model produced from exactly that manifest."""
    from endcredits.manifest.records import record_training_run

    hashes = [_file_sha256(p) for p in checkpoint or []] + list(checkpoint_sha256 or [])
    with _store(ctx) as store, store.write() as conn:
        r = record_training_run(
            conn,
            run_id=run_id,
            manifest_id=manifest,
            checkpoint_sha256s=hashes,
            started_at=_time(started, "--started"),
            finished_at=_time(finished, "--finished"),
            model_id=model,
        )
    _print_json(_run_json(r)) if as_json else _console().print(
        f"training run {r.id}: model {r.model_id}, manifest {r.manifest_id} (root {r.merkle_root}), "
        f"{len(r.checkpoint_sha256s)} checkpoints"
    )


@run_app.command("list")
def run_list(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option()] = None,
    manifest: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Recorded training runs, newest first, with their manifest roots and checkpoint hashes."""
    from endcredits.manifest.records import training_runs_list

    with _store(ctx) as store, store.read() as conn:
        runs = training_runs_list(conn, model_id=model, manifest_id=manifest, limit=limit)
    if as_json:
        _print_json({"runs": [_run_json(r) for r in runs]})
    else:
        _table(
            "training runs",
            ["run", "model", "manifest", "root", "checkpoints", "finished"],
            [
                [r.id, r.model_id, r.manifest_id, r.merkle_root[:16], len(r.checkpoint_sha256s), r.finished_at]
                for r in runs
            ],
        )


# agreement ----------------------------------------------------------------------------------------
@agreement_app.command("load")
def agreement_load(ctx: typer.Context, file: Path) -> None:
    """Load an agreement file (a new version needs a new version number)."""
    from endcredits.royalties import parse_agreement
    from endcredits.royalties.records import save_agreement

    try:
        body = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read {file}: {exc.strerror}") from None
    a = parse_agreement(body)
    with _store(ctx) as store, store.write() as conn:
        status = save_agreement(conn, a.id, a.version, a.body, a.body_sha256)
    _console().print(f"agreement {a.id} version {a.version}: {status}")


@agreement_app.command("show")
def agreement_show(
    ctx: typer.Context, agreement_id: str, version: Annotated[int | None, typer.Option()] = None
) -> None:
    """Print an agreement's text."""
    from endcredits.royalties.records import load_agreement_body

    with _store(ctx) as store, store.read() as conn:
        sys.stdout.write(load_agreement_body(conn, agreement_id, version))


# accrue -------------------------------------------------------------------------------------------
@app.command("accrue")
def accrue_cmd(
    ctx: typer.Context,
    outputs: Annotated[Path, typer.Option(help="CSV/Parquet: output_id, model_id, revenue, currency, occurred_at")],
    attributions: Annotated[Path, typer.Option(help="CSV/Parquet: output_id, work_id (or payee), score")],
    agreement: Annotated[str, typer.Option(help="Agreement id (its newest version)")],
    batch_id: Annotated[str, typer.Option(help="Idempotency id of this batch")],
    manifest: Annotated[str | None, typer.Option(help="Manifest id (default: the model's newest)")] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Accrue residuals for a batch of outputs: split, carry forward, evidence, one ledger transfer per period."""
    from endcredits.cli.files import read_rows
    from endcredits.ledger.accrue import accrue_scored
    from endcredits.royalties.usage import OutputIn

    out_rows = read_rows(outputs, ["output_id", "model_id", "revenue", "currency", "occurred_at"])
    attr_rows = read_rows(attributions, ["output_id", "score"], one_of=["work_id", "payee"])
    per: Literal["work", "payee"] = "payee" if attr_rows and "work_id" not in attr_rows[0] else "work"
    outs = [
        OutputIn(
            r["output_id"], r["model_id"], parse_amount(r["revenue"], r["currency"]), r["currency"], r["occurred_at"]
        )
        for r in out_rows
    ]
    known = {o.output_id for o in outs}
    scores: dict[str, dict[str, float]] = {}
    for i, r in enumerate(attr_rows):
        if r["output_id"] not in known:
            raise ValidationError(
                f"{attributions} row {i + 2} names output {r['output_id']}, which is not in {outputs}"
            )
        try:
            value = float(r["score"])
        except ValueError:
            raise ValidationError(f"{attributions} row {i + 2}: score {r['score']!r} is not a number") from None
        scores.setdefault(r["output_id"], {})[r["work_id"] if per == "work" else r["payee"]] = value
    with _store(ctx) as store:
        summary = accrue_scored(
            store,
            outs,
            scores,
            per=per,
            agreement_id=agreement,
            batch_id=batch_id,
            manifest_id=manifest,
            dry_run=dry_run,
        )
    if as_json:
        _print_json(summary.to_json())
    else:
        c = summary.currency
        _console().print(
            f"batch {batch_id} ({summary.status}): {summary.outputs} outputs, {summary.lines} lines, "
            f"pool {format_amount(summary.pool_microunits, c)} {c} = paid {format_amount(summary.posted_microunits, c)}"
            f" + escrow {format_amount(summary.escrow_microunits, c)} + suspense change "
            f"{format_amount(summary.suspense_delta_microunits, c)}"
        )


# attribute ----------------------------------------------------------------------------------------
RayOpt = Annotated[str | None, typer.Option("--ray", help="Run shards as Ray tasks: 'auto' or a cluster address")]


@app.command("featurize")
def featurize_cmd(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Option(help="The model checkpoint (from the demo, or save_lm)")],
    manifest: Annotated[str, typer.Option(help="The manifest the model was trained on")],
    k: Annotated[int, typer.Option(min=8, max=65_536)] = 1_024,
    seed: int = 0,
    ray: RayOpt = None,
) -> None:
    """Featurize every work in the manifest once (projected gradients, memory-mapped); resumable."""
    from endcredits.attribution.texts import bound_checkpoint, featurize_manifest

    with _store(ctx) as store:
        lm, m = bound_checkpoint(store, manifest, checkpoint)
        with _bar("featurizing works", len(m.included)) as advance:
            fs = featurize_manifest(store, m, lm, k=k, seed=seed, ray=ray, progress=lambda d, _t: advance(d))
    _console().print(f"features of {len(fs.ids)} works ({fs.manifest['dim']} dims) in {fs.directory}")


def _read_text_outputs(path: Path) -> list[tuple[str, str]]:
    lines = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.strip():
            try:
                obj = json.loads(line)
                lines.append((str(obj["output_id"]), str(obj["text"])))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValidationError(f'{path} line {i + 1} is not {{"output_id": ..., "text": ...}}') from None
    return lines


@app.command("attribute")
def attribute_cmd(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Option(help="The model checkpoint (from the demo, or save_lm)")],
    outputs: Annotated[Path, typer.Option(help='JSON lines: {"output_id": ..., "text": ...}')],
    out: Annotated[Path, typer.Option(help="Where to write output_id, work_id, score (CSV)")],
    manifest: Annotated[str, typer.Option(help="The manifest the model was trained on")],
    k: Annotated[int, typer.Option(min=8, max=65_536)] = 1_024,
    seed: int = 0,
    method: Annotated[str, typer.Option(help="trak (default) or tracin")] = "trak",
    explain: Annotated[Path | None, typer.Option(help="Also write each output's top works here (JSON lines)")] = None,
    top_k: Annotated[int, typer.Option(min=1, max=1_000)] = 5,
    ray: RayOpt = None,
    per_payee: Annotated[
        str | None,
        typer.Option(
            "--per-payee",
            metavar="AGREEMENT",
            help="Write output_id, payee, score instead: every payee's exact score through Psi = W^T G, with the "
            "credit shares of this agreement",
        ),
    ] = None,
) -> None:
    """Score each output against every work in the manifest (TRAK by default); features are reused."""
    import csv

    from endcredits.attribution.texts import METHODS, attribute_manifest, bound_checkpoint

    if method not in METHODS:
        raise ValidationError(f"--method must be one of {', '.join(METHODS)}")
    if per_payee is not None and (explain is not None or ray is not None):
        raise ValidationError("--per-payee writes payee scores only; run without --explain and --ray")
    lines = _read_text_outputs(outputs)
    with _store(ctx) as store:
        lm, m = bound_checkpoint(store, manifest, checkpoint)
        with _bar("featurizing works", len(m.included)) as advance:
            if per_payee is not None:
                from endcredits.royalties.payees import attribute_manifest_payees

                with store.read() as conn:
                    agreement = load_agreement(conn, per_payee)
                ps = attribute_manifest_payees(
                    store, m, lm, lines, agreement, k=k, seed=seed, method=method, progress=lambda d, _t: advance(d)
                )
            else:
                att = attribute_manifest(
                    store,
                    m,
                    lm,
                    lines,
                    k=k,
                    seed=seed,
                    method=method,
                    top_k=top_k,
                    ray=ray,
                    progress=lambda d, _t: advance(d),
                )
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        if per_payee is not None:
            w.writerow(["output_id", "payee", "score"])
            rows = ps.nonzero()
            w.writerows([oid, payee, repr(score)] for oid, payee, score in rows)
            _console().print(f"wrote {len(rows)} non-zero {method} payee scores for {len(lines)} outputs to {out}")
            return
        w.writerow(["output_id", "work_id", "score"])
        for i, oid in enumerate(att.output_ids):
            w.writerows([oid, wid, repr(float(att.scores[i, j]))] for j, wid in enumerate(att.work_ids))
    if explain is not None:
        with explain.open("w", encoding="utf-8") as f:
            for i, oid in enumerate(att.output_ids):
                top = [{"work_id": w_, "score": s_} for w_, s_ in att.top_works(i)]
                f.write(json.dumps({"output_id": oid, "method": att.method, "weaker": att.weaker, "top_works": top}))
                f.write("\n")
    weaker = " (a weaker method)" if att.weaker else ""
    _console().print(
        f"wrote {len(lines) * len(m.included)} {att.method} scores{weaker} to {out}"
        + (f"; top {top_k} works per output to {explain}" if explain else "")
    )


# statements, payouts, escrow ---------------------------------------------------------------------
@app.command("statements")
def statements_cmd(
    ctx: typer.Context,
    person: Annotated[int, typer.Option()],
    period: Annotated[str, typer.Option(help="YYYY-MM")],
    currency: Annotated[str, typer.Option()] = "EUR",
    format: Annotated[str, typer.Option(help="csv or json")] = "json",
    out: Annotated[Path | None, typer.Option(help="Write here instead of standard output")] = None,
) -> None:
    """A person's statement for a period: every line behind every microunit."""
    from endcredits.payouts.statements import build_statement

    if format not in ("csv", "json"):
        raise ValidationError("--format must be csv or json")
    with _store(ctx) as store:
        st = build_statement(store, person, period, currency)
    text = st.to_csv() if format == "csv" else st.to_json() + "\n"
    if out:
        out.write_text(text, encoding="utf-8")
        _console().print(
            f"statement for person {person}, {period}: {len(st.lines)} lines, accrued "
            f"{format_amount(st.accrued_microunits, currency)} {currency}; reconciles: {st.reconciles()}"
        )
    else:
        sys.stdout.write(text)


@payouts_app.command("create")
def payouts_create(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Option()],
    agreement: Annotated[str, typer.Option()],
    debtor_name: Annotated[str, typer.Option()],
    debtor_iban: Annotated[str, typer.Option()],
    debtor_bic: Annotated[str, typer.Option()],
    execution_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today)")] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Pay every verified person at or above the agreement's threshold: pain.001 + CSV, pending until statuses return."""
    from endcredits.payouts.batches import create_payout_batch
    from endcredits.payouts.files import Debtor

    when = dt.date.fromisoformat(execution_date) if execution_date else dt.datetime.now(dt.UTC).date()
    with _store(ctx) as store:
        with store.read() as conn:
            a = load_agreement(conn, agreement)
        r = create_payout_batch(
            store,
            batch_id=batch_id,
            currency=a.currency,
            threshold_microunits=a.payout_threshold_microunits,
            debtor=Debtor(debtor_name, debtor_iban, debtor_bic),
            execution_date=when,
            dry_run=dry_run,
        )
    data = {
        "batch_id": r.batch_id,
        "status": r.status,
        "items": len(r.items),
        "total_microunits": r.total_microunits,
        "below_threshold": r.below_threshold,
        "missing_bank_details": r.missing_bank_details,
        "pain001": str(r.pain001_path) if r.pain001_path else None,
        "csv": str(r.csv_path) if r.csv_path else None,
    }
    _print_json(data) if as_json else _console().print(
        f"payout batch {r.batch_id} ({r.status}): {len(r.items)} payments, {format_amount(r.total_microunits, a.currency)} "
        f"{a.currency}; {r.below_threshold} below threshold carry forward; files: {data['pain001']}, {data['csv']}"
    )


@payouts_app.command("status")
def payouts_status(
    ctx: typer.Context,
    batch_id: str,
    pain002: Annotated[Path | None, typer.Option(help="A pain.002 status report from the bank")] = None,
    settled: Annotated[list[str] | None, typer.Option(help="End-to-end id settled (repeat)")] = None,
    failed: Annotated[list[str] | None, typer.Option(help="End-to-end id rejected (repeat)")] = None,
) -> None:
    """Apply bank statuses: settled items leave clearing, failed ones return to the person's balance."""
    from endcredits.payouts.batches import apply_payout_status
    from endcredits.payouts.pain002 import parse_pain002

    statuses: dict[str, str] = {}
    if pain002 is not None:
        statuses.update(parse_pain002(pain002.read_bytes()))
    statuses.update({e: "settled" for e in settled or []})
    statuses.update({e: "failed" for e in failed or []})
    if not statuses:
        raise ValidationError("give --pain002 FILE or --settled/--failed end-to-end ids")
    with _store(ctx) as store:
        r = apply_payout_status(store, batch_id, statuses)
    _console().print(
        f"batch {batch_id}: {r.settled} settled, {r.failed} failed (returned to balances), "
        f"{r.unchanged} unchanged; batch is {r.batch_status}"
    )


@payouts_app.command("list")
def payouts_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Payout batches and their status."""
    from endcredits.store.schema import payout_batches

    with _store(ctx) as store, store.read() as conn:
        rows = conn.execute(select(payout_batches).order_by(payout_batches.c.created_at)).all()
    data = [
        {
            "batch_id": r.id,
            "status": r.status,
            "items": r.item_count,
            "total": format_amount(r.total_microunits, r.currency),
            "currency": r.currency,
        }
        for r in rows
    ]
    _print_json({"batches": data}) if as_json else _table(
        "payout batches", ["id", "status", "items", "total", "ccy"], [list(d.values()) for d in data]
    )


@escrow_app.command("list")
def escrow_list(
    ctx: typer.Context,
    query: Annotated[str, typer.Option(help="Part of a name")] = "",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Unclaimed residuals, largest first: search for a name to find money owed to it."""
    from endcredits.ledger.escrow import search_escrow

    with _store(ctx) as store, store.read() as conn:
        found = search_escrow(conn, query, limit=limit)
    rows = [
        {
            "holder": h.holder,
            "name": h.display_name,
            "currency": h.currency,
            "amount": format_amount(h.balance_microunits, h.currency),
            "amount_microunits": h.balance_microunits,
        }
        for h in found
    ]
    _print_json({"escrow": rows}) if as_json else _table(
        "escrow",
        ["holder", "name", "amount", "ccy"],
        [[r["holder"], r["name"], r["amount"], r["currency"]] for r in rows],
    )


@escrow_app.command("claim")
def escrow_claim(
    ctx: typer.Context,
    person: Annotated[int, typer.Option()],
    name: Annotated[int | None, typer.Option(help="Credited name id this person claims")] = None,
) -> None:
    """Link a credited name to a verified person and release what escrow holds for them."""
    from endcredits.ledger.escrow import claim_escrow

    with _store(ctx) as store:
        r = claim_escrow(store, person, name_id=name)
    moved = ", ".join(f"{format_amount(v, c)} {c}" for c, v in r.moved_microunits.items()) or "nothing"
    _console().print(f"person {person}: released {moved}; transfers {', '.join(r.transfers) or 'none'}")


@escrow_app.command("release-work")
def escrow_release_work(
    ctx: typer.Context, work_id: str, agreement: Annotated[str, typer.Option(help="Agreement id")]
) -> None:
    """Release what a work held while nobody was credited on it, split by its credits now."""
    from endcredits.ledger.escrow import release_work_escrow

    with _store(ctx) as store:
        with store.read() as conn:
            a = load_agreement(conn, agreement)
        r = release_work_escrow(store, work_id, a)
    moved = ", ".join(f"{format_amount(v, c)} {c}" for c, v in r.moved_microunits.items()) or "nothing held"
    _console().print(f"work {work_id[:16]}: released {moved} to {len(r.parts)} accounts")


# ledger -------------------------------------------------------------------------------------------
@ledger_app.command("fold")
def ledger_fold(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Fold the pending accrual segments into the account and carry rows now (it changes no balance;
    accruals and the other writers fold on their own, see docs/concepts/ledger.md)."""
    from endcredits.ledger.records import fold_pending
    from endcredits.ledger.segments import fold_watermark

    with _store(ctx) as store, store.write() as conn:
        result = fold_pending(conn)
        watermark = fold_watermark(conn)
    out = {
        "folded": result is not None,
        "through_transfer_id": watermark,
        "segments": result.segments if result else 0,
        "accounts": result.accounts if result else 0,
        "carries": result.carries if result else 0,
    }
    if as_json:
        _print_json(out)
    elif result is None:
        _console().print(f"nothing pending: folded through transfer {watermark}")
    else:
        _console().print(
            f"folded {result.segments} segment(s) through transfer {watermark}: "
            f"{result.accounts} accounts, {result.carries} carries"
        )


@ledger_app.command("status")
def ledger_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """How much is pending: segments above the fold watermark and their legs, against the limits at
    which an accrual folds first."""
    from endcredits.ledger.segments import fold_watermark, pending_size
    from endcredits.limits import FOLD_PENDING_LEGS_MAX, FOLD_PENDING_SEGMENTS_MAX

    with _store(ctx) as store, store.read() as conn:
        segments, legs = pending_size(conn)
        watermark = fold_watermark(conn)
    out = {
        "through_transfer_id": watermark,
        "pending_segments": segments,
        "pending_legs": legs,
        "fold_pending_segments_max": FOLD_PENDING_SEGMENTS_MAX,
        "fold_pending_legs_max": FOLD_PENDING_LEGS_MAX,
    }
    if as_json:
        _print_json(out)
    else:
        _console().print(
            f"folded through transfer {watermark}; pending: {segments} segment(s), {legs} legs "
            f"(an accrual folds first at {FOLD_PENDING_SEGMENTS_MAX} or {FOLD_PENDING_LEGS_MAX:,})"
        )


# verify and demo ----------------------------------------------------------------------------------
@app.command("verify")
def verify_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Re-derive balances, the audit chain and the evidence; exit 1 on any difference."""
    from endcredits.ledger.verify import verify

    with _store(ctx) as store:
        report = verify(store)
    if as_json:
        _print_json({"ok": report.ok, "problems": report.problems, "checked": report.checked})
    else:
        for problem in report.problems:
            _console().print(f"problem: {problem}")
        _console().print(
            ("verified: " if report.ok else "FAILED: ") + ", ".join(f"{v} {k}" for k, v in report.checked.items())
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command("demo")
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

    where: _Where = ctx.obj
    if as_json:
        summary = run_demo(where.data, where.db, outputs_n=outputs, train_steps=train_steps, seed=seed, tunes_max=tunes)
        _print_json(summary.to_json())
        return
    console = _console()
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


def main() -> None:
    """Entry point of the ``endcredits`` command."""
    from endcredits.ledger.evidence import use_system_allocator

    use_system_allocator()
    app()
