"""A statement a person can read: the total, the totals by model, by work and by role, what each model
paid in words, and the outputs that paid them, a page at a time.

Everything is re-added from the statement's lines, in integers. A group's exact amount is the sum of its
lines in 2^-32 microunits; its shown amount is the period's posted total (``accrued_microunits``)
apportioned over the groups by those exact amounts (``money.allocate``: largest remainder), so the groups
of each breakdown add up to the total to the microunit and each is within one microunit of its exact share.
Percentages are exact ratios of integers, rounded half up at the last digit shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from endcredits.errors import NotFoundError, ValidationError
from endcredits.limits import SUBUNITS_PER_MICROUNIT
from endcredits.money import allocate, format_amount
from endcredits.payouts.statements import Statement, subunit_sums

NO_WORK = ""
"""The work of a line whose scores were given per payee: no work is named."""


@dataclass(frozen=True)
class Group:
    """One row of a breakdown: its key (a model, a work or a role id), what to call it, its lines' exact
    amount in subunits, and its apportioned whole microunits."""

    key: str
    label: str
    amount_subunits: int
    amount_microunits: int
    lines: int

    def to_json(self, currency: str) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "amount": format_amount(self.amount_microunits, currency),
            "amount_microunits": self.amount_microunits,
            "amount_subunits": str(self.amount_subunits),
            "lines": self.lines,
        }


@dataclass(frozen=True)
class ModelFigures:
    """What one model paid in the period, and the person's part of it, with the sentence that says so."""

    model_id: str
    methods: tuple[str, ...]  # how its scores were made: a run's method, or "external: REASON"
    validity: str | None  # the model's latest validity figure in words, where one was measured
    pool_subunits: int  # everything its outputs' pools paid out in the period, to every payee
    revenue_microunits: int | None
    outputs: int  # its outputs in the period
    outputs_paying: int  # of those, the ones that paid this person
    amount_subunits: int  # this person's part, exactly
    amount_microunits: int  # this person's part as shown (the by-model row)
    works: int  # the person's works it drew on
    sentence: str

    def to_json(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.__dict__.items() if not k.endswith("_subunits")},
            "methods": list(self.methods),
            "pool_subunits": str(self.pool_subunits),
            "amount_subunits": str(self.amount_subunits),
        }


@dataclass(frozen=True)
class Summary:
    currency: str
    total_microunits: int
    lines_subunits_total: int
    by_model: list[Group]
    by_work: list[Group]
    by_role: list[Group]
    models: list[ModelFigures]

    def to_json(self) -> dict[str, Any]:
        return {
            "total": format_amount(self.total_microunits, self.currency),
            "total_microunits": self.total_microunits,
            "lines_subunits_total": str(self.lines_subunits_total),
            "by_model": [g.to_json(self.currency) for g in self.by_model],
            "by_work": [g.to_json(self.currency) for g in self.by_work],
            "by_role": [g.to_json(self.currency) for g in self.by_role],
            "models": [m.to_json() for m in self.models],
        }


def percent(part: int, whole: int, *, places: int = 2) -> str:
    """``part / whole`` as a percentage with ``places`` decimals, from the integers (half up); a positive
    part too small to show says so instead of showing 0."""
    if whole <= 0 or part < 0 or places < 0:
        raise ValidationError(f"a percentage needs 0 <= part and 0 < whole, got {part} / {whole}")
    scale = 10**places
    hundredths = (2 * part * 100 * scale + whole) // (2 * whole)
    if part and not hundredths:
        return "less than " + (f"0.{'0' * (places - 1)}1%" if places else "1%")
    whole_part, frac = divmod(hundredths, scale)
    return f"{whole_part}.{frac:0{places}d}%" if places else f"{whole_part}%"


def _with_work(t: pa.Table) -> pa.Table:
    """The lines with a ``work`` column: the person's own work each line pays them for, which is the work
    credited to them (the source of the lineage path): the attributed work itself unless the money came up a
    lineage; NO_WORK for scores given per payee."""
    src, attributed = t["source_work"], t["attributed_work"]
    return t.append_column("work", pc.if_else(pc.equal(src, NO_WORK), attributed, src))


def _work_label(st: Statement, work: str) -> str:
    if work == NO_WORK:
        return "(scored per person: no work named)"
    return st.titles.get(work) or work[:12]


def _breakdown(st: Statement, t: pa.Table, key: str, label_of: Callable[[str], str]) -> list[Group]:
    """The lines grouped by column ``key``, largest first (ties by key), apportioned to the total."""
    sums = {k: (amount, n) for (k,), amount, n in subunit_sums(t, [key])}
    weights = {k: a for k, (a, _n) in sums.items() if a > 0}
    shown = allocate(st.accrued_microunits, weights) if weights else {}
    order = sorted(sums, key=lambda k: (-sums[k][0], k))
    return [Group(k, label_of(k), sums[k][0], shown.get(k, 0), sums[k][1]) for k in order]


def summarize(st: Statement) -> Summary:
    """The statement's totals by model, by work and by role (each adding up to the total) and per model its
    figures and sentence."""
    t = _with_work(st.line_table)
    by_model = _breakdown(st, t, "model_id", str)
    by_work = _breakdown(st, t, "work", lambda w: _work_label(st, w))
    by_role = _breakdown(st, t, "role", lambda r: r or "(no role)")
    works = subunit_sums(t, ["model_id", "work"])
    sources = subunit_sums(t, ["model_id", "output_id", "scores_run_id", "scores_method", "scores_external_reason"])
    models = [_model_figures(st, g, works, sources) for g in by_model]
    return Summary(st.currency, st.accrued_microunits, st.lines_subunits_total, by_model, by_work, by_role, models)


def _model_figures(st: Statement, group: Group, works: list[Any], sources: list[Any]) -> ModelFigures:
    """``works``: (model, work) groups of the lines; ``sources``: (model, output, run, method, reason)."""
    mine = [key[1:] for key, _a, _n in sources if key[0] == group.key]
    methods = sorted(
        {
            (method or "attribution run") + f" (run {run_id[:12]})"
            if run_id
            else f"external scores: {reason}"
            if reason
            else "not recorded"
            for _oid, run_id, method, reason in mine
        }
    )
    validity = st.model_validity.get(group.key)
    pool = st.model_pools.get(group.key, {})
    pool_subunits = int(pool.get("pool_subunits") or 0)
    revenue = pool.get("revenue_microunits")
    figures = ModelFigures(
        model_id=group.key,
        methods=tuple(methods),
        validity=None if validity is None else str(validity["summary"]),
        pool_subunits=pool_subunits,
        revenue_microunits=None if revenue is None else int(revenue),
        outputs=int(pool.get("outputs") or 0),
        outputs_paying=len({key[0] for key in mine}),
        amount_subunits=group.amount_subunits,
        amount_microunits=group.amount_microunits,
        works=sum(1 for (model, work), _a, _n in works if model == group.key and work != NO_WORK),
        sentence="",
    )
    return ModelFigures(**{**figures.__dict__, "sentence": model_sentence(figures, st.period, st.currency)})


def model_sentence(m: ModelFigures, period: str, currency: str) -> str:
    """What a model paid and the person's part, in words: ``Of the 18.00 EUR model m paid in 2026-11 to the
    people behind its training data (from 60.00 EUR its 40 outputs earned), 1.23 EUR (6.83%) was paid to you
    for the 3 of your works it drew on, through 12 of its outputs.``"""
    pool_text = format_amount(m.pool_subunits // SUBUNITS_PER_MICROUNIT, currency)
    earned = (
        ""
        if m.revenue_microunits is None
        else f" (from {format_amount(m.revenue_microunits, currency)} {currency} its {m.outputs} "
        f"output{'s' if m.outputs != 1 else ''} earned)"
    )
    share = percent(m.amount_subunits, m.pool_subunits) if m.pool_subunits else "0.00%"
    what = (
        f"for the {m.works} of your works it drew on"
        if m.works != 1
        else "for the one of your works it drew on"
        if m.works
        else "on scores given per person rather than per work"
    )
    return (
        f"Of the {pool_text} {currency} model {m.model_id} paid in {period} to the people behind its training "
        f"data{earned}, {format_amount(m.amount_microunits, currency)} {currency} ({share}) was paid to you "
        f"{what}, through {m.outputs_paying} of its outputs."
    )


# The outputs that paid the person, a page at a time ---------------------------------------------------
@dataclass(frozen=True)
class WorkPart:
    """One of the person's works behind an output: what it was paid, by which paths and roles."""

    work_id: str  # the person's work (NO_WORK for scores given per payee)
    title: str
    drawn_on: tuple[str, ...]  # titles of the attributed works the money came through, when not the work itself
    roles: tuple[str, ...]
    credited_as: tuple[str, ...]
    amount_subunits: int
    licence_terms: tuple[str, ...] = ()  # the licence floors that raised it (payment type, amount, term id)
    guild_terms: tuple[str, ...] = ()  # the guild minimum role weights that raised the person's weight


@dataclass(frozen=True)
class OutputPaid:
    output_id: str
    model_id: str
    occurred_at: str
    scores: dict[str, str]  # the line's scores columns: run id and method, or the external reason
    pool_subunits: int  # everything the output's pool paid, to every payee
    amount_subunits: int  # what it paid this person
    works: list[WorkPart]  # the person's works behind it, largest first

    @property
    def share(self) -> str:
        return percent(self.amount_subunits, self.pool_subunits) if self.pool_subunits else "0.00%"


@dataclass(frozen=True)
class OutputsPage:
    number: int  # from 1
    pages: int
    per_page: int
    outputs_total: int
    outputs: list[OutputPaid]


def outputs_paid(st: Statement) -> list[OutputPaid]:
    """Every output that paid the person in the period, in time order (then by id), each once; ``works`` is
    left empty (``outputs_page`` fills it for the outputs of one page)."""
    keys = ["output_id", "model_id", "occurred_at", "scores_run_id", "scores_method", "scores_external_reason"]
    out = [
        OutputPaid(
            output_id=oid,
            model_id=model,
            occurred_at=at,
            scores={"scores_run_id": run_id, "scores_method": method, "scores_external_reason": reason},
            pool_subunits=int(st.outputs.get(oid, {}).get("pool_subunits", "0")),
            amount_subunits=amount,
            works=[],
        )
        for (oid, model, at, run_id, method, reason), amount, _n in subunit_sums(st.line_table, keys)
    ]
    out.sort(key=lambda o: (o.occurred_at, o.output_id))
    return out


def outputs_page(st: Statement, number: int, per_page: int) -> OutputsPage:
    """Page ``number`` (from 1) of the outputs that paid the person, ``per_page`` to a page, each with the
    person's works behind it. A statement with no outputs has one empty page; a page past the last is
    ``NotFoundError``, which says how many there are."""
    if per_page < 1 or number < 1:
        raise ValidationError(f"page {number} of {per_page} outputs: both must be at least 1")
    outputs = outputs_paid(st)
    pages = max(1, -(-len(outputs) // per_page))  # ceiling division
    if number > pages:
        raise NotFoundError(
            f"page {number} does not exist: this statement has {pages} page{'s' if pages != 1 else ''} of "
            f"{per_page} outputs ({len(outputs)} outputs)"
        )
    start = (number - 1) * per_page
    shown = outputs[start : start + per_page]
    parts = _work_parts(st, [o.output_id for o in shown])
    filled = [replace(o, works=parts.get(o.output_id, [])) for o in shown]
    return OutputsPage(number, pages, per_page, len(outputs), filled)


def _work_parts(st: Statement, output_ids: list[str]) -> dict[str, list[WorkPart]]:
    """Per output of ``output_ids``: the person's works behind it, largest first."""
    t = st.line_table.filter(pc.is_in(st.line_table["output_id"], value_set=pa.array(output_ids, pa.string())))
    acc: dict[str, dict[str, dict[str, Any]]] = {}
    for (oid, work, attributed, role, payee, term, guild), amount, _n in subunit_sums(
        _with_work(t), ["output_id", "work", "attributed_work", "role", "payee", "licence_term", "guild_term"]
    ):
        empty: dict[str, Any] = {"via": set(), "roles": set(), "as": set(), "amount": 0, "terms": set(), "guild": set()}
        p = acc.setdefault(oid, {}).setdefault(work, empty)
        p["terms"] |= {term} - {""}
        p["guild"] |= {guild} - {""}
        if attributed and attributed != work:
            p["via"].add(st.titles.get(attributed) or attributed[:12])
        p["roles"].add(role)
        p["as"].add(st.labels.get(payee, payee))
        p["amount"] += amount
    return {
        oid: [
            WorkPart(
                w,
                _work_label(st, w),
                tuple(sorted(p["via"])),
                tuple(sorted(p["roles"])),
                tuple(sorted(p["as"])),
                p["amount"],
                tuple(sorted(p["terms"])),
                tuple(sorted(p["guild"])),
            )
            for w, p in sorted(parts.items(), key=lambda kv: (-kv[1]["amount"], kv[0]))
        ]
        for oid, parts in acc.items()
    }
