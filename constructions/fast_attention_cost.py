"""Operation counts and memory of exact and polynomial-method attention, as the code in fast_attention runs them.

Counting convention (what properties/fast_attention/cost.py measures on the running code): a matmul of
(m x k) by (k x p) is 2 m k p operations; every elementwise op (add, multiply, divide, exp) is 1 per output
entry; a reduction of k entries to 1 is k - 1. Slicing, concatenation, transposes and allocations are free.

    exact    n_q (2 n_k (d + d_v) + 5 n_k - 2 + d_v)                                        (exact_attention)
    low rank (n_q + n_k)(d + r - 1 + 2 r (d_v + 1)) + ceil(n_k / chunk) r (d_v + 1)
             + n_q (g (d_v + 1) + d_v)                                                      (lowrank_apply)

so for n_q = n_k = n the ratio tends to r (2 d_v + 3) / (n (d + d_v + 5/2)): the crossover n* ~ r (2d+3)/(2d+2.5)
at d_v = d (fast_attention.md §5 gives the rougher 2 r (d_v+2) / (d+d_v+1) for its model 4 n r (d_v+2)).
"""

from __future__ import annotations

import math

from constructions.fast_attention import feature_rank


def exact_flops(n_q: int, n_k: int, d: int, dv: int) -> int:
    """Operations of exact_attention: scores, scaling, row max, shift, exp, E V, row sums, division."""
    return n_q * (2 * n_k * (d + dv) + 5 * n_k - 2 + dv)


def lowrank_flops(n_q: int, n_k: int, d: int, dv: int, g: int, chunk: int) -> int:
    """Operations of lowrank_apply at degree g (r = C(d+g, g)) with the given chunk."""
    r = feature_rank(d, g)
    per_token = d + (r - 1) + 2 * r * (dv + 1)  # sqrt(scale) X, monomial products, the skinny GEMMs
    key_chunks = math.ceil(n_k / chunk)
    # (key_chunks - 1) state accumulations + 1 weight fold of the r x (d_v+1) state
    state = key_chunks * r * (dv + 1)
    queries = n_q * (g * (dv + 1) + dv)  # per-degree accumulation of Y and the normalising division
    return (n_q + n_k) * per_token + state + queries


def predicted_crossover(d: int, dv: int, g: int, chunk: int) -> int:
    """Least n with lowrank_flops(n, n) <= exact_flops(n, n) (chunk capped at n), by bisection on the counts."""

    def wins(n):
        return lowrank_flops(n, n, d, dv, g, min(chunk, n)) <= exact_flops(n, n, d, dv)

    lo, hi = 1, 2
    while not wins(hi):
        lo, hi = hi, 2 * hi
    while lo < hi:
        mid = (lo + hi) // 2
        if wins(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def lowrank_peak_elements(n_q: int, n_k: int, d: int, dv: int, g: int, chunk: int) -> int:
    """Upper bound on the array entries lowrank_apply holds at once (beyond its inputs): O(n d_v + chunk r).

    [V | 1] and its column of ones (n_k (d_v+2)); per chunk the scaled inputs (d m), all degree blocks (r m) plus
    the parts of the block being built (<= r m) and a product temporary (<= r m); the state and its weighted copy
    (2 r (d_v+1)) plus one matmul result; query side Y and one part (2 m (d_v+1)); the outputs (n_q d_v, twice
    while concatenated).
    """
    r = feature_rank(d, g)
    m = min(chunk, max(n_q, n_k))
    per_chunk = d * m + 3 * r * m + 2 * m * (dv + 1)
    return n_k * (dv + 2) + per_chunk + 3 * r * (dv + 1) + 2 * n_q * dv
