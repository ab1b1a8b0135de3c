"""constructions.boltzmann: the operator in float64 and mpmath, Lemma C's threshold and floor, the digits rule."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from constructions import boltzmann as bz


def _reference(a, dps=60):
    ctx = mpmath.MPContext()
    ctx.dps = dps
    xs = [ctx.mpf(v) for v in a]
    return ctx.fsum(v * ctx.exp(v) for v in xs) / ctx.fsum(ctx.exp(v) for v in xs)


@pytest.mark.parametrize("a", [[0.0], [2.5], [1.0, 0.0], [0.0, 1.0], [-3.0, 0.5, 2.0], [3.0, -1.0, 0.25, 7.5]])
def test_boltzmann_float64_and_mp_match_the_definition(a):
    ref = _reference(a)
    assert bz.boltzmann(a) == pytest.approx(float(ref), rel=1e-14, abs=1e-15)
    ctx = bz.mp_context(40)
    got = bz.boltzmann(a, ctx)
    assert isinstance(got, ctx.mpf) and abs(got - ref) <= mpmath.mpf(10) ** -35 * (1 + abs(ref))
    assert bz.boltzmann(np.asarray(a)) == bz.boltzmann(a) and isinstance(bz.boltzmann(a), float)


def test_boltzmann_is_max_shifted():
    """Without the shift e^{1000} overflows (float64) and the result is nan; shifted it is ~1000."""
    a = [1000.0, 0.0, -5.0]
    assert bz.boltzmann(a) == pytest.approx(1000.0, rel=1e-15)
    assert bz.boltzmann([-1000.0, -1001.0]) == pytest.approx(float(_reference([-1000.0, -1001.0])), rel=1e-14)


def test_lemma_c_threshold_floor_and_digits():
    assert bz.boltzmann_separation_threshold(5) == 2.0 * math.log(5) + 3.0
    assert bz.boltzmann_separation_threshold(1) == 3.0
    ctx = bz.mp_context(50)
    for n, r in ((2, 0.0), (5, 3.0), (17, 0.5)):
        got = bz.boltzmann_log_gap_bound(n, r, ctx)
        assert abs(got - (2 * ctx.log(ctx.log(n)) - 2 * ctx.mpf(r))) < ctx.mpf(10) ** -45
    with pytest.raises(ValueError, match="n >= 2"):
        bz.boltzmann_log_gap_bound(1, 1.0, ctx)
    assert bz.dps_for(0.0) == 60 and bz.dps_for(10.0) == math.ceil(20 / math.log(10)) + 60
    assert bz.dps_for(math.log(10) / 2) == 61  # 2R / ln 10 = 1 exactly: no extra digit
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="finite and >= 0"):
            bz.dps_for(bad)


def test_mp_context_is_private_and_budgeted():
    before = mpmath.mp.dps
    ctx = bz.mp_context(bz.MAX_DPS)
    assert ctx.dps == bz.MAX_DPS and ctx is not mpmath.mp and mpmath.mp.dps == before
    assert bz.mp_context(30.0).dps == 30 and bz.mp_context(7, max_dps=7).dps == 7
    with pytest.raises(ValueError, match="digits budget"):
        bz.mp_context(bz.MAX_DPS + 1)
    with pytest.raises(ValueError, match="digits budget 5"):
        bz.mp_context(6, max_dps=5)


def test_entrywise_separation_returns_range_and_gap():
    assert bz.check_entrywise_separated([[-20.0, 1.0], [3.0, 10.0]], 2.0) == (20.0, 2.0)
    assert bz.check_entrywise_separated([[1.0, 5.0], [5.0, 9.0]], 4.0) == (9.0, 4.0)  # shared across vectors is fine
    assert bz.check_entrywise_separated([[4.0]], 100.0) == (4.0, math.inf)
    assert bz.check_entrywise_separated([np.array([0.5, -7.0])], 7.5) == (7.0, 7.5)  # gap == delta passes
    with pytest.raises(ValueError, match="duplicate"):
        bz.check_entrywise_separated([[1.0, 4.0], [2.0, 2.0]], 0.5)
    with pytest.raises(ValueError, match="separated"):
        bz.check_entrywise_separated([[0.0, 1.0], [1.5, 9.0]], 0.75)


def test_float32_logits_are_evaluated_in_float64():
    a = np.array([3.1, -2.7, 0.4, 9.9], dtype=np.float32)
    assert bz.boltzmann(a) == bz.boltzmann(a.astype(np.float64))
