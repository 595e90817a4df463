"""`import_collection`: a credited collection from CSV, JSON Lines and Parquet, on SQLite and PostgreSQL.

The files are written here: a few text works and a PNG, their credits, a rights holder, lineage by source
and by SHA-256, and consent from a column and from a non-commercial licence.
"""

from __future__ import annotations

import csv
import json
import stat
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from imports_fixtures import WINDOW, png, row_counts, work_grants
from sqlalchemy import select

from endcredits.errors import ValidationError
from endcredits.interop.collection import CollectionReport, import_collection
from endcredits.registry.records import content_sha256, get_work, graph_rows
from endcredits.store.engine import Store
from endcredits.store.schema import names

TUNE = b"X:1\nT:Auld Bessy\nK:G\nGABc d2e2|\n"
SCAN = png(3)
SCORE = b"Score for a film, first cue.\n"


def _contents(folder: Path) -> None:
    (folder / "media").mkdir(exist_ok=True)
    (folder / "media" / "tune.abc").write_bytes(TUNE)
    (folder / "media" / "scan.png").write_bytes(SCAN)
    (folder / "media" / "score.txt").write_bytes(SCORE)


def _rows() -> list[dict[str, Any]]:
    """The collection as JSON Lines rows: the schema's logical form."""
    return [
        {
            "content": "media/tune.abc",
            "kind": "abc-tune",
            "title": "Auld Bessy",
            "source": "https://example.org/tunes/auld-bessy",
            "licence": "CC-BY-NC-4.0",
            "rights_holder": "Folk Archive Trust",
            "credits": [
                {"name": "Jack Campin", "role": "endcredits:transcriber", "weight": 2},
                {"name": "Niel Gow", "role": "endcredits:composer"},
            ],
        },
        {
            "content": "media/scan.png",
            "kind": "image",
            "title": "Scan of the score",
            "source": "https://example.org/scans/1",
            "credits": [{"name": "Ann Lee", "role": "endcredits:scan_operator"}],
            "lineage": [{"parent": "https://example.org/tunes/auld-bessy", "share": "1/5"}],
            "consent": {"ai_training": "notAllowed"},
        },
        {
            "content": "media/score.txt",
            "kind": "text",
            "title": "Score",
            "credits": [{"name": "Ann Lee", "role": "ebu:17.1.7", "weight": 3}],
            "lineage": [{"parent": content_sha256(SCAN)}],
        },
        {"work": content_sha256(TUNE), "credits": [{"name": "Mr. Alphy", "role": "endcredits:collector"}]},
    ]


def _csv_row(row: dict[str, Any]) -> dict[str, str]:
    out = {k: str(v) for k, v in row.items() if k not in ("credits", "lineage", "consent")}
    for i, c in enumerate(row.get("credits", []), start=1):
        out.update({f"credit{i}_{k}": str(v) for k, v in c.items()})
    for i, p in enumerate(row.get("lineage", []), start=1):
        out[f"parent{i}"] = p["parent"]
        if "share" in p:
            out[f"parent{i}_share"] = p["share"]
    out.update({f"consent_{u}": d for u, d in row.get("consent", {}).items()})
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    flat = [_csv_row(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(flat)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    credit = pa.struct([("name", pa.string()), ("person", pa.int64()), ("role", pa.string()), ("weight", pa.int64())])
    schema = pa.schema(
        [
            ("content", pa.string()),
            ("work", pa.string()),
            ("kind", pa.string()),
            ("title", pa.string()),
            ("source", pa.string()),
            ("licence", pa.string()),
            ("rights_holder", pa.string()),
            ("credits", pa.list_(credit)),
            ("lineage", pa.list_(pa.struct([("parent", pa.string()), ("share", pa.string())]))),
            ("consent", pa.map_(pa.string(), pa.string())),
        ]
    )
    prepared = [{**r, "consent": list(r.get("consent", {}).items())} for r in rows]
    pq.write_table(pa.Table.from_pylist(prepared, schema=schema), path)
    return path


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}


def _import(store: Store, path: Path, **options: Any) -> CollectionReport:
    return import_collection(store, path, window=WINDOW, **options)


def _state(store: Store) -> dict[str, Any]:
    """Credits, rights holders, lineage and grants of the collection's works, with names spelled out."""
    ids = [content_sha256(c) for c in (TUNE, SCAN, SCORE)]
    with store.read() as conn:
        rows = graph_rows(conn, ids)
        name_of = {f"name:{r.id}": r.name for r in conn.execute(select(names.c.id, names.c.name))}
    return {
        "credits": sorted((w[:8], name_of[p], r, wt) for w, p, r, wt in rows.credits),
        "holders": sorted((w[:8], name_of[p]) for w, p in rows.rights_holders),
        "parents": sorted((w[:8], p[:8], s) for w, p, s in rows.parents),
        "grants": {w[:8]: work_grants(store, w) for w in ids},
    }


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_each_format_imports_the_same_collection(store: Store, tmp_path: Path, fmt: str) -> None:
    _contents(tmp_path)
    path = WRITERS[fmt](tmp_path / f"collection.{fmt}", _rows())
    report = _import(store, path)
    assert (report.format, report.rows_read, report.rows_new, report.rows_present, report.rows_refused) == (
        fmt, 4, 3, 1, 0,
    )  # fmt: skip
    assert (report.works_added, report.credits_added, report.lineage_added, report.grants_added) == (3, 5, 2, 2)
    tune, scan, score = (content_sha256(c)[:8] for c in (TUNE, SCAN, SCORE))
    state = _state(store)
    assert state["credits"] == sorted(
        [
            (tune, "Jack Campin", "endcredits:transcriber", 2),
            (tune, "Niel Gow", "endcredits:composer", 1),
            (tune, "Mr. Alphy", "endcredits:collector", 1),
            (scan, "Ann Lee", "endcredits:scan_operator", 1),
            (score, "Ann Lee", "ebu:17.1.7", 3),
        ]
    )
    assert state["holders"] == [(tune, "Folk Archive Trust")]
    assert state["parents"] == sorted([(scan, tune, Fraction(1, 5)), (score, scan, None)])
    assert state["grants"][tune] == {
        "commercial": ("notAllowed", "collection collection." + fmt + ": licence CC-BY-NC-4.0 (non-commercial)")
    }
    assert state["grants"][scan] == {"ai_training": ("notAllowed", f"collection collection.{fmt}: consent ai_training")}
    assert state["grants"][score] == {}


def test_importing_again_adds_nothing(store: Store, tmp_path: Path) -> None:
    _contents(tmp_path)
    path = write_csv(tmp_path / "collection.csv", _rows())
    _import(store, path)
    before = row_counts(store)
    again = _import(store, path)
    assert (again.rows_read, again.rows_new, again.rows_present, again.rows_refused) == (4, 0, 4, 0)
    assert (again.works_added, again.credits_added, again.lineage_added, again.grants_added) == (0, 0, 0, 0)
    after = row_counts(store)
    assert after.pop("audit_log") > before.pop("audit_log")  # the import itself is recorded
    assert after == before


def _many(folder: Path, count: int) -> list[dict[str, Any]]:
    (folder / "media").mkdir(exist_ok=True)
    rows = []
    for i in range(count):
        (folder / "media" / f"{i}.txt").write_text(f"work number {i}\n" * 3)
        rows.append(
            {
                "content": f"media/{i}.txt",
                "kind": "text",
                "title": f"Work {i}",
                "source": f"https://example.org/w/{i}",
                "credits": [{"name": f"Writer {i % 3}", "role": "endcredits:author"}],
                **({"lineage": [{"parent": f"https://example.org/w/{i - 1}"}]} if i else {}),
            }
        )
    return rows


def test_an_interrupted_import_finishes_when_run_again(store: Store, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "many.jsonl", _many(tmp_path, 7))
    calls = []

    def interrupt(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _import(store, path, batch_rows=2, progress=interrupt)
    partial = row_counts(store)
    assert partial["works"] == 4  # two batches of two committed before the interruption
    report = _import(store, path, batch_rows=2)
    assert (report.rows_new, report.rows_present, report.rows_refused) == (3, 4, 0)
    assert (report.works_added, report.credits_added, report.lineage_added) == (3, 3, 3)
    fresh = _import_elsewhere(tmp_path, path)
    done = row_counts(store)
    for table in ("works", "credits", "lineage", "names", "consent_grants"):
        assert done[table] == fresh[table], table


def _import_elsewhere(tmp_path: Path, path: Path) -> dict[str, int]:
    from endcredits.store.engine import init_store

    other = init_store(tmp_path / "other")
    try:
        _import(other, path)
        return row_counts(other)
    finally:
        other.dispose()


def test_a_parent_named_by_a_later_row_waits_for_it(store: Store, tmp_path: Path) -> None:
    rows = list(reversed(_many(tmp_path, 4)))  # every child before its parent
    report = _import(store, write_jsonl(tmp_path / "reversed.jsonl", rows), batch_rows=1)
    assert (report.rows_new, report.rows_refused, report.lineage_added) == (4, 0, 3)


def _text_row(letter: str, **extra: Any) -> dict[str, Any]:
    return {"content": f"media/{letter}.txt", "kind": "text", "title": letter.upper(), **extra}


def _credit(role: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": "Someone", "role": role, **extra}]


BAD_ROWS: list[tuple[dict[str, Any], str]] = [
    ({"content": "media/a.txt", "kind": "text"}, "missing column: title"),
    (_text_row("b", credits=_credit("x:y")), "unknown role scheme 'x'"),
    (_text_row("c", credits=_credit("ebu:99")), "unknown role ebu:99"),
    (_text_row("nowhere"), "content file 'media/nowhere.txt' does not exist"),
    ({"content": "media/not-an-image.txt", "kind": "image", "title": "E"}, "the image could not be decoded"),
    ({"work": "f" * 64, "credits": _credit("endcredits:author")}, f"work {'f' * 64} is not registered"),
    (
        _text_row("g", source="s:g", lineage=[{"parent": "s:h"}]),
        "lineage cycle within the file: row 8 -> row 9 -> row 8",
    ),
    (
        _text_row("h", source="s:h", lineage=[{"parent": "s:g"}]),
        "lineage cycle within the file: row 9 -> row 8 -> row 9",
    ),
    (_text_row("i", credits=_credit("cawg:editor", weight=-2)), "credit 1 weight must be a whole number in 1.."),
    (_text_row("j", credits=_credit("cawg:editor", weight="1.5")), "credit 1 weight must be a whole number"),
    (_text_row("k", lineage=[{"parent": "s:g", "share": "-1/5"}]), "lineage share -1/5 must be between 0 and 1"),
    (
        _text_row("l", licence="CC-BY-NC-4.0", consent={"commercial": "allowed"}),
        "licence CC-BY-NC-4.0 is non-commercial",
    ),
    (_text_row("m", credits=[{"person": 99, "role": "cawg:editor"}]), "no person 99 is registered"),
]


def _bad_collection(folder: Path) -> list[dict[str, Any]]:
    (folder / "media").mkdir(exist_ok=True)
    for letter in "abcghijklm":
        (folder / "media" / f"{letter}.txt").write_text(f"text {letter}\n")
    (folder / "media" / "not-an-image.txt").write_text("not a picture\n")
    (folder / "media" / "good.txt").write_text("a good work\n")
    good = {**_text_row("good"), "credits": [{"name": "Good Name", "role": "endcredits:author"}]}
    return [good] + [row for row, _ in BAD_ROWS]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_each_bad_row_is_refused_alone_with_its_reason(store: Store, tmp_path: Path, fmt: str) -> None:
    rows = _bad_collection(tmp_path)
    report = _import(store, WRITERS[fmt](tmp_path / f"bad.{fmt}", rows))
    assert (report.rows_read, report.rows_new, report.rows_refused) == (len(rows), 1, len(BAD_ROWS))
    reasons = {r.row: r.reason for r in report.refusals}
    assert sorted(reasons) == list(range(2, len(rows) + 1))
    for number, (_, expected) in enumerate(BAD_ROWS, start=2):
        assert expected in reasons[number], (number, reasons[number])
        assert "\n" not in reasons[number]
    counts = row_counts(store)
    assert (counts["works"], counts["credits"], counts["lineage"], counts["consent_grants"]) == (1, 1, 0, 0)
    with store.read() as conn:
        assert [r.name for r in conn.execute(select(names.c.name))] == ["Good Name"]  # no name of a refused row


def test_a_missing_column_in_a_csv_row(store: Store, tmp_path: Path) -> None:
    _contents(tmp_path)
    (tmp_path / "short.csv").write_text("content,kind,title\nmedia/tune.abc,abc-tune,Tune\nmedia/score.txt,text\n")
    report = _import(store, tmp_path / "short.csv")
    assert report.rows_new == 1
    assert [(r.row, r.reason) for r in report.refusals] == [(2, "missing columns: the row has 2 of 3 cells")]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_truncated_file_imports_its_complete_rows(store: Store, tmp_path: Path, fmt: str) -> None:
    rows = _many(tmp_path, 3)
    whole = WRITERS[fmt](tmp_path / f"whole.{fmt}", rows).read_bytes()
    cut = whole[: whole.rindex(b"https://example.org/w/2") + 5]  # mid-way through the last row
    (tmp_path / f"cut.{fmt}").write_bytes(cut)
    report = _import(store, tmp_path / f"cut.{fmt}")
    assert (report.rows_read, report.rows_new, report.rows_refused) == (3, 2, 1)
    (refusal,) = report.refusals
    assert refusal.row == 3 and "the file ends mid-row: truncated?" in refusal.reason


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("image.csv", SCAN, r"^image.csv is not a CSV file|^image.csv is not a collection CSV"),
        ("notes.csv", b"name,colour\nAnn,blue\n", r"^notes.csv is not a collection CSV .* unknown column 'name'"),
        ("image.jsonl", SCAN, r"^image.jsonl is not JSON Lines"),
        ("words.jsonl", b"hello world\nsecond line\n", r"^words.jsonl is not JSON Lines: its first line"),
        ("text.parquet", b"content,kind\n", r"^text.parquet is not a readable Parquet file"),
        ("cut.parquet", b"PAR1" + b"\x00" * 40, r"^cut.parquet is not a readable Parquet file"),
        ("notes.txt", b"content\n", r"cannot tell the format of notes.txt"),
    ],
)
def test_a_file_not_of_its_format_is_refused_in_one_line(
    store: Store, tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(data)
    before = row_counts(store)
    with pytest.raises(ValidationError, match=message) as info:
        _import(store, tmp_path / name, refusals_path=tmp_path / "refusals.csv")
    assert "\n" not in str(info.value)
    assert row_counts(store) == before
    assert not (tmp_path / "refusals.csv").exists()


def test_a_truncated_parquet_file_is_refused_whole(store: Store, tmp_path: Path) -> None:
    whole = write_parquet(tmp_path / "whole.parquet", _many(tmp_path, 3)).read_bytes()
    (tmp_path / "cut.parquet").write_bytes(whole[: len(whole) // 2])
    before = row_counts(store)
    with pytest.raises(ValidationError, match="^cut.parquet is not a readable Parquet file"):
        _import(store, tmp_path / "cut.parquet")
    assert row_counts(store) == before


def test_refusals_go_to_a_private_report_file(store: Store, tmp_path: Path) -> None:
    rows = _bad_collection(tmp_path)
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    for report_name in ("out/refusals.csv", "out/refusals.jsonl"):
        report = _import(store, path, refusals_path=tmp_path / report_name)
        written = tmp_path / report_name
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
        text = written.read_text(encoding="utf-8")
        if written.suffix == ".csv":
            lines = list(csv.reader(text.splitlines()))
            assert lines[0] == ["row", "reason"] and len(lines) == 1 + report.rows_refused
        else:
            assert sorted(json.loads(x)["row"] for x in text.splitlines()) == [r.row for r in report.refusals]


def test_a_credited_person_and_a_payee_rights_holder(store: Store, tmp_path: Path) -> None:
    from endcredits.registry.records import add_person

    with store.write() as conn:
        person = add_person(conn, "Jack Campin")
    _contents(tmp_path)
    row = {
        "content": "media/tune.abc", "kind": "abc-tune", "title": "Tune", "rights_holder": f"person:{person}",
        "credits": [{"person": person, "role": "endcredits:transcriber"}],
    }  # fmt: skip
    report = _import(store, write_jsonl(tmp_path / "p.jsonl", [row]))
    assert report.rows_new == 1
    with store.read() as conn:
        rows = graph_rows(conn, [content_sha256(TUNE)])
    assert [p for _, p, _, _ in rows.credits] == [f"person:{person}"]
    assert [p for _, p in rows.rights_holders] == [f"person:{person}"]


def test_works_import_from_the_command_line(tmp_path: Path, db_url: str | None) -> None:
    from typer.testing import CliRunner

    from endcredits.cli import app

    runner = CliRunner()
    base = ["--data", str(tmp_path / "data")] + (["--db", db_url] if db_url else [])
    assert runner.invoke(app, [*base, "init"]).exit_code == 0
    _contents(tmp_path)
    good = write_csv(tmp_path / "collection.csv", _rows())
    result = runner.invoke(app, [*base, "works", "import", str(good), "--json"])
    assert result.exit_code == 0, result.stderr or result.stdout
    summary = json.loads(result.stdout)
    assert (summary["rows_read"], summary["rows_new"], summary["works_added"], summary["refusals"]) == (4, 3, 3, [])
    again = runner.invoke(app, [*base, "works", "import", str(good)])
    assert again.exit_code == 0
    assert "4 rows read; 0 new, 4 already present, 0 refused" in again.stdout

    rows = [*_rows()[:1], {"content": "media/score.txt", "kind": "text", "title": "Score", "credits": _credit("x:y")}]
    mixed = write_jsonl(tmp_path / "mixed.jsonl", rows)
    result = runner.invoke(app, [*base, "works", "import", str(mixed), "--report", str(tmp_path / "r" / "out.csv")])
    assert result.exit_code == 1
    assert "2 rows read; 0 new, 1 already present, 1 refused" in result.stdout
    assert "row 2: unknown role scheme 'x'" in result.stdout
    assert (tmp_path / "r" / "out.csv").read_text().splitlines()[1].startswith('2,"unknown role scheme')

    not_csv = tmp_path / "scan.csv"
    not_csv.write_bytes(SCAN)
    result = runner.invoke(app, [*base, "works", "import", str(not_csv)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error [validation]: scan.csv is not a CSV file") and result.stderr.count("\n") == 1


def _drawing(title: str, creator: str, rights: str, shape: str) -> bytes:
    """An Inkscape-style drawing whose RDF record names its title, creator, rights holder and licence."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://creativecommons.org/ns#"
     width="64" height="64" viewBox="0 0 64 64">
  <metadata><rdf:RDF><cc:Work rdf:about="">
    <dc:title>{title}</dc:title>
    <dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator>
    <dc:rights><cc:Agent><dc:title>{rights}</dc:title></cc:Agent></dc:rights>
    <cc:license rdf:resource="http://creativecommons.org/licenses/by-nc/4.0/"/>
  </cc:Work></rdf:RDF></metadata>
  {shape}
</svg>""".encode()


def test_an_svg_row_takes_what_its_own_record_says_where_the_row_is_silent(store: Store, tmp_path: Path) -> None:
    rook = _drawing("Rook", "Jane Doe", "person:1", '<rect x="16" y="8" width="32" height="48" fill="#222"/>')
    moon = _drawing("Moon", "Jane Doe", "Moon Press", '<circle cx="32" cy="32" r="20" fill="#c90"/>')
    (tmp_path / "rook.svg").write_bytes(rook)
    (tmp_path / "moon.svg").write_bytes(moon)
    rows = [
        {"content": "rook.svg", "kind": "image"},
        {"content": "moon.svg", "kind": "image", "title": "A moon", "rights_holder": "Acme",
         "credits": [{"name": "Sam Roe", "role": "endcredits:author"}]},
    ]  # fmt: skip
    report = _import(store, write_csv(tmp_path / "drawings.csv", rows))
    assert (report.rows_new, report.rows_refused) == (2, 0), report.refusals
    ids = [content_sha256(rook), content_sha256(moon)]
    with store.read() as conn:
        graph = graph_rows(conn, ids)
        name_of = {f"name:{r.id}": r.name for r in conn.execute(select(names.c.id, names.c.name))}
        titles = {w: get_work(conn, w).title for w in ids}
    assert titles == {ids[0]: "Rook", ids[1]: "A moon"}
    assert sorted((w[:8], name_of[p], r) for w, p, r, _ in graph.credits) == sorted(
        [(ids[0][:8], "Jane Doe", "cawg:creator"), (ids[1][:8], "Sam Roe", "endcredits:author")]
    )
    # A record's rights holder is a credited name even when it reads like a payee id: a file routes no money.
    assert sorted((w[:8], name_of[p]) for w, p in graph.rights_holders) == sorted(
        [(ids[0][:8], "person:1"), (ids[1][:8], "Acme")]
    )
    assert work_grants(store, ids[0])["commercial"][0] == "notAllowed"  # by-nc, from the record


def test_an_svg_whose_record_declares_entities_is_refused_alone(store: Store, tmp_path: Path) -> None:
    laughs = b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "ha">]><svg xmlns="http://www.w3.org/2000/svg">&a;</svg>'
    (tmp_path / "laughs.svg").write_bytes(laughs)
    before = row_counts(store)
    (tmp_path / "untitled.svg").write_bytes(_drawing("", "Jane Doe", "Jane Doe", '<rect width="9" height="9"/>'))
    rows = [{"content": "laughs.svg", "kind": "image"}, {"content": "untitled.svg", "kind": "image"}]
    report = _import(store, write_jsonl(tmp_path / "bad.jsonl", rows))
    assert (report.rows_refused, report.rows_new) == (2, 0)
    assert report.refusals[0].reason.startswith("the SVG could not be rendered (EntitiesForbidden")
    assert report.refusals[1].reason == "missing column: title (and the SVG's record has no dc:title)"
    assert not any("\n" in r.reason for r in report.refusals)
    assert row_counts(store) == before
