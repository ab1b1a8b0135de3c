"""Claims: each witness example alone is memorized, and the prompt mass bound (wang2023.md §2.2-2.3, §3.3 [D]).

* wang23.single_example_memorizable: k identical tokens fit one example; the residual is compared with the
  construction's a-priori error bound plus the evaluation's rounding bound, both derived from the inputs.
* wang23.prompt_mass_bound: log Z_P - g^T M^-1 Att(x, P) = H(softmax) <= log m_p.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import verify
from constructions.precision import backend_unit_roundoff
from constructions.residual_mlp import mlp_kappa, mp_mlp
from constructions.single_layer import last_output_rounding, mp_float, require_invertible_values, target_rounding
from constructions.single_memorizer import (
    ROOT_RTOL,
    ROOT_XTOL,
    mass_gap_rounding,
    memorizer_attention_bound,
    mp_memorizer_output,
    mp_prompt_mass_gap,
    mp_root_tolerance,
    prompt_mass_gap,
    single_example_memorizer,
)
from constructions.transformer import mp_matrix, prompt_tuned, random_head
from properties.limitations._common import (
    MAX_TOKENS,
    SEEDS,
    layer_params,
    layer_to,
    materialise,
    stored_witness,
    with_witness_arrays,
)

U64 = 2.0**-53

memo_instances = materialise(st.fixed_dictionaries(
    {**layer_params, "full_head": st.just(True), "example": st.sampled_from([1, 2])}  # M = W_o W_v needs head size d
), with_witness_arrays)


def _example(inst, ds):
    return (ds.X1, ds.t1, ds.Y1) if inst["example"] == 1 else (ds.X2, ds.t2, ds.Y2)


def _memorizer(inst, layer, ds, ctx=None):
    X, t, _ = _example(inst, ds)
    try:
        return single_example_memorizer(layer.heads[0], ds.x0, X, t, max_k=MAX_TOKENS, ctx=ctx)
    except ValueError as exc:
        if "max_k" in str(exc):
            raise verify.OutOfReach(f"identical-token memorizer needs more than {MAX_TOKENS} tokens: {exc}") from exc
        raise


def _mass_condition(sm):
    """k >= k_lower: the prompt mass bound's minimum length for ANY exact memorizer (a reported count, checked)."""
    return verify.Condition("k >= mass bound", sm.k >= sm.k_lower, f"k = {sm.k} tokens, mass bound {sm.k_lower:.4g}")


@verify.claim(
    "wang23.single_example_memorizable",
    source="wang2023.md §2.2 'Non-triviality', §3.3 [D]; §5 item 14",
    statement="M = W_oW_v invertible: k identical tokens fit one witness example exactly (residual at rounding level)",
    strategy=memo_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64", "mpmath"),
    backends=("numpy", "torch", "jax"),
    limits=f"d <= 6; k <= {MAX_TOKENS} identical tokens (larger k: out of reach, the mass bound forces it)",
)
def check_single_example(inst, backend):
    """||tau([P, X])_last - y|| <= (1 + kappa) A + R_out + R_y: A = memorizer_attention_bound (the float64
    construction's error in attention space, through the (1 + kappa)-Lipschitz MLP), R_out the backend evaluation's
    rounding (last_output_rounding), R_y the float64 target's (target_rounding)."""
    layer, ds = stored_witness(inst)
    if backend.name == "mpmath":
        return _single_example_mp(inst, backend, layer, ds)
    X, t, Y = _example(inst, ds)
    sm = _memorizer(inst, layer, ds)
    P = sm.prompt()
    out = backend.to_numpy(prompt_tuned(layer_to(backend, layer), backend.asarray(P), backend.asarray(X)))[:, -1]
    resid = float(np.linalg.norm(out - Y[:, -1]))
    u = backend_unit_roundoff(backend)
    att = memorizer_attention_bound(layer.heads[0], ds.x0, X, t, sm, U64, ROOT_XTOL, ROOT_RTOL)
    r_out = last_output_rounding(layer, P, X, u, 0 if backend.dtype == "float64" else 2)
    r_y = target_rounding(layer.mlp, ds.x0 + t, U64)
    floor = (1.0 + mlp_kappa(layer.mlp)) * att + r_out + r_y
    return verify.Evidence(
        observed=resid,
        bound=floor,
        conditions=(_mass_condition(sm),),
        notes=f"k identical tokens p = M^-1(c + s(t - c)); residual vs construction bound {att:.2g} (x (1+kappa)),"
        f" evaluation rounding {r_out:.2g}, target rounding {r_y:.2g}",
        resources={"k": sm.k, "k_lower": sm.k_lower, "s": sm.s, "d": inst["d"]},
    )


def _single_example_mp(inst, backend, layer, ds):
    """The mpmath rung: the same instance, the construction redone at backend.dps digits (same k; s by Newton, M^-1
    by an mpmath LU), the layer evaluated there against the exact target MLP(x0 + t); the floor is the float
    rung's with u = 2^-prec and Newton's tolerance in place of Brent's."""
    ctx = backend.mp
    X, t, _ = _example(inst, ds)
    sm = _memorizer(inst, layer, ds, ctx=ctx)
    out = mp_memorizer_output(ctx, layer, sm, X)
    target = mp_mlp(ctx, layer.mlp, mp_matrix(ctx, ds.x0) + mp_matrix(ctx, t))
    resid = ctx.norm(out - target)
    u = backend_unit_roundoff(backend)
    att = memorizer_attention_bound(layer.heads[0], ds.x0, X, t, sm, u, mp_root_tolerance(ctx, sm.u), 0.0)
    floor = (1.0 + mlp_kappa(layer.mlp)) * att + last_output_rounding(layer, sm.prompt(), X, u)
    return verify.Evidence(
        observed=mp_float(ctx, resid, +1),
        bound=floor,
        conditions=(_mass_condition(sm),),
        precision="mpmath",
        notes=f"mpmath[{backend.dps}]: the construction at {backend.dps} digits; residual vs its bound {floor:.2g}",
        resources={"k": sm.k, "k_lower": sm.k_lower, "s": float(sm.s_mp), "d": inst["d"], "dps": backend.dps},
    )


@verify.mutant("wang23.single_example_memorizable", "one_token_always",
               patch="constructions.single_memorizer.memorizer_length")
def mutant_single_one_token(log_zx, b0, sigma, max_k, *, original):
    """k = 1 always: ignores the mass bound k >= Z_X e^-b(s*)/(s* - 1), so some examples are missed."""
    return 1, original(log_zx, b0, sigma, max_k)[1]


@verify.mutant("wang23.single_example_memorizable", "mass_bound_overstated",
               patch="constructions.single_memorizer.memorizer_length")
def mutant_single_mass_overstated(log_zx, b0, sigma, max_k, *, original):
    """The reported mass bound k_lower 4x too large (e.g. a dropped log(s* - 1)): the memorizer then 'beats' it."""
    k, lower = original(log_zx, b0, sigma, max_k)
    return k, 4.0 * lower + (4.0 if sigma >= 0 else 0.0)


def _root_off(*args, original):
    return original(*args) + 1e-9


verify.patch_mutant(
    "wang23.single_example_memorizable",
    "ray_parameter_off_1e-9",
    {"constructions.single_memorizer.memorizer_root": _root_off,
     "constructions.single_memorizer.memorizer_root_mp": _root_off},
    description="u = log(s - 1) off by 1e-9 (float and mpmath roots): lambda s - 1 ~ 1e-9, far above the floor",
)


# ---------------------------------------------------------------------------------------------
# the prompt mass bound


def with_mass_arrays(inst: dict) -> dict:
    """The head (Gaussian, M invertible a.s.), the query and the prompt, drawn from the seed now and stored."""
    rng = np.random.default_rng(inst["seed"])
    d = inst["d"]
    h = random_head(rng, d, d, inst["weight_scale"])
    require_invertible_values(h)  # the mass bound's hypothesis: reject the draw otherwise
    x = rng.normal(size=d)
    P = rng.normal(0.0, 10.0 ** inst["prompt_log10_scale"], size=(d, inst["m_p"]))
    return {**inst, "Wq": h.Wq, "Wk": h.Wk, "Wv": h.Wv, "Wo": h.Wo, "x": x, "P": P}


mass_instances = materialise(st.fixed_dictionaries(
    {"seed": SEEDS, "d": st.integers(1, 6), "m_p": st.integers(1, 64), "weight_scale": st.floats(0.3, 3.0),
     "prompt_log10_scale": st.floats(-3.0, 1.5)}
), with_mass_arrays)


@verify.claim(
    "wang23.prompt_mass_bound",
    source="wang2023.md §2.3 'Mass bound' [D]; §5 item 15",
    statement="M invertible: Z_P <= m_p exp(g^T M^-1 Att(x, P)) for every prompt P",
    strategy=mass_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64", "mpmath"),
    limits="d <= 6, m_p <= 64, prompt scale 1e-3..30",
    tight=0.9,
)
def check_mass_bound(inst, backend):
    from constructions.transformer import Head

    head = Head(inst["Wq"], inst["Wk"], inst["Wv"], inst["Wo"])
    x, P = inst["x"], inst["P"]
    if backend.name == "mpmath":
        ctx = backend.mp
        gap, log_mp = mp_prompt_mass_gap(ctx, head, x, P)
        floor = mass_gap_rounding(head, x, P, backend_unit_roundoff(backend))
        return verify.Evidence(
            observed=mp_float(ctx, gap, +1),
            bound=mp_float(ctx, log_mp + floor, +1),
            precision="mpmath",
            notes=f"mpmath[{backend.dps}]: log Z_P - g^T M^-1 Att(x,P) = H(softmax) <= log m_p"
            f" (+ rounding {floor:.2g})",
            resources={"m_p": inst["m_p"], "d": inst["d"], "dps": backend.dps},
        )
    gap, log_mp = prompt_mass_gap(head, x, P)
    floor = mass_gap_rounding(head, x, P, U64)
    return verify.Evidence(
        observed=gap,
        bound=log_mp + floor,
        notes=f"log Z_P - g^T M^-1 Att(x,P) = H(softmax) <= log m_p (+ rounding {floor:.2g})",
        resources={"m_p": inst["m_p"], "d": inst["d"]},
    )


def _no_entropy(head, x, P, *, original):
    return original(head, x, P)[0], 0.0


def _mp_no_entropy(ctx, head, x, P, *, original):
    return original(ctx, head, x, P)[0], ctx.mpf(0)


verify.patch_mutant(
    "wang23.prompt_mass_bound",
    "without_log_mp",
    {"constructions.single_memorizer.prompt_mass_gap": _no_entropy,
     "constructions.single_memorizer.mp_prompt_mass_gap": _mp_no_entropy},
    description="Z_P <= exp(g^T M^-1 Att(x, P)): the entropy term log m_p dropped",
)
