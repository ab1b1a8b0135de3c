"""Claims on the target quantization and the FF1 quantizer of Hu et al. 2024 (hu2024.md §3.1–3.3, §5 items 1–3).

hu24.surrogate_sup_bound    item 1: sup_X ||f - fbar||_alpha <= (C + 1/2) delta (dL)^(1/alpha)          [D]
hu24.choose_k_eps_over_3    item 1: K = choose_K(C, d, L, alpha, eps) gives sup ||f - fbar||_alpha <= eps/3 [D]
hu24.ff1_off_ramp_exact     item 2: FF1 = staircase off the ramp set, width d(2 #breakpoints + 1)       [D,C]
hu24.ff1_ramp_measure       item 2: measure of the ramp set <= d n K eta (positional), d n (K-1) eta     [D,C]
hu24.ff1_cell_centres       item 3: eta < delta/2 => cell centres map exactly to lower corners         [D]

The sup norms are measured, not assumed: random inputs plus adversarial ones (cells whose image sits at an
output-cell edge, input corners just below the next grid level, entries equal to 1).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
from hypothesis import strategies as st

import verify
from constructions import quantization as qz
from constructions.lipschitz import alpha_norm
from constructions.precision import backend_unit_roundoff, gamma
from constructions.quantization import FF1Quantizer, ff1_apply_mp, ff1_mp_floor
from properties.strategies import ff1_instances, lipschitz_targets, target_map

# worst ratios at the ci profile, seed 0 (signed permutations align the errors; small eta makes the union bound
# on the ramp set nearly exact): surrogate 0.9988, choose_K 0.9965, ramp measure 1 - 2e-14
TIGHT_SURROGATE = 0.9
TIGHT_CHOOSE_K = 0.9
TIGHT_RAMP = 0.9
_TOP = 1.0 - 2.0**-30  # "just below the next grid level", as a fraction of delta

target_instances = lipschitz_targets(K=st.integers(2, 12))


def _target(inst):
    return target_map(inst)


def _sup_error(f, K, rng, n_cells=256, keep=32, per_cell=16, n_uniform=256):
    """max ||f(X) - fbar(X)||_alpha over random and adversarial X (fbar through qz.surrogate); + MC d_alpha."""
    d, L, a = f.d, f.L, f.alpha
    qout = qz.centred_quantize
    delta = 1.0 / K
    cells = rng.integers(0, K, size=(n_cells, d, L))
    G = cells / K
    FG = f(G)
    score = alpha_norm(FG - qout(FG, K), a, axis=(1, 2))
    top = cells[np.argsort(score)[-keep:]]
    pts = []
    A = f.params.get("A")
    for c in top:
        base = c / K
        corners = rng.integers(0, 2, size=(per_cell, d, L)) * (delta * _TOP)
        inside = rng.uniform(0.0, delta, size=(per_cell // 4, d, L))
        pts += [base + corners, base + inside]
        if A is not None:  # aligned corner: move the input along sign(A^T sign(output error))
            fg = f(base)
            s = np.sign(A.T @ np.sign((fg - qout(fg, K)).reshape(-1))).reshape(d, L)
            pts.append((base + (s > 0) * delta * _TOP)[None])
            pts.append((base + (s < 0) * delta * _TOP)[None])
        ones = np.where(c == K - 1, 1.0, base + delta * _TOP)  # entries exactly 1 (closed top cell)
        pts.append(ones[None])
    U = rng.uniform(0.0, 1.0, size=(n_uniform, d, L))
    X = np.concatenate(pts + [U], axis=0)
    fbar = qz.surrogate(f, K)
    err = alpha_norm(f(X) - fbar(X), a, axis=(1, 2))
    d_alpha = float(np.mean(alpha_norm(f(U) - fbar(U), a, axis=(1, 2)) ** a) ** (1.0 / a))
    return float(err.max()), d_alpha, X.shape[0]


def _surrogate_evidence(inst):
    f = _target(inst)
    K = inst["K"]
    rng = np.random.default_rng([inst["seed"], 1])
    worst, d_alpha, n = _sup_error(f, K, rng)
    bound = qz.surrogate_sup_bound(inst["C"], inst["d"], inst["L"], inst["alpha"], K)
    return verify.Evidence(
        worst,
        bound,
        notes=f"kind={f.kind}; Monte-Carlo d_alpha ~ {d_alpha:.3g}",
        resources={"K": K, "dL": inst["d"] * inst["L"], "samples": n, "kind": f.kind},
    )


@verify.claim(
    "hu24.surrogate_sup_bound",
    source="Hu et al. 2024 (hu2024.md §3.1, §5 item 1) [D]",
    statement="for f in F_C and all X: ||f(X) - fbar(X)||_alpha <= (C + 1/2) delta (dL)^(1/alpha), fbar = Qc∘f∘Q",
    strategy=target_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="dL <= 9, K <= 12: ~1000 sampled inputs per instance (random + cell-edge adversarial)",
    tight=TIGHT_SURROGATE,
)
def check_surrogate_sup_bound(inst, backend):
    return _surrogate_evidence(inst)


@verify.mutant(
    "hu24.surrogate_sup_bound",
    "uncentred_output_quantizer",
    patch="constructions.quantization.centred_quantize",
    strategy=lipschitz_targets(K=st.integers(2, 12), d=st.just(1), L=st.just(1), C=st.floats(0.0, 0.4)),
)
def mutant_uncentred(X, K):
    """fbar = Q∘f∘Q: the output rounded down to the lower corner (error up to delta), not to the centre."""
    return qz.quantize(X, K)


@verify.mutant("hu24.surrogate_sup_bound", "bound_without_dl_factor",
               patch="constructions.quantization.surrogate_sup_bound")
def mutant_no_dl(C, d, L, alpha, K):
    """The bound with the (dL)^(1/alpha) factor dropped: (C + 1/2) delta."""
    return (C + 0.5) / K


eps_instances = lipschitz_targets(eps=st.floats(0.05, 2.0))


def _eps_evidence(inst):
    f = _target(inst)
    K = qz.choose_K(inst["C"], inst["d"], inst["L"], inst["alpha"], inst["eps"])
    rng = np.random.default_rng([inst["seed"], 2])
    worst, d_alpha, n = _sup_error(f, K, rng)
    return verify.Evidence(
        worst,
        inst["eps"] / 3.0,
        notes=f"kind={f.kind}; d_alpha (MC) ~ {d_alpha:.3g} <= sup",
        resources={"K": K, "dL": inst["d"] * inst["L"], "samples": n},
    )


@verify.claim(
    "hu24.choose_k_eps_over_3",
    source="Hu et al. 2024 (hu2024.md §3.1, §5 item 1) [D]",
    statement="K = ceil(3(C+1/2)(dL)^(1/alpha)/eps) => sup_X ||f - fbar||_alpha <= eps/3, so d_alpha(f, fbar) <= eps/3",
    strategy=eps_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="dL <= 9, eps >= 0.05 (K <= ~2000); sampled sup over ~1000 inputs",
    tight=TIGHT_CHOOSE_K,
)
def check_choose_k(inst, backend):
    return _eps_evidence(inst)


@verify.mutant("hu24.choose_k_eps_over_3", "k_without_factor_3", patch="constructions.quantization.choose_K")
def mutant_k_no3(C, d, L, alpha, eps):
    """K = ceil((C+1/2)(dL)^(1/alpha)/eps): only guarantees eps, not eps/3."""
    return math.ceil((C + 0.5) * (d * L) ** (1 / alpha) / eps)


@verify.mutant("hu24.choose_k_eps_over_3", "k_without_dl_factor", patch="constructions.quantization.choose_K")
def mutant_k_nodl(C, d, L, alpha, eps):
    """K = ceil(3(C+1/2)/eps): the (dL)^(1/alpha) factor dropped."""
    return math.ceil(3 * (C + 0.5) / eps)


# --------------------------------------------------------------------------------------------
# FF1
# --------------------------------------------------------------------------------------------

ff1_strategy = ff1_instances()


def _ff1(inst) -> FF1Quantizer:
    K = inst["K"]
    return FF1Quantizer(inst["d"], K, inst["n"], 10.0 ** inst["log10_eta_frac"] / K, inst["positional"])


def _ff1_samples(F: FF1Quantizer, U) -> np.ndarray:
    """Positioned tokens: the drawn uniforms, plus points at, just above/below, and around each ramp's edges."""
    d, n, eta = F.d, F.n_positions if F.positional else 1, F.eta
    E = F.encoding(n)
    Uz = (np.asarray(U, dtype=np.float64) + E[:, None, :]).reshape(d, -1)
    tb = F.breakpoints
    offs = np.array([0.0, 1e-13, -1e-13, -0.5 * eta, -eta, -1.05 * eta, -1.5 * eta, -2.5 * eta, 0.5 / F.K])
    pts = (tb[:, None] + offs[None, :]).reshape(-1)
    lo, hi = F.base, F.base + n
    pts = pts[(pts >= lo) & (pts <= hi)]
    pts = np.concatenate([pts, [lo, hi]])
    P = np.tile(pts, (d, 1))
    return np.concatenate([Uz, P], axis=1)


def _width_condition(F: FF1Quantizer) -> verify.Condition:
    nb = F.breakpoints.size
    boxes = F.n_positions if F.positional else 1
    want = F.d * (2 * (boxes * F.K - 1) + 1)
    ok = F.hidden_width == F.d * (2 * nb + 1) == want
    return verify.Condition("width", ok, f"hidden width {F.hidden_width}, {nb} breakpoints; d(2(nK-1)+1) = {want}")


def _off_ramp_evidence(inst, backend):
    F = _ff1(inst)
    u = backend_unit_roundoff(backend)
    Z = _ff1_samples(F, inst["uniform"])
    out = F(Z)
    off = ~F.in_ramp_set(Z)
    err = np.abs(out - F.staircase(Z))[off]
    floor = F.staircase_floor(Z, u)[off]
    i = int(np.argmax(err / floor))
    return verify.Evidence(
        float(err[i]),
        float(floor[i]),
        notes=f"max off-ramp |FF1 - staircase| = {err.max():.3g}; {int(off.sum())} off-ramp entries tested",
        resources={"hidden_width": F.hidden_width, "breakpoints": F.breakpoints.size, "K": F.K, "n": F.n_positions},
        conditions=(_width_condition(F),),
    )


@verify.claim(
    "hu24.ff1_off_ramp_exact",
    source="Hu et al. 2024 (hu2024.md §3.2, §5 item 2) [D,C]",
    statement="FF1(z) = delta floor(z/delta) off U_b (t_b - eta, t_b), to rounding; width d(2 #breakpoints + 1)",
    strategy=ff1_strategy,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="d <= 3, K <= 10, n <= 6 positions: width d(2(nK-1)+1) <= 357",
)
def check_ff1_off_ramp(inst, backend):
    return _off_ramp_evidence(inst, backend)


def _unit_box_breakpoints(K, n_positions, positional=True, *, original):
    """The unit-box staircase whatever ``positional`` says: no breakpoints beyond the first token box."""
    base, tb = original(K, n_positions, False)
    return (1.0 if positional else 0.0), tb + (1.0 if positional else 0.0)


def _last_breakpoint_dropped(K, n_positions, positional=True, *, original):
    """The top breakpoint (the last cell of the last token box) missing."""
    base, tb = original(K, n_positions, positional)
    return base, tb[:-1]


def _wide_ramp_weights(d, K, n_positions, eta, positional=True, *, original):
    """The network built with ramps of width 2 eta while the quantizer reports eta."""
    return original(d, K, n_positions, 2.0 * eta, positional)


verify.patch_mutant("hu24.ff1_off_ramp_exact", "missing_positional_offset",
                    {"constructions.quantization.ff1_breakpoints": _unit_box_breakpoints},
                    description="the unit-box breakpoints (shifted to the first box) used for positioned tokens")
verify.patch_mutant("hu24.ff1_off_ramp_exact", "breakpoint_dropped",
                    {"constructions.quantization.ff1_breakpoints": _last_breakpoint_dropped},
                    description="the last breakpoint dropped from the float staircase network")
verify.patch_mutant("hu24.ff1_off_ramp_exact", "ramp_too_wide",
                    {"constructions.quantization.ff1_weights": _wide_ramp_weights},
                    description="network ramps of width 2 eta, the ramp set taken with eta")


def _ramp_intervals(F: FF1Quantizer):
    """The ramp intervals (lo, hi) of coordinate 0 read off the network's weights: the "+1" unit of each pair
    (W2 = +delta) has pre-activation in (0, 1) exactly on its ramp."""
    rows = np.nonzero(F.W2[0] > 0)[0]
    w = F.W1[rows, 0]
    return (0.0 - F.b1[rows]) / w, (1.0 - F.b1[rows]) / w


def _ramp_measure_evidence(inst, backend):
    """Exact measure of {X in [0,1]^{d x n}: some entry of X + E on a ramp}, from the network's own weights."""
    F = _ff1(inst)
    u = backend_unit_roundoff(backend)
    n = F.n_positions if F.positional else 1
    lo, hi = _ramp_intervals(F)
    p = []
    for j in range(n):
        a = F.base + j
        p.append(float(np.sum(np.clip(np.minimum(hi, a + 1) - np.maximum(lo, a), 0.0, None))))
    p = np.asarray(p)
    measure = 1.0 - float(np.prod((1.0 - p) ** F.d))
    # each endpoint -b/w, (1-b)/w: b rounded (<= u |b|), the division once more; |b| <= (n+2)/eta + 1, so an
    # interval length moves by <= 2 gamma_3 ((n+2)/eta + 1) eta = 2 gamma_3 (n + 2 + eta); K n intervals per
    # coordinate; the product measure is 1-Lipschitz in each p_j (d n of them), its own rounding gamma_{2dn+2}
    floor = F.d * n * F.K * n * 2 * gamma(3, u) * (n + 2 + F.eta) + gamma(2 * F.d * n + 2, u)
    bound = F.ramp_measure_bound(n) + floor
    return verify.Evidence(
        measure,
        bound,
        notes=f"per-position ramp lengths {np.round(p, 6).tolist()}; bound includes endpoint rounding {floor:.2g}",
        resources={"K": F.K, "n": n, "d": F.d, "eta": F.eta},
    )


@verify.claim(
    "hu24.ff1_ramp_measure",
    source="Hu et al. 2024 (hu2024.md §3.2, §5 item 2) [D,C]",
    statement="|{X in [0,1]^{d x n} : X + E hits a ramp}| <= d n K eta (positional), d n (K-1) eta (unit box)",
    strategy=ff1_strategy,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="d <= 3, K <= 10, n <= 6; exact product measure from the network's ramp intervals",
    tight=TIGHT_RAMP,
)
def check_ff1_ramp_measure(inst, backend):
    return _ramp_measure_evidence(inst, backend)


verify.patch_mutant("hu24.ff1_ramp_measure", "ramp_too_wide",
                    {"constructions.quantization.ff1_weights": _wide_ramp_weights},
                    description="network ramps of width 2 eta against the eta bound")


@verify.mutant("hu24.ff1_ramp_measure", "unit_box_count_for_positional",
               patch="constructions.quantization.FF1Quantizer.per_coordinate_ramp_measure")
def mutant_measure_unit_bound(self):
    """(K-1) eta per coordinate for the positional network too (its box edges carry ramps as well)."""
    return (self.K - 1) * self.eta


centre_instances = st.fixed_dictionaries(
    {
        "d": st.integers(1, 3),
        "K": st.integers(2, 12),
        "n": st.integers(1, 8),
        "eta_frac": st.floats(0.001, 0.4999),
        "positional": st.booleans(),
        "dps": st.integers(20, 60),
    }
)


def _centre_evidence(inst, backend):
    """Every cell centre of every position through FF1, in float64 and in mpmath (the worse ratio is reported)."""
    K, d = inst["K"], inst["d"]
    F = FF1Quantizer(d, K, inst["n"], inst["eta_frac"] / K, inst["positional"])
    n = F.n_positions if F.positional else 1
    k = np.arange(K)
    off = np.repeat(F.encoding(n)[0], K)  # position offsets, one block of K centres per position
    Z = np.tile((np.tile(k, n) + 0.5) / K + off, (d, 1))
    want = np.tile(np.tile(k, n) / K + off, (d, 1))
    err = np.abs(F(Z) - want)
    floor = F.staircase_floor(Z, backend_unit_roundoff(backend))
    i = np.unravel_index(np.argmax(err / floor), err.shape)
    obs, bnd = float(err[i]), float(floor[i])
    # the same in mpmath: centres and weights formed exactly in ctx, floor at ctx's unit roundoff
    ctx = mpmath.MPContext()
    ctx.dps = inst["dps"]
    cols = [ctx.mpf(int(o)) + (ctx.mpf(int(kk)) + ctx.mpf(1) / 2) / K for o, kk in zip(off, np.tile(k, n), strict=True)]
    out = ff1_apply_mp([cols] * d, ctx, d, K, inst["n"], F.eta, F.positional)
    # the centres themselves are formed with 2 roundings (<= 2u(n+1)) before FF1 sees them (1-Lipschitz off ramps)
    tiny = ff1_mp_floor(ctx, K, inst["n"], F.eta, F.positional) + 4 * ctx.mpf(2) ** (-ctx.prec) * (n + 1)
    err_mp = max(
        abs(out[i_, c] - (ctx.mpf(int(off[c])) + ctx.mpf(int(kk)) / K))
        for i_ in range(d)
        for c, kk in enumerate(np.tile(k, n))
    )
    if err_mp / tiny > (obs / bnd if bnd > 0 else math.inf):
        obs, bnd = float(err_mp), float(tiny)
    return verify.Evidence(
        obs,
        bnd,
        notes=f"float64 max err {err.max():.3g}; mpmath (dps={ctx.dps}) max err {mpmath.nstr(err_mp, 3)}",
        resources={"K": K, "n": n, "d": d, "centres": int(Z.size), "dps": ctx.dps},
    )


@verify.claim(
    "hu24.ff1_cell_centres",
    source="Hu et al. 2024 (hu2024.md §3.3, §5 item 3) [D]",
    statement="eta < delta/2 => FF1(k delta + delta/2 + j) = k delta + j exactly (float64 and mpmath, to rounding)",
    strategy=centre_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="K <= 12, n <= 8 positions, every centre of every position and coordinate; mpmath at 20-60 digits",
)
def check_ff1_cell_centres(inst, backend):
    return _centre_evidence(inst, backend)


def _ramp_three_quarter_weights(d, K, n_positions, eta, positional=True, *, original):
    return original(d, K, n_positions, 0.75 / K, positional)


def _ramp_three_quarter_mp(Z, ctx, d, K, n_positions, eta, positional=True, *, original):
    return original(Z, ctx, d, K, n_positions, 0.75 / K, positional)


verify.patch_mutant("hu24.ff1_cell_centres", "ramp_too_wide",
                    {"constructions.quantization.ff1_weights": _ramp_three_quarter_weights,
                     "constructions.quantization.ff1_apply_mp": _ramp_three_quarter_mp},
                    description="eta = 0.75 delta >= delta/2 in both networks: centres fall on the next ramp")
verify.patch_mutant("hu24.ff1_cell_centres", "missing_positional_offset",
                    {"constructions.quantization.ff1_breakpoints": _unit_box_breakpoints},
                    strategy=centre_instances.map(lambda i: {**i, "positional": True, "n": max(i["n"], 2)}),
                    description="positioned centres through the unit-box staircase (float and mpmath)")


@verify.mutant("hu24.ff1_cell_centres", "mp_breakpoint_dropped", patch="constructions.quantization.ff1_breakpoints_mp")
def mutant_mp_drop(ctx, K, n_positions, positional=True, *, original):
    """The mpmath FF1 network missing its last breakpoint (the float network intact)."""
    base, tbs = original(ctx, K, n_positions, positional)
    return base, tbs[:-1]
