"""The contributor portal: server-rendered pages under ``/portal`` over the same stage and store functions
as the REST API. No build step, no script, nothing fetched from elsewhere: Jinja2 templates (autoescaped,
so every name is text, never markup), one small stylesheet, and bar charts drawn as inline SVG here.

Who is asking comes from a cookie, never from the URL:

- ``ec_session`` holds a contributor's session token (``ecs_...``), opened by a one-time login link
  (``/portal/login?token=ecl_...``) or by a signed challenge, exactly as the API opens one; signing out
  closes it in the store.
- ``ec_operator`` holds ``eco_<key id>.<generation>.<expiry>.<HMAC>`` (``operator_sessions.py``): an
  operator or auditor pasted their API key once and got a session for the operator pages. The key itself
  is not kept; the key's row is read on every request, so revoking the key ends the session at once.
  Signing out moves the key's generation on, so the same cookie is refused afterwards. The HMAC key
  lives in the running app only, so a restart signs operators out.
- ``ec_pre`` is a random value for the sign-in forms, before there is a session.

Every cookie is HttpOnly, SameSite=Strict and, over https, Secure. Every POST form carries a CSRF token
derived from the cookie in force (HMAC of the session's own secret), so a page elsewhere cannot submit
one. Errors render as a page with the same status the API would answer.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from endcredits.errors import EndcreditsError, NotFoundError, ValidationError
from endcredits.limits import SUBUNITS_PER_MICROUNIT
from endcredits.money import format_amount
from endcredits.service import auth
from endcredits.service.access import need, see_person, store_of
from endcredits.service.auth import AuthError, Principal
from endcredits.service.errors import status_of, validation_message
from endcredits.service.operator_sessions import OperatorSessions
from endcredits.service.throttle import spend_challenge
from endcredits.service.views import escrow_rows, person_view, sees_holders
from endcredits.store.engine import Store, format_time

PORTAL = "/portal"
TEMPLATES_DIR = Path(__file__).parent / "templates"
SESSION_COOKIE = "ec_session"
OPERATOR_COOKIE = "ec_operator"
PRE_COOKIE = "ec_pre"
OPERATOR_SESSION_TTL_S = auth.SESSION_TTL_S
PERIODS_SHOWN_MAX = 12
"""Statements the earnings page reads (the latest periods); older ones stay reachable by address."""
OUTPUTS_PER_PAGE = 20
"""Outputs on one page of a statement; the CSV and the JSON have every line."""
WORKS_PER_OUTPUT_SHOWN = 5
"""The person's works shown under each output (the largest); the rest are added up in one row."""
GROUP_ROWS_SHOWN = 15
"""Rows of each breakdown (by model, work, role) shown; the rest are added up in one row."""
BARS_MAX = 10
ESCROW_ROWS_MAX = 50
CHART_WIDTH = 400
BAR_WIDTH_MAX = 260
CSRF_DOMAIN = b"endcredits portal csrf v1"

NOTICES: dict[str, str] = {
    "granted": "Your consent was recorded.",
    "revoked": "The grant was revoked.",
    "signed_out": "You are signed out.",
}
"""The only texts a redirect may ask a page to show (never text from the URL)."""

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class SignInNeeded(Exception):
    """A page for someone signed in was opened without a session: send them to the sign-in page."""


@dataclass(frozen=True)
class Portal:
    """What the portal's routes share: the templates and the operator sessions of this process."""

    env: Environment
    operators: OperatorSessions
    media_key: bytes
    """Signs the address of each output preview a statement page shows (``statements_portal``)."""


def mount_portal(app: FastAPI) -> None:
    """Add the portal's routes to the API's app (which holds the store in ``app.state.store``)."""
    from endcredits.service.guild_portal import routes_guild
    from endcredits.service.statements_portal import routes_statements

    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    app.state.portal = Portal(env, OperatorSessions(), secrets.token_bytes(32))
    router = APIRouter(prefix=PORTAL, route_class=PortalRoute, include_in_schema=False)
    _routes_sign_in(router)
    _routes_contributor(router)
    routes_statements(router)
    _routes_escrow(router)
    _routes_operator(router)
    routes_guild(router)
    app.include_router(router)


def _portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


# Responses ---------------------------------------------------------------------------------------
class PortalRoute(APIRoute):
    """A portal route: errors become an HTML page (same status as the API would give), and every answer
    carries the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInNeeded:
                response = RedirectResponse(f"{PORTAL}/signin", status_code=303)
            except EndcreditsError as exc:
                response = _error_page(request, status_of(exc), exc.message)
            except AuthError as exc:
                response = _error_page(request, exc.status, str(exc))
                if exc.retry_after_s is not None:
                    response.headers["Retry-After"] = str(exc.retry_after_s)
            except RequestValidationError as exc:
                response = _error_page(request, 422, validation_message(exc))
            except StarletteHTTPException as exc:
                response = _error_page(request, exc.status_code, str(exc.detail))
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return guarded


def _cookie(response: Response, request: Request, name: str, value: str, max_age_s: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=PORTAL,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _forget(response: Response, request: Request, *names: str) -> None:
    for name in names:
        response.delete_cookie(
            name, path=PORTAL, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )


def _csrf_for(secret: str) -> str:
    return hmac.new(secret.encode(), CSRF_DOMAIN, hashlib.sha256).hexdigest()


def _csrf_source(request: Request) -> str | None:
    for name in (SESSION_COOKIE, OPERATOR_COOKIE, PRE_COOKIE):
        value = request.cookies.get(name)
        if value and len(value) <= 256:
            return value
    return None


def check_csrf(request: Request, token: str) -> None:
    """Refuse a form whose CSRF token is not the one derived from this browser's cookie."""
    source = _csrf_source(request)
    if source is None or not hmac.compare_digest(_csrf_for(source), token):
        raise AuthError(
            403, "forbidden", "this form expired or came from another site: reload the page and send it again"
        )


def render(
    request: Request,
    who: Principal,
    template: str,
    *,
    status: int = 200,
    csrf_source: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page; sets the pre-session cookie when the browser has no cookie to derive a CSRF token from.
    ``csrf_source``: the cookie this response sets, when it sets one (a sign-in)."""
    source = csrf_source or _csrf_source(request)
    fresh = None
    if source is None:
        fresh = source = secrets.token_urlsafe(32)
    notice = NOTICES.get(request.query_params.get("notice", ""), "")
    html = (
        _portal(request)
        .env.get_template(template)
        .render(who=who, csrf=_csrf_for(source), notice=context.pop("notice", None) or notice, **context)
    )
    response = HTMLResponse(html, status_code=status)
    if fresh is not None:
        _cookie(response, request, PRE_COOKIE, fresh, 3_600)
    return response


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    try:
        who = _who(request)
    except EndcreditsError:  # pragma: no cover - the store itself is failing: show the error without a user
        who = auth.PUBLIC
    return render(request, who, "error.html", status=status, status_code=status, message=message)


# Who is asking -----------------------------------------------------------------------------------
def _operator_principal(request: Request, value: str) -> Principal:
    key_id = _portal(request).operators.key_id(value, int(dt.datetime.now(dt.UTC).timestamp()))
    if key_id is None:
        return auth.PUBLIC
    with store_of(request).read() as conn:
        found = auth.key_principal(conn, key_id)
    return found if found is not None else auth.PUBLIC


def _who(request: Request) -> Principal:
    """The principal behind this browser's cookies; an unknown, expired or closed session is the public."""
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        try:
            with store_of(request).read() as conn:
                return auth.principal_for(conn, f"Bearer {session}")
        except AuthError:
            return auth.PUBLIC
    operator = request.cookies.get(OPERATOR_COOKIE)
    if operator:
        return _operator_principal(request, operator)
    return auth.PUBLIC


def _contributor(who: Principal) -> int:
    if who.kind != "contributor" or who.person_id is None:
        if who.kind == "public":
            raise SignInNeeded
        raise AuthError(403, "forbidden", "this page is for a signed-in contributor; operators see /portal/operator")
    return who.person_id


def _see_person(who: Principal, person_id: int) -> None:
    if who.kind == "public":
        raise SignInNeeded
    see_person(who, person_id)


CsrfField = Annotated[str, Form(max_length=128)]


# Sign-in -----------------------------------------------------------------------------------------
def _signed_in(request: Request, store: Store, person_id: int, token: str) -> HTMLResponse:
    """A page that says who is signed in and moves on by itself. Not a redirect: a SameSite=Strict cookie set
    while following a link from another site (a mail) is sent with the next same-site navigation, not with a
    redirect inside the cross-site one."""
    from endcredits.registry.records import get_person

    with store.read() as conn:
        handle = get_person(conn, person_id).handle
    who = Principal("contributor", frozenset(), person_id, "session")
    response = render(
        request, who, "signed_in.html", csrf_source=token, handle=handle, next_url=f"{PORTAL}/people/{person_id}"
    )
    _cookie(response, request, SESSION_COOKIE, token, auth.SESSION_TTL_S)
    _forget(response, request, OPERATOR_COOKIE, PRE_COOKIE)
    return response


def _routes_sign_in(router: APIRouter) -> None:
    @router.get("/static/portal.css")
    def stylesheet() -> Response:
        return PlainTextResponse(
            (TEMPLATES_DIR / "portal.css").read_text(encoding="utf-8"),
            media_type="text/css",
            headers={"Cache-Control": "max-age=3600"},
        )

    @router.get("/")
    def home(request: Request) -> Response:
        who = _who(request)
        if who.kind == "contributor":
            return RedirectResponse(f"{PORTAL}/people/{who.person_id}", status_code=303)
        if who.kind in ("operator", "auditor"):
            return RedirectResponse(f"{PORTAL}/operator", status_code=303)
        return RedirectResponse(f"{PORTAL}/signin", status_code=303)

    @router.get("/signin")
    def signin_page(request: Request) -> Response:
        return render(request, _who(request), "signin.html")

    @router.get("/login")
    def login_link(
        request: Request, token: Annotated[str, Query(min_length=1, max_length=auth.TOKEN_LENGTH_MAX)]
    ) -> Response:
        store = store_of(request)
        with store.write() as conn:
            s = auth.sign_in_with_link(conn, token)
        return _signed_in(request, store, s.person_id, s.token)

    @router.post("/signin/challenge/new")
    def challenge_new(
        request: Request, csrf: CsrfField, person_id: Annotated[int, Form(ge=1, le=2**31 - 1)]
    ) -> Response:
        check_csrf(request, csrf)
        spend_challenge(request)
        with store_of(request).write() as conn:
            c = auth.issue_challenge(conn, person_id)
        return render(request, _who(request), "challenge.html", challenge=c)

    @router.post("/signin/challenge")
    def challenge_sign_in(
        request: Request,
        csrf: CsrfField,
        challenge_id: Annotated[str, Form(min_length=1, max_length=64)],
        did: Annotated[str, Form(min_length=1, max_length=200)],
        signature: Annotated[str, Form(min_length=1, max_length=200)],
    ) -> Response:
        check_csrf(request, csrf)
        text = signature.strip()
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise ValidationError("the signature must be base64url, as the signing command prints it") from None
        store = store_of(request)
        with store.write() as conn:
            s = auth.sign_in_with_challenge(conn, challenge_id.strip(), did.strip(), raw)
        return _signed_in(request, store, s.person_id, s.token)

    @router.post("/operator/signin")
    def operator_sign_in(
        request: Request, csrf: CsrfField, api_key: Annotated[str, Form(min_length=1, max_length=auth.TOKEN_LENGTH_MAX)]
    ) -> Response:
        from endcredits.store.audit import append_audit

        check_csrf(request, csrf)
        store = store_of(request)
        with store.read() as conn:
            who = auth.principal_for(conn, f"Bearer {api_key.strip()}")
        if who.kind not in ("operator", "auditor", "guild"):
            raise AuthError(401, "unauthorized", "paste an operator, auditor or guild API key (eck_...)")
        key_id = who.subject.removeprefix("key:")
        expires = int(dt.datetime.now(dt.UTC).timestamp()) + OPERATOR_SESSION_TTL_S
        with store.write() as conn:
            append_audit(
                conn,
                "auth.portal_session_opened",
                who.subject,
                {"expires_at": format_time(dt.datetime.fromtimestamp(expires, dt.UTC))},
            )
        response = RedirectResponse(f"{PORTAL}/{'guild' if who.kind == 'guild' else 'operator'}", status_code=303)
        _cookie(
            response,
            request,
            OPERATOR_COOKIE,
            _portal(request).operators.cookie(key_id, expires),
            OPERATOR_SESSION_TTL_S,
        )
        _forget(response, request, SESSION_COOKIE, PRE_COOKIE)
        return response

    @router.post("/logout")
    def logout(request: Request, csrf: CsrfField) -> Response:
        from endcredits.store.audit import append_audit

        check_csrf(request, csrf)
        who = _who(request)
        with store_of(request).write() as conn:
            if who.kind == "contributor":
                auth.close_session(conn, request.cookies.get(SESSION_COOKIE, ""))
            elif who.kind != "public":
                _portal(request).operators.close(who.subject.removeprefix("key:"))
                append_audit(conn, "auth.portal_session_closed", who.subject, {})
        response = RedirectResponse(f"{PORTAL}/signin?notice=signed_out", status_code=303)
        _forget(response, request, SESSION_COOKIE, OPERATOR_COOKIE)
        return response


# Earnings, statements, consent -------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    label: str
    amount: str
    width: int  # in chart units, 0..BAR_WIDTH_MAX


def bars(items: Iterable[tuple[str, int]], currency: str, *, unit: str = "microunits") -> list[Bar]:
    """Bars for a chart, widths proportional to the amounts (integer arithmetic, floored; any positive
    amount is at least one unit wide). ``unit`` is ``microunits`` or ``subunits`` (2^-32 of one)."""
    rows = list(items)
    top = max((v for _, v in rows), default=0)
    out = []
    for label, value in rows:
        micro = value // SUBUNITS_PER_MICROUNIT if unit == "subunits" else value
        width = 0 if top <= 0 or value <= 0 else max(1, value * BAR_WIDTH_MAX // top)
        out.append(Bar(label[:60], f"{format_amount(micro, currency)} {currency}", width))
    return out


def _periods(store: Store) -> list[tuple[str, str]]:
    """(period, currency) of the latest accrual batches, newest first."""
    from endcredits.ledger.records import latest_periods

    with store.read() as conn:
        return latest_periods(conn, PERIODS_SHOWN_MAX)


def _top(amounts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(amounts.items(), key=lambda kv: (-kv[1], kv[0]))[:BARS_MAX]


def earnings(store: Store, person_id: int) -> dict[str, dict[str, Any]]:
    """Per currency: the person's statements of the latest periods, and their earnings by month, by work
    and by model, as chart bars."""
    from endcredits.payouts.statement_layout import summarize
    from endcredits.payouts.statements import build_statement

    by_currency: dict[str, dict[str, Any]] = {}
    for period, currency in sorted(_periods(store)):
        st = build_statement(store, person_id, period, currency)
        c = by_currency.setdefault(currency, {"months": [], "works": {}, "models": {}, "statements": []})
        c["months"].append((period, st.accrued_microunits))
        c["statements"].append(
            {"period": period, "lines": st.line_count, "accrued": format_amount(st.accrued_microunits, currency)}
        )
        summary = summarize(st)
        for kind, groups in (("works", summary.by_work), ("models", summary.by_model)):
            for g in groups:
                c[kind][g.label] = c[kind].get(g.label, 0) + g.amount_subunits
    out = {}
    for currency, c in by_currency.items():
        out[currency] = {
            "by_month": bars(c["months"], currency),
            "by_work": bars(_top(c["works"]), currency, unit="subunits"),
            "by_model": bars(_top(c["models"]), currency, unit="subunits"),
            "statements": sorted(c["statements"], key=lambda s: s["period"], reverse=True),
        }
    return out


def _grant_rows(grants: list[tuple[int, Any]], now: dt.datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per use: the decision of the person's own grants in force now, or none; every grant, newest first)."""
    from endcredits.consent.rules import USES

    def window(g: Any) -> str:
        end = "in perpetuity" if g.perpetual else f"until {g.valid_until:%Y-%m-%d %H:%M} UTC"
        return f"from {g.valid_from:%Y-%m-%d %H:%M} UTC {end}"

    per_use = []
    for use in USES:
        live = [(i, g) for i, g in grants if g.use == use and g.in_force(now)]
        deciding = next(((i, g) for i, g in live if g.decision == "notAllowed"), live[0] if live else None)
        per_use.append(
            {
                "use": use,
                "decision": deciding[1].decision if deciding else None,
                "window": window(deciding[1]) if deciding else "",
                "grant_id": deciding[0] if deciding else None,
            }
        )
    history = []
    for i, g in sorted(grants, key=lambda ig: -ig[0]):
        state = (
            "revoked"
            if g.revoked_at is not None and g.revoked_at <= now
            else "in force"
            if g.in_force(now)
            else "not yet in force"
            if now < g.valid_from
            else "ended"
        )
        history.append(
            {
                "id": i,
                "use": g.use,
                "decision": g.decision,
                "window": window(g),
                "state": state,
                "source": g.source,
                "revocable": g.revoked_at is None,
            }
        )
    return per_use, history


def _date(text: str, what: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{what} {text[:40]!r} is not a date: write YYYY-MM-DD") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _routes_contributor(router: APIRouter) -> None:
    from endcredits.consent import records as cs
    from endcredits.consent.rules import USES, Grant

    @router.get("/people/{person_id}")
    def person_page(request: Request, person_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]) -> Response:
        who = _who(request)
        _see_person(who, person_id)
        store = store_of(request)
        return render(
            request,
            who,
            "person.html",
            person=person_view(store, person_id),
            earnings=earnings(store, person_id),
            chart_width=CHART_WIDTH,
        )

    @router.get("/consent")
    def consent_page(request: Request, affected: Annotated[int | None, Query(ge=0, le=1_000_000)] = None) -> Response:
        who = _who(request)
        person_id = _contributor(who)
        with store_of(request).read() as conn:
            grants = cs.grants_for(conn, [], [str(person_id)])
        per_use, history = _grant_rows(grants, dt.datetime.now(dt.UTC))
        return render(
            request,
            who,
            "consent.html",
            per_use=per_use,
            history=history,
            uses=USES,
            affected=affected,
            today=dt.datetime.now(dt.UTC).date().isoformat(),
        )

    @router.post("/consent")
    def consent_grant(
        request: Request,
        csrf: CsrfField,
        use: Annotated[str, Form(max_length=64)],
        decision: Annotated[str, Form(pattern=r"^(allowed|notAllowed)$")],
        valid_from: Annotated[str, Form(max_length=10)] = "",
        valid_until: Annotated[str, Form(max_length=10)] = "",
        perpetual: Annotated[str, Form(max_length=8)] = "",
    ) -> Response:
        check_csrf(request, csrf)
        person_id = _contributor(_who(request))
        if bool(valid_until.strip()) == bool(perpetual):
            raise ValidationError(
                "give an end date, or tick 'in perpetuity' to say explicitly that it never ends (not both)"
            )
        start = _date(valid_from, "valid from") if valid_from.strip() else dt.datetime.now(dt.UTC)
        g = Grant(
            subject_kind="person",
            subject_id=str(person_id),
            use=use,
            decision=decision,  # type: ignore[arg-type]
            valid_from=start,
            valid_until=_date(valid_until, "valid until") if valid_until.strip() else None,
            perpetual=bool(perpetual),
            source="portal: the person's own choice",
        )
        with store_of(request).write() as conn:
            cs.add_grants(conn, [g])
        return RedirectResponse(f"{PORTAL}/consent?notice=granted", status_code=303)

    @router.post("/consent/{grant_id}/revoke")
    def consent_revoke(
        request: Request, csrf: CsrfField, grant_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]
    ) -> Response:
        from endcredits.manifest.records import manifests_using
        from endcredits.registry.records import works_of_person

        check_csrf(request, csrf)
        person_id = _contributor(_who(request))
        with store_of(request).write() as conn:
            if cs.grant_subject(conn, grant_id) != ("person", str(person_id)):
                raise NotFoundError(f"no consent grant {grant_id}")
            cs.revoke_grant(conn, grant_id, dt.datetime.now(dt.UTC))
            affected = {mid for w in works_of_person(conn, person_id) for mid, _model in manifests_using(conn, w)}
        return RedirectResponse(f"{PORTAL}/consent?notice=revoked&affected={len(affected)}", status_code=303)


# Unclaimed residuals -----------------------------------------------------------------------------
def _own_escrow(store: Store, person_id: int) -> list[dict[str, Any]]:
    """What escrow holds for the person and the names linked to them."""
    from endcredits.ledger import parse_account_key
    from endcredits.ledger.records import account_balances
    from endcredits.registry.records import names_of_person

    with store.read() as conn:
        holders = {f"person:{person_id}": "you (until you are verified)"}
        holders.update({f"name:{i}": name for i, name in names_of_person(conn, person_id)})
        rows = []
        for key, value in sorted(account_balances(conn, kind="escrow", holders=list(holders)).items()):
            if value > 0:
                _, holder, currency = parse_account_key(key)
                rows.append({"name": holders[str(holder)], "amount": f"{format_amount(value, currency)} {currency}"})
    return rows


def _routes_escrow(router: APIRouter) -> None:
    @router.get("/escrow")
    def escrow_page(request: Request, q: Annotated[str, Query(max_length=200)] = "") -> Response:
        return _escrow_page(request, _who(request), q)

    @router.post("/escrow/claim")
    def escrow_claim(request: Request, csrf: CsrfField) -> Response:
        from endcredits.ledger.escrow import claim_escrow

        check_csrf(request, csrf)
        who = _who(request)
        person_id = _contributor(who)
        r = claim_escrow(store_of(request), person_id)
        moved = ", ".join(f"{format_amount(v, c)} {c}" for c, v in sorted(r.moved_microunits.items()))
        notice = f"Released to your balance: {moved}." if moved else "Nothing was waiting in escrow for you."
        return _escrow_page(request, who, "", notice=notice)


def _escrow_page(request: Request, who: Principal, q: str, *, notice: str = "") -> HTMLResponse:
    from endcredits.registry.records import get_person

    store = store_of(request)
    with store.read() as conn:
        person = get_person(conn, who.person_id) if who.kind == "contributor" and who.person_id else None
    rows = [
        {"name": r.name, "amount": f"{format_amount(r.amount_microunits, r.currency)} {r.currency}", "holder": r.holder}
        for r in escrow_rows(store, who, q, limit=ESCROW_ROWS_MAX)
    ]
    own = _own_escrow(store, person.id) if person is not None else []
    return render(
        request, who, "escrow.html", q=q, rows=rows, own=own, person=person, notice=notice, holders=sees_holders(who)
    )


# Operators ---------------------------------------------------------------------------------------
def operator_overview(store: Store, who: Principal) -> dict[str, Any]:
    """Totals by account kind and currency (pool, payable, clearing, bank, escrow, fund, suspense), the largest
    escrow holdings, suspense accounts and payout batches."""
    from endcredits.ledger import parse_account_key
    from endcredits.ledger.records import account_balances, balance_totals
    from endcredits.payouts.records import payout_batches_list, payout_item_statuses

    suspense = []
    with store.read() as conn:
        totals = balance_totals(conn)
        for key, value in sorted(account_balances(conn, kind="suspense").items()):
            if value:
                currency = parse_account_key(key)[2]
                suspense.append({"account": key, "amount": f"{format_amount(value, currency)} {currency}"})
        batches = payout_batches_list(conn, limit=ESCROW_ROWS_MAX, newest_first=True)
        items = payout_item_statuses(conn, [b.batch_id for b in batches])
    kinds = ("pool", "payable", "clearing", "bank", "escrow", "fund", "suspense")
    money = [
        {
            "currency": currency,
            "conserved": t.conserved,
            "cells": {k: format_amount(getattr(t, f"{k}_microunits"), currency) for k in kinds},
        }
        for currency, t in totals.items()
    ]
    return {
        "kinds": kinds,
        "money": money,
        "suspense": suspense,
        "escrow": [
            {
                "holder": r.holder,
                "name": r.name,
                "amount": f"{format_amount(r.amount_microunits, r.currency)} {r.currency}",
            }
            for r in escrow_rows(store, who, "", limit=ESCROW_ROWS_MAX)
        ],
        "batches": [
            {
                "id": b.batch_id,
                "status": b.status,
                "items": b.items,
                "by_status": items.get(b.batch_id, {}),
                "total": f"{format_amount(b.total_microunits, b.currency)} {b.currency}",
                "created_at": b.created_at,
            }
            for b in batches
        ],
    }


def _routes_operator(router: APIRouter) -> None:
    @router.get("/operator")
    def operator_page(request: Request, person_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
        who = _who(request)
        if who.kind == "public":
            raise SignInNeeded
        need(who, "read")
        if person_id is not None:
            return RedirectResponse(f"{PORTAL}/people/{person_id}", status_code=303)
        return render(request, who, "operator.html", o=operator_overview(store_of(request), who))
