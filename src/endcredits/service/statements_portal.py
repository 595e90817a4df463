"""The portal's statement page and the previews on it.

``/portal/people/{id}/statements/{YYYY-MM}`` shows the total, the totals by model, by work and by role, what
each model paid in words, then the outputs that paid the person, ``OUTPUTS_PER_PAGE`` to a page
(``?page=N``), each with what the model generated and the person's works behind it. ``.csv`` and ``.json``
give every line. Previews (``/portal/people/{id}/previews/work.png?id=...`` and ``output.png``) follow the
rules of the rest of the person's data: the person themselves or an operator who reads, and then only a work
credited to the person, or an output whose address the statement page signed for this person (it signs only
outputs that paid them). Anything else is 404, as another person's statement is.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response

from endcredits.errors import NotFoundError
from endcredits.limits import ID_LENGTH_MAX, SUBUNITS_PER_MICROUNIT
from endcredits.money import format_amount
from endcredits.payouts.previews import (
    Preview,
    output_previews,
    output_thumbnail,
    person_may_see_work,
    work_previews,
    work_thumbnail,
)
from endcredits.payouts.statement_layout import Group, OutputPaid, outputs_page, percent, summarize
from endcredits.payouts.statements import Statement, build_statement
from endcredits.service.access import store_of
from endcredits.service.portal import (
    CHART_WIDTH,
    GROUP_ROWS_SHOWN,
    OUTPUTS_PER_PAGE,
    PORTAL,
    WORKS_PER_OUTPUT_SHOWN,
    _portal,
    _see_person,
    _who,
    bars,
    render,
)

PAGE_MAX = 10**9
PREVIEW_DOMAIN = b"endcredits portal output preview v1"


def _signature(request: Request, person_id: int, output_id: str) -> str:
    """Binds an output's preview address to the person whose statement page showed it."""
    message = PREVIEW_DOMAIN + b"\x00" + str(person_id).encode() + b"\x00" + output_id.encode()
    return hmac.new(_portal(request).media_key, message, hashlib.sha256).hexdigest()


def routes_statements(router: APIRouter) -> None:
    @router.get("/people/{person_id}/statements/{period}")
    def statement_page(
        request: Request,
        person_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
        period: Annotated[str, PathParam(pattern=r"^[0-9]{4}-[0-9]{2}(\.csv|\.json)?$")],
        currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")] = "EUR",
        page: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 1,
    ) -> Response:
        who = _who(request)
        _see_person(who, person_id)
        month, _, extension = period.partition(".")
        st = build_statement(store_of(request), person_id, month, currency)
        if extension:
            name = f"statement-{person_id}-{st.period}-{currency}.{extension}"
            return PlainTextResponse(
                st.to_csv() if extension == "csv" else st.to_json() + "\n",
                media_type="text/csv; charset=utf-8" if extension == "csv" else "application/json",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        return render(request, who, "statement.html", **statement_context(request, st, page))

    @router.get("/people/{person_id}/previews/{kind}.png")
    def preview(
        request: Request,
        person_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
        kind: Annotated[str, PathParam(pattern=r"^(work|output)$")],
        item: Annotated[str, Query(alias="id", min_length=1, max_length=ID_LENGTH_MAX)],
        sig: Annotated[str, Query(max_length=64)] = "",
    ) -> Response:
        _see_person(_who(request), person_id)
        store = store_of(request)
        if kind == "work":
            with store.read() as conn:
                allowed = person_may_see_work(conn, person_id, item)
        else:
            allowed = hmac.compare_digest(sig.encode(), _signature(request, person_id, item).encode())
        png = (work_thumbnail(store, item) if kind == "work" else output_thumbnail(store, item)) if allowed else None
        if png is None:
            raise NotFoundError(f"no {kind} preview {item[:40]!r} on person {person_id}'s statements")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _rows(groups: list[Group], total_subunits: int, currency: str) -> list[dict[str, str]]:
    """A breakdown's rows as shown: the largest ``GROUP_ROWS_SHOWN``, then the rest added up in one row."""
    shown, rest = groups[:GROUP_ROWS_SHOWN], groups[GROUP_ROWS_SHOWN:]
    rows = [
        {
            "label": g.label,
            "amount": format_amount(g.amount_microunits, currency),
            "share": percent(g.amount_subunits, total_subunits) if total_subunits else "",
            "lines": f"{g.lines:,}",
        }
        for g in shown
    ]
    if rest:
        rest_subunits = sum(g.amount_subunits for g in rest)
        rows.append(
            {
                "label": f"{len(rest):,} more",
                "amount": format_amount(sum(g.amount_microunits for g in rest), currency),
                "share": percent(rest_subunits, total_subunits) if total_subunits else "",
                "lines": f"{sum(g.lines for g in rest):,}",
            }
        )
    return rows


def _preview_url(request: Request, person_id: int, kind: str, item: str) -> str:
    from urllib.parse import urlencode

    query = {"id": item} if kind == "work" else {"id": item, "sig": _signature(request, person_id, item)}
    return f"{PORTAL}/people/{person_id}/previews/{kind}.png?{urlencode(query)}"


def _output_view(
    request: Request, st: Statement, o: OutputPaid, preview: Preview, work_shown: dict[str, Preview]
) -> dict[str, Any]:
    currency = st.currency
    explained = st.outputs.get(o.output_id, {})
    works = []
    for w in o.works[:WORKS_PER_OUTPUT_SHOWN]:
        p = work_shown.get(w.work_id, Preview("none"))
        works.append(
            {
                "title": w.title,
                "via": ", ".join(w.drawn_on),
                "roles": ", ".join(w.roles),
                "credited_as": ", ".join(w.credited_as),
                "licence": "; ".join(w.licence_terms),
                "guild": "; ".join(w.guild_terms),
                "amount": format_amount(w.amount_subunits // SUBUNITS_PER_MICROUNIT, currency),
                "preview": p,
                "thumb": _preview_url(request, st.person_id, "work", w.work_id) if p.kind == "image" else "",
            }
        )
    rest = o.works[WORKS_PER_OUTPUT_SHOWN:]
    return {
        "output_id": o.output_id,
        "model_id": o.model_id,
        "occurred_at": o.occurred_at[:16].replace("T", " "),
        "preview": preview,
        "thumb": _preview_url(request, st.person_id, "output", o.output_id) if preview.kind == "image" else "",
        "amount": format_amount(o.amount_subunits // SUBUNITS_PER_MICROUNIT, currency),
        "pool": format_amount(o.pool_subunits // SUBUNITS_PER_MICROUNIT, currency),
        "share": o.share,
        "scores": o.scores,
        "explained_by": explained.get("scores", ""),
        "agreement": explained.get("agreement", ""),
        "works": works,
        "more_works": len(rest),
        "more_amount": format_amount(sum(w.amount_subunits for w in rest) // SUBUNITS_PER_MICROUNIT, currency),
        "top_works": bars(
            [(w["title"] or w["work_id"][:12], int(w["amount_subunits"])) for w in explained.get("top_works", [])],
            currency,
            unit="subunits",
        ),
    }


def statement_context(request: Request, st: Statement, page_number: int) -> dict[str, Any]:
    """What ``statement.html`` shows of ``st``: the summary, and page ``page_number`` of its outputs."""
    store = store_of(request)
    summary = summarize(st)
    page = outputs_page(st, page_number, OUTPUTS_PER_PAGE)
    previews = output_previews(store, [o.output_id for o in page.outputs])
    work_ids = [w.work_id for o in page.outputs for w in o.works[:WORKS_PER_OUTPUT_SHOWN] if w.work_id]
    work_shown = work_previews(store, work_ids)
    total = st.lines_subunits_total
    return {
        "st": st,
        "summary": summary,
        "accrued": format_amount(st.accrued_microunits, st.currency),
        "by_model": _rows(summary.by_model, total, st.currency),
        "by_work": _rows(summary.by_work, total, st.currency),
        "by_role": _rows(summary.by_role, total, st.currency),
        "page": page,
        "outputs": [_output_view(request, st, o, previews[o.output_id], work_shown) for o in page.outputs],
        "chart_width": CHART_WIDTH,
    }
