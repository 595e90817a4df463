"""How the service answers an error: one status per ``EndcreditsError`` code, one JSON body, one message
for invalid requests. The API renders them as JSON, the portal as a page with the same status."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from endcredits.errors import EndcreditsError
from endcredits.service.auth import AuthError

log = logging.getLogger("endcredits.service")

STATUS_BY_CODE: dict[str, int] = {
    "validation": 422,
    "not_found": 404,
    "conflict": 409,
    "consent": 409,
    "manifest_mismatch": 422,
    "ledger": 409,
    "limit_exceeded": 413,
    "busy": 429,
    "store": 503,
    "evidence": 500,
    "credential": 422,
    "invariant": 500,
}
"""The one place an ``EndcreditsError`` code becomes an HTTP status (anything else: 400)."""


def status_of(exc: EndcreditsError) -> int:
    return STATUS_BY_CODE.get(exc.code, 400)


def escape_json(text: str) -> str:
    """JSON text with ``<``, ``>`` and ``&`` written as ``\\u`` escapes: the same value to any JSON parser,
    but never markup if a browser or a log viewer renders the body as HTML."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class SafeJSONResponse(JSONResponse):
    """Every JSON body of the API: UTF-8, compact, markup characters escaped (see ``escape_json``)."""

    def render(self, content: Any) -> bytes:
        return escape_json(json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))).encode()


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """``{"error": {"code", "message"}}`` with ``status``."""
    return SafeJSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def auth_error_response(exc: AuthError) -> JSONResponse:
    """An ``AuthError`` as JSON: a 401 says how to authenticate, a 429 when to come back."""
    response = error_response(exc.status, exc.code, str(exc))
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def validation_message(exc: RequestValidationError) -> str:
    """The first five problems of an invalid request, one line: ``where: what; ...; and N more``."""
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def install_error_handlers(app: FastAPI) -> None:
    """Every error the API raises on purpose answers ``error_response``; an integrity error is 409."""

    @app.exception_handler(EndcreditsError)
    async def _endcredits(_request: Request, exc: EndcreditsError) -> JSONResponse:
        return error_response(status_of(exc), exc.code, exc.message)

    @app.exception_handler(AuthError)
    async def _auth(_request: Request, exc: AuthError) -> JSONResponse:
        return auth_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation", validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 501: "not_available"}.get(exc.status_code, "http")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity error: %s", exc.orig)
        return error_response(
            409, "conflict", "the write conflicts with a concurrent one or a unique value: retry or change it"
        )
