"""One witness example alone IS memorized: k identical prompt tokens (wang2023.md §2.2 'Non-triviality', §3.3 [D]).

With M = W_o W_v invertible, g = W_k^T W_q x, c = Att(x, X) and a prompt of k copies of p:

    Att(x, [P, X]) = lam M p + (1 - lam) c,   lam = k e^{g.p} / (k e^{g.p} + Z_X),

so p = M^-1 (c + s (t - c)) with lam = 1/s, i.e. log k + g.p + log(s - 1) = log Z_X, fits Att = t exactly.
The prompt mass bound Z_P <= m_p exp(g^T M^-1 Att(x, P)) (entropy <= log m_p) lower-bounds k for any memorizer.

``memorizer_attention_bound`` is the construction's a-priori accuracy: a bound on ||Att(x, [P~, X]) - t|| in exact
arithmetic at the stored float prompt P~, derived operation by operation from the inputs (LU backward error,
Brent's tolerance, the rounding of each float step); it never looks at the residual it bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import lu_factor, lu_solve
from scipy.optimize import brentq

from constructions.precision import gamma
from constructions.single_layer import (
    EXP_ULPS,
    attend,
    attention_rounding,
    logsumexp,
    require_invertible_values,
    score_vector,
    score_vector_rounding,
)
from constructions.transformer import Head, Layer, mp_matrix

U64 = 2.0**-53
ROOT_XTOL = 4 * U64  # brentq's absolute tolerance on u = log(s - 1)
ROOT_RTOL = 4 * float(np.finfo(np.float64).eps)  # brentq's smallest admissible relative tolerance
U_MAX = 709.0  # the largest bracket end: s = 1 + e^u stays finite in float64 (e^709.79 overflows)


@dataclass(frozen=True)
class SingleMemorizer:
    """P = k copies of the token p = q0 + s q1 (q0 = M^-1 c, q1 = M^-1 (t - c)); Att(x, [P, X]) = t.

    s: the solved ray parameter (a = Att(x, P) = c + s (t - c), lambda = 1/s), u = log(s - 1) as Brent returned it;
    k_lower: the mass bound's lower limit on the prompt length of ANY exact memorizer (min over s > 1 of
    Z_X e^-b(s) / (s - 1)); g, c, q0, q1, b0 = g.q0, sigma = g.q1, log_zx = log Z_X: the float intermediates.
    With ``ctx`` (the mpmath rung) p_mp and s_mp hold the same construction at ctx's digits.
    """

    k: int
    p: np.ndarray
    s: float
    k_lower: float
    sigma: float
    u: float = 0.0
    b0: float = 0.0
    log_zx: float = 0.0
    g: np.ndarray | None = None
    c: np.ndarray | None = None
    q0: np.ndarray | None = None
    q1: np.ndarray | None = None
    lu_abs: np.ndarray | None = None  # |L||U| of M's LU factors (backward error of the solves)
    p_mp: object = None
    s_mp: object = None

    def prompt(self) -> np.ndarray:
        return np.repeat(self.p[:, None], self.k, axis=1)


def memorizer_length(log_zx: float, b0: float, sigma: float, max_k: float) -> tuple[int, float]:
    """(k, k_lower): the number of identical tokens, one more than the mass bound's minimum [D].

    sigma < 0: the ray point s* = 1 + 1/|sigma| maximises b(s) + log(s - 1), so k >= Z_X e^-b(s*) / (s* - 1) is
    necessary and k = ceil(that) + 1 suffices. sigma >= 0: one token suffices (s -> inf adds mass), and the
    infimum over s > 1 of Z_X e^-b(s) / (s - 1) is 0 (b(s) = b0 + s sigma does not decrease).
    """
    if sigma >= 0:
        return 1, 0.0
    s_star = 1.0 + 1.0 / abs(sigma)
    log_k_lower = log_zx - (b0 + s_star * sigma) - math.log(s_star - 1.0)
    k_lower = math.exp(min(log_k_lower, 700.0))
    if log_k_lower > math.log(max_k):
        raise ValueError(f"single-example memorizer needs k >= {k_lower:.3g} > max_k = {max_k:.3g} tokens")
    return max(1, math.ceil(math.exp(log_k_lower))) + 1, k_lower


def memorizer_root(k: int, log_zx: float, b0: float, sigma: float) -> float:
    """u = log(s - 1) solving F(u) = log k + b0 + (1 + e^u) sigma + u - log Z_X = 0 by Brent's method.

    F increases on the bracket (F' = 1 + e^u sigma > 0 below u* = log(1/|sigma|)); when k is too small for a root
    (F(u*) < 0) the best reachable point u* is returned and the prompt cannot fit: the residual shows it.
    """

    def b(v):  # b0 + s sigma at s = 1 + e^v: finite for every v <= U_MAX, the bracket's largest end
        return b0 + (1.0 + math.exp(v)) * sigma

    def F(v):
        return math.log(k) + b(v) + v - log_zx

    if sigma < 0:
        u_hi = -math.log(abs(sigma))
        if F(u_hi) < 0:
            return u_hi
    else:
        u_hi = 1.0
        while F(u_hi) < 0:  # F(u_hi) = 0: brentq returns the bracket end, the root
            if u_hi >= U_MAX:
                raise ValueError(f"single-example memorizer: s = 1 + e^u diverges (root u > {U_MAX:g}: s overflows)")
            u_hi = min(2 * u_hi + 1, U_MAX)
    bmax = max(b0 + sigma, b(u_hi))
    u_lo = min(u_hi - 1.0, log_zx - math.log(k) - bmax - 1.0)
    return brentq(F, u_lo, u_hi, xtol=ROOT_XTOL, rtol=ROOT_RTOL, maxiter=400)


def single_example_memorizer(head: Head, x, X, t, max_k: float = 1e15, ctx=None) -> SingleMemorizer:
    """k identical tokens p = M^-1 (c + s (t - c)) with Att(x, [P, X]) = t (wang2023.md §3.3) [D].

    Solves log k + b(s) + log(s - 1) = log Z_X for s > 1, b(s) = g^T M^-1 (c + s (t - c)) = b0 + s sigma. With
    ``ctx`` (an mpmath context) the same k is kept and s, p are recomputed at ctx's digits (Newton from the float
    root, M^-1 by an LU solve at those digits) into p_mp, s_mp.
    """
    M = require_invertible_values(head)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    X = np.asarray(X, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    g = score_vector(head, x)
    c = attend(head, x, X)
    if np.array_equal(t, c):
        raise ValueError("target equals the unprompted output: the empty prompt already memorizes it")
    lu = lu_factor(M)
    q0, q1 = lu_solve(lu, c), lu_solve(lu, t - c)
    log_zx = logsumexp(X.T @ g)
    b0, sigma = float(g @ q0), float(g @ q1)
    k, k_lower = memorizer_length(log_zx, b0, sigma, max_k)
    u = memorizer_root(k, log_zx, b0, sigma)
    s = 1.0 + math.exp(u)
    p = q0 + s * q1
    L = np.tril(lu[0], -1) + np.eye(M.shape[0])
    lu_abs = np.abs(L) @ np.abs(np.triu(lu[0]))
    p_mp = s_mp = None
    if ctx is not None:
        p_mp, s_mp = _mp_memorizer(ctx, head, x, X, t, k, u)
    return SingleMemorizer(k, p, s, k_lower, sigma, u, b0, log_zx, g, c, q0, q1, lu_abs, p_mp, s_mp)


def _mp_memorizer(ctx, head: Head, x, X, t, k: int, u0: float):
    """(p, s) at ctx's digits: the same equations as the float construction, Newton on u from the float root."""
    from constructions.transformer import head_attention_mp

    Wq, Wk, Wv, Wo = (mp_matrix(ctx, w) for w in (head.Wq, head.Wk, head.Wv, head.Wo))
    M = Wo * Wv
    g = Wk.T * (Wq * mp_matrix(ctx, x))
    c = ctx.matrix(head_attention_mp(ctx, head, x, X))
    tm = mp_matrix(ctx, t)
    q0, q1 = ctx.lu_solve(M, c), ctx.lu_solve(M, tm - c)
    b0, sigma = (g.T * q0)[0], (g.T * q1)[0]
    keys = mp_matrix(ctx, X).T * g
    vals = [keys[i] for i in range(keys.rows)]
    m = max(vals)
    log_zx = m + ctx.log(ctx.fsum(ctx.exp(v - m) for v in vals))

    u = memorizer_root_mp(ctx, k, log_zx, b0, sigma, u0)
    s = 1 + ctx.exp(u)
    return q0 + s * q1, s


def memorizer_root_mp(ctx, k: int, log_zx, b0, sigma, u0: float):
    """memorizer_root at ctx's digits: Newton on F(u) = log k + b0 + (1 + e^u) sigma + u - log Z_X from the float
    root u0, stopping once a step is <= 2^(8 - prec) max(1, |u|); the best reachable u* = log(1/|sigma|) when
    k is too small for a root (as the float construction does)."""

    def F(v):
        return ctx.log(k) + b0 + (1 + ctx.exp(v)) * sigma + v - log_zx

    if sigma < 0 and F(-ctx.log(-sigma)) < 0:
        return -ctx.log(-sigma)
    u = ctx.mpf(u0)
    tol = mp_root_tolerance(ctx, u0)
    for _ in range(60):
        step = F(u) / (1 + ctx.exp(u) * sigma)
        u -= step
        if abs(step) <= tol:
            return u
    raise ValueError("single-example memorizer: Newton on u did not converge at mpmath digits")


def mp_root_tolerance(ctx, u0: float) -> float:
    """The mpmath root's stopping tolerance on u (an a-priori bound on its error after the last Newton step)."""
    return float(ctx.mpf(2) ** (8 - ctx.prec)) * max(1.0, abs(u0))


def memorizer_attention_bound(
    head: Head, x, X, t, sm: SingleMemorizer, u: float = U64, xtol: float = ROOT_XTOL, rtol: float = ROOT_RTOL
) -> float:
    """A bound on ||Att(x, [P~, X]) - t||_2 in exact arithmetic at the stored float prompt P~ = k copies of p~ [D].

    Att - t = lam (M p~ - b) + (lam s - 1)(t - c), b = c + s (t - c), lam <= 1, with
    * ||M p~ - b|| <= (s - 1)||E_c|| + ||r0|| + s (u ||t - c~|| + ||r1||) + || |M| delta ||: E_c bounds |c~ - c|
      (attention_rounding), r0, r1 the LU solves' residuals (|r| <= gamma_3d |L||U||q|, Higham Thm 9.4),
      delta = gamma_2 (|q0| + s |q1|) the rounding of p~ = q0 + s q1;
    * s = 1 + e^u + e_s (|e_s| <= u s + EXP_ULPS u e^u) and lam = 1 / (1 + e^{u - Delta}) with
      Delta = log k + g.p~ + u - log Z_X, so |lam s - 1| <= e^|Delta| expm1(|Delta|) e^u / (1 + e^u) + |e_s|;
      |Delta| collects Brent's bracket (xtol + rtol |u|, twice, times F'), F's own rounding, the rounding of g,
      of b0 = g.q0, sigma = g.q1 and s, and of log Z_X (1-Lipschitz in the logits).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    X = np.asarray(X, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    M = np.abs(np.asarray(head.Wo, dtype=np.float64) @ np.asarray(head.Wv, dtype=np.float64))
    d, n = X.shape
    s, k, uu = sm.s, sm.k, sm.u
    g, c, q0, q1 = sm.g, sm.c, sm.q0, sm.q1
    ag, aq0, aq1 = np.abs(g), np.abs(q0), np.abs(q1)
    # the unprompted attention and the solves
    _, Ec = attention_rounding(Layer((head,), None), x, X, u)
    g3 = gamma(3 * d, u)
    r0 = g3 * np.linalg.norm(sm.lu_abs @ aq0)
    r1 = g3 * np.linalg.norm(sm.lu_abs @ aq1)
    delta = gamma(2, u) * (aq0 + s * aq1)
    Mp_b = (s - 1.0) * np.linalg.norm(Ec) + r0 + s * (u * np.linalg.norm(t - c) + r1) + np.linalg.norm(M @ delta)
    # Delta: g's rounding, then the pieces of log k + g.p~ + log(s - 1) - log Z_X
    Eg = score_vector_rounding(head, x, u)
    ex = math.exp(uu)
    e_s = u * s + EXP_ULPS * u * ex  # |fl(1 + exp(u)) - (1 + e^u)|
    gp = (
        Eg @ (aq0 + s * aq1)
        + gamma(d, u) * (ag @ aq0)
        + e_s * abs(g @ q1)
        + (1.0 + ex) * gamma(d, u) * (ag @ aq1)
        + (ag + Eg) @ delta
    )
    v = X.T @ g
    Ev = gamma(d, u) * (np.abs(X).T @ ag) + np.abs(X).T @ Eg
    lse = (
        float(Ev.max())
        + u * float(np.abs(v - v.max()).max())
        + EXP_ULPS * u
        + gamma(max(n - 1, 1), u)
        + u * abs(sm.log_zx - float(v.max()))
        + u * abs(sm.log_zx)
    )
    terms = abs(math.log(k)) + abs(sm.b0) + (1.0 + ex) * abs(sm.sigma) + abs(uu) + abs(sm.log_zx)
    rho_F = gamma(4, u) * terms + (EXP_ULPS + 2) * u * (abs(math.log(k)) + (1.0 + ex) * abs(sm.sigma))
    tol = xtol + rtol * abs(uu)
    slope = 1.0 + math.exp(uu + 2 * tol) * abs(sm.sigma)
    Delta = min(rho_F + 2.0 * tol * slope + gp + lse, 700.0)
    # lam s - 1 = (e^u - e^{u - Delta} + e_s) / (1 + e^{u - Delta}) with s = 1 + e^u + e_s
    lam_s = math.exp(Delta) * ex / (1.0 + ex) * math.expm1(Delta) + e_s
    return float(Mp_b + lam_s * (np.linalg.norm(t - c) + np.linalg.norm(Ec)))


def mp_memorizer_output(ctx, layer: Layer, sm: SingleMemorizer, X):
    """tau([P, X])_last at ctx's digits for P = k copies of the mpmath token sm.p_mp: plain softmax attention
    (the k equal prompt keys enter with multiplicity k), then the residual MLP."""
    from constructions.residual_mlp import mp_mlp

    head = layer.heads[0]
    Wq, Wk, Wv, Wo = (mp_matrix(ctx, w) for w in (head.Wq, head.Wk, head.Wv, head.Wo))
    Xm = mp_matrix(ctx, X)
    x = Xm[:, Xm.cols - 1]
    q = Wq * x
    keys = [sm.p_mp] + [Xm[:, j] for j in range(Xm.cols)]
    mult = [sm.k] + [1] * Xm.cols
    sc = [((Wk * z).T * q)[0] for z in keys]
    m = max(sc)
    w = [mu * ctx.exp(v - m) for mu, v in zip(mult, sc, strict=True)]
    Z = ctx.fsum(w)
    mix = ctx.zeros(Xm.rows, 1)
    for wi, z in zip(w, keys, strict=True):
        mix += (wi / Z) * z
    return mp_mlp(ctx, layer.mlp, x + Wo * (Wv * mix))


# ---------------------------------------------------------------------------------------------
# the prompt mass bound


def prompt_mass_gap(head: Head, x, P) -> tuple[float, float]:
    """(log Z_P - g^T M^-1 Att(x, P), log m_p): the mass bound says the first is <= the second [D].

    Z_P = sum_j exp(p_j^T g); g^T M^-1 Att(x, P) = sum_j w_j p_j^T g, and logsumexp(s) - <w, s> = H(w) <= log m_p.
    """
    M = require_invertible_values(head)
    P = np.asarray(P, dtype=np.float64)
    g = score_vector(head, x)
    a = attend(head, x, P)
    return logsumexp(P.T @ g) - float(g @ lu_solve(lu_factor(M), a)), math.log(P.shape[1])


def logsumexp_rounding(v, Ev, u: float) -> float:
    """A bound on |fl(logsumexp(v~)) - logsumexp(v)| given |v~ - v| <= Ev: logsumexp is 1-Lipschitz in the max-norm;
    the shift rounds by u |v - max v|, each exp by EXP_ULPS u, the n-term positive sum by gamma_{n-1}, the log
    and the final addition by u each."""
    v = np.asarray(v, dtype=np.float64)
    L = logsumexp(v)
    return (
        float(np.max(Ev))
        + u * float(np.abs(v - v.max()).max())
        + EXP_ULPS * u
        + gamma(max(v.size - 1, 1), u)
        + u * abs(L - float(v.max()))
        + u * abs(L)
    )


def mass_gap_rounding(head: Head, x, P, u: float = U64) -> float:
    """A bound on |fl(prompt_mass_gap) - (log Z_P - g^T M^-1 Att(x, P))| derived from the inputs [D].

    g = W_k^T (W_q x) (gamma bounds per matmul), the logits P^T g, log Z_P (logsumexp_rounding), Att(x, P)
    (attention_rounding), the LU solve q = M^-1 a (backward error |Delta M| <= gamma_3d |L||U|, so
    |g.(q~ - M^-1 a~)| <= |M^-T g|^T gamma_3d |L||U| |q~|), its propagation |M^-T g|^T E_a, the dot g.q and the
    final subtraction.
    """
    M = require_invertible_values(head)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    P = np.asarray(P, dtype=np.float64)
    d = P.shape[0]
    g = score_vector(head, x)
    Eg = score_vector_rounding(head, x, u)
    v = P.T @ g
    Ev = gamma(d, u) * (np.abs(P).T @ np.abs(g)) + np.abs(P).T @ Eg
    E_lse = logsumexp_rounding(v, Ev, u)
    _, Ea = attention_rounding(Layer((head,), None), x, P, u)
    lu = lu_factor(M)
    q = lu_solve(lu, attend(head, x, P))
    L = np.tril(lu[0], -1) + np.eye(d)
    mtg = np.abs(lu_solve(lu, g, trans=1))  # |M^-T g|
    E_q = gamma(3 * d, u) * float(mtg @ ((np.abs(L) @ np.abs(np.triu(lu[0]))) @ np.abs(q))) + float(mtg @ Ea)
    E_dot = float(Eg @ np.abs(q)) + gamma(d, u) * float(np.abs(g) @ np.abs(q))
    Lz, gq = logsumexp(v), float(g @ q)
    return E_lse + E_q + E_dot + u * (abs(Lz) + abs(gq))


def mp_prompt_mass_gap(ctx, head: Head, x, P):
    """prompt_mass_gap at ctx's digits from the float64 weights, query and prompt: (gap, log m_p) as mpf.

    The same formula, log Z_P - g^T M^-1 Att(x, P), with M^-1 applied by an LU solve at ctx's digits.
    """
    require_invertible_values(head)
    P = np.asarray(P, dtype=np.float64)
    Wq, Wk, Wv, Wo = (mp_matrix(ctx, w) for w in (head.Wq, head.Wk, head.Wv, head.Wo))
    g = Wk.T * (Wq * mp_matrix(ctx, x))
    Pm = mp_matrix(ctx, P)
    s = list(Pm.T * g)
    e = [ctx.exp(v) for v in s]
    Z = ctx.fsum(e)
    a = Wo * (Wv * (Pm * ctx.matrix([v / Z for v in e])))
    return ctx.log(Z) - (g.T * ctx.lu_solve(Wo * Wv, a))[0], ctx.log(P.shape[1])
