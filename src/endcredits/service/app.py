"""The REST API under ``/api/v1``: a thin edge that calls the stages' public functions.

``create_app(store)`` builds the FastAPI application around one open store. Every error endcredits
raises on purpose becomes ``{"error": {"code", "message"}}`` with the status from ``STATUS_BY_CODE``
(``service/errors.py``); who may do what is decided in ``service/access.py``:
authentication problems answer 401, a role without the right 403, and another person's data 404 (the
same answer as for a person who does not exist).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from importlib.metadata import version
from typing import Annotated, Any, Literal
from urllib.parse import quote

from alembic.runtime.migration import MigrationContext
from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool

from endcredits.audit import canonical_json
from endcredits.errors import BusyError, NotFoundError, ValidationError
from endcredits.ledger.accrue import ScoreSource
from endcredits.ledger.intake import CheckedBatch, Handover, checked_scored
from endcredits.limits import (
    USAGE_BATCHES_IN_FLIGHT_MAX,
    USAGE_BATCHES_QUEUED_MAX,
    USAGE_INTAKE_BATCHES_MAX,
    USAGE_INTAKE_BYTES_MAX,
    USAGE_INTAKE_WAIT_S_MAX,
    USAGE_RETRY_AFTER_S,
)
from endcredits.money import format_amount, parse_amount
from endcredits.royalties.usage import OutputIn
from endcredits.service import auth
from endcredits.service import models as m
from endcredits.service.access import (
    Ingest,
    Payouts,
    Reader,
    Registry,
    StoreDep,
    Who,
    contributor_self,
    need,
    see_guild,
    see_person,
)
from endcredits.service.auth import AuthError
from endcredits.service.errors import SafeJSONResponse, error_response, escape_json, install_error_handlers
from endcredits.service.gate import API, Gate
from endcredits.service.ingest import AccrualWorker, Admission, JsonUsage, summary_json
from endcredits.service.portal import mount_portal
from endcredits.service.throttle import challenge_budget, spend_challenge
from endcredits.service.views import escrow_rows, person_view
from endcredits.store.engine import Store, head_revision, normalize_time, parse_time

PersonPath = Annotated[int, Path(ge=1, le=2**31 - 1)]
IdPath = Annotated[str, Path(min_length=1, max_length=200)]


# The application ---------------------------------------------------------------------------------
def create_app(
    store: Store,
    *,
    usage_batches_in_flight_max: int = USAGE_BATCHES_IN_FLIGHT_MAX,
    usage_batches_queued_max: int = USAGE_BATCHES_QUEUED_MAX,
    usage_retry_after_s: int = USAGE_RETRY_AFTER_S,
    usage_intake_batches_max: int = USAGE_INTAKE_BATCHES_MAX,
    usage_intake_bytes_max: int = USAGE_INTAKE_BYTES_MAX,
) -> FastAPI:
    """The API around an open, migrated ``store`` (the caller owns and disposes it). At most
    ``usage_batches_in_flight_max`` usage batches are checked (or accrued, when the request waits) at once
    and ``usage_batches_queued_max`` more wait their turn; more answer 429. Batches acknowledged and not yet
    accrued are at most ``usage_intake_batches_max`` and ``usage_intake_bytes_max`` bytes (429 past them).
    Its accrual worker (``app.state.accrual_worker``) is started by ``serve``."""
    app = FastAPI(
        title="endcredits",
        version=version("endcredits"),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        default_response_class=SafeJSONResponse,
        responses=m.ERROR_RESPONSES,
        description="Residuals for the humans whose work trains AI. See docs/concepts/service.md.",
    )
    app.state.store = store
    app.state.challenge_budget = challenge_budget()
    app.state.usage_admission = Admission(usage_batches_in_flight_max, usage_batches_queued_max, usage_retry_after_s)
    app.state.accrue_json = json_usage(store)
    app.state.usage_handover = Handover()  # lines checked by a request, for this process's accrual worker
    app.state.accrual_worker = AccrualWorker(store, app.state.accrue_json, app.state.usage_handover)  # ``serve``
    app.state.usage_intake_max = (usage_intake_batches_max, usage_intake_bytes_max)
    install_error_handlers(app)
    app.add_middleware(Gate)
    _routes_system(app)
    _routes_auth(app)
    _routes_usage(app)
    _routes_outputs(app)
    _routes_registry(app)
    _routes_money(app)
    _routes_unclaimed(app)
    _routes_guilds(app)
    _routes_payouts(app)
    mount_portal(app)
    app.openapi = lambda: usage_openapi(app)  # type: ignore[method-assign]
    return app


def usage_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the JSON usage batch's schemas (the route reads its body itself)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schema = m.UsageBatchIn.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(schema.pop("$defs", {}))
        schemas["UsageBatchIn"] = schema
        app.openapi_schema = doc
    return app.openapi_schema


def _routes_system(app: FastAPI) -> None:
    @app.get(f"{API}/health", tags=["system"], responses={503: {"model": m.ErrorOut, "description": "Not ready"}})
    def health(store: StoreDep) -> JSONResponse:
        """200 when the store is open and at the code's schema revision; 503 otherwise."""
        try:
            with store.read() as conn:
                revision = MigrationContext.configure(conn).get_current_revision()
        except Exception as exc:  # noqa: BLE001 - any failure to read is "not ready"
            return error_response(503, "store", f"database not reachable: {type(exc).__name__}")
        if revision != head_revision():
            return error_response(
                503, "store", f"schema at {revision!r}, this endcredits needs {head_revision()!r}: run init"
            )
        return SafeJSONResponse({"status": "ok", "backend": store.backend, "schema": revision})


def _routes_auth(app: FastAPI) -> None:
    @app.post(f"{API}/auth/challenges", status_code=201, tags=["auth"], responses={429: m.THROTTLED})
    def challenge(body: m.ChallengeIn, request: Request, _who: Who, store: StoreDep) -> dict[str, Any]:
        """Public: a one-use nonce for a person to sign with the key of their credential's did:key. Every
        person id gets the same answer (only a person with a did:key credential can use it); each client
        address may ask for a few at once, then one every few seconds (429 with ``Retry-After``)."""
        spend_challenge(request)
        with store.write() as conn:
            c = auth.issue_challenge(conn, body.person_id)
        return {
            "challenge_id": c.id,
            "person_id": c.person_id,
            "nonce": c.nonce,
            "message": c.message,
            "expires_at": c.expires_at,
        }

    @app.post(f"{API}/auth/sessions/signed-challenge", status_code=201, tags=["auth"])
    def sign_in_signed(body: m.ChallengeSignInIn, _who: Who, store: StoreDep) -> dict[str, Any]:
        """Public: exchange a signed challenge for a session token (the challenge is then used up)."""
        try:
            signature = base64.urlsafe_b64decode(body.signature + "=" * (-len(body.signature) % 4))
        except (binascii.Error, ValueError):
            raise ValidationError("signature must be base64url") from None
        with store.write() as conn:
            s = auth.sign_in_with_challenge(conn, body.challenge_id, body.did, signature)
        return {"session_token": s.token, "person_id": s.person_id, "expires_at": s.expires_at}

    @app.post(f"{API}/auth/sessions/login-link", status_code=201, tags=["auth"])
    def sign_in_link(body: m.LinkSignInIn, _who: Who, store: StoreDep) -> dict[str, Any]:
        """Public: exchange a one-time login link token for a session token (the link is then used up)."""
        with store.write() as conn:
            s = auth.sign_in_with_link(conn, body.token)
        return {"session_token": s.token, "person_id": s.person_id, "expires_at": s.expires_at}

    @app.delete(f"{API}/auth/session", status_code=204, tags=["auth"])
    def sign_out(request: Request, who: Who, store: StoreDep) -> Response:
        """Contributor: close this session."""
        contributor_self(who)
        token = request.headers["authorization"].strip().partition(" ")[2].strip()
        with store.write() as conn:
            auth.close_session(conn, token)
        return Response(status_code=204)

    @app.post(f"{API}/login-links", status_code=201, tags=["auth"])
    def login_link(body: m.LoginLinkIn, who: Registry, store: StoreDep) -> dict[str, Any]:
        """Operator (registry): a one-time sign-in link for a person without a did:key credential."""
        with store.write() as conn:
            link = auth.create_login_link(conn, body.person_id, created_by=who.subject, ttl_s=body.ttl_s)
        return {"token": link.token, "person_id": link.person_id, "expires_at": link.expires_at}

    @app.get(f"{API}/me", tags=["auth"])
    def me(who: Who, store: StoreDep) -> dict[str, Any]:
        """Contributor: who this session belongs to, and their balances."""
        return person_view(store, contributor_self(who))


def _routes_outputs(app: FastAPI) -> None:
    @app.put(f"{API}/outputs/{{output_id}}/content", status_code=201, tags=["usage"], responses={200: m.AGAIN})
    async def put_output_content(
        output_id: IdPath, request: Request, who: Ingest, store: StoreDep, response: Response
    ) -> dict[str, Any]:
        """Operator (ingest): keep what the model generated for an output (an image, a text, a tune; any bytes),
        which statements and the portal then show beside the money it earned. Kept once: the same bytes again
        are 200 and change nothing; other bytes under the same output id are 409."""
        from endcredits.royalties.output_contents import output_contents_of, record_output_contents

        content = await request.body()
        if not content:
            raise ValidationError("empty body: send the bytes the model generated for this output")
        (status,) = await run_in_threadpool(record_output_contents, store, [(output_id, content)])
        if status == "exists":
            response.status_code = 200
        with store.read() as conn:
            kept = output_contents_of(conn, [output_id])[output_id]
        return {
            "output_id": output_id,
            "status": status,
            "content_sha256": kept.content_sha256,
            "media_type": kept.media_type,
            "size_bytes": kept.size_bytes,
        }


def _routes_usage(app: FastAPI) -> None:
    from endcredits.service.ingest import USAGE_BODY_DOC, ingest_usage, usage_status

    @app.post(
        f"{API}/usage-batches",
        status_code=202,
        tags=["usage"],
        responses={200: m.AGAIN, 201: m.ACCRUED_NOW, 202: m.ACKNOWLEDGED, 429: m.BUSY},
        openapi_extra={**USAGE_BODY_DOC, **m.PREFER_WAIT_DOC},
    )
    async def ingest(request: Request, who: Ingest, store: StoreDep, response: Response) -> dict[str, Any]:
        """Operator (ingest): accrue residuals for a batch of outputs, sent as JSON (small batches), an Arrow
        IPC stream or a Parquet file (usage schema version 1). Bad input is refused at once (nothing written);
        a batch that passes every check is answered 202 once it is durable, with its status URL (``Location``,
        ``GET /usage-batches/{id}``: queued, then accrued or refused), and accrued by the service in arrival
        order. ``Prefer: wait`` (or ``wait=N`` seconds) answers once it has accrued instead: 201 with its
        totals, or the error that refused it (202 if it is still queued after N seconds). Idempotent by
        ``batch_id``: the same batch again returns its state (200 once accrued) and changes nothing; other
        content under the same id is 409. When the service's backlog is full, 429 with ``Retry-After``."""
        wait_s = prefer_wait_s(request.headers.get("prefer", ""))
        state = request.app.state
        async with state.usage_admission.admit():
            body = await request.body()
            kind = request.headers.get("content-type", "")
            worker: AccrualWorker = state.accrual_worker
            default_s = state.usage_admission.retry_after_s
            try:
                status, answer = await run_in_threadpool(
                    ingest_usage,
                    store,
                    body,
                    kind,
                    state.accrue_json,
                    wait_s=wait_s,
                    retry_after_s=lambda queued: worker.retry_after_s(queued, default_s),  # only when full
                    intake_max=state.usage_intake_max,
                    handover=state.usage_handover,
                )
            except BusyError as exc:
                raise AuthError(429, exc.code, exc.message, retry_after_s=exc.retry_after_s) from None
        response.status_code = status
        response.headers["Location"] = f"{API}/usage-batches/{quote(answer['batch_id'], safe='')}"
        if wait_s > 0 and status != 202:
            response.headers["Preference-Applied"] = "wait"
        return answer

    @app.get(f"{API}/usage-batches/{{batch_id}}", tags=["usage"])
    def usage_batch(batch_id: IdPath, who: Who, store: StoreDep) -> dict[str, Any]:
        """Operator (ingest or read), auditor: whether a batch landed. ``state`` is ``queued`` (acknowledged,
        not yet accrued), ``accrued`` (with the answer the accrual gave: status, totals and the SHA-256 of its
        request, ``request_sha256``) or ``refused`` (with the ``error`` that refused it: send it again fixed).
        A batch committed whose answer was never kept (the service stopped in between) answers from the
        ledger's record of it: status ``exists``, as sending it again would, and ``request_sha256`` null.
        404 only when no batch came under the id."""
        if not who.can("ingest"):
            need(who, "read")
        return usage_status(store, batch_id)

    @app.post(f"{API}/attributions", tags=["usage"], responses={409: m.NO_CHECKPOINT})
    def attribute(body: m.AttributionIn, who: Ingest, store: StoreDep) -> Any:
        """Operator (ingest): score outputs (texts, or images in base64) against every work of a manifest with
        the model's checkpoint in the data directory (``DATA/models/MODEL.pt`` for a character LM, the folder
        ``DATA/models/MODEL/`` for other kinds); returns the recorded run, each output's scores per work and
        its top works."""
        from endcredits.service.attribute import attribution_view

        return attribution_view(store, body)


def prefer_wait_s(prefer: str) -> float:
    """The seconds a ``Prefer`` header asks a usage batch's answer to wait for its accrual (RFC 7240
    ``wait=N``; ``wait`` alone: the most), at most ``USAGE_INTAKE_WAIT_S_MAX``; 0 when it asks nothing."""
    for preference in prefer.split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not value:
            return float(USAGE_INTAKE_WAIT_S_MAX)
        if not value.isdigit():
            raise ValidationError(f"Prefer: wait={value[:20]!r} is not a whole number of seconds")
        return float(min(int(value), USAGE_INTAKE_WAIT_S_MAX))
    return 0.0


def json_usage(store: Store) -> JsonUsage:
    """How ``store``'s service checks and accrues a JSON usage batch (``service.ingest``)."""
    return JsonUsage(lambda body: _checked_batch(store, body), lambda body: _accrue_batch(store, body))


def _checked_batch(store: Store, body: m.UsageBatchIn) -> CheckedBatch:
    outs, scores, source, per = _scored_args(body)
    return checked_scored(
        store, outs, scores, source=source, per=per, agreement_id=body.agreement_id, batch_id=body.batch_id,
        manifest_id=body.manifest_id,
    )  # fmt: skip


def _accrue_batch(store: Store, body: m.UsageBatchIn) -> dict[str, Any]:
    from endcredits.ledger.accrue import accrue_scored

    outs, scores, source, per = _scored_args(body)
    s = accrue_scored(
        store, outs, scores, source=source, per=per, agreement_id=body.agreement_id, batch_id=body.batch_id,
        manifest_id=body.manifest_id,
    )  # fmt: skip
    return summary_json(s)


def _scored_args(
    body: m.UsageBatchIn,
) -> tuple[list[OutputIn], dict[str, dict[str, float]] | None, ScoreSource, Literal["work", "payee"] | None]:
    """A JSON usage batch as ``accrue_scored`` takes it: its outputs, their scores, their source and ``per``."""

    if (body.attribution_run_id is None) == (body.external is None):
        raise ValidationError(
            "give attribution_run_id (a recorded attribution run), or the outputs' scores with "
            'external: {"reason": ...}'
        )
    outs: list[OutputIn] = []
    seen: set[str] = set()
    for o in body.outputs:
        if o.output_id in seen:
            raise ValidationError(f"output {o.output_id} appears twice in batch {body.batch_id}")
        seen.add(o.output_id)
        outs.append(
            OutputIn(
                o.output_id, o.model_id, parse_amount(o.revenue, o.currency), o.currency, normalize_time(o.occurred_at)
            )
        )
    if body.attribution_run_id is not None:
        if any(o.work_scores is not None or o.payee_scores is not None for o in body.outputs):
            raise ValidationError(
                f"attribution run {body.attribution_run_id} brings its own scores: send the outputs without scores"
            )
        return outs, None, ScoreSource.run(body.attribution_run_id), None
    else:
        per, scores = _external_scores(body)
        source = ScoreSource.external(body.external.reason if body.external is not None else "")
    return outs, scores, source, per


def _external_scores(body: m.UsageBatchIn) -> tuple[Literal["work", "payee"], dict[str, dict[str, float]]]:
    """Per work or per payee, and each output's own scores (every output gives them the same way)."""
    scores: dict[str, dict[str, float]] = {}
    per: Literal["work", "payee"] | None = None
    for o in body.outputs:
        if (o.work_scores is None) == (o.payee_scores is None):
            raise ValidationError(f"output {o.output_id}: give exactly one of work_scores or payee_scores")
        kind: Literal["work", "payee"] = "work" if o.work_scores is not None else "payee"
        if per is not None and kind != per:
            raise ValidationError("one batch gives every output's attribution per work, or every one per payee")
        per = kind
        scores[o.output_id] = dict(o.work_scores if o.work_scores is not None else o.payee_scores or {})
    return per or "work", scores


def _routes_registry(app: FastAPI) -> None:
    from endcredits.registry import records as reg

    @app.post(f"{API}/people", status_code=201, tags=["registry"])
    def add_person(body: m.PersonIn, who: Registry, store: StoreDep) -> dict[str, Any]:
        """Operator (registry): register a person by handle (a pseudonym is fine)."""
        from endcredits.payouts.iban import normalize_bic, normalize_iban

        iban = normalize_iban(body.iban) if body.iban else None
        bic = normalize_bic(body.bic) if body.bic else None
        with store.write() as conn:
            pid = reg.add_person(conn, body.handle, iban=iban, bic=bic)
            handle = reg.get_person(conn, pid).handle
        return {"person_id": pid, "handle": handle}

    @app.get(f"{API}/people/{{person_id}}", tags=["registry"])
    def get_person(person_id: PersonPath, who: Who, store: StoreDep) -> dict[str, Any]:
        """Operator (read), auditor, or the person themselves: a person and their balances."""
        see_person(who, person_id)
        return person_view(store, person_id)

    @app.put(f"{API}/blobs/{{sha256}}", status_code=201, tags=["registry"])
    async def put_blob(
        sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")], request: Request, who: Registry, store: StoreDep
    ) -> dict[str, Any]:
        """Operator (registry): upload a work's bytes (any content type); the path names their SHA-256."""
        from endcredits.store.blobs import put_blob as store_blob

        content = await request.body()
        if not content:
            raise ValidationError("empty body: send the work's bytes")
        if hashlib.sha256(content).hexdigest() != sha256:
            raise ValidationError(f"the body hashes to {hashlib.sha256(content).hexdigest()}, not {sha256[:64]!r}")
        await run_in_threadpool(store_blob, store.data_dir, content)
        return {"sha256": sha256, "size_bytes": len(content)}

    @app.post(f"{API}/works", status_code=201, tags=["registry"], responses={200: m.AGAIN})
    def add_work(body: m.WorkIn, who: Registry, store: StoreDep, response: Response) -> dict[str, Any]:
        """Operator (registry): register a work from inline base64 content, or from a blob uploaded before by
        its SHA-256. The same content again is not a new work (200). A new work whose fingerprint matches a
        registered one is linked to it (``canonical_work_id``): credits merged, never paid twice."""
        from endcredits.store.blobs import get_blob
        from endcredits.store.blobs import put_blob as store_blob

        if (body.content_base64 is None) == (body.sha256 is None):
            raise ValidationError(
                "give exactly one of content_base64 or sha256 (of a blob uploaded with PUT /api/v1/blobs/SHA256)"
            )
        if body.content_base64 is not None:
            try:
                content = base64.b64decode(body.content_base64, validate=True)
            except (binascii.Error, ValueError):
                raise ValidationError("content_base64 is not base64") from None
        else:
            content = get_blob(store.data_dir, str(body.sha256))
        store_blob(store.data_dir, content)
        from endcredits.registry.fingerprints import register_works

        with store.write() as conn:
            existed = bool(reg.existing_work_ids(conn, [hashlib.sha256(content).hexdigest()]))
            work = reg.WorkIn(content, body.title, body.kind, body.source, body.rights_holder)
            (r,) = register_works(conn, [work], data_dir=store.data_dir)  # near-duplicates linked as `works add` does
        if existed:
            response.status_code = 200
        return {"work_id": r.work_id, "created": not existed, "canonical_work_id": r.canonical_work_id}

    @app.get(f"{API}/works/{{work_id}}", tags=["registry"])
    def get_work(work_id: IdPath, who: Reader, store: StoreDep) -> dict[str, Any]:
        """Operator (read), auditor: a work's metadata."""
        with store.read() as conn:
            row = reg.get_work(conn, work_id)
        return {
            "work_id": row.id,
            "title": row.title,
            "kind": row.kind,
            "source": row.source,
            "size_bytes": row.size_bytes,
            "created_at": row.created_at,
        }

    @app.post(f"{API}/works/{{work_id}}/credits", status_code=201, tags=["registry"])
    def add_credit(work_id: IdPath, body: m.CreditIn, who: Registry, store: StoreDep) -> dict[str, Any]:
        """Operator (registry): credit a person (``payee``) or a not-yet-claimed name on a work, in a role."""
        if (body.payee is None) == (body.name is None):
            raise ValidationError("give exactly one of payee (person:ID or name:ID) or name")
        with store.write() as conn:
            payee = body.payee or f"name:{reg.name_ids(conn, [str(body.name)])[reg.clean_text(str(body.name), 'name')]}"
            added = reg.add_credits(conn, [reg.CreditIn(work_id, payee, body.role, body.weight)])
        return {"work_id": work_id, "payee": payee, "role": body.role, "added": added}

    @app.get(f"{API}/works/{{work_id}}/credits", tags=["registry"])
    def list_credits(work_id: IdPath, who: Reader, store: StoreDep) -> dict[str, Any]:
        """Operator (read), auditor: credits on a work, its rights holders and what it derives from."""
        with store.read() as conn:
            reg.get_work(conn, work_id)
            rows = reg.graph_rows(conn, [work_id])
        return {
            "credits": [{"work_id": w, "payee": p, "role": r, "weight": wt} for w, p, r, wt in rows.credits],
            "rights_holders": [{"work_id": w, "payee": p} for w, p in rows.rights_holders],
            "lineage": [
                {"work_id": w, "parent": p, "share": str(s) if s is not None else None} for w, p, s in rows.parents
            ],
        }

    _routes_consent(app)


def _grant_view(grant_id: int, g: Any) -> dict[str, Any]:
    return {
        "grant_id": grant_id,
        "subject": f"{g.subject_kind}:{g.subject_id}",
        "use": g.use,
        "decision": g.decision,
        "valid_from": g.valid_from.isoformat(),
        "valid_until": g.valid_until.isoformat() if g.valid_until else None,
        "perpetual": g.perpetual,
        "revoked_at": g.revoked_at.isoformat() if g.revoked_at else None,
        "source": g.source,
    }


def _routes_consent(app: FastAPI) -> None:
    from endcredits.consent import records as cs
    from endcredits.consent.rules import Grant

    @app.post(f"{API}/consent-grants", status_code=201, tags=["consent"])
    def grant(body: m.ConsentIn, who: Who, store: StoreDep) -> dict[str, Any]:
        """Operator (registry): a consent decision for a work or a person. A contributor: for themselves."""
        if who.kind == "contributor":
            if body.work_id is not None:
                raise AuthError(403, "forbidden", "a contributor grants consent only for themselves, not for works")
            if body.person_id != who.person_id:
                raise NotFoundError(f"no person {body.person_id}")
        else:
            need(who, "registry")
        if (body.work_id is None) == (body.person_id is None):
            raise ValidationError("give exactly one of work_id or person_id")
        if body.valid_until is None and not body.perpetual:
            raise ValidationError("give valid_until, or perpetual: true to say explicitly that it never ends")
        g = Grant(
            subject_kind="work" if body.work_id else "person",
            subject_id=body.work_id or str(body.person_id),
            use=body.use,
            decision=body.decision,
            valid_from=parse_time(body.valid_from) if body.valid_from else dt.datetime.now(dt.UTC),
            valid_until=parse_time(body.valid_until) if body.valid_until else None,
            perpetual=body.perpetual,
            source=body.source,
        )
        with store.write() as conn:
            (gid,) = cs.add_grants(conn, [g])
        return _grant_view(gid, g)

    @app.post(f"{API}/consent-grants/{{grant_id}}/revoke", tags=["consent"])
    def revoke(grant_id: PersonPath, body: m.RevokeIn, who: Who, store: StoreDep) -> dict[str, Any]:
        """Operator (registry), or a contributor for a grant on themselves: revoke it, and list every
        manifest that already used the works."""
        from endcredits.manifest.records import manifests_using
        from endcredits.registry.records import works_of_person

        if who.kind != "contributor":
            need(who, "registry")
        with store.write() as conn:
            if who.kind == "contributor" and cs.grant_subject(conn, grant_id) != ("person", str(who.person_id)):
                raise NotFoundError(f"no consent grant {grant_id}")
            g = cs.revoke_grant(conn, grant_id, parse_time(body.at) if body.at else dt.datetime.now(dt.UTC))
            work_ids = [g.subject_id] if g.subject_kind == "work" else works_of_person(conn, int(g.subject_id))
            affected = sorted({(mid, model, w) for w in work_ids for mid, model in manifests_using(conn, w)})
        return {
            **_grant_view(grant_id, g),
            "affected": [{"manifest_id": a, "model_id": b, "work_id": c} for a, b, c in affected],
        }

    @app.get(f"{API}/consent-grants", tags=["consent"])
    def list_grants(
        who: Who,
        store: StoreDep,
        work_id: Annotated[str | None, Query(max_length=64)] = None,
        person_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    ) -> dict[str, Any]:
        """Operator (read), auditor: grants on a work or a person. A contributor: their own."""
        if who.kind == "contributor":
            if work_id is not None or (person_id is not None and person_id != who.person_id):
                raise NotFoundError("a contributor lists only the consent on themselves")
            person_id = who.person_id
        else:
            need(who, "read")
        if work_id is None and person_id is None:
            raise ValidationError("give work_id or person_id")
        with store.read() as conn:
            found = cs.grants_for(conn, [work_id] if work_id else [], [str(person_id)] if person_id is not None else [])
        return {"grants": [_grant_view(i, g) for i, g in found]}


def _routes_money(app: FastAPI) -> None:
    @app.get(
        f"{API}/people/{{person_id}}/statements/{{period}}",
        tags=["statements"],
        responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
    )
    def statement(
        person_id: PersonPath,
        period: Annotated[str, Path(max_length=7)],
        request: Request,
        who: Who,
        store: StoreDep,
        currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")],
        format: Annotated[str | None, Query(pattern=r"^(json|csv)$")] = None,
    ) -> Response:
        """Operator (read), auditor, or the person themselves: the statement for a period (YYYY-MM), every
        line behind every microunit. CSV with ``?format=csv`` or ``Accept: text/csv``."""
        from endcredits.payouts.statements import build_statement

        see_person(who, person_id)
        st = build_statement(store, person_id, period, currency)
        as_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
        if as_csv:
            return PlainTextResponse(st.to_csv(), media_type="text/csv; charset=utf-8")
        return Response(escape_json(st.to_json()), media_type="application/json")

    @app.get(f"{API}/escrow", tags=["escrow"])
    def escrow(
        who: Who,
        store: StoreDep,
        q: Annotated[str, Query(max_length=200)] = "",
        limit: Annotated[int, Query(ge=1, le=1_000)] = 50,
    ) -> dict[str, Any]:
        """Anyone: unclaimed residuals whose name contains ``q``, largest first: names and amounts. Operators
        with scope read or payouts, and auditors, also see the holder id (``name:ID``) they link or claim."""
        rows = []
        for r in escrow_rows(store, who, q, limit=limit):
            row: dict[str, Any] = {
                "name": r.name,
                "currency": r.currency,
                "amount": format_amount(r.amount_microunits, r.currency),
                "amount_microunits": r.amount_microunits,
            }
            if r.holder is not None:
                row["holder"] = r.holder
            rows.append(row)
        return {"escrow": rows}

    @app.post(f"{API}/escrow/claims", tags=["escrow"])
    def claim(body: m.ClaimIn, who: Who, store: StoreDep) -> dict[str, Any]:
        """A contributor: release what escrow holds for themselves and the names already linked to them.
        Operator (payouts): link a credited name to a verified person and release their escrow."""
        from endcredits.ledger.escrow import claim_escrow

        if who.kind == "contributor":
            if body.person_id is not None and body.person_id != who.person_id:
                raise NotFoundError(f"no person {body.person_id}")
            if body.name_id is not None:
                raise AuthError(
                    403,
                    "forbidden",
                    "claiming a credited name needs the operator's review: ask them to "
                    "link it (an operator key with scope payouts)",
                )
            person_id = contributor_self(who)
        else:
            need(who, "payouts")
            if body.person_id is None:
                raise ValidationError("give person_id: the verified person to release escrow to")
            person_id = body.person_id
        r = claim_escrow(store, person_id, name_id=body.name_id)
        return {
            "person_id": person_id,
            "released": {c: format_amount(v, c) for c, v in r.moved_microunits.items()},
            "released_microunits": r.moved_microunits,
            "transfers": list(r.transfers),
        }


def _routes_unclaimed(app: FastAPI) -> None:
    @app.get(
        f"{API}/unclaimed",
        tags=["escrow"],
        responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
    )
    def unclaimed(
        who: Who,  # anyone; a credential given is still checked
        store: StoreDep,
        q: Annotated[str, Query(max_length=200)] = "",
        fund: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        format: Annotated[str | None, Query(pattern=r"^(json|csv)$")] = None,
    ) -> Response:
        """Anyone: the published list of unclaimed residuals, largest first: names and amounts, in escrow since
        when and due when, or moved to a fund past the escrow period (still claimable). ``fund`` gives one
        fund's list (a guild's); ``format=csv`` downloads it. No ids, nothing private."""
        from endcredits.ledger.expiry import published_unclaimed, unclaimed_csv

        with store.read() as conn:
            rows = published_unclaimed(conn, q, fund=fund, limit=limit)
        if format == "csv":
            return PlainTextResponse(unclaimed_csv(rows), media_type="text/csv; charset=utf-8")
        body = canonical_json({"unclaimed": [r.to_json() for r in rows]})
        return Response(escape_json(body), media_type="application/json")


def _routes_guilds(app: FastAPI) -> None:
    @app.get(f"{API}/guilds/{{issuer:path}}/view", tags=["guilds"])
    def guild_view_route(issuer: str, who: Who, store: StoreDep) -> Response:
        """A guild key for ``issuer``, operator (read), auditor: what the trusted guild's members accrued, may
        be paid, and hold in escrow and funds, per currency, and per use how many allow or refuse it.
        Aggregates only; the sums are withheld below the member minimum. ``issuer`` as its credentials name
        it (percent-encode an ``https`` id)."""
        from endcredits.ledger.guilds import guild_view

        see_guild(who, issuer)
        with store.read() as conn:
            view = guild_view(conn, issuer, dt.datetime.now(dt.UTC))
        return Response(escape_json(canonical_json(view.to_json())), media_type="application/json")

    @app.get(f"{API}/guilds/{{issuer:path}}/unclaimed", tags=["guilds"])
    def guild_unclaimed_route(
        issuer: str,
        who: Who,
        store: StoreDep,
        q: Annotated[str, Query(max_length=200)] = "",
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> Response:
        """A guild key for ``issuer``, operator (read), auditor: the published unclaimed lines held for the
        guild's members, largest first, names and amounts only, so it can help them claim."""
        from endcredits.ledger.guilds import guild_unclaimed

        see_guild(who, issuer)
        with store.read() as conn:
            rows = guild_unclaimed(conn, issuer, q, limit=limit)
        body = canonical_json({"issuer": issuer, "unclaimed": [r.to_json() for r in rows]})
        return Response(escape_json(body), media_type="application/json")


def _routes_payouts(app: FastAPI) -> None:
    @app.post(f"{API}/payout-batches", status_code=201, tags=["payouts"], responses={200: m.AGAIN})
    def create_payouts(body: m.PayoutBatchIn, who: Payouts, store: StoreDep, response: Response) -> dict[str, Any]:
        """Operator (payouts): pay every verified person at or above the agreement's threshold (pain.001 +
        CSV, pending until statuses return). Idempotent by ``batch_id``."""
        from endcredits.payouts.batches import pay_out
        from endcredits.payouts.files import Debtor

        try:
            when = dt.date.fromisoformat(body.execution_date) if body.execution_date else None
        except ValueError:
            raise ValidationError(f"execution_date {body.execution_date!r} is not a date: give YYYY-MM-DD") from None
        r = pay_out(
            store,
            batch_id=body.batch_id,
            agreement_id=body.agreement_id,
            debtor=Debtor(body.debtor.name, body.debtor.iban, body.debtor.bic),
            execution_date=when,
            dry_run=body.dry_run,
        )
        if r.status != "created":
            response.status_code = 200
        return {**r.to_json(), "total": format_amount(r.total_microunits, r.currency)}

    @app.get(f"{API}/payout-batches", tags=["payouts"])
    def list_payouts(who: Reader, store: StoreDep) -> dict[str, Any]:
        """Operator (read), auditor: payout batches and their status."""
        from endcredits.limits import LIST_ROWS_MAX
        from endcredits.payouts.records import payout_batches_list

        with store.read() as conn:
            rows = payout_batches_list(conn, limit=LIST_ROWS_MAX)
        return {
            "batches": [
                {
                    "batch_id": r.batch_id,
                    "status": r.status,
                    "items": r.items,
                    "currency": r.currency,
                    "total": format_amount(r.total_microunits, r.currency),
                    "total_microunits": r.total_microunits,
                    "created_at": r.created_at,
                }
                for r in rows
            ]
        }

    @app.post(
        f"{API}/payout-batches/{{batch_id}}/statuses",
        tags=["payouts"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": m.PayoutStatusIn.model_json_schema()},
                    "application/xml": {"schema": {"type": "string", "description": "pain.002"}},
                },
            }
        },
    )
    async def payout_status(batch_id: IdPath, request: Request, who: Payouts, store: StoreDep) -> dict[str, Any]:
        """Operator (payouts): apply the bank's statuses, as a pain.002 document (``application/xml``) or
        JSON ``{"statuses": {END_TO_END_ID: "settled" | "failed"}}``."""
        from endcredits.payouts.batches import apply_payout_status
        from endcredits.payouts.pain002 import parse_pain002

        raw = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        statuses: dict[str, str]
        if ctype in ("application/xml", "text/xml"):
            statuses = dict(await run_in_threadpool(parse_pain002, raw))
        elif ctype == "application/json":
            try:
                parsed = m.PayoutStatusIn.model_validate_json(raw)
            except PydanticValidationError as exc:
                where = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
                )
                raise ValidationError(
                    f'statuses body: {where}; send {{"statuses": {{"END_TO_END_ID": "settled"}}}}'
                ) from None
            statuses = dict(parsed.statuses)
        else:
            raise ValidationError("send statuses as application/xml (pain.002) or application/json")
        r = await run_in_threadpool(apply_payout_status, store, batch_id, statuses)
        return {
            "batch_id": r.batch_id,
            "settled": r.settled,
            "failed": r.failed,
            "unchanged": r.unchanged,
            "batch_status": r.batch_status,
        }
