"""`agreement`, `accrue`, `statements`, `payouts`, `escrow`, `ledger` and `verify`: the money, exactly."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from endcredits.cli.common import (
    DryRunOpt,
    JsonOpt,
    LimitOpt,
    amounts_text,
    make_console,
    open_store_of,
    print_json,
    print_table,
)
from endcredits.errors import LimitExceededError, ValidationError
from endcredits.money import format_amount, parse_amount

if TYPE_CHECKING:
    from endcredits.ledger.accrue import ScoreSource
    from endcredits.royalties.usage import OutputIn

agreement_app = typer.Typer(no_args_is_help=True, help="The residual policy (a versioned TOML file).")


payouts_app = typer.Typer(no_args_is_help=True, help="Payout batches: pain.001 and CSV files, bank statuses.")


escrow_app = typer.Typer(no_args_is_help=True, help="Money held for people not yet verified or names not yet claimed.")


ledger_app = typer.Typer(no_args_is_help=True, help="The ledger's accrual segments and their folding into balances.")


@agreement_app.command("load")
def agreement_load(ctx: typer.Context, file: Path, as_json: JsonOpt = False) -> None:
    """Load an agreement file (a new version needs a new version number)."""
    from endcredits.ledger.expiry import save_agreement_terms
    from endcredits.royalties import parse_agreement

    try:
        body = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read {file}: {exc.strerror}") from None
    a = parse_agreement(body)
    with open_store_of(ctx) as store, store.write() as conn:
        status = save_agreement_terms(conn, a)
    if as_json:
        print_json({"agreement_id": a.id, "version": a.version, "body_sha256": a.body_sha256, "status": status})
    else:
        make_console().print(f"agreement {a.id} version {a.version}: {status}")


@agreement_app.command("show")
def agreement_show(
    ctx: typer.Context,
    agreement_id: str,
    version: Annotated[int | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print an agreement's text (the newest version unless --version)."""
    from endcredits.royalties import parse_agreement
    from endcredits.royalties.records import load_agreement_body

    with open_store_of(ctx) as store, store.read() as conn:
        body = load_agreement_body(conn, agreement_id, version)
    if not as_json:
        sys.stdout.write(body)
        return
    a = parse_agreement(body)
    print_json({"agreement_id": a.id, "version": a.version, "body_sha256": a.body_sha256, "body": body})


def accrue_cmd(
    ctx: typer.Context,
    outputs: Annotated[
        Path,
        typer.Option(
            help="CSV/Parquet: output_id, model_id, revenue, currency, occurred_at; optional content: a file "
            "(relative to this one) holding what the model generated, which statements show"
        ),
    ],
    agreement: Annotated[str, typer.Option(help="Agreement id (its newest version)")],
    batch_id: Annotated[str, typer.Option(help="Idempotency id of this batch")],
    run: Annotated[
        str | None,
        typer.Option("--run", metavar="RUN_ID", help="Accrue the scores of this recorded attribution run"),
    ] = None,
    attributions: Annotated[
        Path | None,
        typer.Option(help="CSV/Parquet: output_id, work_id (or payee), score: scores of your own (needs --external)"),
    ] = None,
    external: Annotated[
        str | None,
        typer.Option(
            "--external",
            metavar="REASON",
            help="Mark the --attributions scores as external, with the reason every statement line will show",
        ),
    ] = None,
    manifest: Annotated[
        str | None, typer.Option(help="Manifest id (default: the run's, or the model's newest)")
    ] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Accrue residuals for a batch of outputs: split, carry forward, evidence, one ledger transfer per period.

    Scores: a recorded attribution run's (--run), or your own in --attributions marked --external REASON."""
    from endcredits.ledger.accrue import accrue_scored

    source = _score_source(run, attributions, external)
    outs, contents = _read_outputs(outputs)
    per, scores = _read_scores(attributions, outputs, outs) if attributions is not None else (None, None)
    with open_store_of(ctx) as store:
        summary = accrue_scored(
            store,
            outs,
            scores,
            source=source,
            per=per,
            agreement_id=agreement,
            batch_id=batch_id,
            manifest_id=manifest,
            dry_run=dry_run,
            contents=contents,
        )
    if as_json:
        print_json(summary.to_json())
        return
    c = summary.currency
    scored = f"attribution run {run}" if run is not None else f"external scores ({external})"
    make_console().print(
        f"batch {batch_id} ({summary.status}) on {scored}: {summary.outputs} outputs, {summary.lines} lines, "
        f"pool {format_amount(summary.pool_microunits, c)} {c} = paid {format_amount(summary.posted_microunits, c)}"
        f" + escrow {format_amount(summary.escrow_microunits, c)} + suspense change "
        f"{format_amount(summary.suspense_delta_microunits, c)}"
    )


def _read_outputs(outputs: Path) -> tuple[list[OutputIn], list[tuple[str, bytes]]]:
    """The outputs file's rows, and the content its ``content`` column names."""
    from endcredits.cli.files import read_rows
    from endcredits.royalties.usage import OutputIn

    rows = read_rows(outputs, ["output_id", "model_id", "revenue", "currency", "occurred_at"])
    outs = [
        OutputIn(
            r["output_id"], r["model_id"], parse_amount(r["revenue"], r["currency"]), r["currency"], r["occurred_at"]
        )
        for r in rows
    ]
    return outs, _read_contents(outputs, rows)


def _read_contents(outputs: Path, rows: list[dict[str, str]]) -> list[tuple[str, bytes]]:
    """The bytes each row's ``content`` names (a path relative to the outputs file); none without the column."""
    from endcredits.limits import OUTPUT_CONTENT_BYTES_MAX

    contents: list[tuple[str, bytes]] = []
    for i, r in enumerate(rows):
        name = r.get("content", "")
        if not name:
            continue
        path = outputs.parent / name
        if not path.is_file():
            raise ValidationError(f"{outputs} row {i + 2}: content file {path} does not exist")
        if path.stat().st_size > OUTPUT_CONTENT_BYTES_MAX:
            raise LimitExceededError(
                f"{outputs} row {i + 2}: {path} is over OUTPUT_CONTENT_BYTES_MAX ({OUTPUT_CONTENT_BYTES_MAX} bytes)"
            )
        contents.append((r["output_id"], path.read_bytes()))
    return contents


def _score_source(run: str | None, attributions: Path | None, external: str | None) -> ScoreSource:
    """The source the options name: a recorded run, or a file marked external; refused in one line otherwise."""
    from endcredits.ledger.accrue import ScoreSource

    if run is not None:
        if attributions is not None or external is not None:
            raise ValidationError("--run accrues the run's own scores: give --run, or --attributions with --external")
        return ScoreSource.run(run)
    if attributions is None:
        if external is not None:
            raise ValidationError("--external marks the scores of --attributions FILE: give the file too")
        raise ValidationError(
            "give --run RUN_ID (the scores of a recorded attribution run), or --attributions FILE --external REASON"
        )
    if external is None:
        raise ValidationError(
            f"{attributions} is not a recorded attribution run: scores from a file move money only when marked "
            '--external "REASON" (every statement line shows it); or accrue the run `endcredits attribute` '
            "printed with --run RUN_ID"
        )
    return ScoreSource.external(external)


def _read_scores(
    attributions: Path, outputs: Path, outs: list[OutputIn]
) -> tuple[Literal["work", "payee"], dict[str, dict[str, float]]]:
    """Per work or per payee, and each output's scores, from a scores file; every output it names must be
    in the outputs file."""
    from endcredits.cli.files import read_rows

    attr_rows = read_rows(attributions, ["output_id", "score"], one_of=["work_id", "payee"])
    per: Literal["work", "payee"] = "payee" if attr_rows and "work_id" not in attr_rows[0] else "work"
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
    return per, scores


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
    with open_store_of(ctx) as store:
        st = build_statement(store, person, period, currency)
    text = st.to_csv() if format == "csv" else st.to_json() + "\n"
    if out:
        out.write_text(text, encoding="utf-8")
        make_console().print(
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
    """Pay every verified person at or above the agreement's threshold: pain.001 + CSV, pending until paid."""
    from endcredits.payouts.batches import pay_out
    from endcredits.payouts.files import Debtor

    try:
        when = dt.date.fromisoformat(execution_date) if execution_date is not None else None
    except ValueError:
        raise ValidationError(f"--execution-date {execution_date!r} is not a date: give YYYY-MM-DD") from None
    with open_store_of(ctx) as store:
        r = pay_out(
            store,
            batch_id=batch_id,
            agreement_id=agreement,
            debtor=Debtor(debtor_name, debtor_iban, debtor_bic),
            execution_date=when,
            dry_run=dry_run,
        )
    data = {**r.to_json(), "pain001": str(r.pain001_path or "") or None, "csv": str(r.csv_path or "") or None}
    if as_json:
        print_json(data)
        return
    console = make_console()
    console.print(
        f"payout batch {r.batch_id} ({r.status}): {len(r.items)} payments, "
        f"{format_amount(r.total_microunits, r.currency)} {r.currency}; {r.below_threshold} below threshold "
        f"carry forward; files: {data['pain001']}, {data['csv']}"
    )
    for h in r.held:
        console.print(f"held for a later batch: person {h.person_id} ({h.handle}): {h.message}")


@payouts_app.command("status")
def payouts_status(
    ctx: typer.Context,
    batch_id: str,
    pain002: Annotated[Path | None, typer.Option(help="A pain.002 status report from the bank")] = None,
    settled: Annotated[list[str] | None, typer.Option(help="End-to-end id settled (repeat)")] = None,
    failed: Annotated[list[str] | None, typer.Option(help="End-to-end id rejected (repeat)")] = None,
    as_json: JsonOpt = False,
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
    with open_store_of(ctx) as store:
        r = apply_payout_status(store, batch_id, statuses)
    if as_json:
        print_json(
            {
                "batch_id": batch_id,
                "settled": r.settled,
                "failed": r.failed,
                "unchanged": r.unchanged,
                "batch_status": r.batch_status,
            }
        )
        return
    make_console().print(
        f"batch {batch_id}: {r.settled} settled, {r.failed} failed (returned to balances), "
        f"{r.unchanged} unchanged; batch is {r.batch_status}"
    )


@payouts_app.command("list")
def payouts_list(ctx: typer.Context, limit: LimitOpt = 1_000, as_json: JsonOpt = False) -> None:
    """Payout batches and their status, oldest first."""
    from endcredits.payouts.records import payout_batches_list

    with open_store_of(ctx) as store, store.read() as conn:
        batches = payout_batches_list(conn, limit=limit)
    data = [
        {
            "batch_id": b.batch_id,
            "status": b.status,
            "items": b.items,
            "total_microunits": b.total_microunits,
            "total": format_amount(b.total_microunits, b.currency),
            "currency": b.currency,
        }
        for b in batches
    ]
    print_json({"batches": data}) if as_json else print_table(
        "payout batches",
        ["id", "status", "items", "total", "ccy"],
        [[d["batch_id"], d["status"], d["items"], d["total"], d["currency"]] for d in data],
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

    with open_store_of(ctx) as store, store.read() as conn:
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
    print_json({"escrow": rows}) if as_json else print_table(
        "escrow",
        ["holder", "name", "amount", "ccy"],
        [[r["holder"], r["name"], r["amount"], r["currency"]] for r in rows],
    )


@escrow_app.command("published")
def escrow_published(
    ctx: typer.Context,
    query: Annotated[str, typer.Option(help="Part of a name")] = "",
    fund: Annotated[str | None, typer.Option(help="Only what this fund holds or will receive (a guild's list)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 1_000,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the list as CSV to this file")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The published list of unclaimed residuals: names and amounts, in escrow since when and due when, or
    moved to a fund past the escrow period (still claimable). No ids, nothing private."""
    from endcredits.ledger.expiry import published_unclaimed, unclaimed_csv

    with open_store_of(ctx) as store, store.read() as conn:
        rows = published_unclaimed(conn, query, fund=fund, limit=limit)
    if csv_out is not None:
        csv_out.write_text(unclaimed_csv(rows), encoding="utf-8")
    data = [r.to_json() for r in rows]
    print_json({"unclaimed": data}) if as_json else print_table(
        "unclaimed residuals",
        ["name", "amount", "ccy", "status", "owed since", "due on", "fund"],
        [
            [
                d["name"],
                d["amount"],
                d["currency"],
                d["status"],
                d["owed_since"] or d["moved_on"],
                d["due_on"] or "-",
                d["fund"] or "-",
            ]
            for d in data
        ],
    )


@escrow_app.command("expire")
def escrow_expire(
    ctx: typer.Context,
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD: move what is due on or before this day")],
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Move unclaimed money past its agreement's escrow_period_days to the fund the agreement names, per name,
    by audited transfers; money whose agreement names no fund stays in escrow and is listed. Idempotent."""
    from endcredits.ledger.expiry import expire_escrow

    try:
        day = dt.date.fromisoformat(as_of)
    except ValueError:
        raise ValidationError(f"--as-of {as_of!r} is not a date: give YYYY-MM-DD") from None
    with open_store_of(ctx) as store:
        r = expire_escrow(store, day, dry_run=dry_run)
    if as_json:
        print_json(r.to_json())
        return
    moved: dict[str, int] = {}
    for e in r.moved:
        moved[e.currency] = moved.get(e.currency, 0) + e.amount_microunits
    verb = "would move" if dry_run else "moved"
    console = make_console()
    console.print(f"as of {day}: {verb} {amounts_text(moved)} from {len(r.moved)} escrow holdings to funds")
    for e in r.held_without_fund:
        amount = format_amount(e.amount_microunits, e.currency)
        console.print(f"  held (its agreement names no escrow_expiry_fund): {e.account} {amount} {e.currency}")
    for event_id in r.transfers:
        console.print(f"  transfer {event_id}")


@escrow_app.command("claim")
def escrow_claim(
    ctx: typer.Context,
    person: Annotated[int, typer.Option()],
    name: Annotated[int | None, typer.Option(help="Credited name id this person claims")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Link a credited name to a verified person and release what escrow holds for them."""
    from endcredits.ledger.escrow import claim_escrow

    with open_store_of(ctx) as store:
        r = claim_escrow(store, person, name_id=name)
    if as_json:
        print_json({**r.to_json(), "name_id": name})
    else:
        released = amounts_text(r.moved_microunits)
        make_console().print(f"person {person}: released {released}; transfers {', '.join(r.transfers) or 'none'}")


@escrow_app.command("release-work")
def escrow_release_work(
    ctx: typer.Context,
    work_id: str,
    agreement: Annotated[str, typer.Option(help="Agreement id")],
    as_json: JsonOpt = False,
) -> None:
    """Release what a work held while nobody was credited on it, split by its credits now."""
    from endcredits.ledger.escrow import release_work_escrow
    from endcredits.royalties.records import load_agreement

    with open_store_of(ctx) as store:
        with store.read() as conn:
            a = load_agreement(conn, agreement)
        r = release_work_escrow(store, work_id, a)
    if as_json:
        print_json(
            {
                "work_id": work_id,
                "released_microunits": dict(sorted(r.moved_microunits.items())),
                "parts_microunits": dict(sorted(r.parts.items())),
                "transfers": list(r.transfers),
            }
        )
    else:
        released = amounts_text(r.moved_microunits, none="nothing held")
        make_console().print(f"work {work_id[:16]}: released {released} to {len(r.parts)} accounts")


@ledger_app.command("training-fees")
def ledger_training_fees(
    ctx: typer.Context,
    manifest: Annotated[str, typer.Option(help="Manifest id: the training run that used the works")],
    agreement: Annotated[str, typer.Option(help="Agreement id (its newest version divides each fee)")],
    as_json: JsonOpt = False,
) -> None:
    """Post the licence fees per training use a manifest owes (RSL payment type "training"), once."""
    from endcredits.ledger.training_fees import owe_training_fees
    from endcredits.royalties.records import load_agreement

    with open_store_of(ctx) as store:
        with store.read() as conn:
            a = load_agreement(conn, agreement)
        r = owe_training_fees(store, manifest, a)
    if as_json:
        print_json(r.to_json())
    else:
        owed = format_amount(r.total_microunits, r.currency)
        make_console().print(
            f"manifest {manifest}: {r.status}; {owed} {r.currency} for {r.works} works, {r.lines} lines"
        )


@ledger_app.command("fold")
def ledger_fold(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Fold the pending accrual segments into the account rows and the ledger snapshot now (it changes no
    balance; accruals and the other writers fold on their own, see docs/concepts/ledger.md)."""
    from endcredits.ledger.records import fold_pending
    from endcredits.ledger.segments import fold_watermark

    with open_store_of(ctx) as store, store.write() as conn:
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
        print_json(out)
    elif result is None:
        make_console().print(f"nothing pending: folded through transfer {watermark}")
    else:
        make_console().print(
            f"folded {result.segments} segment(s) through transfer {watermark}: "
            f"{result.accounts} accounts, {result.carries} carries"
        )


@ledger_app.command("status")
def ledger_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """How much is pending: segments above the fold watermark and their legs, against the limits at
    which an accrual folds first."""
    from endcredits.ledger.segments import fold_watermark, pending_size
    from endcredits.limits import FOLD_PENDING_LEGS_MAX, FOLD_PENDING_SEGMENTS_MAX

    with open_store_of(ctx) as store, store.read() as conn:
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
        print_json(out)
    else:
        make_console().print(
            f"folded through transfer {watermark}; pending: {segments} segment(s), {legs} legs "
            f"(an accrual folds first at {FOLD_PENDING_SEGMENTS_MAX} or {FOLD_PENDING_LEGS_MAX:,})"
        )


@ledger_app.command("balances")
def ledger_balances(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Totals per currency of every account kind (pool, payable, escrow, fund, suspense, clearing, bank) and
    the conservation check: what the pools funded = paid (payable + clearing + bank) + escrow + fund +
    suspense. Exits 1 if a currency does not conserve."""
    from endcredits.ledger import ACCOUNT_KINDS
    from endcredits.ledger.records import balance_totals

    with open_store_of(ctx) as store, store.read() as conn:
        totals = balance_totals(conn)
    if as_json:
        print_json(
            {
                "currencies": {c: t.to_json() for c, t in totals.items()},
                "conserved": all(t.conserved for t in totals.values()),
            }
        )
    elif not totals:
        make_console().print("the ledger has no accounts yet")
    else:
        print_table(
            "ledger balances",
            ["ccy", *ACCOUNT_KINDS],
            [[c, *(format_amount(getattr(t, f"{k}_microunits"), c) for k in ACCOUNT_KINDS)] for c, t in totals.items()],
        )
        for c, t in totals.items():
            mark = "conserved" if t.conserved else "NOT CONSERVED"
            make_console().print(
                f"{c} {mark}: pool {t.pool_microunits} = paid {t.paid_microunits} + escrow {t.escrow_microunits}"
                f" + fund {t.fund_microunits} + suspense {t.suspense_microunits} (microunits)"
            )
    if not all(t.conserved for t in totals.values()):
        raise typer.Exit(1)


def verify_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Re-derive balances, the audit chain, the evidence and each accrual's attribution run; exit 1 on any difference.

    Accruals on external scores are listed as such."""
    from endcredits.ledger.verify import verify

    with open_store_of(ctx) as store:
        report = verify(store)
    if as_json:
        print_json(
            {"ok": report.ok, "problems": report.problems, "checked": report.checked, "external": report.external}
        )
    else:
        for line in report.external:  # not a problem: the operator marked these scores external
            make_console().print(f"external: {line}")
        for problem in report.problems:
            make_console().print(f"problem: {problem}")
        make_console().print(
            ("verified: " if report.ok else "FAILED: ") + ", ".join(f"{v} {k}" for k, v in report.checked.items())
        )
    if not report.ok:
        raise typer.Exit(1)
