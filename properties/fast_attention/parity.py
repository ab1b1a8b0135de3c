"""as23.backend_parity: the FlashAttention test rule for the chunked polynomial attention (fast_attention.md §4.5 B).

err(backend, dtype) <= 2 err(naive quadratic, same dtype) + fwd_atol, both against the numpy float64 oracle.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace

import verify
from constructions import fast_attention as fa
from constructions.precision import unit_roundoff
from properties.fast_attention._common import (
    array_backend,
    draw_qkv,
    kernel_strategy,
    magnitude,
    poly_for,
)

parity_instances = kernel_strategy(n=(2, 64), d=(1, 4), beta_cap=lambda d: 2.0, log10_eps=(-7.0, -2.0),
                                   dtypes=("float32", "float64"))


@verify.claim(
    "as23.backend_parity",
    source="FlashAttention-2/3 test rule (fast_attention.md §3, §4.5 B [V]); subject: chunked polynomial attention",
    statement="max|out_backend - out_np64| <= 2 max|naive_same_dtype - out_np64| + (ceil(n/chunk)+1) u max_i w_i, "
    "w_i = (M_i|V| + |o_i| M_i 1)/(Ã 1)_i",
    strategy=parity_instances,
    provenance="derived",
    precision="float32",
    ladder=("float32",),
    rescue=False,
    backends=("numpy", "torch", "jax"),
    limits="d <= 4, beta <= 2 (float32 breakdown of the kernel sets in near B ~ 2-3, digest §4.4), n <= 64",
)
def check_backend_parity(inst, backend):
    """FlashAttention rule (digest §4.5 B): err(subject) <= 2 err(naive, same dtype) + fwd_atol, both vs float64.

    The subject is the chunked per-degree ``lowrank_apply`` on the backend at the instance's dtype; the oracle is the
    same polynomial kernel in numpy float64 (one chunk). The naive term is the quadratic evaluation D_P^-1 P V of that
    kernel in numpy at the same dtype, both associations (FA's reorder_ops analogue). fwd_atol is FA3's "rounding at
    the output's magnitude", derived for this algorithm: the normalised output o_i = num_i / den_i sums terms whose
    absolute sum is M_i|V| resp. M_i 1 (M_ik = sum of |terms| of Ã_ik), so one rounding of the sums moves o_i by at
    most u (M_i|V| + |o_i| M_i 1) / den_i =: u w_i; FA3 allows 2 such roundings, and the chunked key accumulation
    adds ceil(n/chunk) - 1 sequential additions of partial sums that the naive evaluation does not make:
    fwd_atol = (ceil(n/chunk) + 1) u max_i w_i (w_i <= kappa ||V||_max). It is the whole bound where the naive
    error happens to be 0 (beta = 0, tiny n), and never replaces the naive term.
    """
    backend = array_backend(backend)
    sub = backend.with_(dtype=inst["dtype"])
    dt = np.float32 if inst["dtype"] == "float32" else np.float64
    Q, K, V, scale, _ = draw_qkv(inst)
    Q, K, V = (a.astype(dt).astype(np.float64) for a in (Q, K, V))  # reference and subject see the same data
    beta = fa.score_halfwidth(Q, K, scale)
    poly = poly_for(inst, beta)
    plan = fa.feature_plan(inst["d"], poly.degree)
    n, chunk = inst["n"], min(inst["chunk"], inst["n"])
    oracle = fa.lowrank_apply(plan, poly, Q, K, V, scale, n)
    out = sub.to_numpy(fa.lowrank_apply(plan, poly, *(sub.asarray(a) for a in (Q, K, V)), scale, chunk))
    q, k, v = (a.astype(dt) for a in (Q, K, V))
    fq, fk = fa.feature_maps(plan, poly, q, k, scale)
    va = np.concatenate([v, np.ones((n, 1), dt)], axis=1)
    naive = max(float(np.max(np.abs(y[:, :-1] / y[:, -1:] - oracle))) for y in ((fq.T @ fk) @ va, fq.T @ (fk @ va)))
    M = magnitude(poly, Q, K, scale)
    den = fa.lowrank_kernel(poly, Q, K, scale).sum(axis=1)  # float64 row sums of Ã (> 0: rho < 1)
    w = (M @ np.max(np.abs(V), axis=1) + np.max(np.abs(oracle), axis=1) * M.sum(axis=1)) / den
    u = unit_roundoff(inst["dtype"])
    fwd_atol = (math.ceil(n / chunk) + 1) * u * float(np.max(w))
    observed = float(np.max(np.abs(out - oracle)))
    return verify.Evidence(
        observed, 2.0 * naive + fwd_atol,
        notes=f"{sub.label} vs numpy float64 oracle; naive {inst['dtype']} error {naive:.3g}, fwd_atol {fwd_atol:.3g}",
        resources={"dtype": inst["dtype"], "device": sub.device, "naive_err": naive, "fwd_atol": fwd_atol,
                   "beta": beta, "g": poly.degree, "r": plan.r, "chunks": math.ceil(n / chunk)},
    )


def _tf32(x):
    """Round to 10 explicit mantissa bits (what TF32 matmul inputs keep), in x's namespace."""
    xp = array_namespace(x)
    e = xp.floor(xp.log2(xp.where(x == 0, xp.ones_like(x), xp.abs(x))))
    step = 2.0 ** (e - 10)
    return xp.round(x / step) * step


def apply_with_tf32_inputs(plan, poly, Q, K, V, scale, chunk, *, original):
    """TF32 left on: float32 inputs of the matmuls rounded to TF32's 10-bit mantissa (the subject's dtype only)."""
    if "float32" not in str(Q.dtype):
        return original(plan, poly, Q, K, V, scale, chunk)
    return original(plan, poly, _tf32(Q), _tf32(K), _tf32(V), scale, chunk)


verify.mutant("as23.backend_parity", "inputs_rounded_to_tf32",
              patch="constructions.fast_attention.lowrank_apply")(apply_with_tf32_inputs)
