"""Seeded random projections of gradients, generated piece by piece so no (parameters x k) matrix exists.

Two kinds, both deterministic given ``seed`` and the parameter names, whatever the chunking or device:

- ``BlockGaussianProjector``: a Gaussian matrix ``R`` with entries N(0, 1/k), generated in row blocks of
  at most ``PROJECTION_BLOCK_ROWS`` rows per parameter tensor, each block from its own CPU generator
  seeded by a hash of (seed, parameter name, block index). ``<R g1, R g2>`` estimates ``<g1, g2>``.
- ``gaussian_factor``: one small Gaussian matrix (rows x cols, entries N(0, 1/rows)), seeded by a hash of
  (seed, layer name, side); two of them make the Kronecker-factored projection of a linear layer
  (see ``featurize``). When ``rows == cols`` the factor is the identity: a projection that keeps every
  dimension should not distort anything.

Random numbers always come from CPU generators and are then moved to the device, so CPU and CUDA runs
project with the same matrices.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import torch

from endcredits.attribution.settings import GAUSSIAN_MATRIX_BYTES_MAX

PROJECTION_BLOCK_ROWS = 16_384
"""Rows of a Gaussian projection generated at once (one block of one parameter tensor)."""

PROJECTION_CACHE_BYTES_MAX = GAUSSIAN_MATRIX_BYTES_MAX
"""Default bound on the bytes of projection blocks kept between chunks: the bound under which projection
``auto`` chooses this projection, so the matrix ``auto`` picks is always generated once."""


def _generator(label: str) -> torch.Generator:
    digest = hashlib.sha256(label.encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def gaussian_factor(
    name: str, side: str, *, rows: int, cols: int, seed: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A (rows x cols) factor with entries N(0, 1/rows); the identity when ``rows == cols``."""
    if rows == cols:
        return torch.eye(rows, dtype=torch.float32, device=device)
    generator = _generator(f"endcredits.kronecker/1|{seed}|{name}|{side}")
    factor: torch.Tensor = torch.randn((rows, cols), generator=generator, dtype=torch.float32) / math.sqrt(rows)
    return factor.to(device)


class BlockGaussianProjector:
    """The seeded Gaussian projection of named parameter tensors to ``k`` dimensions, generated blockwise.

    ``sizes`` maps parameter names to their number of elements, in the order the gradient is laid out.
    Blocks are cached between calls while all of them fit in ``cache_bytes_max``.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        *,
        k: int,
        seed: int,
        device: torch.device | str = "cpu",
        cache_bytes_max: int = PROJECTION_CACHE_BYTES_MAX,
    ) -> None:
        self.k = k
        self.seed = seed
        self.device = torch.device(device)
        self.sizes = dict(sizes)
        total_bytes = sum(self.sizes.values()) * k * 4
        self.cache: dict[tuple[str, int], torch.Tensor] | None = {} if total_bytes <= cache_bytes_max else None

    def _block(self, name: str, index: int, rows: int) -> torch.Tensor:
        if self.cache is not None and (name, index) in self.cache:
            return self.cache[(name, index)]
        generator = _generator(f"endcredits.projection/1|{self.seed}|{name}|{index}")
        block: torch.Tensor = torch.randn((rows, self.k), generator=generator, dtype=torch.float32)
        block = (block / math.sqrt(self.k)).to(self.device)
        if self.cache is not None:
            self.cache[(name, index)] = block
        return block

    def project(self, grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """float32 [n, k] from per-example gradients ``{name: [n, *shape]}`` (summed in float64)."""
        n = next(iter(grads.values())).shape[0]
        out = torch.zeros((n, self.k), dtype=torch.float64, device=self.device)
        for name, size in self.sizes.items():
            flat = grads[name].reshape(n, size).to(torch.float32)
            for index, row_start in enumerate(range(0, size, PROJECTION_BLOCK_ROWS)):
                rows = min(PROJECTION_BLOCK_ROWS, size - row_start)
                block = self._block(name, index, rows)
                out += (flat[:, row_start : row_start + rows] @ block).to(torch.float64)
        return out.to(torch.float32)


__all__ = ["PROJECTION_BLOCK_ROWS", "BlockGaussianProjector", "gaussian_factor"]
