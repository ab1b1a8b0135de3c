"""Boltzmann operator and the mpmath precision it needs (Kajitsuka & Sato 2024 Lemma 1; hu2024.md §2.3 Lemma C).

boltz(a) = sum_k a_k e^{a_k} / sum_k e^{a_k}. Lemma C: for entry-wise (r, delta)-separated, duplicate-free vectors
with delta >= 2 ln n + 3 that are not permutations of each other, |boltz(a) - boltz(a')| > (ln n)^2 e^{-2r} and
|boltz(a)| <= r. Gaps of e^{-2r} need dps = ceil(2r / ln 10) + 60 digits (``dps_for``).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

MAX_DPS = 40_000  # digits budget: beyond this one exp costs seconds in pure-python mpmath


# --------------------------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------------------------


def dps_for(R: float) -> int:
    """Digits the margin needs: ceil(2R / ln 10) + 60 (gaps ~ e^{-2R}, 60 guard digits)."""
    if not (math.isfinite(R) and R >= 0):
        raise ValueError(f"logit range R must be finite and >= 0, got {R}")
    return int(math.ceil(2.0 * R / math.log(10.0))) + 60


def mp_context(dps: int, max_dps: int = MAX_DPS) -> mpmath.MPContext:
    """A private mpmath context at ``dps`` digits (no global state); refuses dps > max_dps."""
    if dps > max_dps:
        raise ValueError(f"{dps} digits needed exceeds the digits budget {max_dps}")
    ctx = mpmath.MPContext()
    ctx.dps = int(dps)
    return ctx


# --------------------------------------------------------------------------------------------
# Boltzmann operator (Lemma C)
# --------------------------------------------------------------------------------------------


def boltzmann(a, ctx=None):
    """boltz(a) = sum a_k e^{a_k} / sum e^{a_k}, max-shifted (mpmath if ``ctx`` is given, else float64)."""
    if ctx is None:
        x = np.asarray(a, dtype=np.float64)
        e = np.exp(x - np.max(x))
        return float(np.sum(x * e) / np.sum(e))
    xs = [ctx.mpf(v) for v in a]
    m = max(xs)
    es = [ctx.exp(v - m) for v in xs]
    return ctx.fsum(v * e for v, e in zip(xs, es, strict=False)) / ctx.fsum(es)


def boltzmann_log_gap_bound(n: int, r, ctx) -> mpmath.mpf:
    """ln of Lemma C's floor (ln n)^2 e^{-2r} (natural log, in ``ctx``)."""
    if n < 2:
        raise ValueError(f"Lemma C needs n >= 2 entries, got n = {n}")
    return 2 * ctx.log(ctx.log(n)) - 2 * ctx.mpf(r)


def boltzmann_separation_threshold(n: int) -> float:
    """The Lemma C hypothesis: entry-wise separation delta >= 2 ln n + 3."""
    return 2.0 * math.log(n) + 3.0


def check_entrywise_separated(vectors, delta: float) -> tuple[float, float]:
    """(r, min gap) of a family of vectors; ValueError on a duplicate entry or a gap below ``delta``."""
    vals = set()
    for i, v in enumerate(vectors):
        v = [float(x) for x in v]
        if len(set(v)) != len(v):
            raise ValueError(f"vector {i} has a duplicate entry: Lemma C needs duplicate-free vectors")
        vals.update(v)
    s = sorted(vals)
    gap = min((b - a for a, b in zip(s, s[1:], strict=False)), default=math.inf)
    if gap < delta:
        raise ValueError(f"entries are only {gap:.4g}-separated; Lemma C needs separation >= {delta:.4g}")
    return max(abs(x) for x in s), gap
