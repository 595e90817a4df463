"""Work content, content-addressed: ``works/ab/<sha256>`` under the data directory.

A work's id is the SHA-256 of its bytes, so a blob is written once, never changes, and is checked
against its name whenever it is read back (a model's training text must be exactly what was registered).
Blobs are private (0600 in 0700 folders): a work may be a face scan or a voice, personal data itself.
The same layout holds what models generated (``outputs/``), where operators supplied it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from endcredits.errors import ManifestError, NotFoundError
from endcredits.store.files import private_dir, write_private


def blob_path(data_dir: Path, work_id: str) -> Path:
    return content_path(data_dir, "works", work_id)


def put_blob(data_dir: Path, content: bytes) -> str:
    """Store ``content`` under its SHA-256 (a no-op when present) and return the id."""
    return put_content(data_dir, "works", content)


def get_blob(data_dir: Path, work_id: str) -> bytes:
    """The content of a work, checked against its id."""
    path = blob_path(data_dir, work_id)
    if not path.exists():
        raise NotFoundError(f"content of work {work_id} is not in {data_dir / 'works'}: register it with `works add`")
    return _checked(path, work_id, "work")


def content_path(data_dir: Path, folder: str, sha256: str) -> Path:
    """Where bytes of SHA-256 ``sha256`` live in ``folder`` (``works``, ``outputs``) of the data directory."""
    return data_dir / folder / sha256[:2] / sha256


def put_content(data_dir: Path, folder: str, content: bytes) -> str:
    """Store ``content`` in ``folder`` under its SHA-256 (a no-op when present) and return the digest."""
    sha256 = hashlib.sha256(content).hexdigest()
    path = content_path(data_dir, folder, sha256)
    if path.exists():
        return sha256
    private_dir(path.parent)
    tmp = path.with_name(f".{sha256}.{os.getpid()}.partial")
    write_private(tmp, content)
    tmp.replace(path)
    return sha256


def get_content(data_dir: Path, folder: str, sha256: str) -> bytes | None:
    """The bytes stored in ``folder`` under ``sha256``, checked against it; None when they are not there."""
    path = content_path(data_dir, folder, sha256)
    return _checked(path, sha256, folder.rstrip("s")) if path.exists() else None


def _checked(path: Path, sha256: str, what: str) -> bytes:
    content = path.read_bytes()
    if hashlib.sha256(content).hexdigest() != sha256:
        raise ManifestError(f"content of {what} {sha256} was altered: it no longer hashes to its id")
    return content
