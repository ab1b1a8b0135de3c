"""Transformer layers in the papers' convention: tokens are columns, X in R^{d x m}.

Att(x, X) = sum_i W_o^i W_v^i X softmax((W_k^i X)^T W_q^i x)   (Wang et al. 2023, Def. 1; Hu et al. 2024 §1.2)
MLP(X)_{:,j} = X_{:,j} + W_2 ReLU(W_1 X_{:,j} + b_1) + b_2       (residual, no layer norm)
tau(X) = MLP(X + Att(X, X))

One array-API code path: every function takes arrays of numpy, torch or jax and works in their
namespace (array_api_compat.array_namespace). No 1/sqrt(d) scale: it is absorbed into W_k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device


def softmax_columns(S, xp=None):
    """Column-wise softmax (each column is one query, normalised over the keys, axis 0)."""
    xp = xp or array_namespace(S)
    Z = S - xp.max(S, axis=0, keepdims=True)
    E = xp.exp(Z)
    return E / xp.sum(E, axis=0, keepdims=True)


def hardmax_columns(S, xp=None):
    """Column-wise hardmax: uniform weight on the tied maxima of each column (Yun et al. 2020)."""
    xp = xp or array_namespace(S)
    top = xp.max(S, axis=0, keepdims=True)
    hit = xp.astype(S == top, S.dtype)
    return hit / xp.sum(hit, axis=0, keepdims=True)


@dataclass(frozen=True)
class Head:
    """One attention head; shapes W_q, W_k, W_v: s x d, W_o: d x s."""

    Wq: object
    Wk: object
    Wv: object
    Wo: object


def attention_weights(head: Head, Xq, Xk, *, hard: bool = False, causal_offset: int | None = None):
    """Column-stochastic weights A (keys x queries) of one head: A = softmax((W_k Xk)^T W_q Xq).

    causal_offset: if given, query j (0-based among Xq) may attend to keys 0 .. causal_offset + j.
    """
    xp = array_namespace(Xq, Xk)
    S = xp.matmul(xp.matmul(head.Wk, Xk).T, xp.matmul(head.Wq, Xq))
    if causal_offset is not None:
        nk, nq = S.shape
        allowed = np.arange(nk)[:, None] <= causal_offset + np.arange(nq)[None, :]
        dev = array_device(S)
        S = xp.where(xp.asarray(allowed, device=dev), S, xp.asarray(-xp.inf, dtype=S.dtype, device=dev))
    return hardmax_columns(S, xp) if hard else softmax_columns(S, xp)


def head_attention(head: Head, Xq, Xk, *, hard: bool = False, causal_offset: int | None = None):
    """W_o W_v Xk A: the output of one head for the queries Xq over the keys/values Xk."""
    xp = array_namespace(Xq, Xk)
    A = attention_weights(head, Xq, Xk, hard=hard, causal_offset=causal_offset)
    return xp.matmul(head.Wo, xp.matmul(xp.matmul(head.Wv, Xk), A))


def attention(heads, Xq, Xk, *, hard: bool = False, causal_offset: int | None = None):
    """Multi-head cross attention Att(Xq, Xk) = sum_i head_i(Xq, Xk) (no residual)."""
    if isinstance(heads, Head):
        heads = (heads,)
    out = None
    for h in heads:
        o = head_attention(h, Xq, Xk, hard=hard, causal_offset=causal_offset)
        out = o if out is None else out + o
    return out


@dataclass(frozen=True)
class MLP:
    """Residual ReLU MLP x -> x + W_2 ReLU(W_1 x + b_1) + b_2, applied token-wise (columns)."""

    W1: object
    b1: object
    W2: object
    b2: object

    def residual_part(self, X):
        xp = array_namespace(X)
        H = xp.matmul(self.W1, X) + self.b1[:, None]
        return xp.matmul(self.W2, xp.maximum(H, xp.zeros_like(H))) + self.b2[:, None]

    def __call__(self, X):
        return X + self.residual_part(X)


@dataclass(frozen=True)
class Layer:
    """tau(X) = MLP(X + Att(X, X)); a prompt P is prepended and the last m columns are read."""

    heads: tuple
    mlp: MLP
    hard: bool = False
    causal: bool = False

    def __call__(self, X):
        A = attention(self.heads, X, X, hard=self.hard, causal_offset=0 if self.causal else None)
        return self.mlp(X + A)


def prepend(P, X):
    """[P, X]: the soft prompt's columns first."""
    xp = array_namespace(P, X)
    return xp.concat([P, X], axis=1)


def prompt_tuned(layers, P, X):
    """X -> tau([P, X])_{:, m_p:}: run the frozen stack on the prompted input, read the input columns."""
    Z = prepend(P, X)
    for layer in layers if isinstance(layers, (list, tuple)) else (layers,):
        Z = layer(Z)
    return Z[:, P.shape[1] :]


def prompt_mixture(head: Head, x, P, X):
    """Wang et al. 2023 §2.2 decomposition for one head and one query x (a column, d x 1).

    Returns (lam, att_P, att_X) with Att(x, [P, X]) = lam * att_P + (1 - lam) * att_X and
    lam = Z_P / (Z_P + Z_X), Z_S = sum_{s in S} exp(s^T W_k^T W_q x). Computed in log-space so
    that lam is accurate even when one mass underflows.
    """
    xp = array_namespace(x, P, X)
    g = xp.matmul(head.Wq, x)

    def logmass(S):
        s = xp.matmul(xp.matmul(head.Wk, S).T, g)[:, 0]
        m = xp.max(s)
        return m + xp.log(xp.sum(xp.exp(s - m)))

    lp, lx = logmass(P), logmass(X)
    lam = 1.0 / (1.0 + xp.exp(lx - lp))
    return lam, head_attention(head, x, P), head_attention(head, x, X)


def random_head(rng: np.random.Generator, d: int, s: int, scale: float = 1.0) -> Head:
    """A head with Gaussian weights of standard deviation scale / sqrt(d) (numpy float64)."""
    sd = scale / np.sqrt(d)
    return Head(*(rng.normal(0.0, sd, size=sh) for sh in ((s, d), (s, d), (s, d), (d, s))))


def head_to(backend, head: Head) -> Head:
    """The same head with its weights moved to ``backend`` (dtype and device)."""
    return Head(*(backend.asarray(w) for w in (head.Wq, head.Wk, head.Wv, head.Wo)))


def mlp_to(backend, mlp: MLP) -> MLP:
    return MLP(*(backend.asarray(w) for w in (mlp.W1, mlp.b1, mlp.W2, mlp.b2)))


def spectral_norm(W) -> float:
    return float(np.linalg.norm(np.asarray(W, dtype=np.float64), 2))


def random_contractive_mlp(rng: np.random.Generator, d: int, r: int, kappa: float, bias_scale: float = 1.0) -> MLP:
    """A residual MLP whose residual branch has Lipschitz constant <= ||W_1|| ||W_2|| = kappa exactly.

    With kappa < 1 the MLP is a bijection of R^d (i-ResNet lemma, Behrmann et al. 2019).
    """
    if not 0.0 <= kappa:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    W1 = rng.normal(size=(r, d))
    W2 = rng.normal(size=(d, r))
    c = np.sqrt(kappa / (spectral_norm(W1) * spectral_norm(W2))) if kappa > 0 else 0.0
    return MLP(W1 * c, rng.normal(scale=bias_scale, size=r), W2 * c, rng.normal(scale=bias_scale, size=d))


def mp_matrix(ctx, a):
    """A float64 array as an mpmath matrix in ``ctx`` (exact conversion); a vector becomes a column."""
    a = np.asarray(a, dtype=np.float64)
    return ctx.matrix(a.reshape(a.shape[0], -1).tolist())


def head_attention_mp(ctx, head: Head, x, S):
    """One head, one query column x (d,), keys/values S (d x n), in mpmath context ``ctx``.

    The same mathematics as ``head_attention``, evaluated at ``ctx.dps`` digits from the float64 weights,
    for re-checking a suspect float failure (the precision ladder).
    """
    Wq, Wk, Wv, Wo = (mp_matrix(ctx, w) for w in (head.Wq, head.Wk, head.Wv, head.Wo))
    Sm = mp_matrix(ctx, S)
    xm = mp_matrix(ctx, np.asarray(x, dtype=np.float64).reshape(-1, 1))
    g = Wq * xm
    s = (Wk * Sm).T * g
    m = max(s[i, 0] for i in range(s.rows))
    w = [ctx.exp(s[i, 0] - m) for i in range(s.rows)]
    z = ctx.fsum(w)
    values = Wo * (Wv * Sm)
    return [ctx.fsum(values[r, i] * w[i] for i in range(len(w))) / z for r in range(values.rows)]


def prompt_mixture_mp(ctx, head: Head, x, P, X):
    """``prompt_mixture`` in mpmath: (lam, Att(x, P), Att(x, X)) at ``ctx.dps`` digits."""
    Wq, Wk = mp_matrix(ctx, head.Wq), mp_matrix(ctx, head.Wk)
    g = Wq * mp_matrix(ctx, np.asarray(x, dtype=np.float64).reshape(-1, 1))

    def logmass(S):
        s = (Wk * mp_matrix(ctx, S)).T * g
        vals = [s[i, 0] for i in range(s.rows)]
        m = max(vals)
        return m + ctx.log(ctx.fsum(ctx.exp(v - m) for v in vals))

    lam = 1 / (1 + ctx.exp(logmass(X) - logmass(P)))
    return lam, head_attention_mp(ctx, head, x, P), head_attention_mp(ctx, head, x, X)


# --------------------------------------------------------------------------------------------
# rounding floors (constructions.precision: u, gamma_n; Higham §3.1-3.5), from the inputs' magnitudes
# --------------------------------------------------------------------------------------------


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def attention_rounding_floor(head: Head, Xq, Xk, u: float, tiny: float = 2.0**-1022) -> np.ndarray:
    """Entry-wise bound (d x n_q) on |fl(head_attention(head, Xq, Xk)) - exact| at unit roundoff u.

    Operation by operation, in head_attention's order (Higham §3.1-3.5; gamma_k = k u / (1 - k u)):
      logits S = (W_k Xk)^T (W_q Xq), inner sizes d, d, s: |fl(S) - S| <= e_S = gamma_{2d+s} (|W_k||Xk|)^T (|W_q||Xq|);
      weights A = softmax(S) per query column: relative error <= rho_l = u (|S_l - max S| + max spread + 2)
        + gamma_{n-1} + expm1(2 max e_S) (precision.softmax_relative_floor, plus the logits' own error), to second
        order (rho (1 + 2 rho));
      W_o ((W_v Xk) A): the d-, n- and s-term products round with gamma_{d+n+s} on the magnitudes, and the weights'
        error moves the output by rho-weighted value magnitudes:
      |err|_{r,q} <= sum_l (rho_lq + gamma_{d+n+s} (1 + rho_lq)) A_lq (|W_o| |W_v| |Xk|)_{r,l}.
    A weight that underflows to 0 is < ``tiny`` (the format's smallest normal; 0 for mpmath's exponent range),
    an absolute term the relative rho cannot cover. Magnitudes are inputs and intermediates (fl(S), fl(A)),
    never the output under test.
    """
    from constructions.precision import gamma, softmax_relative_floor

    Wq, Wk, Wv, Wo, Xq, Xk = (_f64(a) for a in (head.Wq, head.Wk, head.Wv, head.Wo, Xq, Xk))
    d, s, n = Xk.shape[0], Wq.shape[0], Xk.shape[1]
    e_S = gamma(2 * d + s, u) * ((np.abs(Wk) @ np.abs(Xk)).T @ (np.abs(Wq) @ np.abs(Xq)))
    S = (Wk @ Xk).T @ (Wq @ Xq)
    rho = softmax_relative_floor(S, u, axis=0) + np.expm1(2.0 * np.max(e_S, axis=0, keepdims=True))
    rho = rho * (1.0 + 2.0 * rho)
    E = np.exp(S - np.max(S, axis=0, keepdims=True))
    A = E / np.sum(E, axis=0, keepdims=True)
    VM = np.abs(Wo) @ (np.abs(Wv) @ np.abs(Xk))  # d x n value magnitudes
    g = gamma(d + n + s, u)
    return VM @ ((rho + g * (1.0 + rho)) * A) + np.sum(VM, axis=1, keepdims=True) * tiny


def weighted_value_magnitude(head: Head, Xq, Xk) -> np.ndarray:
    """(|W_o| |W_v| |Xk|) softmax(S): the attention-weighted value magnitudes (d x n_q), an intermediate that
    bounds |head_attention| entry-wise."""
    Wq, Wk, Wv, Wo, Xq, Xk = (_f64(a) for a in (head.Wq, head.Wk, head.Wv, head.Wo, Xq, Xk))
    S = (Wk @ Xk).T @ (Wq @ Xq)
    E = np.exp(S - np.max(S, axis=0, keepdims=True))
    return (np.abs(Wo) @ (np.abs(Wv) @ np.abs(Xk))) @ (E / np.sum(E, axis=0, keepdims=True))


def prompt_mixture_floor(head: Head, x, P, X, u: float, tiny: float = 2.0**-1022) -> np.ndarray:
    """Bound (d,) on |fl(lam att_P + (1 - lam) att_X) - exact| for prompt_mixture's float evaluation at u.

    att_P, att_X: attention_rounding_floor each; lam = 1/(1 + exp(l_X - l_P)) with l_S = m + log sum exp(s - m):
    an error e in l_X - l_P moves lam by <= lam (1 - lam) expm1(e) (d lam / d diff = -lam (1 - lam)), e <= the two
    logits' errors + the log-sum-exp roundings gamma_{n+3} (|l_P| + |l_X| + 2); then 1/(1 + exp) rounds 3 times and
    the combination 3 more: |err| <= |d lam| |att_P - att_X| + max(floor_P, floor_X) + 6 u (|att_P| + |att_X|),
    with |att_P - att_X| <= wP + wX and |att_S| <= wS, the attention-weighted value magnitudes.
    """
    from constructions.precision import gamma

    x, P, X = _f64(x).reshape(-1, 1), _f64(P), _f64(X)
    fP = attention_rounding_floor(head, x, P, u, tiny)[:, 0]
    fX = attention_rounding_floor(head, x, X, u, tiny)[:, 0]
    Wq, Wk, Wv, Wo = (_f64(w) for w in (head.Wq, head.Wk, head.Wv, head.Wo))
    d, s = x.shape[0], Wq.shape[0]
    g = Wq @ x

    def logmass(S):
        a = ((Wk @ S).T @ g)[:, 0]
        mx = float(np.max(a))
        err = float(np.max(gamma(2 * d + s, u) * ((np.abs(Wk) @ np.abs(S)).T @ (np.abs(Wq) @ np.abs(x)))))
        return mx + float(np.log(np.sum(np.exp(a - mx)))), err, S.shape[1]

    lp, ep, n_p = logmass(P)
    lx, ex, n_x = logmass(X)
    e = ep + ex + gamma(max(n_p, n_x) + 3, u) * (abs(lp) + abs(lx) + 2.0)
    diff = lx - lp
    lam = 1.0 / (1.0 + np.exp(min(diff, 700.0)))
    dlam = lam * (1.0 - lam) * np.expm1(e) + 3.0 * u + tiny
    w = weighted_value_magnitude(head, x, P)[:, 0] + weighted_value_magnitude(head, x, X)[:, 0]
    return dlam * w + np.maximum(fP, fX) + 6.0 * u * w
