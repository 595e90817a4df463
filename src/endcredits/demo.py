"""``endcredits demo``: the whole flow on real data, on the embedded default.

The ABC folk tunes bundled in the music21 wheel are the works; the composers, transcribers and
collectors named in them are the credited humans. The demo registers them, records consent from the
corpus licences (the ``essenFolksong`` encodings are non-commercial: excluded from this commercial
model) and from one person's own opt-out; a musicians' guild vouches for most of the people who join
with W3C verifiable credentials (the rest, and every unclaimed name, wait in escrow); the operator trusts
the guild to speak for its members, whose terms (consent defaults and a longer escrow period with the
guild's fund) they inherit; one tune is under an RSL licence and a Content-Usage header; it builds the
manifest, trains a small character-level language model on exactly the manifest's tunes (recording the
training run under the agreement posts the fee the licence asks per training use), generates
tunes that earn revenue, attributes each to the training tunes with TRAK (Kronecker-projected
per-example gradients), accrues residuals in two batches, lets one person verify and claim their
escrow, writes statements and a payout file, settles it with a simulated bank status report, and
checks that every microunit is accounted for. It ends with what the guild sees of its members (aggregates
only) and the model's EU AI Act training summary (JSON and HTML) in the data folder.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from endcredits.attribution.charlm import TrainedLM, generate, save_lm, train_char_lm
from endcredits.attribution.models import CharLMModel
from endcredits.attribution.pipeline import Attribution, attribute_manifest, checkpoint_path, manifest_texts
from endcredits.attribution.settings import K_DEFAULT, AttributionSettings
from endcredits.consent.guilds import load_guild_terms
from endcredits.consent.records import add_grants
from endcredits.consent.rules import Grant
from endcredits.errors import InvariantError
from endcredits.interop._common import Window
from endcredits.interop.abc import iter_tunes
from endcredits.interop.abc_corpus import AbcImportReport, import_abc_corpus
from endcredits.interop.licences import import_licences, preference_readings, rsl_reading
from endcredits.ledger import parse_account_key
from endcredits.ledger.accrue import ScoreSource, accrue_scored
from endcredits.ledger.escrow import claim_escrow
from endcredits.ledger.guilds import guild_view
from endcredits.ledger.records import accrued_by_account, balance_totals
from endcredits.ledger.training_fees import TRANSFER_CODE as TRAINING_FEE
from endcredits.ledger.training_fees import record_training
from endcredits.ledger.verify import verify
from endcredits.manifest.eu_summary import ProviderFacts, write_eu_training_summary
from endcredits.manifest.records import ManifestRecord, set_manifest_checkpoint
from endcredits.money import format_amount
from endcredits.payouts.batches import PayoutBatchResult, apply_payout_status, pay_out
from endcredits.payouts.files import Debtor
from endcredits.payouts.iban import make_test_iban
from endcredits.payouts.pain002 import parse_pain002, write_pain002
from endcredits.payouts.statements import Statement, build_statement
from endcredits.registry.identity.issuer import STATUS_LIST_FILE, Issuer, generate_key, init_issuer, issue_credential
from endcredits.registry.identity.persons import attach_credential, credentialed_people_count
from endcredits.registry.identity.trust import TrustList, load_trust
from endcredits.registry.identity.trusted import trust_issuer
from endcredits.registry.private import KEY_FILE_ENV, load_key, new_key_text
from endcredits.registry.records import (
    add_person,
    claim_name,
    holder_labels,
    name_ids,
    people_list,
    work_rows,
    works_of_person,
)
from endcredits.royalties import Agreement, parse_agreement
from endcredits.royalties.output_contents import record_output_contents
from endcredits.royalties.records import save_agreement
from endcredits.royalties.usage import OutputIn
from endcredits.store.engine import Store, init_store
from endcredits.store.files import private_dir, write_private

CURRENCY = "EUR"
MODEL_ID = "abc-charlm-v1"
MODEL_USES = ("ai_generative_training", "commercial")
TRAIN_STEPS_DEFAULT = 1_000  # about a minute on a 2-core CPU with the full corpus
DEMO_EXCLUDE = ("*norm*", "embed.weight")
"""Left out of the demo's features, by name: the character embedding and the layer norms. The demo has
always featurized the linear layers alone (half the time of a vmap pass more); its figures stay the same."""

DEMO_AGREEMENT = """\
# The demo's residual policy. Rates are exact decimal text.
id = "abc-demo"
version = 1
currency = "EUR"
pool_rate = "0.30"              # 30% of each output's revenue goes to the people behind the training data
rights_holder_share = "0.25"    # of a work's share, to its rights holder (none in this corpus: credits take all)
lineage_pass_through = "0.20"
baseline_share = "0"
payout_threshold = "0.50"       # balances below 0.50 EUR carry forward to a later payout
escrow_period_days = 1095
negative_influence = "zero"
licence_terms = ["output_floor"] # a work whose licence asks a price per use is paid at least that per output

[role_weights]
"endcredits:composer" = 3       # wrote the music
"endcredits:transcriber" = 1    # made the encoding the model actually read
"endcredits:collector" = 1      # wrote the tune down from a player
"""

RSL_TEMPLATE = """\
<?xml version="1.0" encoding="UTF-8"?>
<rsl xmlns="https://rslstandard.org/rsl">
  <content url="{site}*">
    <copyright type="person">the {noun}'s {author}</copyright>
    <license>
      <permits type="usage">ai-train</permits>
      <payment type="training">
        <amount currency="EUR">0.50</amount>
      </payment>
    </license>
    <license>
      <permits type="usage">ai-all</permits>
      <payment type="use">
        <amount currency="EUR">0.002</amount>
      </payment>
    </license>
  </content>
</rsl>
"""
"""The RSL 1.0 licence one demo work is published under: training on it costs 0.50 EUR per training use, and
every AI use 0.002 EUR per use. The agreement applies both: the first as a fee the training run owes, the
second as a floor per output (docs/concepts/licences.md)."""

HEADERS_TEMPLATE = """\
HTTP/1.1 200 OK
Content-Type: {content_type}
Content-Usage: train-ai=y, search=y
Link: <{site}license.xml>; rel="license"; type="application/rsl+xml"
"""
"""The HTTP response that serves that work: IETF AI Preferences allow training, and a link to the licence."""


@dataclass(frozen=True)
class DemoLicence:
    """Where a demo's licensed work is published (``site``, a URL folder), as what (``content_type``, and
    ``suffix`` of its file name), and how the licence names the work and its maker."""

    site: str
    content_type: str
    suffix: str
    noun: str
    author: str

    @property
    def rsl(self) -> str:
        return RSL_TEMPLATE.format(site=self.site, noun=self.noun, author=self.author)

    @property
    def headers(self) -> str:
        return HEADERS_TEMPLATE.format(site=self.site, content_type=self.content_type)


ABC_LICENCE = DemoLicence("https://tunes.example/abc/", "text/vnd.abc", ".abc", "tune", "composer")
DEMO_RSL, DEMO_HEADERS = ABC_LICENCE.rsl, ABC_LICENCE.headers

DEMO_GUILD_TERMS = """\
# The {kind}' guild's terms for its members (docs/concepts/guilds.md).
effective_from = "2026-01-01T00:00:00Z"

[consent]                       # what a member who has said nothing refuses
ai_input = "notAllowed"         # no work handed to a model at inference (retrieval) without asking
ai_index = "notAllowed"         # no work put in an index built for AI systems without asking

[escrow]
period_days = 1825              # unclaimed money waits five years (the agreement says three) ...
fund = "{kind}-guild-fund"       # ... then goes to the guild's fund, where a late claim is still paid
"""
"""The guild's terms (``{kind}``: whose guild), loaded once the operator trusts it: neither refusal touches the
demo's model (generative training, commercial), so the manifest and the money are the same as without them."""

PAYOUT_DAY = dt.date(2026, 12, 1)
REPORT_AT = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
"""When the demo's reports look at the store: the day the bank answered its payout."""


def demo_provider(model_name: str, other_sources: str) -> ProviderFacts:
    """Facts of the EU training summary that endcredits does not hold, as a demo's operator states them."""
    return ProviderFacts(
        provider_name="endcredits demo operator",
        model_name=model_name,
        user_data="none: the model trained only on the works of its manifest",
        synthetic_data="none",
        other_sources=other_sources,
    )


DEMO_PROVIDER = demo_provider(
    f"{MODEL_ID} (character-level LM of ABC folk tunes)", "the ABC folk tunes bundled in the music21 Python package"
)
DEBTOR = Debtor(name="endcredits demo operator", iban=make_test_iban("DE", 1), bic="TESTDEFF")


_GUILD_SUMS = (("accrued", "accrued"), ("payable now", "payable"), ("in escrow", "escrow"))
"""The sums of a guild's view the demo prints: (words, key before ``_microunits``)."""

StepProgress = Callable[[str, float, float], None]
"""``(task, done, total)``: how far a long step has come (the CLI draws a progress bar from it)."""


@dataclass
class DemoSummary:
    data_dir: str
    backend: str
    works: int
    people: int
    names: int
    excluded_works: int
    manifest_id: str
    merkle_root: str
    checkpoint_sha256: str  # the trained model's parameters and vocabulary (TrainedLM.checksum)
    train_steps: int
    train_loss: float
    outputs: int
    revenue_microunits: int
    pool_microunits: int
    paid_microunits: int
    escrow_microunits: int
    suspense_microunits: int
    top_earners: list[dict[str, Any]] = field(default_factory=list)
    payout_batch: dict[str, Any] = field(default_factory=dict)
    statement: dict[str, Any] = field(default_factory=dict)
    licence: dict[str, Any] = field(default_factory=dict)  # the imported licence: work, notes, its term
    training_fees: dict[str, Any] = field(default_factory=dict)  # what the training run owed under licences
    guild: dict[str, Any] = field(default_factory=dict)  # the guild terms applied and what the guild sees
    eu_training_summary: dict[str, Any] = field(default_factory=dict)  # its files and main figures
    verified: bool = False
    attribution: dict[str, Any] = field(default_factory=dict)
    credentials: int = 0  # people verified by a guild credential (W3C VC 2.0, eddsa-jcs-2022)
    timings_s: dict[str, float] = field(default_factory=dict)
    portal_command: str = ""  # how to serve the portal over this data directory
    portal_login_url: str = ""  # a one-time signed-in link for the top verified earner
    conserved: bool = False  # pool = paid + escrow + suspense, as ledger.records.balance_totals checks it
    problems: list[str] = field(default_factory=list)  # what verify found (none when verified)
    corpus: str = "abc"  # "abc" (folk tunes, a character LM) or "openclipart" (drawings, a DDPM)
    work_noun: str = "tunes"

    def to_json(self) -> dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "corpus": self.corpus,
            "backend": self.backend,
            "currency": CURRENCY,
            "works": self.works,
            "people": self.people,
            "credited_names": self.names,
            "excluded_works": self.excluded_works,
            "manifest_id": self.manifest_id,
            "merkle_root": self.merkle_root,
            "checkpoint_sha256": self.checkpoint_sha256,
            "train_steps": self.train_steps,
            "train_loss": round(self.train_loss, 4),
            "outputs": self.outputs,
            "revenue_microunits": self.revenue_microunits,
            "pool_microunits": self.pool_microunits,
            "paid_microunits": self.paid_microunits,
            "escrow_microunits": self.escrow_microunits,
            "suspense_microunits": self.suspense_microunits,
            "conserved": self.conserved,
            "top_earners": self.top_earners,
            "payout_batch": self.payout_batch,
            "statement": self.statement,
            "licence": self.licence,
            "training_fees": self.training_fees,
            "guild": self.guild,
            "eu_training_summary": self.eu_training_summary,
            "verified": self.verified,
            "attribution": self.attribution,
            "verified_by_credential": self.credentials,
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
            "portal_login_url": self.portal_login_url,
        }

    def print(self, console: Console) -> None:
        c = CURRENCY
        console.print(
            f"\n[bold]endcredits demo[/bold] — {self.works} works, {self.names} credited names, "
            f"{self.people} registered people; {self.excluded_works} works excluded by consent"
        )
        console.print(
            f"manifest {self.manifest_id}, root {self.merkle_root[:16]}…; model trained {self.train_steps} steps "
            f"(loss {self.train_loss:.3f}); {self.outputs} outputs earned "
            f"{format_amount(self.revenue_microunits, c)} {c}"
        )
        t = Table(title="top earners")
        for col in ("who", "status", "earned"):
            t.add_column(col)
        for e in self.top_earners:
            t.add_row(e["name"], e["status"], f"{e['earned']} {c}")
        console.print(t)
        console.print(
            f"{self.credentials} of {self.people} people verified by the guild's verifiable credentials; "
            "the others, and every unclaimed name, wait in escrow"
        )
        a = self.attribution
        console.print(
            f"attribution run {a.get('run_id')}: {a.get('method')} (k={a.get('k')}) over {a.get('works')} training "
            f"{self.work_noun}; output "
            f"{a.get('output_id')} is explained best by: "
            + ", ".join(f"{w['title']} ({w['score']:.3g})" for w in a.get("top_works", [])[:3])
        )
        console.print(f"escrow (unclaimed or unverified): {format_amount(self.escrow_microunits, c)} {c}")
        console.print(
            f"payout batch {self.payout_batch.get('batch_id')}: {self.payout_batch.get('items')} payments, "
            f"{self.payout_batch.get('total')} {c} → {self.payout_batch.get('pain001')}"
        )
        console.print(
            f"statement: {self.statement.get('path')} ({self.statement.get('lines')} lines, reconciles: "
            f"{self.statement.get('reconciles')})"
        )
        for cited in self.statement.get("licence_terms", []):
            console.print(f"  {self.statement.get('licence_lines')} lines raised to a licence floor: {cited}")
        fees = self.training_fees
        if fees:
            console.print(
                f"training fees: the training run owed {fees['total']} {c} for {fees['works']} licensed "
                f"{self.work_noun[:-1] if fees['works'] == 1 else self.work_noun} ({fees['event_id']}, "
                f"{_count(fees['lines'], 'line')}, paid from the pool)"
            )
            st = fees.get("statement", {})
            for cited in st.get("licence_terms", []):
                console.print(f"  statement {st['path']}: {_count(st['lines'], 'line')}, {st['accrued']} {c}: {cited}")
        self._print_reports(console)
        mark = "OK" if self.conserved else "BROKEN"
        fee_part = int(self.training_fees.get("total_microunits", 0))
        of_which = f" (training fees {format_amount(fee_part, c)} of it)" if fee_part else ""
        console.print(
            f"[bold]conservation {mark}[/bold]: pool {format_amount(self.pool_microunits, c)}{of_which} = paid "
            f"{format_amount(self.paid_microunits, c)} + escrow {format_amount(self.escrow_microunits, c)} + "
            f"suspense {format_amount(self.suspense_microunits, c)} {c} (to the microunit: "
            f"{self.pool_microunits} = {self.paid_microunits} + {self.escrow_microunits} + {self.suspense_microunits})"
        )
        console.print(f"verify: {'passed' if self.verified else 'FAILED'}")
        if self.portal_login_url:
            console.print(f"portal: run `{self.portal_command}` and open {self.portal_login_url}", soft_wrap=True)

    def _print_reports(self, console: Console) -> None:
        """The guild terms applied, what the guild sees of its members, and the EU training summary's files
        (printed without markup or emoji: a ``did:key:`` would otherwise become a picture of a key)."""
        g, view = self.guild, self.guild.get("view", {})
        if g:
            console.print(
                f"{g['terms']} applied to its members ({g['file']}): refuses by default "
                + ", ".join(u for u, d in g["consent"].items() if d == "notAllowed")
                + f"; escrow {g['escrow']['period_days']} days, then to {g['escrow']['fund']}",
                markup=False,
                emoji=False,
            )
            sums = {w: int((view.get(f"{k}_microunits") or {}).get(CURRENCY, "0")) for w, k in _GUILD_SUMS}
            seen = (
                ", ".join(f"{w} {format_amount(a, CURRENCY)} {CURRENCY}" for w, a in sums.items())
                if view.get("accrued_microunits") is not None
                else f"sums withheld below {view.get('withheld_below_members')} members"
            )
            console.print(f"  the guild sees its {view.get('members')} members in aggregate: {seen}")
        eu = self.eu_training_summary
        if eu:
            console.print(f"EU AI Act training summary: {eu['json']} and {eu['html']}", markup=False, emoji=False)


def _count(n: int, noun: str) -> str:
    """``1 line``, ``3 lines``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass
class DemoGuild:
    """The demo's guild (of ``kind``: musicians for the tunes, illustrators for the drawings): an issuer of
    verifiable credentials the operator trusts; ``applied``: its terms, once loaded (``apply_guild_terms``)."""

    issuer: Issuer
    trust: TrustList
    status_lists: dict[str, dict[str, Any]]
    kind: str = "musicians"
    applied: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, directory: Path, at: dt.datetime, kind: str) -> DemoGuild:
        issuer = init_issuer(directory, status_list_id="https://guild.example/status/1", at=at)
        status = json.loads((directory / STATUS_LIST_FILE).read_text(encoding="utf-8"))
        return cls(issuer, load_trust([issuer.key.did]), {issuer.status_list_id: status}, kind)

    def vouch(self, conn: Any, person_id: int, at: dt.datetime) -> None:
        """Issue a two-year membership credential to a pseudonymous subject and attach it to the person."""
        subject = generate_key().did  # the member's own key; the guild never learns more than this DID
        vc = issue_credential(
            self.issuer, subject, valid_from=at - dt.timedelta(days=1), valid_until=at + dt.timedelta(days=730), at=at
        )
        attach_credential(conn, person_id, vc, self.trust, self.status_lists, at)


def credit_counts(names_per_work: Iterable[Iterable[str]]) -> dict[str, int]:
    """How many works credit each name."""
    counts: dict[str, int] = {}
    for names in names_per_work:
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return counts


def _demo_people(
    store: Store, counts: Mapping[str, int], names_to_join: int, guild: DemoGuild, at: dt.datetime
) -> dict[str, int]:
    """The most credited names join as people: most are verified by the guild's credential, one not yet,
    one has no bank account."""
    joining = sorted(counts, key=lambda n: (-counts[n], n))[:names_to_join]
    joined: dict[str, int] = {}
    with store.write() as conn:
        ids = name_ids(conn, joining)
        for i, name in enumerate(joining):
            has_bank = i != 1
            pid = add_person(
                conn,
                name,
                iban=make_test_iban("DE", 100 + i) if has_bank else None,
                bic="TESTDEFF" if has_bank else None,
            )
            claim_name(conn, ids[name], pid)
            if i not in (2, 3):  # person 2 verifies later in the demo; person 3 has not yet
                guild.vouch(conn, pid, at)
            joined[name] = pid
    return joined


def _attribution_summary(store: Store, att: Attribution) -> dict[str, Any]:
    """The method, and the works that explain the first output best, by title."""
    top = att.top_works(0)
    with store.read() as conn:
        rows = work_rows(conn, [w for w, _ in top])
    return {
        "run_id": att.run_id,
        "method": att.method,
        "weaker": att.weaker,
        "k": att.settings.k,
        "works": len(att.work_ids),
        "output_id": att.output_ids[0],
        "top_works": [{"work_id": w, "title": rows[w].title if w in rows else "", "score": s} for w, s in top],
    }


def _earners(store: Store, top_n: int) -> list[dict[str, Any]]:
    with store.read() as conn:
        earned: dict[str, int] = {}
        for key, amount in accrued_by_account(conn, codes=("accrual", TRAINING_FEE)).items():
            kind, holder, _ = parse_account_key(key)
            if kind in ("payable", "escrow") and holder is not None:
                earned[holder] = earned.get(holder, 0) + amount
        top = sorted(earned.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
        labels = holder_labels(conn, [h for h, _ in top])
    rows = []
    for holder, amount in top:
        if holder.startswith("person:"):
            name, ok = labels.get(holder, (holder, False))
            status = "verified" if ok else "not yet verified (escrow)"
        elif holder.startswith("name:"):
            name, status = labels.get(holder, (holder, None))[0], "unclaimed name (escrow)"
        else:
            name, status = holder[:24], "work with no credits (escrow)"
        rows.append(
            {
                "holder": holder,
                "name": name,
                "status": status,
                "earned_microunits": amount,
                "earned": format_amount(amount, CURRENCY),
            }
        )
    return rows


@dataclass
class DemoRun:
    """What the demo's steps hand each other."""

    store: Store
    progress: Callable[[str], None]
    step: StepProgress | None
    timings: dict[str, float] = field(default_factory=dict)
    clock: float = field(default_factory=time.monotonic)
    key_file: Path | None = None  # the demo's own key for sealing IBANs, when the operator configured none
    training_fees: dict[str, Any] = field(default_factory=dict)  # what recording the training run posted

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.timings[name] = now - self.clock
        self.clock = now


def demo_key(run: DemoRun) -> Path | None:
    """The demo's people have IBANs, which are sealed at rest with the operator's key. With none configured,
    the demo makes its own (an operator keeps theirs outside the data directory), for this run only."""
    if load_key() is not None:
        return None
    key_file = run.store.data_dir / "demo-secret.key"
    if not key_file.exists():
        write_private(key_file, (new_key_text() + "\n").encode("utf-8"))
    os.environ[KEY_FILE_ENV] = str(key_file)  # restored when run_demo returns
    run.key_file = key_file
    run.progress(f"payment details are sealed with a demo key in {key_file} ({KEY_FILE_ENV})")
    return key_file


def _register(run: DemoRun, tunes_max: int | None) -> tuple[AbcImportReport, list[int], DemoGuild, Agreement]:
    """The corpus, the people who join (most verified by the guild), one opt-out, and the agreement."""
    tunes = list(iter_tunes(limit=tunes_max))
    report = import_abc_corpus(run.store, tunes=tunes)
    run.progress(
        f"registered {report.works} tunes, {report.credits} credits, {report.names} credited names; "
        f"{report.linked} tunes match one registered before (fingerprint) and are linked to it; "
        f"{report.non_commercial_works} tunes are licensed non-commercial only"
    )
    joined, guild, agreement = join_and_agree(
        run, credit_counts([c.name for c in t.credits] for t in tunes), DEMO_AGREEMENT, "musicians"
    )
    run.lap("register")
    return report, joined, guild, agreement


def join_and_agree(
    run: DemoRun, counts: Mapping[str, int], agreement_text: str, guild_kind: str
) -> tuple[list[int], DemoGuild, Agreement]:
    """The eight most credited names join (most verified by the ``guild_kind`` guild, whose terms they then
    inherit: ``apply_guild_terms``), the sixth opts out of generative training, and the residual policy
    ``agreement_text`` is saved."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    guild = DemoGuild.start(run.store.data_dir / "guild", now, guild_kind)
    joined = list(_demo_people(run.store, counts, names_to_join=8, guild=guild, at=now).values())
    with run.store.write() as conn:
        if len(joined) > 5:
            # One person opts out of generative training for five years: their works leave the manifest.
            opt_out = Grant(
                subject_kind="person",
                subject_id=str(joined[5]),
                use="ai_generative_training",
                decision="notAllowed",
                valid_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                valid_until=dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
                perpetual=False,
                source="person's own request",
            )
            add_grants(conn, [opt_out])
        agreement = parse_agreement(agreement_text)
        save_agreement(conn, agreement.id, agreement.version, agreement.body, agreement.body_sha256)
    guild.applied = apply_guild_terms(run, guild)
    return joined, guild, agreement


def apply_guild_terms(run: DemoRun, guild: DemoGuild) -> dict[str, Any]:
    """The operator trusts the demo's guild to speak for its members and loads its terms (``DEMO_GUILD_TERMS``,
    written into the guild's folder as the guild would send them): its members inherit them from here on."""
    issuer = guild.issuer.key.did
    path = guild.issuer.directory / "terms.toml"
    write_private(path, DEMO_GUILD_TERMS.format(kind=guild.kind).encode("utf-8"))
    with run.store.write() as conn:
        trust_issuer(conn, issuer, note=f"the demo's {guild.kind}' guild, which vouches for its members")
        terms, _ = load_guild_terms(conn, issuer, path.read_text(encoding="utf-8"), path.name)
    run.progress(f"the operator trusts the guild {issuer[:24]}…; its members inherit {terms.label}")
    return {
        "issuer": issuer,
        "terms": terms.label,
        "version": terms.version,
        "file": str(path),
        "consent": dict(terms.consent),
        "escrow": {"period_days": terms.escrow_period_days, "fund": terms.escrow_fund},
    }


def guild_report(run: DemoRun, applied: dict[str, Any]) -> dict[str, Any]:
    """What the guild whose terms were ``applied`` sees of its members after the run: aggregates only."""
    with run.store.read() as conn:
        view = guild_view(conn, applied["issuer"], REPORT_AT).to_json()
    return applied | {"view": {k: v for k, v in view.items() if k != "issuer"}}


def eu_report(run: DemoRun, model_id: str, facts: ProviderFacts) -> dict[str, Any]:
    """Write ``model_id``'s EU AI Act training summary (JSON and HTML, 0600) into the data folder's
    ``reports``; return the files and the figures the demo shows."""
    files = write_eu_training_summary(run.store, model_id, run.store.data_dir / "reports", facts)
    sources = files.summary["2_list_of_data_sources"]
    opt_outs = files.summary["3_data_processing"]["tdm_opt_outs"]
    run.progress(f"EU training summary of {model_id}: {files.json_path} and {files.html_path.name}")
    return {
        "json": str(files.json_path),
        "html": str(files.html_path),
        "modalities": sorted(files.summary["1_general_information"]["modalities"]),
        "works_by_source": {
            k: sources[k]["works"]
            for k in ("publicly_available_datasets", "licensed_or_private", "crawled_and_scraped", "other")
        },
        "works_excluded": opt_outs["works_excluded"]["value"],
    }


def demo_manifest(run: DemoRun, model_id: str, description: str, excluded_by: str) -> ManifestRecord:
    """The manifest of a demo model (generative training, commercial) as of 2026-10-01, opt-out by default;
    ``excluded_by`` says in the progress line what left it out."""
    from endcredits.manifest.build import build_manifest

    manifest = build_manifest(
        run.store,
        model_id=model_id,
        uses=MODEL_USES,
        as_of=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        default="opt-out",
        description=description,
    )
    run.progress(
        f"manifest {manifest.id}: {len(manifest.included)} included, {len(manifest.excluded)} excluded "
        f"({excluded_by}), root {manifest.merkle_root[:16]}…"
    )
    return manifest


def _manifest(run: DemoRun) -> tuple[ManifestRecord, list[str]]:
    manifest = demo_manifest(
        run, MODEL_ID, "character-level LM of ABC folk tunes (demo)", "non-commercial licences and one opt-out"
    )
    texts = manifest_texts(run.store, manifest)
    run.lap("manifest")
    return manifest, texts


def _train(
    run: DemoRun, manifest: ManifestRecord, texts: list[str], train_steps: int, seed: int, agreement: Agreement
) -> TrainedLM:
    """Train exactly ``train_steps`` steps on the manifest's tunes; save and record the checkpoint (under
    ``agreement``: its training fees are posted)."""
    run.progress(f"training a character-level LM on {len(texts)} tunes for {train_steps} steps on CPU…")
    started = time.monotonic()
    step = run.step
    # A fixed number of steps and no time budget (train_char_lm requires one: infinity never stops it).
    lm = train_char_lm(
        texts,
        seed=seed,
        steps_max=train_steps,
        time_s_max=math.inf,
        progress=(lambda i, _loss: step("training", i, train_steps)) if step else None,
    )
    checkpoint = checkpoint_path(run.store, MODEL_ID)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    save_lm(lm, checkpoint)
    checkpoint_sha256 = lm.checksum()
    bind_checkpoint(run, manifest, checkpoint_sha256, seed, started, agreement)
    run.progress(f"trained {lm.steps} steps, loss {lm.final_loss:.3f}; checkpoint sha256 {checkpoint_sha256[:16]}…")
    run.lap("train")
    return lm


def bind_checkpoint(
    run: DemoRun, manifest: ManifestRecord, checkpoint_sha256: str, seed: int, started: float, agreement: Agreement
) -> None:
    """Bind the manifest to the trained checkpoint and record the training run that made it (``started``:
    ``time.monotonic()`` when training began) under ``agreement``, which posts the training fees its works'
    licence terms price (``run.training_fees``); the attribution pipeline refuses any other checkpoint."""
    with run.store.write() as conn:
        set_manifest_checkpoint(conn, manifest.id, checkpoint_sha256)
    trained_at = dt.datetime.now(dt.UTC)
    _run, fees = record_training(
        run.store,
        run_id=f"{manifest.id}/train-seed{seed}",
        manifest_id=manifest.id,
        checkpoint_sha256s=[checkpoint_sha256],
        finished_at=trained_at,
        started_at=trained_at - dt.timedelta(seconds=time.monotonic() - started),
        agreement=agreement,
    )
    if fees is not None and fees.event_id is not None:
        owed = f"{format_amount(fees.total_microunits, fees.currency)} {fees.currency}"
        run.progress(f"training fees: {owed} for {fees.works} licensed works, posted as {fees.event_id}")
        run.training_fees = fees.to_json() | {"total": format_amount(fees.total_microunits, fees.currency)}


def priced_outputs(model_id: str, outputs_n: int, seed: int) -> list[OutputIn]:
    """``outputs_n`` outputs of ``model_id`` that earn 0.05 .. 3.00 EUR each, over two months (seeded)."""
    rng = np.random.default_rng(seed)
    revenue = rng.integers(5_000_000, 300_000_000, size=outputs_n).tolist()  # in microunits
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    span_s = 61 * 24 * 3600
    times = sorted(int(x) for x in rng.integers(0, span_s, size=outputs_n))
    return [
        OutputIn(
            f"out-{i:05d}",
            model_id,
            int(revenue[i]),
            CURRENCY,
            (start + dt.timedelta(seconds=times[i])).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        for i in range(outputs_n)
    ]


def _outputs(run: DemoRun, lm: TrainedLM, outputs_n: int, seed: int) -> tuple[list[OutputIn], list[str]]:
    """Generated tunes that earn 0.05 .. 3.00 EUR each, over two months."""
    samples = generate(lm, n=outputs_n, seed=seed + 1, length_max=400)
    outs = priced_outputs(MODEL_ID, outputs_n, seed)
    # Kept so each statement shows the tune that paid its reader.
    record_output_contents(
        run.store, [(o.output_id, text.encode("utf-8")) for o, text in zip(outs, samples, strict=True)]
    )
    run.lap("generate")
    return outs, samples


def _accrue(run: DemoRun, manifest: ManifestRecord, agreement: Agreement, outs: list[OutputIn], run_id: str) -> None:
    """Two batches from the recorded attribution run, each through the same path as `endcredits accrue --run`
    and the API's usage batches."""
    half = max(1, len(outs) // 2)
    for b, (lo, hi) in enumerate(((0, half), (half, len(outs)))):
        part = outs[lo:hi]
        if not part:
            continue
        summary = accrue_scored(
            run.store,
            part,
            None,
            source=ScoreSource.run(run_id),
            per=None,
            agreement_id=agreement.id,
            batch_id=f"demo-batch-{b + 1}",
            manifest_id=manifest.id,
        )
        run.progress(f"accrued batch {b + 1}: {len(part)} outputs, {summary.lines} lines")
    run.lap("accrue")


def _late_verification(run: DemoRun, joined: list[int], guild: DemoGuild) -> None:
    """A person who joined late verifies now: what escrow held for them is released."""
    if len(joined) <= 2:
        return
    late = joined[2]
    with run.store.write() as conn:
        guild.vouch(conn, late, dt.datetime.now(dt.UTC).replace(microsecond=0))
    claim = claim_escrow(run.store, late)
    run.progress(
        f"person {late} verified; released from escrow: "
        f"{format_amount(claim.moved_microunits.get(CURRENCY, 0), CURRENCY)} {CURRENCY}"
    )


def _payout(run: DemoRun, agreement: Agreement) -> PayoutBatchResult:
    """A payout batch; the bank answers that all settled but one, which returns to the person's balance."""
    batch = pay_out(
        run.store, batch_id="demo-payout-1", agreement_id=agreement.id, debtor=DEBTOR, execution_date=PAYOUT_DAY
    )
    if batch.items:
        statuses = {item.end_to_end_id: "ACSC" for item in batch.items}  # settlement completed
        statuses[batch.items[-1].end_to_end_id] = "RJCT"  # rejected
        report_xml = write_pain002(
            statuses,
            original_message_id=batch.batch_id,
            message_id="demo-bank-1",
            created_at=dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
        )
        write_private(run.store.data_dir / "payouts" / batch.batch_id / "pain002.xml", report_xml)
        apply_payout_status(run.store, batch.batch_id, parse_pain002(report_xml))
    run.lap("payout")
    return batch


def _write_statement(run: DemoRun, person_id: int, period: str) -> tuple[Statement, Path]:
    """``person_id``'s statement for ``period``, written as JSON and CSV (``path`` without its suffix); it must
    reconcile with the ledger."""
    st = build_statement(run.store, person_id, period, CURRENCY)
    path = private_dir(run.store.data_dir / "statements") / f"person-{person_id}-{period}"
    write_private(path.with_suffix(".json"), (st.to_json() + "\n").encode("utf-8"))
    write_private(path.with_suffix(".csv"), st.to_csv().encode("utf-8"))
    if not st.reconciles():
        raise InvariantError(f"statement of person {person_id} for {period} does not reconcile with the ledger")
    return st, path


def _fee_statement(run: DemoRun, person_id: int | None) -> dict[str, Any]:
    """What recording the training run posted (``run.training_fees``) and, for the licensed work's person,
    their statement for the month the fees were posted: its fee lines cite the licence term, and a guild
    term where one raised their part."""
    fees = dict(run.training_fees)
    if not fees or person_id is None:
        return fees
    period = str(fees["event_id"]).rsplit("/", 1)[1]
    st, path = _write_statement(run, person_id, period)
    lines = [line for line in st.lines if line["output_id"].startswith("training:")]
    return fees | {
        "statement": {
            "person_id": person_id,
            "period": period,
            "path": str(path.with_suffix(".csv")),
            "lines": len(lines),
            "accrued": format_amount(sum(line["amount_microunits"] for line in lines), CURRENCY),
            "licence_terms": sorted({line["licence_term"] for line in lines}),
            "guild_terms": sorted({line["guild_term"] for line in lines if line["guild_term"]}),
            "reconciles": st.reconciles(),
        }
    }


def _statement(
    run: DemoRun, earners: list[dict[str, Any]], outs: list[OutputIn], person_id: int | None
) -> dict[str, Any]:
    """The statement of ``person_id`` (the licensed tune's composer), else of the top-earning person, for the
    last period, as JSON and CSV files; it must reconcile."""
    top_person = next((e for e in earners if e["holder"].startswith("person:")), None)
    if top_person is None and person_id is None:
        return {}
    pid = person_id if person_id is not None else int(top_person["holder"].split(":")[1])  # type: ignore[index]
    period = max(o.occurred_at[:7] for o in outs)
    st, path = _write_statement(run, pid, period)
    return {
        "person_id": pid,
        "period": period,
        "lines": len(st.lines),
        "accrued_microunits": st.accrued_microunits,
        "accrued": format_amount(st.accrued_microunits, CURRENCY),
        "reconciles": st.reconciles(),
        "path": str(path.with_suffix(".csv")),
        "licence_lines": sum(1 for line in st.lines if line["licence_term"]),
        "licence_terms": sorted({line["licence_term"] for line in st.lines if line["licence_term"]}),
    }


def import_demo_licence(run: DemoRun, manifest: ManifestRecord, person_id: int, licence: DemoLicence) -> dict[str, Any]:
    """One work of ``person_id`` in the manifest is published under an RSL licence (``licence.rsl``) and
    served with a ``Content-Usage`` header (``licence.headers``): both files are written here and imported as
    grants and licence terms, which the agreement applies as a fee per training use and a floor per output."""
    with run.store.read() as conn:
        work_id = next((w for w in works_of_person(conn, person_id) if w in set(manifest.included)), None)
    if work_id is None:
        return {}
    folder = private_dir(run.store.data_dir / "licences")
    write_private(folder / "license.xml", licence.rsl.encode("utf-8"))
    write_private(folder / "headers.txt", licence.headers.encode("utf-8"))
    location = f"{licence.site}{work_id}{licence.suffix}"
    window = Window(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2031, 1, 1, tzinfo=dt.UTC))
    readings = [
        rsl_reading(licence.rsl, location, name="license.xml", work_id=work_id, window=window, found_via=""),
        *preference_readings(licence.headers, location, name="headers.txt"),
    ]
    report = import_licences(run.store, work_id, readings, window, kind="licences")
    run.progress(
        f"licence: {licence.noun} {work_id[:12]}… is under an RSL licence (0.50 EUR per training use, 0.002 EUR "
        "per use) and a Content-Usage header"
    )
    return {"person_id": person_id, "work_id": work_id, "notes": list(report.notes)}


def _portal_link(run: DemoRun, summary: DemoSummary, key_file: Path | None, db_url: str | None) -> None:
    """A one-time signed-in link for the top verified earner (as `endcredits login-link create` makes)."""
    top = next(
        (e for e in summary.top_earners if e["holder"].startswith("person:") and e["status"] == "verified"), None
    )
    if top is None:
        return
    from endcredits.service.auth import create_login_link

    with run.store.write() as conn:
        link = create_login_link(conn, int(top["holder"].split(":")[1]), created_by="demo")
    key_prefix = f"{KEY_FILE_ENV}={key_file} " if key_file is not None else ""
    summary.portal_command = (
        f"{key_prefix}endcredits --data {run.store.data_dir}{f' --db {db_url}' if db_url else ''} serve --port 8000"
    )
    summary.portal_login_url = f"http://127.0.0.1:8000/portal/login?token={link.token}"


def run_demo(
    data_dir: Path | None,
    db_url: str | None,
    *,
    outputs_n: int = 60,
    train_steps: int = TRAIN_STEPS_DEFAULT,
    seed: int = 0,
    tunes_max: int | None = None,
    k: int = K_DEFAULT,
    progress: Callable[[str], None] = lambda _m: None,
    step: StepProgress | None = None,
) -> DemoSummary:
    """Run the whole flow into ``data_dir`` (or ``db_url``) and return its summary.

    The model trains for exactly ``train_steps`` steps, never for a time budget, so the same inputs and
    ``seed`` give the same checkpoint, outputs, attributions and split on one machine.
    """
    torch.manual_seed(seed)
    run = DemoRun(init_store(data_dir, db_url), progress, step)
    key_env_before = os.environ.get(KEY_FILE_ENV)
    key_file: Path | None = None
    try:
        progress(f"store: {run.store.backend} in {run.store.data_dir}")
        key_file = demo_key(run)
        report, joined, guild, agreement = _register(run, tunes_max)
        manifest, texts = _manifest(run)
        licence = import_demo_licence(run, manifest, joined[0], ABC_LICENCE) if joined else {}
        lm = _train(run, manifest, texts, train_steps, seed, agreement)
        outs, samples = _outputs(run, lm, outputs_n, seed)
        progress(f"generated {outputs_n} tunes; attributing each to {len(texts)} training tunes (TRAK, k={k})…")
        att = attribute_manifest(
            run.store,
            manifest,
            CharLMModel(lm),
            [(o.output_id, t.encode("utf-8")) for o, t in zip(outs, samples, strict=True)],
            settings=AttributionSettings(k=k, seed=seed, method="trak", top_k=5, exclude=DEMO_EXCLUDE),
            progress=(lambda d, t: step("featurizing training tunes", d, t)) if step else None,
        )
        run.lap("attribute")
        trained = Trained(lm.checksum(), lm.steps, lm.final_loss)
        settling = Settling(manifest, agreement, outs, att, joined, guild, report.works, report.names, trained)
        return settle(run, replace(settling, licence=licence, provider=DEMO_PROVIDER), db_url)
    finally:
        run.store.dispose()
        restore_key_env(key_file, key_env_before)


@dataclass(frozen=True)
class Trained:
    """What a demo's training run made: the checkpoint's checksum, its steps and its last loss."""

    checksum: str
    steps: int
    loss: float


@dataclass(frozen=True)
class Settling:
    """What the money half of a demo needs from its corpus half."""

    manifest: ManifestRecord
    agreement: Agreement
    outs: list[OutputIn]
    att: Attribution
    joined: list[int]
    guild: DemoGuild
    works: int
    names: int
    trained: Trained
    corpus: str = "abc"
    work_noun: str = "tunes"
    licence: dict[str, Any] = field(default_factory=dict)  # a licence imported on one work (``import_demo_licence``)
    provider: ProviderFacts | None = None  # what the EU training summary states that endcredits does not hold


def settle(run: DemoRun, s: Settling, db_url: str | None) -> DemoSummary:
    """The money half, whatever the corpus: accrue in two batches from the recorded attribution run, one
    late verification, a payout settled by a simulated bank, statements (of the licensed work's person, for
    the last period and for the training fees'), `verify` and the conservation check (an ``InvariantError``
    when either fails); then the reports: what the guild sees, and the model's EU training summary."""
    if s.att.run_id is None:
        raise InvariantError("attribute_manifest recorded no attribution run")
    _accrue(run, s.manifest, s.agreement, s.outs, s.att.run_id)
    _late_verification(run, s.joined, s.guild)
    batch = _payout(run, s.agreement)
    earners = _earners(run.store, 10)
    statement_info = _statement(run, earners, s.outs, s.licence.get("person_id"))
    summary = _summary(run, s, earners, batch, statement_info)
    summary.training_fees = _fee_statement(run, s.licence.get("person_id"))
    _portal_link(run, summary, run.key_file, db_url)
    if not summary.conserved:
        raise InvariantError(
            f"conservation broken: pool {summary.pool_microunits} != paid {summary.paid_microunits} + "
            f"escrow {summary.escrow_microunits} + suspense {summary.suspense_microunits}"
        )
    if not summary.verified:
        raise InvariantError("verify failed after the demo: " + "; ".join(summary.problems[:3]))
    if s.guild.applied:
        summary.guild = guild_report(run, s.guild.applied)
    if s.provider is not None:
        summary.eu_training_summary = eu_report(run, s.manifest.model_id, s.provider)
    run.lap("reports")
    return summary


def restore_key_env(key_file: Path | None, before: str | None) -> None:
    """Put ``KEY_FILE_ENV`` back as it was before ``demo_key`` pointed it at a demo key."""
    if key_file is None:
        return
    if before is None:
        os.environ.pop(KEY_FILE_ENV, None)
    else:
        os.environ[KEY_FILE_ENV] = before


def _summary(
    run: DemoRun,
    s: Settling,
    earners: list[dict[str, Any]],
    batch: PayoutBatchResult,
    statement_info: dict[str, Any],
) -> DemoSummary:
    """The money by account kind, the people, and a fresh `verify`."""
    with run.store.read() as conn:
        totals = balance_totals(conn)[CURRENCY]
        n_people = people_list(conn, limit=1)[0]
        n_credentials = credentialed_people_count(conn)
    report_v = verify(run.store)
    run.lap("verify")
    return DemoSummary(
        data_dir=str(run.store.data_dir),
        backend=run.store.backend,
        works=s.works,
        people=n_people,
        names=s.names,
        excluded_works=len(s.manifest.excluded),
        manifest_id=s.manifest.id,
        merkle_root=s.manifest.merkle_root,
        checkpoint_sha256=s.trained.checksum,
        train_steps=s.trained.steps,
        train_loss=s.trained.loss,
        outputs=len(s.outs),
        revenue_microunits=sum(o.revenue_microunits for o in s.outs),
        pool_microunits=totals.pool_microunits,
        paid_microunits=totals.paid_microunits,
        escrow_microunits=totals.escrow_microunits,
        suspense_microunits=totals.suspense_microunits,
        top_earners=earners,
        payout_batch={
            "batch_id": batch.batch_id,
            "status": batch.status,
            "items": len(batch.items),
            "total": format_amount(batch.total_microunits, CURRENCY),
            "total_microunits": batch.total_microunits,
            "pain001": str(batch.pain001_path) if batch.pain001_path else None,
        },
        statement=statement_info,
        licence=s.licence,
        verified=report_v.ok,
        problems=list(report_v.problems),
        timings_s=run.timings,
        attribution=_attribution_summary(run.store, s.att),
        credentials=n_credentials,
        conserved=totals.conserved,
        corpus=s.corpus,
        work_noun=s.work_noun,
    )
