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

import functools
import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import verify
from constructions import memorization as mem
from constructions import quantization as qz
from constructions import universality as un
from constructions.precision import unit_roundoff
from properties.memorization import lipschitz_target, target_map

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


def _lookup_error(tau, P, T, G):
    ctx = tau.ctx
    worst = ctx.mpf(0)
    for X in G:
        out = tau.forward_exact(P, X)
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

@st.composite
def _table_cells(draw, size):
    d, L, K = size
    return draw(hnp.arrays(np.int64, (K ** (d * L), d, L), elements=st.integers(0, K - 1)))


@st.composite
def table_instances(draw):
    """A size, a variant, a table of cells (centred values) and per-cell jitters inside the cells (drawn arrays)."""
    size = draw(st.sampled_from(SIZES))
    d, L, K = size
    N = K ** (d * L)
    jitter = draw(st.booleans())
    return {"size": size, "variant": draw(st.sampled_from(un.VARIANTS)), "cells": draw(_table_cells(size)),
            "jitter": draw(hnp.arrays(np.float64, (N, d, L), elements=st.floats(-0.45, 0.45)))
            if jitter else np.zeros((N, d, L))}


def _table_of(tau, cells):
    return (np.asarray(cells) + 0.5) / tau.K


def _centres(tau, jitter):
    """Cell centres of every grid input, moved inside their cell by jitter (in units of delta) but off every ramp."""
    centre = qz.all_grid_points(tau.d, tau.L, tau.K) + 0.5 / tau.K
    G = centre + np.asarray(jitter) / tau.K
    return np.where(np.array([tau.in_ramp_set(X) for X in G])[:, None, None], centre, G)


def _table_check(inst):
    tau = tau_for(tuple(inst["size"]), inst["variant"])
    T = _table_of(tau, inst["cells"])
    P = tau.prompt_for(T)
    G = _centres(tau, inst["jitter"])
    err = _lookup_error(tau, P, T, G)
    return _floor_evidence(tau, err, f"max |tau([P_T, X]) - T[cell(X)]| over {len(G)} cells, over the derived"
                           " rounding floor", precision="mpmath", resources=_res(tau))


@verify.claim(
    "hu24.table_prompt_lookup",
    source=SOURCE + "; §5 item 15",
    statement="tau([P_T, X])_{:,L_p:} = T[cell(X)] for every table T (centred values) and X off the ramp set",
    strategy=table_instances(),
    provenance="derived",
    precision="mpmath",
    limits=LIMITS,
    max_examples=20,
)
def check_table_prompt(inst, backend):
    _need_numpy(backend)
    return _table_check(inst)


# originals kept in a dict: a patch rebinds every module global that is the patched object, not dict values
_ORIG = {"prompt_for": un.PromptTunedTransformer.prompt_for, "ff1_columns": un.PromptTunedTransformer._ff1_columns,
         "enumerate_nodes": un._enumerate_nodes, "build_ff2": un.build_ff2, "resource_counts": un.resource_counts}


def _fresh_cache():
    """A mutant-local cache of the (uncached) builder: a patched construction must not reuse the cached sound tau."""
    return functools.lru_cache(maxsize=16)(un._build_cached.__wrapped__)


def _prompt_rolled(self, f_or_table):
    """P_f with its blocks moved by one grid cell (the table stored off by one cell)."""
    P = _ORIG["prompt_for"](self, f_or_table)
    return np.ascontiguousarray(np.roll(P.reshape(self.d, -1, self.L), 1, axis=1).reshape(self.d, -1))


def _prompt_reflected(self, f_or_table):
    """P_{1-f}: every centred table value (k + 1/2)/K replaced by (K - 1 - k + 1/2)/K."""
    return 1.0 - _ORIG["prompt_for"](self, f_or_table)


def _columns_unpositioned(self, cols, offset):
    """FF1 on raw columns offset by 1 (FF1's range starts at 1), not by their position."""
    return [_ORIG["ff1_columns"](self, [c], 0)[0] for c in cols]


def _nodes_unpositioned(d, L, K, ff1, head, ctx, u, positional=True, restrict_prompts=None):
    """Contexts without positional offsets: [P, X] are multisets, colliding ids keep the first target."""
    z, v, t = _ORIG["enumerate_nodes"](d, L, K, ff1, head, ctx, u, positional=False, restrict_prompts=restrict_prompts)
    seen = {}
    for zi, vi, ti in zip(z, v, t, strict=True):
        seen.setdefault(zi, (vi, ti))
    return list(seen), [p[0] for p in seen.values()], [p[1] for p in seen.values()]


verify.patch_mutant("hu24.table_prompt_lookup", "lookup_off_by_one",
                    {"constructions.universality.PromptTunedTransformer.prompt_for": _prompt_rolled},
                    description="the prompt stores the table shifted by one grid cell")
verify.patch_mutant("hu24.table_prompt_lookup", "missing_positional_offset",
                    {"constructions.universality.PromptTunedTransformer._ff1_columns": _columns_unpositioned,
                     "constructions.universality._enumerate_nodes": _nodes_unpositioned,
                     "constructions.universality._build_cached": _fresh_cache()},
                    description="no positional offsets: contexts collide, FF2 keeps one target per id")


# --------------------------------------------------------------------------------------------
# items 19, 20: approximation of Lipschitz targets
# --------------------------------------------------------------------------------------------

@st.composite
def target_instances(draw):
    """A size, a variant and a Lipschitz target materialised as arrays, with 160 (dL = 1) or 48 uniform inputs."""
    size = draw(st.sampled_from(SIZES))
    d, L, _ = size
    C, alpha = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0])), draw(st.sampled_from([1.0, 2.0]))
    kind = draw(st.sampled_from(["clipped_linear", "bump_sum", "relu_net"]))
    n = 160 if d * L == 1 else 48
    return {"size": size, "C": C, "alpha": alpha, "kind": kind, "variant": draw(st.sampled_from(un.VARIANTS)),
            "target": lipschitz_target(draw(st.integers(0, 2**32 - 1)), d, L, C, alpha, kind),
            "X": draw(hnp.arrays(np.float64, (n, d, L), elements=st.floats(0.0, 0.999999)))}


def _samples(tau, X, n):
    """The first n drawn inputs off the ramp set (ramp hits, probability <= dLK eta, are dropped and counted)."""
    off = [x for x in X if not tau.in_ramp_set(x)]
    return np.stack(off[:n]), len(X) - len(off)


def _errors(tau, P, f, Xs, alpha):
    Y = tau.predict(P, Xs)
    F = np.asarray(f(Xs), dtype=np.float64)
    return np.sum(np.abs(Y - F) ** alpha, axis=(1, 2)) ** (1.0 / alpha)


def _sup_check(inst):
    d, L, K = inst["size"]
    tau = tau_for((d, L, K), inst["variant"])
    f = target_map(inst["target"])
    P = tau.prompt_for(f)
    Xs, hits = _samples(tau, inst["X"], 24 if d * L == 1 else 12)
    err = _errors(tau, P, f, Xs, inst["alpha"])
    bound = qz.surrogate_sup_bound(inst["C"], d, L, inst["alpha"], K)
    return verify.Evidence(observed=float(np.max(err)), bound=bound, precision="mpmath",
                           notes=f"max over {len(Xs)} off-ramp inputs ({hits} ramp draws dropped), f = {inst['kind']}",
                           resources=_res(tau, C=inst["C"], alpha=inst["alpha"]))


@verify.claim(
    "hu24.sup_off_ramp",
    source=SOURCE + "; §5 item 20 (§3.1 surrogate bound)",
    statement="X off the ramp set: ||tau([P_f,X])_{:,L_p:} - f(X)||_alpha <= (C+1/2) delta (dL)^{1/alpha}",
    strategy=target_instances(),
    provenance="derived",
    precision="mpmath",
    limits=LIMITS + "; 12-24 inputs per instance",
    max_examples=20,
    tight=0.85,  # constant targets near a cell edge attain the centred surrogate's delta/2 (measured 0.976)
)
def check_sup_off_ramp(inst, backend):
    _need_numpy(backend)
    return _sup_check(inst)


def _sup_without_half(C, d, L, alpha, K):
    return C / K * (d * L) ** (1.0 / alpha)


for _cid in ("hu24.sup_off_ramp", "hu24.end_to_end_d_alpha"):
    verify.patch_mutant(_cid, "bound_without_half",
                        {"constructions.quantization.surrogate_sup_bound": _sup_without_half},
                        description="(C + 1/2) delta (dL)^{1/alpha} without the output quantizer's delta/2")
    verify.patch_mutant(_cid, "prompt_of_another_target",
                        {"constructions.universality.PromptTunedTransformer.prompt_for": _prompt_reflected},
                        description="tau evaluated with the table of another target, 1 - f (centred cells mirrored)")


def _mc_check(inst):
    d, L, K = inst["size"]
    alpha, C = inst["alpha"], inst["C"]
    tau = tau_for((d, L, K), inst["variant"])
    f = target_map(inst["target"])
    P = tau.prompt_for(f)
    Xs, hits = _samples(tau, inst["X"], len(inst["X"]))
    N = len(Xs)
    V = _errors(tau, P, f, Xs, alpha) ** alpha
    sup = qz.surrogate_sup_bound(C, d, L, alpha, K)
    b = sup**alpha  # a-priori range of V off the ramp set (hu24.sup_off_ramp checks it); sup > 0
    t = b * math.sqrt(math.log(1.0 / HOEFFDING_BETA) / (2 * N))
    ramp = tau.ramp_term(alpha)
    # float64 V: dL entries |e| <= 1 each off by <= 2u, |e|^alpha by alpha 2u + u, the sum by dL u b
    v_floor = d * L * unit_roundoff("float64") * (2 * alpha + 1 + b)
    in_range = bool(np.max(V) <= b + v_floor)  # else the sample left the Hoeffding range: the sup bound failed
    est = (float(np.mean(V)) + t) ** (1.0 / alpha) + ramp
    eps = 3.0 * sup  # K = choose_K(C, d, L, alpha, eps): the theorem's accuracy for this K
    if ramp > eps / 3:
        raise verify.OutOfReach(f"ramp term {ramp:.3g} exceeds eps/3 = {eps / 3:.3g} for this tau's eta")
    bound = eps
    return verify.Evidence(
        observed=est, bound=bound, precision="mpmath",
        notes=f"observed = (mean ||err||^alpha + t)^(1/alpha) + ramp term, N = {N} off-ramp samples, "
              f"Hoeffding t = {t:.3g} on range [0, {b:.3g}] (one-sided, confidence {1 - HOEFFDING_BETA}); "
              f"ramp term {ramp:.2g} (sup {un.ramp_sup_bound(d, L, tau.n, alpha):.3g} x measure^(1/alpha)); "
              f"mean {float(np.mean(V)) ** (1 / alpha):.4g}; construction's own bound sup + ramp = {sup + ramp:.4g}",
        resources=_res(tau, C=C, alpha=alpha, N=N, eps=round(3 * sup, 4)),
        conditions=(verify.Condition("hoeffding_range", in_range,
                                     f"max ||err||^alpha = {float(np.max(V)):.4g} > range {b:.4g}"),))


@verify.claim(
    "hu24.end_to_end_d_alpha",
    source=SOURCE + "; §5 item 19 (PT_uni theorems, d_alpha <= eps)",
    statement="d_alpha(tau([P_f,.])_{:,L_p:}, f) <= eps for K = ceil(3(C+1/2)(dL)^{1/alpha}/eps) "
              "(Monte Carlo upper confidence bound; construction: <= (C+1/2) delta (dL)^{1/alpha} + ramp <= 2eps/3)",
    strategy=target_instances(),
    provenance="derived",
    precision="mpmath",
    limits=LIMITS + "; 48-160 Monte Carlo samples per instance",
    max_examples=12,
)
def check_end_to_end(inst, backend):
    _need_numpy(backend)
    return _mc_check(inst)


# --------------------------------------------------------------------------------------------
# item 21: tau independent of f
# --------------------------------------------------------------------------------------------

@st.composite
def indep_instances(draw):
    size = draw(st.sampled_from(SIZES))
    return {"size": size, "tables": draw(st.lists(_table_cells(size), min_size=2, max_size=3))}


def _indep_check(inst):
    tau = tau_for(tuple(inst["size"]))
    tau2 = tau_for(tuple(inst["size"]))
    same = tau is tau2
    tables = [_table_of(tau, c) for c in inst["tables"]]
    G = _centres(tau, np.zeros((tau.K ** (tau.d * tau.L), tau.d, tau.L)))
    err = max(_lookup_error(tau, tau.prompt_for(T), T, G) for T in tables)
    if not same:
        return verify.Evidence(observed=math.nan, bound=1.0, notes="tau was rebuilt: it depends on f",
                               precision="mpmath", resources=_res(tau, targets=len(tables)))
    return _floor_evidence(tau, err, f"one cached tau reproduces {len(tables)} tables exactly",
                           precision="mpmath", resources=_res(tau, targets=len(tables)))


@verify.claim(
    "hu24.tau_independent_of_f",
    source=SOURCE + "; §5 item 21",
    statement="one frozen tau (built without f) reproduces fbar for every f through P_f alone",
    strategy=indep_instances(),
    provenance="reconstructed",
    precision="mpmath",
    limits=LIMITS,
    max_examples=12,
)
def check_independent(inst, backend):
    _need_numpy(backend)
    return _indep_check(inst)


def _nodes_of_one_prompt(d, L, K, ff1, head, ctx, u, positional=True, restrict_prompts=None):
    """FF2 fitted to the contexts of one prompt only (the all-zero table): a tau that depends on f."""
    L_p = L * K ** (d * L)
    return _ORIG["enumerate_nodes"](d, L, K, ff1, head, ctx, u, positional, restrict_prompts=[(0,) * L_p])


verify.patch_mutant("hu24.tau_independent_of_f", "ff2_fitted_to_one_target",
                    {"constructions.universality._enumerate_nodes": _nodes_of_one_prompt,
                     "constructions.universality._build_cached": _fresh_cache()},
                    description="FF2 built from the contexts of one target's prompt only")


# --------------------------------------------------------------------------------------------
# item 22: architecture
# --------------------------------------------------------------------------------------------

arch_instances = st.fixed_dictionaries({"size": st.sampled_from(SIZES), "variant": st.sampled_from(un.VARIANTS)})


def _guard_condition(tau):
    """multi_ffn: the stored target ids are u^T t_m = z_m + u^T w_m (to the context's rounding) and outside the
    guard band [min z - 3h, max z + 3h] (so no later bump fires on a moved token)."""
    B, ctx = tau.ff2, tau.ctx
    u = [ctx.mpf(x) for x in B.u]
    ids = [z + ctx.fsum(a * b for a, b in zip(u, w, strict=True)) for z, w in zip(B.nodes, B.shifts, strict=True)]
    uu = ctx.mpf(2) ** (-ctx.prec)
    tol = [16 * uu * (abs(z) + ctx.fsum(abs(a * b) for a, b in zip(u, w, strict=True)))
           for z, w in zip(B.nodes, B.shifts, strict=True)]
    stored = list(B.target_ids)
    same = len(stored) == len(ids) and all(abs(a - b) <= t for a, b, t in zip(stored, ids, tol, strict=True))
    lo, hi = min(B.nodes) - 3 * B.h, max(B.nodes) + 3 * B.h
    outside = all(i < lo or i > hi for i in ids)
    return (verify.Condition("target_ids", same, "stored target ids differ from z_m + u^T w_m"),
            verify.Condition("guard", outside, "a target id lies in the guard band"))


def _arch_check(inst):
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
    claimed = un.resource_counts(d, L, 1.0, 1.0, eps, inst["variant"], K=K)
    paper = {"attention_layers": 1, "heads": 1,
             "ffn_layers": 2 if inst["variant"] == "two_ffn" else 1 + claimed["nodes_M"]}
    mism = [k for k in built if built[k] != claimed[k]] + [k for k in paper if paper[k] != built[k]]
    # the counting functions of constructions.memorization against the built tau (enumerated nodes)
    if built["L_p"] != mem.prompt_length(d, L, K):
        mism.append("memorization.prompt_length")
    if built["nodes_M"] != mem.value_map_node_count(d, L, K):
        mism.append("memorization.value_map_node_count")
    conds = _guard_condition(tau) if inst["variant"] == "multi_ffn" else ()
    return verify.Evidence(observed=0.0, bound=1.0, notes=f"mismatches: {mism or 'none'}",
                           resources={k: str(v) for k, v in built.items()},
                           conditions=(verify.Condition("counts", not mism, f"built != claimed: {mism}"),) + conds)


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


def _counts_without_L(*a, **kw):
    """resource_counts with M = K^{d(L_p+L)} (the factor L for the read columns dropped)."""
    r = dict(_ORIG["resource_counts"](*a, **kw))
    if isinstance(r["nodes_M"], int):
        r["nodes_M"] = r["nodes_M"] // a[1]
    return r


def _ff2_wrong_target_ids(z, v, targets, u, ctx, variant="two_ffn"):
    """build_ff2 whose multi-FFN guard is handed u^T (t - y) instead of u^T t."""
    if variant == "two_ffn":
        return _ORIG["build_ff2"](z, v, targets, u, ctx, variant)
    tz = [ctx.fsum(ctx.mpf(float(a)) * b for a, b in zip(u, w, strict=False)) for w in v]
    return mem.BumpStack.from_nodes(z, v, [float(x) for x in u], target_ids=tz, ctx=ctx)


verify.patch_mutant("hu24.architecture", "node_count_without_L",
                    {"constructions.universality.resource_counts": _counts_without_L},
                    description="resource_counts with M = K^{d(L_p+L)}: the factor L dropped")
verify.patch_mutant("hu24.architecture", "multi_ffn_wrong_target_ids",
                    {"constructions.universality.build_ff2": _ff2_wrong_target_ids,
                     "constructions.universality._build_cached": _fresh_cache()},
                    description="the bump stack's guard checked against the increments' ids, not the targets'")


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


@verify.table("hu24", title="Resource growth of the one-layer prompt-tuned transformer", in_report=True,
              claims=("hu24.*",))
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
