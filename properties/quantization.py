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
from constructions.lipschitz import KINDS, alpha_norm, random_lipschitz
from constructions.quantization import (
    FF1Quantizer,
    centred_quantize,
    choose_K,
    ff1_apply_mp,
    ff1_weights,
    ffn_apply,
    ffn_rounding_floor,
    quantize,
    surrogate_sup_bound,
)

_ALPHAS = (1.0, 1.5, 2.0, 3.0, 8.0)
_TOP = 1.0 - 2.0**-30  # "just below the next grid level", as a fraction of delta

target_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 3),
        "L": st.integers(1, 3),
        "C": st.one_of(st.floats(0.0, 0.5), st.floats(0.5, 4.0)),
        "alpha": st.sampled_from(_ALPHAS),
        "K": st.integers(2, 12),
        "kind": st.sampled_from(KINDS),
    }
)


def _target(inst):
    return random_lipschitz(inst["seed"], inst["d"], inst["L"], inst["C"], inst["alpha"], inst["kind"])


def _sup_error(f, K, rng, qout=centred_quantize, n_cells=256, keep=32, per_cell=16, n_uniform=256):
    """max ||f(X) - qout(f(Q X))||_alpha over random and adversarial X; returns (max, mean^alpha-based d_alpha est)."""
    d, L, a = f.d, f.L, f.alpha
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
    err = alpha_norm(f(X) - qout(f(quantize(X, K)), K), a, axis=(1, 2))
    d_alpha = float(np.mean(alpha_norm(f(U) - qout(f(quantize(U, K)), K), a, axis=(1, 2)) ** a) ** (1.0 / a))
    return float(err.max()), d_alpha, X.shape[0]


def _surrogate_evidence(inst, qout=centred_quantize, bound_fn=surrogate_sup_bound):
    f = _target(inst)
    K = inst["K"]
    rng = np.random.default_rng([inst["seed"], 1])
    worst, d_alpha, n = _sup_error(f, K, rng, qout)
    bound = bound_fn(inst["C"], inst["d"], inst["L"], inst["alpha"], K)
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
)
def check_surrogate_sup_bound(inst, backend):
    return _surrogate_evidence(inst)


@verify.mutant(
    "hu24.surrogate_sup_bound",
    "uncentred_output_quantizer",
    strategy=target_instances.map(lambda i: {**i, "C": i["C"] * 0.1, "L": 1, "d": 1}),
)
def mutant_uncentred(inst, backend):
    """fbar = Q∘f∘Q (output rounded down, error up to delta) checked against the centred bound."""
    return _surrogate_evidence(inst, qout=quantize)


@verify.mutant("hu24.surrogate_sup_bound", "bound_without_dl_factor")
def mutant_no_dl(inst, backend):
    """The bound with the (dL)^(1/alpha) factor dropped: (C + 1/2) delta."""
    return _surrogate_evidence(inst, bound_fn=lambda C, d, L, a, K: (C + 0.5) / K)


eps_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 3),
        "L": st.integers(1, 3),
        "C": st.one_of(st.floats(0.0, 0.5), st.floats(0.5, 4.0)),
        "alpha": st.sampled_from(_ALPHAS),
        "eps": st.floats(0.05, 2.0),
        "kind": st.sampled_from(KINDS),
    }
)


def _eps_evidence(inst, k_fn=choose_K):
    f = _target(inst)
    K = k_fn(inst["C"], inst["d"], inst["L"], inst["alpha"], inst["eps"])
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
)
def check_choose_k(inst, backend):
    return _eps_evidence(inst)


@verify.mutant("hu24.choose_k_eps_over_3", "k_without_factor_3")
def mutant_k_no3(inst, backend):
    """K = ceil((C+1/2)(dL)^(1/alpha)/eps): only guarantees eps, not eps/3."""
    return _eps_evidence(inst, lambda C, d, L, a, e: math.ceil((C + 0.5) * (d * L) ** (1 / a) / e))


@verify.mutant("hu24.choose_k_eps_over_3", "k_without_dl_factor")
def mutant_k_nodl(inst, backend):
    """K = ceil(3(C+1/2)/eps): the (dL)^(1/alpha) factor dropped."""
    return _eps_evidence(inst, lambda C, d, L, a, e: math.ceil(3 * (C + 0.5) / e))


# --------------------------------------------------------------------------------------------
# FF1
# --------------------------------------------------------------------------------------------

ff1_instances = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 3),
        "K": st.integers(2, 10),
        "n": st.integers(1, 6),
        "log10_eta_frac": st.floats(-3.0, math.log10(0.49)),
        "positional": st.booleans(),
    }
)


def _ff1(inst) -> FF1Quantizer:
    K = inst["K"]
    return FF1Quantizer(inst["d"], K, inst["n"], 10.0 ** inst["log10_eta_frac"] / K, inst["positional"])


def _ff1_samples(F: FF1Quantizer, rng) -> np.ndarray:
    """Positioned tokens: uniform, plus points at, just above/below, and around the ramp edges of each breakpoint."""
    d, n, eta = F.d, F.n_positions if F.positional else 1, F.eta
    E = F.encoding(n)
    U = rng.uniform(0.0, 1.0, size=(d, 64 * n)) + np.tile(E, (1, 64))
    tb = F.breakpoints
    offs = np.array([0.0, 1e-13, -1e-13, -0.5 * eta, -eta, -1.05 * eta, -1.5 * eta, -2.5 * eta, 0.5 / F.K])
    pts = (tb[:, None] + offs[None, :]).reshape(-1)
    lo, hi = F.base, F.base + n
    pts = pts[(pts >= lo) & (pts <= hi)]
    pts = np.concatenate([pts, [lo, hi]])
    P = np.tile(pts, (d, 1))
    return np.concatenate([U, P], axis=1)


def _off_ramp_evidence(inst, weights=None, Z=None):
    F = _ff1(inst)
    rng = np.random.default_rng([inst["seed"], 3])
    Z = _ff1_samples(F, rng) if Z is None else Z
    W = (F.W1, F.b1, F.W2, F.b2) if weights is None else weights
    out = ffn_apply(*W, Z)
    off = ~F.in_ramp_set(Z)
    err = np.abs(out - F.staircase(Z))[off]
    floor = ffn_rounding_floor(*W, Z)[off]
    nb = F.breakpoints.size
    boxes = F.n_positions if F.positional else 1
    width_ok = F.hidden_width == F.d * (2 * nb + 1) == F.d * (2 * (boxes * F.K - 1) + 1)
    i = int(np.argmax(err / floor))
    obs = float(err[i]) if width_ok else math.inf
    return verify.Evidence(
        obs,
        float(floor[i]),
        notes=f"max off-ramp |FF1 - staircase| = {err.max():.3g}; {int(off.sum())} off-ramp entries tested",
        resources={"hidden_width": F.hidden_width, "breakpoints": nb, "K": F.K, "n": F.n_positions},
    )


@verify.claim(
    "hu24.ff1_off_ramp_exact",
    source="Hu et al. 2024 (hu2024.md §3.2, §5 item 2) [D,C]",
    statement="FF1(z) = delta floor(z/delta) off U_b (t_b - eta, t_b), to rounding; width d(2 #breakpoints + 1)",
    strategy=ff1_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="d <= 3, K <= 10, n <= 6 positions: width d(2(nK-1)+1) <= 357",
)
def check_ff1_off_ramp(inst, backend):
    return _off_ramp_evidence(inst)


@verify.mutant("hu24.ff1_off_ramp_exact", "missing_positional_offset")
def mutant_ff1_no_offset(inst, backend):
    """The unit-box staircase (no positional breakpoints) applied to positioned tokens."""
    inst = {**inst, "positional": True}
    F = _ff1(inst)
    return _off_ramp_evidence(inst, weights=ff1_weights(F.d, F.K, F.n_positions, F.eta, positional=False))


@verify.mutant("hu24.ff1_off_ramp_exact", "ramp_too_wide")
def mutant_ff1_wide(inst, backend):
    """Ramps of width 2 eta in the network, while the ramp set is taken with eta."""
    F = _ff1(inst)
    return _off_ramp_evidence(inst, weights=ff1_weights(F.d, F.K, F.n_positions, 2 * F.eta, F.positional))


def _ramp_measure_evidence(inst, weights=None, bound_per_coord=None):
    """Exact measure of {X in [0,1]^{d x n}: some entry of X + E on a ramp}, from the network's own weights."""
    F = _ff1(inst)
    W1, b1, W2, _ = (F.W1, F.b1, F.W2, F.b2) if weights is None else weights
    n = F.n_positions if F.positional else 1
    # the "+1" unit of each pair has W2 = +delta: its pre-activation is in (0, 1) exactly on the ramp
    rows = np.nonzero(W2[0] > 0)[0]
    w = W1[rows, 0]
    lo, hi = (0.0 - b1[rows]) / w, (1.0 - b1[rows]) / w
    p = []
    for j in range(n):
        a = F.base + j
        p.append(float(np.sum(np.clip(np.minimum(hi, a + 1) - np.maximum(lo, a), 0.0, None))))
    p = np.asarray(p)
    measure = 1.0 - float(np.prod((1.0 - p) ** F.d))
    per = F.per_coordinate_ramp_measure() if bound_per_coord is None else bound_per_coord(F)
    # endpoints -b/w, (1-b)/w carry rounding <= 2u(n+2) each; nK intervals per coordinate, d coordinates
    floor = 4.0 * 2.0**-53 * (n + 2) * n * F.K * F.d
    bound = F.d * n * per + floor
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
    strategy=ff1_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="d <= 3, K <= 10, n <= 6; exact product measure from the network's ramp intervals",
)
def check_ff1_ramp_measure(inst, backend):
    return _ramp_measure_evidence(inst)


@verify.mutant("hu24.ff1_ramp_measure", "ramp_too_wide")
def mutant_measure_wide(inst, backend):
    """Network ramps of width 2 eta against the eta bound."""
    F = _ff1(inst)
    return _ramp_measure_evidence(inst, weights=ff1_weights(F.d, F.K, F.n_positions, 2 * F.eta, F.positional))


@verify.mutant("hu24.ff1_ramp_measure", "unit_box_bound_for_positional")
def mutant_measure_unit_bound(inst, backend):
    """The unit-box count (K-1) eta per coordinate used for the positional network (box edges carry ramps)."""
    return _ramp_measure_evidence({**inst, "positional": True}, bound_per_coord=lambda F: (F.K - 1) * F.eta)


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


def _centre_evidence(inst, weights=None, mp_eta=None, positions_in_net=None):
    K, d = inst["K"], inst["d"]
    F = FF1Quantizer(d, K, inst["n"], inst["eta_frac"] / K, inst["positional"])
    n = F.n_positions if F.positional else 1
    W = (F.W1, F.b1, F.W2, F.b2) if weights is None else weights
    k = np.arange(K)
    off = np.repeat(F.encoding(n)[0], K)  # position offsets, one block of K centres per position
    Z = np.tile((np.tile(k, n) + 0.5) / K + off, (d, 1))
    want = np.tile(np.tile(k, n) / K + off, (d, 1))
    err = np.abs(ffn_apply(*W, Z) - want)
    floor = ffn_rounding_floor(*W, Z)
    i = np.unravel_index(np.argmax(err / floor), err.shape)
    obs, bnd = float(err[i]), float(floor[i])
    # the same check in mpmath: centres formed exactly in ctx, weights formed in ctx
    ctx = mpmath.MPContext()
    ctx.dps = inst["dps"]
    cols = [ctx.mpf(int(o)) + (ctx.mpf(int(kk)) + ctx.mpf(1) / 2) / K for o, kk in zip(off, np.tile(k, n), strict=True)]
    eta_mp = F.eta if mp_eta is None else mp_eta
    out = ff1_apply_mp([cols] * d, ctx, d, K, inst["n"], eta_mp, F.positional)
    tiny = ctx.mpf(2) ** (-ctx.prec) * 8 * (n + 2) * (2 * n * K + 1) * (n + 2) / ctx.mpf(F.eta * K)
    err_mp = max(
        abs(out[0, c] - (ctx.mpf(int(off[c])) + ctx.mpf(int(kk)) / K)) for c, kk in enumerate(np.tile(k, n))
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
    return _centre_evidence(inst)


@verify.mutant("hu24.ff1_cell_centres", "ramp_too_wide")
def mutant_centres_wide(inst, backend):
    """eta = 0.75 delta >= delta/2: cell centres fall on the ramp of the next breakpoint."""
    K = inst["K"]
    W = ff1_weights(inst["d"], K, inst["n"], 0.75 / K, inst["positional"])
    return _centre_evidence(inst, weights=W, mp_eta=0.75 / K)


@verify.mutant("hu24.ff1_cell_centres", "missing_positional_offset")
def mutant_centres_no_offset(inst, backend):
    """Positioned centres through the unit-box network (no breakpoints beyond the first box)."""
    inst = {**inst, "positional": True, "n": max(inst["n"], 2)}
    W = ff1_weights(inst["d"], inst["K"], inst["n"], inst["eta_frac"] / inst["K"], positional=False)
    return _centre_evidence(inst, weights=W)
