"""Claims: limitations of prompt tuning (Wang et al. 2023 §5–6; wang2023.md §2.2–2.4, §3.3–3.5, §5 items 2, 12–20).

Lower-bound claims report observed = the theorem's certificate and bound = the smallest error any tried prompt
reached, so ratio = certificate / best error <= 1 and a ratio near 1 means the adversary came close to the floor.
The adversary is a numpy BFGS search over prompts with the analytic gradient of the layer (started from the
single-example memorizers and random prompts), on every backend; its prompts are then evaluated on the backend.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from scipy.optimize import minimize

import verify
from constructions.limitations import (
    affine_mlp,
    attend,
    causal_certificate,
    causal_inverse,
    certificate_A,
    certificate_B,
    inverse_iterations,
    last_output_rounding,
    lora_rank1,
    mlp_apply,
    mlp_eval_rounding,
    mlp_inverse,
    mp_float,
    mp_mlp_kappa,
    mp_mlp_pair_norms,
    mp_prompt_mass_gap,
    mp_witness_errors,
    prompt_lambdas,
    prompt_mass_gap,
    random_causal_stack,
    rank_lower_bound,
    rank_obstruction_dataset,
    require_invertible_values,
    score_vector,
    single_example_memorizer,
    two_head_counterexample,
    value_matrix,
    with_w2_update,
    witness_certificate_lower,
    witness_dataset,
    witness_errors,
)
from constructions.transformer import (
    MLP,
    Layer,
    head_to,
    mlp_to,
    prompt_tuned,
    random_contractive_mlp,
    random_head,
    spectral_norm,
)

_EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}
_MAX_TOKENS = 4096  # identical-token memorizers longer than this are out of reach (memory/time per instance)


def _layer_to(backend, layer: Layer) -> Layer:
    return Layer(tuple(head_to(backend, h) for h in layer.heads), mlp_to(backend, layer.mlp), layer.hard, layer.causal)


def _logu(lo: float, hi: float):
    """Log-uniform floats in [10^lo, 10^hi] (Hypothesis can still shrink towards the ends)."""
    return st.floats(lo, hi).map(lambda e: float(10.0**e))


# ---------------------------------------------------------------------------------------------
# the single-layer witness (Theorem 2) and its adversary


layer_params = {
    "seed": st.integers(0, 2**32 - 1),
    "d": st.integers(2, 6),
    "full_head": st.booleans(),
    "kappa": st.floats(0.05, 0.95),
    "alpha": st.floats(0.05, 5.0),
    "tight": st.booleans(),
    "spread": st.floats(0.5, 4.0),
    "weight_scale": st.floats(0.3, 3.0),
}

witness_instances = st.fixed_dictionaries(
    {**layer_params, "m_p": st.integers(1, 64), "prompt_log10_scale": st.floats(-2.0, 2.0), "adversary": st.booleans()}
)


def _witness_layer(inst, rng=None):
    """A single-head layer; tight=True uses the MLP z -> (1 - kappa) z (attains the lower Lipschitz constant)."""
    rng = rng or np.random.default_rng(inst["seed"])
    d = inst["d"]
    head = random_head(rng, d, d if inst["full_head"] else 1, inst["weight_scale"])
    if inst["tight"]:
        mlp = affine_mlp(rng, d, 2 * d, inst["kappa"], sign=-1.0, radius=10.0 * (1 + inst["spread"]))
    else:
        mlp = random_contractive_mlp(rng, d, 2 * d, inst["kappa"])
    return rng, Layer((head,), mlp)


def _prompt_objective(layer: Layer, examples, power: int = 1):
    """f(P) = (sum_i ||e_i||^(2 power))^(1/power) over examples (X_i, y_i) scored at X_i's last column, with its
    analytic gradient (numpy float64). power = 1: the summed squared error; power > 1: a smooth max of them."""
    head = layer.heads[0]
    M = value_matrix(head)
    W1, b1, W2, b2 = (np.asarray(a, dtype=np.float64) for a in (layer.mlp.W1, layer.mlp.b1, layer.mlp.W2, layer.mlp.b2))
    examples = [(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)) for X, y in examples]
    gs = [score_vector(head, X[:, -1]) for X, _ in examples]
    d = M.shape[0]

    def f(flat):
        P = flat.reshape(d, -1)
        mp = P.shape[1]
        parts = []
        for (X, y), g in zip(examples, gs, strict=True):
            S = np.concatenate([P, X], axis=1)
            s = S.T @ g
            w = np.exp(s - s.max())
            w /= w.sum()
            o = M @ (S @ w)
            h = W1 @ (X[:, -1] + o) + b1
            e = X[:, -1] + o + W2 @ np.maximum(h, 0.0) + b2 - y
            parts.append((g, w, o, h, e))
        sq = np.array([p[4] @ p[4] for p in parts])
        tot = float((sq**power).sum())
        if tot == 0.0:
            return 0.0, np.zeros_like(flat)
        val = tot ** (1.0 / power)
        grad = np.zeros((d, mp))
        for (g, w, o, h, e), q in zip(parts, sq, strict=True):
            dfde = val / tot * q ** (power - 1) * 2.0 * e
            gam = dfde + W1.T @ ((h > 0) * (W2.T @ dfde))  # J^T dfde, J = I + W2 diag(h > 0) W1
            wP = w[:mp]
            grad += np.outer(M.T @ gam, wP) + np.outer(g, wP * ((M @ P - o[:, None]).T @ gam))
        return val, grad.ravel()

    return f


def _quasi_newton(fun, P0, maxiter: int):
    """BFGS on the flattened prompt with the analytic gradient (scipy's dense BFGS: at these sizes it is as strong
    as L-BFGS-B and avoids that routine's BLAS calls, which stall for seconds on a loaded multi-threaded OpenBLAS)."""
    d = P0.shape[0]
    try:
        x = minimize(fun, P0.ravel(), jac=True, method="BFGS", options={"maxiter": maxiter}).x
    except (FloatingPointError, ValueError, OverflowError):
        return P0
    return x.reshape(d, -1) if np.all(np.isfinite(x)) else P0


def _witness_prompts(inst, layer, ds, rng):
    """Candidate prompts: the zero-mass token that attains the bound for the tight MLP, random ones (Gaussian and
    mass-extreme ones aligned with +-g) and, when inst["adversary"], BFGS-optimised ones."""
    d, mp = inst["d"], inst["m_p"]
    scale = 10.0 ** inst["prompt_log10_scale"]
    g = score_vector(layer.heads[0], ds.x0)
    gn = max(float(np.linalg.norm(g)), 1e-300)
    gh = g / gn
    # a token scoring 800 below every input token: exp(-800) underflows, lambda_i = 0 and o_i = c_i exactly
    low = float(min((ds.X1.T @ g).min(), (ds.X2.T @ g).min()))
    prompts = [((low - 800.0) / gn * gh)[:, None]]
    prompts += [rng.normal(0.0, scale, size=(d, mp)) for _ in range(6)]
    for sgn in (1.0, -1.0):
        prompts.append(sgn * scale * gh[:, None] + 0.3 * scale * rng.normal(size=(d, mp)))
    if inst["adversary"]:
        f = _prompt_objective(layer, ((ds.X1, ds.Y1[:, -1]), (ds.X2, ds.Y2[:, -1])), power=4)
        starts = [rng.normal(0.0, 1.0, size=(d, min(mp, 8)))]
        for t, X in ((ds.t1, ds.X1), (ds.t2, ds.X2)):
            try:
                starts.append(single_example_memorizer(layer.heads[0], ds.x0, X, t, max_k=64).prompt())
            except ValueError:
                pass  # M singular (head size 1) or k > 64: start from the random prompt only
        for P0 in starts:
            prompts.append(_quasi_newton(f, P0, maxiter=60))
    return prompts


def _witness_check(inst, backend, build=None, certificate=None):
    rng, layer = _witness_layer(inst)
    ds = build(layer, inst, rng) if build else witness_dataset(layer, inst["alpha"], rng, spread=inst["spread"])
    prompts = _witness_prompts(inst, layer, ds, rng)
    if backend.name == "mpmath":
        return _witness_check_mp(inst, backend, layer, ds, prompts, certificate)
    lb = _layer_to(backend, layer)
    arrs = [backend.asarray(a) for a in (ds.X1, ds.X2, ds.Y1, ds.Y2)]
    best, best_P = math.inf, prompts[0]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for P in prompts:
            err = max(witness_errors(lb, ds, backend.asarray(P), *arrs))
            if not err >= best:  # NaN also lands here: it is reported, not hidden
                best, best_P = err, P
    if certificate is None:
        cert, defect = witness_certificate_lower(layer, ds)  # exact for the stored data, rounded down
    else:
        cert, defect = certificate(ds), 0.0
    # the zero-mass prompt attains the certificate exactly for the tight MLP, so the comparison is at rounding
    # level: allow the first-order rounding bound of the best prompt's evaluated errors (layer output, the
    # subtraction of y and the norm), in the backend's arithmetic (weights and data rounded to it if float32)
    u = _EPS[backend.dtype] / 2
    extra = 0 if backend.dtype == "float64" else 2
    floor = 0.0
    if math.isfinite(best):
        for X, Y in ((ds.X1, ds.Y1), (ds.X2, ds.Y2)):
            out_err = last_output_rounding(layer, best_P, X, u, extra) + extra * u * float(np.linalg.norm(Y[:, -1]))
            floor = max(floor, out_err + (inst["d"] + 2) * u * best)
    return verify.Evidence(
        observed=cert,
        bound=best + floor,
        notes=f"certificate (1-kappa) alpha D (at 30 digits, minus the stored targets' defect {defect:.2g}) vs the"
        f" smallest max-error of {len(prompts)} prompts (+ its rounding bound {floor:.2g})",
        resources={"d": inst["d"], "m_p": inst["m_p"], "best_m_p": best_P.shape[1], "prompts": len(prompts),
                   "adversary": str(bool(inst["adversary"])), "D": ds.D},
    )


def _witness_check_mp(inst, backend, layer, ds, prompts, certificate=None):
    """The mpmath rung: the same layer, dataset and (float64-found) prompts, evaluated at backend.dps digits.

    Every prompt's exact max-error is >= the certificate, so only mpmath's own rounding can tip the comparison:
    the floor is the same first-order bound as on the float rungs with unit roundoff ctx.eps (~10^-dps), and the
    floats handed over are the certificate rounded down and the bound rounded up.
    """
    ctx = backend.mp
    best, best_P = None, prompts[0]
    for P in prompts:
        err = max(mp_witness_errors(ctx, layer, ds, P))
        if best is None or err < best:
            best, best_P = err, P
    if certificate is None:
        cert, defect = witness_certificate_lower(layer, ds, dps=max(30, backend.dps))
    else:
        cert, defect = certificate(ds), 0.0
    u = float(ctx.eps)
    floor = max(last_output_rounding(layer, best_P, X, u) for X in (ds.X1, ds.X2)) + (inst["d"] + 2) * u * float(best)
    return verify.Evidence(
        observed=cert,
        bound=mp_float(ctx, best + floor, +1),
        precision="mpmath",
        notes=f"mpmath[{backend.dps}]: certificate (minus the stored targets' defect {defect:.2g}) vs the smallest"
        f" max-error of the same {len(prompts)} prompts (+ its rounding bound {floor:.2g} at u = {u:.2g})",
        resources={"d": inst["d"], "m_p": inst["m_p"], "best_m_p": best_P.shape[1], "prompts": len(prompts),
                   "adversary": str(bool(inst["adversary"])), "D": ds.D, "dps": backend.dps},
    )


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
)
def check_witness_bound(inst, backend):
    return _witness_check(inst, backend)


@verify.mutant("wang23.witness_bound", "no_contraction_factor")
def mutant_witness_no_contraction(inst, backend):
    """The certificate alpha D, forgetting that the MLP can shrink errors by 1 - kappa."""
    return _witness_check(inst, backend, certificate=lambda ds: ds.alpha * ds.D)


def _inward_dataset(layer, inst, rng):
    """Targets between c1 and c2 (alpha -> -min(alpha, 0.4)): a sign slip in t_i = c_i + alpha (c_i - c_j)."""
    ds = witness_dataset(layer, inst["alpha"], rng, spread=inst["spread"])
    a = -min(inst["alpha"], 0.4)
    t1, t2 = ds.c1 + a * (ds.c1 - ds.c2), ds.c2 + a * (ds.c2 - ds.c1)
    Y1, Y2 = ds.Y1.copy(), ds.Y2.copy()
    Y1[:, -1] = mlp_apply(layer.mlp, ds.x0 + t1)
    Y2[:, -1] = mlp_apply(layer.mlp, ds.x0 + t2)
    return type(ds)(ds.X1, ds.X2, Y1, Y2, ds.c1, ds.c2, t1, t2, -a, ds.kappa, ds.D)


@verify.mutant(
    "wang23.witness_bound",
    "targets_inward",
    strategy=st.fixed_dictionaries(
        {**layer_params, "m_p": st.integers(2, 6), "prompt_log10_scale": st.just(0.0), "adversary": st.just(True)}
    ),
)
def mutant_witness_inward(inst, backend):
    """Targets placed between c1 and c2: a two-token prompt then fits both examples."""
    return _witness_check(inst, backend, build=_inward_dataset, certificate=lambda ds: ds.certificate)


# ---------------------------------------------------------------------------------------------
# the multi-head caveat


caveat_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "gamma": st.floats(24.0, 40.0),
        "kappa": st.floats(0.05, 0.95),
        "alpha": st.floats(0.05, 5.0),
    }
)


def _caveat(inst, backend, single: bool):
    """Claim (single=False): observed = certificate, bound = the explicit prompt's max error, so ratio > 1 IS the
    expected counterexample. Mutant (single=True): the ratio is inverted to error / certificate, which the
    theorem forces >= 1 on one head, so "mutant caught" (ratio > 1) means the counterexample is gone."""
    rng = np.random.default_rng(inst["seed"])
    layer, ds, P = two_head_counterexample(rng, inst["gamma"], inst["kappa"], inst["alpha"])
    if single:
        # the same tokens and prompt on the layer's first head alone, with the witness rebuilt for that layer
        layer = Layer(layer.heads[:1], layer.mlp)
        ds = witness_dataset(layer, inst["alpha"], tokens=(ds.x0, ds.X1[:, 0], ds.X2[:, 0]))
    lb = _layer_to(backend, layer)
    arrs = [backend.asarray(a) for a in (ds.X1, ds.X2, ds.Y1, ds.Y2)]
    err = max(witness_errors(lb, ds, backend.asarray(P), *arrs))
    res = {"heads": len(layer.heads), "m_p": 2, "gamma": inst["gamma"]}
    if single:
        # inverted on purpose: for an expect="counterexample" claim the mutant is caught (ratio > 1) when the
        # counterexample disappears, i.e. when the error is back above the certificate
        return verify.Evidence(
            observed=err,
            bound=ds.certificate,
            resources=res,
            notes="one head: error / certificate (> 1: the theorem holds again)",
        )
    return verify.Evidence(
        observed=ds.certificate,
        bound=err,
        notes="2-head layer, witness recipe, explicit 2-token prompt: max error O(exp(-gamma/2)) << (1-kappa) alpha D",
        resources=res,
    )


@verify.claim(
    "wang23.multihead_caveat",
    source="wang2023.md §2.2 'Multi-head caveat' [D]; Wang et al. 2023 Thm 2 assumes one head [R]",
    statement="h = 2 heads: the witness bound fails, an explicit 2-token prompt fits both examples to O(e^-gamma/2)",
    strategy=caveat_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits="d = 4, gamma in [24, 40] (residual ~ e^-gamma/2 must sit below the certificate)",
    expect="counterexample",
    expect_reason="the theorem needs h = 1",
)
def check_multihead_caveat(inst, backend):
    """Expected counterexample: ratio = (1-kappa) alpha D / max_i error >> 1 for the 2-head layer's 2-token prompt."""
    return _caveat(inst, backend, single=False)


@verify.mutant("wang23.multihead_caveat", "second_head_removed")
def mutant_caveat_single_head(inst, backend):
    """Second head removed (h = 1): ratio INVERTED to error / certificate; the single-head theorem makes it >= 1,
    so a caught mutant (ratio > 1) shows that the counterexample needs the second head."""
    return _caveat(inst, backend, single=True)


# ---------------------------------------------------------------------------------------------
# each example alone is memorizable; the prompt mass bound


memo_instances = st.fixed_dictionaries({**layer_params, "example": st.sampled_from([1, 2])})


def _memorizer_check(inst, backend, force_k1: bool = False):
    inst = {**inst, "full_head": True}  # the memorizer needs W_o W_v invertible: head size d
    rng, layer = _witness_layer(inst)
    head = layer.heads[0]
    ds = witness_dataset(layer, inst["alpha"], rng, spread=inst["spread"])
    X, t, Y = (ds.X1, ds.t1, ds.Y1) if inst["example"] == 1 else (ds.X2, ds.t2, ds.Y2)
    try:
        sm = single_example_memorizer(head, ds.x0, X, t, max_k=_MAX_TOKENS)
    except ValueError as exc:
        if "max_k" in str(exc):
            raise verify.OutOfReach(f"identical-token memorizer needs more than {_MAX_TOKENS} tokens: {exc}") from exc
        raise
    k = sm.k
    if force_k1 and k > 1:
        # the mutant keeps one token and solves at the best ray point s* it can reach
        s = 1.0 + 1.0 / abs(sm.sigma)
        M = value_matrix(head)
        c = attend(head, ds.x0, X)
        P = np.linalg.solve(M, c + s * (t - c))[:, None]
    else:
        P = sm.prompt()
    lb = _layer_to(backend, layer)
    out = backend.to_numpy(prompt_tuned(lb, backend.asarray(P), backend.asarray(X)))[:, -1]
    resid = float(np.linalg.norm(out - Y[:, -1]))
    # rounding floor: softmax attention over n keys at these logits/values, the M^-1 solve and the solved mass
    M = value_matrix(head)
    Z = np.concatenate([P[:, :1], X], axis=1)
    logits = np.abs(Z.T @ score_vector(head, ds.x0)).max()
    n = P.shape[1] + X.shape[1]
    eps = _EPS[backend.dtype]
    a_norm = float(np.linalg.norm(M @ P[:, 0]))
    floor = (1 + ds.kappa) * 16.0 * eps * (
        (n + logits) * max(float(np.abs(M @ Z).max()), 1e-300)
        + np.linalg.cond(M) * a_norm
        + (logits + math.log(n)) * sm.s * float(np.linalg.norm(t - ds.c1 if inst["example"] == 1 else t - ds.c2))
    ) + 16.0 * eps * float(np.abs(Y).max() + np.abs(out).max())
    return verify.Evidence(
        observed=resid,
        bound=floor,
        notes="k identical tokens p = M^-1(c + s(t - c)); residual of the layer output vs the rounding floor",
        resources={"k": k, "k_lower": sm.k_lower, "s": sm.s, "d": inst["d"]},
    )


@verify.claim(
    "wang23.single_example_memorizable",
    source="wang2023.md §2.2 'Non-triviality', §3.3 [D]; §5 item 14",
    statement="M = W_oW_v invertible: k identical tokens fit one witness example exactly (residual at rounding level)",
    strategy=memo_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits=f"d <= 6; k <= {_MAX_TOKENS} identical tokens (larger k: out of reach, the mass bound forces it)",
)
def check_single_example(inst, backend):
    return _memorizer_check(inst, backend)


@verify.mutant("wang23.single_example_memorizable", "one_token_always")
def mutant_single_one_token(inst, backend):
    """k = 1 always: ignores the mass bound k >= Z_X e^-b(s*)/(s* - 1), so some examples are missed."""
    return _memorizer_check(inst, backend, force_k1=True)


mass_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 6),
        "m_p": st.integers(1, 64),
        "weight_scale": st.floats(0.3, 3.0),
        "prompt_log10_scale": st.floats(-3.0, 1.5),
    }
)


def _mass(inst, backend, with_log_mp: bool = True):
    rng = np.random.default_rng(inst["seed"])
    d = inst["d"]
    head = random_head(rng, d, d, inst["weight_scale"])
    M = require_invertible_values(head)
    x = rng.normal(size=d)
    P = rng.normal(0.0, 10.0 ** inst["prompt_log10_scale"], size=(d, inst["m_p"]))
    if backend.name == "mpmath":
        return _mass_mp(inst, backend, head, M, x, P, with_log_mp)
    gap, log_mp = prompt_mass_gap(head, x, P)
    g = score_vector(head, x)
    s = P.T @ g
    a = attend(head, x, P)
    floor = (
        16.0
        * _EPS["float64"]
        * (float(np.abs(s).max()) + np.linalg.cond(M) * np.linalg.norm(g) * np.linalg.norm(np.linalg.solve(M, a)) + 1.0)
    )
    return verify.Evidence(
        observed=gap,
        bound=(log_mp if with_log_mp else 0.0) + floor,
        notes="log Z_P - g^T M^-1 Att(x,P) = H(softmax) <= log m_p",
        resources={"m_p": inst["m_p"], "d": d},
    )


def _mass_mp(inst, backend, head, M, x, P, with_log_mp: bool = True):
    """The mpmath rung: the same head, query and prompt; gap = H(softmax) <= log m_p exactly, so the floor is the
    float rung's with unit roundoff ctx.eps (~10^-dps); both floats handed over are rounded up (same side)."""
    ctx = backend.mp
    gap, log_mp = mp_prompt_mass_gap(ctx, head, x, P)
    g = score_vector(head, x)
    s = P.T @ g
    a = attend(head, x, P)
    u = float(ctx.eps)
    solve_term = np.linalg.cond(M) * np.linalg.norm(g) * np.linalg.norm(np.linalg.solve(M, a))
    floor = 16.0 * u * (float(np.abs(s).max()) + solve_term + 1.0)
    return verify.Evidence(
        observed=mp_float(ctx, gap, +1),
        bound=mp_float(ctx, (log_mp if with_log_mp else 0) + floor, +1),
        precision="mpmath",
        notes=f"mpmath[{backend.dps}]: log Z_P - g^T M^-1 Att(x,P) = H(softmax) <= log m_p (+ rounding {floor:.2g})",
        resources={"m_p": inst["m_p"], "d": inst["d"], "dps": backend.dps},
    )


@verify.claim(
    "wang23.prompt_mass_bound",
    source="wang2023.md §2.3 'Mass bound' [D]; §5 item 15",
    statement="M invertible: Z_P <= m_p exp(g^T M^-1 Att(x, P)) for every prompt P",
    strategy=mass_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64", "mpmath"),
    limits="d <= 6, m_p <= 64, prompt scale 1e-3..30",
)
def check_mass_bound(inst, backend):
    return _mass(inst, backend)


@verify.mutant("wang23.prompt_mass_bound", "without_log_mp")
def mutant_mass_no_log(inst, backend):
    """Z_P <= exp(g^T M^-1 Att(x, P)): the entropy term log m_p dropped."""
    return _mass(inst, backend, with_log_mp=False)


# ---------------------------------------------------------------------------------------------
# rank obstruction (Theorem 3, derived) and the rank-1 LoRA memorizer (Theorem 4, derived)


rank_params = {  # the case-(B) layer and dataset: shared by the certificate, prompt and LoRA claims
    "seed": st.integers(0, 2**32 - 1),
    "d": st.integers(3, 7),
    "n_frac": st.floats(0.0, 1.0),
    "kappa": st.floats(0.05, 0.95),
    "weight_scale": st.floats(0.3, 2.0),
    "beta_log10": st.floats(-3.0, 0.5),
}

rank_instances = st.fixed_dictionaries(
    {**rank_params, "case": st.sampled_from(["A", "B"]), "R_factor": st.floats(1.0, 4.0)}
)


def _rank_layer(inst, rng):
    d = inst["d"]
    n = 2 + int(inst["n_frac"] * (d - 3))  # 2 <= n <= d - 1 (case B needs n + 1 <= d)
    head = random_head(rng, d, d, inst["weight_scale"])
    mlp = affine_mlp(rng, d, 2 * d, inst["kappa"], sign=float(rng.choice([-1.0, 1.0])), radius=20.0)
    W2 = np.asarray(mlp.W2) + 0.0
    # perturb W2 to a generic contraction (not only +-kappa I) while keeping every ReLU active
    G = rng.normal(size=W2.shape)
    W2 = W2 + 0.3 * math.sqrt(inst["kappa"]) * G / spectral_norm(G)
    W2 *= math.sqrt(inst["kappa"]) / spectral_norm(W2)
    mlp = MLP(mlp.W1, mlp.b1, W2, -W2 @ np.asarray(mlp.b1))
    return Layer((head,), mlp), n


def _rank_dataset(inst, rng):
    layer, n = _rank_layer(inst, rng)
    ds = rank_obstruction_dataset(layer, n, rng, beta_scale=10.0 ** inst["beta_log10"])
    return layer, ds


def _case_A_directions(ds, inst, rng):
    """Case (A): random directions V scaled so that sigma_min(V) = R_factor * ||C||_2 (> ||C||_2)."""
    V = rng.normal(size=ds.C.shape)
    smin = np.linalg.svd(V, compute_uv=False)[-1]
    return V * (inst["R_factor"] * (spectral_norm(ds.C) + 1e-3) / smin + 1e-9)


def _min_sigma(C, V, lower: float | None):
    """min over s of sigma_n(C + V diag(s)) by BFGS from several starts (s_i = lower + v_i^2 when lower is given)."""
    n = C.shape[1]

    def s_of(v):
        return v if lower is None else lower + v * v

    def f(v):
        return float(np.linalg.svd(C + V * s_of(v)[None, :], compute_uv=False)[-1])

    best = math.inf
    rng = np.random.default_rng(0)
    starts = [np.ones(n), np.full(n, 3.0), rng.uniform(0.0, 5.0, n), -rng.uniform(0.0, 5.0, n)]
    for s0 in starts:
        v0 = s0 if lower is None else np.sqrt(np.maximum(s0 - lower, 0.0))
        res = minimize(f, v0, method="BFGS", options={"maxiter": 80})
        best = min(best, float(res.fun), f(v0))
    return best


def _rank_cert(inst, backend, mutant: str = ""):
    rng = np.random.default_rng(inst["seed"])
    layer, ds = _rank_dataset(inst, rng)
    if inst["case"] == "B":
        V = np.outer(ds.w, ds.beta)
        cert = (
            certificate_B(ds.C, ds.w) if mutant != "sigma_min_C" else float(np.linalg.svd(ds.C, compute_uv=False)[-1])
        )
        lower = None
    else:
        V = _case_A_directions(ds, inst, rng)
        cert = certificate_A(ds.C, V)
        lower = 1.0 if mutant != "s_below_1" else 0.0
    worst = _min_sigma(ds.C, V, lower)
    return verify.Evidence(
        observed=cert,
        bound=worst,
        notes=f"case {inst['case']}: certificate vs min over the rays of sigma_n([c_i + s_i v_i])",
        resources={"n": ds.n, "d": inst["d"], "case": inst["case"]},
    )


@verify.claim(
    "wang23.rank_certificate",
    source="Wang et al. 2023 Thm 3 [R]; wang2023.md §2.3 certificates (A), (B) [D]; §5 items 16-17",
    statement="(A) s_n(C + V diag s) >= s_min(V) - ||C|| (s >= 1); (B) s_n(C + w (s b)^T) >= s_min([C,w])",
    strategy=rank_instances,
    provenance="derived",
    precision="float64",
    limits="3 <= d <= 7, 2 <= n <= d - 1; adversary: BFGS over s from 4 starts",
)
def check_rank_certificate(inst, backend):
    return _rank_cert(inst, backend)


@verify.mutant(
    "wang23.rank_certificate",
    "certificate_B_ignores_w",
    strategy=rank_instances.map(lambda i: {**i, "case": "B"}),
)
def mutant_rank_sigma_C(inst, backend):
    """Case (B) certified by sigma_min(C) alone: a rank-1 move along w can lower sigma_n below it."""
    return _rank_cert(inst, backend, mutant="sigma_min_C")


@verify.mutant(
    "wang23.rank_certificate",
    "ray_includes_s_below_1",
    strategy=rank_instances.map(lambda i: {**i, "case": "A"}),
)
def mutant_rank_s_below_1(inst, backend):
    """Case (A) over s >= 0 instead of the open ray s > 1: s -> 0 brings back sigma_n(C) < certificate."""
    return _rank_cert(inst, backend, mutant="s_below_1")


def _rank_prompt(inst, backend, drop_lambda: bool = False):
    rng = np.random.default_rng(inst["seed"])
    layer, ds = _rank_dataset(inst, rng)
    head = layer.heads[0]
    d, n = inst["d"], ds.n
    cert = certificate_B(ds.C, ds.w)
    f = _prompt_objective(layer, [(X, ds.Y[:, i]) for i, X in enumerate(ds.Xs)])
    scale = 10.0 ** inst["prompt_log10_scale"]
    prompts = []
    for mp in range(1, n):
        prompts.append(rng.normal(0.0, scale, size=(d, mp)))
        if inst["adversary"]:
            prompts.append(_quasi_newton(f, rng.normal(0.0, 1.0, size=(d, mp)), maxiter=60))
    worst_ratio, worst = -math.inf, None
    lb = _layer_to(backend, layer)
    for P in prompts:
        lam = prompt_lambdas(head, ds.Xs, P)
        bound = (1.0 - ds.kappa) * cert if drop_lambda else rank_lower_bound(ds.kappa, cert, lam, "B")
        Pb = backend.asarray(P)
        err2 = 0.0
        for i, X in enumerate(ds.Xs):
            e = backend.to_numpy(prompt_tuned(lb, Pb, backend.asarray(X)))[:, -1] - ds.Y[:, i]
            err2 += float(e @ e)
        err = math.sqrt(err2)
        r = bound / err if err > 0 else math.inf
        if r > worst_ratio:
            worst_ratio, worst = r, (bound, err, P.shape[1], float(lam.min()))
    bound, err, mp, lmin = worst
    return verify.Evidence(
        observed=bound,
        bound=err,
        notes="(1-kappa) sigma_min([C,w]) min_i lambda_i <= ||errors||_F for every prompt with m_p < n",
        resources={"n": n, "d": d, "m_p": mp, "min_lambda": lmin, "prompt_params_needed": n * d},
    )


rank_prompt_instances = st.fixed_dictionaries(
    {**rank_params, "prompt_log10_scale": st.floats(-2.0, 1.5), "adversary": st.booleans()}
)


@verify.claim(
    "wang23.rank_prompt_lower_bound",
    source="Wang et al. 2023 Thm 3 [R]; wang2023.md §2.3 rank obstruction [D], quantified here [D]",
    statement="case (B), m_p < n: ||(tau([P,X_i])_last - y_i)_i||_F >= (1-kappa) sigma_min([C,w]) min_i lambda_i",
    strategy=rank_prompt_instances,
    provenance="derived",
    precision="float64",
    limits="3 <= d <= 7, 2 <= n <= d - 1, every m_p < n; adversary: BFGS (60 its) per m_p",
)
def check_rank_prompt(inst, backend):
    return _rank_prompt(inst, backend)


@verify.mutant(
    "wang23.rank_prompt_lower_bound",
    "drops_min_lambda",
    strategy=rank_prompt_instances.map(lambda i: {**i, "adversary": True, "beta_log10": min(i["beta_log10"], -1.5)}),
)
def mutant_rank_prompt_no_lambda(inst, backend):
    """(1-kappa) sigma_min([C,w]) without min_i lambda_i: a faint prompt (lambda -> 0) leaves only |beta| error."""
    return _rank_prompt(inst, backend, drop_lambda=True)


lora_instances = st.fixed_dictionaries(rank_params)


def _lora(inst, backend, parallel: bool = True):
    rng = np.random.default_rng(inst["seed"])
    layer, ds = _rank_dataset(inst, rng)
    Y = ds.Y
    if not parallel:
        # residuals y_i - MLP(z_i) in different directions: no rank-1 Delta W_2 fits them
        Y = Y - np.outer(ds.u, ds.beta) + rng.normal(size=Y.shape) * np.abs(ds.beta)[None, :]
    upd = lora_rank1(ds)
    lb = _layer_to(backend, with_w2_update(layer, upd.delta))
    resid = 0.0
    outs = []
    for i, X in enumerate(ds.Xs):
        out = backend.to_numpy(prompt_tuned(lb, backend.asarray(np.zeros((inst["d"], 0))), backend.asarray(X)))[:, -1]
        outs.append(out)
        resid = max(resid, float(np.linalg.norm(out - Y[:, i])))
    eps = _EPS[backend.dtype]
    r = ds.H.shape[0]
    Hn = spectral_norm(ds.H)
    condH = np.linalg.cond(ds.H)
    W2n = spectral_norm(layer.mlp.W2)
    scale = float(np.abs(Y).max() + np.abs(np.stack(outs)).max() + (W2n + spectral_norm(upd.delta)) * Hn)
    floor = 16.0 * eps * math.sqrt(r) * (scale + condH * float(np.abs(ds.beta).max())) * (1.0 + inst["kappa"])
    return verify.Evidence(
        observed=resid,
        bound=floor,
        notes="rank-1 Delta W_2 = u beta^T H^+ fits case (B) exactly; rounding floor from |y|, ||W_2|| ||H||, cond(H)",
        resources={"lora_params": upd.params, "prompt_params_needed": ds.n * inst["d"], "n": ds.n, "r": r},
    )


@verify.claim(
    "wang23.lora_memorizer",
    source="Wang et al. 2023 Thm 4 / remark [R]; wang2023.md §2.3 rank-1 LoRA memorizer [D]; §5 item 18",
    statement="case (B): rank-1 Delta W_2 = u beta^T H^+ (d + r params) fits n examples to rounding (prompts: >= nd)",
    strategy=lora_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits="3 <= d <= 7, 2 <= n <= d - 1, r = 2d",
)
def check_lora(inst, backend):
    return _lora(inst, backend)


@verify.mutant("wang23.lora_memorizer", "residuals_not_parallel")
def mutant_lora_not_parallel(inst, backend):
    """Targets whose residuals y_i - MLP(z_i) are not parallel (not case B): a rank-1 update cannot fit them."""
    return _lora(inst, backend, parallel=False)


# ---------------------------------------------------------------------------------------------
# invertibility: i-ResNet MLP, causal stacks (Theorem 5, derived)


mlp_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 8),
        "r_extra": st.integers(0, 8),
        "kappa": st.floats(0.0, 0.99),
        "kind": st.sampled_from(["random", "contract", "expand"]),
        "log10_scale": st.floats(-2.0, 2.0),
    }
)


def _mlp(inst, rng):
    d, r = inst["d"], inst["d"] + inst["r_extra"]
    if inst["kind"] == "random":
        return random_contractive_mlp(rng, d, r, inst["kappa"])
    return affine_mlp(rng, d, r, inst["kappa"], sign=-1.0 if inst["kind"] == "contract" else 1.0, radius=0.0)


def _mlp_inverse(inst, backend, max_iter=None):
    """Error of the fixed-point inverse against its a-priori floor (rho_Y + rho_T + kappa^N s_1) / (1 - kappa).

    rho_Y: rounding of the forward pass that produced Y (the inverse of the rounded Y is that far from X, by the
    (1 - kappa) lower Lipschitz constant); rho_T: rounding of one step z <- y - F(z) (each step adds at most rho_T,
    the contraction keeps the sum below rho_T / (1 - kappa)); the last term is the contraction after the
    N = inverse_iterations(kappa) steps the construction promises. All per column in the 2-norm (kappa is a 2-norm
    Lipschitz constant); kappa taken as the computed ||W1|| ||W2||, inflated by 8(d + r) u for the SVD's error.
    """
    rng = np.random.default_rng(inst["seed"])
    mlp = _mlp(inst, rng)
    X = rng.normal(0.0, 10.0 ** inst["log10_scale"], size=(inst["d"], 8))
    Y = mlp(X)
    Z, it = mlp_inverse(mlp, Y, max_iter=max_iter)
    u = _EPS["float64"]
    d, r = mlp.W1.shape[1], mlp.W1.shape[0]
    kappa = spectral_norm(mlp.W1) * spectral_norm(mlp.W2) * (1.0 + 8.0 * (d + r) * u)
    n_steps = inverse_iterations(kappa)
    rho_y = np.linalg.norm(mlp_eval_rounding(mlp, X, u), axis=0)
    # one step is y - F(z): F's rounding (the evaluation bound minus its final x + F addition) plus the subtraction
    rho_t = np.linalg.norm(mlp_eval_rounding(mlp, Z, u) + u * np.abs(Y), axis=0)
    step1 = np.linalg.norm(mlp.residual_part(Y), axis=0)  # z_1 - z_0 = -F(y) from z_0 = y
    floor = (rho_y + rho_t) / (1.0 - kappa) + kappa**n_steps / (1.0 - kappa) * step1
    floor *= 1.0 + 4.0 * (d + 2) * u  # the norms themselves
    err = np.linalg.norm(Z - X, axis=0)
    j = int(np.argmax(err / floor))
    return verify.Evidence(
        observed=float(err[j]),
        bound=float(floor[j]),
        notes=f"fixed-point inverse, {it} steps (promised {n_steps}); floor (rho_Y + rho_T)/(1-kappa) + contraction",
        resources={"iterations": it, "kappa": round(kappa, 6)},
    )


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
    return _mlp_inverse(inst, backend)


@verify.mutant("wang23.mlp_inverse", "five_iterations")
def mutant_mlp_inverse_short(inst, backend):
    """Stops after 5 fixed-point steps: the error kappa^5/(1-kappa) ||step_1|| is far above rounding."""
    return _mlp_inverse(inst, backend, max_iter=5)


def _bilip(inst, backend, lower_const=None):
    rng = np.random.default_rng(inst["seed"])
    mlp = _mlp(inst, rng)
    kappa = inst["kappa"]
    sc = 10.0 ** inst["log10_scale"]
    X1 = rng.normal(0.0, sc, size=(inst["d"], 16))
    X2 = X1 + rng.normal(0.0, sc, size=X1.shape) * rng.uniform(1e-3, 1.0, size=(1, 16))
    if backend.name == "mpmath":
        return _bilip_mp(inst, backend, mlp, X1, X2, lower_const)
    dx = np.linalg.norm(X1 - X2, axis=0)
    df = np.linalg.norm(mlp(X1) - mlp(X2), axis=0)
    lo = (1.0 - kappa) if lower_const is None else lower_const
    ratio = max(float((df / ((1.0 + kappa) * dx)).max()), float((lo * dx / df).max()))
    mag = float(np.abs(mlp(X1)).max() + np.abs(mlp(X2)).max())
    rel_floor = 32.0 * _EPS["float64"] * mag / float(df.min() + 1e-300) * (inst["d"] + inst["r_extra"])
    return verify.Evidence(
        observed=ratio,
        bound=1.0 + rel_floor,
        notes="max over 16 pairs of ||df||/((1+kappa)||dx||) and (1-kappa)||dx||/||df||",
        resources={"kind": inst["kind"]},
    )


def _bilip_mp(inst, backend, mlp, X1, X2, lower_const=None):
    """The mpmath rung: the same MLP and 16 pairs at backend.dps digits, with kappa = ||W1|| ||W2|| of the stored
    weights (the lemma's hypothesis, evaluated exactly; the float rung uses the drawn kappa, equal to ~1e-16).
    The floor is the float rung's with unit roundoff ctx.eps, plus the eigenvalue solver's error in kappa amplified
    by 1/(1 - kappa); both floats handed over are rounded up (same side)."""
    ctx = backend.mp
    k = mp_mlp_kappa(ctx, mlp)
    lo = (1 - k) if lower_const is None else ctx.mpf(lower_const)
    pairs = mp_mlp_pair_norms(ctx, mlp, X1, X2)
    ratio = max(max(df / ((1 + k) * dx), lo * dx / df) for df, dx in pairs)
    u = float(ctx.eps)
    dr = inst["d"] + inst["r_extra"]
    mag = float(np.abs(mlp(X1)).max() + np.abs(mlp(X2)).max())
    df_min = float(min(df for df, _ in pairs))
    rel_floor = 32.0 * u * dr * (mag / (df_min + 1e-300) + 1.0 / max(1.0 - float(k), 1e-300))
    return verify.Evidence(
        observed=mp_float(ctx, ratio, +1),
        bound=mp_float(ctx, 1 + ctx.mpf(rel_floor), +1),
        precision="mpmath",
        notes=f"mpmath[{backend.dps}]: max over 16 pairs of ||df||/((1+kappa)||dx||) and (1-kappa)||dx||/||df||,"
        f" kappa = {float(k):.17g} (drawn {inst['kappa']!r})",
        resources={"kind": inst["kind"], "dps": backend.dps},
    )


@verify.claim(
    "wang23.mlp_bilipschitz",
    source="wang2023.md §2.4 residual lemma [D]; §5 item 2",
    statement="(1-kappa)||x-y|| <= ||MLP(x) - MLP(y)|| <= (1+kappa)||x-y||",
    strategy=mlp_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64", "mpmath"),
    limits="d <= 8; 'contract'/'expand' MLPs attain the constants exactly (ratio 1 up to rounding)",
)
def check_bilip(inst, backend):
    return _bilip(inst, backend)


@verify.mutant("wang23.mlp_bilipschitz", "lower_constant_one")
def mutant_bilip_no_contraction(inst, backend):
    """||MLP(x) - MLP(y)|| >= ||x - y||: forgets that the residual branch can contract."""
    return _bilip(inst, backend, lower_const=1.0)


causal_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 4),
        "m": st.integers(1, 3),
        "L": st.integers(1, 3),
        "kappa": st.floats(0.0, 0.9),
        "att_log10": st.floats(-3.0, -1.0),
        "score_log10": st.floats(-3.0, -1.0),
        "m_p": st.integers(1, 4),
        "mlp_kind": st.sampled_from(["contract", "random"]),
    }
)

_INPUT_RADIUS = 1.0


def _causal_setup(inst, causal: bool = True):
    rng = np.random.default_rng(inst["seed"])
    d, m, L = inst["d"], inst["m"], inst["L"]
    layers = random_causal_stack(
        rng,
        d,
        L,
        inst["kappa"],
        10.0 ** inst["att_log10"],
        10.0 ** inst["score_log10"],
        _INPUT_RADIUS,
        inst["mlp_kind"],
    )
    cap = 1.0
    try:
        cert = causal_certificate(layers, cap, _INPUT_RADIUS, m)
    except ValueError as exc:
        raise verify.OutOfReach(f"certificate unavailable: {exc}") from exc
    if not causal:
        layers = [Layer(ly.heads, ly.mlp, ly.hard, causal=False) for ly in layers]

    def ball(shape):
        Z = rng.normal(size=shape)
        return (
            Z
            / np.maximum(np.linalg.norm(Z, axis=0, keepdims=True), 1e-300)
            * rng.uniform(0, _INPUT_RADIUS, (1, shape[1]))
        )

    return rng, layers, cert, cap, ball


def _causal_inverse_check(inst, backend, causal: bool = True):
    rng, layers, cert, cap, ball = _causal_setup(inst, causal)
    P = ball((inst["d"], inst["m_p"])) * cap
    X = ball((inst["d"], inst["m"]))
    Y = prompt_tuned(layers, P, X)
    Xr = causal_inverse(layers, P, Y)
    err = float(np.abs(Xr - X).max())
    mag = float(np.abs(Y).max() + np.abs(X).max() + 1.0)
    floor = 64.0 * _EPS["float64"] * inst["L"] * (inst["d"] + inst["m"] + inst["m_p"]) * mag / max(cert.Lambda, 1e-300)
    return verify.Evidence(
        err,
        floor,
        notes="layer-wise fixed-point inversion of a causal prompt-tuned stack",
        resources={"L": inst["L"], "Lambda": cert.Lambda},
    )


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
    return _causal_inverse_check(inst, backend)


@verify.mutant(
    "wang23.causal_inverse",
    "bidirectional_layers",
    strategy=causal_instances.map(lambda i: {**i, "m": max(i["m"], 2), "att_log10": max(i["att_log10"], -1.5)}),
)
def mutant_causal_bidirectional(inst, backend):
    """Unmasked layers inverted as if causal: earlier tokens see later ones, the column-wise inversion is wrong."""
    return _causal_inverse_check(inst, backend, causal=False)


def _causal_dataset(inst, backend, half: float = 0.5, attention_sign: float = -1.0):
    rng, layers, cert, cap, ball = _causal_setup(inst)
    d, m = inst["d"], inst["m"]
    X1, X2 = ball((d, m)), ball((d, m))
    P0 = ball((d, inst["m_p"])) * cap
    Y = 0.5 * (prompt_tuned(layers, P0, X1) + prompt_tuned(layers, P0, X2))  # the best target for P0
    prompts = [P0] + [ball((d, inst["m_p"])) * cap for _ in range(6)] + [ball((d, k)) * cap for k in (1, 2, 3)]
    best = math.inf
    for P in prompts:
        err = max(float(np.linalg.norm(prompt_tuned(layers, P, X) - Y)) for X in (X1, X2))
        best = min(best, err)
    Lam = 1.0
    for a, k in zip(cert.a, cert.kappa, strict=True):
        Lam *= (1.0 + attention_sign * a) * (1.0 - k)
    return verify.Evidence(
        observed=half * Lam * float(np.linalg.norm(X1 - X2)),
        bound=best,
        notes="Y1 = Y2 = midpoint under P0; every capped prompt errs by >= Lambda ||X1 - X2|| / 2",
        resources={"L": inst["L"], "Lambda": cert.Lambda, "a_max": max(cert.a), "prompts": len(prompts)},
    )


@verify.claim(
    "wang23.causal_dataset_bound",
    source="Wang et al. 2023 Thm 5 [R]; wang2023.md §2.4 / §5 items 19-20 [D]",
    statement="causal, Lambda = prod (1-a_l)(1-kappa_l): X1 != X2, Y1 = Y2 => max_i ||g_P(X_i)-Y|| >= Lambda|X1-X2|/2",
    strategy=causal_instances,
    provenance="derived",
    precision="float64",
    limits="d <= 4, m <= 3, L <= 3; prompts: token norms <= 1 (the cap the certificate is uniform over), m_p <= 4",
)
def check_causal_dataset(inst, backend):
    return _causal_dataset(inst, backend)


@verify.mutant("wang23.causal_dataset_bound", "without_half")
def mutant_causal_no_half(inst, backend):
    """Lambda ||X1 - X2|| without the 1/2: the midpoint target splits the distance between the two examples."""
    return _causal_dataset(inst, backend, half=1.0)


@verify.mutant("wang23.causal_dataset_bound", "attention_factor_1_plus_a")
def mutant_causal_plus_a(inst, backend):
    """prod (1 + a_l)(1 - kappa_l): the attention's upper Lipschitz factor used as a lower one."""
    return _causal_dataset(inst, backend, attention_sign=1.0)
