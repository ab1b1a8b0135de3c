"""The two-example witness dataset that no prompt memorizes (Wang et al. 2023 Thm 2 [R]; wang2023.md §2.2 [D]).

    h = 1, kappa = ||W_1|| ||W_2|| < 1:  every prompt P has max_i ||tau([P, X_i])_last - y_i0|| >= (1-kappa) alpha D

with X_i = [x_i, x0], c_i = Att(x0, X_i), D = ||c1 - c2||, t_i = c_i + alpha (c_i - c_j), y_i0 = MLP(x0 + t_i).
Also the multi-head caveat: with h = 2 the same recipe IS memorized by an explicit 2-token prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from constructions.residual_mlp import mlp_apply, mp_mlp, mp_spectral_norm, require_contractive
from constructions.single_layer import (
    attend,
    attend_all,
    mp_attend,
    mp_last_output,
    score_vector,
    single_head,
    value_matrix,
)
from constructions.transformer import Head, Layer, mp_matrix, prompt_tuned, random_contractive_mlp


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


def witness_targets(c1, c2, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """t_i = c_i + alpha (c_i - c_j): both required attention outputs pushed OUTWARD, away from each other."""
    return c1 + alpha * (c1 - c2), c2 + alpha * (c2 - c1)


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
    t1, t2 = witness_targets(c1, c2, alpha)
    # the first columns' targets are unconstrained by the theorem: use the unprompted outputs
    Y1 = np.stack([mlp_apply(layer.mlp, x1 + attend_all(layer, x1, X1)), mlp_apply(layer.mlp, x0 + t1)], axis=1)
    Y2 = np.stack([mlp_apply(layer.mlp, x2 + attend_all(layer, x2, X2)), mlp_apply(layer.mlp, x0 + t2)], axis=1)
    return WitnessDataset(X1, X2, Y1, Y2, c1, c2, t1, t2, float(alpha), kappa, D)


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
    kappa = mp_spectral_norm(ctx, layer.mlp.W1) * mp_spectral_norm(ctx, layer.mlp.W2)
    x0 = mp_matrix(ctx, ds.x0)
    c1, c2 = mp_attend(ctx, layer, ds.x0, ds.X1), mp_attend(ctx, layer, ds.x0, ds.X2)
    alpha = ctx.mpf(ds.alpha)
    D = ctx.norm(c1 - c2)
    defect = ctx.mpf(0)
    for t, Y in zip(witness_targets(c1, c2, alpha), (ds.Y1, ds.Y2), strict=True):
        defect = max(defect, ctx.norm(mp_mlp(ctx, layer.mlp, x0 + t) - mp_matrix(ctx, Y[:, -1])))
    cert = (1 - kappa) * alpha * D - defect
    f = float(cert)
    if ctx.mpf(f) > cert:
        f = float(np.nextafter(f, -np.inf))
    return f, float(defect)


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


def zero_mass_prompt(layer: Layer, ds: WitnessDataset) -> np.ndarray:
    """One token scoring 800 below every input key: exp(-800) underflows, lambda_i = 0 and o_i = c_i exactly.

    For the tight MLP (z -> (1 - kappa) z) this prompt attains the certificate: its max error is (1-kappa) alpha D.
    """
    g = score_vector(single_head(layer), ds.x0)
    gn = float(np.linalg.norm(g))
    if gn == 0.0:  # every key scores 0 (g = 0): no token can carry less mass; any prompt has lambda = 1/3
        return np.zeros((g.size, 1))
    low = float(min((ds.X1.T @ g).min(), (ds.X2.T @ g).min()))
    return ((low - 800.0) / gn * (g / gn))[:, None]


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
