"""Claims about Wang et al. 2023's deep universality construction (Yun-style; wang2023.md §2.1, §3.2).

wang23.universality.surrogate_bound   sup_X ||f - Q f Q||_p <= (L+1) delta (dm)^{1/p}                   [D]
wang23.universality.contextual_map    P1-P4 of the selective-shift stack with the corrected t_l, exhaustive  [D/C]
wang23.universality.table_prompt      hardmax network with P(f) equals fbar on every grid input, exactly     [D]
wang23.universality.softmax_close     softmax(lam) network within tau of hardmax on grid inputs, lam >= lam*  [D]
wang23.universality.end_to_end        d_p(g_soft([P_f, .]), f) <= eps (Monte Carlo + Hoeffding margin)      [R/D]

The counting claims (prompt_counting, resource_counts) and the Wang-vs-Hu table are in
properties.deep_resource_counts, the value-map lookup (value_map_lookup) in properties.deep_value_map.
Every mutant is a patch of a construction (constructions.deep_universality, constructions.selective_shift)
or a tightened bound, run through the claim's unchanged check.

Sizes: the value map has m K^{dn} layers with n = m(1 + K^{dm}) (doubly exponential), so the networks are built
for (d, m, K) in {(1,1,2..5), (2,1,2), (1,2,2)} (<= 15,625 layers, cached); larger sizes raise OutOfReach with
that count. Weight-level float64 evaluation needs dyadic delta (exact thresholds); the exact claims run on Python
integers (ids in units of delta/2) for every K.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import strategies as st

import verify
from constructions import deep_universality as du
from constructions import selective_shift as ss
from constructions.lipschitz import KINDS, LipschitzMap, alpha_norm
from properties.memorization import lipschitz_target, target_map

# originals kept in a dict: a patch rebinds every module global that is the patched object, not dict values
_ORIG = {"t_bounds": ss.ShiftPlan.t_bounds, "wang_table": du.wang_table, "lambda_threshold": du.lambda_threshold,
         "prompt_length": du.prompt_length, "resource_counts": du.resource_counts}

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

_surrogate_base = st.fixed_dictionaries(
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


def _with_surrogate_data(inst):
    """The seed's target (as arrays) and 400 uniform inputs, materialised at draw time."""
    d, m = inst["d"], inst["m"]
    rng = np.random.default_rng(inst["seed"])
    out = {**inst, "X": rng.uniform(0, 1, size=(400, d, m))}
    if inst["kind"] != "adversarial":
        out["target"] = lipschitz_target(inst["seed"], d, m, inst["L"], inst["p"], inst["kind"])
    return out


surrogate_instances = _surrogate_base.map(_with_surrogate_data)


def _adversarial(d, m, L, p, K) -> tuple[LipschitzMap, np.ndarray]:
    """f(X) = clip(L X + b) entry-wise (L-Lipschitz in every entry-wise p-norm) with b just below delta, probed at
    X = delta - tiny: input rounding costs L delta, output rounding nearly delta more, per entry."""
    n = d * m
    delta = 1.0 / K
    b = np.full(n, delta * (1 - 1e-9))
    f = LipschitzMap(d, m, float(L), float(p), "clipped_linear", {"A": L * np.eye(n), "b": b})
    X = np.full((1, d, m), delta * (1 - 1e-9))
    return f, X


def _surrogate_measure(inst):
    d, m, L, p, K = inst["d"], inst["m"], inst["L"], inst["p"], inst["K"]
    if inst["kind"] == "adversarial":
        f, Xa = _adversarial(d, m, L, p, K)
    else:
        f = target_map(inst["target"])
        Xa = np.zeros((0, d, m))
    X = np.concatenate([inst["X"], Xa])
    fbar = du.wang_surrogate(f, K)
    err = alpha_norm(f(X) - fbar(X), p, axis=(1, 2))
    worst = float(np.max(err))
    bound = du.sup_bound(L, d, m, p, K)
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
    tight=0.99,
)
def check_surrogate_bound(inst, backend):
    _numpy_only(backend)
    return _surrogate_measure(inst)


verify.patch_mutant("wang23.universality.surrogate_bound", "bound_without_output_rounding",
                    {"constructions.deep_universality.sup_bound":
                     lambda L, d, m, p, K, plus_one=True: L / K * (d * m) ** (1.0 / p)},
                    description="the bound L delta (dm)^{1/p}: the output quantization's delta per entry dropped")
verify.patch_mutant("wang23.universality.surrogate_bound", "hu_centred_constant_for_round_down",
                    {"constructions.deep_universality.sup_bound":
                     lambda L, d, m, p, K, plus_one=True: (L + 0.5) / K * (d * m) ** (1.0 / p)},
                    description="Hu et al.'s (L + 1/2) constant (centred output grid) applied to Wang's round-down Q")


# --------------------------------------------------------------------------------------------
# 2. contextual mapping P1-P4
# --------------------------------------------------------------------------------------------

def _with_invalid_sequences(inst):
    """k random grid sequences with random invalid entries (at least one each), materialised at draw time."""
    d, n, K = inst["size"]
    rng = np.random.default_rng(inst["seed"])
    k = inst["n_invalid"]
    rows = rng.integers(0, K ** (d * n), size=k)
    inv = rng.random((k, d, n)) < rng.uniform(0.05, 0.6)
    inv[np.arange(k), rng.integers(0, d, size=k), rng.integers(0, n, size=k)] = True
    return {**inst, "rows": rows.astype(np.int64), "invalid": inv}


context_instances = st.fixed_dictionaries(
    {"size": st.sampled_from(CONTEXT_SIZES), "seed": st.integers(0, 2**32 - 1), "n_invalid": st.integers(0, 40)}
).map(_with_invalid_sequences)


def _contextual(inst):
    d, n, K = inst["size"]
    plan = ss.ShiftPlan(d, n, K)
    cells = ss.enumerate_cells(d, n, K)
    q = ss.contextual_ids(ss.ids_from_cells(cells, plan), plan)
    qi = None
    if len(inst["rows"]):
        c2 = cells[np.asarray(inst["rows"], dtype=np.int64)]
        qi = ss.contextual_ids(ss.ids_from_cells(c2, plan, np.asarray(inst["invalid"], dtype=bool)), plan)
    r = ss.contextual_report(plan, q, qi)
    n_enum = sum(1 for _ in itertools.product(range(K), repeat=d * n))  # grid sequences, enumerated
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
        conditions=(verify.Condition("n_sequences", r.n_valid == plan.n_sequences == n_enum,
                                     f"{r.n_valid} valid sequences run, n_sequences = {plan.n_sequences},"
                                     f" {n_enum} enumerated"),),
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
    tight=0.99,
)
def check_contextual_map(inst, backend):
    return _contextual(inst)


def _t_bounds_typo(self, typo=False):
    """(t_l, t_r) with the DiT restatement's t_l = n delta^{-2(n+1)d}(delta^{-d} - 1), whatever is asked."""
    return _ORIG["t_bounds"](self, typo=True)


verify.patch_mutant("wang23.universality.contextual_map", "yun_uncorrected_t_l",
                    {"constructions.selective_shift.ShiftPlan.t_bounds": _t_bounds_typo},
                    description="t_l = n delta^{-2(n+1)d}(delta^{-d} - 1), as printed in the DiT restatement")
verify.patch_mutant("wang23.universality.contextual_map", "shift_scale_delta_pow_1_minus_d",
                    {"constructions.selective_shift.ShiftPlan.shift_scale":
                     property(lambda self: self.K ** (self.d - 1))},
                    description="selective shifts scaled by delta^{-(d-1)}: the shifted id no longer overtakes the max")


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


def _with_table_data(inst):
    """The seed's target (as arrays, unless constant) and n_random uniform inputs, materialised at draw time."""
    d, m, _ = inst["size"]
    rng = np.random.default_rng(inst["seed"])
    out = {**inst, "X": rng.uniform(0, 1, size=(inst["n_random"], d, m))}
    if inst.get("constant") is None:
        out["target"] = lipschitz_target(inst["seed"], d, m, inst["L"], inst["p"], inst["kind"])
    return out


table_instances = table_instances.map(_with_table_data)
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
).map(_with_table_data)


def _table(inst):
    d, m, K = inst["size"]
    net = _net(d, m, K)
    if inst.get("constant") is not None:  # f = const: in F_L for every L
        n = d * m
        f = LipschitzMap(d, m, inst["L"], inst["p"], "clipped_linear", {"A": np.zeros((n, n)),
                                                                         "b": np.full(n, inst["constant"])})
    else:
        f = target_map(inst["target"])
    P = du.wang_table_prompt(f, d, m, K)  # cell centres of the round-down table
    X = np.concatenate([du.grid_inputs(d, m, K), inst["X"]])
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


verify.patch_mutant("wang23.universality.table_prompt", "cleanup_with_uncorrected_t_l",
                    {"constructions.selective_shift.ShiftPlan.t_bounds": _t_bounds_typo},
                    strategy=typo_reaching_instances,
                    description="cleanup window [t_l, t_r] with Yun's uncorrected t_l: valid columns below it erased")
verify.patch_mutant(
    "wang23.universality.table_prompt", "table_in_reversed_grid_order",
    {"constructions.deep_universality.wang_table": lambda f, d, m, K: _ORIG["wang_table"](f, d, m, K)[::-1]},
    # a constant (or 0-Lipschitz) target has a palindromic table, which no reordering can expose
    strategy=st.fixed_dictionaries({"size": st.sampled_from(REACHABLE), "seed": st.integers(0, 2**32 - 1),
                                    "L": st.floats(0.5, 3.0), "p": st.sampled_from([1.0, 2.0]),
                                    "kind": st.sampled_from(KINDS), "n_random": st.integers(0, 64),
                                    "constant": st.none()}).map(_with_table_data),
    description="the prompt's blocks written in reversed grid order (the network reads token-major order)")


# --------------------------------------------------------------------------------------------
# 4. softmax network within tau of the hardmax network
# --------------------------------------------------------------------------------------------

_softmax_base = st.fixed_dictionaries(
    {
        "size": st.sampled_from(DYADIC),
        "seed": st.integers(0, 2**32 - 1),
        "log10_tau": st.floats(-6.0, 0.0),
        "lam_factor": st.floats(1.0, 4.0),
    }
)


def _with_prompt(inst):
    """A random grid prompt (d, m_p) of the size, materialised at draw time (the threshold is prompt-independent)."""
    d, m, K = inst["size"]
    rng = np.random.default_rng(inst["seed"])
    return {**inst, "P": rng.integers(0, K, size=(d, m * K ** (d * m))) / K}


softmax_instances = _softmax_base.map(_with_prompt)


def _softmax(inst):
    d, m, K = inst["size"]
    net = _net(d, m, K)
    P = inst["P"]
    tau = min(10 ** inst["log10_tau"], 0.25 / K)
    lam_star = du.lambda_threshold(net.plan, tau)
    lam = lam_star * inst["lam_factor"]
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


def _threshold_scaled(div, gap=None):
    def threshold(plan, tau, gap_factor=1.0 / 8.0, with_amplification=True):
        g = plan.K / 2.0 if gap else gap_factor
        return _ORIG["lambda_threshold"](plan, tau, g, with_amplification) / div
    return threshold


verify.patch_mutant("wang23.universality.softmax_close", "score_gap_without_query_margin",
                    {"constructions.deep_universality.lambda_threshold": _threshold_scaled(1.0, gap=True)},
                    strategy=_softmax_base.map(lambda i: {**i, "size": (1, 1, 4) if i["size"][0] == 2
                                                          or i["size"][1] == 2 else i["size"]}).map(_with_prompt),
                    description="lam* with score gap delta/2 (the key gap alone), the query margin delta/4 forgotten")
verify.patch_mutant("wang23.universality.softmax_close", "lambda_far_below_threshold",
                    {"constructions.deep_universality.lambda_threshold": _threshold_scaled(32.0)},
                    description="lam = lam*/32")


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


def _with_e2e_data(inst):
    """The seed's target (as arrays) and the N_MC Monte Carlo inputs, materialised at draw time."""
    d, m, _ = inst["size"]
    rng = np.random.default_rng(inst["seed"])
    return {**inst, "target": lipschitz_target(inst["seed"], d, m, inst["L"], inst["p"], inst["kind"]),
            "X": rng.uniform(0, 1, size=(N_MC, d, m))}


e2e_instances = e2e_instances.map(_with_e2e_data)


def _end_to_end(inst):
    d, m, K_target = inst["size"]
    L, p = inst["L"], inst["p"]
    # the eps whose delta choice gives K_target (times a slack >= 1 that may lower K)
    eps = 2 * (L + 1) * (d * m) ** (1 / p) / K_target * inst["eps_slack"] * (1 + 1e-12)
    K = du.choose_K(L, d, m, p, eps)
    if K & (K - 1):
        K = 1 << (K - 1).bit_length()  # next dyadic K: a finer grid only lowers the surrogate error
    net = _net(d, m, K)
    f = target_map(inst["target"])
    P = du.wang_table_prompt(f, d, m, K)
    tau = min(0.25 / K, eps / (4 * m ** (1 / p)))
    lam = du.lambda_threshold(net.plan, tau)
    eta_q = du.ramp_width_for(net, eps, p)
    X = inst["X"]
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


verify.patch_mutant("wang23.universality.end_to_end", "lambda_far_below_threshold",
                    {"constructions.deep_universality.lambda_threshold": _threshold_scaled(64.0)},
                    description="softmax inverse temperature lam*/64")


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
