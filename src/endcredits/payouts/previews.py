"""What a statement shows of a work or an output: an image as a small PNG thumbnail (made here with Pillow
from the stored bytes, kept under ``DATA/thumbnails/``, 0600 in 0700 folders: a thumbnail of a face scan is
personal data too), a text or a tune as a short excerpt, anything else by its kind only.

Who may see which preview is decided here, on the store, so the service only asks: a person sees the works
credited to them (directly, through a name they claimed, or as the rights holder); an output's preview is
shown only on a statement it paid (the portal signs the address it puts on that page).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, or_, select

from endcredits.limits import PREVIEW_IMAGE_PIXELS_MAX
from endcredits.royalties.output_contents import OUTPUTS_FOLDER, media_type_of, output_contents_of
from endcredits.store.blobs import content_path, get_content
from endcredits.store.engine import Store
from endcredits.store.files import private_dir, write_private
from endcredits.store.schema import credits, names, works

THUMBNAIL_PX = 160
"""The longest side of a thumbnail, in pixels (shown at half that on a 2x screen)."""
EXCERPT_CHARS_MAX = 240
"""Characters of a text or tune a statement shows."""
EXCERPT_SOURCE_BYTES_MAX = 8 << 20
"""Largest stored content read for an excerpt: a longer text is shown by its kind only."""
THUMBNAILS_FOLDER = "thumbnails"


@dataclass(frozen=True)
class Preview:
    """How a statement shows one work or output: ``image`` (a thumbnail at an address), ``text`` (the
    excerpt) or ``none`` (``note`` says why)."""

    kind: str
    excerpt: str = ""
    note: str = ""


def excerpt_of(content: bytes) -> str:
    """The start of a UTF-8 text, at most ``EXCERPT_CHARS_MAX`` characters, cut at a line end when one is near
    and marked with an ellipsis when cut."""
    text = content.decode("utf-8", errors="replace").replace("\r\n", "\n").strip()
    if len(text) <= EXCERPT_CHARS_MAX:
        return text
    cut = text[:EXCERPT_CHARS_MAX]
    at = cut.rfind("\n")
    return (cut[:at] if at >= EXCERPT_CHARS_MAX // 2 else cut).rstrip() + " …"


def _preview_of(content: bytes | None, missing: str, other: str) -> Preview:
    if content is None:
        return Preview("none", note=missing)
    media_type = media_type_of(content)
    if media_type.startswith("image/"):
        return Preview("image")
    if media_type.startswith("text/"):
        return Preview("text", excerpt=excerpt_of(content))
    return Preview("none", note=other)


def output_previews(store: Store, output_ids: Sequence[str]) -> dict[str, Preview]:
    """Per output: its thumbnail or excerpt where the operator supplied its content, else a note that says
    they did not."""
    with store.read() as conn:
        found = output_contents_of(conn, output_ids)
    out: dict[str, Preview] = {}
    for oid in output_ids:
        c = found.get(oid)
        if c is None:
            out[oid] = Preview("none", note="the operator did not supply what the model generated for this output")
        elif c.is_image:
            out[oid] = Preview("image")
        elif c.is_text and c.size_bytes <= EXCERPT_SOURCE_BYTES_MAX:
            content = get_content(store.data_dir, OUTPUTS_FOLDER, c.content_sha256)
            out[oid] = _preview_of(
                content, "the output's content is recorded but its file is missing", f"{c.media_type} content"
            )
        else:
            out[oid] = Preview("none", note=f"{c.media_type} content of {c.size_bytes} bytes, not shown here")
    return out


def work_previews(store: Store, work_ids: Sequence[str]) -> dict[str, Preview]:
    """Per work: its thumbnail (an image) or excerpt (a text or tune) from its stored bytes, else its kind."""
    wanted = sorted(set(work_ids))
    with store.read() as conn:
        q = select(works.c.id, works.c.kind, works.c.size_bytes).where(works.c.id.in_(wanted))
        rows = {r.id: r for r in conn.execute(q)}
    out: dict[str, Preview] = {}
    for wid in wanted:
        r = rows.get(wid)
        if r is None:
            out[wid] = Preview("none", note="not in the registry")
        elif int(r.size_bytes) > EXCERPT_SOURCE_BYTES_MAX:
            out[wid] = Preview("none", note=f"a {r.kind} work of {int(r.size_bytes)} bytes")
        else:
            content = get_content(store.data_dir, "works", wid)
            out[wid] = _preview_of(content, f"a {r.kind} work whose content is not stored here", f"a {r.kind} work")
    return out


def person_may_see_work(conn: Connection, person_id: int, work_id: str) -> bool:
    """Whether the work is credited to the person: a credit to them or to a name they claimed, or they (or a
    name they claimed) hold its rights."""
    claimed = select(names.c.id).where(names.c.person_id == person_id)
    credited = (
        select(works.c.id)
        .join(credits, credits.c.work_seq == works.c.seq)
        .where(works.c.id == work_id)
        .where(or_(credits.c.person_id == person_id, credits.c.name_id.in_(claimed)))
        .limit(1)
    )
    holder = (
        select(works.c.id)
        .where(works.c.id == work_id)
        .where(or_(works.c.rights_holder_person_id == person_id, works.c.rights_holder_name_id.in_(claimed)))
        .limit(1)
    )
    return conn.execute(credited).first() is not None or conn.execute(holder).first() is not None


def work_thumbnail(store: Store, work_id: str) -> bytes | None:
    """A PNG thumbnail of an image work; None when the work is not an image or its bytes are not here."""
    return _thumbnail(store.data_dir, "works", work_id)


def output_thumbnail(store: Store, output_id: str) -> bytes | None:
    """A PNG thumbnail of an output's content; None when it has none or it is not an image."""
    with store.read() as conn:
        c = output_contents_of(conn, [output_id]).get(output_id)
    if c is None or not c.is_image:
        return None
    return _thumbnail(store.data_dir, OUTPUTS_FOLDER, c.content_sha256)


def _thumbnail(data_dir: Path, folder: str, sha256: str) -> bytes | None:
    cached = content_path(data_dir, THUMBNAILS_FOLDER, f"{sha256}-{THUMBNAIL_PX}.png")
    if cached.exists():
        return cached.read_bytes()
    content = get_content(data_dir, folder, sha256)
    if content is None or not media_type_of(content).startswith("image/"):
        return None
    png = make_thumbnail(content)
    if png is not None:
        private_dir(cached.parent)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.partial")
        write_private(tmp, png)
        tmp.replace(cached)
    return png


def make_thumbnail(content: bytes) -> bytes | None:
    """A PNG at most ``THUMBNAIL_PX`` on its longer side; None for bytes Pillow cannot read or an image over
    ``PREVIEW_IMAGE_PIXELS_MAX`` pixels (its size is read from the header, before anything is decoded)."""
    from PIL import Image, UnidentifiedImageError

    from endcredits.errors import ValidationError
    from endcredits.registry.fingerprints import is_svg, render_svg

    if is_svg(content, ""):  # a drawing: rendered, never decoded by Pillow
        try:
            buf = io.BytesIO()
            render_svg(content, THUMBNAIL_PX).save(buf, format="PNG")
            return buf.getvalue()
        except ValidationError:
            return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as im:
                if im.width * im.height > PREVIEW_IMAGE_PIXELS_MAX:
                    return None
                im.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))
                im.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
                small = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
                buf = io.BytesIO()
                small.save(buf, format="PNG")
                return buf.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None
