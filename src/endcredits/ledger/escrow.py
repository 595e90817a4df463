"""Escrow: money owed to someone who cannot be paid yet waits, under their own name, until claimed.

Held under ``escrow:person:ID`` (a person not yet verified), ``escrow:name:ID`` (a credited name no
person has claimed) or ``escrow:work:ID`` (a work nobody is credited on). It is never redistributed:
past its agreement's escrow period it moves, still under its name, to the fund the agreement names
(``ledger.expiry``). Money held for a work (nobody credited yet) is released with ``release_work_escrow``
once someone is credited on it: split by the work's shares as they are then. Claiming moves the whole
balance to the verified person's payable account in one audited transfer (``escrow_claim``), and what a
fund holds for them in another (``fund_claim``): a late claim is honoured from the fund. Carried
sub-microunit fractions belong to payees, not accounts, so they stay where they are: once a name is
claimed, its later residuals (fraction included) are routed to the person.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import Connection, or_, select

from endcredits.errors import ConsentError, ValidationError
from endcredits.ledger import TransferRequest, account_key, parse_account_key
from endcredits.ledger.records import account_balances, fold_pending, post_transfer, snapshot_held
from endcredits.money import allocate
from endcredits.registry.records import claim_name, get_person, payee_routes
from endcredits.royalties import Agreement, work_shares
from endcredits.royalties.usage import load_credit_graph
from endcredits.store.engine import Store
from endcredits.store.schema import accounts, names, people


@dataclass(frozen=True)
class ClaimResult:
    person_id: int
    moved_microunits: dict[str, int]  # currency -> amount
    transfers: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """What the edges show of a claim: the amounts released per currency and the transfers."""
        return {
            "person_id": self.person_id,
            "released_microunits": dict(sorted(self.moved_microunits.items())),
            "transfers": list(self.transfers),
        }


@dataclass(frozen=True)
class EscrowHolding:
    holder: str
    display_name: str
    currency: str
    balance_microunits: int


def _claim_sources(conn: Connection, person_id: int) -> list[str]:
    holders = [f"person:{person_id}"]
    holders += [f"name:{r.id}" for r in conn.execute(select(names.c.id).where(names.c.person_id == person_id))]
    return holders


def _held_for(conn: Connection, kind: str, holders: list[str]) -> dict[str, list[tuple[str, int, int]]]:
    """Per currency, the ``(key, balance, last transfer id)`` of every non-empty account of ``kind`` held for
    ``holders``: escrow under the holder, or a fund's part for it (``fund:FUND/HOLDER``); rows and snapshot."""
    q = select(accounts.c.key, accounts.c.holder, accounts.c.currency, accounts.c.balance_microunits)
    q = q.add_columns(accounts.c.last_transfer_id).where(accounts.c.kind == kind)
    if kind == "escrow":
        q = q.where(accounts.c.holder.in_(holders))
    else:  # a fund id has no '/', so the text after it is the holder
        q = q.where(or_(*[accounts.c.holder.like(f"%/{h}") for h in holders]))
    by_currency: dict[str, list[tuple[str, int, int]]] = {}
    for r in conn.execute(q):
        if r.balance_microunits == 0:  # amounts are compared in Python, never in SQL (text on SQLite)
            continue
        if kind == "fund" and r.holder.partition("/")[2] not in holders:
            continue
        by_currency.setdefault(r.currency, []).append((r.key, r.balance_microunits, r.last_transfer_id))
    for key, currency, balance, last in snapshot_held(conn, kind, holders):  # payees' accounts with no row
        if balance != 0:
            by_currency.setdefault(currency, []).append((key, balance, last))
    return by_currency


def claim_escrow_in(conn: Connection, person_id: int) -> ClaimResult:
    """Move everything held for a verified person (and the names they claimed) to them: what escrow holds
    (``escrow_claim``) and what a fund holds for them past the escrow period (``fund_claim``).

    Carried sub-microunit fractions belong to payees, not accounts, so they need not move: once a
    name is claimed its future residuals, fraction included, are routed to the person.
    """
    person = get_person(conn, person_id)
    if person.verified_at is None:
        raise ConsentError(f"person {person_id} is not verified; escrow is released only to verified people")
    fold_pending(conn)  # the balances below are read from the account rows
    holders = _claim_sources(conn, person_id)
    moved: dict[str, int] = {}
    posted: list[str] = []
    for kind, code in (("escrow", "escrow_claim"), ("fund", "fund_claim")):
        for currency, items in sorted(_held_for(conn, kind, holders).items()):
            target = account_key("payable", currency, f"person:{person_id}")
            legs = {key: -balance for key, balance, _ in items}
            legs[target] = sum(balance for _, balance, _ in items)
            # The id is fixed by what is moved, so replaying the same claim finds it posted already.
            fingerprint = hashlib.sha256(repr(sorted(items)).encode()).hexdigest()[:16]
            event_id = f"{code.replace('_', '-')}/person:{person_id}/{currency}/{fingerprint}"
            memo = {"person": str(person_id), "from": ",".join(sorted(legs)[:-1])}
            post_transfer(conn, TransferRequest(event_id=event_id, code=code, currency=currency, legs=legs, memo=memo))
            posted.append(event_id)
            moved[currency] = moved.get(currency, 0) + legs[target]
    return ClaimResult(person_id, moved, tuple(posted))


@dataclass(frozen=True)
class WorkRelease:
    work_id: str
    moved_microunits: dict[str, int]  # currency -> amount released
    parts: dict[str, int]  # account key -> amount
    transfers: tuple[str, ...]


def release_work_escrow(store: Store, work_id: str, agreement: Agreement) -> WorkRelease:
    """Release what was held for a work while nobody was credited on it, now that someone is.

    The held whole microunits are split once, by the work's shares as they are now (credits, rights
    holder, lineage), largest remainder on exact fractions, and each part goes where an accrual would
    send it (payable, or the payee's own escrow). Refused while the work still has nobody to pay.
    """
    with store.write() as conn:
        graph = load_credit_graph(conn, [work_id])
        shares = work_shares(work_id, graph, agreement, {})
        if any(s.payee == f"work:{work_id}" for s in shares):
            raise ConsentError(f"work {work_id} still credits nobody: credit someone on it before releasing its escrow")
        routes = payee_routes(conn, sorted({s.payee for s in shares}))
        fold_pending(conn)  # the balances below are read from the account rows
        sources = _held_for(conn, "escrow", [f"work:{work_id}"])
        for currency, items in _held_for(conn, "fund", [f"work:{work_id}"]).items():
            sources.setdefault(currency, []).extend(items)  # moved past the escrow period: still the work's
        moved: dict[str, int] = {}
        all_parts: dict[str, int] = {}
        posted: list[str] = []
        for currency, items in sorted(sources.items()):
            held = sum(balance for _, balance, _ in items)
            weights: dict[str, Fraction] = {}
            for share in shares:
                kind, holder = routes[share.payee]
                target = account_key(kind, currency, holder)
                weights[target] = weights.get(target, Fraction(0)) + share.share
            parts = {k: v for k, v in allocate(held, weights).items() if v}
            legs = {key: -balance for key, balance, _ in items}
            legs.update(parts)
            legs_sha256 = hashlib.sha256(repr(sorted(legs.items())).encode()).hexdigest()
            event_id = f"escrow-release/work:{work_id}/{currency}/{legs_sha256[:16]}"
            post_transfer(
                conn,
                TransferRequest(
                    event_id=event_id,
                    code="escrow_claim",
                    currency=currency,
                    legs=legs,
                    memo={"work": work_id, "agreement": f"{agreement.id}@{agreement.version}"},
                ),
            )
            posted.append(event_id)
            moved[currency] = held
            all_parts.update(parts)
    return WorkRelease(work_id, moved, all_parts, tuple(posted))


def claim_escrow(store: Store, person_id: int, *, name_id: int | None = None) -> ClaimResult:
    """Link ``name_id`` to the person (if given) and release their escrow, in one transaction."""
    with store.write() as conn:
        if name_id is not None:
            claim_name(conn, name_id, person_id)
        return claim_escrow_in(conn, person_id)


@dataclass(frozen=True)
class _Held:
    holder: str
    key: str
    balance_microunits: int


def search_escrow(conn: Connection, query: str = "", *, limit: int = 100) -> list[EscrowHolding]:
    """Unclaimed residuals, largest first: the public list a person searches to find money owed to them."""
    if limit < 1 or limit > 10_000:
        raise ValidationError("limit must be between 1 and 10000")
    rows = [
        _Held(str(parse_account_key(key)[1]), key, balance)
        for key, balance in account_balances(conn, kind="escrow").items()
        if balance > 0
    ]
    name_ids = [int(r.holder.split(":")[1]) for r in rows if r.holder.startswith("name:")]
    person_ids = [int(r.holder.split(":")[1]) for r in rows if r.holder.startswith("person:")]
    display = {
        f"name:{r.id}": r.name for r in conn.execute(select(names.c.id, names.c.name).where(names.c.id.in_(name_ids)))
    }
    display.update(
        {
            f"person:{r.id}": r.handle
            for r in conn.execute(select(people.c.id, people.c.handle).where(people.c.id.in_(person_ids)))
        }
    )
    out = []
    needle = query.casefold()
    for r in rows:
        name = display.get(r.holder, r.holder)
        if needle and needle not in name.casefold():
            continue
        out.append(EscrowHolding(r.holder, name, parse_account_key(r.key)[2], r.balance_microunits))
    out.sort(key=lambda h: (-h.balance_microunits, h.holder))
    return out[:limit]
