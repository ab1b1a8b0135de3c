"""Claims about one attention layer that the other results rest on (any backend, any dtype).

attention.prompt_mixture           Wang et al. 2023 §2.2 (wang2023.md): Att(x,[P,X]) = λ Att(x,P) + (1−λ) Att(x,X).
attention.permutation_equivariance unmasked attention + token-wise MLP commute with column permutations.

Both sides of each identity are computed in the backend's arithmetic; the bound is the sum of the two sides'
rounding floors (constructions.transformer.attention_rounding_floor / prompt_mixture_floor, and the MLP's
constructions.quantization.ffn_rounding_floor), derived from the inputs' magnitudes at the backend's unit
roundoff (constructions.precision.backend_unit_roundoff): 2^-prec on the mpmath rung.
"""

from __future__ import annotations

import numpy as np

import verify
from constructions import transformer as tr
from constructions.precision import backend_unit_roundoff, gamma
from constructions.quantization import ffn_rounding_floor
from properties.strategies import attention_instances, head_of

layer_instances = attention_instances()
layer_mlp_instances = attention_instances(mlp=True)


def _worst(dev, bound):
    """Index of the largest dev/bound (0/0 reads 0, x/0 reads inf, nan first: a nan deviation is a failure)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(bound > 0, dev / bound, np.where(dev > 0, np.inf, 0.0))
    r = np.where(np.isnan(dev), np.inf, r)
    return np.unravel_index(int(np.argmax(r)), dev.shape)


def _draw(inst):
    return head_of(inst), np.asarray(inst["P"], dtype=np.float64), np.asarray(inst["X"], dtype=np.float64)


def _underflow(backend) -> float:
    """The format's subnormal spacing: gradual underflow adds an absolute error <= it per operation (Higham §2.1);
    0 for mpmath (no underflow at these magnitudes)."""
    return 0.0 if backend.name == "mpmath" else float(np.finfo(backend.dtype).smallest_subnormal)


def _abs_term(head, mlp, n, backend) -> float:
    """Absolute error from gradual underflow: <= (#operations) x subnormal spacing, amplified by the weights an
    intermediate passes through afterwards (W_o W_v, then the MLP's |W_2||W_1|)."""
    Ws = [head.Wq, head.Wk, head.Wv, head.Wo] + ([] if mlp is None else [mlp.W1, mlp.W2])
    ops = 4 * sum(np.asarray(w).size for w in Ws) + 8 * n
    amp = (1.0 + float(np.max(np.abs(np.asarray(head.Wo)) @ np.abs(np.asarray(head.Wv)))))
    if mlp is not None:
        amp *= 1.0 + float(np.max(np.abs(np.asarray(mlp.W2)) @ np.abs(np.asarray(mlp.W1))))
    return ops * amp * _underflow(backend)


def _tiny(backend) -> float:
    """The format's smallest normal: a softmax weight that underflows to 0 is below it (0: mpmath never does)."""
    return 0.0 if backend.name == "mpmath" else float(np.finfo(backend.dtype).tiny)


def _mixture_bound(head, P, X, backend):
    """Per query: joint attention's floor + the mixture's floor (the two sides are equal in exact arithmetic)."""
    u, tiny = backend_unit_roundoff(backend), _tiny(backend)
    Z = np.concatenate([P, X], axis=1)
    joint = tr.attention_rounding_floor(head, X, Z, u, tiny)
    return np.stack([joint[:, j] + tr.prompt_mixture_floor(head, X[:, j], P, X, u, tiny)
                     for j in range(X.shape[1])], axis=1) + 2 * _abs_term(head, None, Z.shape[1], backend)


def _mixture_deviation_mp(inst, backend):
    """The precision ladder's top rung: the same instance at backend.dps digits."""
    head, P, X = _draw(inst)
    ctx = backend.mp
    Z = np.concatenate([P, X], axis=1)
    bound = _mixture_bound(head, P, X, backend)
    dev = np.zeros(bound.shape)
    for j in range(X.shape[1]):
        lam, att_p, att_x = tr.prompt_mixture_mp(ctx, head, X[:, j], P, X)
        joint = tr.head_attention_mp(ctx, head, X[:, j], Z)
        dev[:, j] = [float(abs(joint[r] - (lam * att_p[r] + (1 - lam) * att_x[r]))) for r in range(len(joint))]
    i = _worst(dev, bound)
    worst, wb = float(dev[i]), float(bound[i])
    return verify.Evidence(worst, wb, resources={"n": Z.shape[1], "d": inst["d"], "dps": ctx.dps, "floor": wb})


def _mixture_deviation(inst, backend):
    if backend.name == "mpmath":
        return _mixture_deviation_mp(inst, backend)
    head, P, X = _draw(inst)
    hb = tr.head_to(backend, head)
    Pb, Xb = backend.asarray(P), backend.asarray(X)
    dev = np.empty((X.shape[0], X.shape[1]))
    lams = []
    for j in range(X.shape[1]):
        x = Xb[:, j : j + 1]
        lam, att_p, att_x = tr.prompt_mixture(hb, x, Pb, Xb)
        joint = tr.head_attention(hb, x, tr.prepend(Pb, Xb))
        dev[:, j] = np.abs(backend.to_numpy(joint - (lam * att_p + (1 - lam) * att_x)))[:, 0]
        lams.append(float(backend.to_numpy(lam)))
    bound = _mixture_bound(head, P, X, backend)
    i = _worst(dev, bound)
    return verify.Evidence(float(dev[i]), float(bound[i]),
                           notes=f"lambda in [{min(lams):.3g}, {max(lams):.3g}]",
                           resources={"n": P.shape[1] + X.shape[1], "d": inst["d"], "floor": float(bound[i])})


@verify.claim(
    "attention.prompt_mixture",
    source="Wang et al. 2023 §5.1 mechanism (wang2023.md §2.2, key decomposition [D])",
    statement="Att(x,[P,X]) = λ·Att(x,P) + (1−λ)·Att(x,X), λ = Z_P/(Z_P+Z_X), up to the rounding floor",
    strategy=layer_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64", "mpmath"),
    backends=("numpy", "torch", "jax"),
    limits="d, s <= 8; m <= 12; m_p <= 48; prompt scale <= 50 (logits up to ~1e4: the floor grows with them)",
)
def check_prompt_mixture(inst, backend):
    return _mixture_deviation(inst, backend)


def _lambda_by_count(head, x, P, X, *, original):
    """λ = m_p / (m_p + m): the prompt's share by token count instead of by softmax mass."""
    _, att_p, att_x = original(head, x, P, X)
    return P.shape[1] / (P.shape[1] + X.shape[1]), att_p, att_x


def _lambda_by_count_mp(ctx, head, x, P, X, *, original):
    _, att_p, att_x = original(ctx, head, x, P, X)
    return ctx.mpf(P.shape[1]) / (P.shape[1] + X.shape[1]), att_p, att_x


verify.patch_mutant("attention.prompt_mixture", "lambda_without_prompt_mass",
                    {"constructions.transformer.prompt_mixture": _lambda_by_count,
                     "constructions.transformer.prompt_mixture_mp": _lambda_by_count_mp},
                    description="λ = m_p/(m_p + m): the prompt's share by token count, not by softmax mass")


def _lambda_swapped(head, x, P, X, *, original):
    """λ = Z_X/(Z_P + Z_X): the input's share where the prompt's belongs."""
    lam, att_p, att_x = original(head, x, P, X)
    return 1.0 - lam, att_p, att_x


def _lambda_swapped_mp(ctx, head, x, P, X, *, original):
    lam, att_p, att_x = original(ctx, head, x, P, X)
    return 1 - lam, att_p, att_x


verify.patch_mutant("attention.prompt_mixture", "lambda_swapped",
                    {"constructions.transformer.prompt_mixture": _lambda_swapped,
                     "constructions.transformer.prompt_mixture_mp": _lambda_swapped_mp},
                    description="λ = Z_X/(Z_P + Z_X): prompt and input masses swapped")


def _layer_floor(head, mlp, X, u, tiny):
    """Bound on |fl(layer(X)) - exact| per entry: attention floor + the residual add, then the MLP's own floor plus
    the attention error propagated through the MLP (entry-wise: e + |W_2| |W_1| e)."""
    A = tr.attention_rounding_floor(head, X, X, u, tiny)
    Y = X + tr.attention(head, X, X)
    e = A + gamma(1, u) * (np.abs(X) + tr.weighted_value_magnitude(head, X, X))
    W1, b1, W2, b2 = (np.asarray(w, dtype=np.float64) for w in (mlp.W1, mlp.b1, mlp.W2, mlp.b2))
    prop = e + np.abs(W2) @ (np.abs(W1) @ e)
    return prop * (1.0 + gamma(W1.shape[0] + W1.shape[1] + 2, u)) + ffn_rounding_floor(W1, b1, W2, b2, Y, u)


def _equivariance(inst, backend):
    head, _, X = _draw(inst)
    d, m = X.shape
    mlp = tr.MLP(*(np.asarray(inst[k], dtype=np.float64) for k in ("W1", "b1", "W2", "b2")))
    layer = tr.Layer((tr.head_to(backend, head),), tr.mlp_to(backend, mlp))
    perm = np.roll(np.arange(m), 1) if m > 1 else np.arange(m)
    out = backend.to_numpy(layer(backend.asarray(X)))
    out_perm = backend.to_numpy(layer(backend.asarray(X[:, perm])))
    dev = np.abs(out_perm - out[:, perm])
    u, tiny = backend_unit_roundoff(backend), _tiny(backend)
    bound = (_layer_floor(head, mlp, X, u, tiny)[:, perm] + _layer_floor(head, mlp, X[:, perm], u, tiny)
             + 2 * _abs_term(head, mlp, m, backend))
    i = _worst(dev, bound)
    return verify.Evidence(float(dev[i]), float(bound[i]), resources={"m": m})


@verify.claim(
    "attention.permutation_equivariance",
    source="Yun et al. 2020 Claim 1; used by Hu et al. 2024 (hu2024.md §5 item 11) [D]",
    statement="τ(X Π) = τ(X) Π for unmasked attention + token-wise MLP without positional encoding",
    strategy=layer_mlp_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits="d <= 8, m <= 12",
)
def check_permutation_equivariance(inst, backend):
    return _equivariance(inst, backend)


@verify.mutant("attention.permutation_equivariance", "causal_mask", patch="constructions.transformer.Layer.__call__")
def mutant_causal(self, X):
    """A layer that applies a causal mask: attention becomes order-dependent, the property must notice."""
    A = tr.attention(self.heads, X, X, hard=self.hard, causal_offset=0)
    return self.mlp(X + A)
