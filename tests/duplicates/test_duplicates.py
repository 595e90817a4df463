"""Registering the same work twice links it to the first: one leaf in a manifest, credits resolved through
the canonical work, nobody paid twice; an operator can link by hand and unlink a false match. Both backends."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from fractions import Fraction

import pytest
from duplicate_sets import edit_chars, reorder_header
from image_sets import jpeg_q70, real_images
from PIL import Image
from sqlalchemy import select

from endcredits.consent.records import add_grants
from endcredits.consent.rules import Grant
from endcredits.errors import ConflictError, NotFoundError, ValidationError
from endcredits.interop.abc import AbcTune, iter_tunes
from endcredits.manifest.build import build_manifest
from endcredits.registry.fingerprints import IMAGE_METHOD, TEXT_METHOD, register_works
from endcredits.registry.records import CreditIn, WorkIn, add_credits, graph_rows, link_works, unlink_work
from endcredits.royalties.shares import work_shares
from endcredits.royalties.usage import load_credit_graph
from endcredits.store.audit import iter_audit
from endcredits.store.engine import Store
from endcredits.store.schema import work_fingerprints
from helpers_money import agreement, people, row_counts

AS_OF = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tunes() -> list[AbcTune]:
    """Three different tunes from one file of Ryan's Mammoth Collection (a hard negative for each other)."""
    found = [t for t in iter_tunes() if t.collection == "ryansMammoth" and t.text.count("\n") >= 8]
    return found[:3]


def _edited(text: str) -> str:
    import random

    rng = random.Random(7)
    return edit_chars(reorder_header(text, rng), rng, count=2).replace("\n", "\r\n")


def _register(store: Store, *items: WorkIn) -> list[str | None]:
    with store.write() as conn:
        return [r.canonical_work_id for r in register_works(conn, list(items))]


def test_an_edited_copy_links_to_the_first_registration_and_is_audited(store: Store, tunes: list[AbcTune]) -> None:
    first, other = tunes[0], tunes[1]
    with store.write() as conn:
        a, b, c = register_works(
            conn,
            [
                WorkIn(first.text.encode(), first.title, "abc-tune"),
                WorkIn(other.text.encode(), other.title, "abc-tune"),
                WorkIn(_edited(first.text).encode(), "again", "abc-tune"),
            ],
        )
    assert a.canonical_work_id is None and b.canonical_work_id is None
    assert c.canonical_work_id == a.work_id and c.method == TEXT_METHOD
    assert c.similarity is not None and c.similarity >= 0.7
    with store.read() as conn:
        linked = [e for e in iter_audit(conn, kind="work.linked")]
        assert len(conn.execute(select(work_fingerprints)).all()) == 3
    assert [e.subject for e in linked] == [f"work:{c.work_id}"]
    assert json.loads(linked[0].payload)["canonical"] == a.work_id
    # The same bytes again: nothing new, still linked.
    before = row_counts(store)
    assert _register(store, WorkIn(_edited(first.text).encode(), "again", "abc-tune")) == [a.work_id]
    assert row_counts(store) == before


def test_a_copy_of_a_copy_links_to_the_canonical_work(store: Store, tunes: list[AbcTune]) -> None:
    text = tunes[0].text
    with store.write() as conn:
        x, y = register_works(
            conn, [WorkIn(text.encode(), "t", "text"), WorkIn(text.replace("\n", "\r\n").encode(), "t", "text")]
        )
        (z,) = register_works(conn, [WorkIn(text.replace("\n", "\n\n").encode() + b"\n", "t", "text")])
    assert y.canonical_work_id == x.work_id and z.canonical_work_id == x.work_id
    assert z.similarity == 1.0


def test_credits_resolve_through_the_canonical_work_and_nobody_is_paid_twice(
    store: Store, tunes: list[AbcTune]
) -> None:
    composer, transcriber, other = people(store, "composer", "transcriber", "other")
    t = tunes[0]
    with store.write() as conn:
        a, b = register_works(
            conn, [WorkIn(t.text.encode(), t.title, "abc-tune"), WorkIn(_edited(t.text).encode(), t.title, "abc-tune")]
        )
        assert b.canonical_work_id == a.work_id
        add_credits(
            conn,
            [
                CreditIn(a.work_id, f"person:{composer}", "endcredits:composer"),
                CreditIn(b.work_id, f"person:{composer}", "endcredits:composer", weight=5),
                CreditIn(b.work_id, f"person:{transcriber}", "endcredits:transcriber"),
                CreditIn(b.work_id, f"person:{other}", "endcredits:composer"),
            ],
        )
        rows_a = graph_rows(conn, [a.work_id])
        rows_b = graph_rows(conn, [b.work_id])
        graph = load_credit_graph(conn, [a.work_id])
    credits_a = sorted((p, r, w) for _, p, r, w in rows_a.credits)
    # The composer is credited on both copies: once, with the canonical work's weight.
    assert credits_a == sorted(
        [
            (f"person:{composer}", "endcredits:composer", 1),
            (f"person:{other}", "endcredits:composer", 1),
            (f"person:{transcriber}", "endcredits:transcriber", 1),
        ]
    )
    assert sorted((p, r, w) for _, p, r, w in rows_b.credits) == credits_a
    shares = work_shares(
        a.work_id, graph, agreement(role_weights={"endcredits:composer": 1, "endcredits:transcriber": 1})
    )
    assert sum((s.share for s in shares), Fraction(0)) == 1
    assert {s.payee: s.share for s in shares} == {
        f"person:{composer}": Fraction(1, 3),
        f"person:{other}": Fraction(1, 3),
        f"person:{transcriber}": Fraction(1, 3),
    }


def test_a_manifest_includes_a_linked_duplicate_once_and_the_strictest_consent_wins(
    store: Store, tunes: list[AbcTune]
) -> None:
    t, u = tunes[0], tunes[1]
    with store.write() as conn:
        a, b, c = register_works(
            conn,
            [
                WorkIn(t.text.encode(), t.title, "abc-tune"),
                WorkIn(_edited(t.text).encode(), t.title, "abc-tune"),
                WorkIn(u.text.encode(), u.title, "abc-tune"),
            ],
        )
    m = build_manifest(store, model_id="m1", uses=["commercial"], as_of=AS_OF, default="opt-out")
    assert m.included == tuple(sorted([a.work_id, c.work_id]))
    (reason,) = [r for w, r in m.excluded if w == b.work_id]
    assert re.fullmatch(
        rf"duplicate of {a.work_id} \({TEXT_METHOD}, similarity [01]\.\d{{3}}\): included once, as that work", reason
    )
    # The copy's owner refuses: the canonical work (the same content) leaves the manifest too.
    with store.write() as conn:
        add_grants(
            conn,
            [
                Grant(
                    subject_kind="work",
                    subject_id=b.work_id,
                    use="commercial",
                    decision="notAllowed",
                    valid_from=T0,
                    valid_until=None,
                    perpetual=True,
                    source="owner of the copy",
                )
            ],
        )
    m2 = build_manifest(store, model_id="m2", uses=["commercial"], as_of=AS_OF, default="opt-out")
    assert m2.included == (c.work_id,)


def test_an_operator_unlinks_a_false_match_and_it_stays_unlinked(store: Store, tunes: list[AbcTune]) -> None:
    t = tunes[0]
    with store.write() as conn:
        a, b = register_works(
            conn, [WorkIn(t.text.encode(), t.title, "abc-tune"), WorkIn(_edited(t.text).encode(), t.title, "abc-tune")]
        )
        assert unlink_work(conn, b.work_id, reason="a different setting, per the guild") == a.work_id
        with pytest.raises(NotFoundError, match="is not linked"):
            unlink_work(conn, b.work_id, reason="again")
    assert _register(store, WorkIn(_edited(t.text).encode(), t.title, "abc-tune")) == [None]
    m = build_manifest(store, model_id="m", uses=["commercial"], as_of=AS_OF, default="opt-out")
    assert set(m.included) == {a.work_id, b.work_id}
    with store.read() as conn:
        (entry,) = list(iter_audit(conn, kind="work.unlinked"))
    assert json.loads(entry.payload) == {"canonical": a.work_id, "reason": "a different setting, per the guild"}
    # An operator may link it again by hand.
    with store.write() as conn:
        assert (
            link_works(conn, b.work_id, a.work_id, method="operator", similarity_ppm=None, linked_by="operator")
            == a.work_id
        )


def test_operator_links_refuse_what_would_break_the_groups(store: Store, tunes: list[AbcTune]) -> None:
    with store.write() as conn:
        a, b, c = (
            r.work_id for r in register_works(conn, [WorkIn(t.text.encode(), t.title, "abc-tune") for t in tunes])
        )
        link_works(conn, b, a, method="operator", similarity_ppm=None, linked_by="operator")
        with pytest.raises(ConflictError, match="already linked"):
            link_works(conn, b, c, method="operator", similarity_ppm=None, linked_by="operator")
        with pytest.raises(ConflictError, match="canonical work of 1 linked duplicates"):
            link_works(conn, a, c, method="operator", similarity_ppm=None, linked_by="operator")
        with pytest.raises(ValidationError, match="itself"):
            link_works(conn, a, b, method="operator", similarity_ppm=None, linked_by="operator")
        with pytest.raises(NotFoundError, match="not registered"):
            link_works(conn, "0" * 64, a, method="operator", similarity_ppm=None, linked_by="operator")
        # Linking to a duplicate links to its canonical work.
        assert link_works(conn, c, b, method="operator", similarity_ppm=None, linked_by="operator") == a


def test_a_re_encoded_image_links_and_a_different_one_does_not(store: Store) -> None:
    import random

    images = real_images()
    score = images["music21/layoutTestMore.png@400,400"]
    png = io.BytesIO()
    score.save(png, format="PNG")
    other = io.BytesIO()
    images["music21/layoutTestMore.png@800,1600"].save(other, format="PNG")
    with store.write() as conn:
        a, b, c = register_works(
            conn,
            [
                WorkIn(png.getvalue(), "score", "image"),
                WorkIn(jpeg_q70(score, random.Random(1)), "score.jpg", "image/jpeg"),
                WorkIn(other.getvalue(), "another system", "image"),
            ],
        )
    assert b.canonical_work_id == a.work_id and b.method == IMAGE_METHOD
    assert c.canonical_work_id is None


def test_an_undecodable_image_is_refused_and_nothing_is_written(store: Store) -> None:
    before = row_counts(store)
    with pytest.raises(ValidationError, match="could not be decoded"):
        _register(store, WorkIn(b"not a picture", "x", "image"))
    assert row_counts(store) == before


def test_audio_that_does_not_decode_is_registered_by_content_only(store: Store) -> None:
    """Bytes fpcalc cannot decode (a truncated WAV header) get no fingerprint: the work is registered by
    SHA-256 only and links to nothing (test_fingerprints_audio.py covers audio that decodes)."""
    with store.write() as conn:
        (r,) = register_works(conn, [WorkIn(b"RIFF....WAVEfmt ", "clip", "audio/wav")])
    assert (r.canonical_work_id, r.method) == (None, None)


def test_a_large_image_is_refused_before_decoding() -> None:
    from endcredits.registry import fingerprints

    buf = io.BytesIO()
    Image.new("L", (9_000, 8_000)).save(buf, format="PNG")
    with pytest.raises(ValidationError, match="IMAGE_PIXELS_MAX"):
        fingerprints.image_fingerprint(buf.getvalue())
