"""Limitations of prompt tuning (Wang et al. 2023 §5–6; wang2023.md §2.2–2.4, §3.3–3.5).

Everything here is the [D] (derived, proved in the digest) version of the paper's [R] results:

* witness_dataset: a two-example dataset that no prompt of any length memorizes for a single-head layer
  with kappa = ||W_1|| ||W_2|| < 1; every prompt leaves max_i error >= (1 - kappa) alpha D.
* single_example_memorizer: each witness example alone is fitted exactly by k identical prompt tokens
  (needs M = W_o W_v invertible); the mass bound Z_P <= m_p exp(g^T M^-1 Att(x, P)) lower-bounds k.
* rank_obstruction_dataset: n examples whose exact memorization needs m_p >= n prompt tokens
  (certificates (A) sigma_min(V) > ||C||_2 and (B) rank [C, w] = n + 1), memorized exactly by the rank-1
  LoRA update Delta W_2 = u beta^T H^+ with d + r parameters.
* mlp_inverse / causal stack: the i-ResNet fixed-point inverse and the lower-Lipschitz constant
  Lambda = prod_l (1 - a_l)(1 - kappa_l) of a causal prompt-tuned stack; a dataset with X1 != X2 and
  Y1 = Y2 then has max_i error >= Lambda ||X1 - X2|| / 2 for every prompt within the norm cap.

Tokens are columns. Numpy float64 unless a function says it is array-API generic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from constructions.transformer import MLP, Head, Layer, head_attention_mp, mp_matrix, prompt_tuned, spectral_norm

# ---------------------------------------------------------------------------------------------
# hypotheses


def single_head(layer: Layer) -> Head:
    """The layer's only head; ValueError naming the hypothesis h = 1 otherwise."""
    heads = layer.heads if isinstance(layer.heads, (tuple, list)) else (layer.heads,)
    if len(heads) != 1:
        raise ValueError(f"hypothesis h = 1 (single head) violated: the layer has {len(heads)} heads")
    return heads[0]


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


def value_matrix(head: Head) -> np.ndarray:
    """M = W_o W_v (d x d)."""
    return np.asarray(head.Wo, dtype=np.float64) @ np.asarray(head.Wv, dtype=np.float64)


def require_invertible_values(head: Head, max_cond: float = 1e12) -> np.ndarray:
    """M = W_o W_v, or ValueError naming the hypothesis 'W_o W_v invertible'."""
    M = value_matrix(head)
    cond = np.linalg.cond(M)
    if not np.isfinite(cond) or cond > max_cond:
        raise ValueError(f"hypothesis W_o W_v invertible violated: cond(W_o W_v) = {cond:.3g} > {max_cond:.0e}")
    return M


def score_vector(head: Head, x) -> np.ndarray:
    """g = W_k^T W_q x: a key z gets the logit z^T g from the query x."""
    Wq, Wk = (np.asarray(w, dtype=np.float64) for w in (head.Wq, head.Wk))
    return Wk.T @ (Wq @ np.asarray(x, dtype=np.float64).reshape(-1))


def logsumexp(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    m = float(v.max())
    return m + math.log(float(np.exp(v - m).sum()))


def attend(head: Head, x, S) -> np.ndarray:
    """Att(x, S) for one query column x (numpy float64, returns a d-vector)."""
    S = np.asarray(S, dtype=np.float64)
    s = S.T @ score_vector(head, x)
    w = np.exp(s - s.max())
    return value_matrix(head) @ (S @ (w / w.sum()))


def heads_of(layer: Layer) -> tuple:
    return tuple(layer.heads) if isinstance(layer.heads, (tuple, list)) else (layer.heads,)


def attend_all(layer: Layer, x, S) -> np.ndarray:
    return sum(attend(h, x, S) for h in heads_of(layer))


# ---------------------------------------------------------------------------------------------
# forward rounding-error bounds (so that exactly tight bounds are checked without ad-hoc slack)


EXP_ULPS = 4.0  # accepted error of the libraries' exp in ulps (glibc < 1; XLA/SLEEF float32 kernels <= ~3)


def _gamma(k: int, u: float) -> float:
    """gamma_k = k u / (1 - k u): the relative error bound of a length-k sum or dot product (Higham, Thm 3.1)."""
    return k * u / (1.0 - k * u)


def attention_rounding(layer: Layer, x, S, u: float, extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(o, E): o = Att(x, S) summed over heads and an entry-wise first-order bound E >= |fl(o) - o|.

    Follows transformer.attention's operation order (scores (W_k S)^T (W_q x), max-shifted exp, normalised sum,
    W_o ((W_v S) w)); every matmul of inner size k errs by <= gamma_k |A||B| (any summation order), exp by
    EXP_ULPS ulps. u is the unit roundoff of the arithmetic (eps / 2); extra = 2 when the float64 weights and
    inputs were themselves rounded to it (each factor then carries one more relative u). Terms of order u^2 are
    dropped.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    S = np.asarray(S, dtype=np.float64)
    d, n = S.shape
    o_tot, E_tot = np.zeros(d), np.zeros(d)
    for h in heads_of(layer):
        Wq, Wk, Wv, Wo = (np.asarray(w, dtype=np.float64) for w in (h.Wq, h.Wk, h.Wv, h.Wo))
        s_dim = Wq.shape[0]
        a, b = Wk @ S, Wq @ x
        Ea, Eb = _gamma(d + extra, u) * (np.abs(Wk) @ np.abs(S)), _gamma(d + extra, u) * (np.abs(Wq) @ np.abs(x))
        sc = a.T @ b
        Es = _gamma(s_dim, u) * (np.abs(a).T @ np.abs(b)) + Ea.T @ np.abs(b) + np.abs(a).T @ Eb
        j = int(np.argmax(sc))
        z = sc - sc[j]
        Ez = Es + Es[j] + u * np.abs(z)  # the shift, and the subtraction's own rounding
        w = np.exp(z)
        rel_e = Ez + EXP_ULPS * u  # relative error of each exp(z_k): d exp = exp dz
        rel_w = rel_e + float(rel_e.max()) + _gamma(n, u) + u  # divided by the rounded sum of the exps
        w = w / w.sum()
        V = Wv @ S
        EV = _gamma(d + extra, u) * (np.abs(Wv) @ np.abs(S))
        Vw = V @ w
        EVw = _gamma(n, u) * (np.abs(V) @ w) + EV @ w + np.abs(V) @ (rel_w * w)
        o = Wo @ Vw
        Eo = _gamma(s_dim + extra, u) * (np.abs(Wo) @ np.abs(Vw)) + np.abs(Wo) @ EVw
        o_tot = o_tot + o
        E_tot = E_tot + Eo + u * np.abs(o_tot)  # summing the heads rounds once more each
    return o_tot, E_tot


def mlp_rounding(mlp: MLP, z, Ez, u: float, extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(MLP(z), E): entry-wise first-order bound E >= |fl(MLP(z~)) - MLP(z)| given |z~ - z| <= Ez.

    z + W_2 ReLU(W_1 z + b_1) + b_2 as in transformer.MLP: each matmul-plus-bias of inner size k errs by
    <= gamma_{k+1} (|W||v| + |b|) (gamma_{k+1+extra} with rounded weights); ReLU is 1-Lipschitz and exact.
    """
    W1, b1, W2, b2 = (np.asarray(a, dtype=np.float64) for a in (mlp.W1, mlp.b1, mlp.W2, mlp.b2))
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    r, d = W1.shape
    hp = W1 @ z + b1
    Eh = _gamma(d + 1 + extra, u) * (np.abs(W1) @ np.abs(z) + np.abs(b1)) + np.abs(W1) @ Ez
    h = np.maximum(hp, 0.0)
    R = W2 @ h + b2
    ER = _gamma(r + 1 + extra, u) * (np.abs(W2) @ h + np.abs(b2)) + np.abs(W2) @ Eh
    out = z + R
    return out, Ez + ER + u * np.abs(out)


def last_output_rounding(layer: Layer, P, X, u: float, extra: int = 0) -> float:
    """A first-order bound on ||fl(tau([P, X])_last) - tau([P, X])_last||_2 in arithmetic of unit roundoff u.

    extra = 2 when the layer and the inputs were rounded from float64 to this arithmetic (see attention_rounding).
    """
    S = np.concatenate([np.asarray(P, dtype=np.float64), np.asarray(X, dtype=np.float64)], axis=1)
    x = S[:, -1]
    o, Eo = attention_rounding(layer, x, S, u, extra)
    z = x + o
    _, E = mlp_rounding(layer.mlp, z, Eo + (1 + extra) * u * np.abs(z), u, extra)
    return float(np.linalg.norm(E))


def mlp_apply(mlp: MLP, z) -> np.ndarray:
    """The residual MLP on one token (numpy float64)."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    W1, b1, W2, b2 = (np.asarray(a, dtype=np.float64) for a in (mlp.W1, mlp.b1, mlp.W2, mlp.b2))
    return z + W2 @ np.maximum(W1 @ z + b1, 0.0) + b2


# ---------------------------------------------------------------------------------------------
# MLP families whose bi-Lipschitz constants are attained (used to make the bounds tight)


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


# ---------------------------------------------------------------------------------------------
# Theorem 2 (single layer): the two-example witness dataset


@dataclass(frozen=True)
class WitnessDataset:
    """{([x1, x0], y1), ([x2, x0], y2)}; only the shared token x0's output (last column) is constrained."""

    X1: np.ndarray
    X2: np.ndarray
    Y1: np.ndarray
    Y2: np.ndarray
    c1: np.ndarray  # Att(x0, X1) without a prompt
    c2: np.ndarray
    t1: np.ndarray  # attention outputs the targets require: y_i0 = MLP(x0 + t_i)
    t2: np.ndarray
    alpha: float
    kappa: float
    D: float  # ||c1 - c2||

    @property
    def x0(self) -> np.ndarray:
        return self.X1[:, -1]

    @property
    def certificate(self) -> float:
        """(1 - kappa) alpha D: every prompt leaves max_i ||tau([P, X_i])_last - y_i0|| >= this."""
        return (1.0 - self.kappa) * self.alpha * self.D

    @property
    def attention_infimum(self) -> float:
        """alpha D: the infimum of max_i ||o_i - t_i|| over a in R^d and lambda_1, lambda_2 in (0, 1)."""
        return self.alpha * self.D


def witness_dataset(
    layer: Layer,
    alpha: float,
    rng: np.random.Generator | None = None,
    tokens: tuple | None = None,
    spread: float = 1.0,
    min_gap: float = 1e-6,
    allow_multihead: bool = False,
) -> WitnessDataset:
    """Theorem 2 [D]: t_i = c_i + alpha (c_i - c_j), y_i0 = MLP(x0 + t_i); no prompt memorizes both examples.

    tokens = (x0, x1, x2) fixes the tokens; otherwise they are drawn N(0, spread^2 I) from rng until
    ||c1 - c2|| > min_gap. allow_multihead=True builds the same recipe on an h-head layer (the theorem then
    does not apply: used to exhibit the multi-head counterexample).
    """
    if not allow_multihead:
        single_head(layer)
    kappa = require_contractive(layer.mlp)
    if not alpha > 0:
        raise ValueError(f"hypothesis alpha > 0 violated: alpha = {alpha} (alpha = 0 is memorizable)")
    d = int(np.asarray(layer.mlp.W1).shape[1])
    for _ in range(100):
        if tokens is not None:
            x0, x1, x2 = (np.asarray(t, dtype=np.float64).reshape(-1) for t in tokens)
        else:
            x0, x1, x2 = (spread * rng.normal(size=d) for _ in range(3))
        X1 = np.stack([x1, x0], axis=1)
        X2 = np.stack([x2, x0], axis=1)
        c1 = attend_all(layer, x0, X1)
        c2 = attend_all(layer, x0, X2)
        D = float(np.linalg.norm(c1 - c2))
        if D > min_gap:
            break
        if tokens is not None:
            raise ValueError(f"witness tokens give ||c1 - c2|| = {D:.3g} <= min_gap = {min_gap}: need c1 != c2")
    else:
        raise ValueError("could not draw witness tokens with c1 != c2 in 100 tries")
    t1 = c1 + alpha * (c1 - c2)
    t2 = c2 + alpha * (c2 - c1)
    # the first columns' targets are unconstrained by the theorem: use the unprompted outputs
    Y1 = np.stack([mlp_apply(layer.mlp, x1 + attend_all(layer, x1, X1)), mlp_apply(layer.mlp, x0 + t1)], axis=1)
    Y2 = np.stack([mlp_apply(layer.mlp, x2 + attend_all(layer, x2, X2)), mlp_apply(layer.mlp, x0 + t2)], axis=1)
    return WitnessDataset(X1, X2, Y1, Y2, c1, c2, t1, t2, float(alpha), kappa, D)


def _mp_spectral_norm(ctx, W):
    A = mp_matrix(ctx, W)
    return ctx.sqrt(max(ctx.eigsy(A.T * A, eigvals_only=True)))


def _mp_attend(ctx, layer: Layer, x, S):
    """Att(x, S) summed over the layer's heads at ctx's digits, as a column."""
    out = ctx.zeros(np.asarray(S).shape[0], 1)
    for h in heads_of(layer):
        out += ctx.matrix(head_attention_mp(ctx, h, x, S))
    return out


def _mp_mlp(ctx, mlp: MLP, z):
    hp = mp_matrix(ctx, mlp.W1) * z + mp_matrix(ctx, mlp.b1)
    h = ctx.matrix([max(hp[k], 0) for k in range(hp.rows)])
    return z + mp_matrix(ctx, mlp.W2) * h + mp_matrix(ctx, mlp.b2)


def witness_certificate_lower(layer: Layer, ds: WitnessDataset, dps: int = 30) -> tuple[float, float]:
    """(cert, defect): a float lower bound on the certificate the proof gives for the STORED dataset [D].

    Recomputes at dps digits from the stored float tokens and weights: kappa = ||W_1|| ||W_2||, c_i, D, t_i and
    the defect delta = max_i ||y_i0 - MLP(x0 + t_i)|| that the float64 construction left in the stored targets.
    The stored targets are MLP(x0 + t~_i) with ||t~_i - t_i|| <= delta / (1 - kappa), so every prompt has
    max_i error >= (1 - kappa) alpha D - delta. The result is rounded down to a float.
    """
    import mpmath

    ctx = mpmath.MPContext()
    ctx.dps = dps
    kappa = _mp_spectral_norm(ctx, layer.mlp.W1) * _mp_spectral_norm(ctx, layer.mlp.W2)
    x0 = mp_matrix(ctx, ds.x0)
    c1, c2 = _mp_attend(ctx, layer, ds.x0, ds.X1), _mp_attend(ctx, layer, ds.x0, ds.X2)
    alpha = ctx.mpf(ds.alpha)
    D = ctx.norm(c1 - c2)
    defect = ctx.mpf(0)
    for c, cj, Y in ((c1, c2, ds.Y1), (c2, c1, ds.Y2)):
        y = _mp_mlp(ctx, layer.mlp, x0 + c + alpha * (c - cj))
        defect = max(defect, ctx.norm(y - mp_matrix(ctx, Y[:, -1])))
    cert = (1 - kappa) * alpha * D - defect
    f = float(cert)
    if ctx.mpf(f) > cert:
        f = float(np.nextafter(f, -np.inf))
    return f, float(defect)


def mp_float(ctx, v, direction: int) -> float:
    """The float next to the mpmath number v on the side ``direction`` (+1: >= v, -1: <= v).

    Rounding an observed value up and a bound down (or both of a pair the same way) keeps the float comparison
    on the same side as the comparison at ctx's digits: no false verdict is created by the conversion.
    """
    f = float(v)
    if direction > 0 and math.isfinite(f) and ctx.mpf(f) < v:
        f = float(np.nextafter(f, np.inf))
    elif direction < 0 and math.isfinite(f) and ctx.mpf(f) > v:
        f = float(np.nextafter(f, -np.inf))
    return f


def mp_last_output(ctx, layer: Layer, P, X):
    """tau([P, X])_last at ctx's digits from the float64 weights and tokens (exact conversions): one column."""
    S = np.concatenate([np.asarray(P, dtype=np.float64), np.asarray(X, dtype=np.float64)], axis=1)
    x = S[:, -1]
    return _mp_mlp(ctx, layer.mlp, mp_matrix(ctx, x) + _mp_attend(ctx, layer, x, S))


def mp_witness_errors(ctx, layer: Layer, ds: WitnessDataset, P) -> tuple:
    """witness_errors at ctx's digits: (||tau([P, X1])_last - y10||, ||tau([P, X2])_last - y20||) as mpf."""
    return tuple(
        ctx.norm(mp_last_output(ctx, layer, P, X) - mp_matrix(ctx, Y[:, -1]))
        for X, Y in ((ds.X1, ds.Y1), (ds.X2, ds.Y2))
    )


def witness_errors(layer: Layer, ds: WitnessDataset, P, X1=None, X2=None, Y1=None, Y2=None):
    """(||tau([P, X1])_last - y10||, ||tau([P, X2])_last - y20||); array-API generic.

    Pass X1, X2, Y1, Y2 as backend arrays (and a backend layer) to evaluate on torch/jax.
    """
    X1 = ds.X1 if X1 is None else X1
    X2 = ds.X2 if X2 is None else X2
    Y1 = ds.Y1 if Y1 is None else Y1
    Y2 = ds.Y2 if Y2 is None else Y2
    out = []
    for X, Y in ((X1, Y1), (X2, Y2)):
        e = prompt_tuned(layer, P, X)[:, -1] - Y[:, -1]
        out.append(float((e * e).sum()) ** 0.5)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# single-example memorizer and the prompt mass bound


@dataclass(frozen=True)
class SingleMemorizer:
    """P = k copies of the token p; Att(x, [P, X]) = t exactly, with t = c + s_ray^-1 ... (see below).

    s: the solved ray parameter (a = Att(x, P) = c + s (t - c), lambda = 1/s); k_lower: the mass bound's
    lower limit on the prompt length of ANY exact memorizer (min over s > 1 of Z_X e^-b(s) / (s - 1)).
    """

    k: int
    p: np.ndarray
    s: float
    k_lower: float
    sigma: float

    def prompt(self) -> np.ndarray:
        return np.repeat(self.p[:, None], self.k, axis=1)


def single_example_memorizer(head: Head, x, X, t, max_k: float = 1e15) -> SingleMemorizer:
    """k identical tokens p = M^-1 (c + s (t - c)) with Att(x, [P, X]) = t (wang2023.md §3.3) [D].

    Solves log k + b(s) + log(s - 1) = log Z_X for s > 1, b(s) = g^T M^-1 (c + s (t - c)); k = 1 when
    sigma = g^T M^-1 (t - c) >= 0, else k = ceil(exp(log Z_X - b(s*) - log(s* - 1))) + 1 at s* = 1 + 1/|sigma|.
    """
    M = require_invertible_values(head)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    X = np.asarray(X, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    g = score_vector(head, x)
    c = attend(head, x, X)
    log_zx = logsumexp(X.T @ g)
    b0 = float(g @ np.linalg.solve(M, c))
    sigma = float(g @ np.linalg.solve(M, t - c))
    if np.allclose(t, c, rtol=0, atol=0):
        raise ValueError("target equals the unprompted output: the empty prompt already memorizes it")
    if sigma >= 0:
        k_lower = 0.0 if sigma > 0 else math.exp(log_zx - b0)  # sigma > 0: s -> inf drives the bound to 0
        k = 1
        u_hi = 1.0
        while math.log(k) + b0 + (1 + math.exp(u_hi)) * sigma + u_hi - log_zx <= 0:
            u_hi = 2 * u_hi + 1
            if u_hi > 1e4:
                raise ValueError("single-example memorizer: s diverges (sigma = 0 with too little mass)")
    else:
        s_star = 1.0 + 1.0 / abs(sigma)
        log_k_lower = log_zx - (b0 + s_star * sigma) - math.log(s_star - 1.0)
        k_lower = math.exp(min(log_k_lower, 700.0))
        if log_k_lower > math.log(max_k):
            raise ValueError(f"single-example memorizer needs k >= {k_lower:.3g} > max_k = {max_k:.3g} tokens")
        k = max(1, math.ceil(math.exp(log_k_lower))) + 1
        u_hi = math.log(s_star - 1.0)

    def F(u):
        return math.log(k) + b0 + (1.0 + math.exp(u)) * sigma + u - log_zx

    bmax = max(b0 + sigma, b0 + (1.0 + math.exp(u_hi)) * sigma)
    u_lo = min(u_hi - 1.0, log_zx - math.log(k) - bmax - 1.0)
    u = brentq(F, u_lo, u_hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)
    s = 1.0 + math.exp(u)
    p = np.linalg.solve(M, c + s * (t - c))
    return SingleMemorizer(k=int(k), p=p, s=s, k_lower=k_lower, sigma=sigma)


def prompt_mass_gap(head: Head, x, P) -> tuple[float, float]:
    """(log Z_P - g^T M^-1 Att(x, P), log m_p): the mass bound says the first is <= the second [D].

    Z_P = sum_j exp(p_j^T g); g^T M^-1 Att(x, P) = sum_j w_j p_j^T g, and logsumexp(s) - <w, s> = H(w) <= log m_p.
    """
    M = require_invertible_values(head)
    P = np.asarray(P, dtype=np.float64)
    g = score_vector(head, x)
    a = attend(head, x, P)
    return logsumexp(P.T @ g) - float(g @ np.linalg.solve(M, a)), math.log(P.shape[1])


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


def mp_mlp_pair_norms(ctx, mlp: MLP, X1, X2):
    """Per column j: (||MLP(x1_j) - MLP(x2_j)||, ||x1_j - x2_j||) at ctx's digits (float64 inputs, exact)."""
    X1, X2 = np.asarray(X1, dtype=np.float64), np.asarray(X2, dtype=np.float64)
    out = []
    for j in range(X1.shape[1]):
        z1, z2 = mp_matrix(ctx, X1[:, j]), mp_matrix(ctx, X2[:, j])
        out.append((ctx.norm(_mp_mlp(ctx, mlp, z1) - _mp_mlp(ctx, mlp, z2)), ctx.norm(z1 - z2)))
    return out


def mp_mlp_kappa(ctx, mlp: MLP):
    """kappa = ||W_1||_2 ||W_2||_2 of the stored float64 weights at ctx's digits (the lemma's hypothesis, exact)."""
    return _mp_spectral_norm(ctx, mlp.W1) * _mp_spectral_norm(ctx, mlp.W2)


# ---------------------------------------------------------------------------------------------
# Theorems 3-4 (derived): rank obstruction and the rank-1 LoRA memorizer


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


def rank_obstruction_dataset(layer: Layer, n: int, rng: np.random.Generator, beta_scale: float = 1.0) -> RankDataset:
    """Case (B) of wang2023.md §2.3 [D]: y_i = MLP(z_i) + beta_i u, so t_i - c_i = beta_i J^-1 u = beta_i w.

    Needs one head, kappa < 1, n + 1 <= d, r >= n, and every ReLU active on z_i and z_i + beta_i w (then the
    MLP is affine with Jacobian J = I + W_2 W_1 there); each is checked, ValueError names the failed one.
    """
    head = single_head(layer)
    kappa = require_contractive(layer.mlp)
    W1, W2 = np.asarray(layer.mlp.W1, dtype=np.float64), np.asarray(layer.mlp.W2, dtype=np.float64)
    r, d = W1.shape
    if n + 1 > d:
        raise ValueError(f"hypothesis n + 1 <= d (certificate B) violated: n = {n}, d = {d}")
    if r < n:
        raise ValueError(f"hypothesis r >= n (H of full column rank) violated: r = {r}, n = {n}")
    Xs = tuple(rng.uniform(-1.0, 1.0, size=(d, 2)) for _ in range(n))
    C = np.stack([attend(head, X[:, -1], X) for X in Xs], axis=1)
    Z = np.stack([X[:, -1] for X in Xs], axis=1) + C
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    J = np.eye(d) + W2 @ W1
    w = np.linalg.solve(J, u)
    beta = beta_scale * rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.5, 1.5, size=n)
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
    """lambda_i = Z_P / (Z_P + Z_{X_i}) for the last token of each X_i (log-space)."""
    P = np.asarray(P, dtype=np.float64)
    out = []
    for X in Xs:
        g = score_vector(head, X[:, -1])
        out.append(1.0 / (1.0 + math.exp(min(logsumexp(X.T @ g) - logsumexp(P.T @ g), 700.0))))
    return np.asarray(out)


@dataclass(frozen=True)
class LoRAUpdate:
    """Delta W_2 = u v^T (rank 1): d + r trainable parameters."""

    u: np.ndarray
    v: np.ndarray

    @property
    def delta(self) -> np.ndarray:
        return np.outer(self.u, self.v)

    @property
    def params(self) -> int:
        return self.u.size + self.v.size


def lora_rank1(ds: RankDataset) -> LoRAUpdate:
    """Delta W_2 = u beta^T H^+ (wang2023.md §2.3) [D]: (W_2 + Delta W_2) h_i = W_2 h_i + beta_i u for all i."""
    if np.linalg.matrix_rank(ds.H) < ds.n:
        raise ValueError(f"hypothesis H = ReLU(W_1 Z + b_1) of full column rank n = {ds.n} violated")
    v = np.linalg.lstsq(ds.H.T, ds.beta, rcond=None)[0]  # v^T = beta^T H^+ (minimum norm solution of H^T v = beta)
    return LoRAUpdate(ds.u.copy(), v)


def with_w2_update(layer: Layer, delta) -> Layer:
    m = layer.mlp
    return Layer(layer.heads, MLP(m.W1, m.b1, np.asarray(m.W2) + delta, m.b2), layer.hard, layer.causal)


# ---------------------------------------------------------------------------------------------
# Theorem 5 (derived): invertibility of residual blocks and of causal prompt-tuned stacks


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

    gamma_k = k u / (1 - k u) per inner product of length k (Higham, Thm 3.5); ReLU is exact and 1-Lipschitz; the
    last addition x + F(x) rounds once more: e1 = gamma_{d+1}(|W1||x| + |b1|),
    e2 = gamma_{r+1}(|W2||h| + |b2|) + |W2| e1, e = e2 + u(|x| + |F(x)|) + u e2.
    """
    W1, b1, W2, b2 = (np.asarray(w, dtype=np.float64) for w in (mlp.W1, mlp.b1, mlp.W2, mlp.b2))
    X = np.asarray(X, dtype=np.float64)
    d, r = W1.shape[1], W1.shape[0]

    def gamma(k):
        return k * u / (1.0 - k * u)

    e1 = gamma(d + 1) * (np.abs(W1) @ np.abs(X) + np.abs(b1)[:, None])
    H = np.maximum(W1 @ X + b1[:, None], 0.0)
    e2 = gamma(r + 1) * (np.abs(W2) @ (H + e1) + np.abs(b2)[:, None]) + np.abs(W2) @ e1
    F = W2 @ H + b2[:, None]
    return e2 * (1.0 + u) + u * (np.abs(X) + np.abs(F) + e2)


@dataclass(frozen=True)
class CausalCertificate:
    """Lambda = prod_l (1 - a_l)(1 - kappa_l) with a_l a certified Lipschitz bound of the causal attention map."""

    a: tuple
    kappa: tuple
    radius: tuple  # token-norm bound on each layer's input (X part and prompt states)

    @property
    def Lambda(self) -> float:
        out = 1.0
        for a, k in zip(self.a, self.kappa, strict=True):
            out *= (1.0 - a) * (1.0 - k)
        return out


def causal_attention_lipschitz(heads, R: float, m: int) -> float:
    """Lipschitz bound (Frobenius) of X -> [Att(x_j, [P, x_1..x_j])]_j when all keys have norm <= R [D].

    Block (j, k) of the Jacobian is w_jk M (I + (z_k - mu_j)(G x_j)^T) plus, for k = j, M Cov_w G: norms
    <= w_jk ||M|| (1 + 2 R^2 ||G||) + [k = j] 4 R^2 ||M|| ||G||. Rows sum to <= ||M||(alpha + beta), columns to
    <= ||M||(m alpha + beta); the Schur test gives ||J|| <= sqrt(row * col). Summed over heads.
    """
    total = 0.0
    for h in heads:
        M = spectral_norm(value_matrix(h))
        G = spectral_norm(np.asarray(h.Wk, dtype=np.float64).T @ np.asarray(h.Wq, dtype=np.float64))
        al = 1.0 + 2.0 * R * R * G
        be = 4.0 * R * R * G
        total += M * math.sqrt((al + be) * (m * al + be))
    return total


def causal_certificate(layers, prompt_cap: float, input_radius: float, m: int) -> CausalCertificate:
    """Radii, a_l and kappa_l for a causal stack, uniform over prompts with token norms <= prompt_cap.

    Each layer: ||x + Att|| <= R + ||M|| R_keys, ||MLP(z)|| <= (1 + kappa)||z|| + ||MLP(0)||. ValueError when a
    layer violates the hypotheses (kappa_l < 1, a_l < 1, causal masking).
    """
    a_s, k_s, radii = [], [], []
    RX, RP = float(input_radius), float(prompt_cap)
    for li, layer in enumerate(layers):
        if not layer.causal:
            raise ValueError(f"hypothesis causal masking violated at layer {li}: prompt states would depend on X")
        kappa = require_contractive(layer.mlp)
        R = max(RX, RP)
        a = causal_attention_lipschitz(heads_of(layer), R, m)
        if not a < 1.0:
            raise ValueError(f"hypothesis Lip(A_l) <= a_l < 1 violated at layer {li}: certified a_l = {a:.4g}")
        a_s.append(a)
        k_s.append(kappa)
        radii.append(R)
        Mn = sum(spectral_norm(value_matrix(h)) for h in heads_of(layer))
        m0 = float(np.linalg.norm(mlp_apply(layer.mlp, np.zeros(np.asarray(layer.mlp.W1).shape[1]))))
        RX = (1.0 + kappa) * (RX + Mn * R) + m0
        RP = (1.0 + kappa) * (RP + Mn * RP) + m0  # prompt tokens attend to prompt tokens only
    return CausalCertificate(tuple(a_s), tuple(k_s), tuple(radii))


def causal_prompt_states(layers, P) -> list:
    """[P^0, P^1, ..., P^L]: with causal masking the prompt's states never see X."""
    states = [np.asarray(P, dtype=np.float64)]
    for layer in layers:
        states.append(layer(states[-1]))
    return states


def causal_inverse(layers, P, Y, tol: float = 0.0, max_iter: int = 200) -> np.ndarray:
    """Recover X from Y = g_P(X) = tau_L(...tau_1([P, X]))_{:, m_p:} layer by layer [D].

    Per layer: Z = MLP^-1(Y) (fixed point), then for j = 1..m solve x_j + Att(x_j, [P^l, x_<j, x_j]) = z_j by the
    fixed point x_j <- z_j - Att(...), a contraction with rate <= a_l < 1.
    """
    Ps = causal_prompt_states(layers, P)
    Xc = np.asarray(Y, dtype=np.float64)
    for li in range(len(layers) - 1, -1, -1):
        layer, Pl = layers[li], Ps[li]
        Z, _ = mlp_inverse(layer.mlp, Xc, tol=tol)
        X = np.zeros_like(Z)
        for j in range(Z.shape[1]):
            x = Z[:, j].copy()
            prev = math.inf
            for it in range(max_iter):
                S = np.concatenate([Pl, X[:, :j], x[:, None]], axis=1)
                xn = Z[:, j] - attend_all(layer, x, S)
                step = float(np.abs(xn - x).max())
                x = xn
                if step <= tol or step == 0.0 or (step >= prev and it > 5):
                    break
                prev = step
            X[:, j] = x
        Xc = X
    return Xc


def random_causal_stack(
    rng: np.random.Generator,
    d: int,
    L: int,
    kappa: float,
    att_scale: float,
    score_scale: float,
    radius: float,
    mlp_kind: str = "contract",
) -> list:
    """L causal single-head layers with ||W_o W_v|| = att_scale, ||W_k^T W_q|| = score_scale, MLP kappa."""
    layers = []
    R = radius
    for _ in range(L):
        Wq, Wk, Wv, Wo = (rng.normal(size=(d, d)) for _ in range(4))
        cM = math.sqrt(att_scale / spectral_norm(Wo @ Wv))
        cG = math.sqrt(score_scale / spectral_norm(Wk.T @ Wq))
        head = Head(Wq * cG, Wk * cG, Wv * cM, Wo * cM)
        if mlp_kind == "contract":
            mlp = affine_mlp(rng, d, d, kappa, sign=-1.0, radius=4 * R)
        else:
            from constructions.transformer import random_contractive_mlp

            mlp = random_contractive_mlp(rng, d, 2 * d, kappa, bias_scale=0.3)
        layers.append(Layer((head,), mlp, causal=True))
        R = (1 + kappa) * R * (1 + att_scale) + 1.0
    return layers


# ---------------------------------------------------------------------------------------------
# the multi-head caveat: with h = 2 heads the witness dataset IS memorized


def two_head_counterexample(rng: np.random.Generator, gamma: float, kappa: float, alpha: float):
    """A 2-head layer, the witness dataset built by the same recipe, and a 2-token prompt fitting both examples.

    d = 4. Head h scores a key z against x0 = e_0 by gamma (+-z_1 + z_2): x1 = e_0 + e_1 is loud in head 1 and silent
    in head 2, x2 = e_0 - e_1 the reverse. Prompt token q1 scores gamma/2 in head 1 and -gamma in head 2, q2 the
    reverse, so lambda_{1,1}, lambda_{2,2} ~ e^-gamma/2 and lambda_{1,2}, lambda_{2,1} ~ 1: each example is steered by
    the head in which its own content is quiet. The values (coordinates 0 and 3 of q1, q2) solve
    W_o^2 W_v^2 q2 = t_1 - c_{1,1} and W_o^1 W_v^1 q1 = t_2 - c_{2,2}; the residual error is O(e^-gamma/2).
    Returns (layer, dataset, P).
    """
    d = 4
    E = np.eye(d)[:, [0, 3]]
    free, fixed = [0, 3], [1, 2]
    e0 = np.eye(d)[0]
    heads = []
    for sgn in (1.0, -1.0):
        g = gamma * np.array([0.0, sgn, 1.0, 0.0])
        N = rng.normal(size=(2, d))
        heads.append(Head(np.eye(d), np.outer(e0, g), np.eye(d), E @ N))  # W_k^T W_q = g e_0^T
    from constructions.transformer import random_contractive_mlp

    layer = Layer(tuple(heads), random_contractive_mlp(rng, d, 2 * d, kappa, bias_scale=0.5))
    x0, x1, x2 = e0, np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, -1.0, 0.0, 0.0])
    ds = witness_dataset(layer, alpha, tokens=(x0, x1, x2), allow_multihead=True)
    c11 = attend(heads[0], x0, ds.X1)
    c22 = attend(heads[1], x0, ds.X2)
    q1, q2 = np.zeros(d), np.zeros(d)
    q1[fixed] = [0.75, -0.25]
    q2[fixed] = [-0.75, -0.25]
    for q, head, target in ((q1, heads[0], ds.t2 - c22), (q2, heads[1], ds.t1 - c11)):
        N = E.T @ value_matrix(head)
        q[free] = np.linalg.solve(N[:, free], E.T @ target - N[:, fixed] @ q[fixed])
    return layer, ds, np.stack([q1, q2], axis=1)
