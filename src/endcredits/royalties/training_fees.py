"""Training fees: a licence's price per training use, owed by the operator once per manifest.

An RSL ``<payment type="training">`` with an amount is a fee per training use (``consent.terms``). A
manifest is one training run's exact list of works, so for each work it includes that carries a
``training`` term in force at the manifest's ``as_of`` time and covering one of the manifest's uses, the
operator owes the term's amount once (of several such terms on one work, the highest). The fee is divided
among the work's payees exactly as its residual is (``work_shares``: rights holder, credited people at
their role weights, guild minimums, lineage parents), in whole microunits by largest remainder
(``money.allocate``), so the parts sum to the fee. A part whose role weight a member's guild minimum raised
carries that ``GuildMinimum``, so its statement line can say which term applied. A term in another
currency than the agreement's is refused in one line: endcredits does not convert currencies.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from endcredits.consent.terms import terms_for
from endcredits.errors import ValidationError
from endcredits.manifest.records import ManifestRecord
from endcredits.money import allocate
from endcredits.royalties.agreement import Agreement
from endcredits.royalties.shares import GuildMinimum, PayeeShare, guild_minimums_applied, work_shares
from endcredits.royalties.usage import load_credit_graph
from endcredits.store.engine import parse_time

TRAINING_PAYMENT_TYPE = "training"


@dataclass(frozen=True)
class FeePart:
    """``amount_microunits`` of licence term ``term_id``'s fee for ``work_id`` goes to ``payee`` for
    ``role`` on ``source_work`` (the work itself, or a lineage parent); ``guild_minimum``: the guild term
    that raised that credit's role weight above the agreement's, if one did."""

    work_id: str
    term_id: int
    source_work: str
    payee: str
    role: str
    amount_microunits: int
    guild_minimum: GuildMinimum | None = None


def training_fee_parts(conn: Connection, manifest: ManifestRecord, agreement: Agreement) -> list[FeePart]:
    """Every payee's part of the training fees ``manifest`` owes (see the module doc), by work then payee;
    empty when no included work carries a training term that applies."""
    at = parse_time(manifest.as_of)
    best: dict[str, tuple[int, int]] = {}  # work -> (amount, term id)
    for term_id, term in terms_for(conn, manifest.included):
        if term.payment_type != TRAINING_PAYMENT_TYPE or not term.in_force(at):
            continue
        if not set(term.uses) & set(manifest.uses) or term.amount_microunits <= 0:
            continue
        if term.currency != agreement.currency:
            raise ValidationError(
                f"licence term {term_id} on work {term.work_id} asks {term.currency} per training use and "
                f"agreement {agreement.id} v{agreement.version} pays {agreement.currency}: record the licence "
                f"in {agreement.currency}"
            )
        if term.work_id not in best or term.amount_microunits > best[term.work_id][0]:
            best[term.work_id] = (term.amount_microunits, term_id)
    if not best:
        return []
    graph = load_credit_graph(conn, sorted(best))
    memo: dict[str, list[PayeeShare]] = {}
    raised = guild_minimums_applied(graph, agreement)
    out: list[FeePart] = []
    for work, (amount, term_id) in sorted(best.items()):
        shares = {(s.payee, s.source_work, s.role): s.share for s in work_shares(work, graph, agreement, memo)}
        for (payee, source, role), part in sorted(allocate(amount, shares).items()):
            if part:
                out.append(FeePart(work, term_id, source, payee, role, part, raised.get((payee, source, role))))
    return out


__all__ = ["TRAINING_PAYMENT_TYPE", "FeePart", "training_fee_parts"]
