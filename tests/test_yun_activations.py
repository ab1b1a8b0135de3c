"""constructions.yun_activations: the zetas at their breakpoints, soft parameters, the ReLU forms and the FF layer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from constructions import yun_activations as ya
from constructions.residual_mlp import mlp_apply


def test_soft_params_validation_and_fields():
    assert ya.soft_params(None).hard and ya.soft_params(None).eta_q == 0.0
    p = ya.soft_params(0.5, 2)
    assert (p.lam, p.eta_q, p.hard) == (0.5, 2.0, False) and isinstance(p.eta_q, float)
    assert ya.soft_params(1e-300, 0.25).eta_q == 0.25
    for lam in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="inverse temperature"):
            ya.soft_params(lam)
    with pytest.raises(ValueError, match="ramp width"):
        ya.soft_params(1.0, -1e-9)
    assert ya.SoftParams() == ya.SoftParams(None, 0.0)


def test_hard_zetas_at_their_breakpoints():
    n, J, dl = 3, 50.0, 0.25
    t = np.array([-1e-12, 0.0, 1.0, n - 1e-12, float(n), n + 1.0])
    np.testing.assert_array_equal(ya.zeta1(t, n, J), [1e-12 - J, 0.0, 0.0, 0.0, -n - J, -n - 1.0 - J])
    t2 = np.array([-1e-12, 0.0, 0.1, dl - 1e-12, dl])
    np.testing.assert_array_equal(ya.zeta2(t2, dl), [0.0, 0.0, -0.1, -(dl - 1e-12), 0.0])
    t3 = np.array([0.99, 1.0, 1.5, 2.0, 2.01])
    np.testing.assert_array_equal(ya.zeta3(t3, 1.0, 2.0, dl), [1.0, 0.0, 0.0, 0.0, 1.0])  # default: hard
    t5 = np.array([-dl / 2 - 1e-12, -dl / 2, 0.0, dl / 2 - 1e-12, dl / 2])
    np.testing.assert_array_equal(ya.zeta5(t5, dl), [0.0, 1.0, 1.0, 1.0, 0.0])  # default: hard, [-d/2, d/2)
    np.testing.assert_array_equal(ya.zeta4(np.array([-2.0, 0.0, 3.0])), [2.0, 0.0, 0.0])


def test_soft_zetas_ramp_where_documented():
    n, J, e, dl = 3, 50.0, 0.1, 0.25
    t = np.array([-e / 2, n - e / 2])
    np.testing.assert_allclose(ya.zeta1(t, n, J, e), [-(e / 2) * (J - e) / e, -(e / 2) * (n + J) / e], rtol=1e-13)
    np.testing.assert_allclose(ya.zeta2(np.array([dl - e / 2]), dl, e), [-(dl - e) / 2], rtol=1e-15)
    np.testing.assert_allclose(ya.zeta3(np.array([1.0 - dl / 2 - dl / 4, 2.0 + dl]), 1.0, 2.0, dl, soft=True),
                               [0.5, 1.0], rtol=1e-15)
    np.testing.assert_allclose(ya.zeta5(np.array([0.0, 3 * dl / 8, dl / 2]), dl, soft=True), [1.0, 0.5, 0.0],
                               rtol=1e-15)


def test_relu_eval_adds_the_bias_and_needs_matching_lengths():
    assert ya.relu_eval(([1.0, -2.0], [0.0, 1.0], [1.0, 0.5], 2.0), 1.0) == 3.0
    assert ya.relu_eval(([1.0], [0.0], [1.0], -2.0), np.array([3.0]))[0] == 1.0
    with pytest.raises(ValueError):
        ya.relu_eval(([1.0, 1.0], [0.0], [1.0], 0.0), 1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        ya.relu_form("zeta6")


def test_ff_layer_mlp_is_x_plus_v_zeta_of_a_x_minus_shift():
    rng = np.random.default_rng(0)
    form = ya.relu_form("zeta1", n=3, J=5.0, eta=0.25)
    form = (*form[:3], 0.75)  # a nonzero bias reaches b2 = v c
    a, v, shift = np.array([0.5, -1.5, 2.0]), np.array([0.3, -2.0, 1.25]), 0.7
    mlp = ya.ff_layer_mlp(a, shift, v, form)
    for _ in range(20):
        x = rng.uniform(-3, 3, 3)
        want = x + v * ya.relu_eval(form, float(a @ x) - shift)
        np.testing.assert_allclose(mlp_apply(mlp, x), want, rtol=1e-12, atol=1e-12)


def test_soft_ramps_are_open_at_their_outer_ends():
    """At t = -eta (zeta1) and t = delta - eta (zeta2) the value is the hard one, bit for bit (open ramp intervals;
    the ramp formula there differs by rounding for these parameters)."""
    J, e = 61.05694180095081, 0.3650187839310152
    assert ya.zeta1(np.array([-e]), 3, J, e)[0] == e - J
    dl, e2 = 0.9651022309110887, 0.40682184936093596
    t = dl - e2
    assert ya.zeta2(np.array([t]), dl, e2)[0] == -t


def test_ff_layer_mlp_reads_float32_parts_in_float64():
    form = ya.relu_form("zeta1", n=3, J=5.0, eta=0.25)
    f32 = tuple(np.asarray(x, dtype=np.float32) for x in form[:3]) + (0.3,)
    f64 = tuple(np.asarray(x, dtype=np.float64) for x in f32[:3]) + (0.3,)
    v = np.array([0.3, -2.0, 1.1], dtype=np.float32)
    a = np.array([0.5, -1.5, 2.0])
    m32, m64 = ya.ff_layer_mlp(a, 0.7, v, f32), ya.ff_layer_mlp(a, 0.7, v.astype(np.float64), f64)
    for p32, p64 in ((m32.W1, m64.W1), (m32.b1, m64.b1), (m32.W2, m64.W2), (m32.b2, m64.b2)):
        assert p32.dtype == np.float64 and np.array_equal(p32, p64)
