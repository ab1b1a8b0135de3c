"""Claims about the one-layer, one-head contextual mapping (Hu et al. 2024 any-rank lemma; hu2024.md §2.3, §5 4-12).

hu24.boltzmann_separation       |boltz(a) - boltz(a')| >= (ln n)^2 e^{-2r}, |boltz| <= r          (Lemma C, item 4)
hu24.projection_separation      P(random unit w not c_theory-separating) < 2/pi                    (item 5)
hu24.lemma_d_norm               ||y|| <= r_max + eps/4 (minus its e^{-2R} floor, log scale)         (item 6)
hu24.lemma_d_token_separation   different tokens: ||y - y'|| >= eps/2                               (item 7)
hu24.lemma_d_context_separation same token, non-permutation contexts: ||y - y'|| >= delta (closed form) (item 8)
hu24.lemma_d_data_constant      same with any c' <= c_emp in place of c                             (item 9)
hu24.any_rank_padding           any-rank W_K, W_V: logits and outputs equal the rank-1 head's        (item 10)
hu24.permutation_equivariance   y(X Pi) = y(X) Pi without positional encoding                        (item 11)
hu24.float64_cannot_decide      negative control: float64 collapses distinct contexts (out of reach) (item 12)

Gap claims are stated on a log scale, because the floors reach 10^-5000: observed = log10(1/measured gap),
bound = log10(1/floor), so ratio = ln(gap)/ln(floor) <= 1 iff gap >= floor (both < 1); ratio 0.8 means the
measured gap is floor^0.8.
"""

from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
from hypothesis import strategies as st

import verify
from constructions import contextual as cm

LN10 = math.log(10.0)
SOURCE = "Hu et al. 2024 (any-rank contextual lemma), K&S 2024 Lemma 1 / Thm 2; hu2024.md §2.3"


def _need_numpy(backend):
    if backend.name != "numpy":
        raise verify.UnsupportedPrecision(f"mpmath-exact check; digits chosen inside, not {backend.label}")


def _log_evidence(log_gap, log_floor, notes, resources):
    """Evidence on the log scale (natural logs in, log10 out)."""
    obs = -float(log_gap) / LN10
    bnd = -float(log_floor) / LN10
    if bnd <= 0:
        raise ValueError(f"floor {bnd} >= 1: use the linear form")
    return verify.Evidence(observed=obs, bound=bnd, notes=notes, resources=resources, precision="mpmath")


# --------------------------------------------------------------------------------------------
# item 4: Boltzmann operator
# --------------------------------------------------------------------------------------------

boltz_instances = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "n": st.integers(2, 4),
    "extra": st.integers(1, 2),
    "slack": st.floats(0.0, 0.5),
    "shift": st.floats(0.0, 1.0),
})


def _boltz_values(inst, sep):
    rng = np.random.default_rng(inst["seed"])
    m = inst["n"] + inst["extra"]
    gaps = sep * (1.0 + 0.5 * rng.random(m - 1))
    vals = np.concatenate([[0.0], np.cumsum(gaps)])
    return vals - inst["shift"] * vals[-1]


def _boltz_check(inst, sep, log_floor_fn, label):
    n = inst["n"]
    vals = _boltz_values(inst, sep)
    r = float(np.max(np.abs(vals)))
    ctx = cm.mp_context(cm.dps_for(r))
    subsets = list(itertools.combinations(vals.tolist(), n))  # boltz is permutation invariant: one per multiset
    rng = np.random.default_rng(inst["seed"] + 1)
    bz = [cm.boltzmann(list(rng.permutation(s)), ctx) for s in subsets]
    if max(abs(b) for b in bz) > r:
        return verify.Evidence(observed=math.nan, bound=1.0, notes="|boltz(a)| > r: convexity broken")
    gap = min(abs(a - b) for a, b in itertools.combinations(bz, 2))
    return _log_evidence(ctx.log(gap), log_floor_fn(n, r, ctx),
                         f"{len(subsets)} value sets, r = {r:.3g}, separation {sep:.3g} ({label})",
                         {"n": n, "r": round(r, 3), "dps": ctx.dps, "pairs": len(bz) * (len(bz) - 1) // 2})


@verify.claim(
    "hu24.boltzmann_separation",
    source=SOURCE + " Lemma C; §5 item 4",
    statement="entry-wise (r, 2ln n+3)-separated duplicate-free a, a' not permutations: "
              "|boltz(a)-boltz(a')| >= (ln n)^2 e^{-2r} (log scale), |boltz| <= r",
    strategy=boltz_instances,
    provenance="reconstructed",
    precision="mpmath",
    limits="n <= 4, value sets of n+2 values (r <= ~40): dps = ceil(2r/ln10)+60 stays < 100",
)
def check_boltzmann(inst, backend):
    _need_numpy(backend)
    sep = cm.boltzmann_separation_threshold(inst["n"]) * (1.0 + inst["slack"])
    return _boltz_check(inst, sep, cm.boltzmann_log_gap_bound, "hypothesis met")


@verify.mutant("hu24.boltzmann_separation", "separation_hypothesis_dropped")
def mutant_boltz_no_separation(inst, backend):
    """Entries only 0.3-separated (below 2 ln n + 3): the floor (ln n)^2 e^{-2r} no longer holds."""
    return _boltz_check(inst, 0.3 * (1.0 + inst["slack"]), cm.boltzmann_log_gap_bound, "hypothesis dropped")


@verify.mutant(
    "hu24.boltzmann_separation", "floor_e_minus_r",
    # the e^{-r} floor is exceeded only where r is small against the spread: centred values (shift ~ 1/2),
    # n >= 3; elsewhere the mutant's ratio sits at 0.3-0.7, so the default draw finds it only by luck
    strategy=st.fixed_dictionaries({"seed": st.integers(0, 2**32 - 1), "n": st.integers(3, 4),
                                    "extra": st.integers(1, 2), "slack": st.floats(0.0, 0.5),
                                    "shift": st.floats(0.45, 0.55)}),
)
def mutant_boltz_e_minus_r(inst, backend):
    """The floor with e^{-r} instead of e^{-2r}."""
    sep = cm.boltzmann_separation_threshold(inst["n"]) * (1.0 + inst["slack"])
    return _boltz_check(inst, sep, lambda n, r, ctx: 2 * ctx.log(ctx.log(n)) - ctx.mpf(r), "e^{-r} floor")


# --------------------------------------------------------------------------------------------
# vocabularies for Lemma D
# --------------------------------------------------------------------------------------------


def make_vocab(seed: int, d: int, n_vocab: int, mixed: bool) -> np.ndarray:
    """d = 1: magnitudes in {1, 2, 3, ...} (step 1), signs mixed or all +; d > 1: points with norms in [1, 2],
    pairwise >= 0.75 apart. Keeps eps/r_max large so the literal lemma's digits stay in the low thousands."""
    rng = np.random.default_rng(seed)
    if d == 1:
        if mixed:
            half = (n_vocab + 1) // 2
            mags = rng.choice(np.arange(1, half + 2), size=n_vocab, replace=True)
            signs = np.array([1.0, -1.0] * n_vocab)[:n_vocab]
            vals = sorted(set((signs * mags).tolist()))
            k = 1
            while len(vals) < n_vocab:
                vals = sorted(set(vals) | {float(half + 1 + k)})
                k += 1
            return np.array([vals[:n_vocab]], dtype=np.float64)
        return np.array([sorted(rng.choice(np.arange(1, n_vocab + 2), size=n_vocab, replace=False))], dtype=float)
    for _ in range(1000):
        V = rng.standard_normal((d, n_vocab))
        V = V / np.linalg.norm(V, axis=0) * rng.uniform(1.0, 2.0, size=n_vocab)
        _, _, eps = cm.separation(V)
        if eps >= 0.75:
            return V
    raise verify.OutOfReach(f"no {n_vocab} points with separation 0.75 in d = {d}")


lemma_instances = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "d": st.sampled_from([1, 1, 2, 3]),
    "n_vocab": st.integers(3, 5),
    "n": st.integers(2, 3),
    "mixed": st.booleans(),
    "c_frac": st.floats(0.3, 1.0),
    "e_random": st.booleans(),
})


def _lemma_setup(inst, c="frac", limit=12):
    d, nV = inst["d"], inst["n_vocab"]
    n = min(inst["n"], nV - 1)
    V = make_vocab(inst["seed"], d, nV, inst["mixed"])
    rng = np.random.default_rng(inst["seed"] + 7)
    seqs = cm.duplicate_free_sequences(V, n, limit=limit, rng=rng)
    e = cm.random_unit(rng, d) if inst.get("e_random") else None
    if c == "frac":
        head0 = cm.lemma_d(seqs, vocab=V, c="empirical", rng=np.random.default_rng(inst["seed"]), e=e)
        c = inst["c_frac"] * head0.c_emp
    head = cm.lemma_d(seqs, vocab=V, c=c, rng=np.random.default_rng(inst["seed"]), e=e)
    if head.dps > 8000:
        raise verify.OutOfReach(f"{head.dps} digits (R = {head.R:.4g}) exceed the 8000-digit budget of this claim")
    return head, seqs


def _res(head, seqs, ctx, **kw):
    r = {"d": head.d, "n": head.n, "|V|": head.n_vocab, "seqs": len(seqs), "dps": ctx.dps, "R": round(head.R, 1),
         "c": f"{head.c:.4g}", "c_emp": f"{head.c_emp:.4g}"}
    r.update(kw)
    return r


# --------------------------------------------------------------------------------------------
# item 5: projection
# --------------------------------------------------------------------------------------------

proj_instances = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "d": st.integers(2, 4),
    "n_vocab": st.integers(2, 8),
    "kind": st.sampled_from(["gauss", "clustered", "line"]),
})

PROJ_DRAWS = 200
PROJ_BETA = 1e-3


def _proj_vocab(inst):
    rng = np.random.default_rng(inst["seed"])
    d, m = inst["d"], inst["n_vocab"]
    if inst["kind"] == "gauss":
        return rng.standard_normal((d, m))
    if inst["kind"] == "clustered":
        return rng.standard_normal((d, 1)) + 1e-3 * rng.standard_normal((d, m))
    return np.outer(rng.standard_normal(d), rng.uniform(-2, 2, size=m)) + 1e-6 * rng.standard_normal((d, m))


def _proj_check(inst, c_fn):
    V = _proj_vocab(inst)
    d, m = V.shape
    c = c_fn(m, d)
    rng = np.random.default_rng(inst["seed"] + 3)
    fails = sum(cm.projection_constant(cm.random_unit(rng, d), V) < c for _ in range(PROJ_DRAWS))
    t = math.sqrt(math.log(1 / PROJ_BETA) / (2 * PROJ_DRAWS))
    return verify.Evidence(
        observed=fails / PROJ_DRAWS + t, bound=2 / math.pi,
        notes=f"{fails}/{PROJ_DRAWS} draws not c-separating (c = {c:.3g}); observed = rate + Hoeffding "
              f"t = {t:.3f} (one-sided, confidence {1 - PROJ_BETA})",
        resources={"d": d, "|V|": m, "c": f"{c:.3g}", "fails": fails, "draws": PROJ_DRAWS})


@verify.claim(
    "hu24.projection_separation",
    source=SOURCE + "; §5 item 5",
    statement="random unit w: P(min |w^T(u-u')|/||u-u'|| < (|V|+1)^-2 sqrt(8/(pi d)) on V u {0}) < 2/pi",
    strategy=proj_instances,
    provenance="derived",
    precision="float64",
    limits="d <= 4, |V| <= 8, 200 draws per instance",
)
def check_projection(inst, backend):
    _need_numpy(backend)
    return _proj_check(inst, cm.c_theory)


@verify.mutant("hu24.projection_separation", "c_without_vocab_factor")
def mutant_projection_constant(inst, backend):
    """c = sqrt(8/(pi d)) without the (|V|+1)^-2 factor: almost no direction is that separating."""
    return _proj_check(inst, lambda m, d: math.sqrt(8.0 / (math.pi * d)))


# --------------------------------------------------------------------------------------------
# items 6, 7: norm and different-token separation
# --------------------------------------------------------------------------------------------


def _norm_check(inst, scale_mult=1.0):
    """Unused fraction of the eps/4 allowance, on the log scale against its derived floor.

    ||y_k|| <= ||x_k|| + kappa |s_k| (kappa = eps/(4 r_max), s_k = sum_l sigma_l p_l, p = w^T x) and
    r_max - |s_k| >= sum_l sigma_l (P - sgn(s_k) p_l) >= sigma_min c eps (P = max |p_l|; two distinct tokens of the
    sequence have |p_l - p_l'| >= c eps; sigma_min >= e^{-2R}/n), so the slack r_max + eps/4 - ||y_k|| is at least
    (eps/4) c eps e^{-2R}/(r_max n). The bound r_max + eps/4 itself is attained up to that e^{-2R}-small term (the
    largest token attends to itself), so a linear ratio reads 1 in float64; the log scale shows the real margin.
    """
    head, seqs = _lemma_setup(inst)
    head = head.with_(scale_factor=scale_mult)
    ctx = head.context()
    outs = [head.apply_mp(X, ctx) for X in seqs]
    mx = max(ctx.sqrt(ctx.fsum(v * v for v in y)) for o in outs for y in o)
    quarter = ctx.mpf(head.eps) / 4
    unused = (ctx.mpf(head.r_max) + quarter - mx) / quarter
    R = head._xi_mp(ctx) * ctx.mpf(head.r_max) ** 2
    log_floor = ctx.log(ctx.mpf(head.c) * ctx.mpf(head.eps) / (ctx.mpf(head.r_max) * head.n)) - 2 * R
    res = _res(head, seqs, ctx, max_norm=f"{float(mx):.6g}", r_bound=f"{head.r_bound:.6g}")
    if not unused > 0:
        return verify.Evidence(observed=math.inf, bound=1.0, precision="mpmath", resources=res,
                               notes=f"max ||y|| exceeds r_max + eps/4 by {mpmath.nstr(-unused * quarter, 3)}")
    return _log_evidence(ctx.log(unused), log_floor,
                         f"unused fraction of eps/4: 10^{float(ctx.log10(unused)):.1f} against the floor "
                         f"c eps e^(-2R)/(r_max n) = 10^{float(log_floor) / LN10:.1f}", res)


@verify.claim(
    "hu24.lemma_d_norm",
    source=SOURCE + " Lemma D; §5 item 6",
    statement="Lemma D head: ||x_k + Att(X)_k|| <= r_max + (eps/4)(1 - c eps e^{-2R}/(r_max n)) for every token "
              "(log scale: unused fraction of eps/4 >= its floor)",
    strategy=lemma_instances,
    provenance="derived",
    precision="mpmath",
    limits="d <= 3, |V| <= 5, n <= 3, <= 12 sequences; c' = c_frac * c_emp keeps dps < 400",
    max_examples=30,
)
def check_lemma_d_norm(inst, backend):
    _need_numpy(backend)
    return _norm_check(inst)


@verify.mutant("hu24.lemma_d_norm", "output_scale_doubled")
def mutant_norm_scale(inst, backend):
    """W_O = eps/(2 r_max) e instead of eps/(4 r_max)."""
    return _norm_check(inst, scale_mult=2.0)


def _token_sep_check(inst, scale_mult=1.0, flip_e=False):
    head, seqs = _lemma_setup(inst)
    head = head.with_(scale_factor=scale_mult, e=-head.e if flip_e else head.e)
    ctx = head.context()
    g = cm.measure_gaps(head, seqs, ctx)
    return verify.Evidence(observed=head.eps / 2, bound=float(g.min_diff_token),
                           precision="mpmath",
                           notes="observed: the floor eps/2; bound: the measured min distance between outputs of "
                                 "different tokens (ratio = floor/gap)",
                           resources=_res(head, seqs, ctx, pairs=g.n_diff_pairs))


@verify.claim(
    "hu24.lemma_d_token_separation",
    source=SOURCE + " Lemma D; §5 item 7",
    statement="Lemma D head: outputs of different tokens (any contexts) are >= eps/2 apart (ratio = (eps/2)/gap)",
    strategy=lemma_instances,
    provenance="derived",
    precision="mpmath",
    limits="d <= 3, |V| <= 5, n <= 3, <= 12 sequences (all output pairs compared)",
    max_examples=30,
)
def check_lemma_d_tokens(inst, backend):
    _need_numpy(backend)
    return _token_sep_check(inst)


@verify.mutant("hu24.lemma_d_token_separation", "output_scale_x4",
               strategy=lemma_instances.map(lambda i: {**i, "d": 1, "mixed": True, "e_random": False}))
def mutant_token_scale(inst, backend):
    """W_O = (eps/r_max) e with e = -w (the lemma allows any unit e): each token moves up to eps, and in a mixed-sign
    d = 1 vocabulary the tokens nearest 0 on either side move towards each other, within eps/2. (With e = w, or
    tokens of one sign, all tokens move alike and x4 goes unseen: hence the drawn family.)"""
    return _token_sep_check(inst, scale_mult=4.0, flip_e=True)


# --------------------------------------------------------------------------------------------
# items 8, 9: same-token separation
# --------------------------------------------------------------------------------------------

literal_instances = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "d": st.sampled_from([1, 1, 1, 2]),
    "n_vocab": st.integers(3, 4),
    "n": st.integers(2, 3),
    "mixed": st.just(True) | st.booleans(),
    "e_random": st.just(False),
})


def _literal_setup(inst):
    inst = dict(inst)
    if inst["d"] == 2:
        inst["n_vocab"], inst["n"] = 3, 2  # c_theory^2 ~ 5e-3: keeps R ~ 3500
    return _lemma_setup(inst, c="theory", limit=8)


def _same_token_check(head, seqs, log_floor_fn, label):
    ctx = head.context()
    g = cm.measure_gaps(head, seqs, ctx)
    if g.n_same_pairs == 0:
        raise verify.OutOfReach("no same-token pair in non-permutation contexts among the drawn sequences")
    return _log_evidence(g.log_min_same_token, log_floor_fn(head, ctx),
                         f"{g.n_same_pairs} same-token/non-permutation pairs; {label}",
                         _res(head, seqs, ctx, log10_gap=round(float(g.log_min_same_token) / LN10, 2)))


@verify.claim(
    "hu24.lemma_d_context_separation",
    source=SOURCE + " Lemma D closed form; §5 item 8",
    statement="Lemma D (c = c_theory): same token, non-permutation contexts: ||y - y'|| >= delta = "
              "2(ln n)^2 eps^2 r_min/(r_max^2 (|V|+1)^4 (2ln n+3) pi d) "
              "e^{-(|V|+1)^4 (2ln n+3) pi d r_max^2/(4 eps r_min)}",
    strategy=literal_instances,
    provenance="derived",
    precision="mpmath",
    limits="d=1: |V| <= 4, n <= 3; d=2: |V|=3, n=2; <= 8 sequences: the literal lemma needs dps ~ 1.6k-4.5k",
    max_examples=12,
)
def check_context_separation(inst, backend):
    _need_numpy(backend)
    head, seqs = _literal_setup(inst)
    return _same_token_check(head, seqs, lambda h, ctx: h.log_delta_closed(ctx), "closed-form delta")


@verify.mutant("hu24.lemma_d_context_separation", "vocab_power_2_in_exponent")
def mutant_closed_form_power(inst, backend):
    """The closed form with (|V|+1)^2 instead of (|V|+1)^4 inside the exponential."""
    head, seqs = _literal_setup(inst)

    def wrong(h, ctx):
        v = ctx.mpf(h.n_vocab + 1)
        return h.log_delta_closed(ctx) + v**4 * (2 * ctx.log(h.n) + 3) * ctx.pi * h.d * ctx.mpf(h.r_max) ** 2 / (
            4 * ctx.mpf(h.eps) * ctx.mpf(h.r_min)) * (1 - 1 / v**2)

    return _same_token_check(head, seqs, wrong, "(|V|+1)^2 in the exponent")


@verify.mutant("hu24.lemma_d_context_separation", "boltzmann_floor_e_minus_R")
def mutant_closed_form_half(inst, backend):
    """Lemma C's e^{-2R} taken as e^{-R} (half the exponent)."""
    head, seqs = _literal_setup(inst)
    return _same_token_check(head, seqs, lambda h, ctx: h.log_delta(ctx) + ctx.mpf(h.R), "e^{-R}")


data_instances = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "d": st.sampled_from([1, 1, 2, 3]),
    "n_vocab": st.integers(3, 5),
    "n": st.integers(2, 4),
    "mixed": st.booleans(),
    "c_frac": st.floats(0.3, 1.0),
    "e_random": st.booleans(),
})


@verify.claim(
    "hu24.lemma_d_data_constant",
    source=SOURCE + " Lemma D with data constants; §5 item 9",
    statement="Lemma D with any c' <= c_emp: same-token gap >= (eps/(4 r_max)) (ln n)^2 e^{-2 xi' r_max^2}/(xi' r_max),"
              " "
              "xi' = (2ln n+3)/(c'^2 eps r_min)",
    strategy=data_instances,
    provenance="derived",
    precision="mpmath",
    limits="d <= 3, |V| <= 5, n <= 4, <= 12 sequences; c' in [0.3, 1] c_emp keeps dps < 1000",
    max_examples=30,
)
def check_data_constant(inst, backend):
    _need_numpy(backend)
    head, seqs = _lemma_setup(inst)
    return _same_token_check(head, seqs, lambda h, ctx: h.log_delta(ctx), "floor with c'")


@verify.mutant("hu24.lemma_d_data_constant", "r_min_for_r_max_in_exponent")
def mutant_data_rmin(inst, backend):
    """The floor's exponent with r_min^2 where r_max^2 belongs (a wrong logit radius)."""
    head, seqs = _lemma_setup(inst)
    return _same_token_check(
        head, seqs,
        lambda h, ctx: h.log_delta(ctx) + 2 * h._xi_mp(ctx) * (ctx.mpf(h.r_max) ** 2 - ctx.mpf(h.r_min) ** 2),
        "r_min in exponent")


# --------------------------------------------------------------------------------------------
# item 10: any-rank padding
# --------------------------------------------------------------------------------------------

rank_instances = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "d": st.integers(1, 3),
    "n_vocab": st.integers(3, 4),
    "n": st.integers(2, 3),
    "mixed": st.booleans(),
    "c_frac": st.floats(0.5, 1.0),
    "s": st.integers(1, 4),
    "rank_pick": st.floats(0.0, 1.0),
})


def _mp_rounding_floor(head, ctx, s=1):
    """Floor for the difference of two mpmath evaluations of the head (logits and outputs), u = 2^-prec.

    Logits: (s+d)-term products of magnitude <= R, error <= (s+d+2) u R each; a softmax weight exp(a - max)/sum then
    carries relative error <= 2(s+d+2) u R + (n+3) u; the output x + scale e sum_l sigma_l v_l with
    |scale v_l| <= eps/4 adds (eps/4)(2 x that + (n+d+3) u) + u (r_max + eps/4). Two evaluations: twice the sum.
    """
    u = float(ctx.mpf(2) ** (-ctx.prec))
    d, n, R = head.d, head.n, head.R
    w_rel = 2 * (s + d + 2) * u * R + (n + 3) * u
    out = (head.eps / 4) * (2 * w_rel + (n + d + 3) * u) + u * (head.r_max + head.eps / 4)
    return max(2 * out, 2 * (s + d + 2) * u * R, 1e-300)


def _rank_check(inst, pad_query=False):
    head, seqs = _lemma_setup(dict(inst, e_random=False), limit=4)
    s = inst["s"] + (1 if pad_query and inst["s"] == 1 else 0)
    rmax = min(s, head.d)
    rank = 1 + int(inst["rank_pick"] * rmax) if inst["rank_pick"] < 1 else rmax
    rank = min(rank, rmax)
    rng = np.random.default_rng(inst["seed"] + 11)
    W = head.weights(s=s, rank=rank, rng=rng, pad_query=pad_query)
    W1 = head.weights(s=1)
    got_rank = int(np.linalg.matrix_rank(W[1]))
    ctx = head.context()
    worst = ctx.mpf(0)
    for X in seqs:
        out, lg = head.apply_general_mp(X, ctx, *W)
        out1, lg1 = head.apply_general_mp(X, ctx, *W1)
        worst = max([worst] + [abs(a - b) for o, o1 in zip(out, out1, strict=True) for a, b in zip(o, o1, strict=True)]
                    + [abs(a - b) for l_, l1 in zip(lg, lg1, strict=False) for a, b in zip(l_, l1, strict=False)])
    floor = _mp_rounding_floor(head, ctx, s)
    obs = float(worst) if got_rank == rank else math.nan
    return verify.Evidence(observed=obs, bound=floor, precision="mpmath",
                           notes=f"max |logit or output difference| vs the rank-1 head; rank(W_K) = {got_rank} "
                                 f"(asked {rank}); bound: derived mpmath rounding floor",
                           resources=_res(head, seqs, ctx, s=s, rank=rank))


@verify.claim(
    "hu24.any_rank_padding",
    source=SOURCE + " any-rank extension (a); §5 item 10",
    statement="W_Q=[xi w^T;0], W_K=[w^T;B], W_V=[w^T;B'], W_O=scale e e_1^T: logits and outputs equal the rank-1 "
              "head's; "
              "rank(W_K) any r <= min(s,d)",
    strategy=rank_instances,
    provenance="derived",
    precision="mpmath",
    limits="d <= 3, s <= 4, <= 4 sequences",
    max_examples=25,
)
def check_any_rank(inst, backend):
    _need_numpy(backend)
    return _rank_check(inst)


@verify.mutant("hu24.any_rank_padding", "query_padding_nonzero")
def mutant_any_rank(inst, backend):
    """W_Q's extra rows filled (a genuinely higher-rank bilinear form): logits change."""
    return _rank_check(inst, pad_query=True)


# --------------------------------------------------------------------------------------------
# item 11: permutation equivariance
# --------------------------------------------------------------------------------------------


def _perm_check(inst, positional=False):
    head, seqs = _lemma_setup(inst, limit=4)
    ctx = head.context()
    rng = np.random.default_rng(inst["seed"] + 5)
    worst = ctx.mpf(0)
    for X in seqs:
        pi = rng.permutation(X.shape[1])
        if np.all(pi == np.arange(X.shape[1])):
            pi = np.roll(pi, 1)
        E = np.arange(1, X.shape[1] + 1, dtype=float)[None, :] * positional
        y = head.apply_mp(X + E, ctx)
        yp = head.apply_mp(X[:, pi] + E, ctx)
        worst = max([worst] + [abs(yp[j][i] - y[pi[j]][i]) for j in range(len(pi)) for i in range(head.d)])
    floor = _mp_rounding_floor(head, ctx)
    return verify.Evidence(observed=float(worst), bound=floor, precision="mpmath",
                           notes="max |y(X Pi) - y(X) Pi| in mpmath; bound: derived mpmath rounding floor",
                           resources=_res(head, seqs, ctx))


@verify.claim(
    "hu24.permutation_equivariance",
    source=SOURCE + "; §5 item 11 (contextual maps are 'up to permutation' without E)",
    statement="without positional encoding the Lemma D layer is permutation-equivariant: y(X Pi) = y(X) Pi",
    strategy=lemma_instances,
    provenance="derived",
    precision="mpmath",
    limits="d <= 3, |V| <= 5, n <= 3, <= 4 sequences",
    max_examples=25,
)
def check_permutation(inst, backend):
    _need_numpy(backend)
    return _perm_check(inst)


@verify.mutant("hu24.permutation_equivariance", "positional_offsets_added")
def mutant_permutation(inst, backend):
    """With positional offsets j 1_d added to column j the layer is no longer equivariant."""
    return _perm_check(inst, positional=True)


# --------------------------------------------------------------------------------------------
# item 12: float64 negative control
# --------------------------------------------------------------------------------------------

# a finite family: every instance is out of reach for float64, so Hypothesis stops once it has tried them all
CONTROL_FAMILY = [
    {"seed": s, "d": d, "n_vocab": m, "n": n, "mixed": mixed, "xi_factor": x}
    for s, d, m, n, mixed, x in [(1, 1, 3, 2, True, 4.0), (2, 1, 4, 3, False, 6.0), (3, 1, 5, 2, True, 8.0),
                                 (4, 2, 3, 2, False, 4.0), (5, 2, 4, 3, True, 5.0), (6, 1, 4, 2, True, 4.0)]
]
control_instances = st.sampled_from(CONTROL_FAMILY)


def float64_collisions(head, seqs, ctx):
    """Compare float64 (numpy, constructions.transformer) and mpmath outputs of same-token/non-permutation pairs.

    Returns (identical: pairs bit-identical in float64, below: pairs whose float64 difference is under the float64
    rounding floor 4 u r_max n, total pairs, log10 of the mpmath min gap, log10 of the float64 floor).
    """
    f64 = [head.apply_f64(X) for X in seqs]
    g = cm.measure_gaps(head, seqs, ctx)
    floor = 4 * 2.0**-53 * head.r_max * head.n
    diffs = [float(np.linalg.norm(f64[i][:, k] - f64[j][:, l])) for (i, k), (j, l) in cm.same_token_pairs(seqs)]
    identical = sum(x == 0.0 for x in diffs)
    below = sum(x <= floor for x in diffs)
    total = len(diffs)
    return identical, below, total, float(g.log_min_same_token) / LN10, math.log10(floor)


def _control_setup(inst):
    V = make_vocab(inst["seed"], inst["d"], inst["n_vocab"], inst["mixed"])
    n = min(inst["n"], inst["n_vocab"] - 1)
    seqs = cm.duplicate_free_sequences(V, n, limit=12, rng=np.random.default_rng(inst["seed"] + 7))
    head = cm.lemma_d(seqs, vocab=V, c="empirical", xi_factor=inst["xi_factor"],
                      rng=np.random.default_rng(inst["seed"]))
    if head.dps > 3000:
        raise verify.OutOfReach(f"{head.dps} digits exceed this control's 3000-digit budget")
    return head, seqs


@verify.claim(
    "hu24.float64_cannot_decide",
    source=SOURCE + "; §5 item 12 (negative control, [C] 216 bit-identical pairs)",
    statement="float64 cannot decide Lemma D's contextual property: distinct contexts collide below 2^-52 r_max "
              "(status out_of_reach by design; mpmath decides it in hu24.lemma_d_*)",
    strategy=control_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    rescue=False,
    limits="every instance is out of reach for float64 by design: same-token gaps e^{-2R} with R >= 70 "
           "are far below 2^-52; d <= 2, |V| <= 5, n <= 3",
    max_examples=10,
)
def check_float64_control(inst, backend):
    if backend.name in ("mpmath", "arb") or backend.dtype != "float64" or backend.name != "numpy":
        raise verify.UnsupportedPrecision("the negative control is about numpy float64 itself")
    head, seqs = _control_setup(inst)
    ctx = head.context()
    identical, below, total, lg, lf = float64_collisions(head, seqs, ctx)
    if total and below:
        raise verify.OutOfReach(
            f"float64 cannot decide: {identical}/{total} same-token/different-context pairs collide bit-for-bit "
            f"({below} under the float64 floor 10^{lf:.1f}); the mpmath min gap is 10^{lg:.1f} < 2^-52 r_max")
    if not total:
        raise verify.OutOfReach("no same-token pair in non-permutation contexts among the drawn sequences")
    # float64 separated every pair above its floor: the claim fails unless the true gap is below that floor
    return verify.Evidence(observed=10.0 ** max(lg, -300), bound=10.0**lf,
                           notes=f"float64 separated all {total} pairs above its floor 10^{lf:.1f}; "
                                 f"mpmath min gap 10^{lg:.1f} (ratio = gap / float64 floor)",
                           resources={"pairs": total, "dps": ctx.dps})


@verify.mutant("hu24.float64_cannot_decide", "float64_trusted")
def mutant_float64_trusted(inst, backend):
    """A check that trusts float64: its zero same-token gaps read as a (spurious) counterexample to Lemma D."""
    head, seqs = _control_setup(inst)
    ctx = head.context()
    f64 = [head.apply_f64(X) for X in seqs]
    gap = min((float(np.linalg.norm(f64[i][:, k] - f64[j][:, l])) for (i, k), (j, l) in cm.same_token_pairs(seqs)),
              default=math.inf)
    if gap == math.inf:
        raise verify.OutOfReach("no same-token pair")
    obs = math.inf if gap == 0 else -math.log10(gap)
    return verify.Evidence(observed=obs, bound=-float(head.log_delta(ctx)) / LN10,
                           notes=f"float64 gap {gap:.3g} against Lemma D's floor")
