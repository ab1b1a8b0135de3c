"""Rank obstruction and the rank-1 LoRA memorizer (Wang et al. 2023 Thms 3-4 [R]; wang2023.md §2.3 [D]).

An exact fit of n examples needs prompt points a_i = Att(x_i, P) on the rays c_i + s (t_i - c_i), s > 1, and all
a_i lie in span(M P) of dimension <= m_p. Certificates that every choice is independent (so m_p >= n):

    (A) sigma_min(V) > ||C||_2   (V = [t_i - c_i], n <= d);   (B) t_i - c_i = beta_i w and sigma_min([C, w]) > 0.

Case (B) is memorized exactly by the rank-1 update Delta W_2 = u beta^T H^+ (d + r parameters) versus >= n d
prompt parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import lu_factor, lu_solve
from scipy.optimize import minimize

from constructions.precision import gamma
from constructions.residual_mlp import mlp_apply, require_contractive
from constructions.single_layer import attend, logsumexp, score_vector, single_head
from constructions.transformer import MLP, Head, Layer, spectral_norm


def certificate_A(C, V) -> float:
    """sigma_min(V) - ||C||_2: if > 0, the prompt points c_i + s_i v_i (s_i >= 1) are independent (n <= d)."""
    C, V = np.asarray(C, dtype=np.float64), np.asarray(V, dtype=np.float64)
    if V.shape[1] > V.shape[0]:
        raise ValueError(f"certificate (A) needs n <= d, got n = {V.shape[1]} > d = {V.shape[0]}")
    return float(np.linalg.svd(V, compute_uv=False)[-1]) - spectral_norm(C)


def certificate_B(C, w) -> float:
    """sigma_min([C, w]): if > 0, the points c_i + s_i beta_i w are independent for every s (n + 1 <= d)."""
    C = np.asarray(C, dtype=np.float64)
    A = np.concatenate([C, np.asarray(w, dtype=np.float64).reshape(-1, 1)], axis=1)
    if A.shape[1] > A.shape[0]:
        raise ValueError(f"certificate (B) needs n + 1 <= d, got n + 1 = {A.shape[1]} > d = {A.shape[0]}")
    return float(np.linalg.svd(A, compute_uv=False)[-1])


def ray_sigma_min(C, V, lower: float | None) -> float:
    """An adversary for the certificates: min over s of sigma_n(C + V diag(s)) found by BFGS from 4 starts.

    lower=None: s ranges over R^n (case B); lower = 1: s_i = 1 + v_i^2 >= 1 (case A's rays). Starts s = 1, s = 3,
    s ~ U(0, 5)^n and s ~ -U(0, 5)^n (default_rng(0): the same input gives the same value), each run by scipy's
    BFGS for at most 80 iterations; the result is the least value at a start or an end point.
    """
    n = C.shape[1]

    def s_of(v):
        return v if lower is None else lower + v * v

    def f(v):
        return float(np.linalg.svd(C + V * s_of(v)[None, :], compute_uv=False)[-1])

    best = math.inf
    rng = np.random.default_rng(0)
    starts = [np.ones(n), np.full(n, 3.0), rng.uniform(0.0, 5.0, n), -rng.uniform(0.0, 5.0, n)]
    for s0 in starts:
        v0 = s0 if lower is None else np.sqrt(np.maximum(s0 - lower, 0.0))
        res = minimize(f, v0, method="BFGS", options={"maxiter": 80})
        best = min(best, float(res.fun), f(v0))
    return best


@dataclass(frozen=True)
class RankDataset:
    """n examples X_i = [x_i0, x_i], target y_i for the last column; case (B): t_i - c_i = beta_i w."""

    Xs: tuple  # n arrays d x 2
    Y: np.ndarray  # d x n targets for the last columns
    C: np.ndarray  # d x n unprompted attention outputs c_i = Att(x_i, X_i)
    T: np.ndarray  # d x n required attention outputs t_i = MLP^-1(y_i) - x_i
    w: np.ndarray
    u: np.ndarray
    beta: np.ndarray
    H: np.ndarray  # r x n hidden activations ReLU(W_1 z_i + b_1), z_i = x_i + c_i
    kappa: float

    @property
    def n(self) -> int:
        return len(self.Xs)

    @property
    def certificate(self) -> float:
        return certificate_B(self.C, self.w)


def mlp_active_everywhere(mlp: MLP, Z) -> float:
    """min over the columns of Z of the smallest pre-activation (> 0: the MLP is affine around them)."""
    W1, b1 = np.asarray(mlp.W1, dtype=np.float64), np.asarray(mlp.b1, dtype=np.float64)
    return float((W1 @ np.asarray(Z, dtype=np.float64) + b1[:, None]).min())


def common_direction(mlp: MLP, u) -> np.ndarray:
    """w = J^-1 u, J = I + W_2 W_1: the Jacobian of the all-active MLP maps w to the target offset direction u."""
    W1, W2 = np.asarray(mlp.W1, dtype=np.float64), np.asarray(mlp.W2, dtype=np.float64)
    return np.linalg.solve(np.eye(W1.shape[1]) + W2 @ W1, u)


def rank_obstruction_dataset(
    layer: Layer, n: int, rng: np.random.Generator | None = None, beta_scale: float = 1.0, *, Xs=None, u=None, beta=None
) -> RankDataset:
    """Case (B) of wang2023.md §2.3 [D]: y_i = MLP(z_i) + beta_i u, so t_i - c_i = beta_i J^-1 u = beta_i w.

    Needs one head, kappa < 1, n + 1 <= d, r >= n, and every ReLU active on z_i and z_i + beta_i w (then the
    MLP is affine with Jacobian J = I + W_2 W_1 there); each is checked, ValueError names the failed one.
    Xs (n arrays d x 2), u (unit d-vector) and beta (n) are drawn from rng unless given.
    """
    head = single_head(layer)
    kappa = require_contractive(layer.mlp)
    W1 = np.asarray(layer.mlp.W1, dtype=np.float64)
    r, d = W1.shape
    if n + 1 > d:
        raise ValueError(f"hypothesis n + 1 <= d (certificate B) violated: n = {n}, d = {d}")
    if r < n:
        raise ValueError(f"hypothesis r >= n (H of full column rank) violated: r = {r}, n = {n}")
    if Xs is None:
        Xs = tuple(rng.uniform(-1.0, 1.0, size=(d, 2)) for _ in range(n))
    Xs = tuple(np.asarray(X, dtype=np.float64) for X in Xs)
    C = np.stack([attend(head, X[:, -1], X) for X in Xs], axis=1)
    Z = np.stack([X[:, -1] for X in Xs], axis=1) + C
    if u is None:
        u = rng.normal(size=d)
        u /= np.linalg.norm(u)
    w = common_direction(layer.mlp, u)
    if beta is None:
        beta = beta_scale * rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.5, 1.5, size=n)
    u, beta = np.asarray(u, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    Zt = Z + np.outer(w, beta)
    act = min(mlp_active_everywhere(layer.mlp, Z), mlp_active_everywhere(layer.mlp, Zt))
    if act <= 0:
        raise ValueError(
            f"hypothesis 'all ReLUs active on z_i and z_i + beta_i w' violated (min pre-activation {act:.3g})"
        )
    Y = np.stack([mlp_apply(layer.mlp, Z[:, i]) for i in range(n)], axis=1) + np.outer(u, beta)
    H = np.maximum(W1 @ Z + np.asarray(layer.mlp.b1, dtype=np.float64)[:, None], 0.0)
    return RankDataset(Xs, Y, C, C + np.outer(w, beta), w, u, beta, H, kappa)


def rank_lower_bound(kappa: float, cert: float, lambdas, case: str = "B") -> float:
    """Lower bound on (sum_i ||tau([P, X_i])_last - y_i||^2)^1/2 for a prompt with m_p < n [D].

    With o_i = lambda_i a_i + (1 - lambda_i) c_i and e_i = o_i - t_i, the prompt points are A_P = A(s) + E S
    (s_i = 1/lambda_i); rank A_P <= m_p < n forces ||E S||_2 >= sigma_n(A(s)). Case (B): sigma_n(A(s)) >=
    sigma_min([C, w]) for every s, so ||E||_F >= cert min_i lambda_i. Case (A): sigma_n(A(s)) >= cert min_i s_i,
    so ||E||_F >= cert min_i lambda_i / max_i lambda_i. The MLP maps errors down by at most 1 - kappa.
    """
    lam = np.asarray(lambdas, dtype=np.float64)
    if case == "B":
        return (1.0 - kappa) * cert * float(lam.min())
    if case == "A":
        return (1.0 - kappa) * cert * float(lam.min() / lam.max())
    raise ValueError(f"case must be 'A' or 'B', got {case!r}")


def prompt_lambdas(head: Head, Xs, P) -> np.ndarray:
    """lambda_i = Z_P / (Z_P + Z_{X_i}) = 1 / (1 + e^t_i), t_i = log Z_{X_i} - log Z_P, for the last token of each X_i.

    Evaluated as 1 / (1 + e^t) for t <= 0 and as e^-t / (1 + e^-t) for t > 0, so neither overflows: a faint prompt
    (t_i > 745) underflows to lambda_i = 0, never to a value above the true one (the prompt lower bound uses
    min_i lambda_i, so an overestimate could report a false violation).
    """
    P = np.asarray(P, dtype=np.float64)
    out = []
    for X in Xs:
        g = score_vector(head, X[:, -1])
        t = logsumexp(X.T @ g) - logsumexp(P.T @ g)
        out.append(1.0 / (1.0 + math.exp(t)) if t <= 0.0 else math.exp(-t) / (1.0 + math.exp(-t)))
    return np.asarray(out)


@dataclass(frozen=True)
class LoRAUpdate:
    """Delta W_2 = u v^T (rank 1): d + r trainable parameters; v = H y with (H^T H) y = beta."""

    u: np.ndarray
    v: np.ndarray
    y: np.ndarray | None = None

    @property
    def delta(self) -> np.ndarray:
        return np.outer(self.u, self.v)

    @property
    def params(self) -> int:
        return self.u.size + self.v.size


def lora_rank1(ds: RankDataset) -> LoRAUpdate:
    """Delta W_2 = u beta^T H^+ (wang2023.md §2.3) [D]: (W_2 + Delta W_2) h_i = W_2 h_i + beta_i u for all i.

    v^T = beta^T H^+ = beta^T (H^T H)^-1 H^T: the n x n system (H^T H) y = beta by LU, then v = H y (the
    minimum-norm solution of H^T v = beta; its residual has the a-priori bound lora_hidden_residual_bound).
    """
    if np.linalg.matrix_rank(ds.H) < ds.n:
        raise ValueError(f"hypothesis H = ReLU(W_1 Z + b_1) of full column rank n = {ds.n} violated")
    y = lu_solve(lu_factor(ds.H.T @ ds.H), ds.beta)
    return LoRAUpdate(ds.u.copy(), ds.H @ y, y)


def lora_hidden_residual_bound(ds: RankDataset, upd: LoRAUpdate, u: float) -> np.ndarray:
    """Per example, a bound on |(H^T v~)_i - beta_i| for the float v~ = fl(H fl((H^T H)^-1 beta)) [D].

    G~ = fl(H^T H) errs by gamma_r |H|^T|H|; the LU solve has backward error gamma_3n |L||U| (Higham Thm 9.4);
    v~ = fl(H y~) errs by gamma_n |H||y~|, seen through H^T.
    """
    H, y = ds.H, upd.y
    n, r = H.shape[1], H.shape[0]
    G = H.T @ H
    lu = lu_factor(G)
    L = np.tril(lu[0], -1) + np.eye(n)
    ay = np.abs(y)
    HtH = np.abs(H).T @ np.abs(H)
    return (
        gamma(3 * n, u) * ((np.abs(L) @ np.abs(np.triu(lu[0]))) @ ay)
        + gamma(r, u) * (HtH @ ay)
        + gamma(n, u) * (HtH @ ay)
    )


def with_w2_update(layer: Layer, delta) -> Layer:
    """The layer with W_2 replaced by W_2 + delta (everything else shared)."""
    m = layer.mlp
    return Layer(layer.heads, MLP(m.W1, m.b1, np.asarray(m.W2) + delta, m.b2), layer.hard, layer.causal)
