"""Rounding: unit roundoff per arithmetic, gamma_n, and forward-error floors of the kernels we build.

Every floor here is a bound on |computed - exact| derived operation by operation from the *inputs'*
magnitudes (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., §3.1-3.5): never from the
quantity a claim tests, so a floor cannot grow as an instance nears a violation.

    u            unit roundoff: 2^-53 (float64), 2^-24 (float32), 2^-(prec) (mpmath at prec bits)
    gamma(n, u)  n u / (1 - n u): relative error of an n-term sum or dot product, any order (Thm 3.1)
    |fl(A B) - A B| <= gamma(k, u) |A| |B|, k the inner size                                   (§3.5)
"""

from __future__ import annotations

import math

import numpy as np

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


def unit_roundoff(dtype) -> float:
    """u for a dtype: a name ('float64', 'float32', 'torch.float16', ...) or a numpy / torch / jax dtype."""
    name = str(dtype).replace("torch.", "")
    if name not in UNIT_ROUNDOFF:
        try:
            name = str(np.dtype(dtype))
        except TypeError:
            pass
    try:
        return UNIT_ROUNDOFF[name]
    except KeyError:
        raise ValueError(f"no unit roundoff known for {dtype!r}; known: {sorted(UNIT_ROUNDOFF)}") from None


def backend_unit_roundoff(backend) -> float:
    """u of a verify Backend: its mpmath context's precision on the mpmath rung, else its dtype's."""
    if getattr(backend, "name", None) == "mpmath":
        return 2.0 ** -int(backend.mp.prec)
    if getattr(backend, "name", None) == "arb":
        return 2.0 ** -int(math.ceil(backend.dps * math.log2(10)))
    return UNIT_ROUNDOFF[backend.dtype]


def gamma(n: int, u: float) -> float:
    """gamma_n = n u / (1 - n u), the relative error bound of an n-term sum or dot product (Higham Thm 3.1).

    Infinite when n u >= 1: no bound exists at that size, and a caller must not treat inf as a pass.
    """
    if n < 0:
        raise ValueError(f"gamma_n needs n >= 0, got {n}")
    nu = n * u
    return math.inf if nu >= 1.0 else nu / (1.0 - nu)


def matmul_floor(A, B, u: float, *, extra: int = 0) -> np.ndarray:
    """Entrywise bound on |fl(A @ B) - A @ B|: gamma_{k+extra} |A| |B| (k = inner size; extra rounded inputs)."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    k = A.shape[-1]
    return gamma(k + extra, u) * (np.abs(A) @ np.abs(B))


def sum_floor(x, u: float, axis=None) -> np.ndarray:
    """Bound on |fl(sum x) - sum x|: gamma_{n-1} sum |x| along ``axis`` (n the number of terms)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size if axis is None else x.shape[axis]
    return gamma(max(n - 1, 0), u) * np.sum(np.abs(x), axis=axis)


def softmax_relative_floor(logits, u: float, axis: int = 0) -> np.ndarray:
    """Bound on the relative error of each softmax weight computed as exp(l - max l) / sum exp(l - max l).

    Per weight: the shift rounds (u |l - max|), exp adds u relative error and amplifies the shift's absolute
    error by 1, and the normalising n-term sum of positive terms adds gamma_{n-1}; the division one more u.
    So rel <= u (|l - max l| (1 + u) + 2) + gamma_{n-1} + cross terms, which 2 u covers to first order.
    """
    L = np.asarray(logits, dtype=np.float64)
    n = L.shape[axis]
    spread = np.abs(L - L.max(axis=axis, keepdims=True))
    first = u * (spread + np.max(spread, axis=axis, keepdims=True) + 2.0) + gamma(max(n - 1, 1), u)
    return first * (1.0 + 2.0 * first) + 2.0 * u * u


def attention_floor(logit_bound: float, n: int, value_bound: float, u: float, *, logit_error: float = 0.0) -> float:
    """Bound on |fl(softmax(l)^T v) - softmax(l)^T v| for n keys with |l| <= logit_bound and |v| <= value_bound.

    The weights err relatively by <= rho = u (4 logit_bound + 2) + gamma_{n-1} + 2 logit_error (a logit error e
    moves a weight by a factor e^{+-2e}); the weighted sum of n values adds gamma_n; the output is a convex
    combination, so |error| <= (rho (1 + gamma_n) + gamma_n) value_bound.
    """
    g = gamma(max(n - 1, 1), u)
    rho = u * (4.0 * logit_bound + 2.0) + g + math.expm1(2.0 * logit_error)
    rho = rho * (1.0 + 2.0 * rho)
    gn = gamma(n, u)
    return (rho * (1.0 + gn) + gn) * value_bound
