"""The eigen basis: a deterministic, data-dependent Kronecker projection (LoGra's PCA initialisation).

Projection ``eigen`` projects each layer the Kronecker path takes (``nn.Linear``, transformers' ``Conv1D``,
``nn.Conv2d``) as ``sum_t (P_out g_t)(P_in a_t)^T``, as ``kronecker`` does, but with factors read off the
training works instead of drawn from a seed: ``P_in`` holds the top ``k_in`` eigenvectors of the layer's
input covariance ``sum_i sum_t a_it a_it^T`` and ``P_out`` the top ``k_out`` of its output-gradient
covariance ``sum_i sum_t g_it g_it^T``, both accumulated over every training work in one pass (Choe et al.,
2024, "What is Your Data Worth to GPT?", LoGra with PCA initialisation). The directions a layer's
gradients actually take are kept, so the same k loses less of the inner products than random factors, and
no seed moves a payee's share through these layers.

Each eigenvector's sign is fixed (its entry of largest magnitude positive, the first such on a tie), so
the same works, checkpoint and chunking give the same basis. A factor that keeps every dimension of its
side is the identity, as a seeded factor is: with k at least the parameter count the features are the
exact gradient. The basis belongs to the works' features: it is saved beside them (``BASIS_NAME``), its
SHA-256 recorded in their ``features.json``, and outputs are featurized with exactly that basis
(``check_basis`` refuses any other).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from endcredits.errors import LimitExceededError, ManifestError

BASIS_FORMAT = "endcredits.eigen-basis/1"
BASIS_NAME = "basis.npz"
"""The basis file in a feature directory of projection ``eigen``."""
EIGEN_SIDE_MAX = 16_384
"""Largest input or output side of one layer (its covariance is side x side float64)."""

Factors = dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]
"""Per layer (module name): ``(P_in [k_in, d_in], P_out [k_out, d_out])``."""


def top_eigenvectors(covariance: torch.Tensor, k: int) -> npt.NDArray[np.float32]:
    """``[k, d]``: the eigenvectors of the symmetric ``covariance`` with the ``k`` largest eigenvalues, largest
    first, each with its entry of largest magnitude positive; the identity when ``k`` is ``d``."""
    d = int(covariance.shape[0])
    if k == d:
        return np.eye(d, dtype=np.float32)
    values, vectors = torch.linalg.eigh(covariance.to(torch.float64).cpu())
    order = torch.argsort(values, descending=True, stable=True)[:k]
    top = vectors[:, order].T.contiguous()
    pivot = top.abs().argmax(dim=1)
    signs = torch.sign(top[torch.arange(k), pivot])
    top *= torch.where(signs == 0, torch.ones_like(signs), signs)[:, None]
    out: npt.NDArray[np.float32] = top.to(torch.float32).numpy()
    return out


def check_side(module: str, side: int) -> None:
    if side > EIGEN_SIDE_MAX:
        raise LimitExceededError(
            f"layer {module!r} has a side of {side}, over EIGEN_SIDE_MAX={EIGEN_SIDE_MAX} for projection 'eigen';"
            " use projection 'kronecker' (--projection kronecker)"
        )


@dataclass(frozen=True)
class EigenBasis:
    """The eigen factors of every Kronecker layer, one mapping per checkpoint (``factors[m]``)."""

    factors: tuple[Factors, ...]

    def sha256(self) -> str:
        """SHA-256 over the format, and per checkpoint and layer (by name) the factors' shapes and bytes."""
        digest = hashlib.sha256(BASIS_FORMAT.encode())
        for m, layers in enumerate(self.factors):
            for module in sorted(layers):
                for side, factor in zip(("in", "out"), layers[module], strict=True):
                    digest.update(f"|{m}|{module}|{side}|{factor.shape[0]}x{factor.shape[1]}|".encode())
                    digest.update(np.ascontiguousarray(factor, dtype="<f4").tobytes())
        return digest.hexdigest()

    def shapes(self, m: int) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
        return {name: (p_in.shape, p_out.shape) for name, (p_in, p_out) in self.factors[m].items()}

    def save(self, directory: Path) -> None:
        """Write ``BASIS_NAME`` under ``directory`` atomically."""
        arrays: dict[str, Any] = {
            f"{m}|{side}|{module}": factor
            for m, layers in enumerate(self.factors)
            for module, pair in layers.items()
            for side, factor in zip(("in", "out"), pair, strict=True)
        }
        partial = Path(directory) / (BASIS_NAME + ".partial")
        with partial.open("wb") as handle:
            np.savez(handle, **arrays)
        os.replace(partial, Path(directory) / BASIS_NAME)

    @classmethod
    def load(cls, directory: Path, *, sha256: str) -> EigenBasis:
        """The basis saved under ``directory``; refused unless its hash is ``sha256`` (the features' record)."""
        path = Path(directory) / BASIS_NAME
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {key: saved[key] for key in saved.files}
        except (OSError, ValueError) as exc:
            raise ManifestError(
                f"{path} is not a readable eigen basis ({type(exc).__name__}); featurize again"
            ) from exc
        checkpoints = 1 + max((int(key.split("|", 2)[0]) for key in arrays), default=-1)
        factors: list[Factors] = [{} for _ in range(checkpoints)]
        for key in sorted(arrays):
            m, side, module = key.split("|", 2)
            if side == "in":
                factors[int(m)][module] = (arrays[key], arrays[f"{m}|out|{module}"])
        basis = cls(tuple(factors))
        check_basis(sha256, basis, str(directory))
        return basis


def check_basis(recorded: str | None, basis: EigenBasis | None, where: str) -> None:
    """Refuse features of another eigen basis than the one ``where``'s features recorded (``recorded``)."""
    found = basis.sha256() if basis is not None else None
    if found != recorded:
        raise ManifestError(
            f"features in {where} were projected with eigen basis {str(recorded)[:16]}, not {str(found)[:16]}:"
            " featurize outputs with the works' own basis (EigenBasis.load of their directory)"
        )


def covariance_update(
    sums: dict[str, list[torch.Tensor]], module: str, calls: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> None:
    """Add one chunk's ``sum a a^T`` and ``sum g g^T`` (float64) over its positions and calls to ``sums``."""
    for a, g in calls:
        a64 = a.reshape(-1, a.shape[-1]).to(torch.float64)
        g64 = g.reshape(-1, g.shape[-1]).to(torch.float64)
        if module not in sums:
            sums[module] = [torch.zeros((a64.shape[1],) * 2, dtype=torch.float64, device=a.device),
                            torch.zeros((g64.shape[1],) * 2, dtype=torch.float64, device=a.device)]  # fmt: skip
        sums[module][0] += a64.T @ a64
        sums[module][1] += g64.T @ g64


def factors_from(sums: Mapping[str, list[torch.Tensor]], sizes: Mapping[str, tuple[int, int]]) -> Factors:
    """Each layer's ``(P_in, P_out)`` from its accumulated covariances, at ``sizes[layer] = (k_in, k_out)``."""
    return {
        module: (top_eigenvectors(sums[module][0], k_in), top_eigenvectors(sums[module][1], k_out))
        for module, (k_in, k_out) in sizes.items()
    }


__all__ = [
    "BASIS_FORMAT",
    "BASIS_NAME",
    "EIGEN_SIDE_MAX",
    "EigenBasis",
    "Factors",
    "check_basis",
    "check_side",
    "covariance_update",
    "factors_from",
    "top_eigenvectors",
]
