"""The portal in a real browser: Playwright drives Debian's chromium against the real service (uvicorn on a
free port, SQLite, the seeded world). Sign in by link, open a statement, change a consent, claim unclaimed
residuals; each test saves a screenshot under its tmp_path and checks the page and then the store.

Chromium comes from the system (``make install`` installs it); these tests never download a browser and
never skip: without chromium they fail and say how to install it."""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from portal_world import Seeded, seed

from endcredits.consent.records import grants_for
from endcredits.ledger.records import account_balances
from endcredits.payouts.statements import build_statement
from endcredits.royalties.output_contents import record_output_contents
from endcredits.service import create_app
from endcredits.store.engine import init_store
from endcredits.store.schema import login_links, sessions

CHROMIUM = "/usr/bin/chromium"
INSTALL = "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium"
PHONE = {"width": 390, "height": 844}


@dataclass
class Live:
    url: str
    world: Seeded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    store = init_store(tmp_path_factory.mktemp("portal") / "data", None)
    world = seed(store)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="portal-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    try:
        yield Live(f"http://127.0.0.1:{port}", world)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        store.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"chromium is not installed at {CHROMIUM}: install it with `{INSTALL}` (or run `make install`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `.venv/bin/pip install -e '.[dev]'` (never `playwright install`)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        p = context.new_page()
        p.set_default_timeout(10_000)
        yield p
    finally:
        context.close()


def _sign_in(page: Any, live: Live, person_id: int) -> None:
    page.goto(f"{live.url}/portal/login?token={live.world.login_token(person_id)}")
    page.wait_for_url(f"**/portal/people/{person_id}")


def _fits_the_phone(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_sign_in_by_link(page: Any, live: Live, tmp_path: Path) -> None:
    w = live.world
    with w.store.read() as conn:
        sessions_before = len(conn.execute(sessions.select()).all())
    _sign_in(page, live, w.alice)
    assert page.locator("h1").inner_text() == "alice"
    assert page.locator("figure.chart svg").count() == 3
    assert page.get_by_role("link", name="2026-01").is_visible()
    assert _fits_the_phone(page)
    page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["ec_session"]["httpOnly"] and cookies["ec_session"]["sameSite"] == "Strict"
    with w.store.read() as conn:
        assert len(conn.execute(sessions.select()).all()) == sessions_before + 1
        assert all(
            r.used_at is not None for r in conn.execute(login_links.select().where(login_links.c.person_id == w.alice))
        )


def test_open_a_statement(page: Any, live: Live, tmp_path: Path) -> None:
    w = live.world
    _sign_in(page, live, w.alice)
    page.get_by_role("link", name="2026-01").click()
    page.wait_for_url("**/statements/2026-01*")
    st = build_statement(w.store, w.alice, "2026-01", "EUR")
    assert st.reconciles() and st.lines
    heading = page.locator("h1").inner_text()
    assert heading.startswith("Statement 2026-01")
    page.locator("section.output summary").first.click()  # each output's whole explanation opens on demand
    body = page.locator("main").inner_text()
    assert "reconciles with the ledger" in body and "of each output's revenue is its pool" in body
    assert "Top works of o1" in body and "A Song" in body
    assert page.locator("section.output").count() == len({line["output_id"] for line in st.lines})
    page.screenshot(path=str(tmp_path / "statement.png"), full_page=True)


def test_a_statement_shows_what_each_output_generated(page: Any, live: Live, tmp_path: Path) -> None:
    w = live.world
    record_output_contents(w.store, [("o1", _picture()), ("o2", b"X:1\nT:A generated reel\nK:D\n|:d2fd adfa|")])
    _sign_in(page, live, w.alice)
    page.goto(f"{live.url}/portal/people/{w.alice}/statements/2026-01?currency=EUR")
    body = page.locator("main").inner_text()
    assert "What each model paid" in body and "was paid to you for the one of your works it drew on" in body
    assert "T:A generated reel" in body
    thumb = page.locator("section.output img.thumb")
    assert thumb.count() == 1
    thumb.scroll_into_view_if_needed()
    assert page.evaluate("document.querySelector('section.output img.thumb').naturalWidth") == 160
    assert _fits_the_phone(page)
    page.screenshot(path=str(tmp_path / "statement-outputs.png"), full_page=True)


def _picture() -> bytes:
    """A 320 x 240 picture with something to see in it: a sky, a sun and a hill."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (320, 240), (120, 180, 235))
    draw = ImageDraw.Draw(im)
    draw.ellipse((210, 30, 280, 100), fill=(250, 210, 60))
    draw.polygon([(0, 240), (0, 170), (120, 110), (320, 190), (320, 240)], fill=(60, 140, 70))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_change_a_consent(page: Any, live: Live, tmp_path: Path) -> None:
    w = live.world
    _sign_in(page, live, w.alice)
    page.get_by_role("link", name="Consent").click()
    page.wait_for_url("**/portal/consent")
    page.select_option("select[name=use]", "likeness_voice")
    page.select_option("select[name=decision]", "notAllowed")
    page.fill("input[name=valid_until]", "2030-06-30")
    page.get_by_role("button", name="Record").click()
    page.wait_for_url("**/portal/consent?notice=granted")
    assert "Your consent was recorded." in page.locator(".notice").inner_text()
    row = page.locator("table").first.locator("tr", has_text="likeness_voice")
    assert "notAllowed" in row.inner_text() and "until 2030-06-30" in row.inner_text()
    page.screenshot(path=str(tmp_path / "consent.png"), full_page=True)
    with w.store.read() as conn:
        voice = [g for _i, g in grants_for(conn, [], [str(w.alice)]) if g.use == "likeness_voice"]
    assert len(voice) == 1 and voice[0].decision == "notAllowed" and voice[0].valid_until is not None
    assert voice[0].valid_until.date().isoformat() == "2030-06-30" and voice[0].revoked_at is None


def test_claim_unclaimed_residuals(page: Any, live: Live, tmp_path: Path) -> None:
    w = live.world
    page.goto(f"{live.url}/portal/escrow?q=Mal")
    assert "<script>" in page.locator("table").inner_text()  # shown as text, never run
    with w.store.read() as conn:
        held = sum(account_balances(conn, kind="escrow", holder=f"name:{w.mal_name}").values())
    assert held > 0
    _sign_in(page, live, w.mal)
    page.get_by_role("link", name="Unclaimed residuals").click()
    page.wait_for_url("**/portal/escrow")
    page.get_by_role("button", name="Claim it").click()
    page.wait_for_load_state()
    assert "Released to your balance: 2.225 EUR." in page.locator(".notice").inner_text()
    assert _fits_the_phone(page)
    page.screenshot(path=str(tmp_path / "claimed.png"), full_page=True)
    with w.store.read() as conn:
        assert sum(account_balances(conn, kind="escrow", holder=f"name:{w.mal_name}").values()) == 0
        assert account_balances(conn, kind="payable", holder=f"person:{w.mal}") == {f"payable:person:{w.mal}:EUR": held}
