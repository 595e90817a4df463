"""The Agreement: the residual policy, read from a versioned TOML file.

```toml
id = "demo-2026"                # stable name; (id, version) is recorded on every accrual
version = 1
currency = "EUR"
pool_rate = "0.30"              # share of each output's revenue paid into the residual pool
rights_holder_share = "0.25"    # of a work's share, to its rights holder; the rest to credited humans
lineage_pass_through = "0.20"   # default share of a derived work's share passed upstream to its parents
baseline_share = "0"            # of the pool, split over the manifest's works by volume (not by influence)
payout_threshold = "10.00"      # balances below this (in `currency`) carry forward to the next payout
escrow_period_days = 1095       # how long unclaimed money is held and published before anything else may happen
escrow_expiry_fund = "actors-fund"  # optional: the fund that holds unclaimed money past that period, per name
negative_influence = "zero"     # the only rule now: a work whose influence on an output is negative earns nothing
extra_role_schemes = []         # optional: role schemes outside ``registry.roles`` this agreement accepts
licence_terms = ["output_floor"] # optional, default []: how priced licence terms apply (LICENCE_TERM_APPLICATIONS)
[role_weights]                  # "scheme:code" = integer weight; every credited role must be listed
"endcredits:composer" = 3
"endcredits:transcriber" = 1
"ebu:15.8" = 1                  # EBU term ids; a term name ("ebu:gaffer") is the same role
```
Rates are exact decimal or ratio text (``"1/3"``), never floats. Unknown keys are refused, and so is a role
``registry.roles`` does not know (a scheme outside it only if in ``extra_role_schemes``). Roles compare in
canonical form: a weight for ``ebu:15.8`` applies to a credit ``ebu:gaffer``; one role named twice is refused.
Without ``escrow_expiry_fund``, unclaimed money stays in escrow past its period (``ledger.expiry``).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from endcredits.errors import ValidationError
from endcredits.limits import WEIGHT_MAX, check_id
from endcredits.money import check_currency, parse_amount, parse_fraction
from endcredits.registry.records import parse_role
from endcredits.registry.roles import canonical_role, check_role

_KEYS = {
    "id",
    "version",
    "currency",
    "pool_rate",
    "rights_holder_share",
    "lineage_pass_through",
    "baseline_share",
    "payout_threshold",
    "escrow_period_days",
    "escrow_expiry_fund",
    "negative_influence",
    "role_weights",
    "extra_role_schemes",
    "licence_terms",
}
_OPTIONAL = {"baseline_share", "negative_influence", "extra_role_schemes", "escrow_expiry_fund", "licence_terms"}
_REQUIRED = _KEYS - _OPTIONAL
FUND_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
"""A fund's id: it becomes part of ledger account keys (``fund:FUND/name:7:EUR``), so no ``:`` nor ``/``."""

LICENCE_TERM_APPLICATIONS: tuple[str, ...] = ("output_floor",)
"""How an agreement may apply the licence terms stored with works (``consent.terms``), named in its
``licence_terms`` list. ``output_floor``: a work attributed in an output is paid at least the amount of a
``use`` or ``crawl`` term in force then, the operator paying the difference (``royalties.floors``). The
default, an empty list, applies none: terms are then evidence only."""


@dataclass(frozen=True)
class Agreement:
    id: str
    version: int
    currency: str
    pool_rate: Fraction
    rights_holder_share: Fraction
    lineage_pass_through: Fraction
    baseline_share: Fraction
    payout_threshold_microunits: int
    escrow_period_days: int
    role_weights: Mapping[tuple[str, str], int]
    body: str
    negative_influence: str = "zero"
    escrow_expiry_fund: str | None = None
    licence_terms: tuple[str, ...] = ()

    @property
    def body_sha256(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()

    def role_weight(self, scheme: str, code: str) -> int:
        try:
            return self.role_weights[canonical_role(scheme, code)]
        except KeyError:
            raise ValidationError(
                f"agreement {self.id} v{self.version} has no weight for role {scheme}:{code}: "
                "add it under [role_weights]"
            ) from None


def _share(data: Mapping[str, Any], key: str) -> Fraction:
    value = data.get(key, "0")
    if not isinstance(value, str):
        raise ValidationError(f'agreement {key} must be quoted decimal text such as "0.25", got {value!r}')
    share = parse_fraction(value, f"agreement {key}")
    if share > 1:
        raise ValidationError(f"agreement {key} = {value} exceeds the whole (1); shares are fractions of one")
    return share


def _licence_terms(value: object) -> tuple[str, ...]:
    """The ``licence_terms`` list: each a name in ``LICENCE_TERM_APPLICATIONS``, once."""
    allowed = ", ".join(LICENCE_TERM_APPLICATIONS)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(
            f'agreement licence_terms must be a list of names such as ["output_floor"] (of {allowed})'
        )
    unknown = [v for v in value if v not in LICENCE_TERM_APPLICATIONS]
    if unknown:
        raise ValidationError(f"agreement licence_terms names {unknown[0]!r:.40}, which is not one of {allowed}")
    if len(set(value)) != len(value):
        raise ValidationError("agreement licence_terms names one application twice")
    return tuple(sorted(value))


def parse_agreement(body: str) -> Agreement:  # noqa: C901 - one pass over many independent checks
    """Parse and check an agreement file's text. Raises ``ValidationError`` naming the first problem."""
    try:
        data = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"agreement is not valid TOML: {exc}") from None
    unknown = set(data) - _KEYS
    if unknown:
        raise ValidationError(f"agreement has unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    missing = _REQUIRED - set(data)
    if missing:
        raise ValidationError(f"agreement is missing {sorted(missing)}")
    check_id(data["id"], "agreement id")
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValidationError(f"agreement version must be a positive integer, got {version!r}")
    currency = check_currency(data["currency"])
    if not isinstance(data["payout_threshold"], str):
        raise ValidationError('agreement payout_threshold must be quoted decimal text such as "10.00"')
    threshold = parse_amount(data["payout_threshold"], currency)
    if threshold < 0:
        raise ValidationError("agreement payout_threshold must not be negative")
    days = data["escrow_period_days"]
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ValidationError(f"agreement escrow_period_days must be a positive integer, got {days!r}")
    fund = data.get("escrow_expiry_fund")
    if fund is not None and (not isinstance(fund, str) or FUND_ID.fullmatch(fund) is None):
        raise ValidationError(
            f"agreement escrow_expiry_fund {fund!r} must be a fund id of 1..64 lower-case letters, digits, '.', "
            "'_' or '-', such as \"actors-guild-fund\""
        )
    negative = data.get("negative_influence", "zero")
    if negative != "zero":
        raise ValidationError(f'agreement negative_influence {negative!r} is not supported; the rule is "zero"')
    role_weights = _role_weights(data)
    agreement = Agreement(
        id=data["id"],
        version=version,
        currency=currency,
        pool_rate=_share(data, "pool_rate"),
        rights_holder_share=_share(data, "rights_holder_share"),
        lineage_pass_through=_share(data, "lineage_pass_through"),
        baseline_share=_share(data, "baseline_share"),
        payout_threshold_microunits=threshold,
        escrow_period_days=days,
        role_weights=role_weights,
        body=body,
        escrow_expiry_fund=fund,
        licence_terms=_licence_terms(data.get("licence_terms", [])),
    )
    if agreement.pool_rate == 0:
        raise ValidationError("agreement pool_rate is 0: nobody would be paid")
    return agreement


def _role_weights(data: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """The ``[role_weights]`` table, checked, by canonical role."""
    roles = data["role_weights"]
    if not isinstance(roles, dict) or not roles:
        raise ValidationError('agreement [role_weights] must list at least one "scheme:code" = weight')
    extra = data.get("extra_role_schemes", [])
    if not isinstance(extra, list) or not all(isinstance(s, str) for s in extra):
        raise ValidationError('agreement extra_role_schemes must be a list of scheme names, such as ["marc"]')
    role_weights: dict[tuple[str, str], int] = {}
    for role, weight in roles.items():
        try:
            scheme, code = parse_role(role)
        except ValidationError:
            raise ValidationError(
                f'agreement role {role!r} must be written scheme:code in lower case, such as "endcredits:composer"'
            ) from None
        try:
            check_role(scheme, code, allow_unknown_scheme=scheme in extra)
        except ValidationError as exc:
            raise ValidationError(
                f"agreement [role_weights]: {exc} (unknown schemes: list them in extra_role_schemes)"
            ) from None
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 < weight <= WEIGHT_MAX:
            raise ValidationError(f"agreement role weight for {role} must be an integer in 1..{WEIGHT_MAX}")
        key = canonical_role(scheme, code)
        if key in role_weights:
            raise ValidationError(f"agreement [role_weights] names {key[0]}:{key[1]} twice (once as {role})")
        role_weights[key] = weight
    return role_weights
