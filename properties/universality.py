"""Claims about the assembled one-layer, one-head prompt-tuned approximator (Hu et al. 2024; hu2024.md §3, §5).

hu24.table_prompt_lookup     tau([P_T, X])_{:,L_p:} = T[cell(X)] for every table T, off the ramp set (item 15)
hu24.sup_off_ramp            ||tau([P_f,X]) - f(X)||_alpha <= (C+1/2) delta (dL)^{1/alpha} off the ramp set (item 20)
hu24.end_to_end_d_alpha      d_alpha(tau([P_f,.]), f) <= (C+1/2) delta (dL)^{1/alpha} + ramp term (MC, item 19)
hu24.tau_independent_of_f    one frozen tau serves every f through P_f alone (item 21)
hu24.architecture            1 attention layer, 1 head, 2 FFN layers (two_ffn) or 1 + M (multi_ffn) (item 22)

tau is built once per size (lru_cache in constructions.universality) and evaluated in mpmath at
dps = ceil(2R/ln 10) + 60 + log10(1/eta) + 5; sizes are capped at (d, L, K) in {(1,1,2..4), (1,2,2)}: the
node count K^{d(L_p+L)} L with L_p = L K^{dL} is doubly exponential (see the 'hu24' resource table).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import verify
from constructions import lipschitz as lp
from constructions import quantization as qz
from constructions import universality as un

SOURCE = "Hu et al. 2024 PT_uni_two_layer_FF2 / PT_uni_multi_layer_FF2; hu2024.md §3.3-3.6"
SIZES = [(1, 1, 2), (1, 1, 3), (1, 1, 4), (1, 2, 2)]
LIMITS = "(d, L, K) in {(1,1,2), (1,1,3), (1,1,4), (1,2,2)}: M = K^{d(L_p+L)} L <= 2048 nodes, dps <= ~1500"
HOEFFDING_BETA = 1e-3


def _need_numpy(backend):
    if backend.name != "numpy":
        raise verify.UnsupportedPrecision(f"mpmath-exact check; digits chosen inside, not {backend.label}")


ALPHA_MAX = 2.0  # largest alpha drawn; eta is chosen for the strictest (C = 0, ALPHA_MAX) case


def tau_for(size, variant="two_ffn"):
    """The cached tau for (d, L, K): built for C = 0, alpha = ALPHA_MAX, eps = 1.5 delta (dL)^{1/alpha}, whose ramp
    width eta also meets the ramp budget eps/3 of every (C >= 0, alpha <= ALPHA_MAX) instance with this K."""
    d, L, K = size
    C, alpha = 0.0, ALPHA_MAX
    eps = 3.0 * (C + 0.5) * (d * L) ** (1.0 / alpha) / K  # the eps for which choose_K gives this K
    try:
        return un.build_prompt_tuned_transformer(d, L, C, alpha, eps, variant, K=K)
    except ValueError as exc:
        raise verify.OutOfReach(str(exc)) from exc


def _res(tau, **kw):
    r = {"d": tau.d, "L": tau.L, "K": tau.K, "L_p": tau.L_p, "M": tau.resources["nodes_M"], "dps": tau.ctx.dps,
         "variant": tau.variant, "log10_min_id_gap": round(tau.node_min_gap_log10, 1)}
    r.update(kw)
    return r


def _centres(tau, rng, jitter: bool):
    """Cell centres of every grid input, optionally moved inside their cell but off every ramp."""
    G = qz.all_grid_points(tau.d, tau.L, tau.K) + 0.5 / tau.K
    if jitter:
        G = G + rng.uniform(-0.45, 0.45, size=G.shape) / tau.K
        centre = qz.all_grid_points(tau.d, tau.L, tau.K) + 0.5 / tau.K
        G = np.where(np.array([tau.in_ramp_set(X) for X in G])[:, None, None], centre, G)
    return G


def _lookup_error(tau, P, T, G, forward=None):
    ctx = tau.ctx
    worst = ctx.mpf(0)
    for X in G:
        out = forward(P, X) if forward else tau.forward_exact(P, X)
        idx = int(qz.grid_index(qz.cell_index(X, tau.K), tau.K))
        # table entries are centred grid values (k + 1/2)/K: compare with the exact value, not its float64
        cells = np.rint(np.asarray(T[idx]) * tau.K - 0.5).astype(int)
        worst = max([worst] + [abs(out[k][i] - ctx.mpf(2 * int(cells[i, k]) + 1) / (2 * tau.K))
                               for k in range(tau.L) for i in range(tau.d)])
    return worst


# --------------------------------------------------------------------------------------------
# item 15: table prompt
# --------------------------------------------------------------------------------------------


def _floor_evidence(tau, err, notes, **kw):
    """Evidence err / floor vs 1, the division done in tau's context: both are below 1e-300 (or their slopes
    above 1e308) at the larger sizes, where float(err) and float(floor) would underflow to 0 or overflow to inf."""
    ctx = tau.ctx
    ratio = ctx.mpf(err) / tau.floor
    logs = f"log10 err = {float(ctx.log10(err)) if err else float('-inf'):.1f}, log10 floor = " \
           f"{float(ctx.log10(tau.floor)):.1f}"
    return verify.Evidence(observed=float(ratio), bound=1.0, notes=f"{notes}; {logs}", **kw)

table_instances = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "size": st.sampled_from(SIZES),
    "variant": st.sampled_from(un.VARIANTS),
    "jitter": st.booleans(),
})


def _random_table(tau, seed):
    rng = np.random.default_rng(seed)
    N = tau.K ** (tau.d * tau.L)
    return (rng.integers(0, tau.K, size=(N, tau.d, tau.L)) + 0.5) / tau.K


def _table_check(inst, roll=0):
    tau = tau_for(tuple(inst["size"]), inst["variant"])
    T = _random_table(tau, inst["seed"])
    P = tau.prompt_for(np.roll(T, roll, axis=0))
    G = _centres(tau, np.random.default_rng(inst["seed"] + 1), inst["jitter"])
    err = _lookup_error(tau, P, T, G)
    return _floor_evidence(tau, err, f"max |tau([P_T, X]) - T[cell(X)]| over {len(G)} cells, over the derived"
                           " rounding floor", precision="mpmath", resources=_res(tau))


@verify.claim(
    "hu24.table_prompt_lookup",
    source=SOURCE + "; §5 item 15",
    statement="tau([P_T, X])_{:,L_p:} = T[cell(X)] for every table T (centred values) and X off the ramp set",
    strategy=table_instances,
    provenance="derived",
    precision="mpmath",
    limits=LIMITS,
    max_examples=20,
)
def check_table_prompt(inst, backend):
    _need_numpy(backend)
    return _table_check(inst)


@verify.mutant("hu24.table_prompt_lookup", "lookup_off_by_one")
def mutant_table_off_by_one(inst, backend):
    """The prompt stores the table shifted by one grid cell."""
    return _table_check(inst, roll=1)


def _forward_with(tau, ff2, positional=True):
    """tau with its FF2 replaced by ``ff2`` (and, positional=False, without the positional offsets)."""
    ctx = tau.ctx

    def forward(P, X):
        if positional:
            toks = tau._prompt_tokens(P) + tau._ff1_columns([X[:, j] for j in range(tau.L)], tau.L_p)
        else:  # every column offset by 1 (FF1's range starts at 1), not by its position
            Z = np.concatenate([P, X], axis=1)
            out = tau.ff1.apply_mp([[ctx.mpf(float(v)) + 1 for v in row] for row in Z], ctx)
            toks = [[out[i, j] for i in range(tau.d)] for j in range(Z.shape[1])]
        ys = tau.head.apply_mp(toks, ctx, queries=range(tau.L_p, tau.n))
        return [ff2.apply_column(y, ctx) for y in ys]

    return forward


@verify.mutant("hu24.table_prompt_lookup", "missing_positional_offset")
def mutant_table_no_position(inst, backend):
    """No positional offsets: [P, X] are multisets of grid tokens, contexts collide, FF2 keeps one target per id."""
    tau = tau_for(tuple(inst["size"]), "two_ffn")
    ctx = tau.ctx
    z, v, t = un._enumerate_nodes(tau.d, tau.L, tau.K, tau.ff1, tau.head, ctx, tau.head.w, positional=False)
    seen = {}
    for zi, vi, ti in zip(z, v, t, strict=True):
        seen.setdefault(zi, (vi, ti))  # colliding contexts: the first target wins
    ff2 = un.build_ff2(list(seen), [p[0] for p in seen.values()], [p[1] for p in seen.values()], tau.head.w, ctx)
    T = _random_table(tau, inst["seed"])
    G = _centres(tau, np.random.default_rng(inst["seed"] + 1), False)
    err = _lookup_error(tau, tau.prompt_for(T), T, G, _forward_with(tau, ff2, positional=False))
    return _floor_evidence(tau, err, "contexts collide without positional offsets", resources=_res(tau))


# --------------------------------------------------------------------------------------------
# items 19, 20: approximation of Lipschitz targets
# --------------------------------------------------------------------------------------------

target_instances = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "size": st.sampled_from(SIZES),
    "C": st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0]),
    "alpha": st.sampled_from([1.0, 2.0]),
    "kind": st.sampled_from(["clipped_linear", "bump_sum", "relu_net"]),
    "variant": st.sampled_from(un.VARIANTS),
})


def _target(inst, d, L, seed_shift=0):
    return lp.random_lipschitz(inst["seed"] + seed_shift, d, L, inst["C"], inst["alpha"], inst["kind"])


def _samples(tau, rng, n):
    """n uniform inputs off the ramp set (ramp hits, probability <= dLK eta, are redrawn and counted)."""
    out, hits = [], 0
    while len(out) < n:
        X = rng.random((tau.d, tau.L))
        if tau.in_ramp_set(X):
            hits += 1
            continue
        out.append(X)
    return np.stack(out), hits


def _errors(tau, P, f, Xs, alpha):
    Y = tau.predict(P, Xs)
    F = np.asarray(f(Xs), dtype=np.float64)
    return np.sum(np.abs(Y - F) ** alpha, axis=(1, 2)) ** (1.0 / alpha)


def _sup_check(inst, bound_fn=None, other=False):
    d, L, K = inst["size"]
    tau = tau_for((d, L, K), inst["variant"])
    f = _target(inst, d, L)
    P = tau.prompt_for(_target(inst, d, L, 1) if other else f)
    Xs, hits = _samples(tau, np.random.default_rng(inst["seed"] + 2), 24 if d * L == 1 else 12)
    err = _errors(tau, P, f, Xs, inst["alpha"])
    bound = (bound_fn or qz.surrogate_sup_bound)(inst["C"], d, L, inst["alpha"], K)
    return verify.Evidence(observed=float(np.max(err)), bound=bound, precision="mpmath",
                           notes=f"max over {len(Xs)} off-ramp inputs ({hits} ramp draws redrawn), f = {inst['kind']}",
                           resources=_res(tau, C=inst["C"], alpha=inst["alpha"]))


@verify.claim(
    "hu24.sup_off_ramp",
    source=SOURCE + "; §5 item 20 (§3.1 surrogate bound)",
    statement="X off the ramp set: ||tau([P_f,X])_{:,L_p:} - f(X)||_alpha <= (C+1/2) delta (dL)^{1/alpha}",
    strategy=target_instances,
    provenance="derived",
    precision="mpmath",
    limits=LIMITS + "; 12-24 inputs per instance",
    max_examples=20,
)
def check_sup_off_ramp(inst, backend):
    _need_numpy(backend)
    return _sup_check(inst)


@verify.mutant("hu24.sup_off_ramp", "bound_without_half")
def mutant_sup_no_half(inst, backend):
    """The bound C delta (dL)^{1/alpha}: drops the output quantizer's delta/2 (fails for constant targets)."""
    return _sup_check(inst, bound_fn=lambda C, d, L, a, K: C / K * (d * L) ** (1.0 / a))


@verify.mutant("hu24.sup_off_ramp", "prompt_of_another_target")
def mutant_sup_other(inst, backend):
    """tau evaluated with the prompt of an independent target g."""
    return _sup_check(inst, other=True)


def _mc_check(inst, bound_shift=0.0, other=False):
    d, L, K = inst["size"]
    alpha, C = inst["alpha"], inst["C"]
    tau = tau_for((d, L, K), inst["variant"])
    f = _target(inst, d, L)
    P = tau.prompt_for(_target(inst, d, L, 1) if other else f)
    N = 160 if d * L == 1 else 48
    Xs, hits = _samples(tau, np.random.default_rng(inst["seed"] + 3), N)
    V = _errors(tau, P, f, Xs, alpha) ** alpha
    sup = qz.surrogate_sup_bound(C, d, L, alpha, K)
    b = sup**alpha  # a-priori range of V off the ramp set (hu24.sup_off_ramp checks it); sup > 0
    t = b * math.sqrt(math.log(1.0 / HOEFFDING_BETA) / (2 * N))
    ramp = tau.ramp_term(alpha)
    # float64 V: dL entries |e| <= 1 each off by <= 2u, |e|^alpha by alpha 2u + u, the sum by dL u b
    v_floor = d * L * 2.0**-53 * (2 * alpha + 1 + b)
    if np.max(V) > b + v_floor:
        est = math.inf  # the sample left the Hoeffding range: the sup bound itself failed
    else:
        est = (float(np.mean(V)) + t) ** (1.0 / alpha) + ramp
    eps = 3.0 * sup  # K = choose_K(C, d, L, alpha, eps): the theorem's accuracy for this K
    if ramp > eps / 3:
        raise verify.OutOfReach(f"ramp term {ramp:.3g} exceeds eps/3 = {eps / 3:.3g} for this tau's eta")
    bound = eps * (1.0 - bound_shift)
    return verify.Evidence(
        observed=est, bound=bound, precision="mpmath",
        notes=f"observed = (mean ||err||^alpha + t)^(1/alpha) + ramp term, N = {N} off-ramp samples, "
              f"Hoeffding t = {t:.3g} on range [0, {b:.3g}] (one-sided, confidence {1 - HOEFFDING_BETA}); "
              f"ramp term {ramp:.2g} (sup {un.ramp_sup_bound(d, L, tau.n, alpha):.3g} x measure^(1/alpha)); "
              f"mean {float(np.mean(V)) ** (1 / alpha):.4g}; construction's own bound sup + ramp = {sup + ramp:.4g}",
        resources=_res(tau, C=C, alpha=alpha, N=N, eps=round(3 * sup, 4)))


@verify.claim(
    "hu24.end_to_end_d_alpha",
    source=SOURCE + "; §5 item 19 (PT_uni theorems, d_alpha <= eps)",
    statement="d_alpha(tau([P_f,.])_{:,L_p:}, f) <= eps for K = ceil(3(C+1/2)(dL)^{1/alpha}/eps) "
              "(Monte Carlo upper confidence bound; construction: <= (C+1/2) delta (dL)^{1/alpha} + ramp <= 2eps/3)",
    strategy=target_instances,
    provenance="derived",
    precision="mpmath",
    limits=LIMITS + "; 48-160 Monte Carlo samples per instance",
    max_examples=12,
)
def check_end_to_end(inst, backend):
    _need_numpy(backend)
    return _mc_check(inst)


@verify.mutant("hu24.end_to_end_d_alpha", "prompt_of_another_target")
def mutant_mc_other(inst, backend):
    """tau evaluated with the prompt of an independent target g."""
    return _mc_check(inst, other=True)


@verify.mutant("hu24.end_to_end_d_alpha", "bound_without_half")
def mutant_mc_no_half(inst, backend):
    """eps computed without the output quantizer's 1/2: 3 C delta (dL)^{1/alpha} (fails for constant targets)."""
    return _mc_check(inst, bound_shift=0.5 / (inst["C"] + 0.5))


# --------------------------------------------------------------------------------------------
# item 21: tau independent of f
# --------------------------------------------------------------------------------------------

indep_instances = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "size": st.sampled_from(SIZES),
    "n_targets": st.integers(2, 3),
})


def _indep_check(inst, fitted=False):
    tau = tau_for(tuple(inst["size"]))
    tau2 = tau_for(tuple(inst["size"]))
    same = tau is tau2
    tables = [_random_table(tau, inst["seed"] + i) for i in range(inst["n_targets"])]
    G = _centres(tau, np.random.default_rng(inst["seed"]), False)
    forward = None
    if fitted:  # FF2 fitted to the first target's prompt only: tau would depend on f
        P0 = tau.prompt_for(tables[0])
        pc = [tuple(int(k) for k in qz.cell_index(P0[:, j], tau.K))[0] for j in range(tau.L_p)] if tau.d == 1 else None
        z, v, t = un._enumerate_nodes(tau.d, tau.L, tau.K, tau.ff1, tau.head, tau.ctx, tau.head.w,
                                      restrict_prompts=[pc])
        forward = _forward_with(tau, un.build_ff2(z, v, t, tau.head.w, tau.ctx))

    err = max(_lookup_error(tau, tau.prompt_for(T), T, G, forward) for T in tables)
    if not same:
        return verify.Evidence(observed=math.nan, bound=1.0, notes="tau was rebuilt: it depends on f",
                               precision="mpmath", resources=_res(tau, targets=len(tables)))
    return _floor_evidence(tau, err, f"one cached tau reproduces {len(tables)} tables exactly",
                           precision="mpmath", resources=_res(tau, targets=len(tables)))


@verify.claim(
    "hu24.tau_independent_of_f",
    source=SOURCE + "; §5 item 21",
    statement="one frozen tau (built without f) reproduces fbar for every f through P_f alone",
    strategy=indep_instances,
    provenance="reconstructed",
    precision="mpmath",
    limits=LIMITS,
    max_examples=12,
)
def check_independent(inst, backend):
    _need_numpy(backend)
    return _indep_check(inst)


@verify.mutant("hu24.tau_independent_of_f", "ff2_fitted_to_one_target")
def mutant_independent(inst, backend):
    """FF2 built from the contexts of one target's prompt only (a tau that depends on f)."""
    return _indep_check(inst, fitted=True)


# --------------------------------------------------------------------------------------------
# item 22: architecture
# --------------------------------------------------------------------------------------------

arch_instances = st.fixed_dictionaries({"size": st.sampled_from(SIZES), "variant": st.sampled_from(un.VARIANTS)})


def _arch_check(inst, counts_fn=un.resource_counts):
    d, L, K = inst["size"]
    tau = tau_for((d, L, K), inst["variant"])
    built = {
        "attention_layers": 1,  # the transformer holds exactly one attention sublayer: tau.head
        "heads": 1 if tau.head is not None else 0,
        "ffn_layers": 2 if inst["variant"] == "two_ffn" else 1 + tau.ff2.depth,
        "ffn_widths": (tau.ff1.hidden_width, tau.ff2.hidden_width if inst["variant"] == "two_ffn" else tau.ff2.width),
        "L_p": tau.L_p,
        "nodes_M": tau.ff2.M,
    }
    eps = 3.0 * 1.5 * (d * L) / K
    claimed = counts_fn(d, L, 1.0, 1.0, eps, inst["variant"], K=K)
    paper = {"attention_layers": 1, "heads": 1,
             "ffn_layers": 2 if inst["variant"] == "two_ffn" else 1 + claimed["nodes_M"]}
    mism = [k for k in built if built[k] != claimed[k]] + [k for k in paper if paper[k] != built[k]]
    return verify.Evidence(observed=len(mism), bound=0, notes=f"mismatches: {mism or 'none'}",
                           resources={k: str(v) for k, v in built.items()})


@verify.claim(
    "hu24.architecture",
    source=SOURCE + "; §5 item 22 (§2.4 resource table)",
    statement="1 attention layer with 1 head; FFN layers 2 (two_ffn: widths d(2(nK-1)+1), M) or 1 + M (multi_ffn, "
              "width 4); L_p = L K^{dL}; M = K^{d(L_p+L)} L; built tau = resource_counts",
    strategy=arch_instances,
    provenance="reconstructed",
    precision="float64",
    limits=LIMITS,
)
def check_architecture(inst, backend):
    _need_numpy(backend)
    return _arch_check(inst)


@verify.mutant("hu24.architecture", "node_count_without_L")
def mutant_arch(inst, backend):
    """resource_counts with M = K^{d(L_p+L)} (the factor L for the read columns dropped)."""

    def wrong(*a, **kw):
        r = dict(un.resource_counts(*a, **kw))
        r["nodes_M"] = r["nodes_M"] // a[1]
        return r

    return _arch_check(inst, wrong)


# --------------------------------------------------------------------------------------------
# resource table
# --------------------------------------------------------------------------------------------

TABLE_SIZES = [(1, 1, 2), (1, 1, 3), (1, 1, 4), (1, 2, 2), (1, 1, 5), (1, 1, 6), (1, 3, 2), (1, 2, 3), (2, 1, 2),
               (2, 2, 2), (1, 1, 10), (2, 2, 10)]


def _fmt(x):
    if isinstance(x, int) and abs(x) >= 10**7:
        return f"{x:.3e}".replace("e+", "e")
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, tuple):
        return ", ".join(_fmt(v) for v in x)
    return str(x)


@verify.table("hu24", title="Resource growth of the one-layer prompt-tuned transformer", in_report=True)
def sizes_table(max_seconds: float = 60.0):
    """d, L, K, eps (C = 1, alpha = 1), L_p, M, digits, FFN widths, build seconds; sizes beyond budget show counts."""
    import time

    headers = ["d", "L", "K", "eps (C=1, a=1)", "L_p", "nodes M", "digits", "FFN widths (two_ffn)",
               "FFN layers (multi_ffn)", "build s", "status"]
    rows = []
    t_start = time.perf_counter()
    for d, L, K in TABLE_SIZES:
        eps = 3.0 * 1.5 * d * L / K
        c2 = un.resource_counts(d, L, 1.0, 1.0, eps, "two_ffn", K=K)
        cm_ = un.resource_counts(d, L, 1.0, 1.0, eps, "multi_ffn", K=K)
        left = max_seconds - (time.perf_counter() - t_start)
        est = un.estimate_build_seconds(c2)
        status, secs = "", "—"
        if not isinstance(c2["nodes_M"], int) or c2["nodes_M"] > 10**6:
            status = f"not built: M = {_fmt(c2['nodes_M'])} nodes"
        elif not isinstance(c2["dps"], int) or c2["dps"] > 20_000:
            status = f"not built: {_fmt(c2['dps'])} digits"
        elif est > left:
            status = f"not built: estimated {est:.0f} s > {left:.0f} s left"
        else:
            t0 = time.perf_counter()
            tau = un.build_prompt_tuned_transformer(d, L, 1.0, 1.0, eps, "two_ffn", K=K, max_nodes=10**6,
                                                    max_dps=20_000)
            secs = f"{time.perf_counter() - t0:.2f}"
            status = f"built (min id gap 10^{tau.node_min_gap_log10:.1f})"
        rows.append([d, L, K, _fmt(eps), _fmt(c2["L_p"]), _fmt(c2["nodes_M"]), _fmt(c2["dps"]),
                     _fmt(c2["ffn_widths"]), _fmt(cm_["ffn_layers"]), secs, status])
    notes = ("K = 1/delta; eps is the accuracy for which K = ceil(3(C+1/2)(dL)^{1/alpha}/eps) at C = 1, alpha = 1. "
             "L_p = L K^{dL}; M = K^{d(L_p+L)} L contextual ids; digits = ceil(2R/ln 10) + 60 + log10(1/eta) + 5 with "
             "R = xi r_max^2 (d = 1: c = 1; d > 1: c_theory); two_ffn widths are FF1 d(2(nK-1)+1) and FF2 M; "
             "multi_ffn has 1 + M FFN layers of width 4 after FF1. Built = tau constructed in mpmath here "
             "(cached by size); beyond the budget the counts come from resource_counts without building.")
    return headers, rows, notes
