"""What a model generated, kept beside the money it earned: the content of an output, where the operator
supplied it. Attributing outputs through ``endcredits attribute --outputs`` or ``POST /api/v1/attributions``
keeps the content that was scored (``royalties.payees.attribute_and_keep``); the demos keep theirs.

One row of ``output_contents`` per output id: the SHA-256 of the bytes (stored content-addressed under
``DATA/outputs/``, 0600 in 0700 folders), a media type read off the bytes and their size. A row is never
changed: recording the same bytes again is a no-op, other bytes under the same id are refused. Statements
show the content (an image as a thumbnail, a text or tune as an excerpt) or say the operator gave none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, select

from endcredits.errors import ConflictError, LimitExceededError
from endcredits.limits import OUTPUT_CONTENT_BYTES_MAX, check_ids
from endcredits.store.blobs import get_content, put_content
from endcredits.store.bulk import chunks
from endcredits.store.engine import Store, utc_now
from endcredits.store.schema import output_contents

OUTPUTS_FOLDER = "outputs"
IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True)
class OutputContent:
    output_id: str
    content_sha256: str
    media_type: str
    size_bytes: int

    @property
    def is_image(self) -> bool:
        return self.media_type.startswith("image/")

    @property
    def is_text(self) -> bool:
        return self.media_type.startswith("text/")


def media_type_of(content: bytes) -> str:
    """The media type the bytes themselves show: an image by its signature (PNG, JPEG, GIF, WebP), an SVG
    drawing by its root element, UTF-8 text, or ``application/octet-stream`` for anything else."""
    for signature, media_type in IMAGE_SIGNATURES:
        if content.startswith(signature):
            return media_type
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    from endcredits.registry.fingerprints import is_svg

    if is_svg(content, ""):
        return "image/svg+xml"
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def check_output_contents(store: Store, items: Sequence[tuple[str, bytes]]) -> None:
    """Refuse, before anything is written, what ``record_output_contents`` would refuse: a repeated or
    malformed id, content over ``OUTPUT_CONTENT_BYTES_MAX``, or other bytes under an id already recorded."""
    import hashlib

    check_ids([oid for oid, _ in items], "output id")
    if len({oid for oid, _ in items}) != len(items):
        raise ConflictError("an output id is given twice: give each output's content once")
    for oid, content in items:
        if len(content) > OUTPUT_CONTENT_BYTES_MAX:
            raise LimitExceededError(
                f"output {oid} has {len(content)} bytes of content, over OUTPUT_CONTENT_BYTES_MAX "
                f"({OUTPUT_CONTENT_BYTES_MAX}): give a smaller rendition"
            )
    with store.read() as conn:
        known = output_contents_of(conn, [oid for oid, _ in items])
    for oid, content in items:
        before = known.get(oid)
        if before is not None and before.content_sha256 != hashlib.sha256(content).hexdigest():
            raise ConflictError(
                f"output {oid} already has other content (sha256 {before.content_sha256[:16]}...): an "
                "output's content is recorded once"
            )


def record_output_contents(store: Store, items: Sequence[tuple[str, bytes]]) -> list[str]:
    """Keep the content of each ``(output id, bytes)``; per item ``recorded`` or ``exists`` (the same bytes
    were recorded before). Other bytes under a recorded id raise ``ConflictError`` and record nothing."""
    check_output_contents(store, items)
    digests = [put_content(store.data_dir, OUTPUTS_FOLDER, content) for _, content in items]
    statuses: list[str] = []
    with store.write() as conn:
        known = output_contents_of(conn, [oid for oid, _ in items])
        rows = []
        for (oid, content), sha in zip(items, digests, strict=True):
            before = known.get(oid)
            if before is not None and before.content_sha256 != sha:
                raise ConflictError(
                    f"output {oid} already has other content (sha256 {before.content_sha256[:16]}...): an "
                    "output's content is recorded once"
                )
            statuses.append("exists" if before is not None else "recorded")
            if before is None:
                rows.append(
                    {
                        "output_id": oid,
                        "content_sha256": sha,
                        "media_type": media_type_of(content),
                        "size_bytes": len(content),
                        "recorded_at": utc_now(),
                    }
                )
        if rows:
            conn.execute(output_contents.insert(), rows)
    return statuses


def output_contents_of(conn: Connection, output_ids: Sequence[str]) -> dict[str, OutputContent]:
    """The recorded content of those of ``output_ids`` that have one."""
    found: dict[str, OutputContent] = {}
    for chunk in chunks(sorted(set(output_ids))):
        q = select(output_contents).where(output_contents.c.output_id.in_(list(chunk)))
        for r in conn.execute(q):
            found[r.output_id] = OutputContent(r.output_id, r.content_sha256, r.media_type, int(r.size_bytes))
    return found


def read_output_content(data_dir: Path, content: OutputContent) -> bytes | None:
    """The bytes of a recorded output content, checked against their SHA-256; None when the file is gone."""
    return get_content(data_dir, OUTPUTS_FOLDER, content.content_sha256)
