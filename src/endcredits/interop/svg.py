"""Who made an SVG drawing, from the RDF metadata inside it: title, creators, rights holder, licence.

Drawings from Inkscape, Sodipodi and the Open Clip Art Library carry a Dublin Core / Creative Commons
record in ``<metadata><rdf:RDF><cc:Work>``::

    <dc:title>Rook</dc:title>
    <dc:creator><cc:Agent><dc:title>Jane Doe</dc:title></cc:Agent></dc:creator>
    <dc:rights><cc:Agent><dc:title>Jane Doe</dc:title></cc:Agent></dc:rights>
    <cc:license rdf:resource="http://creativecommons.org/licenses/publicdomain/"/>

``read_svg_metadata`` reads it with expat and the standard library only. It is safe against hostile
files: a document that declares an entity (the "billion laughs") or refers to an external one is
refused, and no DTD is ever fetched. A bare ``<!DOCTYPE svg PUBLIC ...>`` naming the SVG DTD, which half
of the Open Clip Art drawings carry, is allowed: without entity declarations it expands nothing. Only
the ``<metadata>`` element's subtree is kept in memory. Both Creative Commons namespaces are read, the
old ``http://web.resource.org/cc/`` and the current ``http://creativecommons.org/ns#``.

``import_svg_drawings`` registers drawings as image works (``image/svg+xml``, fingerprinted on their
rendering, so a PNG or JPEG export of one is linked to it) with the record turned into credits: each
``dc:creator`` is credited as ``cawg:creator`` under a credited name, and ``dc:rights`` becomes the work's
rights holder (a credited name too, until someone claims it). A file that cannot be read, parsed or
rendered is not registered; the report names it with one line saying why, and the rest are imported.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

from endcredits.errors import LimitExceededError, ValidationError, invariant
from endcredits.registry.fingerprints import Fingerprint, compute_fingerprint, register_works
from endcredits.registry.records import CreditIn, WorkIn, add_credits, clean_text, name_ids
from endcredits.store.blobs import put_blob
from endcredits.store.engine import Store

SVG_NS = "http://www.w3.org/2000/svg"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC_NS = "http://purl.org/dc/elements/1.1/"
CC_NAMESPACES = ("http://creativecommons.org/ns#", "http://web.resource.org/cc/")

SVG_METADATA_BYTES_MAX = 64 * 1024 * 1024
"""Largest SVG file whose metadata is read (the largest Open Clip Art drawing is 1.7 MB)."""
METADATA_ELEMENTS_MAX = 10_000
"""Most elements kept from one ``<metadata>`` subtree (a Work record has a few dozen)."""
METADATA_TEXT_CHARS_MAX = 1_000
"""Longest title, name or licence URL kept; a longer one is cut (a credit name is at most 200 anyway)."""
CREATORS_MAX = 100
SVG_KIND = "image/svg+xml"
CREATOR_ROLE = "cawg:creator"
DRAWINGS_PER_IMPORT_MAX = 1_000_000


@dataclass(frozen=True)
class SvgMetadata:
    """What an SVG's RDF record says. Empty fields are None (or an empty tuple): the record was silent."""

    title: str | None
    creators: tuple[str, ...]
    rights_holder: str | None
    license_url: str | None


def _q(name: str) -> str:
    uri, sep, local = name.rpartition("}")
    return f"{{{uri}}}{local}" if sep else local


class _MetadataCollector:
    """Expat handlers that keep only the ``<metadata>`` subtrees (SVG namespace, or none: some old drawings
    omit ``xmlns``), and refuse entities."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.depth_in_metadata = 0
        self.builder: ET.TreeBuilder | None = None
        self.roots: list[ET.Element] = []
        self.element_count = 0

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        name = _q(tag)
        if self.depth_in_metadata == 0 and name not in (f"{{{SVG_NS}}}metadata", "metadata"):
            return
        if self.depth_in_metadata == 0:
            self.builder = ET.TreeBuilder()
        self.depth_in_metadata += 1
        self.element_count += 1
        if self.element_count > METADATA_ELEMENTS_MAX:
            raise ValidationError(
                f"{self.where}: the SVG's <metadata> holds more than METADATA_ELEMENTS_MAX={METADATA_ELEMENTS_MAX} "
                "elements"
            )
        invariant(self.builder is not None, "a <metadata> subtree is being built")
        assert self.builder is not None  # for mypy: invariant() has raised otherwise
        self.builder.start(name, {_q(k): v for k, v in attrs.items()})

    def end(self, tag: str) -> None:
        if self.depth_in_metadata == 0 or self.builder is None:
            return
        self.builder.end(_q(tag))
        self.depth_in_metadata -= 1
        if self.depth_in_metadata == 0:
            self.roots.append(self.builder.close())
            self.builder = None

    def data(self, text: str) -> None:
        if self.depth_in_metadata and self.builder is not None:
            self.builder.data(text)

    def refuse_entity(self, name: str, *_: object) -> None:
        raise ValidationError(f"{self.where}: the SVG declares the XML entity {name!r}; SVGs with entities are refused")

    def refuse_external(self, context: str, base: str | None, system_id: str | None, public_id: str | None) -> int:
        raise ValidationError(
            f"{self.where}: the SVG refers to the external entity {system_id!r}; SVGs with entities are refused"
        )


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    out = " ".join(text.split())
    return out[:METADATA_TEXT_CHARS_MAX] or None


def _agent_names(element: ET.Element) -> list[str]:
    """Names under a dc:creator or dc:rights: cc:Agent/dc:title, rdf:li items, or the element's own text."""
    names: list[str] = []
    for cc in CC_NAMESPACES:
        for agent in element.iter(f"{{{cc}}}Agent"):
            name = _clean(agent.findtext(f"{{{DC_NS}}}title"))
            if name:
                names.append(name)
    names += [n for li in element.iter(f"{{{RDF_NS}}}li") if (n := _clean("".join(li.itertext())))]
    if not names:
        own = _clean(element.text)
        if own:
            names.append(own)
    return names


def _work_record(roots: list[ET.Element]) -> ET.Element | None:
    for root in roots:
        for cc in CC_NAMESPACES:
            found = root.find(f".//{{{cc}}}Work")
            if found is not None:
                return found
    for root in roots:  # some tools write the record under rdf:Description instead
        found = root.find(f".//{{{RDF_NS}}}Description")
        if found is not None:
            return found
    return None


def read_svg_metadata(content: bytes, *, where: str = "SVG") -> SvgMetadata:
    """The title, creators, rights holder and licence URL an SVG's RDF record gives.

    ``where`` names the file in error messages. Refused, with a ``ValidationError`` of one line: a file
    over ``SVG_METADATA_BYTES_MAX``, XML that is not well formed, any entity declaration or external
    entity. An SVG with no record gives an empty ``SvgMetadata``.
    """
    if len(content) > SVG_METADATA_BYTES_MAX:
        raise ValidationError(f"{where}: {len(content)} bytes; at most SVG_METADATA_BYTES_MAX={SVG_METADATA_BYTES_MAX}")
    collector = _MetadataCollector(where)
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.data
    parser.EntityDeclHandler = collector.refuse_entity
    parser.ExternalEntityRefHandler = collector.refuse_external
    try:
        parser.Parse(content, True)
    except expat.ExpatError as exc:
        raise ValidationError(
            f"{where}: not well-formed XML ({expat.ErrorString(exc.code)} at line {exc.lineno}, column {exc.offset})"
        ) from None
    work = _work_record(collector.roots)
    if work is None:
        return SvgMetadata(None, (), None, None)
    creators: list[str] = []
    for element in work.findall(f"{{{DC_NS}}}creator"):
        creators += [n for n in _agent_names(element) if n not in creators]
    rights = [n for element in work.findall(f"{{{DC_NS}}}rights") for n in _agent_names(element)]
    license_url = None
    for cc in CC_NAMESPACES:
        for lic in work.findall(f"{{{cc}}}license"):
            license_url = license_url or _clean(lic.get(f"{{{RDF_NS}}}resource") or lic.text)
    return SvgMetadata(
        title=_clean(work.findtext(f"{{{DC_NS}}}title")),
        creators=tuple(creators[:CREATORS_MAX]),
        rights_holder=rights[0] if rights else None,
        license_url=license_url,
    )


@dataclass(frozen=True)
class SvgImportReport:
    """What ``import_svg_drawings`` did: works registered (new ones), linked to an earlier work, credits,
    names; and each file refused, as ``"SOURCE: why"``."""

    works: int
    linked: int
    credits: int
    names: int
    refused: tuple[str, ...]


@dataclass(frozen=True)
class _Drawing:
    source: str
    content: bytes
    meta: SvgMetadata
    fingerprint: Fingerprint | None


def _read_drawing(path: Path, source: str) -> _Drawing:
    if path.stat().st_size > SVG_METADATA_BYTES_MAX:
        raise ValidationError(f"{path.stat().st_size} bytes; at most SVG_METADATA_BYTES_MAX={SVG_METADATA_BYTES_MAX}")
    content = path.read_bytes()
    meta = read_svg_metadata(content, where=source)
    return _Drawing(source, content, meta, compute_fingerprint(content, SVG_KIND))


def _title(d: _Drawing) -> str:
    for raw in (d.meta.title, Path(d.source).stem):
        try:
            return clean_text(raw or "", "title")
        except ValidationError:
            continue
    return "untitled drawing"


def import_svg_drawings(store: Store, files: Sequence[Path], *, root: Path | None = None) -> SvgImportReport:
    """Register SVG drawings as image works with the credits their metadata gives, in one transaction.

    Each work's ``source`` is its path relative to ``root`` (or as given). Every file is read, parsed and
    rendered before anything is written; one that fails is refused (listed in the report) and the others
    go in. Names are credited as given in the metadata; nothing is guessed.
    """
    if len(files) > DRAWINGS_PER_IMPORT_MAX:
        raise LimitExceededError(f"{len(files)} drawings; at most DRAWINGS_PER_IMPORT_MAX={DRAWINGS_PER_IMPORT_MAX}")
    drawings: list[_Drawing] = []
    refused: list[str] = []
    for path in files:
        source = str(path.relative_to(root)) if root is not None else str(path)
        try:
            drawings.append(_read_drawing(path, source))
        except (ValidationError, OSError) as exc:
            why = str(exc).removeprefix(f"{source}: ")
            refused.append(f"{source}: {why}")
    for d in drawings:
        put_blob(store.data_dir, d.content)
    with store.write() as conn:
        ids = name_ids(conn, [n for d in drawings for n in (*d.meta.creators, d.meta.rights_holder) if n])
        items = [
            WorkIn(
                d.content,
                _title(d),
                SVG_KIND,
                d.source,
                f"name:{ids[clean_text(d.meta.rights_holder, 'credited name')]}" if d.meta.rights_holder else None,
            )
            for d in drawings
        ]
        registered = register_works(
            conn, items, fingerprints=[d.fingerprint for d in drawings], data_dir=store.data_dir
        )
        credit_rows = [
            CreditIn(r.work_id, f"name:{ids[clean_text(n, 'credited name')]}", CREATOR_ROLE, 1)
            for r, d in zip(registered, drawings)
            for n in d.meta.creators
        ]
        n_credits = add_credits(conn, credit_rows)
    linked = sum(1 for r in registered if r.canonical_work_id is not None and r.similarity is not None)
    return SvgImportReport(len({r.work_id for r in registered}), linked, n_credits, len(ids), tuple(refused))


__all__ = ["SvgImportReport", "SvgMetadata", "import_svg_drawings", "read_svg_metadata"]
