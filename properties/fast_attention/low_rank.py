"""The low-rank factorisation Ã = phi(Q)^T psi(K) = P(scale Q K^T) and its entrywise relative error.

as23.low_rank_exact            phi(Q)^T psi(K) = P(scale Q K^T) to rounding; r = C(d+g,g) <= C(2(g+d),2g)  (§4.3)
as23.kernel_relative_error     |Ã/A - 1| <= rho + rounding floor, entrywise                 (§1.3 step 2, §4.5 A(i))
"""

from __future__ import annotations

import numpy as np

import verify
from constructions import fast_attention as fa
from properties.fast_attention._common import (
    BETA_MAX,
    R_MAX,
    U64,
    array_backend,
    draw_qkv,
    eta_of,
    kernel_instances,
    magnitude,
    poly_for,
    to_backend,
    u_of,
)


@verify.claim(
    "as23.low_rank_exact",
    source="Alman & Song 2023 low-rank lemma; tighter count C(d+g,g) (fast_attention.md §1.3 step 2 [D], §4.3)",
    statement="phi(Q)^T psi(K) = P(scale Q K^T) up to (r+3g+4)u M; r = C(d+g,g) <= C(2(g+d),2g)",
    strategy=kernel_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits=f"d <= 5, n <= 40, r <= {R_MAX} (beta <= {BETA_MAX} by d, eps >= 1e-9)",
)
def check_low_rank_exact(inst, backend):
    backend = array_backend(backend)
    Q, K, _, scale, _ = draw_qkv(inst)
    (Qb, Kb), (Q, K) = to_backend(backend, Q, K)
    beta = fa.score_halfwidth(Q, K, scale)
    poly = poly_for(inst, beta)
    g, d = poly.degree, inst["d"]
    plan = fa.feature_plan(d, g)
    phi, psi = fa.feature_maps(plan, poly, Qb, Kb, scale)
    lr = backend.to_numpy(backend.xp.matmul(backend.xp.matrix_transpose(phi), psi))
    direct = fa.poly_kernel(poly, Q, K, scale)
    observed = float(np.max(np.abs(lr - direct) / magnitude(poly, Q, K, scale)))
    r = fa.feature_rank(d, g)
    paper = fa.paper_rank_bound(d, g)
    conditions = (
        verify.Condition("rank", phi.shape[0] == r, f"phi has {phi.shape[0]} rows, C(d+g, g) = {r}"),
        verify.Condition("paper_bound", r <= paper, f"r = {r} > C(2(g+d), 2g) = {paper}"),
    )
    bound = (r + 3 * g + 4) * u_of(backend) + (g * (d + 3) + 4) * U64
    return verify.Evidence(
        observed, bound, notes="max |phi^T psi - P(sQK^T)| / M, M = sum |terms|",
        resources={"d": d, "g": g, "r": int(phi.shape[0]), "paper_rank_bound": paper, "beta": beta},
        conditions=conditions,
    )


def plan_without_multinomials(d, g, *, original):
    """Monomial weights without the multinomial j!/alpha! (the symmetrised tensor counted once)."""
    p = original(d, g)
    return fa.FeaturePlan(p.d, p.g, p.r, p.prefixes, (1,) * p.r, p.degrees)


def plan_one_degree_short(d, g, *, original):
    """Wrong degree: the feature plan built for degree g-1 (the top-degree monomials are missing)."""
    return original(d, max(g - 1, 0))


def top_block_weights_zero(self, coeffs):
    """Dropped term: psi's weights of the top-degree block set to 0 (FeaturePlan.weights with the last degree lost)."""
    pairs = zip(self.degrees.tolist(), self.multinomials, strict=True)
    return np.array([coeffs[j] * m if (j < self.g or self.g == 0) else 0.0 for j, m in pairs], dtype=np.float64)


verify.mutant("as23.low_rank_exact", "drop_multinomial",
              patch="constructions.fast_attention.feature_plan")(plan_without_multinomials)
verify.mutant("as23.low_rank_exact", "plan_one_degree_short",
              patch="constructions.fast_attention.feature_plan")(plan_one_degree_short)
verify.mutant("as23.low_rank_exact", "top_block_weights_zero",
              patch="constructions.fast_attention.FeaturePlan.weights")(top_block_weights_zero)


# --------------------------------------------------------------------------------------------------------------
# as23.kernel_relative_error
# --------------------------------------------------------------------------------------------------------------


@verify.claim(
    "as23.kernel_relative_error",
    source="Alman & Song 2023 (eps, r)-approximation, entrywise relative (fast_attention.md §1.3, §4.5 A(i) [D])",
    statement="max_ij |Ã_ij/A_ij - 1| <= rho(g,beta) + eta, eta = (r+3g+d+8) u kappa, kappa = max M/A <= e^(2 beta)",
    strategy=kernel_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits=f"d <= 5, n <= 40, r <= {R_MAX}; entrywise relative error needs float64 beyond beta ~ 2 (digest §4.4)",
    tight=0.9,
)
def check_kernel_relative_error(inst, backend):
    backend = array_backend(backend)
    Q, K, _, scale, _ = draw_qkv(inst)
    (Qb, Kb), (Q, K) = to_backend(backend, Q, K)
    beta = fa.score_halfwidth(Q, K, scale)
    poly = poly_for(inst, beta)
    rho = poly.rho_bound
    lr = backend.to_numpy(fa.lowrank_kernel(poly, Qb, Kb, scale))
    A = np.exp(scale * (Q @ K.T))
    kappa = float(np.max(magnitude(poly, Q, K, scale) / A))
    eta = eta_of(poly, fa.feature_rank(inst["d"], poly.degree), 0, inst["d"], u_of(backend), kappa)
    observed = float(np.max(np.abs(lr / A - 1.0)))
    return verify.Evidence(
        observed, rho + eta, notes=f"{poly.kind} g={poly.degree}; rho_measured={poly.rho_measured:.3g}",
        resources={"beta": beta, "g": poly.degree, "r": fa.feature_rank(inst["d"], poly.degree), "rho": rho,
                   "eta": eta, "kappa": kappa, "floor": eta},
    )


def coefficients_on_zero_to_beta(kind, g, beta, *, original):
    """Wrong interval: e^x interpolated on [0, beta] instead of [-beta, beta] (negative scores extrapolated)."""
    if beta == 0.0 or g == 0:
        return original(kind, g, beta)
    from numpy.polynomial import Chebyshev, Polynomial

    c = Chebyshev.interpolate(np.exp, g, domain=[0.0, beta]).convert(kind=Polynomial).coef
    return tuple(float(x) for x in c) + (0.0,) * (g + 1 - len(c))


def halfwidth_without_d(Q, K, scale, *, original):
    """beta = scale ||Q||_max ||K||_max, the factor d of the entry bound forgotten: the interval is too short."""
    from array_api_compat import array_namespace

    xp = array_namespace(Q, K)
    return min(original(Q, K, scale), float(scale * xp.max(xp.abs(Q)) * xp.max(xp.abs(K))))


verify.mutant("as23.kernel_relative_error", "interval_zero_to_beta",
              patch="constructions.fast_attention._coefficients")(coefficients_on_zero_to_beta)
verify.mutant("as23.kernel_relative_error", "beta_without_d_factor",
              patch="constructions.fast_attention.score_halfwidth")(halfwidth_without_d)
