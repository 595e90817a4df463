"""Opt-out signals into grants: TDMRep (tdmrep.json, HTTP headers, HTML meta), IPTC plus:DataMining, ai.txt."""

from __future__ import annotations

from pathlib import Path

import pytest
from imports_fixtures import WINDOW, png, register, row_counts, work_grants

from endcredits.errors import NotFoundError, ValidationError
from endcredits.interop._common import TDM_USES
from endcredits.interop.optout import (
    DMI_DECISIONS,
    ai_txt_signal,
    import_signals,
    parse_headers,
    tdmrep_combined,
    tdmrep_from_text,
    tdmrep_headers,
    tdmrep_html,
    tdmrep_well_known,
    xmp_signal,
)
from endcredits.store.engine import Store

WELL_KNOWN = """[
  {"location": "/public/*", "tdm-reservation": 0},
  {"location": "/images/*.jpg$", "tdm-reservation": 1, "tdm-policy": "https://example.org/policies/tdm.json"},
  {"location": "/images/", "tdm-reservation": 2},
  {"location": "/", "tdm-reservation": 1}
]"""

ALL_NOT = {u: "notAllowed" for u in TDM_USES}
ALL_OK = {u: "allowed" for u in TDM_USES}


def test_tdmrep_well_known_first_matching_rule_wins() -> None:
    signal = tdmrep_well_known(WELL_KNOWN, "https://example.org/images/cat.jpg", name="tdmrep.json")
    assert dict(signal.decisions) == ALL_NOT
    assert "rule 1" in signal.source and "https://example.org/policies/tdm.json" in signal.source
    assert dict(tdmrep_well_known(WELL_KNOWN, "/public/a.png", name="t").decisions) == ALL_OK
    # reservation 2 is a protocol error: that rule counts as unset and matching stops there
    assert dict(tdmrep_well_known(WELL_KNOWN, "/images/cat.jpg.txt", name="t").decisions) == {}
    assert dict(tdmrep_well_known(WELL_KNOWN, "/other", name="t").decisions) == ALL_NOT


def test_tdmrep_headers_and_html_meta_and_their_priority() -> None:
    headers = parse_headers(
        "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTDM-Reservation: 1\r\ntdm-policy: https://p.example/x\r\n"
    )
    from_headers = tdmrep_headers(headers, name="headers.txt")
    assert dict(from_headers.decisions) == ALL_NOT and from_headers.source.startswith("tdmrep:http-header")
    html = '<html><head><meta name="tdm-reservation" content="0"><title>t</title></head></html>'
    from_html = tdmrep_html(html, name="page.html")
    assert dict(from_html.decisions) == ALL_OK
    well_known = tdmrep_well_known(WELL_KNOWN, "/other", name="tdmrep.json")
    assert tdmrep_combined([well_known, from_headers, from_html]) == from_html  # HTML overrides the header
    silent = tdmrep_html("<html><head></head></html>", name="empty.html")
    assert tdmrep_combined([well_known, from_headers, silent]) == from_headers  # absence resets nothing
    assert tdmrep_from_text(html, name="page.html", location=None) == from_html


def test_tdmrep_malformed_json_is_one_line() -> None:
    with pytest.raises(ValidationError, match=r"malformed tdmrep.json t: .* line 1"):
        tdmrep_well_known('[{"location": "/"', "/", name="t")
    with pytest.raises(ValidationError, match="must be a JSON array"):
        tdmrep_well_known('{"location": "/"}', "/", name="t")


def _xmp(value: str, *, attribute: bool = True, other: str = "") -> bytes:
    body = (
        f'<rdf:Description rdf:about="" plus:DataMining="{value}"/>'
        if attribute
        else f'<rdf:Description rdf:about=""><plus:DataMining rdf:resource="{value}"/>'
        f"<plus:OtherConstraints>{other}</plus:OtherConstraints></rdf:Description>"
    )
    return (
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        f'xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/">{body}</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


@pytest.mark.parametrize("code", sorted(DMI_DECISIONS))
def test_every_plus_data_mining_value_maps_as_the_table_says(code: str) -> None:
    signal = xmp_signal(_xmp(f"http://ns.useplus.org/ldf/vocab/{code}"), name="a.xmp")
    assert dict(signal.decisions) == DMI_DECISIONS[code]
    assert code in signal.source


def test_plus_data_mining_in_a_jpeg_element_form_unknown_and_absent() -> None:
    jpeg = (
        b"\xff\xd8\xff\xe1junk"
        + _xmp(
            "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-SEECONSTRAINT",
            attribute=False,
            other="no training without a licence",
        )
        + b"\xff\xd9"
    )
    signal = xmp_signal(jpeg, name="photo.jpg")
    assert dict(signal.decisions) == ALL_NOT and "no training without a licence" in signal.source
    assert dict(xmp_signal(_xmp("DMI-ALLOWED-SOMETIMES"), name="b.xmp").decisions) == ALL_NOT
    assert dict(xmp_signal(_xmp("DMI-PROHIBITED-GENAIMLTRAINING"), name="c.xmp").decisions) == {
        "ai_generative_training": "notAllowed"
    }
    with pytest.raises(ValidationError, match="no XMP packet"):
        xmp_signal(b"plain bytes", name="d.bin")
    with pytest.raises(ValidationError, match="malformed XMP"):
        xmp_signal(b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF></x:xmpmeta>', name="e.xmp")


AI_TXT = """# Spawning AI
# Prevent datasets from using the following file types

User-Agent: *
Disallow: *.jpg
Disallow: *.png
Allow: /press/*.png
Disallow: /private/

User-Agent: img2dataset
Disallow: /
"""


def test_ai_txt_longest_match_wins_and_agent_groups() -> None:
    assert dict(ai_txt_signal(AI_TXT, "https://example.org/art/cat.jpg", name="ai.txt").decisions) == {
        "ai_generative_training": "notAllowed",
        "ai_training": "notAllowed",
    }
    press = ai_txt_signal(AI_TXT, "/press/logo.png", name="ai.txt")
    assert set(press.decisions.values()) == {"allowed"} and "line 7: Allow: /press/*.png" in press.source
    assert dict(ai_txt_signal(AI_TXT, "/docs/a.txt", name="ai.txt").decisions) == {}
    assert set(ai_txt_signal(AI_TXT, "/docs/a.txt", name="ai.txt", agent="img2dataset").decisions.values()) == {
        "notAllowed"
    }
    with pytest.raises(ValidationError, match="line 1: a rule before any User-Agent"):
        ai_txt_signal("Disallow: /\n", "/", name="ai.txt")


def test_signals_become_grants_with_their_source(store: Store, tmp_path: Path) -> None:
    work = register(store, png(20), "cat", source="https://example.org/images/cat.jpg")
    signals = [
        tdmrep_well_known(WELL_KNOWN, "/images/cat.jpg", name="tdmrep.json"),
        xmp_signal(_xmp("DMI-PROHIBITED-AIMLTRAINING"), name="cat.xmp"),
        ai_txt_signal(AI_TXT, "/images/cat.jpg", name="ai.txt"),
    ]
    report = import_signals(store, work, signals, WINDOW, kind="signals")
    assert report.grants_added == 4 + 2 + 2
    grants = work_grants(store, work)
    assert grants["data_mining"] == ("notAllowed", signals[0].source)
    again = import_signals(store, work, signals, WINDOW, kind="signals")
    assert (again.grants_added, again.grants_unchanged) == (0, 8)


def test_signal_for_an_unregistered_work_changes_nothing(store: Store) -> None:
    before = row_counts(store)
    signal = xmp_signal(_xmp("DMI-PROHIBITED"), name="x.xmp")
    with pytest.raises(NotFoundError, match="not registered"):
        import_signals(store, "ab" * 32, [signal], WINDOW, kind="xmp")
    assert row_counts(store) == before
