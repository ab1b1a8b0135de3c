"""Table prompts, memorizing prompts and value-map FFNs: API, bad inputs, mpmath paths (hu2024.md §2.5, §3.5)."""

import math

import mpmath
import numpy as np
import pytest

from constructions import memorization as mem
from constructions import quantization as q
from constructions.lipschitz import random_lipschitz


def test_table_prompt_shape_and_lookup():
    d, L, K = 1, 2, 3
    f = random_lipschitz(2, d, L, 1.0, 1.0, "clipped_linear")
    P = mem.table_prompt(f, d, L, K)
    assert P.shape == (d, mem.prompt_length(d, L, K)) == (1, 18)
    T = q.lookup_table(f, d, L, K)
    assert np.array_equal(mem.table_prompt(T, d, L, K), P)
    G = q.all_grid_points(d, L, K)
    for i in range(G.shape[0]):
        assert np.array_equal(mem.lookup_from_prompt(P, G[i] + 0.2 / K, K, L), T[i])
    assert mem.counting_lower_bound(d, L, K) == mem.prompt_length(d, L, K)
    with pytest.raises(ValueError, match="shape"):
        mem.table_prompt(T[:-1], d, L, K)
    with pytest.raises(ValueError, match="budget"):
        mem.table_prompt(f, 3, 3, 20)
    with pytest.raises(ValueError, match="K_P"):
        mem.counting_lower_bound(1, 1, 2, K_P=1)


def test_memorizing_prompt():
    rng = np.random.default_rng(0)
    K, n = 8, 6
    Xs = (rng.choice(K**2, n, replace=False)[:, None, None] // np.array([[[K, 1]]]) % K + 0.5) / K
    Ys = rng.uniform(size=(n, 1, 2))
    for keys in (False, True):
        m = mem.memorizing_prompt((Xs, Ys), K, include_keys=keys)
        assert m.length == mem.memorizing_prompt_length(n, 2, keys)
        for i in range(n):
            assert np.array_equal(m.decode(Xs[i]), q.centred_quantize(Ys[i], K))
    assert mem.memorization_counting_bound(n, 1, 2, K) == pytest.approx(2 * n)
    pairs = [(Xs[0], Ys[0]), (Xs[0] + 0.01 / K, Ys[1])]
    with pytest.raises(ValueError, match="not distinct"):
        mem.memorizing_prompt(pairs, K)


def test_pt_memo_lower_bound_shape():
    C, d, L, alpha = 1.0, 1, 2, 2.0
    b = [mem.pt_memo_lower_bound(C, d, L, alpha, e) for e in (0.4, 0.2, 0.1)]
    assert b[0] < b[1] < b[2]
    K = q.choose_K(C, d, L, alpha, 0.1)
    assert b[2] == L * K ** (d * L)
    with pytest.raises(ValueError, match="eps"):
        mem.pt_memo_lower_bound(C, d, L, alpha, 0.0)
    assert mem.value_map_node_count(1, 1, 2) == 2 ** (1 * (2 + 1)) * 1


def test_interpolation_ffn_float_and_mp():
    rng = np.random.default_rng(3)
    M, d = 12, 2
    Y = rng.normal(size=(M, d))
    T = rng.uniform(size=(M, d))
    u = np.array([0.6, 0.8])
    F = mem.InterpolationFFN.from_targets(Y, T, u)
    assert F.hidden_width == M - 1
    W1, b1, W2, b2 = F.weights()
    assert W1.shape == (M - 1, d) and W2.shape == (d, M - 1)
    assert np.abs(F(Y.T) - T.T).max() < 1e-10
    ctx = mpmath.MPContext()
    ctx.dps = 60
    Fm = mem.InterpolationFFN.from_targets(Y, T, u, ctx=ctx)
    out = Fm(ctx.matrix(Y.T.tolist()), ctx)
    assert max(abs(out[i, j] - T[j, i]) for i in range(d) for j in range(M)) < ctx.mpf(10) ** -50
    with pytest.raises(ValueError, match="distinct"):
        mem.InterpolationFFN.from_nodes([0.0, 0.0], [[1.0], [2.0]])
    with pytest.raises(ValueError, match="projection"):
        mem.InterpolationFFN.from_targets(Y, T)


def test_interpolation_ffn_tiny_gaps_need_mp():
    ctx = mpmath.MPContext()
    ctx.dps = 400
    z = [ctx.mpf(1), 1 + ctx.mpf(10) ** -320, ctx.mpf(2)]
    F = mem.InterpolationFFN.from_nodes(z, [[0.25], [0.75], [0.5]], ctx=ctx)
    with pytest.raises(ValueError, match="overflow"):
        F.weights()
    out = F.apply_mp([z], ctx)
    assert abs(out[0, 1] - (z[1] + ctx.mpf(0.75))) < ctx.mpf(10) ** -60


def test_bump_stack_guard_and_width():
    rng = np.random.default_rng(1)
    M, d = 8, 2
    u = np.array([0.6, 0.8])
    Y = rng.normal(size=(M, d))
    T = rng.uniform(size=(M, d)) - 30 * u
    B = mem.BumpStack.from_targets(Y, T, u)
    assert B.depth == M and B.width == 4 and len(B.layers()) == M
    assert np.abs(B(Y.T) - T.T).max() < 1e-9
    with pytest.raises(ValueError, match="guard"):
        mem.BumpStack.from_targets(Y, rng.uniform(size=(M, d)) * 0 + Y[::-1], u)
    z = Y @ u
    gap = np.min(np.diff(np.sort(z)))
    with pytest.raises(ValueError, match="min node gap"):
        mem.BumpStack.from_targets(Y, T, u, h=gap / 3)
    ctx = mpmath.MPContext()
    ctx.dps = 30
    out = B.apply_mp(Y.T.tolist(), ctx)
    assert max(abs(out[i, j] - T[j, i]) for i in range(d) for j in range(M)) < 1e-9
    assert math.isclose(float(B.h), gap / 5)


def test_log_binomial_accurate_where_lgamma_cancels():
    N, k = 16**9, 48
    exact = mpmath.log(math.comb(N, k))
    got = mem.log_binomial(N, k)
    assert abs(got - exact) <= 4 * 2.0**-53 * abs(exact)
    lg = math.lgamma(N + 1) - math.lgamma(k + 1) - math.lgamma(N - k + 1)
    assert abs(lg - exact) > 1e4 * 2.0**-53 * abs(exact)  # the cancellation the exact form avoids
    assert mem.log_binomial(10, 0) == 0.0 and mem.log_binomial(10, 10) == 0.0
    assert mem.log_binomial(7, 3) == pytest.approx(math.log(35), rel=1e-15)
    # the term-by-term branch beyond the exact-integer budget
    big = mem.log_binomial(10**12, 5000)
    ref = mpmath.log(mpmath.binomial(10**12, 5000))
    assert abs(big - ref) <= 5001 * 2.0**-53 * 4 + 4 * 2.0**-53 * abs(ref)
    with pytest.raises(ValueError):
        mem.log_binomial(3, 4)


def test_memorization_counting_bound_with_keys_is_exact():
    n, d, L, K = 20, 3, 3, 16
    N = K ** (d * L)
    exact = (d * L * n * mpmath.log(K) + mpmath.log(math.comb(N, n))) / (d * mpmath.log(K))
    assert abs(mem.memorization_counting_bound(n, d, L, K, include_keys=True) - exact) <= 1e-13 * exact


def test_bump_stack_stores_the_guarded_target_ids():
    rng = np.random.default_rng(1)
    M, d = 6, 2
    u = np.array([0.6, 0.8])
    Y = rng.normal(size=(M, d))
    T = rng.uniform(size=(M, d)) - 30 * u
    B = mem.BumpStack.from_targets(Y, T, u)
    np.testing.assert_allclose(B.target_ids, T @ u, rtol=1e-14)
    lo, hi = B.guard_band()
    assert all(t < lo or t > hi for t in B.target_ids)


def test_ff1_table_reader_reads_the_table():
    d, L, K = 1, 2, 3
    f = random_lipschitz(4, d, L, 1.0, 1.0, "bump_sum")
    P = mem.table_prompt(f, d, L, K)
    F = q.FF1Quantizer(d, K, P.shape[1] + L, 0.2 / K, positional=True)
    reader = mem.FF1TableReader.build(F, P, L)
    assert reader.L_p == P.shape[1]
    T = q.lookup_table(f, d, L, K)
    for i, X in enumerate(q.all_grid_points(d, L, K) + 0.5 / K):
        np.testing.assert_allclose(reader(X), T[i], atol=1e-15)


def test_value_maps_importable_from_memorization():
    from constructions import value_maps

    assert mem.InterpolationFFN is value_maps.InterpolationFFN and mem.BumpStack is value_maps.BumpStack


# strategies reach the regimes where their claims are tight or their mutants visible


def _reaches(strategy, condition, n=400):
    from hypothesis import HealthCheck, find, settings

    return find(strategy, condition, settings=settings(max_examples=n, database=None,
                                                       suppress_health_check=list(HealthCheck)))


def test_counting_strategy_reaches_the_lgamma_cancellation():
    from properties.memorization import counting_instances

    _reaches(counting_instances(), lambda i: i["K"] ** (i["d"] * i["L"]) > 10**8 and i["n_samples"] >= 10
             and i["K_out"] != i["K_P"] and i["L"] >= 2)


def test_bump_strategy_reaches_unguarded_and_deep_stacks():
    from properties.value_maps import bump_instances

    _reaches(bump_instances(), lambda i: i["unguarded"] and i["M"] >= 10)
    _reaches(bump_instances(), lambda i: not i["unguarded"] and i["M"] >= 10 and i["d"] >= 2)


def test_memorization_strategies_reach_tight_ratios():
    import verify
    from properties.memorization import (
        check_dataset_memorization,
        check_pt_memo_growth,
        dataset_instances,
        memo_growth_instances,
    )

    b = verify.Backend()
    _reaches(memo_growth_instances, lambda i: check_pt_memo_growth(i, b).ratio > 0.99)
    _reaches(dataset_instances(), lambda i: check_dataset_memorization(i, b).ratio > 0.85, n=600)


def test_interpolation_strategy_reaches_tiny_gaps_and_both_ends():
    from properties.value_maps import interp_mp_instances

    _reaches(interp_mp_instances(), lambda i: i["log10_gap"] <= -250 and i["extend"] == "flat" and i["M"] >= 5)


def test_counting_functions_exact_values_and_levels():
    """Direct values (each argument matters): K_out and K_P are used, L multiplies, budgets refuse only above."""
    d, L, K, Ko, Kp = 2, 3, 3, 5, 7
    N = K ** (d * L)
    assert mem.log_prompt_count(d, 11, Kp) == pytest.approx(d * 11 * math.log(Kp), rel=1e-15)
    assert mem.log_table_count(d, L, K) == pytest.approx(d * L * N * math.log(K), rel=1e-15)
    assert mem.log_table_count(d, L, K, Ko) == pytest.approx(d * L * N * math.log(Ko), rel=1e-15)
    assert mem.counting_lower_bound(d, L, K, Ko, Kp) == pytest.approx(L * N * math.log(Ko) / math.log(Kp), rel=1e-14)
    for keys in (False, True):
        b = mem.memorization_counting_bound(9, d, L, K, Ko, Kp, include_keys=keys)
        want = (d * L * 9 * math.log(Ko) + (math.log(math.comb(N, 9)) if keys else 0.0)) / (d * math.log(Kp))
        assert b == pytest.approx(want, rel=1e-14)
    assert mem.value_map_node_count(1, 2, 2) == 2 ** (1 * (8 + 2)) * 2
    assert isinstance(mem.value_map_node_count(1, 2, 2), int)
    assert mem.prompt_length(2, 3, 3) == 3 * 3**6 and mem.memorizing_prompt_length(5, 3, True) == 30
    assert mem.memorizing_prompt_length(5, 3) == 15
    with pytest.raises(ValueError, match="budget"):
        mem.prompt_length(1, 4000, 10**300)  # 1.2 million digits
    assert mem.prompt_length(1, 3, 10**300) == 3 * 10**900  # 900 digits: within budget
    with pytest.raises(ValueError, match="budget"):
        mem.value_map_node_count(1, 1, 10**6)
    with pytest.raises(ValueError, match="K_P"):
        mem.memorization_counting_bound(1, 1, 1, 2, K_P=1)


def test_log_binomial_branches_and_symmetry():
    for N, k in ((10, 1), (10, 9), (50, 3), (50, 47), (2, 1)):
        assert mem.log_binomial(N, k) == pytest.approx(math.log(math.comb(N, k)), rel=1e-15, abs=1e-15)
    # the summed branch agrees with the exact one where both apply
    old = mem.BINOMIAL_EXACT_DIGITS
    try:
        mem.BINOMIAL_EXACT_DIGITS = 0
        assert mem.log_binomial(1000, 30) == pytest.approx(math.log(math.comb(1000, 30)), rel=1e-14)
        assert mem.log_binomial(1000, 970) == pytest.approx(math.log(math.comb(1000, 30)), rel=1e-14)
    finally:
        mem.BINOMIAL_EXACT_DIGITS = old


def test_memorizing_prompt_layout_and_decode_misses():
    K = 4
    Xs = (np.array([[[3, 1]], [[0, 2]], [[2, 2]]]) + 0.5) / K  # cells given out of grid order
    Ys = np.array([[[0.1, 0.9]], [[0.6, 0.3]], [[0.8, 0.2]]])
    for keys in (False, True):
        m = mem.memorizing_prompt((Xs, Ys), K, include_keys=keys)
        order = np.argsort(q.grid_index(q.cell_index(Xs, K), K))
        w = 2 if keys else 1
        blocks = m.P.reshape(1, 3, w * 2)
        np.testing.assert_array_equal(blocks[0, :, -2:], q.centred_quantize(Ys[order], K)[:, 0, :])
        if keys:
            np.testing.assert_array_equal(blocks[0, :, :2], q.centred_quantize(Xs[order], K)[:, 0, :])
        assert not m.keys.flags.writeable
        for X in (np.array([[0.99, 0.99]]), np.array([[0.01, 0.01]])):  # cells above / below every key
            with pytest.raises(ValueError, match="not in the memorized"):
                m.decode(X)
    with pytest.raises(ValueError, match="shape"):
        mem.memorizing_prompt((Xs, Ys[:, :, :1]), K)
    with pytest.raises(ValueError, match="empty"):
        mem.memorizing_prompt([], K)
    pairs = [(Xs[i], Ys[i]) for i in range(3)]
    np.testing.assert_array_equal(mem.memorizing_prompt(pairs, K).P, mem.memorizing_prompt((Xs, Ys), K).P)


def test_ff1_table_reader_chunks_and_clips():
    d, L, K = 1, 2, 6  # L_p = 72 > one 64-column chunk
    rng = np.random.default_rng(2)
    T = (rng.integers(0, K, size=(K**2, d, L)) + 0.5) / K
    P = mem.table_prompt(T, d, L, K)
    F = q.FF1Quantizer(d, K, P.shape[1] + L, 0.2 / K, positional=True)
    for chunk in (64, 7):
        reader = mem.FF1TableReader.build(F, P, L, chunk=chunk)
        assert reader.prompt_cells.dtype == np.int64 and not reader.prompt_cells.flags.writeable
        np.testing.assert_array_equal(reader.prompt_cells, np.rint(P * K - 0.5).astype(np.int64))
        for i, X in enumerate(q.all_grid_points(d, L, K) + 0.5 / K):
            np.testing.assert_array_equal(reader(X), T[i])
        cells = reader.input_cells(np.array([[0.0, 0.999]]))
        assert cells.dtype == np.int64 and cells.tolist() == [[0, K - 1]]


def test_bump_guard_band_edges_and_single_layer():
    """The guard refuses target ids in [min z - 3h, max z + 3h] and nothing outside, at both edges."""
    z = [1.0, 2.0, 3.5]
    w = [[0.5], [0.25], [-0.5]]
    h = 0.2
    lo, hi = 1.0 - 3 * h, 3.5 + 3 * h
    for t in (lo, lo + 1e-9, hi - 1e-9, hi, 2.0):
        with pytest.raises(ValueError, match="target guard"):
            mem.BumpStack.from_nodes(z, w, target_ids=[t - 100.0, t, t - 100.0], h=h)
    for t in (lo - 1e-9, hi + 1e-9):
        B = mem.BumpStack.from_nodes(z, w, target_ids=[t, t, t], h=h)
        assert B.guard_band() == pytest.approx((lo, hi))
    with pytest.raises(ValueError, match="min node gap"):
        mem.BumpStack.from_nodes(z, w, h=0.25)  # h = gap/4 exactly is refused
    mem.BumpStack.from_nodes(z, w, h=0.2499)
    with pytest.raises(ValueError, match="> 0"):
        mem.BumpStack.from_nodes(z, w, h=0.0, guard=False)
    with pytest.raises(ValueError, match="distinct"):
        mem.BumpStack.from_nodes([1.0, 1.0], [[0.0], [0.0]])
    one = mem.BumpStack.from_nodes([2.0], [[0.5]])  # a single layer: h defaults to 1
    assert one.M == 1 and float(one.h) == 1.0
    np.testing.assert_allclose(one(np.array([[2.0, 9.0]])), [[2.5, 9.0]])
    F1 = mem.InterpolationFFN.from_nodes([2.0], [[0.5]])
    assert F1.hidden_width == 0
    with pytest.raises(ValueError, match="M >= 1"):
        mem.BumpStack.from_nodes([], [])
    with pytest.raises(ValueError, match="M >= 1"):
        mem.InterpolationFFN.from_nodes([], [])


def test_value_maps_mp_paths_agree_with_float():
    ctx = mpmath.MPContext()
    ctx.dps = 40
    rng = np.random.default_rng(5)
    M, d = 7, 2
    u = np.array([0.6, 0.8])
    Y = rng.normal(size=(M, d))
    T = rng.uniform(size=(M, d)) - 30 * u
    for cls in (mem.InterpolationFFN, mem.BumpStack):
        Ff = cls.from_targets(Y, T, u)
        Fm = cls.from_targets(Y, T, u, ctx=ctx)
        out_f = Ff(Y.T)
        out_m = Fm(Y.T.tolist(), ctx)
        cols = [Fm.apply_column([ctx.mpf(v) for v in Y[j]], ctx) for j in range(M)]
        for j in range(M):
            for i in range(d):
                assert abs(float(out_m[i, j]) - T[j, i]) < 1e-12 and abs(out_f[i, j] - T[j, i]) < 1e-9
                assert abs(cols[j][i] - out_m[i, j]) < ctx.mpf(10) ** -30
        assert float(Fm.max_output_weight(ctx)) == pytest.approx(float(Ff.max_output_weight(ctx)), rel=1e-12)


def test_counting_and_prompt_budgets_at_their_edges():
    assert mem.memorization_counting_bound(3, 1, 1, 4, K_P=2) == pytest.approx(3 * math.log(4) / math.log(2))
    assert mem.counting_lower_bound(1, 1, 4, K_P=2) == pytest.approx(4 * math.log(4) / math.log(2))
    n = mem.PROMPT_MAX_ENTRIES // 2 + 1  # n d L = 2^21 + 1 entries: within budget alone, over it with keys
    Xs = np.zeros((n, 1, 1))
    with pytest.raises(ValueError, match="budget"):
        mem.memorizing_prompt((Xs, Xs), 2, include_keys=True)
    with pytest.raises(ValueError, match="not distinct"):
        mem.memorizing_prompt((Xs, Xs), 2)


def test_ff1_table_reader_two_coordinates():
    d, L, K = 2, 1, 3
    rng = np.random.default_rng(7)
    T = (rng.integers(0, K, size=(K**2, d, L)) + 0.5) / K
    P = mem.table_prompt(T, d, L, K)
    F = q.FF1Quantizer(d, K, P.shape[1] + L, 0.2 / K, positional=True)
    reader = mem.FF1TableReader.build(F, P, L, chunk=4)
    for i, X in enumerate(q.all_grid_points(d, L, K) + 0.5 / K):
        np.testing.assert_array_equal(reader(X), T[i])


def test_interpolation_magnitude_mp_formula():
    """magnitude_mp per column, max over coords: |y| + |v_1| + sum_m |a_m| (ReLU(z - z_m) + 2 (|u|.|y| + |z_m|))."""
    ctx = mpmath.MPContext()
    ctx.dps = 30
    z = [ctx.mpf(1), ctx.mpf(2), ctx.mpf(4)]
    V = [[ctx.mpf(0.5), ctx.mpf(-1)], [ctx.mpf(1.5), ctx.mpf(0)], [ctx.mpf(-0.5), ctx.mpf(2)]]
    u = [ctx.mpf(0.6), ctx.mpf(0.8)]
    F = mem.InterpolationFFN.from_nodes(z, V, u, ctx, extend="flat")
    zz, a, v1 = F.coefficients(ctx.mpf)
    Y = [[ctx.mpf(2.5), ctx.mpf(-1)], [ctx.mpf(1.0), ctx.mpf(3)]]  # d x n: two columns
    got = F.magnitude_mp(Y, ctx)
    for j in range(2):
        y = [Y[0][j], Y[1][j]]
        zq = u[0] * y[0] + u[1] * y[1]
        zmag = abs(u[0] * y[0]) + abs(u[1] * y[1])
        want = max(abs(y[i]) + abs(v1[i]) + sum(abs(a[m][i]) * (max(zq - zz[m], 0) + 2 * (zmag + abs(zz[m])))
                                                 for m in range(F.hidden_width)) for i in range(2))
        assert abs(got[j] - want) <= ctx.mpf(10) ** -25 * want
    assert len(got) == 2 and F.hidden_width == 3


def test_value_maps_apply_mp_takes_the_context_of_an_mp_matrix():
    """ctx=None with an mpmath matrix of a 60-digit context: the evaluation runs in that context, not mpmath.mp."""
    ctx = mpmath.MPContext()
    ctx.dps = 60
    z = [ctx.mpf(1), 1 + ctx.mpf(10) ** -40, ctx.mpf(3)]
    shifts = [[ctx.mpf(-5)], [ctx.mpf(-6)], [ctx.mpf(-7)]]
    for F in (mem.InterpolationFFN.from_nodes(z, shifts, ctx=ctx),
              mem.BumpStack.from_nodes(z, shifts, target_ids=[z[m] + shifts[m][0] for m in range(3)], ctx=ctx)):
        Y = ctx.matrix([[z[1], z[2]]])
        out = F.apply_mp(Y)
        assert out.ctx is ctx or out.ctx.dps == 60
        assert abs(out[0, 0] - (z[1] - 6)) < ctx.mpf(10) ** -50
        assert abs(out[0, 1] - (z[2] - 7)) < ctx.mpf(10) ** -50
        assert abs(F(Y)[0, 0] - (z[1] - 6)) < ctx.mpf(10) ** -50


def test_dataset_memorization_ramp_width_sees_the_positioned_float():
    """Regression (CI, ci seed 0): X = fl(1/3), K = 3 at position 4 sits 1 ulp below t_b = 1 + 10/3.

    X*K rounds to exactly 1, so a ramp width taken from X*K - floor(X*K) put the datum on the ramp and the
    claim reported a false counterexample ("off_ramp: 1 samples on a ramp").
    """
    import verify
    from properties.memorization import check_dataset_memorization, lipschitz_target

    inst = {"d": 1, "L": 1, "K": 3, "C": 0.5, "alpha": 1.0,
            "target": lipschitz_target(0, 1, 1, 0.5, 1.0, "clipped_linear"),
            "X": np.array([[[1 / 3]], [[0.5]]])}
    # 1 ulp from the breakpoint: no ramp width fits, so the instance is out of reach, not a counterexample
    with pytest.raises(verify.OutOfReach, match="below a grid level"):
        check_dataset_memorization(inst, verify.Backend())
    inst["X"] = inst["X"][1:]
    ev = check_dataset_memorization(inst, verify.Backend())
    assert all(c.ok for c in ev.conditions) and ev.ratio <= 1.0, ev
