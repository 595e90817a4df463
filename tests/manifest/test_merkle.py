"""The manifest Merkle tree: roots, inclusion and exclusion proofs, and their JSON form."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endcredits.errors import NotFoundError, ValidationError
from endcredits.manifest.merkle import (
    EMPTY_ROOT,
    PROOF_FORMAT,
    ExclusionProof,
    InclusionProof,
    merkle_root,
    proof_from_json,
    proof_to_json,
    prove_exclusion,
    prove_inclusion,
    verify_exclusion,
    verify_inclusion,
)

SIZES = [0, 1, 2, 3, 5, 1000]


def wid(n: int) -> str:
    """A work id: the SHA-256 of a small integer's text."""
    return hashlib.sha256(str(n).encode()).hexdigest()


def works(n: int) -> list[str]:
    return sorted(wid(i) for i in range(n))


def reference_root(ids: list[str]) -> str:
    """RFC 6962 section 2.1, written recursively and independently of the module's bottom-up code."""

    def mth(leaves: list[str]) -> bytes:
        if len(leaves) == 1:
            return hashlib.sha256(b"\x00" + bytes.fromhex(leaves[0])).digest()
        k = 1
        while k * 2 < len(leaves):
            k *= 2
        return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()

    return mth(ids).hex() if ids else hashlib.sha256(b"").hexdigest()


def absent_ids(ids: list[str]) -> list[str]:
    """Ids not in ``ids``: below the first, between neighbours, above the last."""
    out = ["0" * 64, "f" * 64]
    for a, b in pairwise(ids):
        between = format((int(a, 16) + int(b, 16)) // 2, "064x")
        if a < between < b:
            out.append(between)
    return [x for x in out if x not in set(ids)]


hex_ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
id_sets = st.lists(hex_ids, max_size=40, unique=True).map(sorted)


# Roots ------------------------------------------------------------------------------------------


def test_known_answers_spell_out_the_format() -> None:
    a, b, c = works(3)
    leaf = [hashlib.sha256(b"\x00" + bytes.fromhex(x)).digest() for x in (a, b, c)]

    def node(left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + left + right).digest()

    assert merkle_root([]) == EMPTY_ROOT == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle_root([a]) == leaf[0].hex()
    assert merkle_root([a, b]) == node(leaf[0], leaf[1]).hex()
    assert merkle_root([a, b, c]) == node(node(leaf[0], leaf[1]), leaf[2]).hex()


@pytest.mark.parametrize("n", SIZES + [4, 6, 7, 8, 9, 17, 33])
def test_root_matches_rfc6962_recursive_definition(n: int) -> None:
    assert merkle_root(works(n)) == reference_root(works(n))


@given(id_sets)
def test_root_matches_reference_for_any_set(ids: list[str]) -> None:
    assert merkle_root(ids) == reference_root(ids)


@given(st.lists(hex_ids, min_size=1, max_size=30, unique=True).map(sorted), st.data())
def test_root_changes_when_any_leaf_changes(ids: list[str], data: st.DataObject) -> None:
    root = merkle_root(ids)
    index = data.draw(st.integers(0, len(ids) - 1))
    replacement = data.draw(hex_ids.filter(lambda x: x not in ids))
    changed = sorted(ids[:index] + [replacement] + ids[index + 1 :])
    assert merkle_root(changed) != root
    assert merkle_root([x for x in ids if x != ids[index]]) != root  # removing a leaf
    assert merkle_root(sorted(ids + [replacement])) != root  # adding one


@pytest.mark.parametrize(
    ("ids", "fragment"),
    [
        ([wid(1), wid(1)], "sorted ascending"),
        (sorted([wid(1), wid(2)], reverse=True), "sorted ascending"),
        (["ABC" + "0" * 61], "64 lowercase hex"),
        (["0" * 63], "64 lowercase hex"),
        ([wid(1).upper()], "64 lowercase hex"),
        ([12], "64 lowercase hex"),
    ],
)
def test_unsorted_duplicate_or_malformed_ids_are_refused(ids: list[str], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        merkle_root(ids)


# Inclusion --------------------------------------------------------------------------------------


def sample_indices(n: int) -> list[int]:
    """Every index for small trees; for large ones the ends, both sides of each power-of-two split, a stride."""
    if n <= 70:
        return list(range(n))
    picked = {0, n - 1} | set(range(0, n, 37))
    k = 1
    while k < n:
        picked |= {k - 1, k, min(k + 1, n - 1)}
        k *= 2
    return sorted(picked)


@pytest.mark.parametrize("n", SIZES + list(range(6, 71)))
def test_every_leaf_proves_inclusion(n: int) -> None:
    ids = works(n)
    root = merkle_root(ids)
    for index in sample_indices(n):
        work_id = ids[index]
        proof = prove_inclusion(ids, work_id)
        assert (proof.leaf_index, proof.leaf_count, proof.work_id) == (index, n, work_id)
        assert len(proof.path) <= max(1, n - 1).bit_length()
        assert verify_inclusion(root, proof)


@given(id_sets.filter(bool), st.data())
def test_tampered_inclusion_proofs_fail(ids: list[str], data: st.DataObject) -> None:
    root = merkle_root(ids)
    proof = prove_inclusion(ids, data.draw(st.sampled_from(ids)))
    assert verify_inclusion(root, proof)
    n = len(ids)

    assert verify_inclusion(root, proof, leaf_count=n)
    other_index = data.draw(st.integers(0, n + 3).filter(lambda i: i != proof.leaf_index))
    assert not verify_inclusion(root, dataclasses.replace(proof, leaf_index=other_index), leaf_count=n)
    other_count = data.draw(st.integers(1, 2 * n + 3).filter(lambda c: c != n))
    assert not verify_inclusion(root, dataclasses.replace(proof, leaf_count=other_count), leaf_count=n)
    assert not verify_inclusion(root, proof, leaf_count=other_count)
    other_root = data.draw(hex_ids.filter(lambda r: r != root))
    assert not verify_inclusion(other_root, proof)
    other_id = data.draw(hex_ids.filter(lambda w: w != proof.work_id))
    assert not verify_inclusion(root, dataclasses.replace(proof, work_id=other_id))
    if proof.path:
        at = data.draw(st.integers(0, len(proof.path) - 1))
        flipped = format(int(proof.path[at], 16) ^ (1 << data.draw(st.integers(0, 255))), "064x")
        bad_path = proof.path[:at] + (flipped,) + proof.path[at + 1 :]
        assert not verify_inclusion(root, dataclasses.replace(proof, path=bad_path))
        assert not verify_inclusion(root, dataclasses.replace(proof, path=proof.path[:-1]))  # too short
    assert not verify_inclusion(root, dataclasses.replace(proof, path=proof.path + (root,)))  # too long


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 64])
def test_index_is_pinned_when_count_is_pinned(n: int) -> None:
    ids = works(n)
    root = merkle_root(ids)
    for proof in (prove_inclusion(ids, w) for w in ids):
        for index in range(n):
            claim = dataclasses.replace(proof, leaf_index=index)
            assert verify_inclusion(root, claim, leaf_count=n) == (index == proof.leaf_index)


def test_root_alone_does_not_fix_the_count() -> None:
    # RFC 6962 behaviour, documented in the module: leaf 0 of 5 has the same route as leaf 0 of 6.
    ids = works(5)
    proof = dataclasses.replace(prove_inclusion(ids, ids[0]), leaf_count=6)
    assert verify_inclusion(merkle_root(ids), proof)
    assert not verify_inclusion(merkle_root(ids), proof, leaf_count=5)


def test_a_node_cannot_pass_for_a_leaf() -> None:
    # Domain separation: inner node hashes offered as work ids do not rebuild the tree's root.
    ids = works(4)
    root = merkle_root(ids)
    h01, h23 = merkle_root(ids[:2]), merkle_root(ids[2:])
    assert merkle_root(sorted([h01, h23])) != root
    assert not verify_inclusion(root, InclusionProof(work_id=h23, leaf_index=1, leaf_count=2, path=(h01,)))


def test_inclusion_of_an_absent_id_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="prove_exclusion"):
        prove_inclusion(works(5), wid(99))


def test_malformed_root_is_refused() -> None:
    proof = prove_inclusion(works(3), works(3)[0])
    with pytest.raises(ValidationError, match="root"):
        verify_inclusion("not-a-root", proof)


# Exclusion --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES + [8, 33, 64])
def test_absent_ids_prove_exclusion(n: int) -> None:
    ids = works(n)
    root = merkle_root(ids)
    candidates = absent_ids(ids)
    for work_id in [candidates[i] for i in sample_indices(len(candidates))]:
        proof = prove_exclusion(ids, work_id)
        assert verify_exclusion(root, proof), work_id
        assert proof.leaf_count == n


def test_exclusion_below_between_and_above() -> None:
    ids = works(5)
    root = merkle_root(ids)
    below, above = "0" * 64, "f" * 64
    between = format(int(ids[1], 16) + 1, "064x")
    p = prove_exclusion(ids, below)
    assert p.left is None and p.right is not None and p.right.leaf_index == 0
    p = prove_exclusion(ids, above)
    assert p.right is None and p.left is not None and p.left.leaf_index == 4
    p = prove_exclusion(ids, between)
    assert p.left is not None and p.right is not None
    assert (p.left.leaf_index, p.right.leaf_index) == (1, 2)
    assert all(verify_exclusion(root, prove_exclusion(ids, x)) for x in (below, above, between))


def test_empty_manifest_excludes_everything() -> None:
    proof = prove_exclusion([], wid(1))
    assert proof == ExclusionProof(work_id=wid(1), leaf_count=0, left=None, right=None)
    assert verify_exclusion(EMPTY_ROOT, proof)
    assert not verify_exclusion(merkle_root(works(1)), proof)


@given(id_sets.filter(bool), st.data())
def test_present_ids_have_no_exclusion_proof(ids: list[str], data: st.DataObject) -> None:
    with pytest.raises(ValidationError, match="prove_inclusion"):
        prove_exclusion(ids, data.draw(st.sampled_from(ids)))


@given(id_sets, hex_ids)
def test_exclusion_verifies_for_any_absent_id(ids: list[str], work_id: str) -> None:
    if work_id in ids:
        return
    assert verify_exclusion(merkle_root(ids), prove_exclusion(ids, work_id))


@given(st.lists(hex_ids, min_size=3, max_size=40, unique=True).map(sorted), st.data())
def test_forged_exclusion_that_skips_a_leaf_fails(ids: list[str], data: st.DataObject) -> None:
    """Hide leaf j by citing leaves j-1 and j+1 (or only one of them at the ends) as neighbours."""
    root = merkle_root(ids)
    j = data.draw(st.integers(0, len(ids) - 1))
    hidden = ids[j]
    left = prove_inclusion(ids, ids[j - 1]) if j > 0 else None
    right = prove_inclusion(ids, ids[j + 1]) if j + 1 < len(ids) else None
    forged = ExclusionProof(work_id=hidden, leaf_count=len(ids), left=left, right=right)
    assert not verify_exclusion(root, forged)
    # Lying about the size does not help either: claim the left neighbour is the last of `count` leaves.
    if left is not None:
        for count in range(1, len(ids) + 2):
            short = dataclasses.replace(left, leaf_count=count, leaf_index=count - 1)
            assert not verify_exclusion(root, ExclusionProof(hidden, count, short, None))


@given(st.lists(hex_ids, min_size=2, max_size=30, unique=True).map(sorted), hex_ids)
def test_tampered_exclusion_proofs_fail(ids: list[str], work_id: str) -> None:
    if work_id in ids:
        return
    root = merkle_root(ids)
    proof = prove_exclusion(ids, work_id)
    assert not verify_exclusion(merkle_root(ids[1:]), proof)  # another root
    assert verify_exclusion(root, proof, leaf_count=len(ids))
    assert not verify_exclusion(root, proof, leaf_count=len(ids) + 1)
    assert not verify_exclusion(root, dataclasses.replace(proof, leaf_count=len(ids) + 1))
    assert not verify_exclusion(root, dataclasses.replace(proof, left=None, right=None))
    # The id must lie strictly between its neighbours: a present id is not bracketed by itself.
    for neighbour in (proof.left, proof.right):
        if neighbour is not None:
            assert not verify_exclusion(root, dataclasses.replace(proof, work_id=neighbour.work_id))
    # Dropping the left neighbour is only valid when the id is below the first leaf.
    if proof.left is not None:
        assert not verify_exclusion(root, dataclasses.replace(proof, left=None))
    if proof.right is not None:
        assert not verify_exclusion(root, dataclasses.replace(proof, right=None))


# JSON -------------------------------------------------------------------------------------------


@given(id_sets, hex_ids)
def test_json_round_trips(ids: list[str], work_id: str) -> None:
    proofs: list[InclusionProof | ExclusionProof] = []
    if ids:
        proofs.append(prove_inclusion(ids, ids[len(ids) // 2]))
    if work_id not in ids:
        proofs.append(prove_exclusion(ids, work_id))
    for proof in proofs:
        text = json.dumps(proof_to_json(proof), sort_keys=True)
        assert proof_from_json(json.loads(text)) == proof


def test_json_form_is_stable() -> None:
    ids = works(3)
    assert proof_to_json(prove_inclusion(ids, ids[2])) == {
        "format": PROOF_FORMAT,
        "kind": "inclusion",
        "work_id": ids[2],
        "leaf_index": 2,
        "leaf_count": 3,
        "path": [merkle_root(ids[:2])],
    }
    below = proof_to_json(prove_exclusion(ids, "0" * 64))
    assert below["kind"] == "exclusion" and below["left"] is None and below["right"]["leaf_index"] == 0
    assert list(below) == ["format", "kind", "work_id", "leaf_count", "left", "right"]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.update(format="other-v9"), "format"),
        (lambda d: d.update(kind="consistency"), "kind"),
        (lambda d: d.pop("path"), "missing: path"),
        (lambda d: d.update(extra=1), "unexpected: extra"),
        (lambda d: d.update(leaf_index=True), "leaf_index"),
        (lambda d: d.update(leaf_index=-1), "leaf_index"),
        (lambda d: d.update(leaf_count="3"), "leaf_count"),
        (lambda d: d.update(path="abc"), "path"),
        (lambda d: d.update(path=["zz"]), r"path\[0\]"),
        (lambda d: d.update(work_id=None), "work_id"),
    ],
)
def test_malformed_json_is_refused(mutate: Callable[[dict[str, Any]], object], fragment: str) -> None:
    ids = works(3)
    d = proof_to_json(prove_inclusion(ids, ids[0]))
    mutate(d)
    with pytest.raises(ValidationError, match=fragment):
        proof_from_json(d)


def test_malformed_exclusion_json_is_refused() -> None:
    d = proof_to_json(prove_exclusion(works(3), "0" * 64))
    d["right"] = {"kind": "inclusion"}
    with pytest.raises(ValidationError, match="missing"):
        proof_from_json(d)
    with pytest.raises(ValidationError, match="object"):
        proof_from_json([])  # type: ignore[arg-type]


@settings(max_examples=25)
@given(st.integers(1, 300), st.data())
def test_proofs_survive_json_and_still_verify(n: int, data: st.DataObject) -> None:
    ids = works(n)
    root = merkle_root(ids)
    proof = prove_inclusion(ids, data.draw(st.sampled_from(ids)))
    again = proof_from_json(json.loads(json.dumps(proof_to_json(proof))))
    assert isinstance(again, InclusionProof) and verify_inclusion(root, again)
