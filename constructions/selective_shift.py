"""Yun et al. 2020's selective-shift contextual mapping, as used by Wang et al. 2023 (wang2023.md §3.2 steps 3-6).

Set-up [V, DiT App. E; corrected t_l C]: K = 1/delta integer, u = (1, K, ..., K^{d-1}) = (1, delta^-1, ...),
S = sum(u). A quantized, positioned column j (0-based) with digits k_i in {0..K-1} has entries j + k_i delta and
the id u^T z = j S + delta sum_i k_i K^i; invalid entries are -J with J = n + 3 n K^{dn}.

* selective shift (2 hardmax heads of size 1, one layer per valid id g, increasing):
  q <- q + K^d [xi(q; g - delta/2) - xi(q; g + delta/2)],  xi(q; b)_j = max_k q_k if q_j > b, min_k q_k if q_j < b;
* global shift (1 head): q <- q + n K^{(n+1)d+1} xi(q; 0);
* properties of the result: (P1) the n ids of a valid sequence are distinct, (P2) different valid sequences give
  disjoint id sets, (P3) valid ids lie in [t_l, t_r], (P4) every id of an invalid sequence lies outside, with
  t_l = n K^{2nd}(K^d - 1) and t_r = n^2 K^{2(n+1)d+1} + n K^{(n+1)d}.
  The DiT restatement prints t_l = n K^{2(n+1)d}(K^d - 1) (Yun's typo), which violates P3.

Exact evaluation works on ids only: attention reads and writes a column only through u^T z (W_K = W_V = u^T,
W_O = scale e_1 and u_0 = 1), so the id recursion is the network's attention stack. Ids are held as integers in
units of delta/2 ("units", value * 2K), so thresholds g +- delta/2 are odd and ids even: no hardmax query is ever
exactly at a threshold. The weight-level heads (transformer.Head, token dimension d+1 with a constant coordinate
carrying the query bias) are built by ``shift_heads`` and agree with the id recursion (tests/test_deep_universality).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

from constructions.transformer import Head

INT64_SAFE = 2**60  # int64 ids are used while every |value| stays below this; else Python ints (object arrays)
MAX_SEQUENCES = 300_000  # enumerating more grid sequences than this is out of reach for the default profile


class TooLarge(ValueError):
    """An instance whose enumeration or node count exceeds a budget; the message names the count."""


@dataclass(frozen=True)
class ShiftPlan:
    """Yun's contextual-mapping attention stack for token dimension d, sequence length n, K = 1/delta levels."""

    d: int
    n: int
    K: int

    def __post_init__(self):
        for name in ("d", "n", "K"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v:
                raise ValueError(f"{name} must be an integer, got {v!r}")
        if self.d < 1 or self.n < 1:
            raise ValueError(f"need d >= 1 and n >= 1, got d={self.d}, n={self.n}")
        if self.K < 2:
            raise ValueError(f"need K = 1/delta >= 2 grid levels, got K={self.K}")

    # --- constants (exact) -------------------------------------------------------------------
    @property
    def delta(self) -> Fraction:
        return Fraction(1, self.K)

    @property
    def unit(self) -> int:
        """Ids are stored as value * unit (units of delta/2)."""
        return 2 * self.K

    @property
    def u(self) -> tuple[int, ...]:
        return tuple(self.K**i for i in range(self.d))

    @property
    def S(self) -> int:
        return sum(self.u)

    @property
    def J(self) -> int:
        """Invalid entries are sent to -J, J = n + 3 n delta^{-dn} (wang2023.md §3.2 step 2)."""
        return self.n + 3 * self.n * self.K ** (self.d * self.n)

    @property
    def shift_scale(self) -> int:
        return self.K**self.d

    @property
    def global_scale(self) -> int:
        return self.n * self.K ** ((self.n + 1) * self.d + 1)

    def t_bounds(self, typo: bool = False) -> tuple[Fraction, Fraction]:
        """(t_l, t_r) of P3/P4; typo=True gives the DiT restatement's t_l = n delta^{-2(n+1)d}(delta^{-d}-1)."""
        n, d, K = self.n, self.d, self.K
        e = 2 * (n + 1) * d if typo else 2 * n * d
        t_l = Fraction(n * K**e * (K**d - 1))
        t_r = Fraction(n * n * K ** (2 * (n + 1) * d + 1) + n * K ** ((n + 1) * d))
        return t_l, t_r

    @cached_property
    def valid_ids_units(self) -> np.ndarray:
        """All n K^d valid column ids (units), increasing: one selective-shift layer each."""
        U = self.unit
        c = np.arange(self.K**self.d, dtype=object)
        ids = [U * j * self.S + 2 * c for j in range(self.n)]
        return np.concatenate(ids)

    @property
    def n_selective_layers(self) -> int:
        return self.n * self.K**self.d

    @property
    def n_attention_layers(self) -> int:
        """n delta^{-d} selective-shift layers + 1 global shift (wang2023.md §2.1 table)."""
        return self.n_selective_layers + 1

    @property
    def n_sequences(self) -> int:
        return self.K ** (self.d * self.n)

    def max_abs_units_valid(self) -> int:
        """A bound on every |id| (units) reached by valid sequences: 2 t_r (Yun Lemma 10 + global shift)."""
        return int(2 * self.unit * self.t_bounds()[1]) + 1


def ids_from_cells(cells, plan: ShiftPlan, invalid=None) -> np.ndarray:
    """Column ids (units) of quantized positioned sequences: cells (B, d, n) integer digits in 0..K-1.

    invalid: optional bool mask (B, d, n) of entries quantized to -J (outside [0, n)).
    id = sum_i K^i (j + k_i/K) for valid entries; an invalid entry contributes K^i (-J).
    """
    c = np.asarray(cells)
    B, d, n = c.shape
    if (d, n) != (plan.d, plan.n):
        raise ValueError(f"cells of shape (.., {d}, {n}) do not match plan (d, n) = ({plan.d}, {plan.n})")
    U = plan.unit
    use_obj = plan.J * plan.S * U > INT64_SAFE or plan.max_abs_units_valid() > INT64_SAFE
    dt = object if use_obj else np.int64
    c = c.astype(dt)
    j = np.arange(n, dtype=dt)[None, None, :]
    entries = U * j + 2 * c  # units
    if invalid is not None:
        entries = np.where(np.asarray(invalid, dtype=bool), -U * plan.J, entries).astype(dt)
    u = np.array(plan.u, dtype=dt)[None, :, None]
    return np.sum(entries * u, axis=1).astype(dt)


def _xi(q, b, mx, mn):
    """Hardmax over rank-1 scores q_k (q_j - b): max key if q_j > b, min key if q_j < b, mean of all on a tie."""
    out = np.where(q > b, mx, mn)
    tie = q == b
    if np.any(tie):
        out = out.astype(object)
        rows = np.nonzero(tie)
        for r, j in zip(*rows, strict=True):
            out[r, j] = Fraction(sum(q[r].tolist()), q.shape[1])
    return out


def contextual_ids(ids0, plan: ShiftPlan, *, scale=None, skip_global: bool = False, record=None) -> np.ndarray:
    """Run the hardmax selective-shift stack and the global shift on ids (units), exactly.

    ids0: (B, n) integer ids in units. scale: override of the selective-shift factor (mutants only).
    record: optional dict; receives the smallest key gap (units) seen by any head and the smallest |q_j - b|.
    Integers stay int64 while provably below INT64_SAFE, else Python ints (exact either way).
    """
    q = np.asarray(ids0)
    if q.ndim != 2 or q.shape[1] != plan.n:
        raise ValueError(f"ids must have shape (B, n={plan.n}), got {q.shape}")
    s = plan.shift_scale if scale is None else scale
    obj = q.dtype == object
    min_gap = None
    for g in plan.valid_ids_units:
        g = int(g)
        mx = np.max(q, axis=1, keepdims=True)
        mn = np.min(q, axis=1, keepdims=True)
        if not obj and (int(np.max(np.abs(mx))) + int(np.max(np.abs(mn)))) * (2 * abs(s) + 1) > INT64_SAFE:
            q = q.astype(object)
            obj = True
            mx, mn = mx.astype(object), mn.astype(object)
        if record is not None:
            srt = np.sort(q, axis=1)
            gap = np.diff(srt, axis=1)
            gap = gap[gap > 0]
            if gap.size:
                mg = int(np.min(gap))
                min_gap = mg if min_gap is None else min(min_gap, mg)
        q = q + s * (_xi(q, g - 1, mx, mn) - _xi(q, g + 1, mx, mn))
    if record is not None:
        record["min_key_gap_units"] = min_gap
    if skip_global:
        return q
    mx = np.max(q, axis=1, keepdims=True)
    mn = np.min(q, axis=1, keepdims=True)
    c = plan.global_scale
    if not obj and (int(np.max(np.abs(q))) + int(np.max(np.abs(mx))) + int(np.max(np.abs(mn)))) * (c + 1) > INT64_SAFE:
        q, mx, mn = q.astype(object), mx.astype(object), mn.astype(object)
    if record is not None:
        record["min_abs_global_query_units"] = int(np.min(np.abs(q)))
    return q + c * _xi(q, 0, mx, mn)


def enumerate_cells(d: int, n: int, K: int, limit: int = MAX_SEQUENCES) -> np.ndarray:
    """All K^{dn} digit arrays (N, d, n), token-major lexicographic (constructions.quantization.grid_index order)."""
    from constructions.quantization import grid_cells

    N = K ** (d * n)
    if N > limit:
        raise TooLarge(f"{K}^{d * n} = {N} grid sequences exceeds budget {limit}")
    return grid_cells(np.arange(N), d, n, K)


@dataclass(frozen=True)
class ContextualReport:
    """P1-P4 for one exhaustive run: counts of violations and the tightness of each property."""

    n_valid: int
    n_invalid: int
    distinct_violations: int  # P1 + P2: repeated ids among all valid outputs
    min_gap: Fraction  # smallest gap between distinct valid ids (>= delta expected)
    min_valid: Fraction
    max_valid: Fraction
    p3_violations: int
    p4_violations: int
    t_l: Fraction
    t_r: Fraction


def contextual_report(plan: ShiftPlan, q_valid, q_invalid=None, typo: bool = False) -> ContextualReport:
    """Check P1-P4 on outputs (units) of contextual_ids: q_valid (N, n) from all valid sequences."""
    U = plan.unit
    t_l, t_r = plan.t_bounds(typo=typo)
    vals = sorted(int(v) if not isinstance(v, Fraction) else v for v in np.asarray(q_valid).ravel().tolist())
    diffs = [b - a for a, b in zip(vals, vals[1:], strict=False)]
    dup = sum(1 for x in diffs if x == 0)
    pos = [x for x in diffs if x > 0]
    min_gap = Fraction(min(pos), U) if pos else Fraction(0)
    lo, hi = Fraction(vals[0], U), Fraction(vals[-1], U)
    p3 = sum(1 for v in vals if not (t_l <= Fraction(v, U) <= t_r))
    p4 = 0
    n_inv = 0
    if q_invalid is not None and len(q_invalid):
        qi = np.asarray(q_invalid)
        n_inv = qi.shape[0]
        for v in qi.ravel().tolist():
            if t_l <= Fraction(v) / U <= t_r:
                p4 += 1
    return ContextualReport(len(vals) // plan.n, n_inv, dup, min_gap, lo, hi, p3, p4, t_l, t_r)


# --- weight level: transformer.Head objects ---------------------------------------------------


def shift_heads(plan: ShiftPlan, g: Fraction | float | None, lam: float | None = None, dtype=np.float64):
    """The heads of one layer, token dimension D = d + 1 (last coordinate = 1 carries the query bias).

    g=None: the global shift (1 head, bias 0, scale n K^{(n+1)d+1}); else the selective shift at id g
    (2 heads with biases g -+ delta/2 and output scales +-K^d). lam: softmax inverse temperature, folded into
    W_k (transformer.py absorbs every scale there); None for hardmax use.
    """
    d = plan.d
    u = np.array(plan.u + (0,), dtype=dtype)[None, :]
    lam_ = 1.0 if lam is None else float(lam)
    e1 = np.zeros((d + 1, 1), dtype=dtype)
    e1[0, 0] = 1.0

    def head(b, scale):
        wq = u.copy()
        wq[0, -1] = -float(b)
        return Head(wq, lam_ * u, u.copy(), float(scale) * e1)

    if g is None:
        return (head(0.0, plan.global_scale),)
    half = plan.delta / 2
    return (head(Fraction(g) - half, plan.shift_scale), head(Fraction(g) + half, -plan.shift_scale))


def all_shift_layers(plan: ShiftPlan, lam: float | None = None):
    """Every attention layer's heads in order: n K^d selective shifts then the global shift."""
    layers = [shift_heads(plan, Fraction(int(g), plan.unit), lam) for g in plan.valid_ids_units]
    layers.append(shift_heads(plan, None, lam))
    return layers


def batched_attention(heads, Z, *, hard: bool):
    """sum_h W_o W_v Z A_h over a batch Z (B, D, n): the formula of transformer.attention, batched.

    Scores are formed as (W_k Z)^T (W_q Z) like transformer.attention_weights; softmax subtracts the column max
    first. Hardmax averages tied maxima (transformer.hardmax_columns).
    """
    out = np.zeros_like(Z)
    for h in heads:
        k = np.einsum("sd,bdn->bsn", h.Wk, Z)
        qv = np.einsum("sd,bdn->bsn", h.Wq, Z)
        S = np.einsum("bsk,bsj->bkj", k, qv)
        top = np.max(S, axis=1, keepdims=True)
        if hard:
            W = (S == top).astype(Z.dtype)
        else:
            W = np.exp(S - top)
        W = W / np.sum(W, axis=1, keepdims=True)
        v = np.einsum("sd,bdn->bsn", h.Wv, Z)
        out = out + np.einsum("ds,bsj->bdj", h.Wo, np.einsum("bsk,bkj->bsj", v, W))
    return out
