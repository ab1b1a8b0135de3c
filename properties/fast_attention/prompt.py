"""hu24.apti_prompt_attention: APTI by AS23 on Z = [P, X] (tokens are columns; hu2024.md §1.4, §2.6, §5 items 25, 28).

||Ỹ - Att([P, X])||_max <= 2 rho/(1 - rho) ||W_O W_V Z||_max, with B = max(B_P, B_X) nondecreasing in L_p.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace
from hypothesis import strategies as st

import verify
from constructions import fast_attention as fa
from constructions import fast_attention_prompt as fp
from constructions.transformer import Head, head_attention, head_to
from properties.fast_attention._common import R_MAX, U64, array_backend, eta_of, kappa_of, to_backend, u_of, unit_array


@st.composite
def prompt_instances(draw):
    """A head (uniform entries of std weight_scale / sqrt(d)), input X in [-x_scale, x_scale], prompt P."""
    d, s = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    L, L_p = draw(st.integers(1, 12)), draw(st.integers(0, 12))
    return {
        "d": d, "s": s, "L": L, "L_p": L_p,
        "weight_scale": draw(st.floats(0.1, 1.5)),
        "x_scale": draw(st.floats(0.0, 1.0)),
        "prompt_scale": draw(st.floats(0.0, 2.0)),
        "log10_eps": draw(st.floats(-8.0, -2.0)),
        "kind": draw(st.sampled_from(fa.KINDS)),
        "Wq": draw(unit_array(s, d)), "Wk": draw(unit_array(s, d)), "Wv": draw(unit_array(s, d)),
        "Wo": draw(unit_array(d, s)),
        "X": draw(unit_array(d, L)), "P": draw(unit_array(d, L_p, -2.0, 2.0)),
    }


def _head(inst) -> Head:
    sd = inst["weight_scale"] / math.sqrt(inst["d"]) * math.sqrt(3.0)  # uniform on [-1, 1] has std 1/sqrt(3)
    return Head(*(np.asarray(inst[k], dtype=np.float64) * sd for k in ("Wq", "Wk", "Wv", "Wo")))


@verify.claim(
    "hu24.apti_prompt_attention",
    source="Hu et al. 2024 APTI / almost-linear inference via AS23 on [P, X] (hu2024.md §1.4, §2.6, §5 items 25, 28)",
    statement="||Ỹ - Att([P,X])||_max <= 2 rho/(1-rho) ||W_O W_V Z||_max; B = max(B_P, B_X) nondecreasing in L_p",
    strategy=prompt_instances(),
    provenance="reconstructed",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits=f"d <= 4, head dim <= 3, L, L_p <= 12, prompt scale <= 2 (beta up to ~30; r <= {R_MAX})",
)
def check_apti(inst, backend):
    backend = array_backend(backend)
    d, s = inst["d"], inst["s"]
    head = _head(inst)
    X = np.asarray(inst["X"], dtype=np.float64) * inst["x_scale"]
    P = np.asarray(inst["P"], dtype=np.float64) * inst["prompt_scale"]
    hb = head_to(backend, head)
    (Pb, Xb), (P, X) = to_backend(backend, P, X)
    eps = 10.0 ** inst["log10_eps"]
    norms = fp.prompt_norms(head, P, X)
    try:
        g = fa.required_degree(norms.beta, eps, inst["kind"])
    except ValueError as exc:
        raise verify.OutOfReach(f"float64 coefficient floor: {exc}") from None
    if fa.feature_rank(s, g) > R_MAX:
        raise verify.OutOfReach(f"rank C(s+g,g) = {fa.feature_rank(s, g)} > {R_MAX} (beta={norms.beta:.3g})")
    res = fp.prompt_polynomial_attention(hb, Pb, Xb, eps=eps, kind=inst["kind"])
    out, cert = backend.to_numpy(res.output), res.certificate
    poly = fa.exp_polynomial(cert.beta, eps, inst["kind"])
    rho = cert.rho
    Z = np.concatenate([P, X], axis=1)
    exact = head_attention(head, Z, Z)
    Qn, Kn = (head.Wq @ Z).T, (head.Wk @ Z).T
    V = (head.Wo @ (head.Wv @ Z)).T
    n = Z.shape[1]
    kappa = kappa_of(poly, Qn, Kn, 1.0)
    eps_a = rho + eta_of(poly, fa.feature_rank(s, poly.degree), n, s, u_of(backend), kappa)
    if eps_a >= 0.5:
        raise verify.OutOfReach(f"{backend.dtype} rounding floor u*kappa ~ {eps_a:.2g} (floating-point breakdown)")
    vmax = float(np.max(np.abs(V)))
    # the last term: absolute rounding in the subnormal range (tiny prompts/weights make V subnormal)
    tiny = float(np.finfo(np.float64).smallest_subnormal)
    bound = 2 * eps_a / (1 - eps_a) * vmax + 4 * (n + d + s) * U64 * vmax + 4 * n * tiny
    observed = float(np.max(np.abs(out - exact)))
    # B = max(B_P, B_X), and prepending prompt columns can only increase B (hu2024 §5 item 28)
    Bs = [fp.prompt_norms(head, P[:, :k], X).B for k in range(inst["L_p"] + 1)]
    # (monotone up to the rounding of W P, whose BLAS blocking changes with the number of columns)
    slack = 1 - 4 * (d + 1) * U64
    conditions = (
        verify.Condition("B_is_max", norms.B == max(norms.B_P, norms.B_X), f"B {norms.B} != max(B_P, B_X)"),
        verify.Condition("B_monotone_in_L_p", all(b2 >= b1 * slack for b1, b2 in zip(Bs, Bs[1:], strict=False)),
                         f"B over prompt lengths: {Bs}"),
        # the backend computes beta from the same P, X in its own summation order: equal up to that rounding
        verify.Condition("certificate_beta", cert.beta >= norms.beta * slack,
                         f"certified beta {cert.beta} < {norms.beta} (1 - {1 - slack:.3g})"),
    )
    return verify.Evidence(
        observed, bound, notes="||Ỹ - W_O W_V Z softmax(Z^T W_K^T W_Q Z)||_max vs 2 rho/(1-rho) ||V||_max",
        resources={"B_P": norms.B_P, "B_X": norms.B_X, "B": norms.B, "beta": norms.beta, "g": poly.degree,
                   "r": fa.feature_rank(s, poly.degree), "n": n},
        conditions=conditions,
    )


def apti_beta_from_input_columns(head, P, X, *, eps, scale=1.0, kind="chebyshev", chunk=None,
                                 memory_budget=fa.DEFAULT_MEMORY_BUDGET):
    """Degree chosen from the input tokens' logits only, ignoring the soft-prompt-induced keys and queries."""
    xp = array_namespace(P, X)
    Z = xp.concat([P, X], axis=1)
    Q = xp.matrix_transpose(xp.matmul(head.Wq, Z))
    K = xp.matrix_transpose(xp.matmul(head.Wk, Z))
    V = xp.matrix_transpose(xp.matmul(head.Wo, xp.matmul(head.Wv, Z)))
    norms = fp.prompt_norms(head, P, X, scale=scale)
    beta_x = fp.prompt_norms(head, P[:, :0], X, scale=scale).beta  # the defect: input columns only
    poly, plan, chunk = fa.plan_attention(Z.shape[1], Q.shape[1], V.shape[1], beta_x, eps, kind=kind, chunk=chunk,
                                          memory_budget=memory_budget)
    out = fa.lowrank_apply(plan, poly, Q, K, V, scale, chunk)
    rho = poly.rho_bound
    cert = fa.AttentionCertificate(
        n=Z.shape[1], d=Q.shape[1], scale=float(scale), beta=beta_x, kind=kind, eps=float(eps), degree=poly.degree,
        rank=plan.r, paper_rank_bound=fa.paper_rank_bound(Q.shape[1], poly.degree), rho=rho,
        rho_measured=poly.rho_measured, v_max=float(xp.max(xp.abs(V))), output_bound=2 * rho / (1 - rho), chunk=chunk)
    return fp.PromptAttention(xp.matrix_transpose(out), cert, norms)


verify.mutant("hu24.apti_prompt_attention", "beta_from_input_columns_only",
              patch="constructions.fast_attention_prompt.prompt_polynomial_attention")(apti_beta_from_input_columns)
