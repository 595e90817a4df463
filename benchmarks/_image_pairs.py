"""A labelled set of image pairs from the Open Clip Art drawings, to choose and measure the image fingerprint.

Drawings: every SVG of Debian's ``openclipart-svg`` (``/usr/share/openclipart/svg``) but ``logos/``, regular
files only (663 symlinks repeat others). They are split by drawing, seeded, into a tuning half and a
held-out half; every pair lies within one half.

- **Copies** (should link): a drawing's SVG against a raster export of it (rendered at ``EXPORT_PIXELS``,
  on white, as a person exporting a PNG would), re-encoded, resized, cropped, recoloured or lightly
  edited (``TRANSFORMS``). For ``copies_per_half`` drawings of each half, seeded.
- **Distinct pairs** (must not link), all drawing against drawing, SVG against SVG:
  ``nn_legacy``: each drawing's ``NEIGHBOURS`` nearest others under the current ``phash-64`` (the hard
  negatives: flags, chess pieces, cards, stars); ``nn_phash16``: nearest under a 256-bit pHash of the
  trimmed picture; ``same_creator`` and ``same_folder``: random others by the same ``dc:creator`` or in the
  same folder. A pair whose two canonical pictures are the same picture (32x32 grayscale thumbnails
  within ``SAME_PICTURE_DIFF_MAX`` at every pixel: the same drawing saved twice with other metadata) is
  not a distinct pair and is left out, counted as ``same_picture``.

Each image is described once by every candidate descriptor (``describe``), and the pairs are scored from
those: cached in ``benchmarks/.cache/image_pairs.npz``. ``build(parts=...)`` keeps each drawing's
description as it is made (``python benchmarks/_image_pairs.py`` does, beside the cache), so a build
stopped on a loaded machine resumes where it stopped; delete the parts with the cache when the
description changes.
"""

from __future__ import annotations

import io
import multiprocessing
import pickle
import random
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from endcredits.errors import ValidationError
from endcredits.interop.svg import read_svg_metadata
from endcredits.registry import fingerprints as fp

OPENCLIPART_DIR = Path("/usr/share/openclipart/svg")
CACHE = Path(__file__).resolve().parent / ".cache" / "image_pairs.npz"
SEED = 20261212
EXPORT_PIXELS = 400
NEIGHBOURS = 3
SAME_PICTURE_DIFF_MAX = 8
THUMB_PIXELS = 32


def corpus_files(root: Path = OPENCLIPART_DIR) -> list[Path]:
    """The drawings: regular .svg files under ``root`` but ``logos/``, in sorted order."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} is missing: install Debian's openclipart-svg (apt-get install openclipart-svg, or make install)"
        )
    return sorted(
        p for p in root.rglob("*.svg") if p.is_file() and not p.is_symlink() and p.relative_to(root).parts[0] != "logos"
    )


# Copies ------------------------------------------------------------------------------------------
def _encode(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _content_box(img: Image.Image) -> tuple[int, int, int, int]:
    ink = np.asarray(img.convert("RGB")).min(axis=2) < 231
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return (0, 0, img.width, img.height)
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def _crop(img: Image.Image, fraction: float) -> bytes:
    """Cut ``fraction`` of the drawing's own width and height off each side (not only white margin)."""
    x0, y0, x1, y1 = _content_box(img)
    dx, dy = max(1, round((x1 - x0) * fraction)), max(1, round((y1 - y0) * fraction))
    return _encode(img.crop((x0 + dx, y0 + dy, max(x0 + dx + 1, x1 - dx), max(y0 + dy + 1, y1 - dy))))


def _hue(img: Image.Image, degrees: int) -> bytes:
    hsv = np.asarray(img.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + degrees * 256 // 360) % 256
    return _encode(Image.fromarray(hsv, "HSV").convert("RGB"))


def _pixels(img: Image.Image, rng: random.Random, count: int) -> bytes:
    out = img.copy()
    for _ in range(count):
        xy = (rng.randrange(out.width), rng.randrange(out.height))
        out.putpixel(xy, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return _encode(out)


def _overlay(img: Image.Image, rng: random.Random) -> bytes:
    """A small grey box (2% of the drawing's area) somewhere on it: a stamp or a watermark."""
    out = img.copy()
    x0, y0, x1, y1 = _content_box(img)
    w, h = max(2, (x1 - x0) // 7), max(2, (y1 - y0) // 7)
    x, y = rng.randrange(x0, max(x0 + 1, x1 - w)), rng.randrange(y0, max(y0 + 1, y1 - h))
    ImageDraw.Draw(out).rectangle((x, y, x + w, y + h), fill=(128, 128, 128))
    return _encode(out)


def _resize(img: Image.Image, factor: float, fmt: str = "PNG", **options: object) -> bytes:
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return _encode(img.resize(size, Image.Resampling.LANCZOS), fmt, **options)


TRANSFORMS: dict[str, Callable[[Image.Image, random.Random], bytes]] = {
    "png": lambda img, rng: _encode(img),
    "jpeg_q90": lambda img, rng: _encode(img, "JPEG", quality=90),
    "jpeg_q50": lambda img, rng: _encode(img, "JPEG", quality=50),
    "jpeg_q20": lambda img, rng: _encode(img, "JPEG", quality=20),
    "half_size": lambda img, rng: _resize(img, 0.5),
    "quarter_size": lambda img, rng: _resize(img, 0.25),
    "upscale_150_jpeg": lambda img, rng: _resize(img, 1.5, "JPEG", quality=85),
    "crop_2pct": lambda img, rng: _crop(img, 0.02),
    "crop_5pct": lambda img, rng: _crop(img, 0.05),
    "grayscale": lambda img, rng: _encode(img.convert("L")),
    "hue_30deg": lambda img, rng: _hue(img, 30),
    "darker_15pct": lambda img, rng: _encode(ImageEnhance.Brightness(img).enhance(0.85)),
    "contrast_125pct": lambda img, rng: _encode(ImageEnhance.Contrast(img).enhance(1.25)),
    "pixels_8": lambda img, rng: _pixels(img, rng, 8),
    "overlay_2pct": _overlay,
}


# Descriptors -------------------------------------------------------------------------------------
DESCRIPTORS = ("legacy", "phash8", "phash16", "dhash16", "thumb", "thumb64", "thumb128", "thumb256", "native", "rgb16")


def _bits(h: object) -> np.ndarray:
    return np.packbits(np.asarray(h.hash, dtype=bool).reshape(-1))  # type: ignore[attr-defined]


def describe_picture(picture: Image.Image) -> dict[str, np.ndarray]:
    """Every candidate descriptor of a canonical picture (``fingerprints.canonical_picture``)."""
    import imagehash

    gray = picture.convert("L")
    thumb = np.asarray(gray.resize((THUMB_PIXELS, THUMB_PIXELS), Image.Resampling.BOX), dtype=np.uint8)
    return {
        "phash8": _bits(imagehash.phash(gray, hash_size=8)),
        "phash16": _bits(imagehash.phash(gray, hash_size=16)),
        "dhash16": _bits(imagehash.dhash(gray, hash_size=16)),
        "thumb": thumb.reshape(-1),
        "thumb64": np.asarray(gray.resize((64, 64), Image.Resampling.BOX), dtype=np.uint8).reshape(-1),
        "thumb128": np.asarray(gray.resize((128, 128), Image.Resampling.BOX), dtype=np.uint8).reshape(-1),
        "thumb256": np.asarray(gray.resize((256, 256), Image.Resampling.BOX), dtype=np.uint8).reshape(-1),
        "native": np.asarray(picture.size, dtype=np.uint16),
        "rgb16": np.asarray(picture.convert("RGB").resize((16, 16), Image.Resampling.BOX), dtype=np.uint8).reshape(-1),
    }


def describe(content: bytes, kind: str) -> dict[str, np.ndarray]:
    """Descriptors of a work's bytes as ``register_works`` would see them, plus the current fingerprint."""
    out = describe_picture(fp.canonical_picture(fp.decode_image(content, kind)))
    raster = content if not fp.is_svg(content, kind) else _encode(fp.render_svg(content))
    out["legacy"] = np.frombuffer(bytes.fromhex(fp.legacy_image_fingerprint(raster).value), dtype=np.uint8)
    return out


@dataclass(frozen=True)
class Drawing:
    index: int
    rel: str
    creator: str
    descriptors: dict[str, np.ndarray] | None
    copies: dict[str, dict[str, np.ndarray]]
    error: str | None


def _one(args: tuple[int, str, bool]) -> Drawing:
    index, path, with_copies = args
    rel = str(Path(path).relative_to(OPENCLIPART_DIR))
    content = Path(path).read_bytes()
    try:
        meta = read_svg_metadata(content, where=rel)
        creator = meta.creators[0] if meta.creators else ""
        desc = describe(content, "image/svg+xml")
    except ValidationError as exc:
        return Drawing(index, rel, "", None, {}, str(exc))
    copies: dict[str, dict[str, np.ndarray]] = {}
    if with_copies:
        copies = {name: describe(made, "image") for name, made in copy_contents(content, index).items()}
    return Drawing(index, rel, creator, desc, copies, None)


def copy_contents(content: bytes, index: int) -> dict[str, bytes]:
    """The bytes of each copy of a drawing (its SVG ``content``, its ``index`` among the files built): its
    raster export under each of ``TRANSFORMS``, seeded by the index, so the same every time."""
    rng = random.Random(SEED + index)
    export = fp.canonical_picture(fp.render_svg(content, EXPORT_PIXELS))  # what a person exports: on white
    return {name: transform(export, rng) for name, transform in TRANSFORMS.items()}


def halves(count: int, seed: int = SEED) -> np.ndarray:
    """0 (tuning) or 1 (held out) for each drawing, seeded, by drawing."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    half = np.zeros(count, dtype=np.int8)
    half[order[count // 2 :]] = 1
    return half


def _one_kept(args: tuple[int, str, bool, str]) -> Drawing:
    """``_one``, its result kept in the folder ``args[3]`` (read back when there, written when made)."""
    index, path, with_copies, parts = args
    kept = Path(parts) / f"{index:05d}{'c' if with_copies else ''}.pkl.z"
    if kept.exists():  # kept as a plain tuple: readable whichever module name built it
        return Drawing(*pickle.loads(zlib.decompress(kept.read_bytes())))
    drawing = _one((index, path, with_copies))
    partial = kept.with_suffix(".tmp")
    fields = (drawing.index, drawing.rel, drawing.creator, drawing.descriptors, drawing.copies, drawing.error)
    partial.write_bytes(zlib.compress(pickle.dumps(fields), 1))
    partial.replace(kept)  # whole or absent: a build stopped mid-write leaves no half part
    return drawing


def build(
    limit: int | None = None, copies_per_half: int = 500, processes: int = 2, parts: Path | None = None
) -> dict[str, np.ndarray]:
    """Describe every drawing (and the copies of a sample), then the pairs; returns the arrays cached.
    With ``parts``, each drawing's description is kept under it, by ``limit`` and ``copies_per_half``, and
    one already there is read back rather than made again."""
    files = corpus_files()
    if limit is not None:
        files = [files[i] for i in sorted(random.Random(SEED).sample(range(len(files)), min(limit, len(files))))]
    half = halves(len(files))
    rng = random.Random(SEED + 1)
    sample: set[int] = set()
    for h in (0, 1):
        members = [i for i in range(len(files)) if half[i] == h]
        sample.update(rng.sample(members, min(copies_per_half, len(members))))
    jobs = [(i, str(p), i in sample) for i, p in enumerate(files)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        if parts is None:
            drawings = list(pool.imap(_one, jobs, chunksize=16))
        else:
            folder = parts / f"limit{limit}-copies{copies_per_half}"
            folder.mkdir(parents=True, exist_ok=True)
            drawings = list(pool.imap(_one_kept, [(*job, str(folder)) for job in jobs], chunksize=16))
    return _arrays(drawings, half)


def _arrays(drawings: list[Drawing], half: np.ndarray) -> dict[str, np.ndarray]:
    ok = [d for d in drawings if d.descriptors is not None]
    out: dict[str, np.ndarray] = {
        "rel": np.asarray([d.rel for d in ok]),
        "index": np.asarray([d.index for d in ok], dtype=np.int64),
        "creator": np.asarray([d.creator for d in ok]),
        "half": np.asarray([half[d.index] for d in ok], dtype=np.int8),
        "errors": np.asarray([f"{d.rel}: {d.error}" for d in drawings if d.error], dtype=object).astype(str),
    }
    for name in DESCRIPTORS:
        out[f"orig_{name}"] = np.stack([d.descriptors[name] for d in ok if d.descriptors is not None])
    copy_rows = [(k, t, c) for k, d in enumerate(ok) for t, c in d.copies.items()]
    out["copy_of"] = np.asarray([k for k, _, _ in copy_rows], dtype=np.int64)
    out["copy_kind"] = np.asarray([t for _, t, _ in copy_rows])
    for name in DESCRIPTORS:
        out[f"copy_{name}"] = np.stack([c[name] for _, _, c in copy_rows])
    return out


# Pairs and scores --------------------------------------------------------------------------------
def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance of packed bit arrays."""
    return np.unpackbits(np.bitwise_xor(a, b), axis=-1).sum(axis=-1)


def thumb_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - Pearson correlation of 32x32 grayscale thumbnails, row-wise (0: the same up to brightness and
    contrast; a flat thumbnail correlates with nothing)."""
    x = a.astype(np.float64) - a.mean(axis=-1, keepdims=True)
    y = b.astype(np.float64) - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    corr = np.where(den > 0, (x * y).sum(axis=-1) / np.where(den > 0, den, 1), 0.0)
    return 1.0 - corr


def _nearest(codes: np.ndarray, members: np.ndarray, k: int) -> list[tuple[int, int]]:
    bits = np.unpackbits(codes[members], axis=1).astype(np.int16)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(members), 256):
        block = bits[start : start + 256]
        d = (block[:, None, :] != bits[None, :, :]).sum(axis=2)
        for r in range(block.shape[0]):
            d[r, start + r] = 10_000
            for j in np.argsort(d[r], kind="stable")[:k]:
                a, b = int(members[start + r]), int(members[j])
                pairs.append((min(a, b), max(a, b)))
    return pairs


def distinct_pairs(data: dict[str, np.ndarray], h: int, seed: int = SEED) -> dict[str, list[tuple[int, int]]]:
    """The distinct pairs of half ``h``, by kind; a pair in several kinds is kept in the first."""
    members = np.flatnonzero(data["half"] == h)
    rng = random.Random(seed + 10 + h)
    kinds: dict[str, list[tuple[int, int]]] = {
        "nn_legacy": _nearest(data["orig_legacy"], members, NEIGHBOURS),
        "nn_phash16": _nearest(data["orig_phash16"], members, NEIGHBOURS),
    }
    for key, label in (("creator", "same_creator"), ("folder", "same_folder")):
        groups: dict[str, list[int]] = defaultdict(list)
        for i in members:
            value = str(data["creator"][i]) if key == "creator" else str(Path(str(data["rel"][i])).parent)
            if value:
                groups[value].append(int(i))
        got = []
        for i in members:
            value = str(data["creator"][i]) if key == "creator" else str(Path(str(data["rel"][i])).parent)
            group = groups.get(value, [])
            for j in rng.sample(group, min(3, len(group))):
                if j != i:
                    got.append((min(int(i), j), max(int(i), j)))
        kinds[label] = got
    seen: set[tuple[int, int]] = set()
    out: dict[str, list[tuple[int, int]]] = {}
    thumbs = data["orig_thumb"].astype(np.int16)
    same: list[tuple[int, int]] = []
    for label, pairs in kinds.items():
        out[label] = []
        for p in pairs:
            if p in seen:
                continue
            seen.add(p)
            if int(np.abs(thumbs[p[0]] - thumbs[p[1]]).max()) <= SAME_PICTURE_DIFF_MAX:
                same.append(p)
            else:
                out[label].append(p)
    out["same_picture"] = same
    return out


def copy_rows(data: dict[str, np.ndarray], h: int) -> np.ndarray:
    return np.flatnonzero(data["half"][data["copy_of"]] == h)


def save(data: dict[str, np.ndarray], path: Path = CACHE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)


def load(path: Path = CACHE) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def checksum(data: dict[str, np.ndarray]) -> str:
    return f"{zlib.crc32(data['orig_phash16'].tobytes()):08x}"


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Build the labelled image pairs and cache them.")
    parser.add_argument("limit", type=int, nargs="?", help="a seeded sample of this many drawings (default: all)")
    parser.add_argument("--copies-per-half", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the set is saved (parts beside it)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    built = build(args.limit, args.copies_per_half, args.processes, args.cache.with_suffix(".parts"))
    save(built, args.cache)
    print(
        f"{len(built['rel'])} drawings, {len(built['copy_of'])} copies, {len(built['errors'])} refused, "
        f"{time.perf_counter() - t0:.0f} s"
    )
    for e in built["errors"]:
        print(" ", e)


# Rates -------------------------------------------------------------------------------------------
def _keys(thumbs: np.ndarray) -> list[set[str]]:
    """The band keys ``image_fingerprint`` stores for each thumbnail (the pHash of the thumbnail)."""
    side = fp.IMAGE_THUMB_PIXELS
    return [set(fp.image_band_keys(np.ascontiguousarray(t.reshape(side, side)))) for t in thumbs]


@dataclass(frozen=True)
class Scored:
    """Similarities of one half's pairs under ``gray64-crop-v2``, and whether LSH finds each as a candidate."""

    copy_similarity: np.ndarray
    copy_found: np.ndarray
    copy_kind: np.ndarray
    distinct_similarity: np.ndarray
    distinct_found: np.ndarray
    distinct_kind: np.ndarray
    legacy_copy_linked: np.ndarray
    legacy_distinct_linked: np.ndarray
    flat: int
    same_picture: int
    copy_pairs: np.ndarray
    """(drawing, copy row) of each copy scored."""
    distinct_pairs: np.ndarray
    """(drawing, drawing) of each distinct pair scored."""


def _paired(a: np.ndarray, b: np.ndarray, chunk: int = 1000) -> np.ndarray:
    return np.concatenate(
        [fp.paired_thumbnail_similarities(a[i : i + chunk], b[i : i + chunk]) for i in range(0, len(a), chunk)]
    )


def score_half(data: dict[str, np.ndarray], h: int, method: str = fp.IMAGE_METHOD) -> Scored:
    """Score every pair of half ``h`` (copies, distinct pairs) with the production similarity; a pair is
    found when LSH finds it as ``method`` looks bands up."""
    neg = distinct_pairs(data, h)
    pairs = np.asarray([p for k, v in neg.items() if k != "same_picture" for p in v])
    kinds = np.asarray([k for k, v in neg.items() if k != "same_picture" for _ in v])
    rows = copy_rows(data, h)
    side = fp.IMAGE_THUMB_PIXELS
    orig = data["orig_thumb64"].reshape(-1, side, side)
    copies = data["copy_thumb64"].reshape(-1, side, side)
    flat_o = orig.reshape(len(orig), -1).std(axis=1) < fp.IMAGE_FLAT_STD_MIN
    flat_c = copies.reshape(len(copies), -1).std(axis=1) < fp.IMAGE_FLAT_STD_MIN
    of = data["copy_of"][rows]
    ok_c = ~flat_o[of] & ~flat_c[rows]
    ok_n = ~flat_o[pairs[:, 0]] & ~flat_o[pairs[:, 1]]
    okey = _keys(data["orig_thumb64"])
    ckey = _keys(data["copy_thumb64"][rows])

    def probe(stored: set[str], new: set[str]) -> bool:
        new_fp = fp.Fingerprint(method, "", tuple(sorted(new)))
        return bool(stored & set(fp._query_keys(new_fp)))

    cs = _paired(copies[rows], orig[of])
    cf = np.asarray([probe(okey[o], ckey[i]) for i, o in enumerate(of)])
    ds = _paired(orig[pairs[:, 1]], orig[pairs[:, 0]])
    df = np.asarray([probe(okey[a], okey[b]) for a, b in pairs])
    lo, lc = data["orig_legacy"], data["copy_legacy"]

    def legacy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        bands = (a.reshape(len(a), 8) == b.reshape(len(b), 8)).any(axis=1)
        return bands & (hamming(a, b) <= fp.LEGACY_IMAGE_HAMMING_MAX)

    return Scored(
        cs[ok_c],
        cf[ok_c],
        data["copy_kind"][rows][ok_c],
        ds[ok_n],
        df[ok_n],
        kinds[ok_n],
        legacy(lo[of], lc[rows]),
        legacy(lo[pairs[:, 0]], lo[pairs[:, 1]]),
        int((~ok_c).sum()),
        len(neg["same_picture"]),
        np.stack([of[ok_c], rows[ok_c]], axis=1),
        pairs[ok_n],
    )


@dataclass(frozen=True)
class FineScores:
    """``image_verify.verify_fine``'s correlation and hue difference for each copy and distinct pair of a
    ``Scored`` found by LSH from ``floor`` up at 64 pixels (NaN for the others)."""

    copy_correlation: np.ndarray
    copy_hue: np.ndarray
    distinct_correlation: np.ndarray
    distinct_hue: np.ndarray


def fine_scores(data: dict[str, np.ndarray], s: Scored, floor: float) -> FineScores:
    """Verify every pair of ``s`` found from ``floor`` up as ``register_works`` does for version 4: the
    drawing (or the first of a distinct pair) registered, the copy (the second) new."""
    from endcredits.registry.image_verify import V4_PIXELS, verify_fine

    side = (-1, V4_PIXELS, V4_PIXELS)
    gray = {"orig": data["orig_thumb256"].reshape(side), "copy": data["copy_thumb256"].reshape(side)}
    colour = {k: data[f"{k}_rgb16"].reshape(-1, 16, 16, 3) for k in ("orig", "copy")}
    native = {k: data[f"{k}_native"] for k in ("orig", "copy")}

    def run(found: np.ndarray, sim: np.ndarray, pairs: np.ndarray, new: str) -> tuple[np.ndarray, np.ndarray]:
        corr, hue = np.full(len(found), np.nan), np.full(len(found), np.nan)
        for i in np.flatnonzero(found & (sim >= floor)):
            j, k = pairs[i, 0], pairs[i, 1]
            nj, nk = native["orig"][j], native[new][k]
            v = verify_fine(
                gray["orig"][j],
                gray[new][k],
                colour["orig"][j],
                colour[new][k],
                (int(nj[0]), int(nj[1])),
                (int(nk[0]), int(nk[1])),
            )
            corr[i], hue[i] = v.correlation, v.hue_degrees
        return corr, hue

    cc, ch = run(s.copy_found, s.copy_similarity, s.copy_pairs, "copy")
    dc, dh = run(s.distinct_found, s.distinct_similarity, s.distinct_pairs, "orig")
    return FineScores(cc, ch, dc, dh)


def fine_linked(
    s: Scored, f: FineScores, gate: float, correlation_min: float, hue_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which copies and distinct pairs version 4 links under a rule (64-pixel gate, correlation, hue)."""

    def rule(found: np.ndarray, sim: np.ndarray, corr: np.ndarray, hue: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            out: np.ndarray = found & (sim >= gate) & (corr >= correlation_min) & (hue <= hue_max)
        return out

    return (
        rule(s.copy_found, s.copy_similarity, f.copy_correlation, f.copy_hue),
        rule(s.distinct_found, s.distinct_similarity, f.distinct_correlation, f.distinct_hue),
    )


def choose_rule(s: Scored, f: FineScores, false_rate_max: float = 0.001) -> tuple[float, float, int, float]:
    """(gate, correlation, copies linked, false rate) of the rule that links most copies of the tuning half
    with at most ``false_rate_max`` of its distinct pairs linked: gates 0.80 to 0.95 by 0.01, correlations
    0.980 to 0.999 by 0.001, the hue test as in production."""
    from endcredits.registry.image_verify import HUE_DEGREES_MAX

    best = (1.0, 1.0, -1, 0.0)
    for gate in np.round(np.arange(0.80, 0.951, 0.01), 2):
        for corr in np.round(np.arange(0.980, 0.9995, 0.001), 3):
            lc, ld = fine_linked(s, f, float(gate), float(corr), HUE_DEGREES_MAX)
            if ld.mean() <= false_rate_max and int(lc.sum()) > best[2]:
                best = (float(gate), float(corr), int(lc.sum()), float(ld.mean()))
    return best


def verified_v4(data: dict[str, np.ndarray], s: Scored) -> tuple[np.ndarray, np.ndarray]:
    """Which copies and distinct pairs ``gray64-verify256-v4`` links, by the production constants."""
    from endcredits.registry.image_verify import FINE_CORRELATION_MIN, HUE_DEGREES_MAX

    f = fine_scores(data, s, fp.IMAGE_VERIFY_MIN)
    return fine_linked(s, f, fp.IMAGE_VERIFY_MIN, FINE_CORRELATION_MIN, HUE_DEGREES_MAX)


def verified(data: dict[str, np.ndarray], s: Scored) -> tuple[np.ndarray, np.ndarray]:
    """Which copies and distinct pairs ``gray64-verify128-v3`` links: found by LSH, from
    ``VERIFY128_MIN`` up at 64 pixels, and the same under ``image_verify.verify`` (128-pixel grayscale
    and 16-pixel colour thumbnails)."""
    from endcredits.registry.image_verify import FINE_PIXELS, verify

    orig = data["orig_thumb128"].reshape(-1, FINE_PIXELS, FINE_PIXELS)
    copies = data["copy_thumb128"].reshape(-1, FINE_PIXELS, FINE_PIXELS)

    def run(
        found: np.ndarray, sim: np.ndarray, new: tuple[np.ndarray, ...], stored: tuple[np.ndarray, ...]
    ) -> np.ndarray:
        """``new`` and ``stored``: (grayscale pictures, index into them, colour pictures) of each side."""
        out = np.zeros(len(found), dtype=bool)
        for i in np.flatnonzero(found & (sim >= fp.VERIFY128_MIN)):
            j, k = new[1][i], stored[1][i]
            out[i] = verify(new[0][j], stored[0][k], new[2][j], stored[2][k]).same
        return out

    cp, dp = s.copy_pairs, s.distinct_pairs
    ocol, ccol = data["orig_rgb16"].reshape(-1, 16, 16, 3), data["copy_rgb16"].reshape(-1, 16, 16, 3)
    linked_c = run(s.copy_found, s.copy_similarity, (copies, cp[:, 1], ccol), (orig, cp[:, 0], ocol))
    linked_d = run(s.distinct_found, s.distinct_similarity, (orig, dp[:, 1], ocol), (orig, dp[:, 0], ocol))
    return linked_c, linked_d


def rate_lines(
    s: Scored, threshold: float, review_min: float, linked: tuple[np.ndarray, np.ndarray] | None = None
) -> list[str]:
    """The rates at ``threshold`` (version 2), or of the links ``linked`` gives (copies, distinct pairs)."""
    linked_c = s.copy_found & (s.copy_similarity >= threshold)
    linked_d = s.distinct_found & (s.distinct_similarity >= threshold)
    if linked is not None:
        linked_c, linked_d = linked
    review_c = s.copy_found & ~linked_c & (s.copy_similarity >= review_min)
    review_d = s.distinct_found & ~linked_d & (s.distinct_similarity >= review_min)
    out = [
        f"copies: {int(linked_c.sum())}/{len(linked_c)} linked ({linked_c.mean():.2%}), "
        f"{int(review_c.sum())} more shown for review, {int((~s.copy_found).sum())} not found by LSH; "
        f"{s.flat} left out as flat",
        f"distinct: {int(linked_d.sum())}/{len(linked_d)} falsely linked ({linked_d.mean():.3%}), "
        f"{int(review_d.sum())} shown for review; {s.same_picture} same-picture pairs left out",
        f"current phash-64: copies linked {s.legacy_copy_linked.mean():.2%} of {len(s.legacy_copy_linked)}, "
        f"distinct falsely linked {int(s.legacy_distinct_linked.sum())}/{len(s.legacy_distinct_linked)}",
    ]
    for k in sorted(set(s.copy_kind)):
        m = s.copy_kind == k
        out.append(f"  {k}: {int(linked_c[m].sum())}/{int(m.sum())} linked")
    for k in sorted(set(s.distinct_kind)):
        m = s.distinct_kind == k
        out.append(f"  {k}: {int(linked_d[m].sum())}/{int(m.sum())} falsely linked")
    return out


def choose_threshold(s: Scored, false_rate_max: float = 0.001) -> float:
    """The lowest threshold (a multiple of 0.001) at which at most ``false_rate_max`` of the distinct pairs
    found by LSH pass, on the tuning half."""
    for t in np.arange(0.5, 1.0, 0.001):
        if (s.distinct_found & (s.distinct_similarity >= t)).mean() <= false_rate_max:
            return float(round(t, 3))
    return 1.0
