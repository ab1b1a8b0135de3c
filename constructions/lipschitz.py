"""Sequence-to-sequence maps [0,1]^{d x L} -> [0,1]^{d x L} with certified Lipschitz constants.

The target class of Hu et al. 2024 (hu2024.md §1.3, reconstructed Definition 2.3) is

    F_C = { f : ||f(X) - f(X')||_alpha <= C ||X - X'||_alpha },   ||X||_alpha = (sum_ij |X_ij|^alpha)^(1/alpha),

the entry-wise alpha-norm (a vector norm on R^{dL}). Every constructor below returns a map whose
certified constant (by the argument in its docstring) equals the requested ``C``; the true constant may
be smaller, never larger.

Two facts are used throughout:

* entry-wise clipping to [0,1] is 1-Lipschitz in every entry-wise alpha-norm (|clip s - clip t| <= |s - t|
  entry by entry), and so is an entry-wise ReLU;
* Schur test: for a real matrix A (m x n) and 1 <= alpha < inf,
  ||A||_{alpha -> alpha} <= ||A||_1^(1/alpha) ||A||_inf^(1 - 1/alpha), with ||A||_1 the largest column
  abs-sum and ||A||_inf the largest row abs-sum (Hölder on each row; no constant for real scalars).

Batches: ``f(X)`` accepts X of shape (d, L) or (B, d, L).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("clipped_linear", "permutation", "bump_sum", "relu_net")
MAX_DL = 4096  # dL above this makes the dense dL x dL certificates unreasonably large


def alpha_norm(X, alpha: float, axis=None):
    """Entry-wise alpha-norm; with ``axis=None`` over all entries, else over the given axes."""
    A = np.abs(np.asarray(X, dtype=np.float64))
    if alpha == 1:
        return np.sum(A, axis=axis)
    return np.sum(A**alpha, axis=axis) ** (1.0 / alpha)


def schur_bound(A: np.ndarray, alpha: float) -> float:
    """Certified ||A||_{alpha -> alpha} <= ||A||_1^(1/alpha) * ||A||_inf^(1 - 1/alpha) (Schur test)."""
    A = np.abs(np.asarray(A, dtype=np.float64))
    col = float(np.max(np.sum(A, axis=0)))
    row = float(np.max(np.sum(A, axis=1)))
    return col ** (1.0 / alpha) * row ** (1.0 - 1.0 / alpha)


def _check(d, L, C, alpha):
    if int(d) != d or d < 1 or int(L) != L or L < 1:
        raise ValueError(f"d and L must be positive integers, got d={d}, L={L}")
    if d * L > MAX_DL:
        raise ValueError(f"d*L = {d * L} exceeds budget {MAX_DL} for dense Lipschitz certificates")
    if not (np.isfinite(C) and C >= 0):
        raise ValueError(f"Lipschitz constant C must be finite and >= 0, got {C}")
    if not (np.isfinite(alpha) and alpha >= 1):
        raise ValueError(f"alpha must satisfy 1 <= alpha < inf, got {alpha}")


@dataclass(frozen=True, eq=False)
class LipschitzMap:
    """f : [0,1]^{d x L} -> [0,1]^{d x L}, C-Lipschitz in the entry-wise alpha-norm (certified).

    ``kind`` names the family; ``params`` holds its arrays (flattening vec(X) = X.reshape(-1), row-major).
    """

    d: int
    L: int
    C: float
    alpha: float
    kind: str
    params: dict = field(default_factory=dict, repr=False)

    def __call__(self, X):
        X = np.asarray(X, dtype=np.float64)
        single = X.ndim == 2
        if X.shape[-2:] != (self.d, self.L):
            raise ValueError(f"expected X of shape (d, L) = ({self.d}, {self.L}) or (B, d, L), got {X.shape}")
        V = X.reshape(1 if single else X.shape[0], self.d * self.L)
        p = self.params
        if self.kind in ("clipped_linear", "permutation"):
            Y = V @ p["A"].T + p["b"]
        elif self.kind == "relu_net":
            H = np.maximum(V @ p["W1"].T + p["b1"], 0.0)
            Y = H @ p["W2"].T + p["b2"]
        elif self.kind == "bump_sum":
            # phi_k(X) = max(0, 1 - ||X - mu_k||_alpha / r_k), one scalar per bump
            diff = V[:, None, :] - p["mu"][None, :, :]
            phi = np.maximum(0.0, 1.0 - alpha_norm(diff, self.alpha, axis=2) / p["r"][None, :])
            Y = p["b"] + phi @ p["a"]
        else:  # pragma: no cover - constructors only make known kinds
            raise ValueError(f"unknown kind {self.kind!r}")
        Y = np.clip(Y, 0.0, 1.0)
        return Y.reshape(self.d, self.L) if single else Y.reshape(X.shape[0], self.d, self.L)


def clipped_linear(rng: np.random.Generator, d: int, L: int, C: float, alpha: float) -> LipschitzMap:
    """f(X) = clip(A vec X + b, 0, 1) with a dense Gaussian A scaled so its Schur bound is exactly C.

    Certificate: Lip(f) <= 1 * ||A||_{alpha->alpha} <= ||A||_1^(1/alpha) ||A||_inf^(1-1/alpha) = C.
    b centres the image of X = 1/2 at a random point of [0.25, 0.75] so clipping is not everywhere active.
    """
    _check(d, L, C, alpha)
    n = d * L
    A = rng.normal(size=(n, n))
    s = schur_bound(A, alpha)
    A = A * (C / s) if s > 0 else np.zeros((n, n))
    b = rng.uniform(0.25, 0.75, size=n) - A @ np.full(n, 0.5)
    return LipschitzMap(d, L, float(C), float(alpha), "clipped_linear", {"A": A, "b": b})


def scaled_permutation(rng: np.random.Generator, d: int, L: int, C: float, alpha: float) -> LipschitzMap:
    """f(X) = clip(C * S vec X + b, 0, 1) with S a signed permutation: Lipschitz exactly C before clipping.

    Certificate: a signed permutation is an isometry of every entry-wise norm, clipping is 1-Lipschitz.
    This is the family on which the quantization bounds are tightest (errors align entry by entry).
    """
    _check(d, L, C, alpha)
    n = d * L
    S = np.zeros((n, n))
    S[np.arange(n), rng.permutation(n)] = rng.choice([-1.0, 1.0], size=n)
    A = C * S
    b = rng.uniform(0.0, 1.0, size=n) - A @ np.full(n, 0.5)
    return LipschitzMap(d, L, float(C), float(alpha), "permutation", {"A": A, "b": b})


def bump_sum(rng: np.random.Generator, d: int, L: int, C: float, alpha: float, n_bumps: int = 4) -> LipschitzMap:
    """f(X) = clip(b + sum_k a_k phi_k(X), 0, 1), phi_k(X) = max(0, 1 - ||X - mu_k||_alpha / r_k).

    Certificate: phi_k is (1/r_k)-Lipschitz (reverse triangle inequality), so
    ||sum_k a_k (phi_k(X) - phi_k(X'))||_alpha <= sum_k ||a_k||_alpha / r_k * ||X - X'||_alpha,
    and the a_k are scaled so that sum_k ||a_k||_alpha / r_k = C exactly.
    """
    _check(d, L, C, alpha)
    if int(n_bumps) != n_bumps or n_bumps < 1:
        raise ValueError(f"n_bumps must be a positive integer, got {n_bumps}")
    n = d * L
    mu = rng.uniform(0.0, 1.0, size=(n_bumps, n))
    r = rng.uniform(0.2, 1.0, size=n_bumps) * n ** (1.0 / alpha)
    a = rng.normal(size=(n_bumps, n))
    cert = float(np.sum(alpha_norm(a, alpha, axis=1) / r))
    a = a * (C / cert) if cert > 0 else np.zeros_like(a)
    b = rng.uniform(0.25, 0.75, size=n)
    return LipschitzMap(d, L, float(C), float(alpha), "bump_sum", {"mu": mu, "r": r, "a": a, "b": b})


def relu_net(rng: np.random.Generator, d: int, L: int, C: float, alpha: float, width: int = 8) -> LipschitzMap:
    """f(X) = clip(W_2 ReLU(W_1 vec X + b_1) + b_2, 0, 1), one hidden ReLU layer.

    Certificate: Lip(f) <= ||W_2||_{alpha->alpha} * 1 * ||W_1||_{alpha->alpha}, each bounded by its Schur test
    (rectangular matrices included); the weights are scaled so the product of Schur bounds is exactly C.
    """
    _check(d, L, C, alpha)
    if int(width) != width or width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    n = d * L
    W1 = rng.normal(size=(width, n))
    W2 = rng.normal(size=(n, width))
    s = schur_bound(W1, alpha) * schur_bound(W2, alpha)
    c = np.sqrt(C / s) if s > 0 else 0.0
    W1, W2 = W1 * c, W2 * c
    b1 = rng.normal(size=width) * max(c, 1e-300) * 0.5
    b2 = rng.uniform(0.25, 0.75, size=n) - W2 @ np.maximum(W1 @ np.full(n, 0.5) + b1, 0.0)
    return LipschitzMap(d, L, float(C), float(alpha), "relu_net", {"W1": W1, "b1": b1, "W2": W2, "b2": b2})


def random_lipschitz(seed: int, d: int, L: int, C: float, alpha: float, kind: str = "clipped_linear") -> LipschitzMap:
    """A random member of F_C of the named ``kind``, a deterministic function of (seed, d, L, C, alpha, kind)."""
    if kind not in KINDS:
        raise ValueError(f"unknown Lipschitz family {kind!r}; choose from {KINDS}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, KINDS.index(kind), int(d), int(L)])
    if kind == "clipped_linear":
        return clipped_linear(rng, d, L, C, alpha)
    if kind == "permutation":
        return scaled_permutation(rng, d, L, C, alpha)
    if kind == "bump_sum":
        return bump_sum(rng, d, L, C, alpha, n_bumps=4)
    return relu_net(rng, d, L, C, alpha, width=8)


def empirical_lipschitz(f: LipschitzMap, rng: np.random.Generator, n_pairs: int = 2000, scale: float = 0.05) -> float:
    """max ||f(X)-f(X')||_alpha / ||X-X'||_alpha over random close pairs (a lower estimate of Lip(f))."""
    X = rng.uniform(0.0, 1.0, size=(n_pairs, f.d, f.L))
    Xp = np.clip(X + rng.normal(scale=scale, size=X.shape), 0.0, 1.0)
    num = alpha_norm(f(X) - f(Xp), f.alpha, axis=(1, 2))
    den = alpha_norm(X - Xp, f.alpha, axis=(1, 2))
    ok = den > 0
    return float(np.max(num[ok] / den[ok])) if np.any(ok) else 0.0
