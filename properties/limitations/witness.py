"""Claim wang23.witness_bound: no prompt memorizes the two-example witness dataset (Wang et al. 2023 Thm 2).

    h = 1, kappa < 1: every prompt P (any m_p) has max_i ||tau([P, X_i])_last - y_i0|| >= (1 - kappa) alpha D.

observed = the certificate (recomputed at 30+ digits for the stored data), bound = the smallest max-error of the
tried prompts plus its rounding bound; the zero-mass prompt attains the certificate for the tight MLP.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import verify
from constructions.precision import backend_unit_roundoff, gamma
from constructions.prompt_adversary import best_prompt
from constructions.single_layer import last_output_rounding, score_vector
from constructions.single_memorizer import single_example_memorizer
from constructions.witness import mp_witness_errors, witness_certificate_lower, witness_errors, zero_mass_prompt
from properties.limitations._common import layer_params, layer_to, materialise, stored_witness, with_witness_arrays


def with_witness_prompts(inst: dict) -> dict:
    """Random candidate prompts, drawn now and stored: 6 Gaussian ones of scale 10^prompt_log10_scale, 2 aligned with
    +-g (mass-extreme) and one BFGS start."""
    layer, ds = stored_witness(inst)
    rng = np.random.default_rng(inst["rest_seed"])
    d, mp = inst["d"], inst["m_p"]
    scale = 10.0 ** inst["prompt_log10_scale"]
    g = score_vector(layer.heads[0], ds.x0)
    gh = g / max(float(np.linalg.norm(g)), np.finfo(np.float64).tiny)
    prompts = [rng.normal(0.0, scale, size=(d, mp)) for _ in range(6)]
    prompts += [sgn * scale * gh[:, None] + 0.3 * scale * rng.normal(size=(d, mp)) for sgn in (1.0, -1.0)]
    return {**inst, "prompts": prompts, "start": rng.normal(0.0, 1.0, size=(d, min(mp, 8)))}


witness_params = {**layer_params, "m_p": st.integers(1, 64), "prompt_log10_scale": st.floats(-2.0, 2.0),
                  "adversary": st.booleans()}
witness_instances = materialise(st.fixed_dictionaries(witness_params), with_witness_arrays, with_witness_prompts)


def witness_prompts(inst, layer, ds) -> list:
    """The stored random prompts, the zero-mass token (attains the bound for the tight MLP) and, when
    inst["adversary"], the BFGS prompts from the stored start and from the two single-example memorizers."""
    prompts = [zero_mass_prompt(layer, ds)] + list(inst["prompts"])
    if inst["adversary"]:
        starts = [inst["start"]]
        for t, X in ((ds.t1, ds.X1), (ds.t2, ds.X2)):
            try:
                starts.append(single_example_memorizer(layer.heads[0], ds.x0, X, t, max_k=64).prompt())
            except ValueError:
                pass  # M singular (head size 1) or k > 64: start from the random prompt only
        prompts += best_prompt(layer, ((ds.X1, ds.Y1[:, -1]), (ds.X2, ds.Y2[:, -1])), starts)
    return prompts


def _resources(inst, ds, best_P, prompts, **extra):
    return {"d": inst["d"], "m_p": inst["m_p"], "best_m_p": best_P.shape[1], "prompts": len(prompts),
            "adversary": str(bool(inst["adversary"])), "D": ds.D, **extra}


def _error_floor(layer, ds, P, best, u, extra) -> float:
    """Rounding bound of a computed max-error: the layer output (last_output_rounding), the targets' conversion to
    the backend (extra u |y|), the subtraction and the 2-norm (gamma_{d+2} relative to the error itself)."""
    floor = 0.0
    for X, Y in ((ds.X1, ds.Y1), (ds.X2, ds.Y2)):
        out_err = last_output_rounding(layer, P, X, u, extra) + extra * u * float(np.linalg.norm(Y[:, -1]))
        floor = max(floor, out_err + gamma(ds.X1.shape[0] + 2, u) * best)
    return floor


@verify.claim(
    "wang23.witness_bound",
    source="Wang et al. 2023 Thm 2 [R]; derived version wang2023.md §2.2 / §5 item 12 [D]",
    statement="h = 1, kappa < 1: every prompt P (any m_p) has max_i ||tau([P,X_i])_last - y_i|| >= (1-kappa) alpha D",
    strategy=witness_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64", "mpmath"),
    backends=("numpy", "torch", "jax"),
    limits="d <= 6, m_p <= 64, prompt scale 1e-2..1e2; adversary: BFGS (60 its) from 3 starts incl. the memorizers",
    tight=0.9,
)
def check_witness_bound(inst, backend):
    layer, ds = stored_witness(inst)
    prompts = witness_prompts(inst, layer, ds)
    if backend.name == "mpmath":
        return _witness_check_mp(inst, backend, layer, ds, prompts)
    lb = layer_to(backend, layer)
    arrs = [backend.asarray(a) for a in (ds.X1, ds.X2, ds.Y1, ds.Y2)]
    best, best_P = math.inf, prompts[0]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for P in prompts:
            err = max(witness_errors(lb, ds, backend.asarray(P), *arrs))
            if not err >= best:  # NaN also lands here: it is reported, not hidden
                best, best_P = err, P
    cert, defect = witness_certificate_lower(layer, ds)  # exact for the stored data, rounded down
    u = backend_unit_roundoff(backend)
    floor = _error_floor(layer, ds, best_P, best, u, 0 if backend.dtype == "float64" else 2) if math.isfinite(best) \
        else 0.0
    return verify.Evidence(
        observed=cert,
        bound=best + floor,
        notes=f"certificate (1-kappa) alpha D (at 30 digits, minus the stored targets' defect {defect:.2g}) vs the"
        f" smallest max-error of {len(prompts)} prompts (+ its rounding bound {floor:.2g})",
        resources=_resources(inst, ds, best_P, prompts),
    )


def _witness_check_mp(inst, backend, layer, ds, prompts):
    """The mpmath rung: the same layer, dataset and prompts, evaluated at backend.dps digits; the floor is the float
    rung's with u = 2^-prec, the certificate handed over rounded down and the bound rounded up."""
    from constructions.single_layer import mp_float

    ctx = backend.mp
    best, best_P = None, prompts[0]
    for P in prompts:
        err = max(mp_witness_errors(ctx, layer, ds, P))
        if best is None or err < best:
            best, best_P = err, P
    cert, defect = witness_certificate_lower(layer, ds, dps=max(30, backend.dps))
    u = backend_unit_roundoff(backend)
    floor = _error_floor(layer, ds, best_P, float(best), u, 0)
    return verify.Evidence(
        observed=cert,
        bound=mp_float(ctx, best + floor, +1),
        precision="mpmath",
        notes=f"mpmath[{backend.dps}]: certificate (minus the stored targets' defect {defect:.2g}) vs the smallest"
        f" max-error of the same {len(prompts)} prompts (+ its rounding bound {floor:.2g} at u = {u:.2g})",
        resources=_resources(inst, ds, best_P, prompts, dps=backend.dps),
    )


@verify.mutant("wang23.witness_bound", "no_contraction_factor", patch="constructions.witness.witness_certificate_lower")
def mutant_witness_no_contraction(layer, ds, dps=30, *, original):
    """The certificate alpha D, forgetting that the MLP can shrink errors by 1 - kappa."""
    cert, defect = original(layer, ds, dps)
    return (cert + defect) / (1.0 - ds.kappa) - defect, defect


def _inward_targets(c1, c2, alpha):
    """t_i = c_i - min(alpha, 0.4)(c_i - c_j): targets between c1 and c2 (a sign slip); a 2-token prompt fits them."""
    a = min(float(alpha), 0.4)
    return c1 - a * (c1 - c2), c2 - a * (c2 - c1)


verify.patch_mutant(
    "wang23.witness_bound",
    "targets_inward",
    {"constructions.witness.witness_targets": _inward_targets},
    strategy=materialise(st.fixed_dictionaries(
        {**layer_params, "m_p": st.integers(2, 6), "prompt_log10_scale": st.just(0.0), "adversary": st.just(True)}
    ), with_witness_arrays, with_witness_prompts),
    description="t_i between c1 and c2 (sign slip in t_i = c_i + alpha (c_i - c_j)): a 2-token prompt fits both",
)

