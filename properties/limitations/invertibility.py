"""Claims: invertibility (Wang et al. 2023 Thm 5 [R]; wang2023.md §2.4 residual lemma, §3.5 [D]).

* wang23.mlp_inverse: the fixed point z <- y - F(z) inverts the residual MLP to a derived floor.
* wang23.mlp_bilipschitz: (1 - kappa)||x - y|| <= ||MLP(x) - MLP(y)|| <= (1 + kappa)||x - y||.
* wang23.causal_inverse: a causal prompt-tuned stack is inverted layer by layer to a derived floor.
* wang23.causal_dataset_bound: X1 != X2, Y1 = Y2 => max_i ||g_P(X_i) - Y|| >= Lambda ||X1 - X2|| / 2.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import verify
from constructions.causal_stack import causal_certificate, causal_inverse, causal_inverse_bound, random_causal_stack
from constructions.precision import gamma
from constructions.residual_mlp import (
    affine_mlp,
    bilipschitz_constants,
    inverse_iterations,
    mlp_eval_rounding,
    mlp_inverse,
    mp_mlp_kappa,
    mp_mlp_pair_norms,
    pair_norm_rounding,
)
from constructions.single_layer import mp_float
from constructions.transformer import MLP, Head, Layer, prompt_tuned, random_contractive_mlp, spectral_norm
from properties.limitations._common import SEEDS, materialise

U64 = 2.0**-53


def with_mlp_arrays(inst: dict) -> dict:
    """The MLP and 16 point pairs (X1, X2 = X1 + a spread of small and large offsets), drawn now and stored."""
    rng = np.random.default_rng(inst["seed"])
    d, r = inst["d"], inst["d"] + inst["r_extra"]
    if inst["kind"] == "random":
        mlp = random_contractive_mlp(rng, d, r, inst["kappa"])
    else:
        mlp = affine_mlp(rng, d, r, inst["kappa"], sign=-1.0 if inst["kind"] == "contract" else 1.0, radius=0.0)
    sc = 10.0 ** inst["log10_scale"]
    X1 = rng.normal(0.0, sc, size=(d, 16))
    X2 = X1 + rng.normal(0.0, sc, size=X1.shape) * rng.uniform(1e-3, 1.0, size=(1, 16))
    return {**inst, "W1": mlp.W1, "b1": mlp.b1, "W2": mlp.W2, "b2": mlp.b2, "X1": X1, "X2": X2}


mlp_instances = materialise(st.fixed_dictionaries(
    {
        "seed": SEEDS,
        "d": st.integers(1, 8),
        "r_extra": st.integers(0, 8),
        "kappa": st.floats(0.0, 0.99),
        "kind": st.sampled_from(["random", "contract", "expand"]),
        "log10_scale": st.floats(-2.0, 2.0),
    }
), with_mlp_arrays)


def _stored_mlp(inst) -> MLP:
    return MLP(inst["W1"], inst["b1"], inst["W2"], inst["b2"])


@verify.claim(
    "wang23.mlp_inverse",
    source="wang2023.md §2.4 residual lemma (i-ResNet, Behrmann et al. 2019) [D]; §5 item 2",
    statement="||W1|| ||W2|| = kappa < 1: the fixed point z <- y - W2 ReLU(W1 z + b1) - b2 inverts the MLP to rounding",
    strategy=mlp_instances,
    provenance="derived",
    precision="float64",
    limits="d <= 8, r <= 16, kappa <= 0.99 (iterations ~ 40 / log(1/kappa))",
)
def check_mlp_inverse(inst, backend):
    """Error of the fixed-point inverse against its a-priori floor (rho_Y + rho_T + kappa^N s_1) / (1 - kappa).

    rho_Y: rounding of the forward pass that produced Y; rho_T: rounding of one step z <- y - F(z); the last term is
    the contraction after the N = inverse_iterations(kappa) steps the construction promises. Per column, 2-norm;
    kappa the computed ||W1|| ||W2||, inflated by 8(d + r) u for the SVD's error.
    """
    mlp = _stored_mlp(inst)
    X = inst["X1"][:, :8]
    Y = mlp(X)
    Z, it = mlp_inverse(mlp, Y)
    u = U64
    d, r = mlp.W1.shape[1], mlp.W1.shape[0]
    kappa = spectral_norm(mlp.W1) * spectral_norm(mlp.W2) * (1.0 + 8.0 * (d + r) * u)
    n_steps = inverse_iterations(kappa)
    rho_y = np.linalg.norm(mlp_eval_rounding(mlp, X, u), axis=0)
    rho_t = np.linalg.norm(mlp_eval_rounding(mlp, Z, u) + u * np.abs(Y), axis=0)
    step1 = np.linalg.norm(mlp.residual_part(Y), axis=0)  # z_1 - z_0 = -F(y) from z_0 = y
    floor = (rho_y + rho_t) / (1.0 - kappa) + kappa**n_steps / (1.0 - kappa) * step1
    floor *= 1.0 + gamma(d + 2, u)  # the norms themselves
    err = np.linalg.norm(Z - X, axis=0)
    j = int(np.argmax(err / floor))
    return verify.Evidence(
        observed=float(err[j]),
        bound=float(floor[j]),
        notes=f"fixed-point inverse, {it} steps (promised {n_steps}); floor (rho_Y + rho_T)/(1-kappa) + contraction",
        resources={"iterations": it, "kappa": round(kappa, 6)},
    )


@verify.mutant("wang23.mlp_inverse", "five_iterations", patch="constructions.residual_mlp.mlp_inverse")
def mutant_mlp_inverse_short(mlp, Y, tol=0.0, max_iter=None, *, original):
    """The inverse stops after 5 fixed-point steps: kappa^5/(1-kappa) ||step_1|| is far above rounding."""
    return original(mlp, Y, tol, 5)


@verify.claim(
    "wang23.mlp_bilipschitz",
    source="wang2023.md §2.4 residual lemma [D]; §5 item 2",
    statement="(1-kappa)||x-y|| <= ||MLP(x) - MLP(y)|| <= (1+kappa)||x-y||",
    strategy=mlp_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64", "mpmath"),
    limits="d <= 8; 'contract'/'expand' MLPs attain the constants exactly (ratio 1 up to rounding)",
    tight=0.9,
)
def check_bilip(inst, backend):
    """max over 16 pairs of ||df||/((1+kappa)||dx||) and (1-kappa)||dx||/||df||, each with the computed norms moved
    by their rounding bounds (pair_norm_rounding, from the inputs) towards the inequality; bound 1.

    kappa: the computed ||W1|| ||W2|| inflated by 8(d + r) u (the SVD's error) on the float rung; exact on mpmath."""
    mlp = _stored_mlp(inst)
    X1, X2 = inst["X1"], inst["X2"]
    if backend.name == "mpmath":
        return _bilip_mp(inst, backend, mlp, X1, X2)
    u = U64
    d, r = mlp.W1.shape[1], mlp.W1.shape[0]
    kappa = spectral_norm(mlp.W1) * spectral_norm(mlp.W2) * (1.0 + 8.0 * (d + r) * u)
    lo, hi = bilipschitz_constants(kappa)
    dx = np.linalg.norm(X1 - X2, axis=0)
    df = np.linalg.norm(mlp(X1) - mlp(X2), axis=0)
    ef, ex = pair_norm_rounding(mlp, X1, X2, u)
    upper = np.maximum(df - ef, 0.0) / (hi * (dx + ex))
    lower = lo * np.maximum(dx - ex, 0.0) / (df + ef)
    return verify.Evidence(
        observed=float(max(upper.max(), lower.max())),
        bound=1.0,
        notes="max over 16 pairs of ||df||/((1+kappa)||dx||) and (1-kappa)||dx||/||df||, norms moved by their rounding",
        resources={"kind": inst["kind"]},
    )


def _bilip_mp(inst, backend, mlp, X1, X2):
    """The mpmath rung: the same MLP and 16 pairs at backend.dps digits, kappa = ||W1|| ||W2|| exactly there; the
    norms are moved by their rounding bounds at u = 2^-prec (first order, from the inputs)."""
    ctx = backend.mp
    k = mp_mlp_kappa(ctx, mlp)
    lo, hi = bilipschitz_constants(k)
    u = 2.0 ** -int(ctx.prec)
    ef, ex = pair_norm_rounding(mlp, X1, X2, u)
    ratio = max(max((df - ef[j]) / (hi * (dx + ex[j])), lo * (dx - ex[j]) / (df + ef[j]))
                for j, (df, dx) in enumerate(mp_mlp_pair_norms(ctx, mlp, X1, X2)))
    return verify.Evidence(
        observed=mp_float(ctx, ratio, +1),
        bound=1.0,
        precision="mpmath",
        notes=f"mpmath[{backend.dps}]: max over 16 pairs of ||df||/((1+kappa)||dx||) and (1-kappa)||dx||/||df||,"
        f" kappa = {float(k):.17g} (drawn {inst['kappa']!r})",
        resources={"kind": inst["kind"], "dps": backend.dps},
    )


@verify.mutant("wang23.mlp_bilipschitz", "lower_constant_one", patch="constructions.residual_mlp.bilipschitz_constants")
def mutant_bilip_no_contraction(kappa):
    """||MLP(x) - MLP(y)|| >= ||x - y||: forgets that the residual branch can contract."""
    return 1.0 + 0.0 * kappa, 1.0 + kappa


# ---------------------------------------------------------------------------------------------
# causal stacks


_INPUT_RADIUS = 1.0
_PROMPT_CAP = 1.0


def _ball(rng, shape, radius):
    Z = rng.normal(size=shape)
    return Z / np.maximum(np.linalg.norm(Z, axis=0, keepdims=True), np.finfo(np.float64).tiny) \
        * rng.uniform(0, radius, (1, shape[1]))


def with_causal_arrays(inst: dict) -> dict:
    """The causal stack, the prompt, the inputs X, X1, X2 and 9 more capped prompts, drawn now and stored."""
    rng = np.random.default_rng(inst["seed"])
    d, m = inst["d"], inst["m"]
    layers = random_causal_stack(rng, d, inst["L"], inst["kappa"], 10.0 ** inst["att_log10"],
                                 10.0 ** inst["score_log10"], _INPUT_RADIUS, inst["mlp_kind"])
    stored = [{"Wq": ly.heads[0].Wq, "Wk": ly.heads[0].Wk, "Wv": ly.heads[0].Wv, "Wo": ly.heads[0].Wo,
               "W1": ly.mlp.W1, "b1": ly.mlp.b1, "W2": ly.mlp.W2, "b2": ly.mlp.b2} for ly in layers]
    P = _ball(rng, (d, inst["m_p"]), _PROMPT_CAP)
    X = _ball(rng, (d, m), _INPUT_RADIUS)
    X1, X2 = _ball(rng, (d, m), _INPUT_RADIUS), _ball(rng, (d, m), _INPUT_RADIUS)
    others = [_ball(rng, (d, inst["m_p"]), _PROMPT_CAP) for _ in range(6)] + [_ball(rng, (d, k), _PROMPT_CAP)
                                                                              for k in (1, 2, 3)]
    return {**inst, "layers": stored, "P": P, "X": X, "X1": X1, "X2": X2, "prompts": others}


causal_instances = materialise(st.fixed_dictionaries(
    {
        "seed": SEEDS,
        "d": st.integers(1, 4),
        "m": st.integers(1, 3),
        "L": st.integers(1, 3),
        "kappa": st.floats(0.0, 0.9),
        "att_log10": st.floats(-3.0, -1.0),
        "score_log10": st.floats(-3.0, -1.0),
        "m_p": st.integers(1, 4),
        "mlp_kind": st.sampled_from(["contract", "random"]),
    }
), with_causal_arrays)


def stored_stack(inst, causal: bool = True):
    layers = [Layer((Head(a["Wq"], a["Wk"], a["Wv"], a["Wo"]),), MLP(a["W1"], a["b1"], a["W2"], a["b2"]),
                    causal=causal) for a in inst["layers"]]
    try:
        cert = causal_certificate([Layer(ly.heads, ly.mlp, causal=True) for ly in layers], _PROMPT_CAP,
                                  _INPUT_RADIUS, inst["m"])
    except ValueError as exc:
        raise verify.OutOfReach(f"certificate unavailable: {exc}") from exc
    return layers, cert


@verify.claim(
    "wang23.causal_inverse",
    source="Wang et al. 2023 Thm 5 [R]; wang2023.md §2.4 / §3.5 step 2 [D]",
    statement="causal stack, a_l < 1, kappa_l < 1: X is recovered from g_P(X) by layer-wise fixed points to rounding",
    strategy=causal_instances,
    provenance="derived",
    precision="float64",
    limits="d <= 4, m <= 3, L <= 3, m_p <= 4; ||W_oW_v||, ||W_k^T W_q|| <= 0.1 so that the certified a_l < 1",
)
def check_causal_inverse(inst, backend):
    """||X~ - X||_F against causal_inverse_bound (forward rounding, prompt-state rounding, both fixed points)."""
    layers, cert = stored_stack(inst)
    P, X = inst["P"], inst["X"]
    Y = prompt_tuned(layers, P, X)
    inv = causal_inverse(layers, P, Y, rates=cert.a)
    err = float(np.linalg.norm(inv.X - X))
    floor = causal_inverse_bound(layers, P, Y, inv, cert, U64)
    return verify.Evidence(err, floor, notes="layer-wise fixed-point inversion of a causal prompt-tuned stack",
                           resources={"L": inst["L"], "Lambda": cert.Lambda})


@verify.mutant(
    "wang23.causal_inverse",
    "bidirectional_layers",
    patch="constructions.causal_stack.causal_prompt_states",
    strategy=causal_instances.filter(lambda i: i["m_p"] >= 1 and i["att_log10"] > -1.5),
)
def mutant_causal_prompt_states(layers, P):
    """The prompt states taken as the raw prompt at every layer (P^l = P): the inversion attends to the wrong keys."""
    return [np.asarray(P, dtype=np.float64) for _ in range(len(layers) + 1)]


@verify.claim(
    "wang23.causal_dataset_bound",
    source="Wang et al. 2023 Thm 5 [R]; wang2023.md §2.4 / §5 items 19-20 [D]",
    statement="causal, Lambda = prod (1-a_l)(1-kappa_l): X1 != X2, Y1 = Y2 => max_i ||g_P(X_i)-Y|| >= Lambda|X1-X2|/2",
    strategy=causal_instances,
    provenance="derived",
    precision="float64",
    limits="d <= 4, m <= 3, L <= 3; prompts: token norms <= 1 (the cap the certificate is uniform over), m_p <= 4",
    tight=0.9,
)
def check_causal_dataset(inst, backend):
    layers, cert = stored_stack(inst)
    X1, X2, P0 = inst["X1"], inst["X2"], inst["P"]
    Y = 0.5 * (prompt_tuned(layers, P0, X1) + prompt_tuned(layers, P0, X2))  # the best target for P0
    prompts = [P0] + list(inst["prompts"])
    best = math.inf
    for P in prompts:
        best = min(best, max(float(np.linalg.norm(prompt_tuned(layers, P, X) - Y)) for X in (X1, X2)))
    return verify.Evidence(
        observed=0.5 * cert.Lambda * float(np.linalg.norm(X1 - X2)),
        bound=best,
        notes="Y1 = Y2 = midpoint under P0; every capped prompt errs by >= Lambda ||X1 - X2|| / 2",
        resources={"L": inst["L"], "Lambda": cert.Lambda, "a_max": max(cert.a), "prompts": len(prompts)},
    )


def _lambda_product(sign: float, scale: float):
    def Lambda(self) -> float:
        out = scale
        for a, k in zip(self.a, self.kappa, strict=True):
            out *= (1.0 + sign * a) * (1.0 - k)
        return out

    return property(Lambda)


verify.patch_mutant(
    "wang23.causal_dataset_bound",
    "attention_factor_1_plus_a",
    {"constructions.causal_stack.CausalCertificate.Lambda": _lambda_product(+1.0, 1.0)},
    description="Lambda = prod (1 + a_l)(1 - kappa_l): the attention's upper Lipschitz factor used as a lower one",
)
verify.patch_mutant(
    "wang23.causal_dataset_bound",
    "without_half",
    {"constructions.causal_stack.CausalCertificate.Lambda": _lambda_product(-1.0, 2.0)},
    description="Lambda doubled, i.e. the bound Lambda ||X1 - X2|| without the 1/2 the midpoint target forces",
)

