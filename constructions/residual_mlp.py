"""The residual ReLU MLP as an invertible map (i-ResNet lemma; wang2023.md §2.4, Behrmann et al. 2019).

    kappa = ||W_1||_2 ||W_2||_2 < 1  =>  (1 - kappa)||x - y|| <= ||MLP(x) - MLP(y)|| <= (1 + kappa)||x - y||,

and MLP^-1(y) is the limit of the fixed point z <- y - F(z), F = MLP - id, which contracts at rate kappa.
Also: MLP families that attain the constants, one float evaluation's rounding bound, and the mpmath evaluation.
"""

from __future__ import annotations

import math

import numpy as np

from constructions.precision import gamma
from constructions.transformer import MLP, mp_matrix, spectral_norm


def mlp_kappa(mlp: MLP) -> float:
    """kappa = ||W_1||_2 ||W_2||_2, an upper bound on Lip(MLP - id)."""
    return spectral_norm(mlp.W1) * spectral_norm(mlp.W2)


def require_contractive(mlp: MLP) -> float:
    """kappa, or ValueError naming the hypothesis kappa < 1 (the MLP must be invertible)."""
    kappa = mlp_kappa(mlp)
    if not kappa < 1.0:
        raise ValueError(
            f"hypothesis kappa = ||W_1|| ||W_2|| < 1 (invertible residual MLP) violated: kappa = {kappa:.6g}"
        )
    return kappa


def mlp_apply(mlp: MLP, z) -> np.ndarray:
    """The residual MLP on one token: transformer.MLP's forward pass, z + (W_2 ReLU(W_1 z + b_1) + b_2)."""
    return np.asarray(mlp(np.asarray(z, dtype=np.float64).reshape(-1, 1)))[:, 0]


def affine_mlp(rng: np.random.Generator, d: int, r: int, kappa: float, sign: float = -1.0, radius: float = 1.0) -> MLP:
    """A residual MLP equal to z -> (1 + sign kappa) z on the ball ||z|| <= radius.

    W_1 = sqrt(kappa) Q (Q: r x d, orthonormal columns), W_2 = sign sqrt(kappa) Q^T, so W_2 W_1 = sign kappa I and
    ||W_1|| ||W_2|| = kappa; b_1 = sqrt(kappa) radius + 1 keeps every ReLU active on the ball, b_2 = -W_2 b_1 makes
    MLP(0) = 0. sign = -1 attains the lower Lipschitz constant 1 - kappa, sign = +1 the upper 1 + kappa.
    """
    if r < d:
        raise ValueError(f"affine_mlp needs r >= d, got r = {r} < d = {d}")
    Q, _ = np.linalg.qr(rng.normal(size=(r, d)))
    c = math.sqrt(kappa)
    W1 = c * Q
    W2 = sign * c * Q.T
    b1 = np.full(r, c * radius + 1.0)
    return MLP(W1, b1, W2, -W2 @ b1)


def bilipschitz_constants(kappa: float) -> tuple[float, float]:
    """(1 - kappa, 1 + kappa): the residual lemma's lower and upper Lipschitz constants of MLP = id + F."""
    return 1.0 - kappa, 1.0 + kappa


def inverse_iterations(kappa: float) -> int:
    """Fixed-point steps after which kappa^N <= e^-40: the contraction term is below any rounding floor."""
    return 10 + int(math.ceil(40.0 / max(-math.log(max(kappa, 1e-300)), 1e-3)))


def mlp_inverse(mlp: MLP, Y, tol: float = 0.0, max_iter: int | None = None) -> tuple[np.ndarray, int]:
    """Fixed-point inverse of the residual MLP (i-ResNet lemma): z <- y - F(z), F = MLP - id, rate kappa < 1.

    Runs ``inverse_iterations(kappa)`` steps (or ``max_iter``), stopping early only when a step is exactly 0 or
    <= tol. After k exact steps the error is <= kappa^k / (1 - kappa) ||step_1||; in floating point each step adds
    at most the rounding rho of one evaluation, so the error settles at rho / (1 - kappa). No stop on a step that
    fails to shrink: for kappa near 1 the true decrease per step (1 - kappa) is drowned by rounding long before
    the iterate converges (at kappa = 0.99 that stop left errors 100x the rounding level).
    """
    kappa = require_contractive(mlp)
    Y = np.asarray(Y, dtype=np.float64)
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    if max_iter is None:
        max_iter = inverse_iterations(kappa)
    Z = Y2.copy()
    it, step = 0, math.inf
    while it < max_iter and step > tol and step != 0.0:
        Zn = Y2 - mlp.residual_part(Z)
        step = float(np.abs(Zn - Z).max())
        Z = Zn
        it += 1
    return (Z[:, 0] if Y.ndim == 1 else Z), it


def mlp_eval_rounding(mlp: MLP, X, u: float) -> np.ndarray:
    """Componentwise bound on |fl(X + F(X)) - (X + F(X))| for one float evaluation, F = W2 ReLU(W1 x + b1) + b2.

    gamma_k per inner product of length k (Higham, Thm 3.5); ReLU is exact and 1-Lipschitz; the last addition
    x + F(x) rounds once more: e1 = gamma_{d+1}(|W1||x| + |b1|), e2 = gamma_{r+1}(|W2||h| + |b2|) + |W2| e1,
    e = e2 + u(|x| + |F(x)|) + u e2.
    """
    W1, b1, W2, b2 = (np.asarray(w, dtype=np.float64) for w in (mlp.W1, mlp.b1, mlp.W2, mlp.b2))
    X = np.asarray(X, dtype=np.float64)
    d, r = W1.shape[1], W1.shape[0]
    e1 = gamma(d + 1, u) * (np.abs(W1) @ np.abs(X) + np.abs(b1)[:, None])
    H = np.maximum(W1 @ X + b1[:, None], 0.0)
    e2 = gamma(r + 1, u) * (np.abs(W2) @ (H + e1) + np.abs(b2)[:, None]) + np.abs(W2) @ e1
    F = W2 @ H + b2[:, None]
    return e2 * (1.0 + u) + u * (np.abs(X) + np.abs(F) + e2)


def pair_norm_rounding(mlp: MLP, X1, X2, u: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column: bounds on |fl||MLP(x1) - MLP(x2)|| - ||MLP(x1) - MLP(x2)||| and the same for ||x1 - x2||.

    From the inputs only: each evaluation errs by mlp_eval_rounding, the difference rounds by u per entry, the
    2-norm of a k-vector by gamma_{k+1} relatively (k squares, k - 1 additions, one sqrt).
    """
    X1, X2 = np.asarray(X1, dtype=np.float64), np.asarray(X2, dtype=np.float64)
    d = X1.shape[0]
    F1, F2 = mlp(X1), mlp(X2)
    E = mlp_eval_rounding(mlp, X1, u) + mlp_eval_rounding(mlp, X2, u) + u * (np.abs(F1) + np.abs(F2))
    g = gamma(d + 1, u)
    ef = np.linalg.norm(E, axis=0) * (1 + g) + g * np.linalg.norm(F1 - F2, axis=0)
    ex = (u + g) * np.linalg.norm(np.abs(X1) + np.abs(X2), axis=0)
    return ef, ex


# ---------------------------------------------------------------------------------------------
# mpmath evaluation


def mp_spectral_norm(ctx, W):
    """||W||_2 at ctx's digits (largest eigenvalue of W^T W)."""
    A = mp_matrix(ctx, W)
    return ctx.sqrt(max(ctx.eigsy(A.T * A, eigvals_only=True)))


def mp_mlp(ctx, mlp: MLP, z):
    """The residual MLP on one mpmath column z at ctx's digits (float64 weights, exact conversion)."""
    hp = mp_matrix(ctx, mlp.W1) * z + mp_matrix(ctx, mlp.b1)
    h = ctx.matrix([max(hp[k], 0) for k in range(hp.rows)])
    return z + mp_matrix(ctx, mlp.W2) * h + mp_matrix(ctx, mlp.b2)


def mp_mlp_pair_norms(ctx, mlp: MLP, X1, X2):
    """Per column j: (||MLP(x1_j) - MLP(x2_j)||, ||x1_j - x2_j||) at ctx's digits (float64 inputs, exact)."""
    X1, X2 = np.asarray(X1, dtype=np.float64), np.asarray(X2, dtype=np.float64)
    out = []
    for j in range(X1.shape[1]):
        z1, z2 = mp_matrix(ctx, X1[:, j]), mp_matrix(ctx, X2[:, j])
        out.append((ctx.norm(mp_mlp(ctx, mlp, z1) - mp_mlp(ctx, mlp, z2)), ctx.norm(z1 - z2)))
    return out


def mp_mlp_kappa(ctx, mlp: MLP):
    """kappa = ||W_1||_2 ||W_2||_2 of the stored float64 weights at ctx's digits (the lemma's hypothesis, exact)."""
    return mp_spectral_norm(ctx, mlp.W1) * mp_spectral_norm(ctx, mlp.W2)
