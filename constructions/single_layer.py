"""One prompt-tuned layer as the limitation proofs see it (Wang et al. 2023 §5; wang2023.md §2.2, §3.3).

The proofs read one query x against keys S through g = W_k^T W_q x (a key z scores z^T g) and the value matrix
M = W_o W_v; this module holds those pieces, the hypotheses they need (one head, M invertible), their mpmath
evaluation for the precision ladder, and first-order forward-error bounds of the float evaluation:

    |fl(tau([P, X])_last) - tau([P, X])_last| <= E,  E derived operation by operation from the inputs' magnitudes.

Tokens are columns; numpy float64 unless a function says otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from constructions.precision import gamma
from constructions.residual_mlp import mp_mlp
from constructions.transformer import Head, Layer, attention, head_attention, head_attention_mp, mp_matrix

EXP_ULPS = 4.0  # accepted error of the libraries' exp in ulps (glibc < 1; XLA/SLEEF float32 kernels <= ~3)


# ---------------------------------------------------------------------------------------------
# hypotheses and the pieces of one head


def heads_of(layer: Layer) -> tuple:
    """The layer's heads as a tuple (a bare Head counts as one)."""
    return tuple(layer.heads) if isinstance(layer.heads, (tuple, list)) else (layer.heads,)


def single_head(layer: Layer) -> Head:
    """The layer's only head; ValueError naming the hypothesis h = 1 otherwise."""
    heads = heads_of(layer)
    if len(heads) != 1:
        raise ValueError(f"hypothesis h = 1 (single head) violated: the layer has {len(heads)} heads")
    return heads[0]


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


def score_vector_rounding(head: Head, x, u: float) -> np.ndarray:
    """Entry-wise bound on |fl(g) - g| for g = W_k^T (W_q x): gamma_s |W_k|^T |W_q x| + |W_k|^T gamma_d |W_q||x|."""
    Wq, Wk = (np.asarray(w, dtype=np.float64) for w in (head.Wq, head.Wk))
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return gamma(Wq.shape[0], u) * (np.abs(Wk).T @ np.abs(Wq @ x)) + np.abs(Wk).T @ (
        gamma(x.size, u) * (np.abs(Wq) @ np.abs(x)))


def logsumexp(v) -> float:
    """log sum exp v, max-shifted."""
    v = np.asarray(v, dtype=np.float64)
    m = float(v.max())
    return m + math.log(float(np.exp(v - m).sum()))


def attend(head: Head, x, S) -> np.ndarray:
    """Att(x, S) of one head for one query column x: transformer.head_attention's forward pass (a d-vector)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    return np.asarray(head_attention(head, x, np.asarray(S, dtype=np.float64)))[:, 0]


def attend_all(layer: Layer, x, S) -> np.ndarray:
    """Att(x, S) summed over the layer's heads: transformer.attention's forward pass (a d-vector)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    return np.asarray(attention(heads_of(layer), x, np.asarray(S, dtype=np.float64)))[:, 0]


# ---------------------------------------------------------------------------------------------
# mpmath evaluation (the ladder's higher rung): the same mathematics from the float64 data, exactly converted


def mp_attend(ctx, layer: Layer, x, S):
    """Att(x, S) summed over the layer's heads at ctx's digits, as a column."""
    out = ctx.zeros(np.asarray(S).shape[0], 1)
    for h in heads_of(layer):
        out += ctx.matrix(head_attention_mp(ctx, h, x, S))
    return out


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
    return mp_mlp(ctx, layer.mlp, mp_matrix(ctx, x) + mp_attend(ctx, layer, x, S))


# ---------------------------------------------------------------------------------------------
# forward rounding-error bounds (so that exactly tight bounds are checked without ad-hoc slack)


def attention_rounding(layer: Layer, x, S, u: float, extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(o, E): o = Att(x, S) summed over heads and an entry-wise first-order bound E >= |fl(o) - o|.

    Follows transformer.attention's operation order (scores (W_k S)^T (W_q x), max-shifted exp, normalised sum,
    W_o ((W_v S) w)); every matmul of inner size k errs by <= gamma_k |A||B| (any summation order), exp by
    EXP_ULPS ulps. u is the unit roundoff of the arithmetic; extra = 2 when the float64 weights and inputs were
    themselves rounded to it (each factor then carries one more relative u). Terms of order u^2 are dropped.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    S = np.asarray(S, dtype=np.float64)
    d, n = S.shape
    o_tot, E_tot = np.zeros(d), np.zeros(d)
    for h in heads_of(layer):
        Wq, Wk, Wv, Wo = (np.asarray(w, dtype=np.float64) for w in (h.Wq, h.Wk, h.Wv, h.Wo))
        s_dim = Wq.shape[0]
        a, b = Wk @ S, Wq @ x
        Ea, Eb = gamma(d + extra, u) * (np.abs(Wk) @ np.abs(S)), gamma(d + extra, u) * (np.abs(Wq) @ np.abs(x))
        sc = a.T @ b
        Es = gamma(s_dim, u) * (np.abs(a).T @ np.abs(b)) + Ea.T @ np.abs(b) + np.abs(a).T @ Eb
        j = int(np.argmax(sc))
        z = sc - sc[j]
        Ez = Es + Es[j] + u * np.abs(z)  # the shift, and the subtraction's own rounding
        w = np.exp(z)
        rel_e = Ez + EXP_ULPS * u  # relative error of each exp(z_k): d exp = exp dz
        rel_w = rel_e + float(rel_e.max()) + gamma(n, u) + u  # divided by the rounded sum of the exps
        w = w / w.sum()
        V = Wv @ S
        EV = gamma(d + extra, u) * (np.abs(Wv) @ np.abs(S))
        Vw = V @ w
        EVw = gamma(n, u) * (np.abs(V) @ w) + EV @ w + np.abs(V) @ (rel_w * w)
        o = Wo @ Vw
        Eo = gamma(s_dim + extra, u) * (np.abs(Wo) @ np.abs(Vw)) + np.abs(Wo) @ EVw
        o_tot = o_tot + o
        E_tot = E_tot + Eo + u * np.abs(o_tot)  # summing the heads rounds once more each
    return o_tot, E_tot


def mlp_rounding(mlp, z, Ez, u: float, extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(MLP(z), E): entry-wise first-order bound E >= |fl(MLP(z~)) - MLP(z)| given |z~ - z| <= Ez.

    z + W_2 ReLU(W_1 z + b_1) + b_2 as in transformer.MLP: each matmul-plus-bias of inner size k errs by
    <= gamma_{k+1} (|W||v| + |b|) (gamma_{k+1+extra} with rounded weights); ReLU is 1-Lipschitz and exact.
    """
    W1, b1, W2, b2 = (np.asarray(a, dtype=np.float64) for a in (mlp.W1, mlp.b1, mlp.W2, mlp.b2))
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    r, d = W1.shape
    hp = W1 @ z + b1
    Eh = gamma(d + 1 + extra, u) * (np.abs(W1) @ np.abs(z) + np.abs(b1)) + np.abs(W1) @ Ez
    h = np.maximum(hp, 0.0)
    R = W2 @ h + b2
    ER = gamma(r + 1 + extra, u) * (np.abs(W2) @ h + np.abs(b2)) + np.abs(W2) @ Eh
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


def target_rounding(mlp, z, u: float) -> float:
    """A bound on ||fl(MLP(fl(z))) - MLP(z)||_2 for a target y = MLP(x + t) computed in float (z = x + t rounded)."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    _, E = mlp_rounding(mlp, z, u * np.abs(z), u)
    return float(np.linalg.norm(E))
