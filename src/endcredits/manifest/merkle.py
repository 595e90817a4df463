"""The Merkle tree that commits a manifest to its works, with inclusion and exclusion proofs.

Pure: hashes in, hashes out, so a proof checks without the database. Format
``endcredits-merkle-sha256-v1``: the leaves are the work ids (SHA-256 hex) sorted ascending without
duplicates; leaf and node hashes carry RFC 6962's 0x00 / 0x01 prefixes, and the tree has RFC 6962's
shape (split at the largest power of two below n; the empty tree's root is SHA256(b"")).

An inclusion proof is the leaf's audit path. An exclusion proof gives the two adjacent leaves that
bracket the missing id, each with its inclusion proof. The root alone does not fix the number of
leaves, so the verifiers take the manifest's recorded work count as ``leaf_count=``.

The format is written out in full, for anyone re-implementing a checker, in docs/concepts/manifest.md,
"The Merkle tree".
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeGuard

from endcredits.errors import NotFoundError, ValidationError

PROOF_FORMAT = "endcredits-merkle-sha256-v1"

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
"""The root of a manifest with no works."""

PATH_LENGTH_MAX = 64
"""Siblings in the longest audit path: trees hold fewer than 2^64 leaves (``LEAF_COUNT_MAX``)."""

LEAF_COUNT_MAX = 2**64 - 1
"""Most leaves a proof may claim; a property of the format, far beyond any manifest."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _is_hex64(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _check_hex64(value: object, what: str) -> str:
    if _is_hex64(value):
        return value
    raise ValidationError(f"{what} must be 64 lowercase hex digits (a SHA-256), got {value!r:.80}")


def _check_count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LEAF_COUNT_MAX:
        raise ValidationError(f"{what} must be an int in 0..2^64-1, got {value!r:.80}")
    return value


def _leaf_hash(work_id: str) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + bytes.fromhex(work_id)).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _check_work_ids(work_ids: Sequence[str]) -> None:
    """Raise unless every id is a SHA-256 hex id and the ids are strictly ascending."""
    if len(work_ids) > LEAF_COUNT_MAX:
        raise ValidationError(f"a manifest holds at most 2^64-1 works, got {len(work_ids)}")
    well_formed = all(map(_is_hex64, work_ids))
    if well_formed and all(a < b for a, b in pairwise(work_ids)):
        return
    # Slow path: find the first problem and name it.
    previous = ""
    for index, work_id in enumerate(work_ids):
        _check_hex64(work_id, f"work id at index {index}")
        if work_id <= previous:
            raise ValidationError(
                f"work ids must be sorted ascending with no duplicates: index {index} ({work_id}) "
                f"is not after index {index - 1}; pass sorted(set(work_ids))"
            )
        previous = work_id


def _split(size: int) -> int:
    """The largest power of two strictly less than ``size`` (``size >= 2``): RFC 6962's k."""
    return 1 << ((size - 1).bit_length() - 1)


def _range_root(work_ids: Sequence[str], lo: int, hi: int) -> bytes:
    """The root over leaves ``lo..hi-1`` (``hi > lo``), in one pass and O(log n) memory.

    A stack holds the roots of complete subtrees, largest first; two of one size merge. At the end the
    stack folds from the right, which is RFC 6962's split at the largest power of two.
    """
    sha256 = hashlib.sha256
    stack: list[tuple[int, bytes]] = []  # (leaves under it, hash); at most 64 entries
    for index in range(lo, hi):
        size, h = 1, sha256(_LEAF_PREFIX + bytes.fromhex(work_ids[index])).digest()
        while stack and stack[-1][0] == size:
            h = sha256(_NODE_PREFIX + stack.pop()[1] + h).digest()
            size *= 2
        stack.append((size, h))
    h = stack.pop()[1]
    while stack:
        h = sha256(_NODE_PREFIX + stack.pop()[1] + h).digest()
    return h


def merkle_root(work_ids: Sequence[str]) -> str:
    """The hex root over ``work_ids`` (sorted ascending, unique); ``EMPTY_ROOT`` for none."""
    _check_work_ids(work_ids)
    if not work_ids:
        return EMPTY_ROOT
    return _range_root(work_ids, 0, len(work_ids)).hex()


@dataclass(frozen=True)
class InclusionProof:
    """Leaf ``leaf_index`` of ``leaf_count`` is ``work_id``; ``path`` holds the sibling hashes, leaf to root."""

    work_id: str
    leaf_index: int
    leaf_count: int
    path: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_hex64(self.work_id, "inclusion proof work_id")
        _check_count(self.leaf_index, "inclusion proof leaf_index")
        _check_count(self.leaf_count, "inclusion proof leaf_count")
        if not isinstance(self.path, tuple):
            raise ValidationError(f"inclusion proof path must be a tuple of hex hashes, got {type(self.path).__name__}")
        if len(self.path) > PATH_LENGTH_MAX:
            raise ValidationError(f"inclusion proof path has {len(self.path)} hashes; at most {PATH_LENGTH_MAX}")
        for position, sibling in enumerate(self.path):
            _check_hex64(sibling, f"inclusion proof path[{position}]")


@dataclass(frozen=True)
class ExclusionProof:
    """``work_id`` is not among ``leaf_count`` leaves: ``left`` and ``right`` are its neighbours, if any."""

    work_id: str
    leaf_count: int
    left: InclusionProof | None
    right: InclusionProof | None

    def __post_init__(self) -> None:
        _check_hex64(self.work_id, "exclusion proof work_id")
        _check_count(self.leaf_count, "exclusion proof leaf_count")
        for side, neighbour in (("left", self.left), ("right", self.right)):
            if neighbour is not None and not isinstance(neighbour, InclusionProof):
                raise ValidationError(f"exclusion proof {side} must be an InclusionProof or None")


def prove_inclusion(work_ids: Sequence[str], work_id: str) -> InclusionProof:
    """The audit path showing ``work_id`` is a leaf of ``merkle_root(work_ids)``."""
    _check_work_ids(work_ids)
    _check_hex64(work_id, "work id to prove")
    index = bisect_left(work_ids, work_id)
    if index == len(work_ids) or work_ids[index] != work_id:
        raise NotFoundError(
            f"work {work_id} is not among the manifest's {len(work_ids)} works; "
            "use prove_exclusion to show it is absent"
        )
    return _inclusion_at(work_ids, index)


def _inclusion_at(work_ids: Sequence[str], index: int) -> InclusionProof:
    """Proof for the leaf at ``index`` of already-checked ``work_ids``: split as RFC 6962 does, top down."""
    lo, hi = 0, len(work_ids)
    siblings: list[str] = []  # root first; reversed below
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            siblings.append(_range_root(work_ids, mid, hi).hex())
            hi = mid
        else:
            siblings.append(_range_root(work_ids, lo, mid).hex())
            lo = mid
    return InclusionProof(
        work_id=work_ids[index], leaf_index=index, leaf_count=len(work_ids), path=tuple(reversed(siblings))
    )


def _root_from_path(proof: InclusionProof) -> str | None:
    """The root the proof leads to, or None when its index, count and path length do not fit together."""
    if not proof.leaf_index < proof.leaf_count:
        return None
    h = _leaf_hash(proof.work_id)
    i, n = proof.leaf_index, proof.leaf_count
    siblings = iter(proof.path)
    used = 0
    while n > 1:
        if i % 2 == 1 or i + 1 < n:
            if used == len(proof.path):
                return None
            sibling = bytes.fromhex(next(siblings))
            used += 1
            h = _node_hash(sibling, h) if i % 2 == 1 else _node_hash(h, sibling)
        i //= 2
        n = (n + 1) // 2
    if used != len(proof.path):
        return None
    return h.hex()


def verify_inclusion(root: str, proof: InclusionProof, *, leaf_count: int | None = None) -> bool:
    """True when ``proof`` leads from its work id to ``root``; False otherwise.

    Pass the manifest's recorded work count as ``leaf_count`` to also pin the proof's index and count.
    """
    _check_hex64(root, "root")
    if leaf_count is not None and _check_count(leaf_count, "expected leaf_count") != proof.leaf_count:
        return False
    return _root_from_path(proof) == root


def prove_exclusion(work_ids: Sequence[str], work_id: str) -> ExclusionProof:
    """The neighbours bracketing ``work_id`` in ``work_ids``, each proven included; ValidationError if present."""
    _check_work_ids(work_ids)
    _check_hex64(work_id, "work id to prove absent")
    index = bisect_left(work_ids, work_id)
    if index < len(work_ids) and work_ids[index] == work_id:
        raise ValidationError(
            f"work {work_id} is in the manifest (leaf {index}), so it has no exclusion proof; use prove_inclusion"
        )
    left = _inclusion_at(work_ids, index - 1) if index > 0 else None
    right = _inclusion_at(work_ids, index) if index < len(work_ids) else None
    return ExclusionProof(work_id=work_id, leaf_count=len(work_ids), left=left, right=right)


def verify_exclusion(root: str, proof: ExclusionProof, *, leaf_count: int | None = None) -> bool:
    """True when the neighbours are included under ``root``, adjacent, and bracket the id; False otherwise.

    ``leaf_count``, when given (the manifest's recorded work count), must equal the proof's.
    """
    _check_hex64(root, "root")
    if leaf_count is not None and _check_count(leaf_count, "expected leaf_count") != proof.leaf_count:
        return False
    left, right, n = proof.left, proof.right, proof.leaf_count
    if n == 0:
        return left is None and right is None and root == EMPTY_ROOT
    for neighbour in (left, right):
        if neighbour is not None and (neighbour.leaf_count != n or not verify_inclusion(root, neighbour)):
            return False
    if left is not None and right is not None:
        return right.leaf_index == left.leaf_index + 1 and left.work_id < proof.work_id < right.work_id
    if right is not None:  # below the first leaf
        return right.leaf_index == 0 and proof.work_id < right.work_id
    if left is not None:  # above the last leaf
        return left.leaf_index == n - 1 and left.work_id < proof.work_id
    return False  # a non-empty tree needs at least one neighbour


def _inclusion_to_json(p: InclusionProof) -> dict[str, Any]:
    return {
        "format": PROOF_FORMAT,
        "kind": "inclusion",
        "work_id": p.work_id,
        "leaf_index": p.leaf_index,
        "leaf_count": p.leaf_count,
        "path": list(p.path),
    }


def proof_to_json(p: InclusionProof | ExclusionProof) -> dict[str, Any]:
    """The stable JSON object for a proof (docs/concepts/manifest.md); ``proof_from_json`` reads it back."""
    if isinstance(p, InclusionProof):
        return _inclusion_to_json(p)
    if isinstance(p, ExclusionProof):
        return {
            "format": PROOF_FORMAT,
            "kind": "exclusion",
            "work_id": p.work_id,
            "leaf_count": p.leaf_count,
            "left": None if p.left is None else _inclusion_to_json(p.left),
            "right": None if p.right is None else _inclusion_to_json(p.right),
        }
    raise ValidationError(f"cannot write a {type(p).__name__} as a proof; pass an InclusionProof or ExclusionProof")


_INCLUSION_KEYS = frozenset({"format", "kind", "work_id", "leaf_index", "leaf_count", "path"})
_EXCLUSION_KEYS = frozenset({"format", "kind", "work_id", "leaf_count", "left", "right"})


def _check_keys(d: Mapping[str, Any], expected: frozenset[str], kind: str) -> None:
    keys = set(d)
    if keys != expected:
        missing = ", ".join(sorted(expected - keys)) or "none"
        extra = ", ".join(sorted(str(k) for k in keys - expected)) or "none"
        raise ValidationError(f"{kind} proof JSON has the wrong keys (missing: {missing}; unexpected: {extra})")


def _inclusion_from_json(d: object) -> InclusionProof:
    if not isinstance(d, Mapping):
        raise ValidationError(f"inclusion proof JSON must be an object, got {type(d).__name__}")
    _check_keys(d, _INCLUSION_KEYS, "inclusion")
    if d["format"] != PROOF_FORMAT or d["kind"] != "inclusion":
        raise ValidationError(
            f"expected format {PROOF_FORMAT} kind inclusion, got {d['format']!r:.60} {d['kind']!r:.30}"
        )
    if not isinstance(d["path"], list):
        raise ValidationError("inclusion proof JSON path must be a list of hex hashes")
    return InclusionProof(
        work_id=d["work_id"], leaf_index=d["leaf_index"], leaf_count=d["leaf_count"], path=tuple(d["path"])
    )


def proof_from_json(d: Mapping[str, Any]) -> InclusionProof | ExclusionProof:
    """Read a proof written by ``proof_to_json``; ValidationError names what is malformed."""
    if not isinstance(d, Mapping):
        raise ValidationError(f"proof JSON must be an object, got {type(d).__name__}")
    if d.get("format") != PROOF_FORMAT:
        raise ValidationError(f"proof format must be {PROOF_FORMAT!r}, got {d.get('format')!r:.60}")
    kind = d.get("kind")
    if kind == "inclusion":
        return _inclusion_from_json(d)
    if kind == "exclusion":
        _check_keys(d, _EXCLUSION_KEYS, "exclusion")
        left = None if d["left"] is None else _inclusion_from_json(d["left"])
        right = None if d["right"] is None else _inclusion_from_json(d["right"])
        return ExclusionProof(work_id=d["work_id"], leaf_count=d["leaf_count"], left=left, right=right)
    raise ValidationError(f"proof kind must be 'inclusion' or 'exclusion', got {kind!r:.40}")


__all__ = [
    "EMPTY_ROOT",
    "LEAF_COUNT_MAX",
    "PATH_LENGTH_MAX",
    "PROOF_FORMAT",
    "ExclusionProof",
    "InclusionProof",
    "merkle_root",
    "proof_from_json",
    "proof_to_json",
    "prove_exclusion",
    "prove_inclusion",
    "verify_exclusion",
    "verify_inclusion",
]
