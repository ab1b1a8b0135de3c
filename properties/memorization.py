"""Claims on value maps, table prompts and memorization of Hu et al. 2024 (hu2024.md §2.5, §3.3–3.5, §5).

hu24.ff2_interpolation_exact_mp   item 13: FF2 exact at every node, mpmath (gaps >= 1e-300), width M-1 or M (flat) [D,C]
hu24.ff2_interpolation_exact_f64  item 13: the same network in float64 (gaps >= 1e-6), to the rounding floor   [D,C]
hu24.bump_stack_tradeoff          items 14, 16: M layers x 4 ReLUs = the same node map; depth M = width + 1     [D]
hu24.table_prompt_counting        item 17: L_p = L K^{dL} = counting bound (tight); lookup = fbar on every cell [D]
hu24.pt_memo_growth               item 18: prompt tokens >= L (3(C+1/2)(dL)^(1/alpha))^{dL} (1/eps)^{dL}      [P]
hu24.dataset_memorization         item 23: FF1 + table prompt readout within (C+1/2) delta (dL)^(1/alpha) <= eps [D]
hu24.arbitrary_memorization       item 24: any dataset, distinct cells: exact, L_p = L N_S (tight count)        [D]
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
from hypothesis import strategies as st

import verify
from constructions.lipschitz import KINDS, alpha_norm, random_lipschitz
from constructions.memorization import (
    EXTENSIONS,
    BumpStack,
    InterpolationFFN,
    MemorizingPrompt,
    counting_lower_bound,
    log_prompt_count,
    log_table_count,
    lookup_from_prompt,
    memorization_counting_bound,
    memorizing_prompt,
    memorizing_prompt_length,
    prompt_length,
    pt_memo_lower_bound,
    table_prompt,
)
from constructions.quantization import (
    FF1Quantizer,
    all_grid_points,
    cell_index,
    centred_quantize,
    choose_K,
    grid_index,
    surrogate,
    surrogate_sup_bound,
)

_U = 2.0**-53
_ALPHAS = (1.0, 1.5, 2.0, 3.0, 8.0)

# --------------------------------------------------------------------------------------------
# FF2 interpolation (item 13)
# --------------------------------------------------------------------------------------------

interp_mp_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "M": st.integers(2, 20),
        "d": st.integers(1, 3),
        "log10_gap": st.integers(-300, -1),
        "extend": st.sampled_from(EXTENSIONS),
    }
)


def _mp_nodes(inst, ctx):
    """Inputs Y (M, d) with ids z = u^T y spread over [1, 3] and one pair 10^log10_gap apart; targets T in [0,1]^d."""
    rng = np.random.default_rng([inst["seed"], 4])
    M, d = inst["M"], inst["d"]
    u = rng.normal(size=d)
    u = [ctx.mpf(x) for x in u / np.linalg.norm(u)]
    nu = ctx.fsum(x * x for x in u)
    base = np.sort(rng.uniform(1.0, 3.0, size=M))
    z = [ctx.mpf(x) for x in base]
    k = int(rng.integers(0, M - 1))
    z[k + 1] = z[k] + ctx.mpf(10) ** inst["log10_gap"] * (1 + ctx.mpf(rng.uniform()))
    if k + 2 < M and not z[k + 1] < z[k + 2]:
        z[k + 1] = (z[k] + z[k + 2]) / 2
    Y = []
    for m in range(M):
        w = rng.normal(size=d) * 0.3
        wm = [ctx.mpf(x) for x in w]
        c = ctx.fsum(a * b for a, b in zip(u, wm, strict=True)) / nu
        Y.append([z[m] * ui / nu + wi - c * ui for ui, wi in zip(u, wm, strict=True)])
    T = [[ctx.mpf(x) for x in rng.uniform(size=d)] for _ in range(M)]
    return u, Y, T


def _beyond_ends(u, Y, T, extend):
    """Points one unit of id beyond the extreme nodes and FF2's values there: g = v_1 below z_1; above z_M,
    g = v_M (flat) or v_M + s_{M-1} (u^T u) (linear: the last slope continues). Nodes are sorted (_mp_nodes)."""
    nu = sum(x * x for x in u)
    lo = [a - b for a, b in zip(Y[0], u, strict=True)]
    hi = [a + b for a, b in zip(Y[-1], u, strict=True)]
    v = [[t - y for t, y in zip(tr, yr, strict=True)] for tr, yr in zip(T, Y, strict=True)]
    z = [sum(a * b for a, b in zip(u, y, strict=True)) for y in Y]
    rise = [0 * x for x in v[-1]] if extend == "flat" else [
        (a - b) / (z[-1] - z[-2]) * nu for a, b in zip(v[-1], v[-2], strict=True)]
    return [lo, hi], [[a + b for a, b in zip(lo, v[0], strict=True)],
                      [a + b + c for a, b, c in zip(hi, v[-1], rise, strict=True)]]


def _interp_mp_evidence(inst, breaker=None):
    ctx = mpmath.MPContext()
    ctx.dps = -inst["log10_gap"] + 45
    u, Y, T = _mp_nodes(inst, ctx)
    F = InterpolationFFN.from_targets(Y, T, u, ctx=ctx, extend=inst["extend"])
    if breaker is not None:
        F = breaker(F)
    M, d = inst["M"], inst["d"]
    ends, want = _beyond_ends(u, Y, T, inst["extend"])
    P, W = Y + ends, T + want
    cols = [[P[m][i] for m in range(len(P))] for i in range(d)]
    out = F.apply_mp(cols, ctx)
    mags = F.magnitude_mp(cols, ctx)
    worst = (ctx.mpf(-1), ctx.mpf(1))
    for m in range(len(P)):
        err = max(abs(out[i, m] - W[m][i]) for i in range(d))
        # gamma_{H+3} over the output sum's magnitudes (+1: the target's own rounding, |t| <= |y| + 1)
        floor = 4 * (M + 3) * ctx.mpf(2) ** (-ctx.prec) * (mags[m] + 1)
        if err / floor > worst[0] / worst[1]:
            worst = (err, floor)
    width = M - 1 + (inst["extend"] == "flat")
    obs = float(worst[0]) if F.hidden_width == width else math.inf
    return verify.Evidence(
        obs,
        float(worst[1]),
        notes=f"min node gap 1e{inst['log10_gap']}; max |FF2(y) - want| over the M nodes and 2 points beyond the "
              f"ends ({inst['extend']} extension) = {mpmath.nstr(worst[0], 3)}",
        resources={"M": M, "hidden_width": F.hidden_width, "dps": ctx.dps, "log10_gap": inst["log10_gap"],
                   "extend": inst["extend"]},
    )


@verify.claim(
    "hu24.ff2_interpolation_exact_mp",
    source="Hu et al. 2024 (hu2024.md §3.5, §5 item 13) [D,C]",
    statement="FF2(y) = y + g(u^T y), g piecewise linear through M sorted nodes: FF2(y_m) = t_m to rounding; "
              "width M-1 (last slope continues) or M (flat beyond the extreme nodes)",
    strategy=interp_mp_instances,
    provenance="derived",
    precision="mpmath",
    ladder=("mpmath",),
    limits="M <= 20 nodes, node gaps down to 1e-300 at dps = 45 - log10(gap): O(M^2) mpmath products",
)
def check_interp_mp(inst, backend):
    return _interp_mp_evidence(inst)


def _shift_values(F):
    return InterpolationFFN(F.u, F.nodes, F.values[1:] + F.values[:1], F.extend)


def _drop_last_unit(F):
    # a network with the last hidden ReLU removed: interpolate through M-1 nodes, extrapolating the last one
    return InterpolationFFN(F.u, F.nodes[:-1], F.values[:-1], F.extend) if F.M > 2 else _shift_values(F)


class _ClosingUnitWrongSign(InterpolationFFN):
    """The flat extension's closing ReLU with weight +s_{M-1} instead of -s_{M-1} (same width M)."""

    def coefficients(self, conv=float):
        z, a, v1 = super().coefficients(conv)
        a[-1] = [-x for x in a[-1]]
        return z, a, v1


@verify.mutant("hu24.ff2_interpolation_exact_mp", "values_off_by_one_node")
def mutant_interp_shift(inst, backend):
    """Node values assigned to the neighbouring node (a lookup off by one id)."""
    return _interp_mp_evidence(inst, _shift_values)


@verify.mutant("hu24.ff2_interpolation_exact_mp", "width_m_minus_2")
def mutant_interp_drop(inst, backend):
    """One hidden ReLU fewer (M - 2): the last node is extrapolated, not interpolated."""
    return _interp_mp_evidence(inst, _drop_last_unit)


@verify.mutant("hu24.ff2_interpolation_exact_mp", "flat_end_wrong_sign",
               strategy=interp_mp_instances.map(lambda i: {**i, "extend": "flat"}))
def mutant_interp_flat_sign(inst, backend):
    """extend="flat" with the closing unit's weight of the wrong sign: the slope doubles beyond z_M."""
    return _interp_mp_evidence(inst, lambda F: _ClosingUnitWrongSign(F.u, F.nodes, F.values, F.extend))


interp_f64_instances = st.fixed_dictionaries(
    {"seed": st.integers(0, 2**32 - 1), "M": st.integers(2, 200), "d": st.integers(1, 4), "log10_gap": st.floats(-6, 0)}
)


def _interp_f64_evidence(inst, breaker=None):
    rng = np.random.default_rng([inst["seed"], 5])
    M, d = inst["M"], inst["d"]
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    z = np.cumsum(rng.uniform(1.0, 10.0, size=M) * 10.0 ** inst["log10_gap"])
    Y = z[:, None] * u[None, :] + (lambda W: W - (W @ u)[:, None] * u[None, :])(rng.normal(size=(M, d)))
    T = rng.uniform(size=(M, d))
    F = InterpolationFFN.from_targets(Y, T, u)
    if breaker is not None:
        F = breaker(F)
    W1, b1, W2, b2 = F.weights()
    out = F(Y.T)
    err = np.abs(out - T.T).max(axis=0)
    H = np.maximum(W1 @ Y.T + b1[:, None], 0.0)
    mag = np.abs(Y.T).max(axis=0) + np.abs(b2).max() + (np.abs(W2) @ H).max(axis=0)
    pre = (np.abs(W2) @ (np.abs(W1) @ np.abs(Y.T) + np.abs(b1)[:, None])).max(axis=0)
    floor = 2 * _U * ((M + 3) * mag + 2 * pre)
    i = int(np.argmax(err / floor))
    obs = float(err[i]) if F.hidden_width == M - 1 else math.inf
    return verify.Evidence(obs, float(floor[i]), resources={"M": M, "hidden_width": F.hidden_width})


@verify.claim(
    "hu24.ff2_interpolation_exact_f64",
    source="Hu et al. 2024 (hu2024.md §3.5, §5 item 13) [D,C]",
    statement="float64 FF2 interpolation hits every node to the gamma_M rounding floor; width M - 1",
    strategy=interp_f64_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="M <= 200 nodes, node gaps >= 1e-6 (float64 slopes stay finite and informative)",
)
def check_interp_f64(inst, backend):
    return _interp_f64_evidence(inst)


@verify.mutant("hu24.ff2_interpolation_exact_f64", "values_off_by_one_node")
def mutant_interp_f64_shift(inst, backend):
    """Node values assigned to the neighbouring node."""
    return _interp_f64_evidence(inst, _shift_values)


# --------------------------------------------------------------------------------------------
# Bump stack and the width-depth trade-off (items 14, 16)
# --------------------------------------------------------------------------------------------

bump_instances = st.fixed_dictionaries(
    {"seed": st.integers(0, 2**32 - 1), "M": st.integers(2, 40), "d": st.integers(1, 3), "log10_gap": st.floats(-4, 0)}
)


def _bump_data(inst):
    rng = np.random.default_rng([inst["seed"], 6])
    M, d = inst["M"], inst["d"]
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    z = 1.0 + np.cumsum(rng.uniform(1.0, 3.0, size=M) * 10.0 ** inst["log10_gap"])
    z = z[rng.permutation(M)]  # layers in arbitrary order
    W = rng.normal(size=(M, d))
    Y = z[:, None] * u[None, :] + W - (W @ u)[:, None] * u[None, :]
    T = rng.uniform(size=(M, d))
    return rng, u, z, Y, T


def _guarded_targets(u, z, T, h):
    """Move each target along u so that u^T t = min z - 3h - (1 + original u^T t mod 1): outside the guard band."""
    shift = (z.min() - 3 * h - 1.0 - np.abs(T @ u)) - T @ u
    return T + shift[:, None] * u[None, :]


def _bump_floor(B, Y, T):
    """Each layer: 4 ReLU arguments with error <= 2u(|u^T y|/h + |z_m|/h + 2), times |w_m|; plus the residual sums."""
    h = float(B.h)
    zs = np.asarray([float(x) for x in B.nodes])
    w = np.asarray([[float(x) for x in r] for r in B.shifts])
    zy = Y @ np.asarray([float(x) for x in B.u])
    per = 8 * _U * ((np.abs(zy)[:, None] + np.abs(zs)[None, :]) / h + 6) * np.abs(w).max(axis=1)[None, :]
    return per.sum(axis=1) + 4 * B.M * _U * (np.abs(Y).max(axis=1) + np.abs(T).max(axis=1) + 1)


def _bump_evidence(B, F, Y, T, inst):
    M = inst["M"]
    eb = np.abs(B(Y.T) - T.T).max(axis=0)
    fb = _bump_floor(B, Y, T)
    ef = np.abs(F(Y.T) - T.T).max(axis=0)
    ff = 2 * _U * (M + 3) * (np.abs(Y).max(axis=1) + 1) * (1 + np.abs(np.asarray(F.weights()[2])).sum())
    r = np.concatenate([eb / fb, ef / ff])
    i = int(np.argmax(r))
    obs, bnd = (eb[i], fb[i]) if i < M else (ef[i - M], ff[i - M])
    tradeoff_ok = B.depth == M == F.hidden_width + 1 and B.width == 4 and len(B.layers()) == M
    return verify.Evidence(
        float(obs) if tradeoff_ok else math.inf,
        float(bnd),
        notes=f"bump stack max err {eb.max():.3g}, interpolation max err {ef.max():.3g}",
        resources={"M": M, "depth": B.depth, "width_per_layer": 4, "two_ffn_width": F.hidden_width},
    )


@verify.claim(
    "hu24.bump_stack_tradeoff",
    source="Hu et al. 2024 (hu2024.md §2.4, §3.5, §5 items 14 and 16) [D]",
    statement="under the target guard, M layers of 4 ReLUs map y_m -> t_m like the (M-1)-wide FF2: depth M = width + 1",
    strategy=bump_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="M <= 40 layers, node gaps >= 1e-4",
)
def check_bump_stack(inst, backend):
    _, u, z, Y, T = _bump_data(inst)
    h = np.min(np.diff(np.sort(z))) / 5
    Tg = _guarded_targets(u, z, T, h)
    B = BumpStack.from_targets(Y, Tg, u, h=h)
    F = InterpolationFFN.from_targets(Y, Tg, u)
    return _bump_evidence(B, F, Y, Tg, inst)


@verify.mutant("hu24.bump_stack_tradeoff", "no_target_guard")
def mutant_bump_no_guard(inst, backend):
    """Targets placed on the id of the next layer's node (guard check off): later bumps fire on moved tokens."""
    _, u, z, Y, T = _bump_data(inst)
    h = np.min(np.diff(np.sort(z))) / 5
    Tn = T + (np.roll(z, -1) - T @ u)[:, None] * u[None, :]
    B = BumpStack.from_targets(Y, Tn, u, h=h, guard=False)
    F = InterpolationFFN.from_targets(Y, Tn, u)
    return _bump_evidence(B, F, Y, Tn, inst)


@verify.mutant("hu24.bump_stack_tradeoff", "bump_too_wide")
def mutant_bump_wide(inst, backend):
    """h = 0.6 x min gap (> gap/4): the neighbouring node's bump fires too."""
    _, u, z, Y, T = _bump_data(inst)
    h = 0.6 * np.min(np.diff(np.sort(z)))
    Tg = _guarded_targets(u, z, T, h)
    B = BumpStack.from_targets(Y, Tg, u, h=h, guard=False)
    F = InterpolationFFN.from_targets(Y, Tg, u)
    return _bump_evidence(B, F, Y, Tg, inst)


# --------------------------------------------------------------------------------------------
# Table prompt (item 17) and PT_memo growth (item 18)
# --------------------------------------------------------------------------------------------

table_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 2),
        "L": st.integers(1, 3),
        "K": st.integers(2, 5),
        "C": st.floats(0.1, 4.0),
        "alpha": st.sampled_from(_ALPHAS),
        "kind": st.sampled_from(KINDS),
    }
).filter(lambda i: i["K"] ** (i["d"] * i["L"]) <= 4096)


def _table_evidence(inst, offset=0, length_fn=prompt_length):
    d, L, K = inst["d"], inst["L"], inst["K"]
    f = random_lipschitz(inst["seed"], d, L, inst["C"], inst["alpha"], inst["kind"])
    P = table_prompt(f, d, L, K)
    N = K ** (d * L)
    rng = np.random.default_rng([inst["seed"], 7])
    G = all_grid_points(d, L, K)
    X = G + rng.uniform(0.0, 1.0 / K, size=G.shape)  # one point inside every cell, same grid order
    want = surrogate(f, K)(X)
    worst = 0.0
    for i in range(N):
        j = grid_index(cell_index(X[i], K), K)
        got = P[:, ((j + offset) % N) * L : ((j + offset) % N) * L + L] if offset else lookup_from_prompt(P, X[i], K, L)
        worst = max(worst, float(np.abs(got - want[i]).max()))
    Lp = length_fn(d, L, K)
    bad = []
    if P.shape != (d, Lp):
        bad.append(f"prompt has {P.shape[1]} columns, formula says {Lp}")
    if not math.isclose(counting_lower_bound(d, L, K), Lp, rel_tol=1e-12):
        bad.append(f"counting bound {counting_lower_bound(d, L, K)} != L_p = {Lp}")
    if not (log_prompt_count(d, Lp, K) >= log_table_count(d, L, K) > log_prompt_count(d, Lp - 1, K)):
        bad.append("L_p is not the least length whose prompts outnumber the tables")
    return verify.Evidence(
        math.inf if bad else worst,
        0.0,
        notes="; ".join(bad) or f"all {N} cells read back exactly",
        resources={"L_p": Lp, "N": N, "K": K, "dL": d * L},
    )


@verify.claim(
    "hu24.table_prompt_counting",
    source="Hu et al. 2024 (hu2024.md §2.5, §3.3, §5 item 17) [D]; wang2023.md §2.1",
    statement="P_f[:, L idx(QX) : +L] = fbar(X) for every cell; L_p = L K^{dL} = counting bound L K^{dL} log K/log K",
    strategy=table_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="K^{dL} <= 4096 cells (every cell read back)",
)
def check_table_prompt(inst, backend):
    return _table_evidence(inst)


@verify.mutant("hu24.table_prompt_counting", "lookup_off_by_one_cell")
def mutant_table_shift(inst, backend):
    """Read block idx(QX) + 1 instead of idx(QX)."""
    return _table_evidence(inst, offset=1)


@verify.mutant("hu24.table_prompt_counting", "length_without_L")
def mutant_table_len(inst, backend):
    """L_p = K^{dL} (the L tokens per block forgotten)."""
    return _table_evidence({**inst, "L": max(inst["L"], 2)} if inst["K"] ** (inst["d"] * 2) <= 4096 else inst,
                           length_fn=lambda d, L, K: K ** (d * L))


memo_growth_instances = st.fixed_dictionaries(
    {
        "C": st.floats(0.0, 4.0),
        "d": st.integers(1, 3),
        "L": st.integers(1, 3),
        "alpha": st.sampled_from(_ALPHAS),
        "eps": st.floats(0.01, 2.0),
    }
)


def _growth_evidence(inst, bound_fn=pt_memo_lower_bound):
    C, d, L, a, e = inst["C"], inst["d"], inst["L"], inst["alpha"], inst["eps"]
    v = bound_fn(C, d, L, a, e)
    dl = d * L
    c = 3 * (C + 0.5) * dl ** (1 / a)
    log_lower = math.log(L) + dl * math.log(c / e)
    log_upper = math.log(L) + dl * math.log(c / e + 1)
    lv = math.log(v)
    bad = []
    if lv > log_upper + 1e-9:
        bad.append("exceeds L (3(C+1/2)(dL)^(1/alpha)/eps + 1)^{dL}")
    for name, w in (
        ("d", bound_fn(C, d + 1, L, a, e)),
        ("L", bound_fn(C, d, L + 1, a, e)),
        ("1/eps", bound_fn(C, d, L, a, e / 2)),
    ):
        if not w >= v:
            bad.append(f"not monotone in {name}")
    K = choose_K(C, d, L, a, e)
    if K >= 2 and not math.isclose(counting_lower_bound(d, L, K), v, rel_tol=1e-9):
        bad.append("differs from the counting bound at K = choose_K")
    # logs of L and c/eps carry relative rounding ~u each, dL of them: the ratio's float64 floor
    floor = 1.0 + 8 * _U * (dl + 2) * (1.0 + abs(log_lower))
    return verify.Evidence(
        math.inf if bad else math.exp(log_lower - lv),
        floor,
        notes="; ".join(bad) or f"log10 L_p = {lv / math.log(10):.4g}, power dL = {dl} of 1/eps",
        resources={"log10_Lp": lv / math.log(10), "dL": dl, "K": K},
    )


@verify.claim(
    "hu24.pt_memo_growth",
    source="Hu et al. 2024 PT_memo (thm:PT_memo; hu2024.md §2.5, §5 item 18) [P, reconstructed]",
    statement="prompt tokens L K^{dL} >= L (3(C+1/2)(dL)^(1/alpha))^{dL} (1/eps)^{dL}; monotone in d, L, 1/eps",
    strategy=memo_growth_instances,
    provenance="reconstructed",
    precision="float64",
    ladder=("float64",),
    limits="dL <= 9, eps >= 0.01 (exact Python integers, compared in logs)",
)
def check_pt_memo_growth(inst, backend):
    return _growth_evidence(inst)


@verify.mutant("hu24.pt_memo_growth", "exponent_d_not_dl")
def mutant_growth_d(inst, backend):
    """L K^d tokens: exponential in d only."""
    return _growth_evidence(inst, lambda C, d, L, a, e: L * choose_K(C, d, L, a, e) ** d)


@verify.mutant("hu24.pt_memo_growth", "k_without_dl_factor")
def mutant_growth_k(inst, backend):
    """K = ceil(3(C+1/2)/eps): the (dL)^(1/alpha) factor dropped from the grid size."""
    return _growth_evidence(inst, lambda C, d, L, a, e: L * math.ceil(3 * (C + 0.5) / e) ** (d * L))


# --------------------------------------------------------------------------------------------
# Memorization through FF1 + table prompt (item 23) and arbitrary datasets (item 24)
# --------------------------------------------------------------------------------------------

dataset_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 2),
        "L": st.integers(1, 2),
        "K": st.integers(2, 6),
        "C": st.one_of(st.floats(0.0, 0.3), st.floats(0.3, 3.0)),
        "alpha": st.sampled_from(_ALPHAS),
        "kind": st.sampled_from(KINDS),
        "n_samples": st.integers(1, 40),
    }
).filter(lambda i: i["L"] * i["K"] ** (i["d"] * i["L"]) <= 256)


def _ff1_chunks(F, Z, chunk=64):
    return np.concatenate([F(Z[:, s : s + chunk]) for s in range(0, Z.shape[1], chunk)], axis=1)


def _dataset_evidence(inst, centred=True, prompt_offsets=True):
    d, L, K, C, a = inst["d"], inst["L"], inst["K"], inst["C"], inst["alpha"]
    eps = 3 * (C + 0.5) * (d * L) ** (1 / a) / K  # the eps for which choose_K returns (about) K
    K = choose_K(C, d, L, a, eps)
    if L * K ** (d * L) > 400:
        raise verify.OutOfReach(f"L K^(dL) = {L * K ** (d * L)} prompt tokens after choose_K rounding")
    f = random_lipschitz(inst["seed"], d, L, C, a, inst["kind"])
    rng = np.random.default_rng([inst["seed"], 8])
    X = rng.uniform(0.0, 1.0, size=(inst["n_samples"], d, L))
    Y = f(X)
    P = table_prompt(f, d, L, K)
    Lp = P.shape[1]
    n = Lp + L
    # ramp width adapted to the data: half the smallest distance from a data entry up to the next grid level
    dist = (1.0 - (X * K - np.floor(X * K))) / K
    eta = min(0.25 / K, 0.5 * float(dist.min()))
    if eta <= 1e-9 / K:
        raise verify.OutOfReach("a data entry sits within 1e-9 delta below a grid level")
    F = FF1Quantizer(d, K, n, eta, positional=True)
    E = F.encoding(n)
    YP = _ff1_chunks(F, P + E[:, :Lp])
    Pcells = np.rint((YP - (E[:, :Lp] if prompt_offsets else 0.0)) * K).clip(0, K - 1)
    worst = 0.0
    in_ramp = 0
    for i in range(X.shape[0]):
        Zx = X[i] + E[:, Lp:]
        in_ramp += int(F.in_ramp_set(Zx).any())
        cells = F.decode_cells(np.concatenate([YP, F(Zx)], axis=1))[:, Lp:]
        j = int(grid_index(cells, K))
        out = (Pcells[:, j * L : j * L + L] + (0.5 if centred else 0.0)) / K
        worst = max(worst, float(alpha_norm(out - Y[i], a)))
    bound = surrogate_sup_bound(C, d, L, a, K)
    ok = bound <= eps and in_ramp == 0  # bound <= eps/3 up to the rounding of choose_K's ceiling
    return verify.Evidence(
        worst if ok else math.inf,
        bound,
        notes=f"eps = {eps:.3g}; eta = {eta:.3g}; {in_ramp} samples on a ramp",
        resources={"K": K, "L_p": Lp, "n_samples": X.shape[0], "ff1_width": F.hidden_width},
    )


@verify.claim(
    "hu24.dataset_memorization",
    source="Hu et al. 2024 (hu2024.md §3.2–3.3, §5 item 23) [D]",
    statement="data off the ramps: max_i ||readout(FF1[P_f, X_i]) - Y_i||_alpha <= (C+1/2) delta (dL)^(1/alpha) <= eps",
    strategy=dataset_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="L K^{dL} <= 256 prompt tokens (FF1 width d(2(nK-1)+1), n = L_p + L); readout = exact lookup, no attention",
)
def check_dataset_memorization(inst, backend):
    return _dataset_evidence(inst)


@verify.mutant(
    "hu24.dataset_memorization",
    "uncentred_readout",
    strategy=dataset_instances.map(lambda i: {**i, "C": i["C"] * 0.05, "d": 1, "L": 1, "n_samples": 40}),
)
def mutant_dataset_uncentred(inst, backend):
    """Read the prompt token's lower corner (FF1 output) without the + delta/2, against the centred bound."""
    return _dataset_evidence(inst, centred=False)


@verify.mutant("hu24.dataset_memorization", "prompt_offsets_not_removed")
def mutant_dataset_offsets(inst, backend):
    """Decode prompt cells without subtracting the positional offsets (every prompt token reads as level K-1)."""
    return _dataset_evidence(inst, prompt_offsets=False)


arbitrary_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 3),
        "L": st.integers(1, 3),
        "K": st.integers(2, 16),
        "n_samples": st.integers(1, 48),
        "include_keys": st.booleans(),
    }
)


def _arbitrary_data(inst):
    d, L, K = inst["d"], inst["L"], inst["K"]
    n = min(inst["n_samples"], K ** (d * L))
    rng = np.random.default_rng([inst["seed"], 9])
    seen, cells = set(), []
    while len(cells) < n:
        c = rng.integers(0, K, size=(d, L))
        key = int(grid_index(c, K))
        if key not in seen:
            seen.add(key)
            cells.append(c)
    X = (np.stack(cells) + rng.uniform(0.0, 1.0, size=(n, d, L))) / K
    Y = rng.uniform(0.0, 1.0, size=(n, d, L))
    return X, Y


def _arbitrary_evidence(inst, M=None, X=None, Y=None):
    d, L, K, keys = inst["d"], inst["L"], inst["K"], inst["include_keys"]
    if X is None:
        X, Y = _arbitrary_data(inst)
    M = memorizing_prompt((X, Y), K, include_keys=keys) if M is None else M
    n = X.shape[0]
    worst = 0.0
    for i in range(n):
        try:
            got = M.decode(X[i])
        except ValueError:
            worst = math.inf
            continue
        worst = max(worst, float(np.abs(got - centred_quantize(Y[i], K)).max()))
    # the stored tokens are cell centres: FF1 (positional, eta = delta/4) maps them to lower corners exactly
    F = FF1Quantizer(d, K, M.length, 0.25 / K)
    E = F.encoding(M.length)
    dec = (F.decode_cells(_ff1_chunks(F, M.P + E)) + 0.5) / K
    worst = max(worst, float(np.abs(dec - M.P).max()))
    cb = memorization_counting_bound(n, d, L, K, include_keys=keys)
    need = memorizing_prompt_length(n, L, keys)
    bad = []
    if M.length != need:
        bad.append(f"length {M.length} != {need}")
    # the counting bound in exact integers: #prompts K^{d L_p} vs #datasets (binom(N, N_S) if keys) K^{dL N_S}
    datasets = (math.comb(K ** (d * L), n) if keys else 1) * K ** (d * L * n)
    if K ** (d * M.length) < datasets:
        bad.append(f"length {M.length} below the counting bound {cb:.6g}")
    if not keys and K ** (d * (M.length - 1)) >= datasets:
        bad.append(f"length {M.length} not tight: counting bound {cb:.6g}")
    return verify.Evidence(
        math.inf if bad else worst,
        0.0,
        notes="; ".join(bad) or f"{n} samples recalled exactly; counting bound {cb:.4g} vs L_p {M.length}",
        resources={"L_p": M.length, "N_S": n, "counting_bound": cb, "K": K},
    )


@verify.claim(
    "hu24.arbitrary_memorization",
    source="Hu et al. 2024 (hu2024.md §2.5, §5 item 24) [D]",
    statement="distinct cells => the prompt recalls Qc(Y_i) exactly (also through FF1); L_p = L N_S = counting bound",
    strategy=arbitrary_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="N_S <= 48 samples, dL <= 9, K <= 16 (L_p <= 288, FF1 width <= 3(2 L_p K + 1))",
)
def check_arbitrary_memorization(inst, backend):
    return _arbitrary_evidence(inst)


@verify.mutant("hu24.arbitrary_memorization", "blocks_in_insertion_order")
def mutant_arbitrary_unsorted(inst, backend):
    """Target blocks stored in dataset order while the reader ranks inputs by cell index."""
    inst = {**inst, "include_keys": False, "n_samples": max(inst["n_samples"], 3)}
    X, Y = _arbitrary_data(inst)
    M = memorizing_prompt((X, Y), inst["K"])
    V = centred_quantize(Y, inst["K"])
    P = np.ascontiguousarray(V.transpose(1, 0, 2).reshape(inst["d"], -1))
    return _arbitrary_evidence(inst, MemorizingPrompt(P, M.keys, M.d, M.L, M.K), X, Y)


@verify.mutant("hu24.arbitrary_memorization", "one_block_short")
def mutant_arbitrary_short(inst, backend):
    """The prompt built from all but the last sample (L (N_S - 1) tokens, under the counting bound)."""
    X, Y = _arbitrary_data(inst)
    if X.shape[0] < 2:
        return _arbitrary_evidence(inst)
    M = memorizing_prompt((X[:-1], Y[:-1]), inst["K"], include_keys=inst["include_keys"])
    return _arbitrary_evidence(inst, M, X, Y)
