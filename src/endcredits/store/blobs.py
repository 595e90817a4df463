"""Work content, content-addressed: ``works/ab/<sha256>`` under the data directory.

A work's id is the SHA-256 of its bytes, so a blob is written once, never changes, and is checked
against its name whenever it is read back (a model's training text must be exactly what was registered).
Blobs are private (0600 in 0700 folders): a work may be a face scan or a voice, personal data itself.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from endcredits.errors import ManifestError, NotFoundError
from endcredits.store.files import private_dir, write_private


def blob_path(data_dir: Path, work_id: str) -> Path:
    return data_dir / "works" / work_id[:2] / work_id


def put_blob(data_dir: Path, content: bytes) -> str:
    """Store ``content`` under its SHA-256 (a no-op when present) and return the id."""
    work_id = hashlib.sha256(content).hexdigest()
    path = blob_path(data_dir, work_id)
    if path.exists():
        return work_id
    private_dir(path.parent)
    tmp = path.with_name(f".{work_id}.{os.getpid()}.partial")
    write_private(tmp, content)
    tmp.replace(path)
    return work_id


def get_blob(data_dir: Path, work_id: str) -> bytes:
    """The content of a work, checked against its id."""
    path = blob_path(data_dir, work_id)
    if not path.exists():
        raise NotFoundError(f"content of work {work_id} is not in {data_dir / 'works'}: register it with `works add`")
    content = path.read_bytes()
    if hashlib.sha256(content).hexdigest() != work_id:
        raise ManifestError(f"content of work {work_id} was altered: it no longer hashes to its id")
    return content
