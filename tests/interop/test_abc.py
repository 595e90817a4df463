"""The ABC corpus reader, on the real music21 corpus and on small files written here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from endcredits.errors import NotFoundError, ValidationError
from endcredits.interop.abc import (
    ROLE_CODES,
    ROLE_SCHEME,
    AbcTune,
    clean_person_name,
    corpus_dir,
    iter_tunes,
)

SRC_DIR = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def tunes() -> list[AbcTune]:
    return list(iter_tunes())


@pytest.fixture(scope="module")
def corpus_values() -> set[str]:
    """Every C:, Z: and N: value in the corpus, as written."""
    values: set[str] = set()
    for path in corpus_dir().rglob("*.abc"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line[:2] in ("C:", "Z:", "N:"):
                values.add(line[2:])
    return values


# Raw C:/Z: values copied from the corpus -> the name credited (None: no person).
NAME_TABLE: list[tuple[str, str | None]] = [
    ("Jack Campin * www.campin.me.uk * 2009", "Jack Campin"),
    ("Jack Campin, http://www.campin.me.uk/", "Jack Campin"),
    ("Jack Campin  *  May 2000  *  http://www.purr.demon.co.uk/jack/", "Jack Campin"),
    ("Transcribed by henrik.norbeck@mailbox.swipnet.se", "Henrik Norbeck"),
    ('"Transcribed by Bob Safranek, rjs@gsp.org"', "Bob Safranek"),
    (" Contributed 20000509150031 by Bob Safranekrjs:gsp.org", "Bob Safranek"),
    ("Contributed by Ray Davies,  ray:davies99.freeserve.co.uk", "Ray Davies"),
    ("Contributed by Ray Davies,  ray(at::)davies99.freeserve.co.uk", "Ray Davies"),
    ("Contributed by Ray Davies. ray:davies99.freeserve.co.uk 29june02", "Ray Davies"),
    ("Contributed by Ray Davies,  ray:davies99.freeserve.co.uk=0D", "Ray Davies"),
    (" 1997 by John Chambers <jc@trillian.mit.edu>", "John Chambers"),
    (" Contributed 2008-08-11 16:35:44 by John Chambers\t jc:minya.jc.tzo.net", "John Chambers"),
    ("Slurs corrected by John Chambers", "John Chambers"),
    ("abc 1.6", None),
    ("ABCMUS 1.0", None),
    ("Transcribed by Dan G. Petersen, dangp@post6.tele.dk", "Dan G. Petersen"),
    ("transcribed by John B. Walsh, walsh@math.ubc.ca 8/23/96", "John B. Walsh"),
    ("Transcribed by J.B. Walsh (walsh@math.ubc.ca)", "John B. Walsh"),
    ("John Walsh <walsh:mat:h.ubc.ca>", "John B. Walsh"),
    ("John B. Walsh, 5/8/2002 <walsh:mat::h.ubc.ca>", "John B. Walsh"),
    ("20020507 John Walsh <walsh:mat:h.ubc.ca>", "John B. Walsh"),
    ('"Transcribed by John Walsh (walsh@math.ubc.ca)M:C', "John B. Walsh"),
    ("Transcribed by Trish O'Neil", "Trish O'Neil"),
    ("Transcribed by Trish O'Nei", "Trish O'Neil"),
    ("Transcribed be Trish O'Neil, oneil@cybernw.com", "Trish O'Neil"),
    ("Transcribed byA. LEE WORMAN", "A. Lee Worman"),
    ("Transcribed by A.LEE WORMAN", "A. Lee Worman"),
    ("Bob Puckette <bpuckette:msn.com> 2003-3-10", "Bob Puckette"),
    ("Contributed 20030307 Bob Puckette <BobP:at:workcom.com>", "Bob Puckette"),
    ("Paul de Grae <sullgrae:iol.ie> irtrad-l 2000-4-09", "Paul de Grae"),
    ("Transcribed by Dave Wooldridge (ammended by Colin McEwen 2007-8-11)", "Dave Wooldridge"),
    (' "Transcribed by Norbert Paap, norbertp@bdu uva.nl"', "Norbert Paap"),
    ("transcribed by mvhplank", "mvhplank"),
    ("Ornament (~) is a turn.", None),
    ("MONEY MUSK. -- First couple join right hands and swing once", None),
    ("OPERA REEL. (Form in sets of six couples.) -- First couple balance,", None),
    ("Similar to the Shan Van Vogt", None),
    ("AK/Fiddler\u2019s Companion", None),
    ("Fermata (Fine) above repeat sign.", None),
    ('"collected by F. O\'Neill"', "Francis O'Neill"),
    ('"collected by J.O;Neill"', "James O'Neill"),
    ("(Collected from MacNamara)", "McNamara"),
    ("F. O'Neill.", "Francis O'Neill"),
    ("O'Carolan", "Turlough O'Carolan"),
    ("FRANK LIVINGSTON.", "Frank Livingston"),
    ("FRANK LIVINGSTONE", "Frank Livingston"),
    ("G.L.TRACY.", "G. L. Tracy"),
    ("JAS. HAND.", "James Hand"),
    (" Jas.Hand", "James Hand"),
    ("ZEKE BACUS.", "Zeke Backus"),
    (" Josquin des Prez \\footnotemark", "Josquin des Prez"),
    (" Josquin des Prez, 1545", "Josquin des Prez"),
    ("Josquin de Pr\u00e9", "Josquin des Prez"),
    ("Preston (1780)", "Preston"),
    ("New Set, by T. Ebdon", "T. Ebdon"),
    ("by Mr. Bourat.", "Mr. Bourat"),
    ("N.GOW", "Niel Gow"),
    (" King Colbat:h", "King Colbath"),
    ("Irish.", None),
    ("SCOTCH.", None),
    ("West India.", None),
    ("Highland Air.", None),
    ("A Welch Tune.", None),
    ("Negroe Jig.", None),
    (" Trad", None),
    ("Virginian % Aird's note", None),
    ("as sung by Incledon.", None),
    ("Composed by a Young Lady.", None),
    ("Composed by Countess of Balca...s.", None),
    ("_____ Mc.____ 42nd. Regt.", None),
    ("Play it after the March.", None),
    (" ", None),
]


@pytest.mark.parametrize(("raw", "expected"), NAME_TABLE)
def test_clean_person_name_on_corpus_values(raw: str, expected: str | None) -> None:
    assert clean_person_name(raw) == expected


def test_name_table_rows_are_real_corpus_values(corpus_values: set[str]) -> None:
    missing = [raw for raw, _ in NAME_TABLE if raw not in corpus_values]
    assert missing == []


def test_clean_person_name_never_returns_contact_details() -> None:
    for raw in ["jd7@example.org", "http://www.example.org/", "+44 131 555 0199", "www.campin.me.uk", "a:b.co.uk"]:
        assert clean_person_name(raw) is None
    # An address of the form first.last@ is a name, and only the name is kept.
    assert clean_person_name("Transcribed by jane.doe@example.org") == "Jane Doe"


def test_corpus_counts_and_unique_sources(tunes: list[AbcTune]) -> None:
    assert len(tunes) >= 12_000
    sources = [t.source for t in tunes]
    assert len(set(sources)) == len(sources)
    assert {t.collection for t in tunes} >= {"ryansMammoth", "oneills1850", "essenFolksong", "josquin", "airdsAirs"}
    for tune in tunes:
        assert re.fullmatch(r"[\w\-]+/[\w\-.]+\.abc#\S+", tune.source), tune.source
        assert tune.source.startswith(tune.collection + "/")
        assert tune.text.startswith("X:")
        assert tune.title


def test_no_contact_details_in_names_or_texts(tunes: list[AbcTune]) -> None:
    for tune in tunes:
        for needle in ("@", "www.", "http"):
            assert needle not in tune.text, (tune.source, needle)
        for credit in tune.credits:
            assert credit.role_scheme == ROLE_SCHEME
            assert credit.role_code in ROLE_CODES
            for needle in ("@", "www.", "http", ":", "<", "(", "*"):
                assert needle not in credit.name, (tune.source, credit.name)
            assert not re.search(r"\d", credit.name), (tune.source, credit.name)


def test_only_lines_with_contact_details_change(tunes: list[AbcTune]) -> None:
    """Music, titles and notes are kept as written; only credit and contact lines lose contact details."""
    root = corpus_dir()
    files: dict[str, tuple[list[str], dict[str, int]]] = {}
    changed = 0
    for tune in tunes:
        file_name, number = tune.source.split("#", 1)
        if file_name not in files:
            # The reader repairs DOS letters that were stored as C1 control characters; do the same here.
            lines = (
                (root / file_name)
                .read_text(encoding="utf-8")
                .translate({c: bytes([c]).decode("cp850") for c in range(0x80, 0xA0)})
                .splitlines()
            )
            starts = {line[2:].strip(): i for i, line in enumerate(lines) if line.startswith("X:")}
            files[file_name] = (lines, starts)
        lines, starts = files[file_name]
        for offset, line in enumerate(tune.text.splitlines()):
            original = lines[starts[number] + offset]
            if line != original:
                changed += 1
                contact = re.search(r"@|www\.|http|<[^>]*:|\w:+\w[\w.:\-]*\.[a-z]{2,}", original)
                assert original.startswith("Z:") or contact, original
    assert changed > 3_000  # the Z: lines with addresses
    by_source = {t.source: t for t in tunes}
    assert "N:Irish title: an garran bui.de\n" in by_source["oneills1850/0401-0486.abc#405"].text


def test_one_person_one_spelling(tunes: list[AbcTune]) -> None:
    """No two credited names differ only in case, spacing or punctuation."""
    by_key: dict[str, set[str]] = {}
    for tune in tunes:
        for credit in tune.credits:
            by_key.setdefault(re.sub(r"[^a-z]", "", credit.name.lower()), set()).add(credit.name)
    assert {key: names for key, names in by_key.items() if len(names) > 1} == {}


def test_licences(tunes: list[AbcTune]) -> None:
    by_collection: dict[str, set[bool]] = {}
    for tune in tunes:
        by_collection.setdefault(tune.collection, set()).add(tune.non_commercial)
    assert by_collection["essenFolksong"] == {True}
    assert by_collection["ryansMammoth"] == {False}
    essen = next(t for t in tunes if t.collection == "essenFolksong")
    assert essen.license_note is not None and "license.txt" in essen.license_note
    josquin = next(t for t in tunes if t.collection == "josquin")
    assert josquin.license_note is not None and "General Public License" in josquin.license_note


def test_credits_and_traditional_on_known_tunes(tunes: list[AbcTune]) -> None:
    by_source = {t.source: t for t in tunes}
    foy = by_source["oneills1850/0759-0810.abc#761"]  # C:F. O'Neill.  Z:Transcribed by Stephen Foy (...)
    assert {(c.name, c.role_code) for c in foy.credits} == {
        ("Francis O'Neill", "collector"),
        ("Stephen Foy", "transcriber"),
    }
    assert foy.traditional
    carolan = by_source["oneills1850/0626-0700.abc#636"]
    assert ("Turlough O'Carolan", "composer") in {(c.name, c.role_code) for c in carolan.credits}
    assert not carolan.traditional
    mille = by_source["josquin/milleRegrets.abc#1"]
    assert {(c.name, c.role_code) for c in mille.credits} == {
        ("Josquin des Prez", "composer"),
        ("Laura E. Conrad", "transcriber"),
    }
    ryan = by_source["ryansMammoth/42dHighlandRegimentStrathspey.abc#1"]
    assert [(c.name, c.role_code) for c in ryan.credits] == [("Ray Davies", "transcriber")]
    assert ryan.traditional and not ryan.non_commercial
    wooldridge = [t for t in tunes if any(c.name == "Colin McEwen" for c in t.credits)]
    assert len(wooldridge) == 1
    assert {c.name for c in wooldridge[0].credits} >= {"Dave Wooldridge", "Colin McEwen"}
    assert all(t.traditional for t in tunes if t.collection == "essenFolksong")


def test_iteration_is_deterministic_and_sorted(tunes: list[AbcTune]) -> None:
    again = [t.source for t in iter_tunes(limit=800)]
    assert again == [t.source for t in tunes[:800]]
    files = [t.source.split("#", 1)[0] for t in tunes]
    order = list(dict.fromkeys(files))
    assert order == sorted(order)
    assert len(list(iter_tunes(limit=0))) == 0


def test_small_corpus_written_here(tmp_path: Path) -> None:
    collection = tmp_path / "mine"
    collection.mkdir()
    (collection / "b.abc").write_text(
        "% Copyright (C) 2001 Ann Example ann@example.org\n"
        "\n"
        "X:7\nT:First\nC:ANN EXAMPLE.\nZ:Transcribed by Bo Person, bo@example.org\nK:G\nG2 (A<B) c>d|\n"
        "\n"
        "free text between tunes, not part of either\n"
        "\n"
        "X:8\nT:Second\nT:Alt title\nN:non-commercial use only; see http://example.org\nK:D\nd2 f>a|\n"
        "X:9\nT:Third\nK:D\nA4|\n",
        encoding="utf-8",
    )
    (collection / "a.abc").write_bytes("X:1\nT:Caf\xe9\nC:Trad\nK:C\nC4|\n".encode("latin-1"))
    got = list(iter_tunes(tmp_path))
    assert [t.source for t in got] == ["mine/a.abc#1", "mine/b.abc#7", "mine/b.abc#8", "mine/b.abc#9"]
    first, seventh, eighth, ninth = got
    assert first.title == "Caf\xe9" and first.traditional and first.credits == ()
    assert seventh.text == "X:7\nT:First\nC:ANN EXAMPLE.\nZ:Transcribed by Bo Person,\nK:G\nG2 (A<B) c>d|\n"
    assert [(c.name, c.role_code) for c in seventh.credits] == [
        ("Ann Example", "composer"),
        ("Bo Person", "transcriber"),
        ("Ann Example", "transcriber"),
    ]
    assert not seventh.traditional and not seventh.non_commercial
    assert eighth.title == "Second" and eighth.non_commercial and "http" not in eighth.text
    assert eighth.license_note == "non-commercial use only (tune header)"
    assert ninth.text == "X:9\nT:Third\nK:D\nA4|\n"
    assert [t.source for t in iter_tunes(tmp_path, limit=2)] == ["mine/a.abc#1", "mine/b.abc#7"]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="limit"):
        list(iter_tunes(tmp_path, limit=-1))
    with pytest.raises(NotFoundError, match="does not exist"):
        list(iter_tunes(tmp_path / "nowhere"))


def test_corpus_dir_without_music21_says_how_to_install_it() -> None:
    code = (
        "from endcredits.interop.abc import corpus_dir\n"
        "from endcredits.errors import NotFoundError\n"
        "try:\n    corpus_dir()\nexcept NotFoundError as e:\n    print('NotFound:', e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC_DIR)}
    # -S: no site-packages, so music21 cannot be found.
    done = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.startswith("NotFound:")
    assert "make demo" in done.stdout and "pip install --no-deps music21==10.5.1" in done.stdout


def test_dos_encoded_files_decode_to_letters_not_control_characters() -> None:
    import unicodedata

    from endcredits.interop.abc import corpus_dir

    tunes = list(iter_tunes(corpus_dir() / "essenFolksong"))
    assert tunes
    for tune in tunes:
        assert not any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in tune.title), tune.title
    assert any("ü" in t.title or "ä" in t.title or "ö" in t.title for t in tunes)
