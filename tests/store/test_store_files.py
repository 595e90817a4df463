"""Private files: what holds names, IBANs or evidence is created 0600 in 0700 folders, whatever the umask
(store/files.py). Checked with os.stat on both backends, under the most permissive umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from endcredits.ledger.accrue import accrue
from endcredits.store.blobs import blob_path, get_blob, put_blob
from endcredits.store.engine import SQLITE_FILE, init_store
from endcredits.store.files import create_private_file, private_dir, write_private
from helpers_money import EXTERNAL, agreement, evidence_files, on_time, people, register_model, usage


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(old)


def test_helpers_create_private_folders_and_files(tmp_path: Path, umask: int) -> None:
    folder = private_dir(tmp_path / "a" / "b" / "c")
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", folder)] == [0o700] * 3
    assert create_private_file(folder / "new") is True
    assert create_private_file(folder / "new") is False  # an existing file is left as it is
    write_private(folder / "data", b"IBAN DE00")
    assert (mode(folder / "new"), mode(folder / "data"), (folder / "data").read_bytes()) == (0o600, 0o600, b"IBAN DE00")
    # Rewriting a file someone loosened makes it private again; an existing folder is the operator's own.
    os.chmod(folder / "data", 0o644)
    os.chmod(folder, 0o755)
    write_private(folder / "data", memoryview(b"again"))
    private_dir(folder)
    assert (mode(folder / "data"), mode(folder), (folder / "data").read_bytes()) == (0o600, 0o755, b"again")
    for not_a_folder in (folder / "data", folder / "data" / "below-a-file"):
        with pytest.raises(NotADirectoryError):
            private_dir(not_a_folder)


def test_the_store_and_its_evidence_are_private(backend: str, tmp_path: Path, db_url: str | None, umask: int) -> None:
    data = tmp_path / "new" / "data"
    store = init_store(data, db_url)
    try:
        (a,) = people(store, "a")
        register_model(store)
        ag = agreement(pool_rate="1")
        accrue(store, usage([("o1", 10**9, on_time(3), [(f"person:{a}", 1)])]), ag, event_id="b1", source=EXTERNAL)
        files = evidence_files(store)
    finally:
        store.dispose()
    assert mode(tmp_path / "new") == mode(data) == 0o700
    assert files and all(mode(f) == 0o600 for f in files)
    folders = {f.parent for f in files} | {data / "evidence"}
    assert all(mode(d) == 0o700 for d in folders), folders
    if backend == "sqlite":
        sqlite_files = sorted(data.glob(f"{SQLITE_FILE}*"))
        assert {p.name for p in sqlite_files} >= {SQLITE_FILE}
        assert [(p.name, mode(p)) for p in sqlite_files] == [(p.name, 0o600) for p in sqlite_files]


def test_work_content_is_private(tmp_path: Path, umask: int) -> None:
    """A work may be a face scan or a voice recording: the content store is private too."""
    work_id = put_blob(tmp_path / "data", b"a scan of a face")
    path = blob_path(tmp_path / "data", work_id)
    assert (mode(path), mode(path.parent), mode(tmp_path / "data" / "works")) == (0o600, 0o700, 0o700)
    assert get_blob(tmp_path / "data", work_id) == b"a scan of a face"


def test_sqlite_wal_and_shm_files_take_the_database_file_mode(tmp_path: Path, umask: int) -> None:
    store = init_store(tmp_path / "data", None)
    try:
        people(store, "a")
        with store.read() as conn:  # keeps the WAL and SHM files while a connection is open
            conn.exec_driver_sql("SELECT 1")
            names = {p.name: mode(p) for p in (tmp_path / "data").glob(f"{SQLITE_FILE}*")}
    finally:
        store.dispose()
    assert names == {SQLITE_FILE: 0o600, f"{SQLITE_FILE}-wal": 0o600, f"{SQLITE_FILE}-shm": 0o600}
