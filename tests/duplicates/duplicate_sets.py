"""Duplicate and non-duplicate pairs built from the real ABC tunes bundled with music21.

Positives: a tune and the same tune as someone might register it again (line endings, whitespace, a few
characters edited, header fields reordered, a transposition marker, a new X: number, combinations).
Negatives: genuinely different tunes: neighbours in the same file (same transcriber, same header
fields: the hardest), random pairs from the same collection (hard), and random pairs across collections.
A pair of corpus tunes with the same music lines (the Essen collection holds some tunes several times,
differing only in X: number or a note line) is a duplicate inside the corpus, not a negative, and is
left out; variants that differ in any music line stay in as the hardest negatives. Everything is seeded:
the same sets every run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from endcredits.interop.abc import AbcTune, iter_tunes

SEED = 20261121


def _split(text: str) -> tuple[list[str], list[str]]:
    """Header lines (X: up to and including K:) and body lines."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("K:"):
            return lines[: i + 1], lines[i + 1 :]
    return lines[:1], lines[1:]


def crlf(text: str, rng: random.Random) -> str:
    return text.replace("\n", "\r\n")


def whitespace(text: str, rng: random.Random) -> str:
    head, body = _split(text)
    out = []
    for line in body:
        chars = list(line)
        for _ in range(min(3, len(chars))):
            chars.insert(rng.randrange(len(chars) + 1), " ")
        out.append("".join(chars).rstrip() + "  ")
    return "\n".join([*head, "", *out]).replace(" |", "|")


def edit_chars(text: str, rng: random.Random, count: int = 3) -> str:
    head, body = _split(text)
    spots = [(i, j) for i, line in enumerate(body) for j, ch in enumerate(line) if ch.isalpha()]
    chars = [list(line) for line in body]
    for i, j in rng.sample(spots, min(count, len(spots))):
        chars[i][j] = rng.choice("abcdefgABCDEFG")
    return "\n".join([*head, *("".join(c) for c in chars)])


def reorder_header(text: str, rng: random.Random) -> str:
    head, body = _split(text)
    middle = head[1:-1]
    rng.shuffle(middle)
    return "\n".join([head[0], *middle, *head[-1:], *body]) if len(head) > 1 else text


def transpose_marker(text: str, rng: random.Random) -> str:
    head, body = _split(text)
    key = head[-1]
    return "\n".join([*head[:-1], "%%transpose " + str(rng.choice([-2, 2, 5])), key + " transpose=-2", *body])


def renumber(text: str, rng: random.Random) -> str:
    head, body = _split(text)
    return "\n".join([f"X:{rng.randrange(1, 999)}", *head[1:], *body])


def combined(text: str, rng: random.Random) -> str:
    return crlf(edit_chars(reorder_header(renumber(text, rng), rng), rng, count=2), rng)


TRANSFORMS: dict[str, Callable[[str, random.Random], str]] = {
    "crlf": crlf,
    "whitespace": whitespace,
    "edit_3_chars": edit_chars,
    "reorder_header": reorder_header,
    "transpose_marker": transpose_marker,
    "renumber": renumber,
    "combined": combined,
}


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    kind: str


def music_key(text: str) -> tuple[str, ...]:
    """The music lines (after K:) without whitespace: two corpus tunes with the same are one tune."""
    return tuple(k for k in ("".join(line.split()) for line in _split(text)[1]) if k)


def build_pairs(
    tunes_per_transform: int, negatives_per_kind: int, *, seed: int = SEED, tunes: list[AbcTune] | None = None
) -> list[Pair]:
    rng = random.Random(seed)
    all_tunes = tunes if tunes is not None else list(iter_tunes())
    # Tunes of at least a few lines: a two-line fragment has too few shingles to say anything.
    usable = [t for t in all_tunes if t.text.count("\n") >= 4]
    pairs: list[Pair] = []
    for name, fn in TRANSFORMS.items():
        for t in rng.sample(usable, tunes_per_transform):
            pairs.append(Pair(t.text, fn(t.text, rng), True, name))
    by_file: dict[str, list[AbcTune]] = {}
    by_collection: dict[str, list[AbcTune]] = {}
    for t in usable:
        by_file.setdefault(t.source.split("#")[0], []).append(t)
        by_collection.setdefault(t.collection, []).append(t)
    files = [ts for ts in by_file.values() if len(ts) > 1]
    collections = [ts for ts in by_collection.values() if len(ts) > 1]

    def negative(a: AbcTune, b: AbcTune, kind: str) -> None:
        if a.source != b.source and music_key(a.text) != music_key(b.text):
            pairs.append(Pair(a.text, b.text, False, kind))

    for _ in range(negatives_per_kind):
        ts = rng.choice(files)
        i = rng.randrange(len(ts) - 1)
        negative(ts[i], ts[i + 1], "same_file_neighbours")
        ts = rng.choice(collections)
        a, b = rng.sample(ts, 2)
        negative(a, b, "same_collection")
        a, b = rng.sample(usable, 2)
        negative(a, b, "any")
    return pairs
