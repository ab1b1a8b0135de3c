"""Shared strategies and rounding floors of the fast-attention claims (not a claims module: starts with _).

Instances carry their arrays (drawn by hypothesis.extra.numpy, so a counterexample file holds the instance
itself): unit arrays Qu, Ku in [-1, 1]^(n x d) scaled at check time by B = sqrt(beta / (scale d)), and V.
Rounding floors are derived from magnitudes: M_ij = sum_j |c_j| (scale <|q_i|, |k_j|>)^j bounds the sum of absolute
values of the r terms of Ã_ij, so each evaluation of Ã_ij is within (terms) * u * M_ij; kappa = max M_ij / A_ij
(<= e^(2 beta)) converts that to the relative error that the output bound needs (fast_attention.md §4.4).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import verify
from constructions import fast_attention as fa
from constructions.precision import backend_unit_roundoff, unit_roundoff

U64 = unit_roundoff("float64")
R_MAX = 8000  # largest feature width drawn: r x n features and the r-term sums stay ~ms
BETA_MAX = {1: 8.0, 2: 6.0, 3: 3.0, 4: 2.0, 5: 1.0}  # keeps r = C(d+g, g) <= ~6000 at eps >= 1e-9
SCALINGS = ("1/d", "1/sqrt(d)", "1")


def unit_array(n: int, d: int, lo: float = -1.0, hi: float = 1.0):
    """An n x d float64 array with every entry drawn (no fill value) from [lo, hi]."""
    return hnp.arrays(np.float64, (n, d), elements=st.floats(lo, hi, allow_subnormal=False), fill=st.nothing())


@st.composite
def kernel_strategy(draw, n=(2, 40), d=(1, 5), dv=(1, 4), beta_cap=None, log10_eps=(-9.0, -2.0), kinds=fa.KINDS,
                    adversarial=None, adversarial_v=None, chunk=(1, 48), dtypes=None):
    """An attention instance with its arrays: Qu, Ku (unit, scaled by B at check time), V, and the settings."""
    dd = draw(st.integers(*d))
    nn = draw(st.integers(*n))
    dvv = draw(st.integers(*dv))
    cap = BETA_MAX[dd] if beta_cap is None else min(BETA_MAX[dd], beta_cap(dd))
    inst = {
        "n": nn, "d": dd, "dv": dvv,
        "beta": draw(st.floats(0.0, cap) if cap > 0 else st.just(0.0)),
        "log10_eps": draw(st.floats(*log10_eps)),
        "kind": draw(st.sampled_from(kinds)),
        "scaling": draw(st.sampled_from(SCALINGS)),
        "adversarial": draw(st.booleans() if adversarial is None else st.just(adversarial)),
        "adversarial_v": draw(st.booleans() if adversarial_v is None else st.just(adversarial_v)),
        "chunk": draw(st.integers(*chunk)),
        "Qu": draw(unit_array(nn, dd)),
        "Ku": draw(unit_array(nn, dd)),
        "V": draw(unit_array(nn, dvv, -3.0, 3.0)),
        "perm_q": np.array(draw(st.permutations(range(nn))), dtype=np.int64),
        "perm_k": np.array(draw(st.permutations(range(nn))), dtype=np.int64),
    }
    if dtypes is not None:
        inst["dtype"] = draw(st.sampled_from(dtypes))
    return inst


kernel_instances = kernel_strategy()


def scale_of(name: str, d: int) -> float:
    return {"1/d": 1.0 / d, "1/sqrt(d)": 1.0 / math.sqrt(d), "1": 1.0}[name]


def array_backend(backend):
    if not backend.is_array:
        raise verify.UnsupportedPrecision(f"this check runs on array backends, not {backend.label}")
    return backend


def draw_qkv(inst):
    """Q, K in [-B, B], scale d B^2 = beta; adversarial rows q_0 = +B 1, k_0 = +B 1, k_last = -B 1 hit |s| = beta."""
    d = inst["d"]
    scale = scale_of(inst["scaling"], d)
    B = math.sqrt(inst["beta"] / (scale * d))
    Q = np.array(inst["Qu"], dtype=np.float64) * B
    K = np.array(inst["Ku"], dtype=np.float64) * B
    V = np.array(inst["V"], dtype=np.float64)
    if inst.get("adversarial"):
        Q[0], K[0], K[-1] = B, B, -B
    return Q, K, V, scale, B


def eps_of(inst) -> float:
    # eps above the float64 coefficient floor u e^(2 beta) (an input-derived floor) so that a certified degree exists
    return max(10.0 ** inst["log10_eps"], 16 * fa.coefficient_floor(inst["beta"]))


def poly_for(inst, beta, kind=None):
    kind = kind or inst["kind"]
    g = fa.required_degree(beta, eps_of(inst), kind)
    r = fa.feature_rank(inst["d"], g)
    if r > R_MAX:
        raise verify.OutOfReach(f"rank C(d+g,g) = {r} > {R_MAX} (d={inst['d']}, g={g})")
    return fa.exp_polynomial(beta, eps_of(inst), kind, degree=g)


def to_backend(backend, *arrays):
    """Arrays on the backend, plus the float64 copies of exactly those (rounded) values for the references."""
    moved = [backend.asarray(a) for a in arrays]
    return moved, [backend.to_numpy(m) for m in moved]


def magnitude(poly, Q, K, scale):
    """M_ij = sum_j |c_j| (scale <|q_i|, |k_j|>)^j: the sum of |terms| of Ã_ij (and of A_ij's Taylor series)."""
    return fa.horner(tuple(abs(c) for c in poly.coeffs), scale * (np.abs(Q) @ np.abs(K).T), np)


def kappa_of(poly, Q, K, scale) -> float:
    """Conditioning kappa = max_ij M_ij / A_ij (<= e^(2 beta)): rounding at M's magnitude, relative to A."""
    return float(np.max(magnitude(poly, Q, K, scale) / np.exp(scale * (Q @ K.T))))


def eta_of(poly, r, n, d, u, kappa) -> float:
    """Relative rounding floor of Ã (and of the normalised output) at conditioning kappa = max M/A, unit roundoff u."""
    return (n + r + 3 * poly.degree + d + 8) * u * kappa + (d + 4) * U64 * (poly.beta + 1)


def u_of(backend) -> float:
    return backend_unit_roundoff(backend)
