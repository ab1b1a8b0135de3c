"""The normalised output of polynomial attention: the AS23 error lemma and two exact invariants.

as23.output_error              ||out - Att||_max <= 2 rho/(1-rho) ||V||_max                  (§1.3 step 4, §4.5 A(ii))
as23.zero_query_mean           Q = 0 => out = mean(V) exactly, any degree                    (§4.3 invariants)
as23.permutation_equivariance  out(ΠQ, ΣK, ΣV) = Π out(Q, K, V)                              (§4.3 invariants)
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace

import verify
from constructions import fast_attention as fa
from properties.fast_attention._common import (
    R_MAX,
    U64,
    array_backend,
    draw_qkv,
    eta_of,
    kappa_of,
    kernel_instances,
    kernel_strategy,
    poly_for,
    to_backend,
    u_of,
)
from properties.fast_attention.polynomial import top_coefficient_dropped


@verify.claim(
    "as23.output_error",
    source="Alman & Song 2023 normalisation lemma, constant 2/(1-eps) (fast_attention.md §1.3 step 4 [D], §4.5 A(ii))",
    statement="||D̃^-1 Ã V - D^-1 A V||_max <= 2(rho+eta)/(1-rho-eta) ||V||_max (+ reference floor)",
    strategy=kernel_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits=f"d <= 5, n <= 40, r <= {R_MAX}; the sharp constant is 1/(1-eps) (ratio <= ~0.5 at best)",
)
def check_output_error(inst, backend):
    backend = array_backend(backend)
    Q, K, V, scale, _ = draw_qkv(inst)
    beta = fa.score_halfwidth(Q, K, scale)
    poly = poly_for(inst, beta)
    if inst["adversarial_v"]:
        # v_j = sign of row 0's kernel error: the errors all push the output the same way
        rel = fa.lowrank_kernel(poly, Q[:1], K, scale)[0] / np.exp(scale * (K @ Q[0]))
        V[:, 0] = np.where(rel >= 1.0, 1.0, -1.0)
    (Qb, Kb, Vb), (Q, K, V) = to_backend(backend, Q, K, V)
    n, d = Q.shape
    chunk = min(inst["chunk"], n)
    plan = fa.feature_plan(d, poly.degree)
    out = backend.to_numpy(fa.lowrank_apply(plan, poly, Qb, Kb, Vb, scale, chunk))
    exact = fa.exact_attention(Q, K, V, scale=scale)
    vmax = float(np.max(np.abs(V)))
    kappa = kappa_of(poly, Q, K, scale)
    eps_a = poly.rho_bound + eta_of(poly, plan.r, n, d, u_of(backend), kappa)
    if eps_a >= 0.5:
        raise verify.OutOfReach(f"{backend.dtype} rounding floor u*kappa ~ {eps_a:.2g} (floating-point breakdown)")
    bound = 2 * eps_a / (1 - eps_a) * vmax + 4 * (n + d) * U64 * vmax
    lr_rel = np.abs(fa.lowrank_kernel(poly, Q, K, scale) * np.exp(-scale * (Q @ K.T)) - 1).max()
    return verify.Evidence(
        float(np.max(np.abs(out - exact))), bound,
        notes=f"measured eps_A = {lr_rel:.3g} vs rho = {poly.rho_bound:.3g}",
        resources={"beta": beta, "g": poly.degree, "r": plan.r, "rho": poly.rho_bound, "eps_A": float(lr_rel),
                   "chunk": chunk},
    )


def apply_dropping_last_key_chunk(plan, poly, Q, K, V, scale, chunk, *, original):
    """Key accumulation that skips a final partial chunk (range(0, n - n % chunk, chunk))."""
    n = K.shape[0]
    keep = (n // chunk) * chunk if n % chunk and n > chunk else n
    return original(plan, poly, Q, K[:keep, :], V[:keep, :], scale, chunk)


verify.mutant("as23.output_error", "drops_last_key_chunk", patch="constructions.fast_attention.lowrank_apply",
              strategy=kernel_strategy(n=(10, 40), chunk=(3, 9)))(apply_dropping_last_key_chunk)
# dropping the top coefficient is visible in the output at small beta, few tokens, Taylor, adversarial rows
verify.mutant("as23.output_error", "top_coefficient_dropped", patch="constructions.fast_attention._coefficients",
              strategy=kernel_strategy(n=(2, 4), d=(1, 3), dv=(1, 1), beta_cap=lambda d: 0.5, kinds=("taylor",),
                                       adversarial=True, adversarial_v=True, chunk=(1, 4)))(top_coefficient_dropped)


# --------------------------------------------------------------------------------------------------------------
# invariants
# --------------------------------------------------------------------------------------------------------------


@verify.claim(
    "as23.zero_query_mean",
    source="AS23 algorithm, all-equal scores (fast_attention.md §4.3 invariant; xformers all-ones analogue) [D]",
    statement="Q = 0 => polynomial attention = mean of V rows, any degree, to (2n+6)u ||V||_max",
    strategy=kernel_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits=f"d <= 5, n <= 40, r <= {R_MAX}",
)
def check_zero_query(inst, backend):
    backend = array_backend(backend)
    _, K, V, scale, _ = draw_qkv(inst)
    Q = np.zeros_like(K)
    (Qb, Kb, Vb), (_, K, V) = to_backend(backend, Q, K, V)
    # the polynomial for K's own range (at least beta = 1e-3, so that the degree is > 0 and the test has content)
    beta = max(fa.score_halfwidth(K, K, scale), 1e-3)
    poly = poly_for(inst, beta)
    plan = fa.feature_plan(inst["d"], poly.degree)
    out = fa.lowrank_apply(plan, poly, Qb, Kb, Vb, scale, min(inst["chunk"], inst["n"]))
    n = inst["n"]
    vmax = float(np.max(np.abs(V)))
    observed = float(np.max(np.abs(backend.to_numpy(out) - V.mean(axis=0, keepdims=True))))
    return verify.Evidence(observed, (2 * n + 6) * u_of(backend) * vmax + n * U64 * vmax,
                           resources={"g": poly.degree, "r": plan.r, "P(0)": poly.coeffs[0]})


def apply_normalised_by_n(plan, poly, Q, K, V, scale, chunk, *, original):
    """Divide by n instead of the approximate row sums (assumes P(0) = 1): out scaled by P(0)."""
    return original(plan, poly, Q, K, V, scale, chunk) * poly.coeffs[0]


verify.mutant("as23.zero_query_mean", "normalise_by_n",
              patch="constructions.fast_attention.lowrank_apply")(apply_normalised_by_n)


@verify.claim(
    "as23.permutation_equivariance",
    source="AS23 algorithm is token-wise + sums over keys (fast_attention.md §4.3 invariant) [D]",
    statement="out(ΠQ, ΣK, ΣV) = Π out(Q, K, V) up to 4 eta ||V||_max (reduction order only)",
    strategy=kernel_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits=f"d <= 5, n <= 40, r <= {R_MAX}",
)
def check_permutation(inst, backend):
    backend = array_backend(backend)
    Q, K, V, scale, _ = draw_qkv(inst)
    (Qb, Kb, Vb), (Q, K, V) = to_backend(backend, Q, K, V)
    beta = fa.score_halfwidth(Q, K, scale)
    poly = poly_for(inst, beta)
    plan = fa.feature_plan(inst["d"], poly.degree)
    n = inst["n"]
    pi, sigma = np.asarray(inst["perm_q"]), np.asarray(inst["perm_k"])
    xp, chunk = backend.xp, min(inst["chunk"], n)
    pi_b, sg_b = (xp.asarray(p, device=fa.array_device(Qb)) for p in (pi, sigma))
    out = backend.to_numpy(fa.lowrank_apply(plan, poly, Qb, Kb, Vb, scale, chunk))
    out_p = backend.to_numpy(fa.lowrank_apply(plan, poly, xp.take(Qb, pi_b, axis=0), xp.take(Kb, sg_b, axis=0),
                                              xp.take(Vb, sg_b, axis=0), scale, chunk))
    kappa = kappa_of(poly, Q, K, scale)
    eta = eta_of(poly, plan.r, n, inst["d"], u_of(backend), kappa)
    if eta >= 0.25:
        raise verify.OutOfReach(f"{backend.dtype} rounding floor eta = {eta:.2g}: equivariance is below rounding")
    vmax = float(np.max(np.abs(V)))
    return verify.Evidence(float(np.max(np.abs(out_p - out[pi]))), 4 * eta / (1 - 2 * eta) * vmax,
                           resources={"g": poly.degree, "r": plan.r, "kappa": kappa})


def apply_values_reversed(plan, poly, Q, K, V, scale, chunk, *, original):
    """Values paired with the keys in reverse order (V[::-1]): the output depends on the token order."""
    xp = array_namespace(V)
    return original(plan, poly, Q, K, xp.flip(V, axis=0), scale, chunk)


verify.mutant("as23.permutation_equivariance", "values_misaligned",
              patch="constructions.fast_attention.lowrank_apply")(apply_values_reversed)
