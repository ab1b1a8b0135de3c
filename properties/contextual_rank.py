"""Claims on the Lemma D head's structure and numerics (hu2024.md §2.3(a), §5 items 10-12).

hu24.any_rank_padding           any-rank W_K, W_V: logits and outputs equal the rank-1 head's        (item 10)
hu24.permutation_equivariance   y(X Pi) = y(X) Pi without positional encoding                        (item 11)
hu24.float64_cannot_decide      negative control: float64 collapses distinct contexts (out of reach) (item 12)

Identities are compared in mpmath against the head's own rounding floor (ContextualHead.mp_rounding_floor,
u = 2^-prec); the ratio difference / floor is formed in the mpmath context, where both are far below 1e-300.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import verify
from constructions import contextual as cm
from properties.contextual import LN10, SOURCE, lemma_setup, need_numpy, res
from properties.strategies import lemma_d_instances, separated_points, vocabulary_1d

# the unpatched methods, kept inside a dict: a patch rebinds every module-level name bound to the patched object
# (so a plain global would be patched too), and a class-attribute patch cannot pass ``original`` (a partial does
# not bind self)
_UNPATCHED = {"weights": cm.ContextualHead.weights, "apply_mp": cm.ContextualHead.apply_mp}


def _mp_ratio_evidence(worst, floor, notes, resources, conditions=()):
    """worst / floor formed in mpmath (both may be < 1e-300), reported as observed ratio against bound 1."""
    return verify.Evidence(observed=float(worst / floor), bound=1.0, precision="mpmath", notes=notes,
                           resources=resources, conditions=conditions)


# --------------------------------------------------------------------------------------------
# item 10: any-rank padding
# --------------------------------------------------------------------------------------------

rank_instances = lemma_d_instances(n_vocab=st.integers(3, 4), c_frac=st.floats(0.5, 1.0), e_random=st.just(False),
                                   limit=4, s=st.integers(1, 4), rank_pick=st.floats(0.0, 1.0))


def _rank_check(inst):
    head, seqs = lemma_setup(inst)
    s = inst["s"]
    rmax = min(s, head.d)
    rank = min(1 + int(inst["rank_pick"] * rmax) if inst["rank_pick"] < 1 else rmax, rmax)
    # the padding blocks B, B' are Gaussian from the instance's seed (any B, B' must do)
    W = head.weights(s=s, rank=rank, rng=np.random.default_rng(inst["seed"] + 11))
    W1 = head.weights(s=1)
    got_rank = int(np.linalg.matrix_rank(W[1]))
    ctx = head.context()
    worst = ctx.mpf(0)
    for X in seqs:
        out, lg = head.apply_general_mp(X, ctx, *W)
        out1, lg1 = head.apply_general_mp(X, ctx, *W1)
        worst = max([worst] + [abs(a - b) for o, o1 in zip(out, out1, strict=True) for a, b in zip(o, o1, strict=True)]
                    + [abs(a - b) for l_, l1 in zip(lg, lg1, strict=True) for a, b in zip(l_, l1, strict=True)])
    floor = 2 * head.mp_rounding_floor(ctx, s)  # two evaluations compared
    cond = verify.Condition("rank", got_rank == rank, f"rank(W_K) = {got_rank}, asked {rank}")
    return _mp_ratio_evidence(worst, floor, "max |logit or output difference| vs the rank-1 head, over the derived "
                                            "mpmath rounding floor", res(head, seqs, ctx, s=s, rank=rank), (cond,))


@verify.claim(
    "hu24.any_rank_padding",
    source=SOURCE + " any-rank extension (a); §5 item 10",
    statement="W_Q=[xi w^T;0], W_K=[w^T;B], W_V=[w^T;B'], W_O=scale e e_1^T: logits and outputs equal the rank-1 "
              "head's; rank(W_K) any r <= min(s,d)",
    strategy=rank_instances,
    provenance="derived",
    precision="mpmath",
    limits="d <= 3, s <= 4, <= 4 sequences",
    max_examples=25,
)
def check_any_rank(inst, backend):
    need_numpy(backend)
    return _rank_check(inst)


@verify.mutant("hu24.any_rank_padding", "query_padding_nonzero",
               patch="constructions.contextual.ContextualHead.weights",
               strategy=rank_instances.map(lambda i: {**i, "s": max(i["s"], 2)}))
def mutant_any_rank(self, s=1, rank=None, rng=None, pad_query=False):
    """W_Q's extra rows filled (a genuinely higher-rank bilinear form): the logits change."""
    return _UNPATCHED["weights"](self, s=s, rank=rank, rng=rng, pad_query=s > 1)


# --------------------------------------------------------------------------------------------
# item 11: permutation equivariance
# --------------------------------------------------------------------------------------------

perm_instances = lemma_d_instances(limit=4, perm_shift=st.integers(1, 2))


def _perm_check(inst):
    head, seqs = lemma_setup(inst)
    ctx = head.context()
    worst = ctx.mpf(0)
    for X in seqs:
        pi = np.roll(np.arange(X.shape[1]), inst["perm_shift"])  # a cyclic shift: never the identity for n >= 2
        y = head.apply_mp(X, ctx)
        yp = head.apply_mp(X[:, pi], ctx)
        worst = max([worst] + [abs(yp[j][i] - y[pi[j]][i]) for j in range(len(pi)) for i in range(head.d)])
    return _mp_ratio_evidence(worst, 2 * head.mp_rounding_floor(ctx),
                              "max |y(X Pi) - y(X) Pi| in mpmath over the derived mpmath rounding floor",
                              res(head, seqs, ctx))


@verify.claim(
    "hu24.permutation_equivariance",
    source=SOURCE + "; §5 item 11 (contextual maps are 'up to permutation' without E)",
    statement="without positional encoding the Lemma D layer is permutation-equivariant: y(X Pi) = y(X) Pi",
    strategy=perm_instances,
    provenance="derived",
    precision="mpmath",
    limits="d <= 3, |V| <= 5, n <= 3, <= 4 sequences",
    max_examples=25,
)
def check_permutation(inst, backend):
    need_numpy(backend)
    return _perm_check(inst)


@verify.mutant("hu24.permutation_equivariance", "positional_offsets_added",
               patch="constructions.contextual.ContextualHead.apply_mp")
def mutant_permutation(self, X, ctx, queries=None):
    """A layer that adds positional offsets j 1_d to column j before attending: no longer equivariant."""
    X = np.asarray(X, dtype=np.float64)
    return _UNPATCHED["apply_mp"](self, X + np.arange(1, X.shape[1] + 1, dtype=np.float64)[None, :], ctx, queries)


# --------------------------------------------------------------------------------------------
# item 12: float64 negative control
# --------------------------------------------------------------------------------------------


def _control_instance(seed, d, m, n, mixed, xi_factor):
    """A finite family member with its arrays: V, the sequences and the projection, drawn once here."""
    rng = np.random.default_rng(seed)
    V = vocabulary_1d(m, mixed, list(rng.integers(1, m + 3, size=m))) if d == 1 else separated_points(seed, d, m)
    n = min(n, m - 1)
    seqs = np.stack(cm.duplicate_free_sequences(V, n, limit=12, rng=np.random.default_rng(seed + 7)))
    w, _, _ = cm.separating_projection(V, np.random.default_rng(seed), cm.c_theory(m, d))
    return {"seed": seed, "d": d, "n_vocab": m, "n": n, "mixed": mixed, "xi_factor": xi_factor, "V": V,
            "seqs": seqs, "w": w}


# a finite family: every instance is out of reach for float64, so Hypothesis stops once it has tried them all
CONTROL_FAMILY = [
    _control_instance(s, d, m, n, mixed, x)
    for s, d, m, n, mixed, x in [(1, 1, 3, 2, True, 4.0), (2, 1, 4, 3, False, 6.0), (3, 1, 5, 2, True, 8.0),
                                 (4, 2, 3, 2, False, 4.0), (5, 2, 4, 3, True, 5.0), (6, 1, 4, 2, True, 4.0)]
]
control_instances = st.sampled_from(CONTROL_FAMILY)


def float64_collisions(head, seqs, ctx):
    """Compare float64 (numpy, constructions.transformer) and mpmath outputs of same-token/non-permutation pairs.

    Returns (identical: pairs bit-identical in float64, below: pairs whose float64 difference is under the sum of
    the two outputs' float64 rounding floors (ContextualHead.float64_floor), total pairs, log10 of the mpmath min
    gap, log10 of the largest pair floor).
    """
    f64 = [head.apply_f64(X) for X in seqs]
    fl = [head.float64_floor(X) for X in seqs]
    g = cm.measure_gaps(head, seqs, ctx)
    diffs, floors = [], []
    for (i, k), (j, l) in cm.same_token_pairs(seqs):
        diffs.append(float(np.linalg.norm(f64[i][:, k] - f64[j][:, l])))
        floors.append(float(np.linalg.norm(fl[i][:, k]) + np.linalg.norm(fl[j][:, l])))
    identical = sum(x == 0.0 for x in diffs)
    below = sum(x <= f for x, f in zip(diffs, floors, strict=True))
    top = max(floors, default=0.0)
    return identical, below, len(diffs), float(g.log_min_same_token) / LN10, math.log10(top) if top > 0 else -math.inf


def _control_setup(inst):
    seqs = [np.asarray(X, dtype=np.float64) for X in inst["seqs"]]
    head = cm.lemma_d(seqs, vocab=np.asarray(inst["V"]), c="empirical", xi_factor=inst["xi_factor"],
                      w=np.asarray(inst["w"]))
    if head.dps > 3000:
        raise verify.OutOfReach(f"{head.dps} digits exceed this control's 3000-digit budget")
    return head, seqs


@verify.claim(
    "hu24.float64_cannot_decide",
    source=SOURCE + "; §5 item 12 (negative control, [C] 216 bit-identical pairs)",
    statement="float64 cannot decide Lemma D's contextual property: distinct contexts collide below float64's "
              "rounding floor (status out_of_reach by design; mpmath decides it in hu24.lemma_d_*)",
    strategy=control_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    rescue=False,
    expect="out_of_reach",
    expect_reason="a negative control: float64 collapses the e^{-2R}-small same-token gaps below its rounding floor, "
                  "which is what the claim asserts; deciding it would mean float64 separated every pair",
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
            f"({below} under the float64 floor 10^{lf:.1f}); the mpmath min gap is 10^{lg:.1f}")
    if not total:
        raise verify.OutOfReach("no same-token pair in non-permutation contexts among the drawn sequences")
    # float64 separated every pair above its floor: the claim fails unless the true gap is below that floor;
    # ratio = gap / floor, formed from logs (the gap is ~10^-1000)
    return verify.Evidence(observed=10.0 ** min(lg - lf, 300.0), bound=1.0,
                           notes=f"float64 separated all {total} pairs above its floor 10^{lf:.1f}; "
                                 f"mpmath min gap 10^{lg:.1f} (ratio = gap / float64 floor)",
                           resources={"pairs": total, "dps": ctx.dps})


@verify.mutant("hu24.float64_cannot_decide", "float64_trusted")
def mutant_float64_trusted(inst, backend):
    """flag: the defect is in the check itself — it trusts float64, so its zero same-token gaps read as a
    (spurious) counterexample to Lemma D."""
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
