"""Priced licences and AI usage preferences into grants and licence terms: RSL 1.0, the IETF AI Preferences
``Content-Usage`` field (HTTP header and robots.txt rule) and Cloudflare's ``Content-Signal``.

The documents are written here after the published specifications: RSL 1.0 (rslstandard.org/rsl), the
aipref vocabulary and attachment drafts, RFC 9651 structured fields, Cloudflare's Content Signals Policy.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from imports_fixtures import WINDOW, png, register, row_counts, work_grants
from typer.testing import CliRunner

from endcredits.cli import app
from endcredits.consent.rules import decide
from endcredits.consent.terms import LicenceTerm, add_terms, terms_for
from endcredits.errors import ManifestError, NotFoundError, ValidationError
from endcredits.interop.licences import (
    RSL_USES,
    content_usage_reading,
    import_licences,
    licence_links,
    link_header_licences,
    preference_readings,
    rsl_reading,
)
from endcredits.ledger.accrue import accrue
from endcredits.ledger.verify import verify
from endcredits.manifest.build import build_manifest
from endcredits.registry.records import content_sha256
from endcredits.royalties import parse_agreement
from endcredits.royalties.usage import OutputIn, build_usage
from endcredits.store.engine import Store, open_store
from helpers_money import EXTERNAL, agreement_text, balances, on_time

W = "ab" * 32
STORY = "https://news.example/2026/05/story.html"

RSL = """<?xml version="1.0" encoding="UTF-8"?>
<rsl xmlns="https://rslstandard.org/rsl">
  <content url="https://news.example/*">
    <copyright type="organization" contactEmail="rights@news.example">News Example</copyright>
    <license>
      <permits type="usage">search</permits>
      <payment type="free"/>
    </license>
    <license>
      <permits type="usage">ai-train,ai-input,telepathy</permits>
      <prohibits type="usage">ai-index</prohibits>
      <payment type="training">
        <standard>https://news.example/rates</standard>
        <amount currency="EUR">0.015</amount>
      </payment>
    </license>
  </content>
  <content url="/archive/">
    <license>
      <prohibits type="usage">all</prohibits>
    </license>
  </content>
</rsl>
"""

ROBOTS = """# robots.txt for news.example
License: https://news.example/license.xml

User-Agent: *
Content-Usage: train-ai=n, search=y
Content-Usage: /public/ train-ai=y
Content-Signal: search=yes, ai-input=no, ai-train=no, ai-dream=no
Allow: /

User-Agent: ExampleBot
Content-Usage: bots=n
"""

HEADERS = """HTTP/1.1 200 OK
Content-Type: text/html
Content-Usage: train-ai=y, train-genai=n
Content-Usage: train-ai=n, search=y, flavour=y
Link: <https://news.example/license.xml>; rel="license"; type="application/rsl+xml"
"""


def test_rsl_licences_are_alternative_offers_with_their_price() -> None:
    reading = rsl_reading(RSL, STORY, name="license.xml", work_id=W, window=WINDOW, found_via="robots.txt")
    d = dict(reading.signal.decisions)
    assert d["search"] == "allowed"  # the free licence
    assert d["ai_training"] == d["ai_generative_training"] == "allowed"  # the paid one
    assert d["ai_input"] == d["ai_inference"] == "allowed"
    assert d["ai_index"] == "notAllowed"  # prohibited by the paid one, granted by neither
    assert d["data_mining"] == "notAllowed"  # a licence that lists its usages grants only those
    assert "found via robots.txt" in reading.signal.source and "content https://news.example/*" in reading.signal.source
    (term,) = reading.terms
    assert (term.payment_type, term.amount_microunits, term.currency) == ("training", 1_500_000, "EUR")
    assert term.uses == ("ai_generative_training", "ai_inference", "ai_input", "ai_training")
    assert "license 1: payment training" in term.source
    assert any("'telepathy'" in n and "not read as permission" in n for n in reading.notes)
    assert any("payment free states no amount" in n for n in reading.notes)


def test_rsl_most_specific_content_and_no_match() -> None:
    archived = rsl_reading(RSL, "https://news.example/archive/1999.html", name="l.xml", work_id=W, window=WINDOW)
    assert dict(archived.signal.decisions) == {u: "notAllowed" for u in RSL_USES}
    assert archived.terms == []
    elsewhere = rsl_reading(RSL, "https://other.example/a.html", name="l.xml", work_id=W, window=WINDOW)
    assert dict(elsewhere.signal.decisions) == {} and "no <content> covers" in elsewhere.signal.source


def test_rsl_without_permits_grants_every_usage_but_the_prohibited() -> None:
    doc = RSL.replace('<permits type="usage">search</permits>', '<permits type="user">non-commercial</permits>')
    d = dict(rsl_reading(doc, STORY, name="l.xml", work_id=W, window=WINDOW).signal.decisions)
    assert d["data_mining"] == d["ai_index"] == "allowed"  # the free licence lists no usages: all of them
    assert "commercial" not in d  # the paid licence admits commercial users


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("</license>\n  </content>\n  <content", "</licence>\n  </content>\n  <content"),
            r"line 16: mismatched tag.*<license> opened at line 9",
        ),
        (('<amount currency="EUR">', "<amount>"), r"line 14: <amount> has no currency"),
        (("0.015", "-0.015"), r"line 14: <amount> -0.015 is negative"),
        (('currency="EUR"', 'currency="EURO"'), r"line 14: <amount>: unknown currency"),
        (('<rsl xmlns="https://rslstandard.org/rsl">', "<rsl>"), r"line 2: the root element is <rsl>, expected"),
    ],
)
def test_bad_rsl_is_one_line_naming_the_element_and_line(edit: tuple[str, str], message: str) -> None:
    bad = RSL.replace(*edit)
    assert bad != RSL
    with pytest.raises(ValidationError, match=message) as caught:
        rsl_reading(bad, STORY, name="license.xml", work_id=W, window=WINDOW)
    assert "\n" not in str(caught.value)


def test_licences_are_found_in_robots_html_and_link_headers() -> None:
    assert licence_links(ROBOTS, name="robots.txt") == ["https://news.example/license.xml (robots.txt line 2 License:)"]
    html = '<html><head><link rel="license" href="https://news.example/license.xml"></head></html>'
    assert licence_links(html, name="p.html") == ["https://news.example/license.xml (p.html rel=license)"]
    assert link_header_licences('<https://a.example/l.xml>; rel="license", <https://a.example/s>; rel=next') == [
        "https://a.example/l.xml"
    ]
    assert licence_links(HEADERS, name="h.txt") == ["https://news.example/license.xml (h.txt line 5 Link rel=license)"]


def test_content_usage_header_any_n_wins_and_specific_overrides_broad() -> None:
    (reading,) = preference_readings(HEADERS, STORY, name="headers.txt")
    d = dict(reading.signal.decisions)
    assert d == {
        "ai_generative_training": "notAllowed",
        "ai_training": "notAllowed",  # train-ai=y in one field, n in the other: n wins
        "search": "allowed",
    }
    assert any("'flavour'" in n and "not read as permission" in n for n in reading.notes)
    assert any("license.xml" in n and "import-rsl" in n for n in reading.notes)
    specific = content_usage_reading([("h", "bots=n, search=y")], name="h")
    assert specific.signal.decisions["search"] == "allowed" and specific.signal.decisions["ai_training"] == "notAllowed"
    genai = content_usage_reading([("h", "train-ai=n, train-genai=y")], name="h")
    assert genai.signal.decisions["ai_generative_training"] == "allowed"
    assert genai.signal.decisions["ai_training"] == "notAllowed"


@pytest.mark.parametrize("value", ["train-ai=n,,", 'train-ai="n', "Train-AI=n", "train-ai=n search=y"])
def test_content_usage_that_is_not_a_structured_field_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="not a valid structured-field dictionary"):
        preference_readings(f"Content-Usage: {value}\n", STORY, name="h.txt")


def test_robots_content_usage_and_content_signal_by_path_and_agent() -> None:
    usage, signal = preference_readings(ROBOTS, STORY, name="robots.txt")
    assert dict(usage.signal.decisions) == {
        "ai_generative_training": "notAllowed",
        "ai_training": "notAllowed",
        "search": "allowed",
    }
    assert "robots.txt line 5" in usage.signal.source
    assert dict(signal.signal.decisions) == {
        "search": "allowed",
        "ai_inference": "notAllowed",
        "ai_input": "notAllowed",
        "ai_generative_training": "notAllowed",
        "ai_training": "notAllowed",
    }
    assert any("'ai-dream'" in n for n in signal.notes)
    public, _ = preference_readings(ROBOTS, "https://news.example/public/a.html", name="robots.txt")
    assert public.signal.decisions["ai_training"] == "allowed"  # the longest matching path wins
    (bot,) = preference_readings(ROBOTS, STORY, name="robots.txt", agent="ExampleBot")
    assert dict(bot.signal.decisions) == {u: "notAllowed" for u in RSL_USES}


def test_import_stores_grants_per_signal_and_terms(store: Store) -> None:
    work = register(store, png(71), "story", source=STORY)
    readings = [
        rsl_reading(RSL, STORY, name="license.xml", work_id=work, window=WINDOW),
        *preference_readings(HEADERS, STORY, name="headers.txt"),
    ]
    report = import_licences(store, work, readings, WINDOW, kind="licences")
    assert report.terms_added == 1 and report.grants_added == 7 + 3
    assert any(n.startswith("ai_training: notAllowed (from aipref Content-Usage headers.txt") for n in report.notes)
    with store.read() as conn:
        ((_, term),) = terms_for(conn, [work])
        from endcredits.consent.records import grants_for

        grants = [g for _, g in grants_for(conn, [work], [])]
    assert (term.amount_microunits, term.currency, term.payment_type) == (1_500_000, "EUR", "training")
    # Both sources are kept; the most restrictive decides.
    training = [g for g in grants if g.use == "ai_training"]
    assert {g.decision for g in training} == {"allowed", "notAllowed"}
    at = WINDOW.valid_from + dt.timedelta(days=1)
    decision = decide(work, [], ["ai_training"], at, grants, default="opt-out")
    assert not decision.allowed and "headers.txt" in decision.reason
    assert decide(work, [], ["ai_input", "search"], at, grants, default="opt-in").allowed
    again = import_licences(store, work, readings, WINDOW, kind="licences")
    assert (again.grants_added, again.terms_added) == (0, 0)


def test_import_for_an_unregistered_work_writes_nothing(store: Store) -> None:
    before = row_counts(store)
    reading = rsl_reading(RSL, STORY, name="license.xml", work_id=W, window=WINDOW)
    with pytest.raises(NotFoundError, match="not registered"):
        import_licences(store, W, [reading], WINDOW, kind="rsl")
    assert row_counts(store) == before


def test_manifests_honour_the_new_uses(store: Store) -> None:
    story = register(store, png(72), "story", source=STORY)
    other = register(store, png(73), "other", source="https://other.example/x.html")
    readings = preference_readings(ROBOTS, STORY, name="robots.txt")
    import_licences(store, story, readings, WINDOW, kind="ai-preferences")
    at = WINDOW.valid_from + dt.timedelta(days=1)
    rag = build_manifest(store, model_id="rag", uses=["ai_input"], as_of=at, default="opt-out")
    assert rag.included == (other,) and rag.excluded[0][0] == story and "ai_input" in rag.excluded[0][1]
    search = build_manifest(store, model_id="finder", uses=["search"], as_of=at, default="opt-in")
    assert search.included == (story,)  # allowed by its signals; the other work has none (opt-in)


def test_cli_imports_and_terms(tmp_path: Path, db_url: str | None) -> None:
    runner = CliRunner()
    base = ["--data", str(tmp_path / "data")] + (["--db", db_url] if db_url else [])

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == code, f"{args}: {result.stderr or result.stdout}"
        return result.stdout if code == 0 else result.stderr

    run("init")
    page = tmp_path / "story.png"
    page.write_bytes(png(74))
    work = content_sha256(png(74))
    run("works", "add", str(page), "--title", "story", "--kind", "image", "--source", STORY)
    for name, text in (("license.xml", RSL), ("robots.txt", ROBOTS), ("headers.txt", HEADERS)):
        (tmp_path / name).write_text(text)
    bad = tmp_path / "bad.xml"
    bad.write_text(RSL.replace("0.015", "-1"))
    before = run("consent", "list", "--work", work, "--json")
    error = run("interop", "import-rsl", str(bad), "--work", work, code=1)
    assert "line 14: <amount> -1 is negative" in error and error.strip().count("\n") == 0
    assert run("consent", "list", "--work", work, "--json") == before
    out = json.loads(
        run(
            "interop",
            "import-rsl",
            str(tmp_path / "license.xml"),
            "--work",
            work,
            "--via",
            str(tmp_path / "robots.txt"),
            "--json",
        )
    )
    assert out["terms_added"] == 1 and out["grants_added"] == 7
    prefs = json.loads(
        run(
            "interop",
            "import-ai-preferences",
            str(tmp_path / "robots.txt"),
            str(tmp_path / "headers.txt"),
            "--work",
            work,
            "--json",
        )
    )
    assert prefs["grants_added"] == 3 + 5 + 3
    terms = json.loads(run("consent", "terms", "--work", work, "--json"))["terms"]
    assert [(t["payment_type"], t["amount"], t["currency"]) for t in terms] == [("training", "0.015", "EUR")]
    assert "robots.txt line 2 License:" in terms[0]["source"]
    assert "training" in run("consent", "terms", "--work", work)
    store = open_store(tmp_path / "data", db_url)
    try:
        assert work_grants(store, work)["ai_input"][0] == "notAllowed"
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("command", "name", "text", "message"),
    [
        (
            "import-rsl",
            "license.xml",
            RSL.replace("</license>\n  </content>\n  <content", "</licence>\n  </content>\n  <content"),
            r"license.xml line 16: mismatched tag.*<license> opened at line 9",
        ),
        ("import-rsl", "license.xml", RSL.replace('<amount currency="EUR">', "<amount>"), "<amount> has no currency"),
        ("import-rsl", "license.xml", RSL.replace("0.015", "-0.015"), "<amount> -0.015 is negative"),
        (
            "import-ai-preferences",
            "headers.txt",
            "HTTP/1.1 200 OK\nContent-Usage: train-ai=n search=y\n",
            "not a valid structured-field dictionary",
        ),
    ],
)
def test_cli_bad_licence_files_are_one_line_and_change_nothing(
    store: Store, tmp_path: Path, db_url: str | None, command: str, name: str, text: str, message: str
) -> None:
    work = register(store, png(75), "story", source=STORY)
    path = tmp_path / name
    path.write_text(text)
    before = row_counts(store)
    base = ["--data", str(tmp_path / "data")] + (["--db", db_url] if db_url else [])
    result = CliRunner().invoke(app, [*base, "interop", command, str(path), "--work", work])
    assert result.exit_code == 1 and re.search(message, result.stderr), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert row_counts(store) == before


def test_accruals_honour_the_new_uses(store: Store) -> None:
    # A retrieval model (ai_input): the story refuses it (Content-Signal ai-input=no), so its manifest leaves
    # the story out and an output that attributes the story is refused with nothing written; an output of
    # the other work accrues, and that work's price per use (a term for ai_input) is its floor.
    story = register(store, png(76), "story", source=STORY)
    other = register(store, png(77), "other", source="https://other.example/x.html")
    import_licences(store, story, preference_readings(ROBOTS, STORY, name="robots.txt"), WINDOW, kind="ai-preferences")
    price = LicenceTerm(other, "use", 5_000_000, "EUR", ("ai_input",), "rsl l.xml", WINDOW.valid_from, None, True)
    with store.write() as conn:
        add_terms(conn, [price])
    at = WINDOW.valid_from + dt.timedelta(days=1)
    rag = build_manifest(store, model_id="rag", uses=["ai_input"], as_of=at, default="opt-out")
    assert rag.included == (other,)
    ag = parse_agreement(agreement_text().replace("[role_weights]", 'licence_terms = ["output_floor"]\n[role_weights]'))
    before = row_counts(store)
    with store.read() as conn, pytest.raises(ManifestError, match=f"attributes work {story}, which is not in"):
        build_usage(conn, [OutputIn("o-1", "rag", 1_000_000, "EUR", on_time(3))], {"o-1": {story: 1.0}}, ag, rag)
    assert row_counts(store) == before
    with store.read() as conn:
        usage = build_usage(
            conn, [OutputIn("o-2", "rag", 1_000_000, "EUR", on_time(3))], {"o-2": {other: 1.0}}, ag, rag
        )
    accrue(store, usage, ag, event_id="b1", source=EXTERNAL)
    held = balances(store)[f"escrow:work:{other}:EUR"]
    assert held == 5_000_000  # its 0.003 EUR share of the pool, raised to the 0.05 EUR its licence asks per use
    assert verify(store).ok
