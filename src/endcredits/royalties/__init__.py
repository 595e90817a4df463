"""Royalties: who is owed what share of each output's residual pool, exactly.

The agreement (a versioned TOML file) fixes the rules; ``work_shares`` turns the registry's credits and
lineage into each work's exact payee shares (``Fraction``s, never rounded); ``output_lines``
combines them with one output's attribution weights into integer weights per (payee, path) line, from
which ``money.split_batch`` splits the pool in one step. Rounding happens once, per output, at 2^-32 of
a microunit, and the fractions carry forward (``money.carry_forward``).
"""

from endcredits.royalties.agreement import Agreement, parse_agreement
from endcredits.royalties.shares import (
    CreditGraph,
    PayeeShare,
    attribution_weights,
    output_lines,
    pool_of,
    pools_of,
    work_shares,
)

__all__ = [
    "Agreement",
    "CreditGraph",
    "PayeeShare",
    "attribution_weights",
    "output_lines",
    "parse_agreement",
    "pool_of",
    "pools_of",
    "work_shares",
]
