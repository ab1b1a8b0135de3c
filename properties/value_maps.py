"""Claims on the value maps FF2 of Hu et al. 2024 (hu2024.md §3.5, §5 items 13, 14, 16; constructions.value_maps).

hu24.ff2_interpolation_exact_mp   item 13: FF2 exact at every node, mpmath (gaps >= 1e-300), width M-1 or M (flat) [D,C]
hu24.ff2_interpolation_exact_f64  item 13: the same network in float64 (gaps >= 1e-6), to the rounding floor   [D,C]
hu24.bump_stack_tradeoff          items 14, 16: M layers x 4 ReLUs = the same node map; depth M = width + 1;
                                  the target guard refuses exactly the targets inside the band             [D]

Instances hold the drawn arrays themselves (hypothesis.extra.numpy), so a counterexample file replays anywhere.
"""

from __future__ import annotations

import mpmath
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import verify
from constructions import value_maps as vm
from constructions.precision import gamma, unit_roundoff
from constructions.value_maps import EXTENSIONS, BumpStack, InterpolationFFN

U64 = unit_roundoff("float64")


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _direction(d):
    """A unit projection u: a drawn direction with entries of size >= 0.1 (so |u_i| never vanishes)."""
    return hnp.arrays(np.float64, d, elements=_floats(0.1, 1.0)).flatmap(
        lambda a: hnp.arrays(np.float64, d, elements=st.sampled_from([-1.0, 1.0])).map(lambda s: a * s))


# --------------------------------------------------------------------------------------------
# FF2 interpolation in mpmath (item 13)
# --------------------------------------------------------------------------------------------


@st.composite
def interp_mp_instances(draw, extend=None):
    M, d = draw(st.integers(2, 20)), draw(st.integers(1, 3))
    return {
        "M": M, "d": d,
        "log10_gap": draw(st.integers(-300, -1)),
        "extend": draw(st.sampled_from(EXTENSIONS)) if extend is None else extend,
        "u": draw(_direction(d)),
        "base": draw(hnp.arrays(np.float64, M, elements=_floats(1.0, 3.0), unique=True)),
        "k": draw(st.integers(0, M - 2)),
        "frac": draw(_floats(0.0, 0.99)),
        "W": draw(hnp.arrays(np.float64, (M, d), elements=_floats(-0.9, 0.9))),
        "T": draw(hnp.arrays(np.float64, (M, d), elements=_floats(0.0, 1.0))),
    }


def _mp_nodes(inst, ctx):
    """Inputs Y (M, d) with ids z = u^T y spread over [1, 3] and one pair 10^log10_gap apart; targets T in [0,1]^d."""
    M = inst["M"]
    u = np.asarray(inst["u"], dtype=np.float64)
    u = [ctx.mpf(x) for x in u / np.linalg.norm(u)]
    nu = ctx.fsum(x * x for x in u)
    z = [ctx.mpf(x) for x in np.sort(inst["base"])]
    k = inst["k"]
    z[k + 1] = z[k] + ctx.mpf(10) ** inst["log10_gap"] * (1 + ctx.mpf(inst["frac"]))
    if k + 2 < M and not z[k + 1] < z[k + 2]:
        z[k + 1] = (z[k] + z[k + 2]) / 2
    Y = []
    for m in range(M):
        wm = [ctx.mpf(x) for x in inst["W"][m]]
        c = ctx.fsum(a * b for a, b in zip(u, wm, strict=True)) / nu
        Y.append([z[m] * ui / nu + wi - c * ui for ui, wi in zip(u, wm, strict=True)])
    T = [[ctx.mpf(x) for x in row] for row in inst["T"]]
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


def _width_condition(F, M, extend):
    width = M - 1 + (extend == "flat")
    return verify.Condition("width", F.hidden_width == width,
                            f"hidden width {F.hidden_width} vs M - 1 + [flat] = {width}")


@verify.claim(
    "hu24.ff2_interpolation_exact_mp",
    source="Hu et al. 2024 (hu2024.md §3.5, §5 item 13) [D,C]",
    statement="FF2(y) = y + g(u^T y), g piecewise linear through M sorted nodes: FF2(y_m) = t_m to rounding; "
              "width M-1 (last slope continues) or M (flat beyond the extreme nodes)",
    strategy=interp_mp_instances(),
    provenance="derived",
    precision="mpmath",
    ladder=("mpmath",),
    limits="M <= 20 nodes, node gaps down to 1e-300 at dps = 45 - log10(gap): O(M^2) mpmath products",
)
def check_interp_mp(inst, backend):
    ctx = mpmath.MPContext()
    ctx.dps = -inst["log10_gap"] + 45
    u, Y, T = _mp_nodes(inst, ctx)
    F = InterpolationFFN.from_targets(Y, T, u, ctx=ctx, extend=inst["extend"])
    M, d = inst["M"], inst["d"]
    ends, want = _beyond_ends(u, Y, T, inst["extend"])
    P, W = Y + ends, T + want
    cols = [[P[m][i] for m in range(len(P))] for i in range(d)]
    out = F.apply_mp(cols, ctx)
    mags = F.magnitude_mp(cols, ctx)
    u_mp = ctx.mpf(2) ** (-ctx.prec)  # the context's unit roundoff
    g = (M + 3) * u_mp / (1 - (M + 3) * u_mp)
    worst = (ctx.mpf(-1), ctx.mpf(1))
    for m in range(len(P)):
        err = max(abs(out[i, m] - W[m][i]) for i in range(d))
        # 2 gamma_{M+3} over the output sum's magnitudes (+1: the target's own rounding, |t| <= |y| + 1); gamma_n is
        # formed in the context (precision.gamma works in float, where 2^-prec underflows beyond ~1070 bits)
        floor = 2 * g * (mags[m] + 1)
        if err / floor > worst[0] / worst[1]:
            worst = (err, floor)
    return verify.Evidence(
        float(worst[0] / worst[1]),
        1.0,
        notes=f"min node gap 1e{inst['log10_gap']}; max |FF2(y) - want| over the M nodes and 2 points beyond the "
              f"ends ({inst['extend']} extension) = {mpmath.nstr(worst[0], 3)} (ratio to the floor, taken in mpmath)",
        resources={"M": M, "hidden_width": F.hidden_width, "dps": ctx.dps, "log10_gap": inst["log10_gap"],
                   "extend": inst["extend"]},
        conditions=(_width_condition(F, M, inst["extend"]),),
    )


# originals kept in a dict: a patch rebinds every module global that is the patched object, not dict values
_ORIG = {"from_nodes": InterpolationFFN.from_nodes, "coefficients": InterpolationFFN.coefficients,
         "hidden_width": InterpolationFFN.hidden_width, "bump_from_nodes": BumpStack.from_nodes}


def _values_rolled(z, values, *a, **k):
    """from_nodes with every node's value taken from its neighbour (a lookup off by one id)."""
    values = list(values)
    return _ORIG["from_nodes"](z, values[1:] + values[:1], *a, **k)


def _last_unit_dropped(self, conv=float):
    z, a, v1 = _ORIG["coefficients"](self, conv)
    if a:
        a[-1] = [0 * x for x in a[-1]]
    return z, a, v1


def _closing_unit_wrong_sign(self, conv=float):
    z, a, v1 = _ORIG["coefficients"](self, conv)
    if a and self.extend == "flat":
        a[-1] = [-x for x in a[-1]]
    return z, a, v1


verify.patch_mutant("hu24.ff2_interpolation_exact_mp", "values_off_by_one_node",
                    {"constructions.value_maps.InterpolationFFN.from_nodes": _values_rolled},
                    description="node values assigned to the neighbouring node (a lookup off by one id)")
verify.patch_mutant("hu24.ff2_interpolation_exact_mp", "last_unit_dropped",
                    {"constructions.value_maps.InterpolationFFN.coefficients": _last_unit_dropped},
                    description="the last hidden ReLU's output weight lost: the last node is extrapolated")
verify.patch_mutant("hu24.ff2_interpolation_exact_mp", "flat_end_wrong_sign",
                    {"constructions.value_maps.InterpolationFFN.coefficients": _closing_unit_wrong_sign},
                    strategy=interp_mp_instances(extend="flat"),
                    description="extend='flat' with the closing unit's weight +s_{M-1}: the slope doubles beyond z_M")
verify.patch_mutant("hu24.ff2_interpolation_exact_mp", "hidden_width_one_short",
                    {"constructions.value_maps.InterpolationFFN.hidden_width":
                     property(lambda self: max(_ORIG["hidden_width"].fget(self) - 1, 0))},
                    description="hidden_width counts one ReLU fewer (the evaluation then skips the last unit)")


# --------------------------------------------------------------------------------------------
# FF2 interpolation in float64 (item 13)
# --------------------------------------------------------------------------------------------


@st.composite
def interp_f64_instances(draw):
    M, d = draw(st.integers(2, 200)), draw(st.integers(1, 4))
    return {
        "M": M, "d": d,
        "log10_gap": draw(_floats(-6.0, 0.0)),
        "u": draw(_direction(d)),
        "gaps": draw(hnp.arrays(np.float64, M, elements=_floats(1.0, 10.0))),
        "W": draw(hnp.arrays(np.float64, (M, d), elements=_floats(-3.0, 3.0))),
        "T": draw(hnp.arrays(np.float64, (M, d), elements=_floats(0.0, 1.0))),
    }


def _f64_data(inst):
    u = np.asarray(inst["u"], dtype=np.float64)
    u = u / np.linalg.norm(u)
    z = np.cumsum(inst["gaps"] * 10.0 ** inst["log10_gap"])
    W = inst["W"]
    Y = z[:, None] * u[None, :] + W - (W @ u)[:, None] * u[None, :]
    return u, Y, np.asarray(inst["T"], dtype=np.float64)


def interp_f64_floor(F, Y, T, u=U64):
    """Per node: |fl(FF2(y_k)) - t_k| <= floor_k, operation by operation from the weights and inputs.

    pre-activations fl(W1 y + b1): gamma_{d+1} (|W1||y| + |b1|), twice (the network's rounding and that of the
    stored node z_m = fl(u^T y_m)); ReLU is 1-Lipschitz; output y + W2 h + b2: gamma_{H+2} over its terms' sizes;
    coefficients: the slopes s_m = (v_{m+1} - v_m)/(z_{m+1} - z_m) carry relative error gamma_3, a_m = s_m - s_{m-1}
    one more u, so |delta a_m| <= u |a_m| + gamma_3 (|s_m| + |s_{m-1}|), felt as sum_m |delta a_m| ReLU(z_k - z_m);
    increments v = fl(t - y): u |t - y|, and the final y + (t - y): u (|y| + |t|).
    """
    W1, b1, W2, b2 = F.weights()
    Yt = np.asarray(Y, dtype=np.float64).T
    d, H = W1.shape[1], W1.shape[0]
    e1 = 2.0 * gamma(d + 1, u) * (np.abs(W1) @ np.abs(Yt) + np.abs(b1)[:, None])
    Hk = np.maximum(W1 @ Yt + b1[:, None], 0.0)
    aW2 = np.abs(W2)
    mag = np.abs(Yt) + np.abs(b2)[:, None] + aW2 @ (Hk + e1)
    out = aW2 @ e1 + gamma(H + 2, u) * mag
    z = np.asarray([float(x) for x in F.nodes])
    V = np.asarray([[float(x) for x in r] for r in F.values])
    s = np.abs(np.diff(V, axis=0) / np.diff(z)[:, None])  # (M-1, d)
    s_prev = np.vstack([np.zeros((1, s.shape[1])), s[:-1]])
    da = u * np.abs(W2.T) + gamma(3, u) * (s + s_prev)[:H]  # (H, d)
    coef = da.T @ (Hk + e1)
    Tt = np.asarray(T, dtype=np.float64).T
    return (out + coef + u * (2.0 * np.abs(Yt) + 2.0 * np.abs(Tt))).max(axis=0)


@verify.claim(
    "hu24.ff2_interpolation_exact_f64",
    source="Hu et al. 2024 (hu2024.md §3.5, §5 item 13) [D,C]",
    statement="float64 FF2 interpolation hits every node to its derived rounding floor; width M - 1",
    strategy=interp_f64_instances(),
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="M <= 200 nodes, node gaps >= 1e-6 (float64 slopes stay finite and informative)",
)
def check_interp_f64(inst, backend):
    u, Y, T = _f64_data(inst)
    F = InterpolationFFN.from_targets(Y, T, u)
    err = np.abs(F(Y.T) - T.T).max(axis=0)
    floor = interp_f64_floor(F, Y, T)
    i = int(np.argmax(err / floor))
    return verify.Evidence(float(err[i]), float(floor[i]), resources={"M": inst["M"], "hidden_width": F.hidden_width},
                           conditions=(_width_condition(F, inst["M"], "linear"),))


verify.patch_mutant("hu24.ff2_interpolation_exact_f64", "values_off_by_one_node",
                    {"constructions.value_maps.InterpolationFFN.from_nodes": _values_rolled},
                    description="node values assigned to the neighbouring node")


# --------------------------------------------------------------------------------------------
# Bump stack, its target guard and the width-depth trade-off (items 14, 16)
# --------------------------------------------------------------------------------------------


@st.composite
def bump_instances(draw):
    M, d = draw(st.integers(2, 40)), draw(st.integers(1, 3))
    return {
        "M": M, "d": d,
        "log10_gap": draw(_floats(-4.0, 0.0)),
        "u": draw(_direction(d)),
        "gaps": draw(hnp.arrays(np.float64, M, elements=_floats(1.0, 3.0))),
        "order": np.asarray(draw(st.permutations(range(M))), dtype=np.int64),
        "W": draw(hnp.arrays(np.float64, (M, d), elements=_floats(-3.0, 3.0))),
        "T": draw(hnp.arrays(np.float64, (M, d), elements=_floats(0.0, 1.0))),
        # unguarded: every target sits on the next layer's node id; the guard must refuse the stack
        "unguarded": draw(st.booleans()),
    }


def _bump_data(inst):
    u = np.asarray(inst["u"], dtype=np.float64)
    u = u / np.linalg.norm(u)
    z = (1.0 + np.cumsum(inst["gaps"] * 10.0 ** inst["log10_gap"]))[inst["order"]]  # layers in any order
    W = inst["W"]
    Y = z[:, None] * u[None, :] + W - (W @ u)[:, None] * u[None, :]
    T = np.asarray(inst["T"], dtype=np.float64)
    h = np.min(np.diff(np.sort(z))) / 5
    if inst["unguarded"]:
        T = T + (np.roll(z, -1) - T @ u)[:, None] * u[None, :]
    else:  # u^T t = min z - 3h - 1 - |original u^T t|: below the guard band
        T = T + ((z.min() - 3 * h - 1.0 - np.abs(T @ u)) - T @ u)[:, None] * u[None, :]
    return u, z, Y, T


def _bump_floor(B, Y, T, u=U64):
    """Each layer: 4 ReLU arguments with error <= 2u(|u^T y|/h + |z_m|/h + 2), times |w_m|; plus the residual sums."""
    h = float(B.h)
    zs = np.asarray([float(x) for x in B.nodes])
    w = np.asarray([[float(x) for x in r] for r in B.shifts])
    zy = Y @ np.asarray([float(x) for x in B.u])
    per = 8 * u * ((np.abs(zy)[:, None] + np.abs(zs)[None, :]) / h + 6) * np.abs(w).max(axis=1)[None, :]
    return per.sum(axis=1) + 4 * B.M * u * (np.abs(Y).max(axis=1) + np.abs(T).max(axis=1) + 1)


def _guard_conditions(B, u, T, z):
    """The stored target ids are u^T t_m (to the rounding of a d-term dot product) and lie outside the band."""
    tz = np.asarray([float(x) for x in B.target_ids])
    want = T @ u
    tol = 2.0 * gamma(len(u), U64) * (np.abs(T) @ np.abs(u)) + 1e-300
    ids_ok = tz.shape == want.shape and bool(np.all(np.abs(tz - want) <= tol))
    h = float(B.h)
    lo, hi = z.min() - 3 * h, z.max() + 3 * h
    outside = bool(np.all((want < lo) | (want > hi)))
    gap = float(np.min(np.diff(np.sort(z))))
    return (
        verify.Condition("target_ids", ids_ok, f"stored target ids {tz[:3]}... vs u^T t {want[:3]}..."),
        verify.Condition("guard", outside, f"a target id lies in the band [{lo:.6g}, {hi:.6g}]"),
        verify.Condition("half_width", h < gap / 4, f"h = {h:.6g} vs min gap / 4 = {gap / 4:.6g}"),
    )


@verify.claim(
    "hu24.bump_stack_tradeoff",
    source="Hu et al. 2024 (hu2024.md §2.4, §3.5, §5 items 14 and 16) [D]",
    statement="under the target guard, M layers of 4 ReLUs map y_m -> t_m like the (M-1)-wide FF2: depth M = width + 1;"
              " targets inside the band [min z - 3h, max z + 3h] are refused",
    strategy=bump_instances(),
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="M <= 40 layers, node gaps >= 1e-4",
)
def check_bump_stack(inst, backend):
    u, z, Y, T = _bump_data(inst)
    M = inst["M"]
    if inst["unguarded"]:
        try:
            BumpStack.from_targets(Y, T, u)
        except ValueError as exc:
            return verify.Evidence(0.0, 1.0, notes=f"refused as it must be: {exc}", resources={"M": M})
        return verify.Evidence(0.0, 1.0, resources={"M": M}, conditions=(
            verify.Condition("guard_refuses", False, "targets on the next layer's node id were accepted"),))
    B = BumpStack.from_targets(Y, T, u)
    F = InterpolationFFN.from_targets(Y, T, u)
    eb = np.abs(B(Y.T) - T.T).max(axis=0)
    fb = _bump_floor(B, Y, T)
    ef = np.abs(F(Y.T) - T.T).max(axis=0)
    ff = interp_f64_floor(F, Y, T)
    r = np.concatenate([eb / fb, ef / ff])
    i = int(np.argmax(r))
    obs, bnd = (eb[i], fb[i]) if i < M else (ef[i - M], ff[i - M])
    shape = verify.Condition(
        "tradeoff", B.depth == M == F.hidden_width + 1 and B.width == 4 and len(B.layers()) == M,
        f"depth {B.depth}, width {B.width}, {len(B.layers())} layers vs M = {M}, FF2 width {F.hidden_width}")
    return verify.Evidence(
        float(obs), float(bnd),
        notes=f"bump stack max err {eb.max():.3g}, interpolation max err {ef.max():.3g}",
        resources={"M": M, "depth": B.depth, "width_per_layer": 4, "two_ffn_width": F.hidden_width},
        conditions=(shape,) + _guard_conditions(B, u, T, z),
    )




def _no_guard(z, shifts, *a, **k):
    k["guard"] = False
    return _ORIG["bump_from_nodes"](z, shifts, *a, **k)


def _too_wide(z, shifts, *a, **k):
    zs = sorted(float(v) for v in z)
    k["h"] = 0.6 * min(b - a_ for a_, b in zip(zs, zs[1:], strict=False)) if len(zs) > 1 else None
    k["guard"] = False
    return _ORIG["bump_from_nodes"](z, shifts, *a, **k)


def _ids_from_increments(Y, T, u=None, h=None, ctx=None, *, guard=True):
    """from_targets checking the guard against u^T (t - y) instead of u^T t."""
    ul, z, V, _ = vm._ids_and_increments(Y, T, u, ctx)
    tz = [sum(a * b for a, b in zip(ul, v, strict=False)) for v in V]
    return _ORIG["bump_from_nodes"](z, V, ul, target_ids=tz, h=h, ctx=ctx, guard=guard)


verify.patch_mutant("hu24.bump_stack_tradeoff", "no_target_guard",
                    {"constructions.value_maps.BumpStack.from_nodes": _no_guard},
                    description="the guard is never checked: later bumps fire on moved tokens")
verify.patch_mutant("hu24.bump_stack_tradeoff", "bump_too_wide",
                    {"constructions.value_maps.BumpStack.from_nodes": _too_wide},
                    description="default h = 0.6 x min gap (> gap/4), unvalidated: the neighbouring node's bump fires")
verify.patch_mutant("hu24.bump_stack_tradeoff", "target_ids_from_increments",
                    {"constructions.value_maps.BumpStack.from_targets": _ids_from_increments},
                    description="the guard checked against the wrong target ids u^T (t - y)")
