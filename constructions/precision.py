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
