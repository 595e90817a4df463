"""Usage: outputs that earned revenue, with their attribution, as lines for one accrual batch.

``build_usage`` checks every attributed work against the model's manifest (a model pays only for works
it was trained on), turns scores into integer weights (``attribution_weights``) and weights into
exact lines through credits and lineage (``output_lines``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from endcredits.audit import canonical_json
from endcredits.consent.guilds import guild_terms_in_force, role_minimums
from endcredits.errors import EvidenceError, LimitExceededError, ManifestError, ValidationError
from endcredits.limits import BATCH_SIZE_MAX, OUTPUTS_PER_BATCH_MAX, REVENUE_PER_OUTPUT_MICROUNITS_MAX, check_ids
from endcredits.manifest.records import ManifestRecord
from endcredits.money import check_currency
from endcredits.registry.records import graph_rows, route_columns
from endcredits.registry.roles import canonical_role
from endcredits.royalties.agreement import Agreement
from endcredits.royalties.shares import (
    CreditEntry,
    CreditGraph,
    GuildMinimum,
    OutputLines,
    PayeeShare,
    attribution_weights,
    guild_minimums_applied,
    output_lines,
    payee_lines,
    payee_volumes,
    work_shares,
)

if TYPE_CHECKING:
    from endcredits.attribution.payees import CreditMatrix


@dataclass
class UsageBatch:
    """Outputs and their lines, columnar and dictionary-coded.

    Lines ``offsets[i]:offsets[i+1]`` belong to output ``i``. Line ``j`` pays ``payees[payee_codes[j]]``
    for the path (``works[attributed_codes[j]]``, ``works[source_codes[j]]``, ``roles[role_codes[j]]``)
    with integer ``weights[j]``; code -1 means "no work" (attribution given per payee).
    """

    output_ids: list[str]
    model_ids: list[str]
    revenue_microunits: list[int]
    currencies: list[str]
    occurred_at: list[str]
    offsets: npt.NDArray[np.int64]
    payees: list[str]
    payee_codes: npt.NDArray[np.int64]
    weights: npt.NDArray[Any]  # int64, or object (Python ints) when large
    works: list[str] = field(default_factory=list)
    attributed_codes: npt.NDArray[np.int64] | None = None
    source_codes: npt.NDArray[np.int64] | None = None
    roles: list[str] = field(default_factory=list)
    role_codes: npt.NDArray[np.int64] | None = None
    shares: dict[str, list[PayeeShare]] | None = field(default=None, compare=False)
    """Per attributed work, the exact payee shares its lines were made from (``build_usage`` per work): what
    the evidence keeps so that the lines re-derive without the registry as it is later. Not content."""
    guild_minimums: dict[tuple[str, str, str], GuildMinimum] = field(default_factory=dict, compare=False)
    """Per (payee, source work, role): the guild minimum weight that raised that credit's role weight above the
    agreement's (``shares.guild_minimums_applied``); the accrual keeps it with the lines it paid. Not content:
    the raised weights are in the lines."""

    def __post_init__(self) -> None:
        n = len(self.output_ids)
        if not (
            len(self.model_ids) == len(self.revenue_microunits) == len(self.currencies) == len(self.occurred_at) == n
        ):
            raise ValidationError("usage batch output columns have different lengths")
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.payee_codes = np.asarray(self.payee_codes, dtype=np.int64)
        lines = len(self.payee_codes)
        if n > OUTPUTS_PER_BATCH_MAX or lines > BATCH_SIZE_MAX:
            raise LimitExceededError(
                f"batch of {n} outputs / {lines} lines exceeds OUTPUTS_PER_BATCH_MAX / BATCH_SIZE_MAX"
            )
        if self.offsets.shape != (n + 1,) or (n and (self.offsets[0] != 0 or self.offsets[-1] != lines)):
            raise ValidationError("usage batch offsets must run from 0 to the line count, one per output + 1")
        if n and np.any(np.diff(self.offsets) <= 0):
            raise ValidationError("every output in a usage batch needs at least one line")
        if len(self.weights) != lines:
            raise ValidationError(f"usage batch has {len(self.weights)} weights for {lines} lines")
        if lines and (self.payee_codes.min() < 0 or self.payee_codes.max() >= len(self.payees)):
            raise ValidationError("usage batch payee codes out of range")
        none = np.full(lines, -1, dtype=np.int64)
        self.attributed_codes = (
            none if self.attributed_codes is None else np.asarray(self.attributed_codes, dtype=np.int64)
        )
        self.source_codes = none if self.source_codes is None else np.asarray(self.source_codes, dtype=np.int64)
        self.role_codes = none if self.role_codes is None else np.asarray(self.role_codes, dtype=np.int64)
        for name, codes, table in (
            ("attributed", self.attributed_codes, self.works),
            ("source", self.source_codes, self.works),
            ("role", self.role_codes, self.roles),
        ):
            if len(codes) != lines or (lines and (codes.min() < -1 or codes.max() >= len(table))):
                raise ValidationError(f"usage batch {name} codes do not match its dictionary")
        if len(set(self.output_ids)) != n:
            raise ValidationError("usage batch lists an output id more than once")
        # Every id that reaches the evidence files and the statements: printable, bounded (limits.check_id).
        check_ids(self.output_ids, "output id")
        check_ids(list(set(self.model_ids)), "model id")
        check_ids(self.payees, "payee")
        check_ids(self.works, "work id")
        check_ids(self.roles, "role", spaces=False)
        for rev in self.revenue_microunits:
            if isinstance(rev, bool) or not isinstance(rev, int):
                raise ValidationError("revenue must be integer microunits")
            if rev < 0:
                raise ValidationError(
                    f"negative revenue {rev}: revenue must be >= 0 (refunds are not accrued as negative revenue)"
                )
            if rev > REVENUE_PER_OUTPUT_MICROUNITS_MAX:
                raise LimitExceededError(
                    f"revenue {rev} exceeds REVENUE_PER_OUTPUT_MICROUNITS_MAX={REVENUE_PER_OUTPUT_MICROUNITS_MAX}"
                )
        for ccy in set(self.currencies):
            check_currency(ccy)

    def content_sha256(self) -> str:
        """What makes two batches the same: every output field, the dictionaries, and every line's codes
        and weight. A retry sends the same batch the same way; a batch rebuilt with its dictionaries in
        another order is treated as other content (a ConflictError, never a double payment)."""
        h = hashlib.sha256()
        for column in (
            self.output_ids,
            self.model_ids,
            [str(r) for r in self.revenue_microunits],
            self.currencies,
            self.occurred_at,
            self.payees,
            self.works,
            self.roles,
        ):
            h.update("\x00".join(column).encode())
            h.update(b"\x01")
        for arr in (self.offsets, self.payee_codes, self.attributed_codes, self.source_codes, self.role_codes):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        if self.weights.dtype == object:
            h.update(canonical_json([str(int(w)) for w in self.weights]).encode())
        else:
            h.update(np.ascontiguousarray(self.weights, dtype=np.int64).tobytes())
        return h.hexdigest()

    def select(self, rows: npt.NDArray[np.int64]) -> UsageBatch:
        """The outputs ``rows`` (and their lines), sharing the dictionaries."""
        if len(rows) == len(self.output_ids):
            return self
        counts = np.diff(self.offsets)[rows]
        starts = self.offsets[rows]
        line_idx = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(
            int(counts.sum()), dtype=np.int64
        )
        pick = rows.tolist()
        assert self.attributed_codes is not None and self.source_codes is not None and self.role_codes is not None
        return UsageBatch(
            output_ids=[self.output_ids[i] for i in pick],
            model_ids=[self.model_ids[i] for i in pick],
            revenue_microunits=[self.revenue_microunits[i] for i in pick],
            currencies=[self.currencies[i] for i in pick],
            occurred_at=[self.occurred_at[i] for i in pick],
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            payees=self.payees,
            payee_codes=self.payee_codes[line_idx],
            weights=self.weights[line_idx],
            works=self.works,
            attributed_codes=self.attributed_codes[line_idx],
            source_codes=self.source_codes[line_idx],
            roles=self.roles,
            role_codes=self.role_codes[line_idx],
            shares=self.shares,
            guild_minimums=self.guild_minimums,
        )


@dataclass(frozen=True)
class OutputIn:
    output_id: str
    model_id: str
    revenue_microunits: int
    currency: str
    occurred_at: str


def load_credit_graph(conn: Connection, work_ids: Sequence[str], at: datetime | None = None) -> CreditGraph:
    """Credits, rights holders and lineage of ``work_ids`` and their ancestors; each credit of a guild member
    carries the minimum weight for its role that the member's guild terms in force at ``at`` (default: now)
    set (``consent.guilds.role_minimums``), which ``work_shares`` applies where it is the higher weight."""
    rows = graph_rows(conn, work_ids)
    minimums = _guild_minimums(conn, sorted({payee for _, payee, _, _ in rows.credits}), at)
    credits: dict[str, list[CreditEntry]] = {}
    for work, payee, role, weight in rows.credits:
        floor = minimums.get(payee, {}).get(canonical_role(*role.partition(":")[::2]))
        credits.setdefault(work, []).append(CreditEntry(payee, role, weight, floor))
    parents: dict[str, list[tuple[str, Any]]] = {}
    for work, parent, share in rows.parents:
        parents.setdefault(work, []).append((parent, share))
    for v in credits.values():
        v.sort(key=lambda c: (c.payee, c.role))
    for p in parents.values():
        p.sort(key=lambda x: x[0])
    return CreditGraph(credits=credits, rights_holders=dict(rows.rights_holders), parents=parents)


def _guild_minimums(
    conn: Connection, payees: list[str], at: datetime | None
) -> dict[str, dict[tuple[str, str], GuildMinimum]]:
    """Per payee that is a guild member (a person, or a name a member claimed): per canonical role, the
    guild minimum weight that applies to them."""
    at = at or datetime.now(UTC)
    if not payees or not any(t.role_weights_min for t in guild_terms_in_force(conn, at).values()):
        return {}  # no guild sets a minimum: no membership is read
    holders = dict(zip(payees, route_columns(conn, payees)[1]))
    person_of = {p: int(h.removeprefix("person:")) for p, h in holders.items() if h.startswith("person:")}
    terms_of = role_minimums(conn, person_of.values(), at)
    out: dict[str, dict[tuple[str, str], GuildMinimum]] = {}
    for payee, person in person_of.items():
        for (scheme, code), terms in terms_of.get(person, {}).items():
            weight = dict(terms.role_weights_min)[(scheme, code)]
            out.setdefault(payee, {})[(scheme, code)] = GuildMinimum(
                terms.issuer, terms.version, f"{scheme}:{code}", weight
            )
    return out


def _check_against_manifest(
    outputs_in: Sequence[OutputIn], scores: Mapping[str, Mapping[str, float]], manifest: ManifestRecord, *, per: str
) -> None:
    """Every output is of the manifest's model, and (per work) attributes only works in the manifest."""
    in_manifest = set(manifest.included)
    for o in outputs_in:
        if o.model_id != manifest.model_id:
            raise ManifestError(f"output {o.output_id} is from model {o.model_id}, not {manifest.model_id}")
        unknown = [w for w in scores.get(o.output_id, {}) if w not in in_manifest] if per == "work" else []
        if unknown:
            raise ManifestError(
                f"output {o.output_id} attributes work {unknown[0]}, which is not in manifest "
                f"{manifest.id}: a model pays only for works it was trained on"
            )


def usage_baseline(
    conn: Connection, agreement: Agreement, manifest: ManifestRecord | None, per: str
) -> list[str] | dict[str, Fraction]:
    """What the baseline share is split over: the manifest's works (per work), each payee's credited volume
    of them (per payee, when the agreement has a baseline share), or nothing."""
    if manifest is not None and per == "work":
        return list(manifest.included)
    if per == "payee" and agreement.baseline_share:
        if manifest is None:
            raise ManifestError(
                "a baseline share with attribution per payee needs the model's manifest: the "
                "baseline pays each payee by their credited share of its works"
            )
        return payee_volumes(manifest.included, load_credit_graph(conn, manifest.included), agreement)
    return []


def build_usage(
    conn: Connection,
    outputs_in: Sequence[OutputIn],
    scores: Mapping[str, Mapping[str, float]],
    agreement: Agreement,
    manifest: ManifestRecord | None,
    *,
    per: str = "work",
    shares: Mapping[str, list[PayeeShare]] | None = None,
) -> UsageBatch:
    """Lines for each output from its attribution scores, per work (through credits, or through the recorded
    ``shares`` of each work when given, as evidence re-derives them) or per payee."""
    if per not in ("work", "payee"):
        raise ValidationError("attribution must be per work or per payee")
    if per == "work" and manifest is None:
        raise ManifestError("attribution per work needs the model's manifest")
    if manifest is not None:
        _check_against_manifest(outputs_in, scores, manifest, per=per)
    per_output = _output_weights(outputs_in, scores, agreement, usage_baseline(conn, agreement, manifest, per), per)
    # Credits and lineage of every work any output pays, so each work's share reaches its people.
    needed = sorted({w for weights_in in per_output for w in weights_in}) if per == "work" else []
    graph = load_credit_graph(conn, needed) if per == "work" and shares is None else CreditGraph()
    memo: dict[str, list[PayeeShare]] = _recorded_shares(shares, needed) if shares is not None else {}
    offsets = [0]
    codes: dict[str, dict[str, int]] = {"payee": {}, "work": {"": -1}, "role": {}}

    def code(kind: str, value: str) -> int:
        table = codes[kind]
        got = table.get(value)
        if got is None:
            got = table[value] = len(table) - (1 if kind == "work" else 0)
        return got

    payee_c: list[int] = []
    attributed_c: list[int] = []
    source_c: list[int] = []
    role_c: list[int] = []
    weights: list[int] = []
    for weights_in in per_output:
        lines: OutputLines = (
            output_lines(weights_in, graph, agreement, memo) if per == "work" else payee_lines(weights_in)
        )
        payee_c += [code("payee", p) for p in lines.payee]
        attributed_c += [code("work", w) for w in lines.attributed_work]
        source_c += [code("work", w) for w in lines.source_work]
        role_c += [code("role", r) for r in lines.role]
        weights += lines.weights
        offsets.append(len(payee_c))
    return UsageBatch(
        output_ids=[o.output_id for o in outputs_in],
        model_ids=[o.model_id for o in outputs_in],
        revenue_microunits=[o.revenue_microunits for o in outputs_in],
        currencies=[o.currency for o in outputs_in],
        occurred_at=[o.occurred_at for o in outputs_in],
        offsets=np.asarray(offsets, dtype=np.int64),
        payees=list(codes["payee"]),
        payee_codes=np.asarray(payee_c, dtype=np.int64),
        weights=np.asarray(weights, dtype=object if any(w >= (1 << 62) for w in weights) else np.int64),
        works=[w for w in codes["work"] if w != ""],
        attributed_codes=np.asarray(attributed_c, dtype=np.int64),
        source_codes=np.asarray(source_c, dtype=np.int64),
        roles=list(codes["role"]),
        role_codes=np.asarray(role_c, dtype=np.int64),
        shares={w: memo[w] for w in needed if w in memo},
        guild_minimums=guild_minimums_applied(graph, agreement),
    )


def _output_weights(
    outputs_in: Sequence[OutputIn],
    scores: Mapping[str, Mapping[str, float]],
    agreement: Agreement,
    baseline: list[str] | dict[str, Fraction],
    per: str,
) -> list[dict[str, int]]:
    """Each output's integer attribution weights (``attribution_weights``); refused for an output with none."""
    per_output: list[dict[str, int]] = []
    for o in outputs_in:
        weights_in = attribution_weights(scores.get(o.output_id, {}), agreement, baseline, output_id=o.output_id)
        if not weights_in and per == "work" and baseline:
            # No score was positive (weights are exact): every work in the manifest shares the pool evenly.
            weights_in = {w: 1 for w in baseline}
        if not weights_in:
            raise ValidationError(f"output {o.output_id} has no positive attribution: nobody to pay")
        per_output.append(weights_in)
    return per_output


def _recorded_shares(shares: Mapping[str, list[PayeeShare]], needed: list[str]) -> dict[str, list[PayeeShare]]:
    """The recorded shares of every work the outputs pay; a work without them is a broken record."""
    missing = next((w for w in needed if w not in shares), None)
    if missing is not None:
        raise EvidenceError(f"the recorded credit shares lack work {missing}: the evidence is incomplete")
    return {w: shares[w] for w in needed}


def credit_matrix(conn: Connection, work_ids: Sequence[str], agreement: Agreement) -> tuple[list[str], CreditMatrix]:
    """The payees of ``work_ids`` (sorted) and ``W`` (works x payees): each work's exact payee shares
    through credits, the rights holder and lineage, as float64 for ``PayeeIndex`` (``Psi = W^T G``).
    Scores only: the money is split from exact Fractions again when the output is accrued."""
    # Imported here: the attribution package loads PyTorch, which accruing money never needs.
    from endcredits.attribution.payees import CreditMatrix

    graph = load_credit_graph(conn, work_ids)
    memo: dict[str, list[PayeeShare]] = {}
    per_work = [work_shares(w, graph, agreement, memo) for w in work_ids]
    payees = sorted({s.payee for shares in per_work for s in shares})
    index = {p: i for i, p in enumerate(payees)}
    rows = [(wi, index[s.payee], float(s.share)) for wi, shares in enumerate(per_work) for s in shares]
    matrix = CreditMatrix.from_triplets(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], works=len(work_ids), payees=len(payees)
    )
    return payees, matrix
