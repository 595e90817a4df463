"""Request bodies of the API. Every model forbids unknown fields, takes no type coercion (``"1"`` is not
an integer), and bounds every string and list. Amounts are exact decimal text, never JSON numbers."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from endcredits.attribution.settings import (
    EXCLUDE_PATTERN_CHARS_MAX,
    EXCLUDE_PATTERNS_MAX,
    FEATURES,
    SCORING,
    AttributionSettings,
    SettingError,
)
from endcredits.errors import ValidationError
from endcredits.limits import EXTERNAL_REASON_CHARS_MAX, ID_LENGTH_MAX, NAME_LENGTH_MAX, TITLE_LENGTH_MAX, WEIGHT_MAX

PUBLIC_BODY_BYTES_MAX = 16 << 10
"""Largest request body without credentials (16 KiB): a challenge, a sign-in, a portal form."""

BODY_BYTES_MAX = 1 << 20
"""Largest request body of an authenticated caller in general (1 MiB)."""

USAGE_BODY_BYTES_MAX = 32 << 20
"""Largest usage batch, output content or blob upload by a key allowed to send them (32 MiB); larger
batches are split by the client."""

OUTPUTS_PER_REQUEST_MAX = 10_000
ATTRIBUTIONS_PER_OUTPUT_MAX = 10_000
ATTRIBUTION_TEXTS_MAX = 100
ATTRIBUTION_TEXT_CHARS_MAX = 10_000
STATUSES_PER_REQUEST_MAX = 100_000
INLINE_CONTENT_CHARS_MAX = 700_000
"""Base64 of at most ~512 KiB of work content inline; larger works go through PUT /api/v1/blobs/{sha256}."""

Id = Annotated[str, Field(min_length=1, max_length=ID_LENGTH_MAX)]
Name = Annotated[str, Field(min_length=1, max_length=NAME_LENGTH_MAX)]
Title = Annotated[str, Field(min_length=1, max_length=TITLE_LENGTH_MAX)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
DecimalText = Annotated[str, Field(min_length=1, max_length=48, pattern=r"^-?[0-9]+(\.[0-9]+)?$")]
TimeText = Annotated[str, Field(min_length=10, max_length=40)]
PersonId = Annotated[int, Field(ge=1, le=2**31 - 1)]
Payee = Annotated[str, Field(pattern=r"^(person|name):[1-9][0-9]{0,9}$")]
Role = Annotated[str, Field(min_length=3, max_length=129)]
Score = Annotated[float, Field(allow_inf_nan=False)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class OutputIn(Body):
    output_id: Id
    model_id: Id
    revenue: DecimalText = Field(description='Exact decimal text in major units, such as "12.34"')
    currency: Currency
    occurred_at: TimeText = Field(description="ISO-8601 with a timezone, such as 2026-11-21T12:00:00Z")
    work_scores: dict[Sha256, Score] | None = Field(default=None, max_length=ATTRIBUTIONS_PER_OUTPUT_MAX)
    payee_scores: dict[Payee, Score] | None = Field(default=None, max_length=ATTRIBUTIONS_PER_OUTPUT_MAX)


class ExternalIn(Body):
    reason: Annotated[str, Field(min_length=1, max_length=EXTERNAL_REASON_CHARS_MAX)] = Field(
        description="Why these scores are not from a recorded attribution run; every statement line shows it"
    )


class UsageBatchIn(Body):
    """A batch accrues the scores of a recorded attribution run (``attribution_run_id``; the outputs carry no
    scores), or the outputs' own scores marked ``external`` with a reason."""

    batch_id: Annotated[str, Field(min_length=1, max_length=ID_LENGTH_MAX - 20, pattern=r"^[^/]+$")]
    agreement_id: Id
    manifest_id: Id | None = Field(default=None, description="Default: the run's, or the model's newest manifest")
    attribution_run_id: Id | None = Field(
        default=None, description="A recorded attribution run (POST /api/v1/attributions) whose scores to accrue"
    )
    external: ExternalIn | None = Field(default=None, description="Marks the outputs' own scores as external")
    outputs: list[OutputIn] = Field(min_length=1, max_length=OUTPUTS_PER_REQUEST_MAX)


class PersonIn(Body):
    handle: Name
    iban: Annotated[str, Field(min_length=5, max_length=42)] | None = None
    bic: Annotated[str, Field(min_length=8, max_length=11)] | None = None


class WorkIn(Body):
    title: Title
    kind: Annotated[str, Field(min_length=1, max_length=32)] = "text"
    source: Title | None = None
    rights_holder: Payee | None = None
    content_base64: Annotated[str, Field(min_length=4, max_length=INLINE_CONTENT_CHARS_MAX)] | None = None
    sha256: Sha256 | None = Field(default=None, description="A blob uploaded before with PUT /api/v1/blobs/{sha256}")


class CreditIn(Body):
    role: Role
    payee: Payee | None = None
    name: Name | None = Field(default=None, description="A credited name nobody has claimed yet")
    weight: Annotated[int, Field(ge=1, le=WEIGHT_MAX)] = 1


class ConsentIn(Body):
    use: Annotated[str, Field(min_length=1, max_length=64)]
    decision: Literal["allowed", "notAllowed"]
    source: Annotated[str, Field(min_length=1, max_length=1_000)]
    work_id: Sha256 | None = None
    person_id: PersonId | None = None
    valid_from: TimeText | None = None
    valid_until: TimeText | None = None
    perpetual: bool = False


class RevokeIn(Body):
    at: TimeText | None = None


class Debtor(Body):
    name: Name
    iban: Annotated[str, Field(min_length=5, max_length=42)]
    bic: Annotated[str, Field(min_length=8, max_length=11)]


class PayoutBatchIn(Body):
    batch_id: Annotated[str, Field(min_length=1, max_length=24, pattern=r"^[A-Za-z0-9-]+$")]
    agreement_id: Id
    debtor: Debtor
    execution_date: Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")] | None = None
    dry_run: bool = False


class PayoutStatusIn(Body):
    statuses: dict[Annotated[str, Field(min_length=1, max_length=35)], Literal["settled", "failed"]] = Field(
        min_length=1, max_length=STATUSES_PER_REQUEST_MAX
    )


class ClaimIn(Body):
    person_id: PersonId | None = Field(default=None, description="Operators only: the person to release escrow to")
    name_id: PersonId | None = Field(default=None, description="Operators only: a credited name the person claims")


class LoginLinkIn(Body):
    person_id: PersonId
    ttl_s: Annotated[int, Field(ge=60, le=30 * 86_400)] = 86_400


class ChallengeIn(Body):
    person_id: PersonId


class ChallengeSignInIn(Body):
    challenge_id: Annotated[str, Field(min_length=1, max_length=64)]
    did: Annotated[str, Field(min_length=9, max_length=200, pattern=r"^did:key:z[1-9A-HJ-NP-Za-km-z]+$")]
    signature: Annotated[str, Field(min_length=1, max_length=200, description="base64url of the Ed25519 signature")]


class LinkSignInIn(Body):
    token: Annotated[str, Field(min_length=1, max_length=128)]


class ModelOutput(Body):
    """One output to attribute: a text (language models) or an image file in base64 (UNets)."""

    output_id: Id
    text: Annotated[str | None, Field(min_length=1, max_length=ATTRIBUTION_TEXT_CHARS_MAX)] = None
    image_base64: Annotated[
        str | None, Field(min_length=4, max_length=BODY_BYTES_MAX, description="An image file (PNG, JPEG), base64")
    ] = None

    @model_validator(mode="after")
    def _one_content(self) -> ModelOutput:
        if (self.text is None) == (self.image_base64 is None):
            raise PydanticCustomError("output", "an output has a text or an image_base64, exactly one")
        return self

    def content(self) -> bytes:
        """The output's bytes: the text in UTF-8, or the decoded image file."""
        if self.text is not None:
            return self.text.encode("utf-8")
        try:
            return base64.b64decode(self.image_base64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(f"output {self.output_id}: image_base64 is not base64") from None


def _about(name: str) -> str:
    return AttributionSettings.help(name)


_S = AttributionSettings


class AttributionIn(Body):
    """Outputs to attribute, and the attribution settings (each checked by ``AttributionSettings``)."""

    manifest_id: Id
    model_kind: str = Field(
        default="charlm",
        max_length=ID_LENGTH_MAX,
        description="charlm, hf-causal-lm, diffusers-unet, or a module:function kind the operator allowed when "
        "starting the service (ENDCREDITS_MODEL_KINDS); the checkpoint is DATA/models/MODEL.pt (charlm) or the "
        "folder DATA/models/MODEL/",
    )
    outputs: list[ModelOutput] = Field(min_length=1, max_length=ATTRIBUTION_TEXTS_MAX)
    method: Literal["trak", "tracin"] = Field(default=_S.method, description=_about("method"))
    top_k: int = Field(default=_S.top_k, description=_about("top_k"))
    k: int = Field(default=_S.k, description=_about("k"))
    seed: int = Field(default=_S.seed, description=_about("seed"))
    projection: Literal["auto", "kronecker", "eigen", "gaussian", "identity"] = Field(
        default=_S.projection, description=_about("projection")
    )
    exclude: list[Annotated[str, Field(max_length=EXCLUDE_PATTERN_CHARS_MAX)]] = Field(
        default_factory=list, max_length=EXCLUDE_PATTERNS_MAX, description=_about("exclude")
    )
    chunk_size: int = Field(default=_S.chunk_size, description=_about("chunk_size"))
    length_chars: int = Field(default=_S.length_chars, description=_about("length_chars"))
    ensemble: Literal["final", "trajectory"] = Field(default=_S.ensemble, description=_about("ensemble"))
    timesteps: int = Field(default=_S.timesteps, description=_about("timesteps"))
    measurement: Literal["squared-norm", "loss"] = Field(default=_S.measurement, description=_about("measurement"))
    lambda_: float = Field(default=_S.lambda_, alias="lambda", description=_about("lambda_"))

    def settings(self) -> AttributionSettings:
        """The ``AttributionSettings`` this request names."""
        names = AttributionSettings.names(FEATURES) + AttributionSettings.names(SCORING)
        return AttributionSettings.from_dict({name: getattr(self, name) for name in names})

    @model_validator(mode="after")
    def _settings_in_range(self) -> AttributionIn:
        try:
            self.settings()
        except SettingError as exc:
            raise PydanticCustomError("setting", "{message}", {"message": exc.message}) from None
        return self


class ErrorDetail(BaseModel):
    code: str = Field(description="The stable error code, such as validation, not_found, conflict, unauthorized")
    message: str = Field(description="What failed, which id, and how to fix it")


class ErrorOut(BaseModel):
    """The body of every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": why}
    for status, why in (
        (400, "Malformed request (for example a bad Content-Length)"),
        (401, "Missing, unknown, forged, revoked or expired credentials"),
        (403, "The caller's role or scope may not do this"),
        (404, "No such resource, or another person's"),
        (409, "Conflicts with what exists (the same id with other content, a used challenge)"),
        (413, "The body or a list in it exceeds its bound"),
        (422, "The input is invalid: wrong types, unknown fields, values out of bounds"),
    )
}
"""Declared on every operation, so the OpenAPI document names every status the API answers with on purpose."""
AGAIN: dict[str, object] = {"description": "The same id again: the first result, nothing changed"}
ACKNOWLEDGED: dict[str, object] = {
    "description": "Durable and queued for accrual: ``{batch_id, state: queued, request_sha256}``",
    "headers": {"Location": {"description": "The batch's status: GET it", "schema": {"type": "string"}}},
}
ACCRUED_NOW: dict[str, object] = {
    "description": "With ``Prefer: wait``: accrued by this request; its totals (``Preference-Applied: wait``)"
}
PREFER_WAIT_DOC: dict[str, object] = {
    "parameters": [
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "example": "wait=30"},
            "description": "``wait=N`` (RFC 7240): answer once the batch has accrued (201, 200, or the error "
            "that refused it), waiting at most N seconds (at most 300) before answering 202. Without it, 202 "
            "once the batch is durable.",
        }
    ]
}
BUSY: dict[str, object] = {
    "model": ErrorOut,
    "description": "The service holds as many usage batches as it admits (being checked, or acknowledged and "
    "not yet accrued): nothing was written; retry after Retry-After seconds",
    "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}
THROTTLED: dict[str, object] = {
    "model": ErrorOut,
    "description": "Too many requests from this client, or too many challenges outstanding: retry later",
    "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}
NO_CHECKPOINT: dict[str, object] = {
    "model": ErrorOut,
    "description": "No model checkpoint is registered for the manifest's model on this deployment, or another conflict",
}
