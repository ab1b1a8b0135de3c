"""as23.exp_polynomial: |P(x)/e^x - 1| <= rho(g, beta) on [-beta, beta] (AS23 Lemma 3.1 / AA22; fast_attention.md §4.2).

Taylor rho = e^b b^(g+1)/(g+1)!, Chebyshev rho = 2 (b/2)^(g+1) e^(2b)/(g+1)!, plus the float64 coefficient floor.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import verify
from constructions import fast_attention as fa
from properties.fast_attention._common import u_of

poly_instances = st.fixed_dictionaries(
    {
        "beta": st.floats(0.0, 12.0),
        "log10_eps": st.floats(-12.0, -1.0),
        "kind": st.sampled_from(fa.KINDS),
        "points": st.integers(257, 2049),
    }
)


def _horner(ctx, coeffs, x):
    """sum_k coeffs[k] x^k in ctx's precision (mpmath's polyval changed its coefficient order in 1.4)."""
    acc = ctx.mpf(0)
    for c in reversed(coeffs):
        acc = acc * x + c
    return acc


@verify.claim(
    "as23.exp_polynomial",
    source="Alman & Song 2023 Lemma 3.1 via Aggarwal & Alman 2022 (fast_attention.md §1.3 step 1, §4.2 [D])",
    statement="sup_|x|<=b |P(x)/e^x - 1| <= rho(g,b): Taylor e^b b^(g+1)/(g+1)!, Chebyshev 2(b/2)^(g+1)e^(2b)/(g+1)!",
    strategy=poly_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64", "mpmath"),
    backends=("numpy", "torch", "jax"),
    limits="beta <= 12, eps >= max(1e-12, 16 u e^(2 beta)): g <= ~45; grid <= 2049 points (lower-bounds the sup)",
    tight=0.9,
)
def check_exp_polynomial(inst, backend):
    beta = inst["beta"]
    eps = max(10.0 ** inst["log10_eps"], 16 * fa.coefficient_floor(beta))
    poly = fa.exp_polynomial(beta, eps, inst["kind"])
    bound = poly.rho_bound
    certified = verify.Condition("certified", poly.rho_bound <= eps,
                                 f"rho_bound {poly.rho_bound:.3g} of degree {poly.degree} exceeds eps {eps:.3g}")
    if backend.name in ("mpmath", "arb"):
        ctx = backend.mp
        xs = [ctx.mpf(beta) * (2 * ctx.mpf(i) / (inst["points"] - 1) - 1) for i in range(inst["points"])]
        cs = [ctx.mpf(c) for c in poly.coeffs]
        worst = max(abs(_horner(ctx, cs, x) * ctx.exp(-x) - 1) for x in xs)
        return verify.Evidence(float(worst), bound, resources={"g": poly.degree, "dps": ctx.dps},
                               conditions=(certified,))
    xp = backend.xp
    x64 = np.linspace(-beta, beta, inst["points"])
    xb = backend.asarray(x64)
    err = backend.to_numpy(xp.abs(poly(xb) * xp.exp(-xb) - 1.0))
    x = backend.to_numpy(xb)
    u = u_of(backend)
    # Horner: (2g + 2) u sum|c_j||x|^j; exp and the product: 3u(1 + |x|) relative (from the inputs x and c_j)
    floor = (2 * poly.degree + 2) * u * fa.horner(tuple(abs(c) for c in poly.coeffs), np.abs(x), np) * np.exp(-x)
    floor = float(np.max(floor + 3 * u * (1 + np.abs(x))))
    return verify.Evidence(
        float(np.max(err)), bound + floor,
        notes=f"{poly.kind} degree {poly.degree}: measured {poly.rho_measured:.3g} vs a-priori {poly.rho_bound:.3g}",
        resources={"g": poly.degree, "beta": beta, "eps": eps, "rho_bound": bound, "floor": floor},
        conditions=(certified,),
    )


def top_coefficient_dropped(kind, g, beta, *, original):
    """Dropped term: the degree-g coefficient set to 0 (a degree g-1 polynomial certified as degree g)."""
    c = original(kind, g, beta)
    return c[:-1] + (0.0,) if g > 0 else c


def chebyshev_a0_not_halved(kind, g, beta, *, original):
    """Wrong Chebyshev coefficient: a_0 = (2/m) sum f(x_k) left unhalved (the classic series bug)."""
    c = original(kind, g, beta)
    if kind != "chebyshev" or beta == 0.0:
        return c
    m = g + 1
    a0_half = float(np.mean(np.exp(beta * np.cos(np.pi * (np.arange(m) + 0.5) / m))))
    return (c[0] + a0_half,) + c[1:]


def log_rho_without_exponential(kind, g, beta, *, original):
    """Wrong error-bound constant: rho without its e^beta (Taylor) / e^(2 beta) (Chebyshev) factor (x >= 0 only)."""
    lr = original(kind, g, beta)
    return lr - (beta if kind == "taylor" else 2 * beta)


verify.mutant("as23.exp_polynomial", "top_coefficient_dropped",
              patch="constructions.fast_attention._coefficients")(top_coefficient_dropped)
verify.mutant("as23.exp_polynomial", "chebyshev_a0_not_halved",
              patch="constructions.fast_attention._coefficients")(chebyshev_a0_not_halved)
verify.mutant("as23.exp_polynomial", "bound_without_exponential_factor",
              patch="constructions.fast_attention.log_rho_bound")(log_rho_without_exponential)


