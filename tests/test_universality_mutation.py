"""constructions.universality pinned against independent arithmetic (formulas, defaults, boundaries, replays).

Complements tests/test_universality.py: every count, bound and formula of the module is recomputed here with
explicit loops, exact integers, fractions.Fraction or mpmath, and every documented default and ValueError
hypothesis is checked at its boundary.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from types import SimpleNamespace

import mpmath
import numpy as np
import pytest

from constructions import contextual as cm
from constructions import lipschitz as lp
from constructions import quantization as qz
from constructions import universality as un
from constructions.memorization import BumpStack, InterpolationFFN

# --------------------------------------------------------------------------------------------
# independent references
# --------------------------------------------------------------------------------------------


def ref_ramp_sup(d, L, n, alpha):
    return (2 * n + 5) * (d * L) ** (1.0 / alpha)


def ref_eta(d, L, K, alpha, eps):
    """Largest power of ten 10^-k (k >= 0) below the budget, found by a loop (not by a log)."""
    n = L * K ** (d * L) + L
    budget = min(0.25 / K, (eps / 3.0 / ref_ramp_sup(d, L, n, alpha)) ** alpha / (d * L * K))
    k = 0
    while 10.0**-k > budget:
        k += 1
    return 10.0**-k, k


def ref_counts(d, L, C, alpha, eps, variant, K):
    """The documented counts (small sizes only): exact ints, mpmath for R."""
    N = 1
    for _ in range(d * L):
        N *= K
    L_p = L * N
    n = L_p + L
    M = K ** (d * n) * L
    log10_M = float(mpmath.log10(mpmath.mpf(M)))
    vocab = n * K**d
    c = 1.0 if d == 1 else float(mpmath.mpf(vocab + 1) ** -2 * mpmath.sqrt(mpmath.mpf(8) / (mpmath.pi * d)))
    with mpmath.workdps(50):
        delta = mpmath.mpf(1) / K
        r_min = mpmath.sqrt(d)
        r_max = mpmath.sqrt(d) * (n + 1 - delta)
        xi = (2 * mpmath.log(n) + 3) / (mpmath.mpf(c) ** 2 * delta * r_min)
        R = xi * r_max**2
        dps0 = int(mpmath.ceil(2 * R / mpmath.log(10))) + 60
    eta, k = ref_eta(d, L, K, alpha, eps)
    ff1_w = d * (2 * (n * K - 1) + 1)
    eps_g = (C + 0.5) / K * (d * L) ** (1.0 / alpha) + ref_ramp_sup(d, L, n, alpha) * (d * L * K * eta) ** (1.0 / alpha)
    out = {
        "attention_layers": 1,
        "heads": 1,
        "L_p": L_p,
        "nodes_M": M,
        "dps": dps0 + k + 5,
        "K": K,
        "delta": 1.0 / K,
        "n": n,
        "vocab": vocab,
        "variant": variant,
    }
    if variant == "two_ffn":
        out.update(ffn_layers=2, ffn_widths=(ff1_w, M))
    else:
        out.update(ffn_layers=1 + M, ffn_widths=(ff1_w, 4))
    return out, dict(log10_nodes_M=log10_M, c=c, R=float(R), eta=eta, eps_guaranteed=eps_g)


def close(a, b, rel=1e-12):
    return a == pytest.approx(b, rel=rel, abs=0.0)


# --------------------------------------------------------------------------------------------
# _validate and _resolve_K
# --------------------------------------------------------------------------------------------

GOOD = dict(d=1, L=1, C=1.0, alpha=1.0, eps=1.0, variant="two_ffn")


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(C=0.0),
        dict(alpha=1.0),
        dict(eps=1e-300),
        dict(d=2, L=3),
        dict(d=1.0, L=2.0),
        dict(variant="multi_ffn"),
    ],
)
def test_validate_accepts_the_boundaries(kw):
    args = dict(GOOD, **kw)
    assert un._validate(args["d"], args["L"], args["C"], args["alpha"], args["eps"], args["variant"]) is None


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(variant="two"), "variant"),
        (dict(variant="TWO_FFN"), "variant"),
        (dict(d=True), "positive integers"),
        (dict(L=True), "positive integers"),
        (dict(d=1.5), "positive integers"),
        (dict(L=1.5), "positive integers"),
        (dict(d=0), "positive integers"),
        (dict(L=0), "positive integers"),
        (dict(d=-1), "positive integers"),
        (dict(eps=0.0), "eps must be > 0"),
        (dict(eps=-1e-300), "eps must be > 0"),
        (dict(eps=math.inf), "eps must be > 0"),
        (dict(eps=math.nan), "eps must be > 0"),
        (dict(eps=None), "eps must be > 0"),
        (dict(C=-1e-300), "C must be >= 0"),
        (dict(C=math.inf), "C must be >= 0"),
        (dict(C=math.nan), "C must be >= 0"),
        (dict(alpha=1.0 - 1e-12), "alpha"),
        (dict(alpha=math.inf), "alpha"),
        (dict(alpha=math.nan), "alpha"),
    ],
)
def test_validate_rejects_at_the_boundaries(kw, match):
    args = dict(GOOD, **kw)
    with pytest.raises(ValueError, match=match):
        un._validate(args["d"], args["L"], args["C"], args["alpha"], args["eps"], args["variant"])


def test_resolve_K_from_delta_and_from_K():
    assert un._resolve_K(1, 1, 1.0, 1.0, 1.0, delta=0.5) == 2
    assert un._resolve_K(1, 1, 1.0, 1.0, 1.0, delta=0.25) == 4
    assert un._resolve_K(1, 1, 1.0, 1.0, 1.0, delta=1 / 3) == 3
    assert un._resolve_K(1, 1, 1.0, 1.0, 1.0, K=2, delta=0.5) == 2
    assert un._resolve_K(1, 1, 1.0, 1.0, 1.0) == 5  # choose_K = ceil(3 * 1.5 / 1)
    assert un._resolve_K(1, 1, 1.0, 1.0, 1.0, K=6) == 6  # a given K wins over choose_K
    assert un._resolve_K(1, 1, 1.0, 1.0, 1.0, K=7.0) == 7 and isinstance(un._resolve_K(1, 1, 1.0, 1.0, 1.0, K=7.0), int)
    # 1/delta within 1e-9 relative of an integer is that integer; beyond it is refused
    assert un._resolve_K(1, 1, 1.0, 1.0, 1.0, delta=1.0 / (10 + 5e-9)) == 10
    with pytest.raises(ValueError, match="not an integer"):
        un._resolve_K(1, 1, 1.0, 1.0, 1.0, delta=1.0 / (10 + 2e-8))


@pytest.mark.parametrize(
    "C, d, L, alpha, eps",
    [
        (1.0, 1, 1, 1.0, 1.5),
        (0.0, 1, 1, 2.0, 0.75),
        (1.5, 2, 3, 2.0, 0.7),
        (0.25, 3, 1, 1.5, 0.4),
        (2.0, 1, 4, 3.0, 2.0),
    ],
)
def test_resolve_K_default_is_choose_K_formula(C, d, L, alpha, eps):
    want = math.ceil(3 * (C + 0.5) * (d * L) ** (1 / alpha) / eps)
    got = un._resolve_K(d, L, C, alpha, eps)
    assert got == want == un._resolve_K(d, L, C, alpha, eps, None, None)
    assert un._resolve_K(d, L, C, alpha, eps, K=want + 1) == want + 1


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(delta=0.0), "delta must lie"),
        (dict(delta=-0.5), "delta must lie"),
        (dict(delta=1.5), "delta must lie"),
        (dict(delta=math.inf), "delta must lie"),
        (dict(delta=math.nan), "delta must lie"),
        (dict(delta=1.0), "K >= 2"),
        (dict(K=1), "K >= 2"),
        (dict(delta=0.4), "not an integer"),
        (dict(K=3, delta=0.5), "disagree"),
        (dict(K=2.5), "integer"),
    ],
)
def test_resolve_K_rejects(kw, match):
    with pytest.raises(ValueError, match=match):
        un._resolve_K(1, 1, 1.0, 1.0, 1.0, **kw)


def test_resolve_K_two_levels_is_the_smallest():
    assert un._resolve_K(1, 1, 1.0, 1.0, 1.0, K=2) == 2
    assert un._resolve_K(1, 1, 1.0, 1.0, 1.0, K=3) == 3


# --------------------------------------------------------------------------------------------
# _log10_big, ramp_sup_bound, choose_eta
# --------------------------------------------------------------------------------------------


def test_log10_big_matches_mpmath():
    assert un._log10_big(0) == -math.inf and un._log10_big(-7) == -math.inf
    assert un._log10_big(1) == 0.0 and un._log10_big(1000) == pytest.approx(3.0, rel=1e-15, abs=0.0)
    assert un._log10_big(7.9) == math.log10(7)
    for x in (2**999 - 1, 2**999, 3**700, 3**2000 + 12345, 10**400, 7**5000):
        with mpmath.workdps(40):
            want = float(mpmath.log10(mpmath.mpf(x)))
        assert close(un._log10_big(x), want, 1e-13), x


@pytest.mark.parametrize("d, L, n, alpha", [(2, 3, 7, 2.0), (1, 1, 3, 1.0), (3, 2, 11, 1.5), (1, 4, 20, 3.0)])
def test_ramp_sup_bound_formula(d, L, n, alpha):
    with mpmath.workdps(40):
        want = float((2 * mpmath.mpf(n) + 5) * mpmath.mpf(d * L) ** (mpmath.mpf(1) / mpmath.mpf(alpha)))
    assert close(un.ramp_sup_bound(d, L, n, alpha), want, 1e-14)


@pytest.mark.parametrize("d, L, K, alpha", [(2, 3, 3, 2.0), (1, 2, 4, 1.0), (3, 1, 2, 1.5), (1, 1, 5, 3.0)])
@pytest.mark.parametrize("side", [1 + 1e-9, 1 - 1e-9])
def test_choose_eta_is_tight_at_the_ramp_budget(d, L, K, alpha, side):
    """eps chosen so the ramp term at eta = 1e-4 is eps/3 (times 1 +- 1e-9): eta = 1e-4 just above, 1e-5 below."""
    n = L * K ** (d * L) + L
    ramp = ref_ramp_sup(d, L, n, alpha)
    eps = 3 * ramp * (d * L * K * 1e-4) ** (1 / alpha) * side
    eta = un.choose_eta(d, L, K, 123.0, alpha, eps)
    assert eta == (1e-4 if side > 1 else 1e-5) == ref_eta(d, L, K, alpha, eps)[0]
    assert eta <= 0.25 / K and ramp * (d * L * K * eta) ** (1 / alpha) <= eps / 3


@pytest.mark.parametrize("K, want", [(2, 0.1), (3, 0.01), (4, 0.01), (20, 0.01), (41, 0.001)])
def test_choose_eta_delta_quarter_cap(K, want):
    """eps huge: the cap eta < delta/4 decides (largest power of ten <= 0.25/K)."""
    eta = un.choose_eta(1, 1, K, 1.0, 1.0, 1e9)
    assert eta == want == ref_eta(1, 1, K, 1.0, 1e9)[0]


def test_choose_eta_ignores_C():
    assert un.choose_eta(1, 2, 3, 0.0, 2.0, 0.5) == un.choose_eta(1, 2, 3, 9.0, 2.0, 0.5)


# --------------------------------------------------------------------------------------------
# resource_counts and _symbolic_counts
# --------------------------------------------------------------------------------------------

SMALL = [
    (1, 1, 1.0, 1.0, 1.5, "two_ffn", None),
    (1, 2, 1.0, 2.0, 4.5, "multi_ffn", 2),
    (2, 1, 0.5, 1.5, 1.0, "two_ffn", 2),
    (2, 2, 1.0, 3.0, 0.9, "multi_ffn", 3),
    (3, 1, 0.0, 1.0, 0.3, "two_ffn", 2),
    (1, 3, 2.0, 2.0, 0.8, "multi_ffn", 2),
]


@pytest.mark.parametrize("d, L, C, alpha, eps, variant, K", SMALL)
def test_resource_counts_formulas(d, L, C, alpha, eps, variant, K):
    r = un.resource_counts(d, L, C, alpha, eps, variant, K=K)
    Kr = K if K is not None else math.ceil(3 * (C + 0.5) * (d * L) ** (1 / alpha) / eps)
    exact, approx = ref_counts(d, L, C, alpha, eps, variant, Kr)
    assert set(r) == set(exact) | set(approx)
    for k, v in exact.items():
        assert type(r[k]) is type(v), k
        if k == "dps" and v > 10**15:  # R in float64: digits from a huge R agree to float precision
            assert close(r[k], v, 1e-13) and r[k] == cm.dps_for(r["R"]) + ref_eta(d, L, Kr, alpha, eps)[1] + 5
        else:
            assert r[k] == v, k
    for k, v in approx.items():
        assert close(r[k], v, 1e-11), k
    # the guarantee is the surrogate bound plus the ramp term, and at choose_K the ramp part is <= eps/3
    assert r["eps_guaranteed"] > qz.surrogate_sup_bound(C, d, L, alpha, Kr)


def test_resource_counts_defaults():
    a = un.resource_counts(1, 2, 1.0, 2.0, 4.5)
    assert a == un.resource_counts(1, 2, 1.0, 2.0, 4.5, "two_ffn", None, None)
    assert a["variant"] == "two_ffn" and a["ffn_layers"] == 2
    assert a == un.resource_counts(1, 2, 1.0, 2.0, 4.5, delta=1.0 / a["K"])
    assert un.resource_counts(1, 2, 1.0, 2.0, 4.5, "multi_ffn")["ffn_layers"] == 1 + a["nodes_M"]
    assert un.resource_counts(1, 2, 1.0, 2.0, 4.5, K=3)["K"] == 3 != a["K"]
    assert un.resource_counts(1, 2, 1.0, 2.0, 4.5, delta=1 / 3) == un.resource_counts(1, 2, 1.0, 2.0, 4.5, K=3)


def test_resource_counts_node_string_beyond_1e300():
    r = un.resource_counts(1, 1, 1.0, 1.0, 1.0, "multi_ffn", K=139)  # log10 M = 140 log10(139) = 300.02
    want = 140 * math.log10(139)
    assert close(r["log10_nodes_M"], want, 1e-14) and 300 < want < 301
    assert r["nodes_M"] == "~10^300" and r["ffn_layers"] == "1 + ~10^300" and r["ffn_widths"] == (139 * 2 * 140 - 1, 4)
    assert r["n"] == 140 and r["L_p"] == 139 and r["vocab"] == 140 * 139 and r["c"] == 1.0
    r2 = un.resource_counts(1, 1, 1.0, 1.0, 1.0, K=138)  # 139 log10(138) = 297.4: exact
    assert r2["nodes_M"] == 138**139 and r2["ffn_widths"][1] == 138**139


def test_resource_counts_eta_vanishes_from_1e12_positions():
    K = 999_999_999_999  # n = K + 1 = 10^12 exactly
    r = un.resource_counts(1, 1, 1.0, 1.0, 1.0, K=K)
    assert r["n"] == 10**12 and r["eta"] == 0.0
    assert r["eps_guaranteed"] == qz.surrogate_sup_bound(1.0, 1, 1, 1.0, K)
    with mpmath.workdps(60):
        n = mpmath.mpf(10**12)
        R = (2 * mpmath.log(n) + 3) * K * (n + 1 - mpmath.mpf(1) / K) ** 2
        dps = int(mpmath.ceil(2 * R / mpmath.log(10))) + 60
    assert close(r["R"], float(R), 1e-12)
    assert isinstance(r["dps"], int) and close(r["dps"], dps, 1e-13)  # float R: no extra digits when eta = 0
    assert r["dps"] == cm.dps_for(r["R"])
    r1 = un.resource_counts(1, 1, 1.0, 1.0, 1.0, K=K - 1)  # n = 10^12 - 1: eta still chosen
    assert r1["eta"] == ref_eta(1, 1, K - 1, 1.0, 1.0)[0] > 0
    assert r1["dps"] == cm.dps_for(r1["R"]) + ref_eta(1, 1, K - 1, 1.0, 1.0)[1] + 5


def test_resource_counts_overflowing_R():
    r = un.resource_counts(1, 1, 1.0, 1.0, 1.0, K=10**155)  # r_max^2 ~ 1e310 overflows
    assert r["R"] == math.inf and r["dps"] == "~inf" and r["eta"] == 0.0
    assert r["nodes_M"].startswith("~10^") and r["c"] == 1.0
    assert close(r["log10_nodes_M"], (10**155 + 1) * 155.0, 1e-12)


@pytest.mark.parametrize("variant", un.VARIANTS)
def test_resource_counts_symbolic_branch(variant):
    r = un.resource_counts(2, 2500, 1.0, 1.0, 1.0, variant, K=10)  # dL log10 K = 5000 exactly: symbolic
    assert r == un._symbolic_counts(2, 2500, 10, variant, 5000.0)
    r = un.resource_counts(1, 2000, 1.0, 1.0, 1.0, variant, K=1000)  # 2000 log10(1000) = 6000: symbolic
    assert r == un._symbolic_counts(1, 2000, 1000, variant, 6000.0)
    big = un.resource_counts(1, 16610, 1.0, 1.0, 1.0, variant, K=2)  # 16610 log10 2 = 5000.1
    assert big["L_p"] == f"~10^{math.log10(16610) + 16610 * math.log10(2):.4g}"


@pytest.mark.parametrize("variant", un.VARIANTS)
def test_symbolic_counts_formulas(variant):
    two = variant == "two_ffn"
    # finite branch (log10 L_p < 300)
    d, L, K, lN = 3, 7, 5, 200.0
    lLp = math.log10(7) + 200.0
    lM = 3 * 10**lLp * math.log10(5)
    s = f"~10^{lM:.4g}"
    want = {
        "attention_layers": 1,
        "heads": 1,
        "ffn_layers": 2 if two else f"1 + {s}",
        "ffn_widths": ("huge", s if two else 4),
        "L_p": f"~10^{lLp:.4g}",
        "nodes_M": s,
        "dps": "~inf",
        "K": 5,
        "delta": 0.2,
        "n": f"~10^{lLp:.4g}",
        "vocab": "huge",
        "c": None,
        "R": math.inf,
        "eta": 0.0,
        "variant": variant,
    }
    got = un._symbolic_counts(d, L, K, variant, lN)
    assert close(got.pop("log10_nodes_M"), lM, 1e-13)
    assert math.isnan(got.pop("eps_guaranteed"))
    assert got == want
    # log10 L_p = 300 exactly: the doubly-exponential string
    got = un._symbolic_counts(3, 1, 5, variant, 300.0)
    s2 = f"~10^(10^{300.0 + math.log10(3 * math.log10(5)):.4g})"
    assert got["log10_nodes_M"] == math.inf and got["nodes_M"] == s2
    assert got["ffn_widths"] == ("huge", s2 if two else 4)
    got = un._symbolic_counts(3, 1, 5, variant, 300.5)
    assert (
        got["log10_nodes_M"] == math.inf and got["nodes_M"] == f"~10^(10^{300.5 + math.log10(3 * math.log10(5)):.4g})"
    )
    got = un._symbolic_counts(3, 1, 5, variant, 299.9)
    assert close(got["log10_nodes_M"], 3 * 10**299.9 * math.log10(5), 1e-12)


# --------------------------------------------------------------------------------------------
# check_budget, estimate_build_seconds
# --------------------------------------------------------------------------------------------


def test_check_budget_boundaries():
    c = {"nodes_M": 100, "dps": 50, "K": 2, "L_p": 2, "n": 3, "R": 1.0}
    assert un.check_budget(c, 100, 50) is None
    with pytest.raises(ValueError, match="node count M = 100 exceeds the node budget 99"):
        un.check_budget(c, 99, 50)
    with pytest.raises(ValueError, match="50 digits needed .* exceed the digits budget 49"):
        un.check_budget(c, 100, 49)
    with pytest.raises(ValueError, match="node budget"):
        un.check_budget(dict(c, nodes_M="~10^400"), 10**9, 10**9)
    with pytest.raises(ValueError, match="digits budget"):
        un.check_budget(dict(c, dps="~inf"), 10**9, 10**9)


def test_estimate_build_seconds_formula():
    c = {"nodes_M": 1000, "dps": 600, "n": 7}
    want = 1000 * (2 * 7 + 8) * 2e-6 * (1 + Fraction(600, 300) ** Fraction(8, 5))
    got = un.estimate_build_seconds(c)
    assert close(got, float(1000 * 22 * 2e-6 * (1 + 2.0**1.6)), 1e-14) and close(got, float(want), 1e-12)
    assert un.estimate_build_seconds(c, None) == got
    assert un.estimate_build_seconds(c, 1e-3) == pytest.approx(1000 * 22 * 1e-3, rel=1e-15, abs=0.0)
    c2 = {"nodes_M": 3, "dps": 300, "n": 1}
    assert un.estimate_build_seconds(c2) == pytest.approx(3 * 10 * 2e-6 * 2, rel=1e-14, abs=0.0)
    assert un.estimate_build_seconds(dict(c, nodes_M="~10^400")) == math.inf
    assert un.estimate_build_seconds(dict(c, dps="~inf")) == math.inf


# --------------------------------------------------------------------------------------------
# _rounding_floor, _universality_head, build_ff2, _enumerate_nodes
# --------------------------------------------------------------------------------------------


class _FakeFF2:
    def __init__(self, ctx, s):
        self.ctx, self.s = ctx, s

    def max_output_weight(self, ctx):
        assert ctx is self.ctx
        return ctx.mpf(self.s)


def test_rounding_floor_formula():
    ctx = cm.mp_context(40)
    counts = {"n": 7, "K": 3, "R": 123.5, "nodes_M": 1000}
    eta = 1e-3
    got = un._rounding_floor(_FakeFF2(ctx, 5), ctx, counts, eta)
    with mpmath.workprec(400):
        u = mpmath.mpf(2) ** -ctx.prec
        ide = u * (mpmath.mpf(8 * 7 * 3) / mpmath.mpf(eta) + (mpmath.mpf(123.5) + 10) * 9 * 7)
        want = 5 * ide + u * 1000 * 10 * 9
    assert abs(got - want) <= want * mpmath.mpf(10) ** -30
    assert 0 < ctx.prec < 200 and want < mpmath.mpf(10) ** -30  # ulp = 2^-prec


def _grid_vocab(n, K, d):
    """All positioned grid tokens j + 1 + c/K (j < n, c in {0..K-1}^d) as columns, in the construction's order."""
    return np.array(
        [[(j + 1) + ci / K for ci in cell] for j in range(n) for cell in itertools.product(range(K), repeat=d)]
    ).T


def test_universality_head_d1():
    for n, K in ((3, 2), (4, 3), (10, 2)):
        vocab = np.arange(n * K, dtype=np.float64)[None, :]
        h = un._universality_head(vocab, n, K, 1)
        assert isinstance(h, cm.ContextualHead)
        assert np.array_equal(h.w, [1.0]) and np.array_equal(h.e, [1.0]) and h.w.shape == (1,) == h.e.shape
        assert (h.n, h.eps, h.r_min, h.r_max, h.c, h.c_emp, h.n_vocab) == (
            n,
            1.0 / K,
            1.0,
            n + 1 - 1.0 / K,
            1.0,
            1.0,
            n * K,
        )
        assert (h.xi_factor, h.scale_factor) == (1.0, 1.0)


def test_universality_head_d2_is_lemma_d_replayed():
    n, K = 2, 2
    vocab = _grid_vocab(n, K, 2)
    h = un._universality_head(vocab, n, K, 2)
    ref = cm.lemma_d(vocab=vocab, n=n, eps=1.0 / K, c="theory", rng=np.random.default_rng(0))
    other = cm.lemma_d(vocab=vocab, n=n, eps=1.0 / K, c="theory", rng=np.random.default_rng(1))
    assert np.array_equal(h.w, ref.w) and np.array_equal(h.e, ref.e) and not np.array_equal(h.w, other.w)
    assert (h.n, h.eps, h.r_min, h.r_max, h.c, h.n_vocab) == (ref.n, 0.5, ref.r_min, ref.r_max, ref.c, 8)
    assert h.c == cm.c_theory(8, 2) and h.r_min == pytest.approx(math.sqrt(2), rel=1e-15, abs=0.0)


def test_universality_head_d2_non_dyadic_K_builds_on_the_float_tokens_separation():
    """K = 3, 5, 10: the rounded tokens are a few ulps closer than 1/K; the head takes that separation."""
    n = 2
    for K in (3, 5, 10):
        vocab = _grid_vocab(n, K, 2)
        dists = [
            math.dist(vocab[:, a], vocab[:, b]) for a in range(vocab.shape[1]) for b in range(a + 1, vocab.shape[1])
        ]
        eps_min = min(dists)
        assert eps_min < 1.0 / K, f"K = {K}: the float grid should be just below 1/K, got {eps_min!r}"
        with pytest.raises(ValueError, match="separation hypothesis"):
            cm.lemma_d(vocab=vocab, n=n, eps=1.0 / K, c="theory", rng=np.random.default_rng(0))
        h = un._universality_head(vocab, n, K, 2)
        assert h.eps == pytest.approx(eps_min, rel=4 * 2.0**-53, abs=0.0) and h.eps <= 1.0 / K
        assert 1.0 / K - h.eps <= 64 * 2.0**-53 * (n + 1), f"K = {K}: eps {h.eps!r} is not 1/K up to rounding"
        ref = cm.lemma_d(vocab=vocab, n=n, eps=h.eps, c="theory", rng=np.random.default_rng(0))
        assert np.array_equal(h.w, ref.w) and (h.c, h.n_vocab) == (cm.c_theory(2 * K * K, 2), 2 * K * K)


def test_universality_head_d2_caps_eps_at_delta_for_a_wider_vocabulary():
    # tokens 1 apart: their own separation (1) exceeds delta = 1/4, and the head keeps delta
    vocab = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0], [2.0, 1.0]]).T
    h = un._universality_head(vocab, 2, 4, 2)
    assert h.eps == 0.25, f"eps = {h.eps!r}: the head must keep eps = delta = 1/K when the tokens are wider apart"


def _small_head(d, L, K):
    N = K ** (d * L)
    n = L * N + L
    vocab = _grid_vocab(n, K, d)
    return n, un._universality_head(vocab, n, K, d)


def _ref_nodes(d, L, K, head, ctx, u, prompts, positional=True):
    """Nodes from the documented formulas: token = offset + cell/K (FF1 off its ramps), weights exp(xi p_q p_j)."""
    N = K ** (d * L)
    L_p = L * N
    n = L_p + L
    cells = list(itertools.product(range(K), repeat=d))
    w = [ctx.mpf(float(x)) for x in head.w]
    e = [ctx.mpf(float(x)) for x in head.e]
    xi = head._xi_mp(ctx)
    scale = ctx.mpf(head.eps) / 4 / ctx.mpf(head.r_max)
    z, v, tg = [], [], []
    for pc in prompts:
        for gc in itertools.product(range(len(cells)), repeat=L):
            seq = list(pc) + list(gc)
            toks = []
            for j in range(n):
                off = j + 1 if positional else 1
                toks.append([off + ctx.mpf(ci) / K for ci in cells[seq[j]]])
            p = [sum((a * b for a, b in zip(w, t, strict=True)), ctx.mpf(0)) for t in toks]
            idx = 0
            for m in range(L):
                for i in range(d):
                    idx = K * idx + cells[gc[m]][i]
            for k in range(L):
                q = p[L_p + k]
                wts = [ctx.exp(xi * q * p[j]) for j in range(n)]
                s = sum((wts[j] * p[j] for j in range(n)), ctx.mpf(0)) / sum(wts, ctx.mpf(0))
                y = [toks[L_p + k][i] + scale * e[i] * s for i in range(d)]
                t = [(ci + ctx.mpf(1) / 2) / K for ci in cells[pc[idx * L + k]]]
                z.append(sum((ctx.mpf(float(a)) * b for a, b in zip(u, y, strict=True)), ctx.mpf(0)))
                v.append([t[i] - y[i] for i in range(d)])
                tg.append(t)
    return z, v, tg


def _assert_nodes_equal(got, want, ctx, tol_digits):
    tol = ctx.mpf(10) ** -tol_digits
    for a, b in zip(got, want, strict=True):
        a = a if isinstance(a, list) else [a]
        b = b if isinstance(b, list) else [b]
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert abs(x - y) <= tol * (1 + abs(y)), (x, y)


@pytest.mark.parametrize(
    "d, L, K, prompts",
    [
        (1, 1, 2, None),
        (1, 1, 3, [(0, 1, 2), (2, 2, 0), (1, 0, 1)]),
        (1, 2, 2, [(0, 1, 1, 0, 1, 0, 0, 1), (1, 1, 0, 0, 1, 0, 1, 0)]),
        (2, 1, 2, [(0, 1, 2, 3), (3, 1, 0, 2)]),
        (1, 2, 3, [(0, 1, 2, 2, 1, 0, 1, 1, 2, 0, 0, 2, 1, 2, 0, 1, 0, 2)]),
    ],
)
def test_enumerate_nodes_matches_the_formulas(d, L, K, prompts):
    n, head = _small_head(d, L, K)
    R = float(head.R) if d == 1 and n < 12 else 0.0
    ctx = cm.mp_context(cm.dps_for(R) + 20 if R else 60, max_dps=10**9)
    ff1 = qz.FF1Quantizer(d, K, n, 1e-3, positional=True)
    u = np.array([0.6, 0.8])[:d] if d > 1 else head.w
    z, v, t = un._enumerate_nodes(d, L, K, ff1, head, ctx, u, restrict_prompts=prompts)
    z2, v2, t2 = un._enumerate_nodes(d, L, K, ff1, head, ctx, u, True, prompts)
    assert z == z2 and v == v2 and t == t2
    N = K ** (d * L)
    allp = list(itertools.product(range(K**d), repeat=L * N)) if prompts is None else prompts
    zr, vr, tr = _ref_nodes(d, L, K, head, ctx, u, allp)
    assert len(z) == len(zr) == len(allp) * K ** (d * L) * L
    digits = ctx.dps - 15 if R else 20
    _assert_nodes_equal(z, zr, ctx, digits)
    _assert_nodes_equal(v, vr, ctx, digits)
    _assert_nodes_equal(t, tr, ctx, ctx.dps - 5)
    # positional=False: every token is offset by 1 (a different, also documented, node set)
    ff1u = qz.FF1Quantizer(d, K, n, 1e-3, positional=True)
    zf, vf, _ = un._enumerate_nodes(d, L, K, ff1u, head, ctx, u, positional=False, restrict_prompts=allp[:1])
    zfr, vfr, _ = _ref_nodes(d, L, K, head, ctx, u, allp[:1], positional=False)
    _assert_nodes_equal(zf, zfr, ctx, digits)
    _assert_nodes_equal(vf, vfr, ctx, digits)
    assert any(abs(a - b) > 1e-3 for a, b in zip(zf, z, strict=False))


@pytest.mark.parametrize("variant", un.VARIANTS)
def test_build_ff2_is_the_documented_value_map(variant):
    n, head = _small_head(1, 1, 2)
    ctx = cm.mp_context(cm.dps_for(float(head.R)) + 20, max_dps=10**9)
    ff1 = qz.FF1Quantizer(1, 2, n, 1e-3)
    z, v, t = un._enumerate_nodes(1, 1, 2, ff1, head, ctx, head.w)
    ff2 = un.build_ff2(z, v, t, head.w, ctx, variant)
    if variant == "two_ffn":
        ref = InterpolationFFN.from_nodes(z, v, head.w, ctx, extend="flat")
        assert isinstance(ff2, InterpolationFFN) and ff2.extend == "flat"
        dflt = un.build_ff2(z, v, t, head.w, ctx)
        assert isinstance(dflt, InterpolationFFN) and list(dflt.nodes) == list(ff2.nodes)
        assert ff2.hidden_width == len(z)
    else:
        tz = [ctx.mpf(float(head.w[0])) * tt[0] for tt in t]
        ref = BumpStack.from_nodes(z, v, [1.0], target_ids=tz, ctx=ctx)
        assert isinstance(ff2, BumpStack) and list(ff2.target_ids) == list(ref.target_ids) == tz
        assert ff2.depth == len(z) and list(ff2.u) == [1.0]
    assert list(ff2.nodes) == list(ref.nodes)
    if variant == "two_ffn":
        assert [list(a) for a in ff2.values] == [list(b) for b in ref.values]
    else:
        assert [list(a) for a in ff2.shifts] == [list(b) for b in ref.shifts]
    for zq in (z[0], z[3], z[-1], z[0] - 5, z[-1] + 5, (z[1] + z[2]) / 2):
        a, b = ff2.apply_column([zq], ctx), ref.apply_column([zq], ctx)
        assert all(x == y for x, y in zip(a, b, strict=True))


def test_build_ff2_multi_guard_uses_u_dot_t_d2():
    n, head = _small_head(2, 1, 2)
    ctx = cm.mp_context(60, max_dps=10**9)
    ff1 = qz.FF1Quantizer(2, 2, n, 1e-3)
    u = np.array([0.6, 0.8])
    z, v, t = un._enumerate_nodes(2, 1, 2, ff1, head, ctx, u, restrict_prompts=[(0, 1, 2, 3)])
    two = un.build_ff2(z, v, t, u, ctx, "two_ffn")
    assert list(two.u) == [0.6, 0.8] and two.hidden_width == len(z) == 4
    ff2 = un.build_ff2(z, v, t, u, ctx, "multi_ffn")
    want = [ctx.mpf(0.6) * a + ctx.mpf(0.8) * b for a, b in t]
    assert all(abs(x - y) <= ctx.mpf(10) ** -55 for x, y in zip(ff2.target_ids, want, strict=True))
    assert list(ff2.u) == [0.6, 0.8]


# --------------------------------------------------------------------------------------------
# the built transformer
# --------------------------------------------------------------------------------------------


def _tau(*args, **kw):
    return un.build_prompt_tuned_transformer(*args, **kw)


@pytest.mark.parametrize(
    "args, kw",
    [
        ((1, 1, 0.0, 2.0, 0.75), dict(K=2)),
        ((1, 1, 1.0, 1.0, 1.5), dict(K=3)),
        ((1, 1, 1.0, 1.0, 1.5), dict(variant="multi_ffn", K=3)),
        ((1, 2, 1.0, 1.0, 4.5), dict(K=2)),
    ],
)
def test_built_tau_parts_and_resources(args, kw):
    tau = _tau(*args, **kw)
    d, L, C, alpha, eps = args
    variant = kw.get("variant", "two_ffn")
    K = kw["K"]
    counts = un.resource_counts(d, L, C, alpha, eps, variant, K=K)
    N = K ** (d * L)
    n = L * N + L
    assert (tau.d, tau.L, tau.K, tau.variant, tau.L_p, tau.n, tau.delta) == (d, L, K, variant, L * N, n, 1.0 / K)
    assert tau.eta == ref_eta(d, L, K, alpha, eps)[0] == counts["eta"]
    assert tau.ctx.dps == counts["dps"]
    assert (tau.ff1.d, tau.ff1.K, tau.ff1.n_positions, tau.ff1.eta, tau.ff1.positional) == (d, K, n, tau.eta, True)
    h = tau.head
    assert (h.n, h.eps, h.r_min, h.r_max, h.c, h.n_vocab) == (n, 1.0 / K, 1.0, n + 1 - 1.0 / K, 1.0, n * K**d)
    M = counts["nodes_M"]
    res = dict(counts)
    if variant == "two_ffn":
        assert isinstance(tau.ff2, InterpolationFFN) and tau.ff2.hidden_width == M
        res["ffn_widths"] = (d * (2 * (n * K - 1) + 1), M)
    else:
        assert isinstance(tau.ff2, BumpStack) and tau.ff2.depth == M
        res["ffn_layers"] = 1 + M
        res["ffn_widths"] = (d * (2 * (n * K - 1) + 1), 4)
    assert tau.resources == res
    zs = sorted(tau.ctx.mpf(x) for x in tau.ff2.nodes)
    gap = min(b - a for a, b in zip(zs, zs[1:], strict=False))
    assert tau.node_min_gap_log10 == pytest.approx(float(mpmath.log10(gap)), rel=1e-12, abs=0.0)
    assert tau.floor == un._rounding_floor(tau.ff2, tau.ctx, counts, tau.eta)
    assert tau.build_seconds >= 0


def test_build_K_from_choose_K_and_delta():
    a = _tau(1, 1, 0.0, 2.0, 0.75)  # choose_K = ceil(3 * 0.5 / 0.75) = 2
    assert a is _tau(1, 1, 0.0, 2.0, 0.75, K=2) is _tau(1, 1, 0.0, 2.0, 0.75, delta=0.5)
    assert a is _tau(1, 1, 0.0, 2.0, 0.75, "two_ffn", None, None, un.DEFAULT_MAX_NODES, un.DEFAULT_MAX_DPS)
    b = _tau(1, 1, 0.0, 2.0, 0.75, delta=1 / 3)
    assert b.K == 3 and b.L_p == 3 and b is _tau(1, 1, 0.0, 2.0, 0.75, K=3)
    assert b.eta == un.resource_counts(1, 1, 0.0, 2.0, 0.75, K=3)["eta"]
    assert a.variant == "two_ffn" and b.resources["nodes_M"] == 81


def test_build_budgets_are_inclusive():
    r = un.resource_counts(1, 1, 1.0, 1.0, 1.5, K=3)
    tau = _tau(1, 1, 1.0, 1.0, 1.5, K=3, max_nodes=r["nodes_M"], max_dps=r["dps"])
    assert tau is _tau(1, 1, 1.0, 1.0, 1.5, K=3)
    with pytest.raises(ValueError, match="node count M = 81 exceeds the node budget 80"):
        _tau(1, 1, 1.0, 1.0, 1.5, K=3, max_nodes=80)
    with pytest.raises(ValueError, match="exceed the digits budget"):
        _tau(1, 1, 1.0, 1.0, 1.5, K=3, max_dps=r["dps"] - 1)
    with pytest.raises(ValueError, match="variant"):
        _tau(1, 1, 1.0, 1.0, 1.5, "TWO_FFN", K=3)
    with pytest.raises(ValueError, match="alpha"):
        _tau(1, 1, 1.0, 0.5, 1.5, K=3)


@pytest.mark.parametrize(
    "args, kw",
    [
        ((1, 1, 1.0, 1.0, 1.5), dict(K=3)),
        ((1, 1, 1.0, 1.0, 1.5), dict(variant="multi_ffn", K=3)),
        ((1, 2, 1.0, 1.0, 4.5), dict(K=2)),
    ],
)
def test_tau_equals_the_table_on_every_cell(args, kw):
    tau = _tau(*args, **kw)
    d, L, K = tau.d, tau.L, tau.K
    f = lp.random_lipschitz(3, d, L, 1.0, 1.0, "bump_sum")
    T = qz.lookup_table(f, d, L, K)
    P = tau.prompt_for(f)
    assert np.array_equal(P, tau.prompt_for(T)) and P.dtype == np.float64 and P.shape == (d, tau.L_p)
    # column idx(G) L + k holds T[idx][:, k]
    for idx in range(K ** (d * L)):
        for k in range(L):
            assert np.array_equal(P[:, idx * L + k], T[idx][:, k])
    G = qz.all_grid_points(d, L, K)
    for off in (0.1 / K, 0.5 / K, 0.9 / K):
        Xs = G + off
        out = tau.predict(P, Xs)
        assert out.shape == (len(G), d, L) and out.dtype == np.float64
        for i, X in enumerate(Xs):
            assert np.abs(out[i] - T[i]).max() <= 1e-12
            assert not tau.in_ramp_set(X)
        single = tau(np.concatenate([P, Xs[1]], axis=1))
        assert np.array_equal(single, out[1]) and np.array_equal(single, tau(np.concatenate([P, Xs[1]], axis=1), False))
        ex = tau(np.concatenate([P, Xs[1]], axis=1), exact=True)
        assert isinstance(ex, list) and len(ex) == L and all(len(c) == d for c in ex)
        assert np.array_equal(np.array([[float(x) for x in c] for c in ex]).T, single)
        fe = tau.forward_exact(P, Xs[1])
        assert all(a == b for ca, cb in zip(fe, ex, strict=True) for a, b in zip(ca, cb, strict=True))


def test_tau_accepts_int_and_list_inputs():
    tau = _tau(1, 1, 1.0, 1.0, 1.5, K=3)
    T = np.array([[[0]], [[1]], [[0]]])  # an integer table: converted to float64
    P = tau.prompt_for(T)
    assert P.dtype == np.float64 and np.array_equal(P, [[0.0, 1.0, 0.0]])
    out_list = tau(np.array([[0.0, 1.0, 0.0, 0.5]]).tolist())
    out_arr = tau(np.array([[0.0, 1.0, 0.0, 0.5]]))
    assert np.array_equal(out_list, out_arr) and out_arr.shape == (1, 1)
    assert tau.predict(P.tolist(), [[[0.5]], [[0.2]]]).shape == (2, 1, 1)
    assert tau.forward_exact(P.tolist(), [[0.5]])[0][0] == tau.forward_exact(P, np.array([[0.5]]))[0][0]
    with pytest.raises(ValueError, match="table must have shape"):
        tau.prompt_for(np.zeros((3, 1, 2)))
    with pytest.raises(ValueError, match="expected P"):
        tau.forward_exact(np.zeros((1, 2)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="expected P"):
        tau.forward_exact(np.zeros((1, 3)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="expected P"):
        tau.forward_exact(np.zeros((2, 3)), np.zeros((2, 1)))


def test_ff1_columns_are_the_staircase():
    tau = _tau(1, 2, 1.0, 1.0, 4.5, K=2)
    cols = [np.array([0.3]), np.array([0.7]), np.array([0.05]), np.array([0.95])]
    for offset in (0, 3, 6):
        got = tau._ff1_columns(cols, offset)
        assert len(got) == 4 and all(len(c) == 1 for c in got)
        for j, c in enumerate(cols):
            t = Fraction(float(c[0])) + offset + j + 1
            want = Fraction(math.floor(t * 2), 2)
            assert abs(got[j][0] - tau.ctx.mpf(want.numerator) / want.denominator) <= tau.ctx.mpf(10) ** -(
                tau.ctx.dps - 10
            )


def test_prompt_tokens_are_ff1_at_positions_from_one_and_cached():
    tau = _tau(1, 1, 0.0, 2.0, 0.75, K=2)
    tau._prompt_cache.clear()
    P = np.array([[0.25, 0.75]])
    toks = tau._prompt_tokens(P)
    assert len(toks) == 2
    assert abs(toks[0][0] - 1.0) < 1e-20 and abs(toks[1][0] - 2.5) < 1e-20
    assert tau._prompt_tokens(P) is toks and tau._prompt_cache[P.tobytes()] is toks
    tau._prompt_cache.clear()
    for i in range(65):
        tau._prompt_tokens(np.array([[0.25, i / 100.0]]))
    assert len(tau._prompt_cache) == 65
    tau._prompt_tokens(np.array([[0.25, 0.99]]))
    assert len(tau._prompt_cache) == 1
    tau._prompt_cache.clear()


def test_in_ramp_set_and_ramp_term():
    tau = _tau(1, 2, 1.0, 1.0, 4.5, K=2)  # L_p = 8, n = 10: input columns at offsets 9, 10
    eta = tau.eta
    E = np.array([[9.0, 10.0]])
    for X in (np.array([[0.5 - eta / 2, 0.25]]), np.array([[0.25, 0.5 - eta / 2]]), np.array([[1 - eta / 2, 0.25]])):
        assert tau.in_ramp_set(X) and tau.in_ramp_set(X.tolist())
        assert bool(np.any(tau.ff1.in_ramp_set(X + E)))
    for X in (np.array([[0.25, 0.75]]), np.array([[0.5 + eta / 2, 0.5 - 2 * eta]]), np.array([[0.25, 1 - eta / 2]])):
        assert not tau.in_ramp_set(X)
    # the last column's right edge 11 = n + 1 is no breakpoint
    assert not tau.in_ramp_set(np.array([[0.25, 1 - eta / 2]]))
    for alpha in (1.0, 2.0, 3.5):
        mu = 1 * 2 * 2 * eta
        want = (2 * 10 + 5) * 2 ** (1 / alpha) * mu ** (1 / alpha)
        assert tau.ramp_term(alpha) == pytest.approx(want, rel=1e-14, abs=0.0)
    tau3 = _tau(1, 1, 1.0, 1.0, 1.5, K=3)
    assert tau3.ramp_term(2.0) == pytest.approx(13 * (3 * tau3.eta) ** 0.5, rel=1e-14, abs=0.0)
    # eps_guaranteed is the surrogate bound plus exactly this ramp term
    r = tau.resources
    assert r["eps_guaranteed"] == pytest.approx(
        qz.surrogate_sup_bound(1.0, 1, 2, 1.0, 2) + tau.ramp_term(1.0), rel=1e-14, abs=0.0
    )


@pytest.mark.parametrize("d, L, K", [(1, 2, 3), (2, 1, 2), (2, 2, 2), (1, 1, 4)])
def test_prompt_for_layout_by_explicit_loop(d, L, K):
    """P_f column idx(G) L + k holds fbar(G)[:, k], for sizes too large to build (the method reads only d, L, K)."""
    self = SimpleNamespace(d=d, L=L, K=K)
    N = K ** (d * L)
    rng = np.random.default_rng(7)
    T = rng.integers(0, 9, size=(N, d, L))
    P = un.PromptTunedTransformer.prompt_for(self, T)
    assert P.dtype == np.float64 and P.shape == (d, N * L)
    for idx in range(N):
        for k in range(L):
            for i in range(d):
                assert P[i, idx * L + k] == float(T[idx, i, k])
    f = lp.random_lipschitz(5, d, L, 1.0, 1.0, "bump_sum")
    Pf = un.PromptTunedTransformer.prompt_for(self, f)
    Tf = qz.lookup_table(f, d, L, K)
    assert np.array_equal(Pf, un.PromptTunedTransformer.prompt_for(self, Tf))
    with pytest.raises(ValueError, match="table must have shape"):
        un.PromptTunedTransformer.prompt_for(self, T[:-1])


def test_forward_exact_keys_the_prompt_cache_by_float64_bytes():
    """An integer prompt is the float64 prompt with the same values, even after caching a prompt whose float64
    bytes equal the integer prompt's int64 bytes (0, 1, 0 as int64 bits = 0, 5e-324, 0 as float64)."""
    tau = _tau(1, 1, 1.0, 1.0, 1.5, K=3)
    tau._prompt_cache.clear()
    X = np.array([[0.5]])
    look_alike = np.array([[0, 1, 0]], dtype=np.int64).view(np.float64)
    assert look_alike[0, 1] == 5e-324
    a = tau.forward_exact(look_alike, X)
    b = tau.forward_exact(np.array([[0, 1, 0]], dtype=np.int64), X)
    c = tau.forward_exact(np.array([[0.0, 1.0, 0.0]]), X)
    assert b[0][0] == c[0][0] and abs(a[0][0] - b[0][0]) > 0.5
    tau._prompt_cache.clear()
    tau.forward_exact(look_alike, X)
    z = tau(np.array([[0, 1, 0, 0]], dtype=np.int64))  # the whole input as int64 (X = 0)
    assert float(z[0, 0]) == float(tau.forward_exact(np.array([[0.0, 1.0, 0.0]]), np.array([[0.0]]))[0][0])
    tau._prompt_cache.clear()


def test_resource_counts_of_huge_constructions_are_strings_not_crashes():
    # c_theory ~ 6e-164 at this vocabulary: c^2 underflows in xi_for (was ZeroDivisionError); R and dps are unbounded
    r = un.resource_counts(2, 40, 1.0, 1.0, 1.0, K=10)
    assert r["R"] == math.inf and r["dps"] == "~inf" and isinstance(r["nodes_M"], str)
    # n = L (N + 1) ~ 4e402 exceeds a float (log10 M = d n log10 K was an OverflowError): exact L_p and n, symbolic rest
    r = un.resource_counts(1, 400, 1.0, 1.0, 1.0, K=10)
    assert r["L_p"] == 400 * 10**400 and r["n"] == 400 * 10**400 + 400
    assert r["nodes_M"] == "~10^(10^402.6)" and r["log10_nodes_M"] == math.inf and r["dps"] == "~inf"
    past = un.resource_counts(1, 299, 1.0, 1.0, 1.0, K=10)  # n ~ 3e301 > 1e300: the same symbolic branch
    assert past["log10_nodes_M"] == math.inf
    # n == 1e300 exactly (d = L = 1, K = 10^300 - 1 as the float 1e300's integer minus 1): already symbolic
    X = int(1e300)
    at = un.resource_counts(1, 1, 1.0, 1.0, 1.0, K=X - 1)
    assert at["n"] == X and at["log10_nodes_M"] == math.inf and at["R"] == math.inf
    below = un.resource_counts(1, 1, 1.0, 1.0, 1.0, K=X - 2)
    assert below["n"] == X - 1 and math.isfinite(below["log10_nodes_M"]), "n < 1e300 keeps the float counts"
    # the huge-n branch hands variant and log10 N = dL log10 K (here 400 with K = 100, not 10) on
    big = un.resource_counts(1, 200, 1.0, 1.0, 1.0, "multi_ffn", K=100)
    want = un._symbolic_counts(1, 200, 100, "multi_ffn", 400.0)
    want.update(L_p=200 * 100**200, n=200 * 100**200 + 200)
    assert big == want and big["variant"] == "multi_ffn" and big["ffn_widths"] == ("huge", 4)
    assert big["nodes_M"] == "~10^(10^402.6)" and big["ffn_layers"] == "1 + ~10^(10^402.6)"
    for args in ((2, 40, 1.0, 1.0, 1.0), (1, 400, 1.0, 1.0, 1.0)):
        with pytest.raises(ValueError, match="exceeds the node budget"):
            un.build_prompt_tuned_transformer(*args, K=10)
