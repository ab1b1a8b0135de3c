"""Claims about Wang et al. 2023's deep universality construction (Yun-style; wang2023.md §2.1, §3.2).

wang23.universality.surrogate_bound   sup_X ||f - Q f Q||_p <= (L+1) delta (dm)^{1/p}                   [D]
wang23.universality.contextual_map    P1-P4 of the selective-shift stack with the corrected t_l, exhaustive  [D/C]
wang23.universality.table_prompt      hardmax network with P(f) equals fbar on every grid input, exactly     [D]
wang23.universality.softmax_close     softmax(lam) network within tau of hardmax on grid inputs, lam >= lam*  [D]
wang23.universality.end_to_end        d_p(g_soft([P_f, .]), f) <= eps (Monte Carlo + Hoeffding margin)      [R/D]
wang23.universality.prompt_counting   delta^{-d m_p} >= (delta^{-dm})^{delta^{-dm}} <=> m_p >= m delta^{-dm}, tight  [D]

Sizes: the value map has m K^{dn} layers with n = m(1 + K^{dm}) (doubly exponential), so the networks are built
for (d, m, K) in {(1,1,2..5), (2,1,2), (1,2,2)} (<= 15,625 layers, cached); larger sizes raise OutOfReach with
that count. Weight-level float64 evaluation needs dyadic delta (exact thresholds); the exact claims run on Python
integers (ids in units of delta/2) for every K.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import verify
from constructions import deep_universality as du
from constructions import selective_shift as ss
from constructions.lipschitz import KINDS, LipschitzMap, alpha_norm, random_lipschitz

SOURCE = "Wang et al. 2023, wang2023.md"
HOEFFDING_ALPHA = 1e-3  # one-sided confidence of the Monte Carlo margin
REACHABLE = ((1, 1, 2), (1, 1, 3), (1, 1, 4), (2, 1, 2), (1, 2, 2), (1, 1, 5))
DYADIC = ((1, 1, 2), (1, 1, 4), (2, 1, 2), (1, 2, 2))
CONTEXT_SIZES = ((1, 2, 2), (1, 3, 2), (2, 2, 2), (1, 3, 3), (1, 4, 2), (2, 3, 2), (1, 5, 4), (3, 3, 2), (1, 4, 3))


def _net(d, m, K, **kw):
    try:
        return du.build_network(d, m, K, **kw)
    except ss.TooLarge as exc:
        raise verify.OutOfReach(str(exc)) from None


def _numpy_only(backend):
    if backend.name != "numpy":
        raise verify.UnsupportedPrecision(f"float64 numpy check; {backend.label} not implemented")


# --------------------------------------------------------------------------------------------
# 1. surrogate bound
# --------------------------------------------------------------------------------------------

surrogate_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 2),
        "m": st.integers(1, 3),
        "L": st.floats(0.0, 3.0),
        "p": st.sampled_from([1.0, 2.0, 3.0]),
        "K": st.integers(2, 16),
        "kind": st.sampled_from(KINDS + ("adversarial",)),
    }
)


def _adversarial(d, m, L, p, K) -> tuple[LipschitzMap, np.ndarray]:
    """f(X) = clip(L X + b) entry-wise (L-Lipschitz in every entry-wise p-norm) with b just below delta, probed at
    X = delta - tiny: input rounding costs L delta, output rounding nearly delta more, per entry."""
    n = d * m
    delta = 1.0 / K
    b = np.full(n, delta * (1 - 1e-9))
    f = LipschitzMap(d, m, float(L), float(p), "clipped_linear", {"A": L * np.eye(n), "b": b})
    X = np.full((1, d, m), delta * (1 - 1e-9))
    return f, X


def _surrogate_measure(inst, plus_one=True, centred_constant=False):
    d, m, L, p, K = inst["d"], inst["m"], inst["L"], inst["p"], inst["K"]
    rng = np.random.default_rng(inst["seed"])
    if inst["kind"] == "adversarial":
        f, Xa = _adversarial(d, m, L, p, K)
    else:
        f = random_lipschitz(inst["seed"], d, m, L, p, inst["kind"])
        Xa = np.zeros((0, d, m))
    X = np.concatenate([rng.uniform(0, 1, size=(400, d, m)), Xa])
    fbar = du.wang_surrogate(f, K)
    err = alpha_norm(f(X) - fbar(X), p, axis=(1, 2))
    worst = float(np.max(err))
    if centred_constant:
        bound = (L + 0.5) / K * (d * m) ** (1 / p)
    else:
        bound = du.sup_bound(L, d, m, p, K, plus_one=plus_one)
    return verify.Evidence(
        observed=worst,
        bound=bound,
        notes=f"f kind {inst['kind']}, 400 uniform X" + (" + the adversarial corner" if len(Xa) else ""),
        resources={"K": K, "dm": d * m},
    )


@verify.claim(
    "wang23.universality.surrogate_bound",
    source=f"{SOURCE} §2.1 'Choice of delta' (Lemma 1 step 3) [D]",
    statement="sup_X ||f(X) - Q(f(Q X))||_p <= (L+1) delta (dm)^{1/p} for f in F_L (round-down Q, 1 -> 1-delta)",
    strategy=surrogate_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="dm <= 6, K <= 16: 400 samples per instance (+ the adversarial corner that makes the bound tight)",
)
def check_surrogate_bound(inst, backend):
    _numpy_only(backend)
    return _surrogate_measure(inst)


@verify.mutant("wang23.universality.surrogate_bound", "bound_without_output_rounding")
def mutant_surrogate_no_plus_one(inst, backend):
    """The bound L delta (dm)^{1/p}: the output quantization's delta per entry dropped."""
    _numpy_only(backend)
    return _surrogate_measure(inst, plus_one=False)


@verify.mutant("wang23.universality.surrogate_bound", "hu_centred_constant_for_round_down")
def mutant_surrogate_centred(inst, backend):
    """Hu et al.'s (L + 1/2) constant (valid for the centred output grid) applied to Wang's round-down Q."""
    _numpy_only(backend)
    return _surrogate_measure(inst, centred_constant=True)


# --------------------------------------------------------------------------------------------
# 2. contextual mapping P1-P4
# --------------------------------------------------------------------------------------------

context_instances = st.fixed_dictionaries(
    {"size": st.sampled_from(CONTEXT_SIZES), "seed": st.integers(0, 2**32 - 1), "n_invalid": st.integers(0, 40)}
)


def _contextual(inst, typo=False, scale=None):
    d, n, K = inst["size"]
    plan = ss.ShiftPlan(d, n, K)
    cells = ss.enumerate_cells(d, n, K)
    q = ss.contextual_ids(ss.ids_from_cells(cells, plan), plan, scale=scale)
    rng = np.random.default_rng(inst["seed"])
    k = inst["n_invalid"]
    qi = None
    if k:
        c2 = cells[rng.integers(0, len(cells), size=k)]
        inv = rng.random(c2.shape) < rng.uniform(0.05, 0.6)
        inv[np.arange(k), rng.integers(0, d, size=k), rng.integers(0, n, size=k)] = True
        qi = ss.contextual_ids(ss.ids_from_cells(c2, plan, inv), plan, scale=scale)
    r = ss.contextual_report(plan, q, qi, typo=typo)
    parts = {
        "t_l/min_valid": float(r.t_l / r.min_valid) if r.min_valid > 0 else math.inf,
        "max_valid/t_r": float(r.max_valid / r.t_r),
        "delta/min_gap": float(plan.delta / r.min_gap) if r.min_gap > 0 else math.inf,
        "P1P2_dups": r.distinct_violations,
        "P3": r.p3_violations,
        "P4": r.p4_violations,
    }
    observed = max(parts["t_l/min_valid"], parts["max_valid/t_r"], parts["delta/min_gap"])
    violations = r.distinct_violations + r.p3_violations + r.p4_violations
    if violations:  # P1/P2 duplicates and P4 hits have no ratio of their own: report 1 + their count
        observed = max(observed, 1.0 + violations)
    return verify.Evidence(
        observed=observed,
        bound=1.0,
        notes=", ".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}" for a, b in parts.items())
        + f"; exhaustive over {r.n_valid} valid sequences, {r.n_invalid} random invalid ones",
        resources={"d": d, "n": n, "K": K, "sequences": r.n_valid, "attention_layers": plan.n_attention_layers,
                   "dps": len(str(int(2 * plan.unit * r.t_r)))},
    )


@verify.claim(
    "wang23.universality.contextual_map",
    source=f"{SOURCE} §3.2 steps 3-6 (Yun et al. 2020 Lemmas 6/10 via Hu et al. DiT App. E, t_l corrected) [C]",
    statement="ids q = u^T Z after n delta^-d selective shifts + global shift: distinct on and across valid grid"
    " sequences, gaps >= delta, in [t_l, t_r] (t_l = n delta^{-2nd}(delta^{-d}-1)); invalid ones outside",
    strategy=context_instances,
    provenance="derived",
    precision="mpmath",
    ladder=("mpmath",),
    limits="K^{dn} <= 6561 sequences, exhaustive in exact integers (ids in units of delta/2)",
)
def check_contextual_map(inst, backend):
    return _contextual(inst)


@verify.mutant("wang23.universality.contextual_map", "yun_uncorrected_t_l")
def mutant_contextual_typo(inst, backend):
    """t_l = n delta^{-2(n+1)d}(delta^{-d} - 1), as printed in the DiT restatement of Yun's construction."""
    return _contextual(inst, typo=True)


@verify.mutant("wang23.universality.contextual_map", "shift_scale_delta_pow_1_minus_d")
def mutant_contextual_scale(inst, backend):
    """Selective shifts scaled by delta^{-(d-1)} instead of delta^{-d}: the shifted id no longer overtakes the max."""
    d, n, K = inst["size"]
    return _contextual(inst, scale=K ** (d - 1))


# --------------------------------------------------------------------------------------------
# 3. table prompt reproduces fbar exactly (hardmax)
# --------------------------------------------------------------------------------------------

table_instances = st.fixed_dictionaries(
    {
        "size": st.sampled_from(REACHABLE),
        "seed": st.integers(0, 2**32 - 1),
        "L": st.floats(0.0, 3.0),
        "p": st.sampled_from([1.0, 2.0]),
        "kind": st.sampled_from(KINDS),
        "n_random": st.integers(0, 64),
        "constant": st.one_of(st.none(), st.floats(0.0, 1.0)),
    }
)
# constant targets near 1 put every prompt digit at the top: those sequences carry the ids just above the corrected
# t_l that Yun's uncorrected t_l cuts off (K >= 3 at d = m = 1; (1,1,2), (2,1,2), (1,2,2) are never cut)
typo_reaching_instances = st.fixed_dictionaries(
    {
        "size": st.sampled_from(((1, 1, 3), (1, 1, 4), (1, 1, 5))),
        "seed": st.integers(0, 2**32 - 1),
        "L": st.just(0.0),
        "p": st.just(1.0),
        "kind": st.just("clipped_linear"),
        "n_random": st.integers(0, 8),
        "constant": st.floats(0.8, 1.0),
    }
)


def _table(inst, typo=False, order="token"):
    d, m, K = inst["size"]
    net = _net(d, m, K, typo_t_l=typo)
    if inst.get("constant") is not None:  # f = const: in F_L for every L
        n = d * m
        f = LipschitzMap(d, m, inst["L"], inst["p"], "clipped_linear", {"A": np.zeros((n, n)),
                                                                         "b": np.full(n, inst["constant"])})
    else:
        f = random_lipschitz(inst["seed"], d, m, inst["L"], inst["p"], inst["kind"])
    T = du.wang_table(f, d, m, K)
    if order == "reversed":
        T = T[::-1]
    P = du.table_prompt(T + 0.5 / K, d, m, K)  # cell centres (see wang_table_prompt)
    rng = np.random.default_rng(inst["seed"])
    X = np.concatenate([du.grid_inputs(d, m, K), rng.uniform(0, 1, size=(inst["n_random"], d, m))])
    out = du.exact_outputs(net, P, X)
    ref = du.fbar_units(f, X, K)
    diff = np.abs((out - ref).astype(object))
    worst = max(int(v) for v in diff.ravel()) if diff.size else 0
    counts = net.counts()
    return verify.Evidence(
        observed=worst / net.plan.unit,
        bound=0.5 / K,
        notes="exact integer evaluation; any mismatch of grid values is >= delta, so bound delta/2 separates"
        f" exact agreement from error ({len(X)} inputs: all {K ** (d * m)} grid inputs + random)",
        resources={"d": d, "m": m, "K": K, **counts},
    )


@verify.claim(
    "wang23.universality.table_prompt",
    source=f"{SOURCE} §2.1 (Lemmas 1-2, table encoding) and §3.2 steps 1-9 [D]",
    statement="hardmax network g (f-independent) with P(f) = [fbar(G_1..G_N)]: g([P(f), X])_{:,m_p:} = fbar(X)"
    " exactly for every X in [0,1)^{d x m}",
    strategy=table_instances,
    provenance="derived",
    precision="mpmath",
    ladder=("mpmath",),
    limits="value map m K^{dn} <= 15,625 layers: (d,m,K) in (1,1,2..5), (2,1,2), (1,2,2); networks cached",
)
def check_table_prompt(inst, backend):
    return _table(inst)


@verify.mutant("wang23.universality.table_prompt", "cleanup_with_uncorrected_t_l", strategy=typo_reaching_instances)
def mutant_table_typo(inst, backend):
    """Cleanup window [t_l, t_r] with Yun's uncorrected t_l: valid columns below it are erased."""
    return _table(inst, typo=True)


@verify.mutant(
    "wang23.universality.table_prompt", "table_in_reversed_grid_order",
    # a constant (or 0-Lipschitz) target has a palindromic table, which no reordering can expose
    strategy=st.fixed_dictionaries({"size": st.sampled_from(REACHABLE), "seed": st.integers(0, 2**32 - 1),
                                    "L": st.floats(0.5, 3.0), "p": st.sampled_from([1.0, 2.0]),
                                    "kind": st.sampled_from(KINDS), "n_random": st.integers(0, 64),
                                    "constant": st.none()}),
)
def mutant_table_order(inst, backend):
    """The prompt's blocks written in reversed grid order (the network reads token-major lexicographic order)."""
    return _table(inst, order="reversed")


# --------------------------------------------------------------------------------------------
# 4. softmax network within tau of the hardmax network
# --------------------------------------------------------------------------------------------

softmax_instances = st.fixed_dictionaries(
    {
        "size": st.sampled_from(DYADIC),
        "seed": st.integers(0, 2**32 - 1),
        "log10_tau": st.floats(-6.0, 0.0),
        "lam_factor": st.floats(1.0, 4.0),
    }
)


def _softmax(inst, lam_override=None):
    d, m, K = inst["size"]
    net = _net(d, m, K)
    rng = np.random.default_rng(inst["seed"])
    P = rng.integers(0, K, size=(d, net.m_p)) / K  # any grid prompt: the threshold is prompt-independent
    tau = min(10 ** inst["log10_tau"], 0.25 / K)
    lam_star = du.lambda_threshold(net.plan, tau)
    lam = lam_star * inst["lam_factor"] if lam_override is None else lam_override(lam_star, net, tau)
    G = du.grid_inputs(d, m, K)
    hard = du.float_outputs(net, P, G)
    soft = du.float_outputs(net, P, G, du.soft_params(lam))
    err = float(np.max(np.abs(soft - hard)))
    floor = du.float_rounding_floor(net)
    return verify.Evidence(
        observed=err,
        bound=tau + floor,
        notes=f"lam = {lam:.4g}, lam* = {lam_star:.4g} (tau = {tau:.3g}); max over all {len(G)} grid inputs and"
        f" scored entries; float64 floor {floor:.2g}",
        resources={"lam_star": lam_star, "lam": lam, "tau": tau, "attention_layers": net.plan.n_attention_layers},
    )


@verify.claim(
    "wang23.universality.softmax_close",
    source=f"{SOURCE} §2.1 'Softmax step' (Yun et al. 2020 Lemma 9 [R]); threshold derived here [D]",
    statement="lam >= lam* = 8 delta^-2 ln((n-1) Lambda / tau), Lambda = 2 R (1+c)(1+2K^d)^{nK^d}: max over grid X"
    " of |g_soft - g_hard| <= tau (+ float64 floor)",
    strategy=softmax_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="dyadic delta (exact float64 thresholds); (d,m,K) in (1,1,2), (1,1,4), (2,1,2), (1,2,2)",
)
def check_softmax_close(inst, backend):
    _numpy_only(backend)
    return _softmax(inst)


@verify.mutant(
    "wang23.universality.softmax_close",
    "score_gap_without_query_margin",
    strategy=softmax_instances.map(lambda i: {**i, "size": (1, 1, 4) if i["size"][0] == 2 or i["size"][1] == 2
                                              else i["size"]}),
)
def mutant_softmax_gap(inst, backend):
    """lam* computed with score gap delta/2 (the key gap alone), forgetting the query margin factor delta/4."""
    _numpy_only(backend)
    return _softmax(inst, lambda ls, net, tau: du.lambda_threshold(net.plan, tau, gap_factor=net.K / 2.0))


@verify.mutant("wang23.universality.softmax_close", "lambda_far_below_threshold")
def mutant_softmax_low(inst, backend):
    """lam = lam*/32."""
    _numpy_only(backend)
    return _softmax(inst, lambda ls, net, tau: ls / 32)


# --------------------------------------------------------------------------------------------
# 5. end to end
# --------------------------------------------------------------------------------------------

e2e_instances = st.fixed_dictionaries(
    {
        "size": st.sampled_from(DYADIC + ((1, 1, 8),)),
        "seed": st.integers(0, 2**32 - 1),
        "L": st.floats(0.0, 2.0),
        "p": st.sampled_from([1.0, 2.0]),
        "kind": st.sampled_from(KINDS),
        "eps_slack": st.floats(1.0, 1.5),
    }
)

N_MC = 1000


def _end_to_end(inst, lam_div=1.0, typo=False):
    d, m, K_target = inst["size"]
    L, p = inst["L"], inst["p"]
    # the eps whose delta choice gives K_target (times a slack >= 1 that may lower K)
    eps = 2 * (L + 1) * (d * m) ** (1 / p) / K_target * inst["eps_slack"] * (1 + 1e-12)
    K = du.choose_K(L, d, m, p, eps)
    if K & (K - 1):
        K = 1 << (K - 1).bit_length()  # next dyadic K: a finer grid only lowers the surrogate error
    net = _net(d, m, K, typo_t_l=typo)
    f = random_lipschitz(inst["seed"], d, m, L, p, inst["kind"])
    P = du.wang_table_prompt(f, d, m, K)
    tau = min(0.25 / K, eps / (4 * m ** (1 / p)))
    lam = du.lambda_threshold(net.plan, tau) / lam_div
    eta_q = du.ramp_width_for(net, eps, p)
    rng = np.random.default_rng(inst["seed"])
    X = rng.uniform(0, 1, size=(N_MC, d, m))
    g = du.float_outputs(net, P, X, du.soft_params(lam, eta_q))
    h = alpha_norm(g - f(X), p, axis=(1, 2)) ** p
    # samples on the quantizer ramps (x in (k delta - eta_q, k delta)) are charged to the ramp term, not sampled
    frac = X * K - np.floor(X * K)
    on_ramp = np.any(frac > 1 - K * eta_q, axis=(1, 2))
    h = np.where(on_ramp, 0.0, h)
    H = (du.sup_bound(L, d, m, p, K) + m ** (1 / p) * (tau + du.float_rounding_floor(net))) ** p
    margin = H * math.sqrt(math.log(1 / HOEFFDING_ALPHA) / (2 * N_MC))
    est = float(np.mean(h))
    ramp = du.ramp_term(net, eta_q, p)
    observed = (est + margin) ** (1 / p) + ramp
    return verify.Evidence(
        observed=observed,
        bound=eps,
        notes=f"MC d_p^p = {est:.4g} over {N_MC} X, Hoeffding margin {margin:.3g} (one-sided {HOEFFDING_ALPHA}),"
        f" ramp term {ramp:.2g} (eta_q = {eta_q:.2g}, {int(on_ramp.sum())} samples on ramps); lam = {lam:.4g}",
        resources={"K": K, "n": net.n, "L_p": net.m_p, "value_map_layers": net.n_value_layers, "lam": lam,
                   "attention_layers": net.plan.n_attention_layers},
    )


@verify.claim(
    "wang23.universality.end_to_end",
    source=f"{SOURCE} §2.1 Theorem 1 [R], quantitative chain [D] (surrogate + softmax threshold + ramp measure)",
    statement="delta = 1/ceil(2(L+1)(dm)^{1/p}/eps), lam = lam*(tau), eta_q as derived: d_p(g_soft([P_f, .])_{:,m_p:},"
    " f) <= eps (Monte Carlo upper confidence bound)",
    strategy=e2e_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="value map m K^{dn} <= 15,625 layers, dyadic K; K = 8 at d = m = 1 needs 8^9 layers (out of reach)",
)
def check_end_to_end(inst, backend):
    _numpy_only(backend)
    return _end_to_end(inst)


@verify.mutant("wang23.universality.end_to_end", "lambda_far_below_threshold")
def mutant_e2e_low(inst, backend):
    """Softmax inverse temperature lam*/64."""
    _numpy_only(backend)
    return _end_to_end(inst, lam_div=64.0)


# --------------------------------------------------------------------------------------------
# 6. counting bound on m_p, its tightness, and the table bijection
# --------------------------------------------------------------------------------------------

counting_instances = st.fixed_dictionaries(
    {"d": st.integers(1, 3), "m": st.integers(1, 3), "K": st.integers(2, 6)}
)


def _counting(inst, m_p_fn=None):
    d, m, K = inst["d"], inst["m"], inst["K"]
    m_p = du.prompt_length(d, m, K) if m_p_fn is None else m_p_fn(d, m, K)
    logC, logP = du.counting_check(d, m, K, m_p)
    short = du.counting_check(d, m, K, m_p - 1)[1] if m_p > 1 else 0.0
    tight = f"; one token fewer gives ratio {logC / short:.6g}" if short > 0 else ""
    return verify.Evidence(
        observed=logC,
        bound=logP,
        notes=f"log C = dm K^(dm) log K = {logC:.6g}; log #prompts(m_p = {m_p}) = d m_p log K = {logP:.6g}{tight}",
        resources={"m_p": m_p, "counting_bound": du.counting_bound_mp(d, m, K), "K": K},
    )


@verify.claim(
    "wang23.universality.prompt_counting",
    source=f"{SOURCE} §2.1 'Prompt length by counting' [D, C]",
    statement="log C = dm delta^{-dm} log(1/delta) <= d m_p log(1/delta) iff m_p >= m delta^{-dm}; the table"
    " encoding (m_p = m delta^{-dm}) attains equality",
    strategy=counting_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="dm <= 9, K <= 6: logs in float64 (exactly equal at the table length)",
)
def check_prompt_counting(inst, backend):
    return _counting(inst)


@verify.mutant("wang23.universality.prompt_counting", "one_token_short")
def mutant_counting_short(inst, backend):
    """m_p = m delta^{-dm} - 1."""
    return _counting(inst, lambda d, m, K: du.prompt_length(d, m, K) - 1)


# --------------------------------------------------------------------------------------------
# comparison table
# --------------------------------------------------------------------------------------------

HU_VARIANTS = ("multi_ffn", "two_ffn")
TABLE_ROWS = ((1, 1, 1.0, 1.0, 1.0), (1, 1, 1.0, 1.0, 0.5), (1, 2, 1.0, 1.0, 1.0), (2, 1, 1.0, 1.0, 1.0),
              (2, 2, 1.0, 1.0, 0.5), (4, 4, 1.0, 2.0, 0.1))


def _fmt(v):
    """Ints above 10^18 as '~10^x' (Hu's counts come back exact), tuples element-wise."""
    if isinstance(v, tuple):
        return "(" + ", ".join(str(_fmt(x)) for x in v) + ")"
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and abs(v) >= 10**18:
        return f"~10^{len(str(abs(v))) - 1 + math.log10(int(str(abs(v))[:15]) / 10**14):.4g}"
    if isinstance(v, float):
        return f"{v:.3g}"
    return v


def _hu_counts(d, L, C, alpha, eps):
    """Hu et al.'s counts from constructions.universality.resource_counts (None while that module is missing)."""
    try:
        from constructions import universality as hu
    except ImportError:
        return None
    return [(v, hu.resource_counts(d, L, C, alpha, eps, v)) for v in HU_VARIANTS]


@verify.table("wang23_vs_hu24", title="Resources: Wang et al. 2023 (deep) vs Hu et al. 2024 (one attention layer)",
              in_report=True)
def comparison_table(max_seconds: float = 60.0):
    headers = ["d", "L (=m)", "C (=Lip)", "alpha (=p)", "eps", "construction", "K=1/delta", "attention layers",
               "heads", "FFN layers", "FFN width", "prompt length", "digits"]
    rows = []
    for d, L, C, a, eps in TABLE_ROWS:
        w = du.resource_counts_eps(d, L, C, a, eps)
        rows.append([d, L, C, a, eps, "Wang23 (Yun-style, hardmax T^{2,1,1})", w["K"], w["attention_layers"],
                     "2 x size 1", w["ffn_layers"], w["ffn_width"], w["L_p"], w["digits"]])
        hu = _hu_counts(d, L, C, a, eps)
        if hu is None:
            rows.append([d, L, C, a, eps, "Hu24: constructions.universality not available"] + [""] * 7)
            continue
        for variant, r in hu:
            rows.append([d, L, C, a, eps, f"Hu24 ({variant})", r.get("K"), r.get("attention_layers"), r.get("heads"),
                         r.get("ffn_layers"), r.get("ffn_widths"), r.get("L_p"), r.get("dps")])
    notes = ("Wang: K from delta = 1/ceil(2(L+1)(dm)^{1/p}/eps) (round-down surrogate); n = m(1+K^{dm});"
             " attention n K^d + 1; FFN d n K + d (quantization) + 1 + d (cleanup) + m K^{dn} (value map);"
             " digits = decimal digits of the largest contextual id t_r in units of delta/2 (exact evaluation)."
             " Hu: constructions.universality.resource_counts (K from (C+1/2), centred surrogate); dps = mpmath digits."
             " Counts above 10^18 printed as 10^x.")
    return headers, [[_fmt(v) for v in r] for r in rows], notes


LAMBDA_FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)


@verify.table("wang23_softmax", title="Wang et al. 2023: softmax network vs hardmax network as lambda grows")
def softmax_table(max_seconds: float = 60.0):
    """Max |g_soft - g_hard| over grid inputs and the Monte Carlo d_1 over uniform X, at lam = fraction * lam*(tau)."""
    headers = ["(d, m, K)", "tau", "lam*", "lam/lam*", "lam", "max grid error", "MC d_1(g_soft, g_hard)"]
    rows = []
    tau = 1e-4
    for d, m, K in DYADIC:
        net = _net(d, m, K)
        rng = np.random.default_rng(0)
        P = (rng.integers(0, K, size=(d, net.m_p)) + 0.5) / K
        G = du.grid_inputs(d, m, K)
        X = rng.uniform(0, 1, size=(500, d, m))
        hard_g, hard_x = du.float_outputs(net, P, G), du.float_outputs(net, P, X)
        ls = du.lambda_threshold(net.plan, tau)
        for fr in LAMBDA_FRACTIONS:
            sp = du.soft_params(ls * fr)
            eg = float(np.max(np.abs(du.float_outputs(net, P, G, sp) - hard_g)))
            ex = float(np.mean(alpha_norm(du.float_outputs(net, P, X, sp) - hard_x, 1.0, axis=(1, 2))))
            rows.append([f"({d}, {m}, {K})", tau, f"{ls:.4g}", f"{fr:.4g}", f"{ls * fr:.4g}", f"{eg:.3g}", f"{ex:.3g}"])
    notes = ("lam* = 8 delta^-2 ln((n-1) Lambda / tau) [D]; errors are exactly 0 once every off-maximum softmax weight"
             " underflows; the quantizer ramps are taken of width 0 here (their share is bounded separately).")
    return headers, rows, notes
