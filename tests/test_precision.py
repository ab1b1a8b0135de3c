"""constructions.precision: unit roundoffs by dtype name or object, and the softmax floor (formula and soundness)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from constructions import precision as pr


@pytest.mark.parametrize("dtype, u", [("float64", 2.0**-53), ("float32", 2.0**-24), ("float16", 2.0**-11),
                                      ("bfloat16", 2.0**-8), ("torch.float32", 2.0**-24), ("torch.bfloat16", 2.0**-8),
                                      (np.float32, 2.0**-24), (np.dtype("float64"), 2.0**-53), ("f4", 2.0**-24),
                                      (np.float16, 2.0**-11)])
def test_unit_roundoff_by_name_or_dtype(dtype, u):
    assert pr.unit_roundoff(dtype) == u


@pytest.mark.parametrize("bad", ["int8", "float128x", object(), "complex64"])
def test_unit_roundoff_refuses_unknown_dtypes(bad):
    with pytest.raises(ValueError, match="no unit roundoff known"):
        pr.unit_roundoff(bad)


def test_unit_roundoff_of_torch_dtypes():
    torch = pytest.importorskip("torch")
    assert pr.unit_roundoff(torch.float64) == 2.0**-53 and pr.unit_roundoff(torch.bfloat16) == 2.0**-8


def _floor_loop(L, u, axis):
    """softmax_relative_floor's documented formula, one column at a time in plain floats."""
    L = np.moveaxis(np.asarray(L, dtype=np.float64), axis, 0)
    out = np.empty_like(L)
    n = L.shape[0]
    g = (max(n - 1, 1) * u) / (1 - max(n - 1, 1) * u)
    for idx in np.ndindex(L.shape[1:]):
        col = [float(L[(k, *idx)]) for k in range(n)]
        top = max(col)
        spreads = [abs(v - top) for v in col]
        for k in range(n):
            first = u * (spreads[k] + max(spreads) + 2.0) + g
            out[(k, *idx)] = first * (1.0 + 2.0 * first) + 2.0 * u * u
    return np.moveaxis(out, 0, axis)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_floor_is_its_documented_formula(axis):
    rng = np.random.default_rng(3)
    L = rng.uniform(-40, 40, (5, 3))
    got = pr.softmax_relative_floor(L, 2.0**-53, axis=axis)
    assert got.shape == L.shape
    np.testing.assert_allclose(got, _floor_loop(L, 2.0**-53, axis), rtol=1e-15, atol=0)
    # float32 logits are floored as the float64 values they hold, not in float32 arithmetic
    L32 = L.astype(np.float32)
    assert np.array_equal(pr.softmax_relative_floor(L32, 2.0**-24, axis=axis),
                          pr.softmax_relative_floor(L32.astype(np.float64), 2.0**-24, axis=axis))
    assert np.array_equal(pr.softmax_relative_floor(L, 2.0**-53), _floor_loop(L, 2.0**-53, 0))  # default axis 0
    for u in (2.0**-11, 2.0**-24):  # at a large u the second-order terms (2 first^2, 2 u^2) are above rounding
        assert np.array_equal(pr.softmax_relative_floor(L, u, axis=axis), _floor_loop(L, u, axis))
    one = pr.softmax_relative_floor(np.zeros((1, 1)), 2.0**-53)
    assert one[0, 0] == _floor_loop(np.zeros((1, 1)), 2.0**-53, 0)[0, 0]  # n = 1 still pays gamma_1


def test_softmax_floor_is_sound_against_mpmath():
    rng = np.random.default_rng(0)
    ctx = mpmath.MPContext()
    ctx.dps = 60
    worst = 0.0
    for _ in range(60):
        n = int(rng.integers(1, 40))
        L = rng.uniform(-1, 1, n) * 10 ** rng.uniform(-1, 3)
        for dtype, u in ((np.float64, 2.0**-53), (np.float32, 2.0**-24)):
            x = L.astype(dtype)
            e = np.exp(x - x.max())
            w = e / e.sum()
            xs = [ctx.mpf(float(v)) for v in x]
            m = max(xs)
            ex = [ctx.exp(v - m) for v in xs]
            tot = ctx.fsum(ex)
            for k in range(n):
                exact = ex[k] / tot
                if exact < ctx.mpf(float(np.finfo(dtype).tiny)):  # underflow: an absolute matter, not this floor's
                    continue
                rel = float(abs(ctx.mpf(float(w[k])) - exact) / exact)
                fl = float(pr.softmax_relative_floor(x, u)[k])
                worst = max(worst, rel / fl)
    assert worst <= 1.0, worst
    assert worst > 1e-3, f"the floor overestimates every weight's error by > 1000x ({worst})"


def test_gamma_and_backend_unit_roundoff():
    assert pr.gamma(0, 2.0**-53) == 0.0 and pr.gamma(3, 0.25) == 3.0 and pr.gamma(4, 0.25) == math.inf
    with pytest.raises(ValueError, match="n >= 0"):
        pr.gamma(-1, 1e-16)
    from verify.backends import Backend

    assert pr.backend_unit_roundoff(Backend("numpy", dtype="float32")) == 2.0**-24
    assert pr.backend_unit_roundoff(Backend("mpmath", dps=50)) == 2.0 ** -Backend("mpmath", dps=50).mp.prec


def test_backend_unit_roundoff_of_each_rung():
    from types import SimpleNamespace

    assert pr.backend_unit_roundoff(SimpleNamespace(name="arb", dps=30)) == 2.0 ** -math.ceil(30 * math.log2(10))
    assert pr.backend_unit_roundoff(SimpleNamespace(name="mpmath", mp=SimpleNamespace(prec=170))) == 2.0**-170
    assert pr.backend_unit_roundoff(SimpleNamespace(name="torch", dtype="float32")) == 2.0**-24
    assert pr.backend_unit_roundoff(SimpleNamespace(dtype="float16")) == 2.0**-11  # no name: by dtype
