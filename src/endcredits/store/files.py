"""Private files under the data directory: folders 0700 and files 0600, whatever the process umask.

The data directory holds names, plaintext IBANs (payout files), evidence and the database; nobody but
the operator's account may read them. Every writer of such a file or folder goes through these helpers
instead of calling ``chmod`` itself. A folder that already exists is left as it is (it may be the
operator's own choice, such as ``--data .``); what endcredits creates is private.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and each missing parent as a 0700 folder; an existing folder is kept as it is."""
    missing: list[Path] = []
    at = path
    while not at.exists():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made by another process meanwhile: theirs, private as well
        os.chmod(folder, PRIVATE_DIR_MODE)  # mkdir's mode passes through the umask
    if not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a folder")
    return path


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 unless it exists (then it is left as it is); True when created here."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # os.open's mode passes through the umask
    finally:
        os.close(fd)
    return True


def write_private(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` (created, or truncated and made 0600) durably: fsync before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        os.fsync(fd)
    finally:
        os.close(fd)
