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

from constructions.precision import UNIT_ROUNDOFF


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


def _below1(x):
    """x where x < 1, else 0: a safe argument for log1p(-x) and 1 / (1 - x); the caller masks those entries."""
    return np.where(np.asarray(x) < 1.0, x, 0.0)


def _weight_errors(eS, spread, u: float):
    """Per-weight and per-column relative errors of fl(softmax) at u (see attention_rounding_floor)."""
    from constructions.precision import gamma

    n = spread.shape[0]
    alpha = np.expm1(eS + u * spread * (1.0 + u) + np.log1p(2.0 * u) + np.log1p(u))
    tau = np.expm1(u * spread * (1.0 + u) + np.log1p(2.0 * u))
    return alpha, tau, gamma(max(n - 1, 1), u)


def attention_rounding_floor(head: Head, Xq, Xk, u: float, tiny: float = 2.0**-1022) -> np.ndarray:
    """Entry-wise bound (d x n_q) on |fl(head_attention(head, Xq, Xk)) - exact| at unit roundoff u (see
    _attention_floor_and_magnitude)."""
    return _attention_floor_and_magnitude(head, Xq, Xk, u, tiny)[0]


def _attention_floor_and_magnitude(head: Head, Xq, Xk, u: float, tiny: float = 2.0**-1022):
    """(floor, magnitude): floor bounds |fl(head_attention) - exact| entry-wise, magnitude bounds |exact|.

    Operation by operation, in head_attention's order (Higham §3.1-3.5; gamma_k = k u / (1 - k u)), with the
    magnitudes of computed intermediates (cancellation kept) where they are available, each widened so that it
    bounds the backend's intermediate too (the floor evaluates them in float64; a backend at u differs from them
    by gamma_k(u) + gamma_k(2^-53) times the input magnitudes):
      K = W_k Xk, Q = W_q Xq (inner d), S = K^T Q (inner s):
        e_S = gamma_s |K|^T |Q| + gamma_d (|W_k||Xk|)^T |Q| + |K|^T gamma_d (|W_q||Xq|);
      A = softmax(S) per query column, with S's error e_S: A_hat_l = A_l (1 + alpha_l) (1 + beta), where
        alpha_l = exp(e_S,l + u spread_l (1 + u)) (1 + 2u)(1 + u) - 1 per weight (the shift, exp to 1 ulp, the
          division) and beta = exp(max_l e_S,l) / ((1 - tau_bar)(1 - gamma_{n-1})) - 1 common to the column
          (the normaliser's share of the logits' error, sum_l A_l tau_l of the numerators' rounding, the n-term sum);
      out = W_o ((W_v Xk) A), V = W_v Xk (inner d), Y = V A (inner n), out = W_o Y (inner s):
        |err| <= gamma_d |W_o||W_v||Xk| A_hat + |W_o V| (A alpha) (1 + beta) + beta |W_o V A|
                 + gamma_n |W_o||V| A_hat + gamma_s |W_o||Y|,
      where the common factor beta moves the output by beta |out| (cancellation kept) instead of beta times the
      value magnitudes. A weight that underflows to 0 is < ``tiny`` (the format's smallest normal; 0 for mpmath's
      exponent range), an absolute term the relative bounds cannot cover. The result is widened by
      1 + 1e-9 for the float64 evaluation of the floor itself (it needs 2 gamma_{2(n+d+s)+30}(2^-53) < 1e-9:
      n + d + s < 10^6). Magnitudes are inputs and
      intermediates (fl(K), fl(Q), fl(S), fl(A), fl(V), fl(W_o V), fl(W_o V A)), never the output under test.
    """
    Wv, Wo, Xk64 = _f64(head.Wv), _f64(head.Wo), _f64(Xk)
    S, eS, e64, eSx = _logit_errors(head, Xq, Xk, u)
    sb = _softmax_bounds(S, eS, e64, eSx, u, tiny)
    with np.errstate(invalid="ignore", over="ignore"):
        err, WVA = _attention_error_terms(Wo, Wv, Xk64, sb.A, sb.Aup, sb.alpha, sb.beta, sb.a64, sb.b64, u, tiny)
    return np.where(sb.ok, err * _FLOOR_WIDEN, np.inf), np.where(sb.ok, WVA * _FLOOR_WIDEN, np.inf)


_U64 = UNIT_ROUNDOFF["float64"]  # the float64 intermediates the floors evaluate; a backend at u is widened to them
_FLOOR_WIDEN = 1.0 + 1e-9  # the floors' own float64 evaluation: 2 gamma_{2(n+d+s)+30}(2^-53) < 1e-9 for n+d+s < 10^6


def _logit_errors(head: Head, Xq, Xk, u: float):
    """(fl(S), e_S at u, e_S at 2^-53, e_S at max(u, 2^-53)): the logits S = (W_k Xk)^T (W_q Xq) in float64 and
    bounds on a backend's logit error, gamma_s |K|^T |Q| + gamma_d (|W_k||Xk|)^T |Q| + |K|^T gamma_d (|W_q||Xq|),
    with |K| = |fl(K)| + (gamma_d(u) + gamma_d(2^-53)) |W_k||Xk| (and Q alike) bounding the backend's and the exact."""
    from constructions.precision import gamma

    Wq, Wk, Xq, Xk = (_f64(a) for a in (head.Wq, head.Wk, Xq, Xk))
    d, s = Xk.shape[0], Wq.shape[0]
    mK, mQ = np.abs(Wk) @ np.abs(Xk), np.abs(Wq) @ np.abs(Xq)
    K, Q = Wk @ Xk, Wq @ Xq
    wide = gamma(d, u) + gamma(d, _U64)
    aK, aQ = np.abs(K) + wide * mK, np.abs(Q) + wide * mQ

    def e_at(uk):
        g_d, g_s = gamma(d, uk), gamma(s, uk)
        return g_s * (aK.T @ aQ) + (g_d * mK).T @ aQ + aK.T @ (g_d * mQ)

    return K.T @ Q, e_at(u), e_at(_U64), e_at(max(u, _U64))


@dataclass(frozen=True)
class SoftmaxBounds:
    """Bounds on the weights of one softmax per column (see attention_rounding_floor): A the float64 weights,
    Aup >= the exact ones, alpha / beta the backend's per-weight / per-column relative errors at u, a64 / b64 the
    same at 2^-53 (through which Aup bounds the exact weights), dead the keys left to the tiny term, ok the columns
    with a finite bound."""

    A: np.ndarray
    Aup: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    a64: np.ndarray
    b64: np.ndarray
    dead: np.ndarray
    ok: np.ndarray


def _softmax_bounds(S, eS, e64, eSx, u: float, tiny: float) -> SoftmaxBounds:
    top = np.max(S, axis=0, keepdims=True)
    spread = np.abs(S - top)
    ex_top = np.max(eSx, axis=0, keepdims=True)
    spread_up = spread + eSx + ex_top  # the backend's spread, too
    E = np.exp(S - top)
    A = E / np.sum(E, axis=0, keepdims=True)
    # a weight that underflows to 0 in float64 with a logit error far below its 745-wide margin is < tiny, exact and
    # computed: the tiny term covers it, and it moves the normaliser by < n e^-685, so neither its relative errors
    # (which may exceed 1 at a huge spread) nor its logit's error enter the relative bounds
    dead = (A == 0.0) & (tiny > 0) & (eSx + ex_top + _U64 * spread < 30.0)

    def rel(uk, e):
        alpha, tau, g1 = _weight_errors(e, spread_up, uk)
        return alpha, tau, g1, np.max(np.where(dead, 0.0, e), axis=0, keepdims=True)

    a64, t64, g64, m64 = rel(_U64, e64)  # g64 = gamma_{n-1}(2^-53) < 1 for any n an array can hold
    alpha, tau, g1, mS = rel(u, eS)
    a64, t64 = np.where(dead, 0.0, a64), np.where(dead, 0.0, t64)
    # a relative error of 1 or more (huge logits, u near 1/n) leaves nothing to divide by: that column is unbounded;
    # t64 <= a64 entry-wise, so a64 < 1 makes every division below safe
    ok = (g1 < 1.0) & np.all(a64 < 1.0, axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t64_max = np.max(_below1(t64), axis=0, keepdims=True)
        b64 = np.expm1(m64 - np.log1p(-t64_max) - np.log1p(-g64))
        ok = ok & (b64 < 1.0)
        Aup = np.where(ok, A / ((1.0 - _below1(a64)) * (1.0 - _below1(b64))), 0.0)  # >= the exact softmax(S)
        # dead keys add < n 2^-1074 of the normaliser (its top term is 1), far below the final widening
        tau_bar = np.minimum(np.max(tau, axis=0, keepdims=True), np.sum(Aup * tau, axis=0, keepdims=True))
        ok = ok & (tau_bar < 1.0)
        beta = np.where(ok, np.expm1(mS - np.log1p(-_below1(tau_bar)) - np.log1p(-_below1(g1))), 0.0)
    return SoftmaxBounds(A, Aup, alpha, beta, a64, b64, dead, ok)


def _attention_error_terms(Wo, Wv, Xk, A, Aup, alpha, beta, a64, b64, u, tiny):
    """The output stage of attention_rounding_floor: (error bound, bound on |W_o V A|) from the weights' bounds."""
    from constructions.precision import gamma

    d, s, n = Xk.shape[0], Wv.shape[0], Xk.shape[1]
    gd, gs, gn = gamma(d, u), gamma(s, u), gamma(n, u)
    hd, hs, hn = gamma(d, _U64), gamma(s, _U64), gamma(n, _U64)
    aWo, mV, V = np.abs(Wo), np.abs(Wv) @ np.abs(Xk), Wv @ Xk
    aV = np.abs(V) + (gd + hd) * mV
    Ahat = Aup * (1.0 + alpha) * (1.0 + beta)  # >= the backend's weights
    dA, dA64 = alpha + beta + alpha * beta, a64 + b64 + a64 * b64
    VM = aWo @ mV
    M = Wo @ V
    slack = hs * (aWo @ np.abs(V)) + hd * VM  # |W_o V| - |fl(W_o V)| <= slack for the exact V
    WoV = np.abs(M) + slack  # >= |W_o V|
    WVA = np.abs(M @ A) + hn * (np.abs(M) @ A) + slack @ Aup + WoV @ (Aup * dA64)
    Y = np.abs(V @ A) + (gn + hn) * (aV @ Ahat) + (gd + hd) * (mV @ Ahat) + aV @ (Aup * (dA + dA64))
    err = (gd * (VM @ Ahat) + (WoV @ (Aup * alpha)) * (1.0 + beta) + beta * WVA + gn * (aWo @ (aV @ Ahat))
           + gs * (aWo @ Y) + np.sum(VM, axis=1, keepdims=True) * tiny)
    return err, WVA


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
    with |att_P - att_X| <= mP + mX and |fl(att_S)| <= mS + floor_S, mS the bound on |att_S| that
    _attention_floor_and_magnitude derives from fl(W_o V) fl(A) (cancellation kept).
    """
    from constructions.precision import gamma

    x, P, X = _f64(x).reshape(-1, 1), _f64(P), _f64(X)
    fP, mP = (a[:, 0] for a in _attention_floor_and_magnitude(head, x, P, u, tiny))
    fX, mX = (a[:, 0] for a in _attention_floor_and_magnitude(head, x, X, u, tiny))
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
    return dlam * (mP + mX) + np.maximum(fP, fX) + 6.0 * u * (mP + mX + fP + fX)
