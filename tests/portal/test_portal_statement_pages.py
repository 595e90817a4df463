"""The readable statement page through the app, on SQLite and PostgreSQL: what each output generated,
thumbnails under the same rules as the rest of a person's data, pages, and bad page numbers as 4xx."""

from __future__ import annotations

import io
import json
import re

from PIL import Image
from portal_world import Seeded, TestClient

from endcredits.payouts.statement_layout import summarize
from endcredits.payouts.statements import build_statement
from endcredits.registry.records import CreditIn, WorkIn, add_credits, add_works
from endcredits.royalties.output_contents import record_output_contents
from endcredits.store.blobs import put_blob

TUNE = "X:1\nT:Generated jig\nK:G\n|:GAB cBA|BGE EDE:|"
THUMB = re.compile(r'src="(/portal/people/\d+/previews/output\.png\?[^"]+)"')


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), colour).save(buf, format="PNG")
    return buf.getvalue()


def _sign_in(client: TestClient, s: Seeded, person_id: int) -> None:
    r = client.get("/portal/login", params={"token": s.login_token(person_id)})
    assert r.status_code == 200, r.text


def test_the_page_shows_each_output_and_the_model_in_words(client: TestClient, seeded: Seeded) -> None:
    record_output_contents(seeded.store, [("o1", _png((20, 90, 200))), ("o2", TUNE.encode())])
    _sign_in(client, seeded, seeded.alice)
    r = client.get(f"/portal/people/{seeded.alice}/statements/2026-01")
    assert r.status_code == 200, r.text
    st = build_statement(seeded.store, seeded.alice, "2026-01", "EUR")
    (m,) = summarize(st).models
    assert m.sentence.replace("'", "&#39;") in r.text and "was paid to you for the one of your works" in r.text
    assert "By model" in r.text and "By work" in r.text and "By role" in r.text
    assert "T:Generated jig" in r.text  # the tune's excerpt
    (thumb,) = THUMB.findall(r.text)  # o1's image
    png = client.get(thumb.replace("&amp;", "&"))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (160, 107)  # the longer side to 160, shape kept
    february = client.get(f"/portal/people/{seeded.alice}/statements/2026-02").text
    assert "o3: the operator did not supply what the model generated for this output" in february
    data = json.loads(client.get(f"/portal/people/{seeded.alice}/statements/2026-01.json").text)
    assert len(data["lines"]) == st.line_count and data["summary"]["models"][0]["sentence"] == m.sentence


def test_thumbnails_follow_the_access_rules_of_statements(client: TestClient, seeded: Seeded) -> None:
    store = seeded.store
    record_output_contents(store, [("o1", _png((20, 90, 200)))])
    hers, his = _png((1, 2, 3)), _png((4, 5, 6))
    for content in (hers, his):
        put_blob(store.data_dir, content)
    with store.write() as conn:
        her_work, his_work = add_works(conn, [WorkIn(hers, "Her plate", "image"), WorkIn(his, "His plate", "image")])
        add_credits(
            conn,
            [
                CreditIn(her_work, f"person:{seeded.alice}", "endcredits:vfx", 1),
                CreditIn(his_work, f"person:{seeded.dan}", "endcredits:vfx", 1),
            ],
        )
    _sign_in(client, seeded, seeded.alice)
    page = client.get(f"/portal/people/{seeded.alice}/statements/2026-01").text
    (thumb,) = THUMB.findall(page)
    thumb = thumb.replace("&amp;", "&")
    works = f"/portal/people/{seeded.alice}/previews/work.png"
    assert client.get(thumb).status_code == 200
    assert client.get(works, params={"id": her_work}).status_code == 200
    assert client.get(works, params={"id": his_work}).status_code == 404  # not credited to her
    forged = thumb.split("&sig=")[0] + "&sig=" + "0" * 64
    assert client.get(forged).status_code == 404
    assert client.get(thumb.replace("id=o1", "id=o3")).status_code == 404  # a signature binds one output
    # Another person: alice's addresses are 'not found', as her statement is; his own address with her
    # output's signature is refused too.
    other = TestClient(client.app)
    _sign_in(other, seeded, seeded.dan)
    assert other.get(f"/portal/people/{seeded.alice}/statements/2026-01").status_code == 404
    assert other.get(thumb).status_code == 404
    assert other.get(works, params={"id": her_work}).status_code == 404
    assert other.get(thumb.replace(f"/people/{seeded.alice}/", f"/people/{seeded.dan}/")).status_code == 404
    public = TestClient(client.app)
    r = public.get(thumb, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/portal/signin")
    # An operator who reads sees what the person sees.
    op = TestClient(client.app)
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', op.get("/portal/signin").text)
    assert csrf is not None
    op.post("/portal/operator/signin", data={"csrf": csrf.group(1), "api_key": seeded.keys["read"]})
    assert op.get(thumb).status_code == 200 and op.get(works, params={"id": her_work}).status_code == 200


def test_bad_page_numbers_are_4xx_with_a_reason(client: TestClient, seeded: Seeded) -> None:
    _sign_in(client, seeded, seeded.alice)
    base = f"/portal/people/{seeded.alice}/statements/2026-01"
    assert client.get(base, params={"page": 1}).status_code == 200
    beyond = client.get(base, params={"page": 2})
    assert beyond.status_code == 404 and "has 1 page of 20 outputs" in beyond.text
    for bad in ("0", "-1", "two", "1.5", "9" * 30, ""):
        r = client.get(base, params={"page": bad})
        assert r.status_code == 422, (bad, r.status_code)


def test_the_page_says_what_waits_in_escrow_and_which_term_set_its_deadline(client: TestClient, seeded: Seeded) -> None:
    _sign_in(client, seeded, seeded.mal)  # her credited name's money waits for her claim
    st = build_statement(seeded.store, seeded.mal, "2026-01", "EUR")
    (held,) = st.escrow
    assert held["amount_microunits"] > 0 and held["deadline_set_by"].startswith("agreement ")
    page = client.get(f"/portal/people/{seeded.mal}/statements/2026-01").text
    assert "Waiting for your claim" in page and f"deadline set by {held['deadline_set_by']}" in page
    assert f"{held['amount']} EUR" in page and "<script>" not in page  # her name's markup is escaped
