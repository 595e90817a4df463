"""Statements: per person per period, every line behind every microunit.

A line is one (output, attributed work, source work, role) path that paid the person, with its exact
amount (whole microunits plus a fraction in 2^-32 of a microunit), read from the evidence files.
The statement reconciles exactly: fraction carried in + the lines == posted + fraction carried out.
Lines reach the person through their own payee id and through every credited name they claimed. Each
line names where its scores came from: the attribution run (its id and method; ``score_sources`` holds
what made it) or the reason the operator gave for external scores, and, where a guild's minimum role weight
raised the person's weight above the agreement's, which guild term applied (``guild_term``). A licence floor's
top-up line and a training fee line cite their licence term (``licence_term``) and, where a guild minimum
raised the weight their split used, that guild term too; a line citing neither was paid by the agreement's
terms alone.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, select

from endcredits.attribution.records import AttributionRun, runs_by_id
from endcredits.attribution.validity_records import latest_validities
from endcredits.consent.terms import terms_for
from endcredits.errors import NotFoundError
from endcredits.ledger.evidence import (
    EVIDENCE_SCHEMA,
    kept_per_batch,
    kept_per_payee,
    output_rows,
    payee_rows,
    read_evidence,
)
from endcredits.ledger.evidence_lines import LineSource
from endcredits.ledger.floors import floor_lines_of
from endcredits.ledger.guild_minimums import minimum_lines_of
from endcredits.ledger.records import accrued_by_account
from endcredits.ledger.training_fees import TRANSFER_CODE as TRAINING_FEE
from endcredits.ledger.training_fees import fee_lines
from endcredits.limits import SUBUNITS_PER_MICROUNIT
from endcredits.money import format_amount
from endcredits.registry.records import get_person
from endcredits.royalties.records import load_agreement
from endcredits.store.engine import Store, parse_period
from endcredits.store.schema import accrual_batches, names, transfers, works

STATEMENT_COLUMNS = (
    "output_id",
    "model_id",
    "occurred_at",
    "attributed_work",
    "attributed_title",
    "source_work",
    "source_title",
    "credited_as",
    "role",
    "account",
    "amount",
    "amount_microunits",
    "amount_subunits",
    "scores_run_id",
    "scores_method",
    "scores_external_reason",
    "licence_term",
    "licence_source",
    "guild_term",
    "output_top_works",
)
TOP_WORKS_PER_OUTPUT = 5


@dataclass(frozen=True)
class Statement:
    person_id: int
    handle: str
    period: str
    currency: str
    line_table: pa.Table
    """The period's lines, columnar (``LINE_TABLE_COLUMNS``, text as plain strings), in ``lines`` order."""
    lines_subunits_total: int  # sum of line amounts in 2^-32 microunits
    carried_in_subunits: int  # fractions each of the period's batches started from, added up
    carried_out_subunits: int  # fractions each of the period's batches left, added up
    accrued_microunits: int  # whole microunits the lines add up to, after carry-forward
    ledger_accrued_microunits: int  # what the ledger's accrual transfers of the period posted to the person
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per output in the lines: the works its whole pool went to most (the output's explanation, not only
    this person's part) and the agreement whose rules split it."""
    rules: dict[str, str] = field(default_factory=dict)
    """Per agreement (``id@version``) used in the period: how scores became shares."""
    score_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per attribution run behind the lines (by id): what made its scores (model, checkpoints, manifest root,
    method, settings, seeds, engine, validity). External scores are labelled on each line instead."""
    model_validity: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per model of those runs whose validity was measured (`endcredits attribution validate`): its latest
    figure, the LDS of its attribution against retraining, with ``summary`` in words."""
    model_pools: dict[str, dict[str, int | None]] = field(default_factory=dict)
    """Per model with lines in the period, over every payee (not only this person): ``pool_subunits`` (what
    its outputs' pools paid out, in 2^-32 microunits), ``revenue_microunits`` (None when a batch's evidence
    predates revenue on its lines) and ``outputs``. The statement's model figures compare the person's part
    with it (``statement_layout``)."""

    labels: dict[str, str] = field(default_factory=dict)
    """Per payee id of the person: what the lines call it (``(you)``, or the credited name)."""
    titles: dict[str, str] = field(default_factory=dict)
    """The title of every work the lines and the explanations name."""
    escrow: list[dict[str, Any]] = field(default_factory=list)
    """What waits in escrow for the person's payees now (the statement's making, not the period's end): per
    account and destination, the amount, since when, when it is due to move to a fund, where, and which term
    set that deadline (the agreement, or the guild terms that protect the member longer)."""

    @functools.cached_property
    def lines(self) -> list[dict[str, Any]]:
        """Every line as a dict (``STATEMENT_COLUMNS`` but the top works), made when first asked for."""
        return _line_dicts(self.line_table, self.labels, self.titles, self.currency)

    @property
    def line_count(self) -> int:
        return int(self.line_table.num_rows)

    def reconciles(self) -> bool:
        """The evidence re-derives the ledger: carried in + lines == posted + carried out, to the subunit,
        and what that posts equals what the ledger's accrual transfers credited."""
        return (
            self.carried_in_subunits + self.lines_subunits_total
            == self.accrued_microunits * SUBUNITS_PER_MICROUNIT + self.carried_out_subunits
            and self.accrued_microunits == self.ledger_accrued_microunits
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "person_id": self.person_id,
                "handle": self.handle,
                "period": self.period,
                "currency": self.currency,
                "accrued": format_amount(self.accrued_microunits, self.currency),
                "accrued_microunits": self.accrued_microunits,
                "ledger_accrued_microunits": self.ledger_accrued_microunits,
                "carried_in_subunits": self.carried_in_subunits,
                "carried_out_subunits": self.carried_out_subunits,
                "lines_subunits_total": str(self.lines_subunits_total),
                "subunits_per_microunit": SUBUNITS_PER_MICROUNIT,
                "reconciles": self.reconciles(),
                "lines": self.lines,
                "outputs": self.outputs,
                "rules": self.rules,
                "score_sources": self.score_sources,
                "model_validity": self.model_validity,
                "escrow": self.escrow,
                "summary": _summary_json(self),
            },
            indent=2,
            sort_keys=True,
        )

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(STATEMENT_COLUMNS), lineterminator="\n")
        w.writeheader()
        for line in self.lines:
            top = "; ".join(
                f"{t['title'] or t['work_id'][:12]} {t['amount']}"
                for t in self.outputs.get(line["output_id"], {}).get("top_works", [])
            )
            w.writerow({k: _csv_safe(str(line[k] if k != "output_top_works" else top)) for k in STATEMENT_COLUMNS})
        return buf.getvalue()


def _summary_json(st: Statement) -> dict[str, Any]:
    """The statement's totals by model, work and role and each model's figures (``statement_layout``)."""
    from endcredits.payouts.statement_layout import summarize

    return summarize(st).to_json()


def _csv_safe(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _person_payees(conn: Connection, person_id: int) -> tuple[list[str], dict[str, str]]:
    payees = [f"person:{person_id}"]
    labels = {f"person:{person_id}": "(you)"}
    for r in conn.execute(select(names.c.id, names.c.name).where(names.c.person_id == person_id)):
        payees.append(f"name:{r.id}")
        labels[f"name:{r.id}"] = r.name
    return payees, labels


def _collect(
    store: Store, conn: Connection, payees: list[str], currency: str, period: str
) -> list[tuple[str, pa.Table, pa.Table | None, pa.Table | None, str, str, tuple[str | None, str | None]]]:
    """(period, lines of these payees, every payee's lines of their outputs and the batch's money rows when
    the batch is of ``period``, agreement, group event id, (run id, external reason)) for every accrual
    batch, in the order the ledger posted them. Evidence kept per payee gives its lines re-derived for
    ``period``'s batches; for the others only their sums per payee count, and its rows per payee give them."""
    q = (
        select(accrual_batches)
        .join(transfers, transfers.c.event_id == accrual_batches.c.transfer_event_id)
        .where(accrual_batches.c.currency == currency)
        .order_by(transfers.c.id)
    )
    wanted = pa.array(payees, pa.string())
    lines = LineSource(store, conn)
    found = []
    for r in conn.execute(q):
        table = read_evidence(store.data_dir / r.evidence_path, expected_sha256=r.evidence_sha256)
        money = payee_rows(table)
        mine = money.filter(pc.is_in(money["payee"].cast(pa.string()), value_set=wanted))
        full = pools = money if r.period == period else None
        if full is not None and kept_per_payee(table):
            full, pools = _rederived(lines, r, table, mine)
            mine = full.filter(pc.is_in(full["payee"].cast(pa.string()), value_set=wanted))
        terms = f"{r.agreement_id}@{r.agreement_version}"
        found.append((r.period, mine, full, pools, terms, r.event_id, (r.scores_run_id, r.scores_external_reason)))
    return found


def _rederived(lines: LineSource, group: Any, table: pa.Table, mine: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(lines, rows per output) of a group of the statement's period whose evidence is kept per payee: the
    lines of every output that paid ``mine``'s payees, re-derived, and each output's pool. Kept per batch,
    the rows name no output: the outputs whose scores and recorded shares can reach the payees re-derive
    (``LineSource.outputs_paying``), and the output rows give the pools; kept per output and payee, the
    payees' rows name their outputs."""
    if not kept_per_batch(table):
        return lines.lines(group, table, set(mine["output_id"].cast(pa.string()).to_pylist())), payee_rows(table)
    if not mine.num_rows:
        return EVIDENCE_SCHEMA.empty_table(), output_rows(table)
    paying = lines.outputs_paying(group, table, set(mine["payee"].cast(pa.string()).to_pylist()))
    return lines.lines(group, table, paying), output_rows(table)


def _explain(tables: list[tuple[pa.Table, str, str]], output_ids: pa.Array) -> dict[str, dict[str, Any]]:
    """Per output: the attributed works that received most of its pool (over every payee), best first, the
    agreement that split it and where its scores came from."""
    by_output: dict[str, dict[str, int]] = {}
    agreement_of: dict[str, tuple[str, str]] = {}
    for table, agreement, scores in tables:
        t = table.filter(pc.is_in(table["output_id"].cast(pa.string()), value_set=output_ids))
        for (oid, work), amount, _n in subunit_sums(t, ["output_id", "attributed_work"]):
            works_ = by_output.setdefault(oid, {})
            works_[work] = works_.get(work, 0) + amount
            agreement_of[oid] = (agreement, scores)
    out: dict[str, dict[str, Any]] = {}
    for oid, amounts in by_output.items():
        total = sum(amounts.values())
        best = sorted(amounts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_WORKS_PER_OUTPUT]
        out[oid] = {
            "agreement": agreement_of[oid][0],
            "scores": agreement_of[oid][1],
            "pool_subunits": str(total),
            "top_works": [{"work_id": w, "amount_subunits": str(a)} for w, a in best],
        }
    return out


def subunit_sums(table: pa.Table, keys: list[str]) -> list[tuple[tuple[Any, ...], int, int]]:
    """(the values of ``keys``, the lines' exact amount in subunits, how many lines) per group of
    ``table``'s lines. Arrow sums when no int64 sum can overflow (largest amount x lines < 2^63); otherwise
    Python's integers do, so the result is exact either way."""
    if not table.num_rows:
        return []
    columns = [table[k].cast(pa.string()) if pa.types.is_dictionary(table[k].type) else table[k] for k in keys]
    micro, sub = table["amount_microunits"], table["amount_subunits"]
    largest = max(int(pc.max(micro).as_py() or 0), int(pc.max(sub).as_py() or 0))
    if largest * table.num_rows < 2**63:
        t = pa.table([*columns, micro, sub], names=[*keys, "m", "s"])
        g = t.group_by(keys, use_threads=False).aggregate([("m", "sum"), ("s", "sum"), ("m", "count")])
        values = zip(*(g[k].to_pylist() for k in keys), strict=True)
        return [
            (key, m * SUBUNITS_PER_MICROUNIT + s_, n)
            for key, m, s_, n in zip(
                values, g["m_sum"].to_pylist(), g["s_sum"].to_pylist(), g["m_count"].to_pylist(), strict=True
            )
        ]
    sums: dict[tuple[Any, ...], list[int]] = {}
    for *key, m, s_ in zip(*(c.to_pylist() for c in columns), micro.to_pylist(), sub.to_pylist(), strict=True):
        acc = sums.setdefault(tuple(key), [0, 0])
        acc[0] += m * SUBUNITS_PER_MICROUNIT + s_
        acc[1] += 1
    return [(key, a[0], a[1]) for key, a in sums.items()]


def _percent(value: Fraction) -> str:
    """An agreement rate (decimal text in the file, so a finite decimal) as an exact percentage."""
    text = str(Decimal(value.numerator * 100) / Decimal(value.denominator))
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "%"


def _rules(conn: Connection, agreements: set[str]) -> dict[str, str]:
    """How each agreement turned attribution scores into shares, in words a statement can show."""
    out = {}
    for key in sorted(agreements):
        agreement_id, _, version = key.rpartition("@")
        try:
            a = load_agreement(conn, agreement_id, int(version))
        except NotFoundError:
            out[key] = "the agreement's text is not stored here (load it with `endcredits agreement load`)"
            continue
        baseline = (
            f"{_percent(a.baseline_share)} of the pool is split over the manifest's works by volume, the rest "
            "by influence"
            if a.baseline_share
            else "the whole pool is split by influence"
        )
        out[key] = (
            f"{_percent(a.pool_rate)} of each output's revenue is its pool; {baseline}; a work whose influence "
            f"on an output is negative earns nothing (negative_influence = {a.negative_influence!r})"
        )
    return out


Source = tuple[str | None, str | None]
"""A batch's scores source: (attribution run id, external reason); both None before migration 0003."""


def build_statement(store: Store, person_id: int, period: str, currency: str) -> Statement:
    """The statement of ``person_id`` for ``period`` (YYYY-MM) in ``currency``."""
    period = parse_period(period)
    with store.read() as conn:
        person = get_person(conn, person_id)
        payees, labels = _person_payees(conn, person_id)
        ledger_accrued = _ledger_accrued(conn, payees, currency, period)
        collected = _collect(store, conn, payees, currency, period)
        period_outputs = pc.unique(
            pa.chunked_array(
                [t["output_id"].cast(pa.string()) for p, t, *_ in collected if p == period], type=pa.string()
            )
        )
        runs = runs_by_id(conn, {src[0] for p, *_, src in collected if p == period and src[0] is not None})
        validity = latest_validities(conn, {run.model_id for run in runs.values()})
        explained = _explain(
            [(full, a, _source_label(src, runs)) for _p, _t, full, _m, a, _e, src in collected if full is not None],
            period_outputs,
        )
        rules = _rules(conn, {e["agreement"] for e in explained.values()})
    pools = model_pools([money for _p, _t, _f, money, *_ in collected if money is not None])
    # Replay every batch in posting order: per payee, each batch posts the whole microunits of (carry +
    # its lines) and carries the rest. The statement adds up the batches of its period.
    running: dict[str, int] = {}
    total = carried_in = carried_out = accrued = 0
    for p, t, *_ in collected:
        for payee, amount in _subunits_by_payee(t).items():
            before = running.get(payee, 0)
            after = before + amount
            running[payee] = after
            if p == period:
                carried_in += before % SUBUNITS_PER_MICROUNIT
                carried_out += after % SUBUNITS_PER_MICROUNIT
                accrued += after // SUBUNITS_PER_MICROUNIT - before // SUBUNITS_PER_MICROUNIT
                total += amount
    during = [(t, _source_columns(src, runs), e) for p, t, _full, _m, _a, e, src in collected if p == period]
    with store.read() as conn:
        cited = _guild_terms(conn, payees, [e for _t, _s, e in during])
        floors = pa.concat_tables(
            [_floor_table(conn, payees, currency, period, runs, cited), _fee_table(conn, payees, currency, period)]
        )
        titles = _titles(conn, [t for p, t, *_ in collected if p == period] + [floors], explained)
    floored = sum(floors["amount_microunits"].to_pylist())  # whole microunits (floors, training fees): no carry
    total, accrued = total + floored * SUBUNITS_PER_MICROUNIT, accrued + floored
    lines = _line_table(during, floors, cited)
    for e in explained.values():
        for w in e["top_works"]:
            sub = int(w["amount_subunits"])
            w["title"] = titles.get(w["work_id"], "")
            w["amount"] = format_amount(sub // SUBUNITS_PER_MICROUNIT, currency)  # whole microunits, floored
    return Statement(
        person_id,
        person.handle,
        period,
        currency,
        lines,
        total,
        carried_in,
        carried_out,
        accrued,
        ledger_accrued,
        explained,
        rules,
        {run_id: run.to_json() for run_id, run in sorted(runs.items())},
        {model_id: v.to_json() for model_id, v in sorted(validity.items())},
        pools,
        labels,
        titles,
        _escrow_waiting(store, payees, labels, currency),
    )


def _escrow_waiting(store: Store, payees: list[str], labels: dict[str, str], currency: str) -> list[dict[str, Any]]:
    """``Statement.escrow``: ``ledger.expiry.escrow_schedule`` of the payees' escrow accounts in ``currency``."""
    from endcredits.ledger.expiry import escrow_schedule

    with store.read() as conn:
        held = escrow_schedule(conn, [f"escrow:{p}:{currency}" for p in payees])
    out = []
    for h in held:
        if h.amount_microunits <= 0:
            continue
        payee = h.account.removeprefix("escrow:").rsplit(":", 1)[0]
        out.append(
            {
                "credited_as": labels.get(payee, payee),
                "amount": format_amount(h.amount_microunits, currency),
                "amount_microunits": h.amount_microunits,
                "owed_since": h.owed_since.isoformat(),
                "due_on": h.due_on.isoformat() if h.due_on else None,
                "fund": h.fund,
                "deadline_set_by": h.term,
            }
        )
    return out


def model_pools(tables: list[pa.Table]) -> dict[str, dict[str, int | None]]:
    """Per model over every line of ``tables`` (every payee): the pool paid out in subunits, the revenue of
    its outputs (once per output; None when a table has no revenue column) and how many outputs."""
    out: dict[str, dict[str, int | None]] = {}
    for t in tables:
        revenue_of: dict[str, int] = {}
        if "revenue_microunits" in t.column_names:
            g = pa.table([t["output_id"].cast(pa.string()), t["revenue_microunits"]], names=["o", "r"])
            g = g.group_by(["o"], use_threads=False).aggregate([("r", "max")])
            revenue_of = dict(zip(g["o"].to_pylist(), g["r_max"].to_pylist(), strict=True))
        for (model, oid), amount, _n in subunit_sums(t, ["model_id", "output_id"]):
            m = out.setdefault(model, {"pool_subunits": 0, "revenue_microunits": 0, "outputs": 0})
            m["pool_subunits"] = int(m["pool_subunits"] or 0) + amount
            revenue = m["revenue_microunits"]
            m["revenue_microunits"] = None if revenue is None or oid not in revenue_of else revenue + revenue_of[oid]
            m["outputs"] = int(m["outputs"] or 0) + 1
    return out


def _titles(conn: Connection, tables: list[pa.Table], explained: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The title of every work the period's lines and explanations name."""
    work_ids = {w["work_id"] for e in explained.values() for w in e["top_works"]}
    for t in tables:
        for column in ("attributed_work", "source_work"):
            work_ids.update(pc.unique(t[column].cast(pa.string())).to_pylist())
    work_ids.discard("")
    ids = sorted(work_ids)
    titles: dict[str, str] = {}
    for i in range(0, len(ids), 5000):
        chunk = ids[i : i + 5000]
        titles.update(
            {r.id: r.title for r in conn.execute(select(works.c.id, works.c.title).where(works.c.id.in_(chunk)))}
        )
    return titles


def _source_columns(source: Source, runs: dict[str, AttributionRun]) -> dict[str, str]:
    """A line's scores columns: the run and its method, or the reason given for external scores (all empty for
    a batch accrued before sources were recorded)."""
    run_id, reason = source
    run = runs.get(run_id) if run_id is not None else None
    method = "" if run is None else run.method + (" (weaker)" if run.weaker else "")
    return {"scores_run_id": run_id or "", "scores_method": method, "scores_external_reason": reason or ""}


def _source_label(source: Source, runs: dict[str, AttributionRun]) -> str:
    """Where one batch's scores came from, in words."""
    columns = _source_columns(source, runs)
    if columns["scores_run_id"]:
        return f"attribution run {columns['scores_run_id']} ({columns['scores_method'] or 'not recorded here'})"
    if columns["scores_external_reason"]:
        return f"external scores: {columns['scores_external_reason']}"
    return "not recorded (accrued before endcredits recorded where scores came from)"


LINE_TABLE_COLUMNS = (
    "output_id",
    "model_id",
    "occurred_at",
    "attributed_work",
    "source_work",
    "payee",
    "role",
    "account",
    "amount_microunits",
    "amount_subunits",
    "scores_run_id",
    "scores_method",
    "scores_external_reason",
    "licence_term",
    "licence_source",
    "guild_term",
)
_LINE_ORDER = ["occurred_at", "output_id", "attributed_work", "source_work", "role"]


def _guild_terms(
    conn: Connection, payees: list[str], event_ids: list[str]
) -> dict[str, dict[tuple[str, str, str], str]]:
    """Per accrual group, per (payee, source work, role) of these payees whose role weight a guild minimum
    raised: the term, in the statement's words (``ledger.guild_minimums``)."""
    wanted = set(payees)
    out: dict[str, dict[tuple[str, str, str], str]] = {}
    for x in minimum_lines_of(conn, event_ids):
        if x.payee in wanted:
            out.setdefault(x.event_id, {})[(x.payee, x.source_work, x.role)] = x.label
    return out


def _guild_column(t: pa.Table, cited: dict[tuple[str, str, str], str]) -> pa.Array:
    """Each line's guild term (empty where none raised its weight)."""
    if not cited:
        return pa.array([""] * t.num_rows, pa.string())
    keys = zip(*(t[c].cast(pa.string()).to_pylist() for c in ("payee", "source_work", "role")), strict=True)
    return pa.array([cited.get(k, "") for k in keys], pa.string())


def _line_table(
    during: list[tuple[pa.Table, dict[str, str], str]],
    floors: pa.Table,
    cited: dict[str, dict[tuple[str, str, str], str]],
) -> pa.Table:
    """Every line of the period's batches with its scores source and the guild term that raised its weight,
    then the licence floors' lines, text as strings, in time order (then output, attributed work, source
    work and role)."""
    parts = [floors] if floors.num_rows else []
    for t, source, event_id in during:
        columns = {
            name: t[name].cast(pa.string()) if pa.types.is_dictionary(t[name].type) else t[name]
            for name in LINE_TABLE_COLUMNS
            if name in t.column_names
        }
        columns.update({k: pa.array([v] * t.num_rows, pa.string()) for k, v in source.items()})
        columns.update({k: pa.array([""] * t.num_rows, pa.string()) for k in ("licence_term", "licence_source")})
        columns["guild_term"] = _guild_column(t, cited.get(event_id, {}))
        parts.append(pa.table([columns[name] for name in LINE_TABLE_COLUMNS], names=list(LINE_TABLE_COLUMNS)))
    if not parts:
        empty = [pa.array([], pa.int64() if name.startswith("amount") else pa.string()) for name in LINE_TABLE_COLUMNS]
        return pa.table(empty, names=list(LINE_TABLE_COLUMNS))
    table = pa.concat_tables(parts)
    return table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in _LINE_ORDER]))


def _floor_table(
    conn: Connection,
    payees: list[str],
    currency: str,
    period: str,
    runs: dict[str, AttributionRun],
    cited_guild: dict[str, dict[tuple[str, str, str], str]],
) -> pa.Table:
    """The lines the period's licence floors paid these payees (``ledger.floors``), as ``LINE_TABLE_COLUMNS``,
    each citing its licence term: payment type, amount, id and source (``consent.terms``); and, where a guild
    minimum raised the line's weight in its group (``cited_guild``, from ``_guild_terms``), that guild term:
    the top-up is split in the raised ratio."""
    q = select(accrual_batches.c.event_id, accrual_batches.c.scores_run_id, accrual_batches.c.scores_external_reason)
    sources = {
        r.event_id: _source_columns((r.scores_run_id, r.scores_external_reason), runs)
        for r in conn.execute(q.where(accrual_batches.c.currency == currency, accrual_batches.c.period == period))
    }
    wanted = set(payees)
    lines = [x for x in floor_lines_of(conn, list(sources)) if x.payee in wanted]
    terms = dict(terms_for(conn, {x.attributed_work for x in lines}))
    rows = []
    for x in lines:
        term = terms.get(x.term_id)
        cited = (
            f"{term.payment_type}: at least {format_amount(term.amount_microunits, term.currency)} {term.currency} "
            f"per output (licence term {x.term_id})"
            if term is not None
            else f"licence term {x.term_id} (not stored here)"
        )
        rows.append(
            {**vars(x), "amount_subunits": 0, **sources[x.event_id], "licence_term": cited,
             "licence_source": term.source if term is not None else "",
             "guild_term": cited_guild.get(x.event_id, {}).get((x.payee, x.source_work, x.role), "")}
        )  # fmt: skip
    return _as_lines(rows)


def _fee_table(conn: Connection, payees: list[str], currency: str, period: str) -> pa.Table:
    """The training fees (``ledger.training_fees``) owed these payees in ``period``, as ``LINE_TABLE_COLUMNS``:
    one line per part, its output id ``training:MANIFEST``, citing the licence term it applied and the guild
    term that raised the part's role weight, if one did."""
    wanted = set(payees)
    lines = [x for x in fee_lines(conn) if x.payee in wanted and x.event_id.endswith(f"/{currency}/{period}")]
    terms = dict(terms_for(conn, {x.work_id for x in lines}))
    guild = _guild_terms(conn, payees, sorted({x.event_id for x in lines}))
    no_scores = {"scores_run_id": "", "scores_method": "", "scores_external_reason": ""}
    rows = []
    for x in lines:
        term = terms.get(x.term_id)
        price = f"{format_amount(term.amount_microunits, term.currency)} {term.currency}" if term else ""
        rows.append(
            {**vars(x), "output_id": f"training:{x.manifest_id}", "attributed_work": x.work_id, "amount_subunits": 0,
             **no_scores, "guild_term": guild.get(x.event_id, {}).get((x.payee, x.source_work, x.role), ""),
             "licence_source": term.source if term is not None else "",
             "licence_term": f"training: {price} per training use, manifest {x.manifest_id} (licence term {x.term_id})"
             if term is not None else f"licence term {x.term_id} (not stored here)"}
        )  # fmt: skip
    return _as_lines(rows)


def _as_lines(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of line dicts as a table of ``LINE_TABLE_COLUMNS`` (amounts int64, text strings)."""
    types = {name: pa.int64() if name.startswith("amount") else pa.string() for name in LINE_TABLE_COLUMNS}
    return pa.table({name: pa.array([r[name] for r in rows], types[name]) for name in LINE_TABLE_COLUMNS})


def _line_dicts(table: pa.Table, labels: dict[str, str], titles: dict[str, str], currency: str) -> list[dict[str, Any]]:
    """The lines as dicts, with titles, the name each was credited as, and the amount as text."""
    lines = []
    for row in table.to_pylist():
        micro = row["amount_microunits"]
        lines.append(
            {
                "output_id": row["output_id"],
                "model_id": row["model_id"],
                "occurred_at": row["occurred_at"],
                "attributed_work": row["attributed_work"],
                "attributed_title": titles.get(row["attributed_work"], ""),
                "source_work": row["source_work"],
                "source_title": titles.get(row["source_work"], ""),
                "credited_as": labels.get(row["payee"], row["payee"]),
                "role": row["role"],
                "account": row["account"],
                "amount": format_amount(micro, currency),
                "amount_microunits": micro,
                "amount_subunits": row["amount_subunits"],
                "scores_run_id": row["scores_run_id"],
                "scores_method": row["scores_method"],
                "scores_external_reason": row["scores_external_reason"],
                "licence_term": row["licence_term"],
                "licence_source": row["licence_source"],
                "guild_term": row["guild_term"],
            }
        )
    return lines


def _ledger_accrued(conn: Connection, payees: list[str], currency: str, period: str) -> int:
    keys = [f"escrow:{p}:{currency}" for p in payees] + [
        f"payable:{p}:{currency}" for p in payees if p.startswith("person:")
    ]
    codes = ("accrual", TRAINING_FEE)
    return sum(accrued_by_account(conn, currency=currency, period=period, keys=keys, codes=codes).values())


def _subunits_by_payee(table: pa.Table) -> dict[str, int]:
    return {payee: amount for (payee,), amount, _n in subunit_sums(table, ["payee"])}
