"""Claims about one attention layer that the other results rest on (any backend, any dtype).

attention.prompt_mixture — Wang et al. 2023 §2.2 (wang2023.md): Att(x,[P,X]) = λ Att(x,P) + (1−λ) Att(x,X).
attention.permutation_equivariance — unmasked attention + token-wise MLP commute with column permutations.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import verify
from constructions.transformer import (
    Layer,
    attention,
    head_attention,
    head_attention_mp,
    head_to,
    mlp_to,
    prepend,
    prompt_mixture,
    prompt_mixture_mp,
    random_contractive_mlp,
    random_head,
)

_EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}

layer_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 8),
        "s": st.integers(1, 8),
        "m": st.integers(1, 12),
        "m_p": st.integers(1, 48),
        "weight_scale": st.floats(0.05, 6.0),
        "prompt_scale": st.floats(0.01, 50.0),
    }
)


def _draw(inst):
    rng = np.random.default_rng(inst["seed"])
    d = inst["d"]
    head = random_head(rng, d, inst["s"], inst["weight_scale"])
    X = rng.uniform(-1.0, 1.0, size=(d, inst["m"]))
    P = rng.normal(0.0, inst["prompt_scale"], size=(d, inst["m_p"]))
    return rng, head, P, X


def _unit_roundoff(backend) -> float:
    return float(backend.mp.eps) if backend.name == "mpmath" else _EPS[backend.dtype]


def _rounding_floor(head, Z, u: float) -> float:
    """Forward-error floor of softmax attention at these magnitudes.

    Weights carry relative error ~ u(|logit| + n) (exp of a shifted logit, then a sum of n terms), and
    the output is a convex combination of value columns, so |error| <= c u (n + max|logit|) max|value|;
    c = 16 covers the two evaluations compared (each side contributes).
    """
    n = Z.shape[1]
    logits = (head.Wk @ Z).T @ (head.Wq @ Z)
    values = head.Wo @ (head.Wv @ Z)
    return 16.0 * u * (n + float(np.abs(logits).max())) * max(float(np.abs(values).max()), 1e-300)


def _mixture_deviation_mp(inst, backend, lam_fn):
    """The precision ladder's top rung: the same instance at backend.dps digits."""
    _, head, P, X = _draw(inst)
    ctx = backend.mp
    Z = np.concatenate([P, X], axis=1)
    worst = ctx.mpf(0)
    for j in range(X.shape[1]):
        lam, att_p, att_x = prompt_mixture_mp(ctx, head, X[:, j], P, X)
        lam = lam_fn(lam, inst)
        joint = head_attention_mp(ctx, head, X[:, j], Z)
        worst = max([worst] + [abs(joint[r] - (lam * att_p[r] + (1 - lam) * att_x[r])) for r in range(len(joint))])
    return verify.Evidence(float(worst), _rounding_floor(head, Z, _unit_roundoff(backend)),
                           resources={"n": Z.shape[1], "d": inst["d"], "dps": ctx.dps})


def _mixture_deviation(inst, backend, lam_fn):
    if backend.name == "mpmath":
        return _mixture_deviation_mp(inst, backend, lam_fn)
    _, head, P, X = _draw(inst)
    hb = head_to(backend, head)
    Pb, Xb = backend.asarray(P), backend.asarray(X)
    worst = 0.0
    for j in range(X.shape[1]):
        x = Xb[:, j : j + 1]
        lam, att_p, att_x = prompt_mixture(hb, x, Pb, Xb)
        lam = lam_fn(lam, inst)
        joint = head_attention(hb, x, prepend(Pb, Xb))
        worst = max(worst, float(np.abs(backend.to_numpy(joint - (lam * att_p + (1 - lam) * att_x))).max()))
    bound = _rounding_floor(head, np.concatenate([P, X], axis=1), _unit_roundoff(backend))
    return verify.Evidence(worst, bound, resources={"n": P.shape[1] + X.shape[1], "d": inst["d"]})


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
    return _mixture_deviation(inst, backend, lambda lam, inst: lam)


@verify.mutant("attention.prompt_mixture", "lambda_without_prompt_mass")
def mutant_lambda_by_count(inst, backend):
    """λ = m_p / (m_p + m): the prompt's share by token count instead of by softmax mass."""
    return _mixture_deviation(inst, backend, lambda lam, inst: inst["m_p"] / (inst["m_p"] + inst["m"]))


def _equivariance(inst, backend, causal: bool):
    rng, head, _, X = _draw(inst)
    mlp = random_contractive_mlp(rng, inst["d"], 2 * inst["d"], kappa=0.9)
    layer = Layer((head_to(backend, head),), mlp_to(backend, mlp), causal=causal)
    perm = rng.permutation(X.shape[1])
    if X.shape[1] > 1 and np.all(perm == np.arange(X.shape[1])):
        perm = np.roll(perm, 1)
    out = backend.to_numpy(layer(backend.asarray(X)))
    out_perm = backend.to_numpy(layer(backend.asarray(X[:, perm])))
    observed = float(np.abs(out_perm - out[:, perm]).max())
    att = attention(head, X, X)
    scale = float(np.abs(X).max() + np.abs(att).max() + np.abs(out).max()) + 1.0
    u = _unit_roundoff(backend)
    bound = _rounding_floor(head, X, u) + 16.0 * u * (2 * inst["d"] + inst["d"]) * scale
    return verify.Evidence(observed, bound, resources={"m": X.shape[1]})


@verify.claim(
    "attention.permutation_equivariance",
    source="Yun et al. 2020 Claim 1; used by Hu et al. 2024 (hu2024.md §5 item 11) [D]",
    statement="τ(X Π) = τ(X) Π for unmasked attention + token-wise MLP without positional encoding",
    strategy=layer_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits="d <= 8, m <= 12",
)
def check_permutation_equivariance(inst, backend):
    return _equivariance(inst, backend, causal=False)


@verify.mutant("attention.permutation_equivariance", "causal_mask")
def mutant_causal(inst, backend):
    """A causal mask makes attention order-dependent: the property must notice."""
    return _equivariance(inst, backend, causal=True)
