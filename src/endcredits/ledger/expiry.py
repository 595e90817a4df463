"""Escrow that keeps its promises: unclaimed money is published from the day it is owed and, past its
agreement's ``escrow_period_days``, moves by an audited transfer to the fund that agreement names.

Every credit to an escrow account is a deposit, owed from the day its transfer was posted (UTC) and due
``escrow_period_days`` later under the newest version of the agreement that accrued it (the transfer's
``agreement`` memo). Debits use deposits up: an expiry those with the earliest deadline (of its fund first),
any other debit (a claim, a work's release) the oldest first. Replaying the ledger so gives, per account,
what is still held, since when and until when; nothing else is stored, so it is re-derived like a balance.

``expire_escrow`` moves exactly what is due on or before ``as_of`` to ``fund:FUND/HOLDER:CCY``: one
``escrow_expiry`` transfer per fund and currency, with an ``escrow.expired`` audit entry; a second run
moves nothing. Money whose agreement names no fund stays in escrow and is reported, never moved. A fund
holds money per holder, so a late claim is paid from it (``ledger.escrow``); nothing leaves a fund to the
operator. ``save_agreement_terms`` refuses a version that would shorten the period of money still held.

A member of a trusted guild (``consent.guilds``) whose terms set an escrow policy, holding an escrow account
as a person or through a claimed name, gets the more protective term: the longer of the agreement's and the
guild's periods, and the guild's fund as destination when it names one (several guilds: the longest period,
ties by issuer id). ``Held.term`` says which term set the deadline.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from endcredits.consent.guilds import GuildTerms, escrow_policies
from endcredits.errors import ConflictError, ValidationError, invariant
from endcredits.ledger import TransferRequest, account_key, parse_account_key
from endcredits.ledger.records import account_balances, post_transfer
from endcredits.ledger.segments import iter_segments
from endcredits.money import format_amount
from endcredits.registry.identity.members import issuers_of_people
from endcredits.registry.records import work_titles
from endcredits.royalties import Agreement
from endcredits.royalties.records import newest_agreements, save_agreement
from endcredits.store.audit import append_audit
from endcredits.store.engine import Store
from endcredits.store.schema import accounts, legs, names, people, transfers

PUBLISHED_ROWS_MAX = 10_000
"""Most rows one search of the published list returns."""


@dataclass
class _Deposit:
    transfer_id: int
    agreement_id: str | None
    owed_on: dt.date
    due_on: dt.date | None  # None: no stored agreement gives it a period; held until claimed
    fund: str | None  # where it goes when due; None: it stays in escrow
    remaining_microunits: int
    term: str | None = None  # what set the deadline: "agreement ID" or a guild's terms label


@dataclass(frozen=True)
class _Event:
    transfer_id: int
    code: str
    agreement_id: str | None
    fund: str | None  # an expiry's fund
    owed_on: dt.date
    amount_microunits: int


@dataclass(frozen=True)
class Held:
    """Money one escrow account still holds for one destination: since when, due when, and where to."""

    account: str
    owed_since: dt.date
    due_on: dt.date | None
    fund: str | None
    amount_microunits: int
    term: str | None = None  # what set the deadline: "agreement ID" or "guild terms of ISSUER vN"


def _terms(conn: Connection) -> dict[str, tuple[int, str | None]]:
    """Per agreement id, its newest version's (escrow period in days, escrow expiry fund)."""
    return {i: (a.escrow_period_days, a.escrow_expiry_fund) for i, a in newest_agreements(conn).items()}


def _events(conn: Connection, keys: Collection[str] | None) -> dict[str, list[_Event]]:
    """Every leg on an escrow account (of ``keys`` when given), per account in posting order: rows of
    non-accrual transfers and the legs of accrual segments."""
    meta = {
        r.id: (r.code, json.loads(r.memo), dt.date.fromisoformat(r.created_at[:10]))
        for r in conn.execute(select(transfers.c.id, transfers.c.code, transfers.c.memo, transfers.c.created_at))
    }
    found: list[tuple[int, str, int]] = []
    q = (
        select(legs.c.transfer_id, accounts.c.key, legs.c.amount_microunits)
        .join(accounts, accounts.c.id == legs.c.account_id)
        .where(accounts.c.kind == "escrow")
    )
    if keys is not None:
        q = q.where(accounts.c.key.in_(sorted(keys)))
    found += [(int(r.transfer_id), str(r.key), int(r.amount_microunits)) for r in conn.execute(q)]
    wanted = set(keys) if keys is not None else None
    for seg in iter_segments(conn):
        for key, amount in zip(seg.accounts.to_pylist(), seg.amount_list()):
            if key.startswith("escrow:") and (wanted is None or key in wanted):
                found.append((seg.transfer_id, key, amount))
    out: dict[str, list[_Event]] = {}
    for transfer_id, key, amount in sorted(found):
        code, memo, owed_on = meta[transfer_id]
        agreement_id = str(memo.get("agreement", "")).rpartition("@")[0] or None
        event = _Event(transfer_id, code, agreement_id, memo.get("fund"), owed_on, amount)
        out.setdefault(key, []).append(event)
    return out


def _guild_terms_of(conn: Connection, keys: Collection[str]) -> dict[str, GuildTerms]:
    """For each escrow account of ``keys`` held for a guild member (as a person, or by a name they claimed):
    the escrow terms of their guild with the longest period (ties: the issuer id first in order)."""
    policies = escrow_policies(conn)
    if not policies:
        return {}
    person_of: dict[str, int] = {}
    name_ids: dict[str, int] = {}
    for key in keys:
        holder = str(parse_account_key(key)[1])
        if holder.startswith("person:"):
            person_of[key] = int(holder.removeprefix("person:"))
        elif holder.startswith("name:"):
            name_ids[key] = int(holder.removeprefix("name:"))
    if name_ids:
        q = select(names.c.id, names.c.person_id).where(names.c.id.in_(sorted(set(name_ids.values()))))
        claimed = {int(r.id): int(r.person_id) for r in conn.execute(q) if r.person_id is not None}
        person_of |= {k: claimed[n] for k, n in name_ids.items() if n in claimed}
    issuers = issuers_of_people(conn, person_of.values())
    out: dict[str, GuildTerms] = {}
    for key, person in person_of.items():
        mine = [policies[i] for i in issuers.get(person, ()) if i in policies]
        if mine:
            out[key] = max(sorted(mine, key=lambda t: t.issuer), key=lambda t: t.escrow_period_days or 0)
    return out


def _deadline(
    e: _Event, terms: dict[str, tuple[int, str | None]], guild: GuildTerms | None
) -> tuple[dt.date | None, str | None, str | None]:
    """A deposit's due date, destination fund and the term that set them: the agreement's, unless the
    holder's guild protects more (a longer period; its fund when it names one)."""
    period_days, fund = terms.get(e.agreement_id or "", (None, None))
    if period_days is None:
        return None, None, None
    term = f"agreement {e.agreement_id}"
    if guild is not None and guild.escrow_period_days is not None:
        if guild.escrow_period_days > period_days:
            period_days, term = guild.escrow_period_days, guild.label
        if guild.escrow_fund is not None:
            fund, term = guild.escrow_fund, guild.label
    return e.owed_on + dt.timedelta(days=period_days), fund, term


def _replay(
    events: list[_Event], terms: dict[str, tuple[int, str | None]], guild: GuildTerms | None = None
) -> list[_Deposit]:
    """The deposits of one account, each with what remains of it after every debit (see the module doc)."""
    deposits: list[_Deposit] = []
    for e in events:
        if e.amount_microunits > 0:
            due, fund, term = _deadline(e, terms, guild)
            deposits.append(_Deposit(e.transfer_id, e.agreement_id, e.owed_on, due, fund, e.amount_microunits, term))
            continue
        need = -e.amount_microunits
        order = deposits
        if e.code == "escrow_expiry":
            order = sorted(deposits, key=lambda d: (d.fund != e.fund, d.due_on or dt.date.max, d.transfer_id))
        for d in order:
            take = min(d.remaining_microunits, need)
            d.remaining_microunits -= take
            need -= take
            if need == 0:
                break
        invariant(need == 0, f"escrow debit of transfer {e.transfer_id} exceeds what its account held")
    return [d for d in deposits if d.remaining_microunits > 0]


def escrow_schedule(conn: Connection, keys: Collection[str] | None = None) -> list[Held]:
    """What every escrow account (of ``keys`` when given) still holds, per destination fund: since when and
    due when. Sums, per account, to its balance."""
    terms = _terms(conn)
    out: list[Held] = []
    found = _events(conn, keys)
    guilds = _guild_terms_of(conn, found)
    for key, events in sorted(found.items()):
        groups: dict[str | None, list[_Deposit]] = {}
        for d in _replay(events, terms, guilds.get(key)):
            groups.setdefault(d.fund, []).append(d)
        for fund, ds in sorted(groups.items(), key=lambda kv: kv[0] or ""):
            dated = sorted((d for d in ds if d.due_on is not None), key=lambda d: (d.due_on, d.transfer_id))
            owed_since = min(d.owed_on for d in ds)
            amount = sum(d.remaining_microunits for d in ds)
            first = dated[0] if dated else None
            due = first.due_on if first else None
            out.append(Held(key, owed_since, due, fund, amount, first.term if first else None))
    return out


@dataclass(frozen=True)
class Expired:
    """What one expiry moves (``fund`` set) or leaves held, due but with no fund named (``fund`` None)."""

    account: str
    currency: str
    fund: str | None
    owed_since: dt.date
    amount_microunits: int


@dataclass(frozen=True)
class ExpiryResult:
    as_of: dt.date
    moved: tuple[Expired, ...]
    held_without_fund: tuple[Expired, ...]
    transfers: tuple[str, ...]
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        def rows(items: tuple[Expired, ...]) -> list[dict[str, Any]]:
            return [
                {
                    "account": e.account,
                    "currency": e.currency,
                    "fund": e.fund,
                    "owed_since": e.owed_since.isoformat(),
                    "amount_microunits": e.amount_microunits,
                    "amount": format_amount(e.amount_microunits, e.currency),
                }
                for e in items
            ]

        return {
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "moved": rows(self.moved),
            "held_without_fund": rows(self.held_without_fund),
            "transfers": list(self.transfers),
        }


def _due(conn: Connection, as_of: dt.date) -> Iterator[Expired]:
    """Per escrow account and destination, what is due on or before ``as_of`` (replayed per deposit)."""
    terms = _terms(conn)
    found = _events(conn, None)
    guilds = _guild_terms_of(conn, found)
    for key, events in sorted(found.items()):
        per_fund: dict[str | None, tuple[dt.date, int]] = {}
        for d in _replay(events, terms, guilds.get(key)):
            if d.due_on is not None and d.due_on <= as_of:
                since, amount = per_fund.get(d.fund, (d.owed_on, 0))
                per_fund[d.fund] = (min(since, d.owed_on), amount + d.remaining_microunits)
        for fund, (since, amount) in sorted(per_fund.items(), key=lambda kv: kv[0] or ""):
            yield Expired(key, parse_account_key(key)[2], fund, since, amount)


def _post_expiries(conn: Connection, moved: list[Expired], as_of: dt.date) -> list[str]:
    """One ``escrow_expiry`` transfer per (fund, currency), each with its audit entry; their event ids."""
    groups: dict[tuple[str, str], list[Expired]] = {}
    for e in moved:
        assert e.fund is not None
        groups.setdefault((e.fund, e.currency), []).append(e)
    posted = []
    for (fund, currency), items in sorted(groups.items()):
        legs_: dict[str, int] = {}
        for e in items:
            holder = parse_account_key(e.account)[1]
            legs_[e.account] = -e.amount_microunits
            legs_[account_key("fund", currency, f"{fund}/{holder}")] = e.amount_microunits
        digest = hashlib.sha256(repr(sorted(legs_.items())).encode()).hexdigest()[:16]
        event_id = f"escrow-expiry/{as_of.isoformat()}/{fund}/{currency}/{digest}"
        memo = {"as_of": as_of.isoformat(), "fund": fund}
        post_transfer(conn, TransferRequest(event_id, "escrow_expiry", currency, legs_, memo))
        total = sum(e.amount_microunits for e in items)
        payload = {"as_of": as_of.isoformat(), "fund": fund, "currency": currency, "holders": len(items)}
        append_audit(conn, "escrow.expired", event_id, {**payload, "amount_microunits": str(total)})
        posted.append(event_id)
    return posted


def expire_escrow(store: Store, as_of: dt.date, *, today: dt.date | None = None, dry_run: bool = False) -> ExpiryResult:
    """Move what is still in escrow on ``as_of`` past its agreement's period to the fund the agreement names,
    in one transaction (see the module doc). Idempotent: what moved is no longer in escrow. ``as_of`` may not
    be after ``today`` (UTC by default): a period ends only on a day that has come."""
    today = today or dt.datetime.now(dt.UTC).date()
    if as_of > today:
        raise ValidationError(
            f"as-of date {as_of} is after today ({today}): escrow expires only on days that have come"
        )
    with store.read() if dry_run else store.write() as conn:  # post_transfer folds pending segments first
        due = list(_due(conn, as_of))
        moved = [e for e in due if e.fund is not None]
        held = tuple(e for e in due if e.fund is None)
        posted = [] if dry_run else _post_expiries(conn, moved, as_of)
    return ExpiryResult(as_of, tuple(moved), held, tuple(posted), dry_run)


def save_agreement_terms(conn: Connection, agreement: Agreement) -> str:
    """Store an agreement version (``royalties.records.save_agreement``) inside the caller's write
    transaction, refusing a newer version whose ``escrow_period_days`` is shorter than the newest one's while
    money accrued under its id is still in escrow: a period already running may be lengthened, never cut."""
    newest = newest_agreements(conn).get(agreement.id)
    if (
        newest is not None
        and agreement.version > newest.version
        and agreement.escrow_period_days < newest.escrow_period_days
    ):
        terms = _terms(conn)
        running = [
            d
            for events in _events(conn, None).values()
            for d in _replay(events, terms)
            if d.agreement_id == agreement.id
        ]
        if running:
            raise ConflictError(
                f"agreement {agreement.id} version {agreement.version} would shorten escrow_period_days from "
                f"{newest.escrow_period_days} to {agreement.escrow_period_days} while {len(running)} deposit(s) "
                f"accrued under it are still in escrow; keep {newest.escrow_period_days} days or more"
            )
    return save_agreement(conn, agreement.id, agreement.version, agreement.body, agreement.body_sha256)


@dataclass(frozen=True)
class Unclaimed:
    """One line of the published list: a name and an amount, where it is held, since when and until when.
    ``holder`` (``name:7``) is internal: the edges show it only to those who link names to people."""

    name: str
    currency: str
    amount_microunits: int
    status: str  # "escrow" (held under the name) or "fund" (moved past its period; still claimable)
    owed_since: dt.date | None  # escrow: the oldest deposit still held
    due_on: dt.date | None  # escrow: when the next deposit moves to ``fund``; None: held until claimed
    fund: str | None  # escrow: where it goes when due; fund: the fund that holds it
    moved_on: dt.date | None  # fund: when it was first moved there
    holder: str = field(compare=False)

    def to_json(self) -> dict[str, Any]:
        """What the edges publish of the line: no holder id."""
        dates = {k: d.isoformat() if d else None for k, d in (("owed_since", self.owed_since), ("due_on", self.due_on))}
        return {
            "name": self.name,
            "currency": self.currency,
            "amount": format_amount(self.amount_microunits, self.currency),
            "amount_microunits": self.amount_microunits,
            "status": self.status,
            **dates,
            "fund": self.fund,
            "moved_on": self.moved_on.isoformat() if self.moved_on else None,
        }


def _display(conn: Connection, holders: Collection[str]) -> dict[str, str]:
    """The public name of each holder: a credited name, a person's handle, or a work's title."""
    ids = {kind: [int(h.split(":")[1]) for h in holders if h.startswith(f"{kind}:")] for kind in ("name", "person")}
    shown = {
        f"name:{r.id}": r.name
        for r in conn.execute(select(names.c.id, names.c.name).where(names.c.id.in_(ids["name"])))
    }
    shown |= {
        f"person:{r.id}": r.handle
        for r in conn.execute(select(people.c.id, people.c.handle).where(people.c.id.in_(ids["person"])))
    }
    works = [h.removeprefix("work:") for h in holders if h.startswith("work:")]
    for work_id, title in work_titles(conn, works).items():
        shown[f"work:{work_id}"] = f"{title} (work, nobody credited yet)"
    return shown


def published_unclaimed(
    conn: Connection, query: str = "", *, fund: str | None = None, limit: int = 100
) -> list[Unclaimed]:
    """The published list of unclaimed residuals, largest first: what escrow holds (from the day it is owed)
    and what funds hold past the escrow period, whose name contains ``query``, of ``fund`` when given."""
    if not 1 <= limit <= PUBLISHED_ROWS_MAX:
        raise ValidationError(f"limit must be between 1 and {PUBLISHED_ROWS_MAX}")
    escrow = {k: v for k, v in account_balances(conn, kind="escrow").items() if v > 0}
    funds = {k: v for k, v in account_balances(conn, kind="fund").items() if v > 0}
    holder_of = {k: str(parse_account_key(k)[1]) for k in escrow}
    holder_of |= {k: str(parse_account_key(k)[1]).partition("/")[2] for k in funds}
    shown = _display(conn, set(holder_of.values()))
    needle = query.casefold()
    match = {k for k, h in holder_of.items() if needle in shown.get(h, "a work").casefold()}
    rows = [
        Unclaimed(
            shown.get(holder_of[h.account], "a work"),
            parse_account_key(h.account)[2],
            h.amount_microunits,
            "escrow",
            h.owed_since,
            h.due_on,
            h.fund,
            None,
            holder_of[h.account],
        )
        for h in escrow_schedule(conn, sorted(k for k in escrow if k in match))
    ]
    created = dict(
        conn.execute(select(accounts.c.key, accounts.c.created_at).where(accounts.c.key.in_(sorted(funds)))).all()
    )
    for key in sorted(k for k in funds if k in match):
        fund_id = str(parse_account_key(key)[1]).partition("/")[0]
        moved_on = dt.date.fromisoformat(str(created[key])[:10])
        rows.append(
            Unclaimed(
                shown.get(holder_of[key], "a work"),
                parse_account_key(key)[2],
                funds[key],
                "fund",
                None,
                None,
                fund_id,
                moved_on,
                holder_of[key],
            )
        )
    if fund is not None:
        rows = [r for r in rows if r.fund == fund]
    rows.sort(key=lambda r: (-r.amount_microunits, r.name, r.status, r.holder))
    return rows[:limit]


CSV_COLUMNS = ("name", "currency", "amount", "amount_microunits", "status", "owed_since", "due_on", "fund", "moved_on")


def _csv_safe(value: str) -> str:
    """Text a spreadsheet will not run as a formula: a leading = + - @ tab or CR gets a ' in front."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def unclaimed_csv(rows: list[Unclaimed]) -> str:
    """The published list as CSV: names and amounts, where and since when; no ids, nothing private."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        dates = [d.isoformat() if d else "" for d in (r.owed_since, r.due_on)]
        writer.writerow(
            [
                _csv_safe(r.name),
                r.currency,
                format_amount(r.amount_microunits, r.currency),
                r.amount_microunits,
                r.status,
                *dates,
                r.fund or "",
                r.moved_on.isoformat() if r.moved_on else "",
            ]
        )
    return out.getvalue()
