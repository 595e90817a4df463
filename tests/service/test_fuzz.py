"""Schemathesis against the app's own OpenAPI document, in process (ASGI, no network): every operation,
with valid and with invalid data, as an operator holding every scope and as the public without
credentials. No answer may be a 5xx, and every answer must match the document: a status it declares,
the content type it declares, headers and a body that validate against the declared schema.

Random ids almost never name a row, so each generated value is, by a drawn coin, replaced with an id
that exists in the ``svc`` world (a person, a work, the agreement, the payout batch, a valid time): the
fuzzer then reaches past the 404s into accrual, consent, statements and payouts.

Runs on SQLite and on PostgreSQL (the ``svc`` world's ``store`` fixture), since a 5xx can come from one
backend only. Seeded and bounded (``EXAMPLES_PER_OPERATION`` per operation, mode and caller), so a run
is the same every time and takes about 25 s per backend and caller on two cores.
``ENDCREDITS_FUZZ_EXAMPLES`` raises the bound for a longer hunt; ``ENDCREDITS_FUZZ_SEED`` changes the seed.
"""

from __future__ import annotations

import os
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from helpers_money import agreement

EXAMPLES_PER_OPERATION = int(os.environ.get("ENDCREDITS_FUZZ_EXAMPLES", "15"))
SEED = int(os.environ.get("ENDCREDITS_FUZZ_SEED", "20261121"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _known_values(svc: Any) -> dict[str, list[Any]]:
    """Values that name rows of the ``svc`` world, by the field or parameter name they fit."""
    w = svc.world
    people = [svc.a, svc.b, w.alice, w.dan]
    work_ids = [w.song, w.film, w.orphan]
    return {
        "person_id": people,
        "agreement_id": [agreement(pool_rate="0.5", payout_threshold="0.01").id],
        "work_id": work_ids,
        "sha256": work_ids,
        "model_id": ["m"],
        "manifest_id": [w.manifest.id],
        "payee": [f"person:{p}" for p in people] + [f"name:{w.bob}"],
        "currency": ["EUR"],
        "batch_id": ["PB-SEED", "fuzz-1"],
        "period": ["2026-01", "2026-02"],
        "grant_id": [1, 2],
        "occurred_at": ["2026-01-15T12:00:00Z"],
        "valid_from": ["2026-01-01T00:00:00Z"],
        "valid_until": ["2027-01-01T00:00:00Z"],
        "name_id": [w.bob],
        "use": ["commercial"],
    }


def _aim(data: st.DataObject, value: Any, known: dict[str, list[Any]]) -> Any:
    """``value`` with some of its known-named fields (a coin each) set to values that exist."""
    if isinstance(value, list):
        return [_aim(data, v, known) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, v in value.items():
        if key in ("work_scores", "payee_scores") and isinstance(v, dict) and data.draw(st.booleans()):
            ids = known["work_id"] if key == "work_scores" else known["payee"]
            v = {ids[i % len(ids)]: s for i, s in enumerate(v.values())}
        elif isinstance(key, str) and key in known and data.draw(st.booleans()):
            v = data.draw(st.sampled_from(known[key]))
        out[key] = _aim(data, v, known)
    return out


def _fuzz_operation(operation: Any, mode: GenerationMode, headers: dict[str, str], known: dict[str, list[Any]]) -> None:
    """Up to ``EXAMPLES_PER_OPERATION`` seeded cases of one operation; raises the failures schemathesis finds."""
    strategy = operation.as_strategy(generation_mode=mode)

    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        case = data.draw(strategy)
        case.path_parameters = _aim(data, case.path_parameters, known)
        case.query = _aim(data, case.query, known)
        if isinstance(case.body, (dict, list)):
            case.body = _aim(data, case.body, known)
        sent = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers = {**sent, **headers}
        response = case.call()
        case.validate_response(response, checks=CHECKS)

    one()


def _fuzz(svc: Any, caller: str, mode: GenerationMode) -> list[str]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", svc.client.app)
    known = _known_values(svc)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            _fuzz_operation(operation, mode, svc.headers(caller), known)
        except hypothesis.errors.Unsatisfiable:
            if mode is GenerationMode.POSITIVE or operation.body or list(operation.iter_parameters()):
                raise  # only an operation with nothing to make invalid (GET /health) has no negative case
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - report every operation's failure together
            failures.append(f"{operation.label} [{caller}, {mode.value}]: {exc}")
    return failures


@pytest.mark.parametrize("caller", ["op_all", "public"])
def test_every_operation_answers_within_its_schema(svc: Any, caller: str) -> None:
    failures: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        failures += _fuzz(svc, caller, mode)
    assert not failures, "\n\n".join(failures)
