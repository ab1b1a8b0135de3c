"""constructions.deep_universality pinned against independent arithmetic: explicit loops over every grid sequence,
Fractions and mpmath for the closed forms, a layer-by-layer reference forward pass (one transformer.attention call
per sequence and layer, every value-map layer applied in order), every default argument and every ValueError
boundary: what tests/test_deep_universality.py and the wang23.universality claims leave to chance."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from types import SimpleNamespace

import mpmath
import numpy as np
import pytest

from constructions import deep_universality as du
from constructions import selective_shift as ss
from constructions.deep_resource_counts import resource_counts
from constructions.transformer import attention
from constructions.yun_activations import zeta1, zeta2, zeta3, zeta4, zeta5

U64 = 2.0**-53


# ---------------------------------------------------------------------------------------------
# independent helpers (loops, no call into the module under test)
# ---------------------------------------------------------------------------------------------


def _grid_cells(d, m, K):
    """All K^{dm} integer cells (N, d, m), token-major lexicographic, first digit most significant."""
    rows = [np.array(t, dtype=np.int64).reshape(m, d).T for t in itertools.product(range(K), repeat=d * m)]
    return np.stack(rows)


def _index(cells, K):
    """grid index of one (d, m) integer cell array: digits token-major, first most significant."""
    d, m = cells.shape
    idx = 0
    for j in range(m):
        for i in range(d):
            idx = idx * K + int(cells[i, j])
    return idx


def _floor_exact(x, K):
    return math.floor(Fraction(float(x)) * K)


def _expected_units(P, X, d, m, K):
    """Network output (units of delta/2) for a valid [P, X]: 2 * the cell of P's column m idx(X) + j."""
    P = np.asarray(P, dtype=np.float64)
    out = np.zeros((len(X), d, m), dtype=np.int64)
    for b, x in enumerate(X):
        cx = np.array([[_floor_exact(x[i, j], K) for j in range(m)] for i in range(d)])
        blk = _index(cx, K)
        for j in range(m):
            for i in range(d):
                out[b, i, j] = 2 * _floor_exact(P[i, m * blk + j], K)
    return out


def _all_prompts(d, m_p, K):
    """Every grid prompt (cell centres), (K^{d m_p}, d, m_p)."""
    return (_grid_cells(d, m_p, K) + 0.5) / K


# ---------------------------------------------------------------------------------------------
# choose_K, sup_bound, resource_counts_eps
# ---------------------------------------------------------------------------------------------


def test_choose_K_value_boundaries():
    bad = [
        dict(eps=0.0),
        dict(eps=-1.0),
        dict(eps=math.inf),
        dict(eps=math.nan),
        dict(L=-1e-12),
        dict(L=-1.0),
        dict(L=math.inf),
        dict(L=math.nan),
        dict(p=0.999),
        dict(p=0.5),
        dict(p=math.inf),
        dict(p=math.nan),
        dict(d=1.5),
        dict(d=0),
        dict(d=-1),
        dict(m=1.5),
        dict(m=0),
        dict(m=-2),
        dict(d=0, m=1),
        dict(d=1, m=0),
    ]
    base = dict(L=1.0, d=1, m=1, p=1.0, eps=0.5)
    for kw in bad:
        with pytest.raises(ValueError):
            du.choose_K(**{**base, **kw})
    # accepted boundaries (each mutant that tightens a check refuses one of them)
    good = [
        dict(eps=0.5),
        dict(eps=1e-300 * 1e300),
        dict(L=0.0),
        dict(L=0.5),
        dict(p=1.0),
        dict(p=1.5),
        dict(d=1, m=1),
        dict(d=2.0, m=3.0),
    ]
    for kw in good:
        du.choose_K(**{**base, **kw})


@pytest.mark.parametrize(
    "L, d, m, p, eps, factor, want",
    [
        (1.0, 1, 1, 1.0, 0.5, None, 8),  # 2*2*1/0.5
        (1.0, 1, 1, 1.0, 0.3, None, 14),  # 13.33 -> 14
        (0.0, 1, 1, 1.0, 10.0, None, 2),  # 0.2 -> 1 -> floor at 2
        (0.0, 1, 1, 1.0, 0.75, None, 3),  # 2.67 -> 3 (above the floor)
        (0.0, 1, 1, 1.0, 1.0, None, 2),  # exactly 2
        (1.0, 2, 2, 2.0, 0.3, None, 27),  # 2*2*2/0.3 = 26.67
        (2.0, 2, 4, 3.0, 1.0, None, 12),  # 2*3*8^(1/3)
        (0.5, 1, 3, 1.0, 1.0, 3.0, 14),  # 3*1.5*3 = 13.5
        (1.0, 3, 1, 2.0, 0.4, 1.0, 9),  # 1*2*sqrt(3)/0.4 = 8.66
    ],
)
def test_choose_K_formula(L, d, m, p, eps, factor, want):
    f = 2.0 if factor is None else factor
    direct = max(2, math.ceil(f * (L + 1) * (d * m) ** (1.0 / p) / eps))
    assert direct == want, "test table inconsistent"
    got = du.choose_K(L, d, m, p, eps) if factor is None else du.choose_K(L, d, m, p, eps, factor)
    assert got == want and type(got) is int, f"choose_K({L},{d},{m},{p},{eps}) = {got!r}, want {want}"


def test_sup_bound_formula_and_default():
    assert du.sup_bound(2.0, 2, 2, 2.0, 4) == 1.5  # 3/4 * 2
    assert du.sup_bound(2.0, 2, 2, 2.0, 4, plus_one=True) == 1.5
    assert du.sup_bound(2.0, 2, 2, 2.0, 4, plus_one=False) == 1.0  # 2/4 * 2
    assert du.sup_bound(0.0, 2, 3, 1.0, 3, False) == 0.0
    assert du.sup_bound(1.0, 1, 3, 1.0, 8) == pytest.approx(2 / 8 * 3, rel=1e-15, abs=0.0)
    assert du.sup_bound(1.0, 3, 1, 2.0, 8) == pytest.approx(2 / 8 * math.sqrt(3), rel=1e-15, abs=0.0)


def test_resource_counts_eps_is_resource_counts_at_choose_K():
    # L = 0.5, d = 1, m = 2, p = 1, eps = 2: K = ceil(2 * 1.5 * 2 / 2) = 3
    assert du.resource_counts_eps(1, 2, 0.5, 1.0, 2.0) == resource_counts(1, 2, 3)
    # d = 2, m = 1, L = 1, p = 2, eps = 2: K = ceil(2 * 2 * sqrt 2 / 2) = 3
    assert du.resource_counts_eps(2, 1, 1.0, 2.0, 2.0) == resource_counts(2, 1, 3)
    assert du.resource_counts_eps(2, 1, 1.0, 2.0, 2.0) != resource_counts(1, 2, 3)


# ---------------------------------------------------------------------------------------------
# surrogate, table, prompt, cells
# ---------------------------------------------------------------------------------------------


def _floor_q(x, K):
    return min(max(math.floor(float(x) * K), 0), K - 1) / K


def test_wang_surrogate_quantizes_input_and_output():
    K = 4
    seen = []

    def f(X):
        seen.append(np.array(X))
        return np.asarray(X) * 1.3 + 0.05

    X = np.array([[[0.0, 0.26, 0.49, 0.5]], [[0.74, 0.999, 1.0, -0.2]]])
    got = du.wang_surrogate(f, K)(X)
    want = np.vectorize(lambda x: _floor_q(_floor_q(x, K) * 1.3 + 0.05, K))(X)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(seen[0], np.vectorize(lambda x: _floor_q(x, K))(X))


@pytest.mark.parametrize("d, m, K", [(1, 1, 3), (2, 1, 2), (1, 2, 3)])
def test_wang_table_and_prompt_against_loops(d, m, K):
    def f(X):  # a list, not an array: wang_table converts it
        return (np.sin(3.0 * np.asarray(X)) * 0.5 + 0.45).tolist()

    G = _grid_cells(d, m, K) / K
    np.testing.assert_array_equal(du.grid_inputs(d, m, K), G)
    T = du.wang_table(f, d, m, K)
    want = np.vectorize(lambda x: _floor_q(math.sin(3.0 * x) * 0.5 + 0.45, K))(G)
    np.testing.assert_array_equal(T, want)
    assert T.dtype == np.float64
    N = K ** (d * m)
    for centre, P in (
        (True, du.wang_table_prompt(f, d, m, K)),
        (True, du.wang_table_prompt(f, d, m, K, True)),
        (False, du.wang_table_prompt(f, d, m, K, centre=False)),
    ):
        assert P.shape == (d, m * N)
        for i in range(N):
            for j in range(m):
                np.testing.assert_array_equal(
                    P[:, m * i + j],
                    want[i, :, j] + (0.5 / K if centre else 0.0),
                    err_msg=f"prompt column {m * i + j} (centre={centre})",
                )


def test_exact_cells_is_the_exact_floor():
    # float products K x that round across an integer: x = 0.29 (K = 100), nextafter(1/3) (K = 3), ...
    xs = [
        0.0,
        0.5,
        0.29,
        0.57,
        np.nextafter(1 / 3, 0),
        np.nextafter(2 / 3, 0),
        1 / 3,
        2 / 3,
        1.0,
        -0.25,
        -1e-17,
        1.5,
        0.7,
        0.1,
        np.nextafter(0.5, 0),
        7.0,
        -3.0,
        2.0 / 3.0 * 3.0,
    ]
    for K in (1, 2, 3, 5, 10, 100, 1000):
        X = np.array(xs).reshape(2, 9)
        got = du.exact_cells(X, K)
        assert got.dtype == np.int64 and got.shape == X.shape
        want = np.array([_floor_exact(x, K) for x in xs]).reshape(2, 9)
        np.testing.assert_array_equal(got, want, err_msg=f"K = {K}")
    # x K rounds up onto an integer in float64 although x < k / K exactly
    for x, K, k in ((1 / 3, 3, 0), (0.6, 5, 2), (0.8333333333333333, 6, 4)):
        assert math.floor(x * K) == k + 1 and du.exact_cells(np.array([x]), K).tolist() == [k], f"{x} * {K}"
    assert du.exact_cells([0.25, 0.5], 4).tolist() == [1, 2]  # a list input, exact multiples
    # any array-like is read as float64 first: Fractions and mpmath numbers too (an object array has no floor)
    assert du.exact_cells([Fraction(1, 3), Fraction(3, 4)], 3).tolist() == [0, 2]  # float64(1/3) < 1/3
    assert du.exact_cells(np.array([mpmath.mpf(1) / 3, mpmath.mpf(2)], dtype=object), 3).tolist() == [0, 6]


def test_fbar_units_clips_cells_and_quantizes_f():
    K = 4
    seen = []

    def f(Y):
        seen.append(np.array(Y))
        return 1.0 - np.asarray(Y)

    X = np.array([[[0.0, 0.3, 0.99, 1.0, 1.7, -0.3, np.nextafter(0.75, 0)]]])
    got = du.fbar_units(f, X, K)
    cin = [min(max(_floor_exact(x, K), 0), K - 1) for x in X.ravel()]
    np.testing.assert_array_equal(seen[0].ravel(), np.array(cin) / K)
    want = [2 * min(max(math.floor((1.0 - c / K) * K), 0), K - 1) for c in cin]
    assert got.ravel().tolist() == want and got.shape == X.shape


def test_grid_index_of_clips_and_orders_token_major():
    K = 3
    X = np.array([[[0.0, 0.5], [0.9, 1.0]], [[-0.2, 0.34], [np.nextafter(1 / 3, 0), 2.0]]])  # (2, d=2, m=2)
    got = du.grid_index_of(X, K)
    for b in range(2):
        c = np.array([[min(max(_floor_exact(X[b, i, j], K), 0), K - 1) for j in range(2)] for i in range(2)])
        assert got[b] == _index(c, K), f"grid_index_of sample {b}"
    assert du.grid_inputs(1, 2, 2).tolist() == [[[0.0, 0.0]], [[0.0, 0.5]], [[0.5, 0.0]], [[0.5, 0.5]]]


# ---------------------------------------------------------------------------------------------
# the built network: counts, node table, guards
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, want",
    [
        (
            (1, 1, 2),
            dict(
                quantization_ffn_layers=7, attention_layers=7, cleanup_ffn_layers=2, value_map_ffn_layers=8, L_p=2, n=3
            ),
        ),
        (
            (2, 1, 2),
            dict(
                quantization_ffn_layers=22,
                attention_layers=21,
                cleanup_ffn_layers=3,
                value_map_ffn_layers=1024,
                L_p=4,
                n=5,
            ),
        ),
        (
            (1, 1, 3),
            dict(
                quantization_ffn_layers=13,
                attention_layers=13,
                cleanup_ffn_layers=2,
                value_map_ffn_layers=81,
                L_p=3,
                n=4,
            ),
        ),
        (
            (1, 2, 2),
            dict(
                quantization_ffn_layers=21,
                attention_layers=21,
                cleanup_ffn_layers=2,
                value_map_ffn_layers=2048,
                L_p=8,
                n=10,
            ),
        ),
    ],
)
def test_counts_by_hand(size, want):
    """d(1 + nK), n K^d + 1, 1 + d, m K^{dn}, L_p = m K^{dm}, n = L_p + m, worked out by hand."""
    net = du.build_network(*size)
    assert net.counts() == want


def _sequential_value_map(net, Zcols):
    """Every value-map layer in order on exact integer columns (units): fire iff u^T z in [node - 1, node + 1)."""
    u = np.array(net.plan.u, dtype=object)
    Z = np.array(Zcols, dtype=object)
    for node, dlt in zip(net.node_ids.tolist(), net.node_delta.tolist(), strict=True):
        for c in range(Z.shape[0]):
            s = int(np.dot(u, Z[c]))
            if node - 1 <= s < node + 1:
                Z[c] = Z[c] + np.array(dlt, dtype=object)
    return Z


@pytest.mark.parametrize("size", [(1, 1, 2), (1, 1, 3), (2, 1, 2), (1, 2, 2)])
def test_every_valid_sequence_reads_its_own_table_block(size):
    """All K^{dn} valid sequences (every grid prompt x every grid input): output = 2 cell(P[:, m idx(X) + j]),
    and each node is hit by exactly one (sequence, column); the node ids are strictly increasing."""
    d, m, K = size
    net = du.build_network(*size)
    assert net.n_value_layers == m * K ** (d * net.n)
    assert np.all(np.diff(net.node_ids) >= 2), "nodes closer than delta"
    prompts = _all_prompts(d, net.m_p, K)
    if len(prompts) > 64:
        prompts = prompts[np.random.default_rng(0).choice(len(prompts), 64, replace=False)]
    G = _grid_cells(d, m, K) / K
    rng = np.random.default_rng(1)
    Xoff = G + rng.uniform(0, 1, size=G.shape) / K * 0.999  # same cells, off the lattice
    for P in prompts:
        for X in (G, Xoff):
            out = du.exact_outputs(net, P, X)
            assert out.dtype == object and all(type(v) is int for v in out.ravel()), "outputs must be exact ints"
            np.testing.assert_array_equal(out.astype(np.int64), _expected_units(P, X, d, m, K))
    if d * m == 1:  # every sequence of the full enumeration: the layers applied one by one agree
        U = net.plan.unit
        cells_all = ss.enumerate_cells(d, net.n, K)
        ids0 = ss.ids_from_cells(cells_all, net.plan)
        q = ss.contextual_ids(ids0, net.plan)
        col = net.m_p
        Z = (U * col + 2 * cells_all[:, :, col]).astype(object)
        Z[:, 0] = Z[:, 0] + (q[:, col] - ids0[:, col])
        seq = _sequential_value_map(net, Z)
        P_all = (cells_all[:, :, : net.m_p] + 0.5) / K
        X_all = (cells_all[:, :, net.m_p :] + 0.5) / K
        for b in range(len(cells_all)):
            want = _expected_units(P_all[b], X_all[b : b + 1], d, m, K)[0, :, 0]
            assert seq[b].tolist() == want.tolist(), f"sequence {cells_all[b].tolist()}"
        assert sorted(q[:, col].tolist()) == net.node_ids.tolist()


def test_node_table_for_two_scored_columns_against_sequential_layers():
    net = du.build_network(1, 2, 2)
    d, m, K = 1, 2, 2
    rng = np.random.default_rng(5)
    prompts = _all_prompts(d, net.m_p, K)[rng.choice(2**8, 6, replace=False)]
    X = _grid_cells(d, m, K) / K
    U = net.plan.unit
    for P in prompts:
        cells, invalid = du._sequence_cells(net, P, X)
        assert not invalid.any()
        ids0 = ss.ids_from_cells(cells, net.plan)
        q = ss.contextual_ids(ids0, net.plan)
        for j in range(m):
            col = net.m_p + j
            Z = (U * col + 2 * cells[:, :, col]).astype(object)
            Z[:, 0] = Z[:, 0] + (q[:, col] - ids0[:, col])
            seq = _sequential_value_map(net, Z)
            np.testing.assert_array_equal(seq.astype(np.int64), _expected_units(P, X, d, m, K)[:, :, j])


def _fake_net(node_ids, t_l, U, d=1, K=2):
    plan = SimpleNamespace(unit=U, t_bounds=lambda: (t_l, Fraction(10**9)))
    return SimpleNamespace(plan=plan, node_ids=np.array(node_ids, dtype=np.int64), d=d, K=K)


def test_assert_guards_boundaries():
    ok = Fraction(10**6)
    du._assert_guards(_fake_net([5], ok, 4))  # a single node: no gap to check
    du._assert_guards(_fake_net([], ok, 4))
    du._assert_guards(_fake_net([1, 3, 5, 9], ok, 4))  # gaps exactly 2 = delta
    for ids in ([1, 2], [1, 3, 4], [0, 0]):
        with pytest.raises(AssertionError, match="closer than delta"):
            du._assert_guards(_fake_net(ids, ok, 4))
    # target ids: max u^T A = 2 sum_i K^i (K - 1) units; the guard needs (max + 2) / U <= t_l
    for d, K, U in ((1, 2, 4), (2, 3, 6), (3, 2, 4), (2, 5, 10)):
        top = 2 * sum(K**i * (K - 1) for i in range(d))
        edge = Fraction(top + 2, U)
        du._assert_guards(_fake_net([0, 2], edge, U, d, K))
        with pytest.raises(AssertionError, match="reach t_l"):
            du._assert_guards(_fake_net([0, 2], edge - Fraction(1, 10**6), U, d, K))
    # the real networks pass
    for size in ((1, 1, 2), (2, 1, 2), (1, 1, 3)):
        du._assert_guards(du.build_network(*size))


# ---------------------------------------------------------------------------------------------
# _sequence_cells and exact_outputs off the grid
# ---------------------------------------------------------------------------------------------


def test_sequence_cells_validity_bands_and_shapes():
    net = du.build_network(1, 1, 2)  # m_p = 2, n = 3, K = 2: levels floor(2 (x + j)) valid in 0..5
    P = np.array([[0.25, -0.5]])
    xs = [0.0, 0.49, 0.5, 0.99, 1.0, 1.2, -0.01, -0.5, -0.51, 3.0]
    X = np.array(xs).reshape(-1, 1, 1)
    k, invalid = du._sequence_cells(net, P, X)
    assert k.shape == invalid.shape == (len(xs), 1, 3)
    for b, x in enumerate(xs):
        row = [0.25, -0.5, x]
        assert k[b, 0].tolist() == [_floor_exact(v, 2) for v in row]
        lv = [_floor_exact(v, 2) + 2 * j for j, v in enumerate(row)]
        assert invalid[b, 0].tolist() == [not (0 <= z < 6) for z in lv], f"x = {x}"
    # column 0: x < 0 is invalid; x = 1 at column 0 sits in column 1's band (valid level)
    _, inv0 = du._sequence_cells(net, np.array([[-0.01, 0.25]]), np.zeros((1, 1)))
    _, inv1 = du._sequence_cells(net, np.array([[1.0, 0.25]]), np.zeros((1, 1)))
    assert inv0.tolist() == [[[True, False, False]]] and inv1.tolist() == [[[False, False, False]]]
    # a 2-d X is one sample
    k2, _ = du._sequence_cells(net, P.tolist(), [[0.5]])
    assert k2.shape == (1, 1, 3) and k2.tolist() == [[[0, -1, 1]]]
    with pytest.raises(ValueError, match="prompt must have shape"):
        du._sequence_cells(net, np.zeros((1, 3)), X)
    with pytest.raises(ValueError, match="prompt must have shape"):
        du._sequence_cells(net, np.zeros((2, 2)), X)
    with pytest.raises(ValueError, match="inputs must have shape"):
        du._sequence_cells(net, P, np.zeros((3, 1, 2)))
    with pytest.raises(ValueError, match="inputs must have shape"):
        du._sequence_cells(net, P, np.zeros((3, 2, 1)))


def test_exact_outputs_invalid_sequences_are_cleaned_and_skip_cleanup_keeps_ids():
    net = du.build_network(2, 1, 2)
    d, K, U = 2, 2, net.plan.unit
    P = (np.arange(2 * net.m_p).reshape(2, net.m_p) % K + 0.5) / K
    X = np.array([[[0.0], [0.5]], [[1.0], [0.5]], [[0.5], [1.3]], [[0.5], [0.99]], [[3.0], [7.0]], [[-0.2], [0.0]]])
    cells, invalid = du._sequence_cells(net, P, X)
    seq_bad = invalid.any(axis=(1, 2))
    assert seq_bad.tolist() == [False, True, True, False, True, False]  # x < 0 at the last column: column n-2's band
    out = du.exact_outputs(net, P, X)
    want = _expected_units(P, np.clip(X, 0, 0.99), d, 1, K)
    want[5] = du.exact_outputs(net, P, X[5:])[0]  # a shifted-band sequence: checked against float_outputs below
    np.testing.assert_array_equal(du.float_outputs(net, P, X) * U, out.astype(np.float64))
    for b in range(len(X)):
        if seq_bad[b]:
            assert out[b].tolist() == [[0], [0]], f"invalid sequence {b} must be cleaned to 0"
        else:
            assert out[b].astype(np.int64).tolist() == want[b].tolist()
    assert all(type(v) is int for v in out.ravel())
    raw = du.exact_outputs(net, P, X, skip_cleanup=True)
    ids0 = ss.ids_from_cells(np.where(invalid, 0, cells), net.plan, invalid)
    q = ss.contextual_ids(ids0, net.plan)
    col = net.m_p
    t_l, t_r = net.t_bounds
    for b in range(len(X)):
        if not seq_bad[b]:
            assert raw[b].tolist() == out[b].tolist()
            continue
        assert not (t_l <= Fraction(int(q[b, col]), U) <= t_r)
        # no layer fires: coordinates >= 1 keep the quantized entry (or -J), u^T z is the contextual id
        ent = -U * net.plan.J if invalid[b, 1, col] else U * col + 2 * int(cells[b, 1, col])
        assert raw[b, 1, 0] == ent
        assert raw[b, 0, 0] + K * raw[b, 1, 0] == int(q[b, col]), f"sample {b}: u^T z must be the id"
        e0 = -U * net.plan.J if invalid[b, 0, col] else U * col + 2 * int(cells[b, 0, col])
        assert raw[b, 0, 0] - e0 == int(q[b, col]) - int(ids0[b, col])


def test_exact_outputs_ids_on_t_bounds_are_kept():
    """Ids exactly at t_l or t_r are inside [t_l, t_r]: the closed interval (the typo network shifts t_l up)."""
    net = du.build_network(1, 1, 2)
    t_l, t_r = net.t_bounds
    lo, hi = Fraction(int(net.node_ids.min()), net.plan.unit), Fraction(int(net.node_ids.max()), net.plan.unit)
    assert t_l <= lo and hi <= t_r


# ---------------------------------------------------------------------------------------------
# float_outputs: hardmax on every valid sequence; softmax against a layer-by-layer reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1, 2), (2, 1, 2), (1, 2, 2), (1, 1, 4)])
def test_float_hardmax_on_every_sequence_and_off_grid(size):
    d, m, K = size
    net = du.build_network(*size)
    prompts = _all_prompts(d, net.m_p, K)
    rng = np.random.default_rng(2)
    if len(prompts) > 48:
        prompts = prompts[rng.choice(len(prompts), 48, replace=False)]
    G = _grid_cells(d, m, K) / K
    for P in prompts:
        got = du.float_outputs(net, P, G)
        np.testing.assert_array_equal(got * (2 * K), _expected_units(P, G, d, m, K))
        # hard ignores eta_q: SoftParams(lam=None, eta_q > 0) is the hardmax network
        np.testing.assert_array_equal(du.float_outputs(net, P, G, du.SoftParams(None, 0.3 / K)), got)
    # off the grid and outside [0, 1): the weight-level network equals the exact evaluator everywhere
    P = prompts[0]
    X = np.concatenate([rng.uniform(-0.6, 1.6, size=(30, d, m)), G + 0.999 / K, G + 1.0 / K, G - 1e-3])
    exact = du.exact_outputs(net, P, X).astype(np.float64) / (2 * K)
    np.testing.assert_array_equal(du.float_outputs(net, P, X), exact)
    one = du.float_outputs(net, P.tolist(), X[3])  # 2-d X: one sample, P as a list
    assert one.shape == (1, d, m)
    np.testing.assert_array_equal(one[0], exact[3])


def _reference_forward(net, P, X, lam=None, eta=0.0):
    """The network of the module docstring, one sequence and one layer at a time (transformer.attention), every
    value-map layer applied in order with zeta_5 (no event shortcut)."""
    d, n, K, plan = net.d, net.n, net.K, net.plan
    hard = lam is None
    soft = not hard
    dl = 1.0 / K
    J = float(plan.J)
    layers = ss.all_shift_layers(plan, None if hard else float(lam))
    t_l, t_r = float(net.t_bounds[0]), float(net.t_bounds[1])
    Mc = net.cleanup_M
    u = np.array([K**i for i in range(d)], dtype=np.float64)
    nodes = [int(v) / plan.unit for v in net.node_ids]
    dlts = net.node_delta.astype(np.float64) / plan.unit
    outs = []
    for x in X:
        Z = np.ones((d + 1, n))
        Z[:d] = np.concatenate([np.asarray(P, dtype=np.float64), x], axis=1) + np.arange(n)[None, :]
        for i in range(d):
            Z[i] = Z[i] + zeta1(Z[i], n, J, eta)
            for k in range(n * K):
                Z[i] = Z[i] + zeta2(Z[i] - k * dl, dl, eta)
        for heads in layers:
            Z = Z + attention(heads, Z, Z, hard=hard)
        q = u @ Z[:d]
        Z[:d] = Z[:d] - (Mc + 1.0) * zeta3(q, t_l, t_r, dl, soft)[None, :]
        for i in range(d):
            Z[i] = Z[i] + zeta4(Z[i])
        o = Z[:d, net.m_p :].copy()
        for node, dv in zip(nodes, dlts, strict=True):
            z = zeta5(u @ o - node, dl, soft)
            o = o + dv[:, None] * z[None, :]
        outs.append(o)
    return np.stack(outs)


def _floor(net):
    t_r = float(net.plan.t_bounds()[1])
    return 8.0 * U64 * t_r * (net.plan.n_attention_layers + 4)


@pytest.mark.parametrize("size", [(1, 1, 2), (2, 1, 2)])
def test_float_softmax_matches_layer_by_layer_reference(size):
    d, m, K = size
    net = du.build_network(*size)
    rng = np.random.default_rng(7)
    P = (rng.integers(0, K, size=(d, net.m_p)) + 0.5) / K
    G = _grid_cells(d, m, K) / K
    lam_star = du.lambda_threshold(net.plan, 1e-4)
    X = np.concatenate([G, rng.uniform(0, 1, size=(3, d, m))])
    tol = 64 * _floor(net)
    for lam, eta in ((lam_star, 0.0), (lam_star, 0.2 / K), (lam_star / 64, 0.0), (lam_star / 8, 0.1 / K)):
        got = du.float_outputs(net, P, X, du.soft_params(lam, eta))
        ref = _reference_forward(net, P, X, lam, eta)
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=tol, err_msg=f"lam = {lam}, eta = {eta}")
    hard = _reference_forward(net, P, X)
    np.testing.assert_array_equal(du.float_outputs(net, P, X), hard)


def test_float_soft_quantizer_ramps_are_used():
    """Inputs inside the zeta_1 / zeta_2 ramps (left of a jump, width eta_q) give another output than eta_q = 0;
    inputs off the ramps do not."""
    net = du.build_network(1, 1, 2)
    K = 2
    P = np.array([[0.25, 0.75]])
    lam = du.lambda_threshold(net.plan, 1e-4)
    eta = 0.2 / K
    on = np.array([[[0.5 - 0.05]], [[1.0 - 0.05]]])  # zeta_2 ramp below 1/2; zeta_1 ramp below n at the last column
    off = np.array([[[0.25]], [[0.75]]])
    with_ramp = du.float_outputs(net, P, on, du.soft_params(lam, eta))
    without = du.float_outputs(net, P, on, du.soft_params(lam, 0.0))
    assert np.all(np.abs(with_ramp - without) > 1e-3), f"ramp inputs unaffected by eta_q: {with_ramp} {without}"
    np.testing.assert_allclose(with_ramp, _reference_forward(net, P, on, lam, eta), rtol=1e-9, atol=1e-6)
    a = du.float_outputs(net, P, off, du.soft_params(lam, eta))
    b = du.float_outputs(net, P, off, du.soft_params(lam, 0.0))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_float_outputs_needs_dyadic_K():
    for K in (3, 5, 6):
        net = du.build_network(1, 1, K) if K < 4 else None
        if net is None:
            net = SimpleNamespace(d=1, n=3, K=K, m_p=2, plan=None)
        with pytest.raises(ValueError, match="dyadic"):
            du.float_outputs(net, np.full((1, 2 if K > 3 else 3), 0.5), np.zeros((1, 1, 1)))


def test_apply_value_map_hard_and_soft_windows():
    net = du.build_network(1, 1, 4)
    U, K = net.plan.unit, net.K
    nodes = net.node_ids.astype(np.float64) / U
    dl = net.node_delta.astype(np.float64) / U
    dlt = 1.0 / K
    idx = [0, 3, 7, len(nodes) - 1]
    # hard: [-delta/2, delta/2) fires fully; delta/2 does not
    offs = [0.0, -dlt / 2, dlt / 2 - 2.0**-10, dlt / 2, -dlt / 2 - 2.0**-10]
    fire = [1.0, 1.0, 1.0, 0.0, 0.0]
    for soft in (False, True):
        for s, w in zip(offs, fire, strict=True):
            out = np.zeros((len(idx), 1, 1))
            out[:, 0, 0] = nodes[idx] + s
            want = out[:, 0, 0] + dl[idx, 0] * (w if not soft else float(zeta5(np.array(s), dlt, True)))
            du.apply_value_map(net, out, soft)
            np.testing.assert_array_equal(out[:, 0, 0], want, err_msg=f"s = {s}, soft = {soft}")
    # soft: flat on [-delta/4, delta/4], linear to 0 at +-delta/2, on both sides of a node
    for s in (-0.3 * dlt, -0.26 * dlt, 0.26 * dlt, 0.4 * dlt, 0.1 * dlt, -0.1 * dlt):
        out = np.zeros((len(idx), 1, 1))
        out[:, 0, 0] = nodes[idx] + s
        t = out[:, 0, 0] - nodes[idx]  # exact (Sterbenz): the offset the layer sees
        assert np.all(np.abs(t - s) < 1e-6)
        z = np.clip((dlt / 2 - np.abs(t)) / (dlt / 4), 0.0, 1.0)
        assert np.all((z > 0) & (z <= 1))
        want = out[:, 0, 0] + dl[idx, 0] * z
        du.apply_value_map(net, out, soft=True)
        np.testing.assert_allclose(out[:, 0, 0], want, rtol=1e-15, atol=0, err_msg=f"soft, s = {s}")
    # far from every node: nothing moves (below the first node, above the last, between two)
    out = np.array([nodes[0] - 5.0, nodes[-1] + 5.0, (nodes[1] + nodes[2]) / 2]).reshape(3, 1, 1)
    keep = out.copy()
    du.apply_value_map(net, out, soft=True)
    np.testing.assert_array_equal(out, keep)


def test_apply_value_map_multi_column_batch_and_layer_order():
    """(B, d, m) with m = 2, d = 2: each column moves independently to its target; moved columns stay put."""
    net = du.build_network(2, 1, 2)
    U = net.plan.unit
    u = np.array(net.plan.u, dtype=np.float64)
    rng = np.random.default_rng(3)
    pick = rng.choice(net.n_value_layers, 6, replace=False)
    nodes = net.node_ids[pick].astype(np.float64) / U
    dl = net.node_delta[pick].astype(np.float64) / U
    out = np.zeros((3, 2, 2))
    for c in range(6):
        b, j = divmod(c, 2)
        out[b, 0, j] = nodes[c]  # u^T x = node: x = (node, 0)
    want = out.copy()
    for c in range(6):
        b, j = divmod(c, 2)
        want[b, :, j] += dl[c]
    du.apply_value_map(net, out, soft=False)
    np.testing.assert_array_equal(out, want)
    assert np.all(np.einsum("i,bim->bm", u, out) < float(net.plan.t_bounds()[0]))


def test_apply_value_map_chain_of_layers_in_order():
    """A crafted net whose layers chain (node 0's target is node 1's window, ...): at most 3 events settle, in
    increasing layer order only; a 4th firing layer raises."""

    def fake(nodes_units, deltas_units):
        plan = SimpleNamespace(unit=4, u=(1,))
        return SimpleNamespace(plan=plan, K=2, node_ids=np.array(nodes_units), node_delta=np.array(deltas_units))

    # nodes 0, 4, 8 units (0, 1, 2), each layer adds +1 (4 units): a column at 0 fires 0 -> 1 -> 2, ends at 3
    net = fake([0, 4, 8], [[4], [4], [4]])
    out = np.zeros((1, 1, 1))
    du.apply_value_map(net, out, soft=False)
    assert out.ravel().tolist() == [3.0]
    # backwards: layer 2 sends to layer 0's window, which is earlier: no firing
    net = fake([0, 4, 8], [[4], [4], [-8]])
    out = np.full((1, 1, 1), 2.0)
    du.apply_value_map(net, out, soft=False)
    assert out.ravel().tolist() == [0.0]
    out = np.full((1, 1, 1), 1.0)  # fires 1 (-> 2), then 2 (-> 0), not 0 again
    du.apply_value_map(net, out, soft=False)
    assert out.ravel().tolist() == [0.0]
    net = fake([0, 4, 8, 12], [[4], [4], [4], [4]])
    with pytest.raises(AssertionError, match="did not settle"):
        du.apply_value_map(net, np.zeros((1, 1, 1)), soft=False)
    out = np.full((1, 1, 1), 1.0)
    du.apply_value_map(net, out, soft=False)  # 3 events from node 1: settles at 4
    assert out.ravel().tolist() == [4.0]


# ---------------------------------------------------------------------------------------------
# the softmax threshold, rounding floor, ramp width
# ---------------------------------------------------------------------------------------------


def _mp_amp_log(n, d, K):
    mpmath.mp.dps = 60
    Ls = n * K**d
    c = n * K ** ((n + 1) * d + 1)
    R = n * mpmath.mpf(K) ** ((n + 1) * d)
    return mpmath.log(2 * R * (1 + c) * mpmath.mpf(1 + 2 * K**d) ** Ls), mpmath.log(R), Ls, c


@pytest.mark.parametrize("d, n, K", [(1, 3, 2), (2, 5, 2), (1, 4, 3), (1, 1, 2), (3, 2, 5)])
def test_amplification_log_closed_form(d, n, K):
    plan = ss.ShiftPlan(d, n, K)
    want, logR, Ls, c = _mp_amp_log(n, d, K)
    assert du.amplification_log(plan) == pytest.approx(float(want), rel=1e-13, abs=0.0)
    # it bounds the exact Lambda = R [(1 + c)((1 + 2K^d)^Ls - 1) + c]
    lam_exact = mpmath.exp(logR) * ((1 + c) * (mpmath.mpf(1 + 2 * K**d) ** Ls - 1) + c)
    assert mpmath.log(lam_exact) <= du.amplification_log(plan) * (1 + 1e-15)


@pytest.mark.parametrize("d, n, K", [(1, 3, 2), (2, 5, 2), (1, 4, 3), (1, 1, 2), (1, 2, 2), (2, 2, 4)])
def test_lambda_threshold_closed_form_and_defaults(d, n, K):
    plan = ss.ShiftPlan(d, n, K)
    dl = 1.0 / K
    amp, logR, _, _ = _mp_amp_log(n, d, K)
    nm1 = mpmath.log(max(n - 1, 1))
    for tau in (dl / 4, 1e-3 * dl, 1e-9):
        want = (nm1 + amp - mpmath.log(tau)) / (mpmath.mpf(1) / 8 * mpmath.mpf(dl) ** 2)
        assert du.lambda_threshold(plan, tau) == pytest.approx(float(want), rel=1e-12, abs=0.0)
        assert du.lambda_threshold(plan, tau, with_amplification=True) == pytest.approx(float(want), rel=1e-12, abs=0.0)
        w2 = (nm1 + amp - mpmath.log(tau)) / (mpmath.mpf("0.25") * mpmath.mpf(dl) ** 2)
        assert du.lambda_threshold(plan, tau, 0.25) == pytest.approx(float(w2), rel=1e-12, abs=0.0)
        w3 = (nm1 + logR - mpmath.log(tau)) / (mpmath.mpf(1) / 8 * mpmath.mpf(dl) ** 2)
        assert du.lambda_threshold(plan, tau, with_amplification=False) == pytest.approx(float(w3), rel=1e-12, abs=0.0)


def test_lambda_threshold_tau_boundaries():
    plan = ss.ShiftPlan(1, 3, 4)
    du.lambda_threshold(plan, 1 / 16)  # tau = delta/4 is allowed
    du.lambda_threshold(plan, 1e-300)
    for tau in (0.0, -1e-3, np.nextafter(1 / 16, 1), 0.5, 1.0):
        with pytest.raises(ValueError, match="tau must satisfy"):
            du.lambda_threshold(plan, tau)


@pytest.mark.parametrize("size", [(1, 1, 2), (2, 1, 2), (1, 1, 3)])
def test_float_rounding_floor_formula(size):
    net = du.build_network(*size)
    d, m, K = size
    n = net.n
    t_r = n * n * K ** (2 * (n + 1) * d + 1) + n * K ** ((n + 1) * d)
    L_att = n * K**d + 1
    assert du.float_rounding_floor(net) == pytest.approx(8 * U64 * t_r * (L_att + 4), rel=1e-15, abs=0.0)
    assert du.float_rounding_floor(net, None) == pytest.approx(8 * U64 * t_r * (L_att + 4), rel=1e-15, abs=0.0)
    assert du.float_rounding_floor(net, 1e-3) == pytest.approx(8e-3 * t_r * (L_att + 4), rel=1e-15, abs=0.0)
    typo = du.build_network(*size, typo_t_l=True)
    assert du.float_rounding_floor(typo) == du.float_rounding_floor(net)


@pytest.mark.parametrize("size, p", [((1, 2, 2), 1.0), ((1, 2, 2), 2.0), ((2, 1, 2), 3.0), ((1, 1, 3), 1.5)])
def test_ramp_width_and_term_closed_form(size, p):
    net = du.build_network(*size)
    d, m, K = size
    U = 2 * K
    max_delta = Fraction(max(abs(int(v)) for v in net.node_delta.ravel()), U)
    M = net.m * K ** (d * net.n)
    dm = mpmath.mpf(d * m)
    B_R = dm ** (1 / mpmath.mpf(p)) * (
        mpmath.mpf(net.cleanup_M) + M * mpmath.mpf(max_delta.numerator) / max_delta.denominator
    )
    for eps in (0.5, 0.01):
        eta = (mpmath.mpf(eps) / 4) ** p / (d * m * K * (B_R + dm ** (1 / mpmath.mpf(p))) ** p)
        got = du.ramp_width_for(net, eps, p)
        assert got == pytest.approx(float(eta), rel=1e-12, abs=0.0), f"ramp_width_for(eps={eps}, p={p})"
        # the ramp term at that width is eps/4 (the documented budget), for any other width the closed form
        assert du.ramp_term(net, got, p) == pytest.approx(eps / 4, rel=1e-12, abs=0.0)
        for e2 in (1e-6, 3e-3):
            t = (d * m * K * mpmath.mpf(e2)) ** (1 / mpmath.mpf(p)) * (B_R + dm ** (1 / mpmath.mpf(p)))
            assert du.ramp_term(net, e2, p) == pytest.approx(float(t), rel=1e-12, abs=0.0)


# ---------------------------------------------------------------------------------------------
# second pass: the survivors of the first in-process mutation run
# ---------------------------------------------------------------------------------------------


def _fake_ramp_net(d, m, K, M_clean, n_layers, max_units, U):
    return SimpleNamespace(
        d=d,
        m=m,
        K=K,
        cleanup_M=M_clean,
        n_value_layers=n_layers,
        node_delta=np.array([[max_units], [-1]] + [[0]] * (n_layers - 2)),
        plan=SimpleNamespace(unit=U),
    )


@pytest.mark.parametrize("d, m, K, p", [(1, 2, 2, 1.0), (1, 3, 2, 2.0), (2, 1, 4, 3.0), (3, 2, 3, 1.5)])
def test_ramp_width_and_term_with_a_small_bound(d, m, K, p):
    """B_R comparable to (dm)^{1/p}: every term of the closed form shows (cleanup_M = 0.5, 3 layers, |A - Z| = 1)."""
    net = _fake_ramp_net(d, m, K, 0.5, 3, 2 * K, 2 * K)
    mpmath.mp.dps = 40
    dm, pp = mpmath.mpf(d * m), mpmath.mpf(p)
    B_R = dm ** (1 / pp) * (mpmath.mpf("0.5") + 3 * 1)
    for eps in (0.5, 0.01):
        eta = (mpmath.mpf(eps) / 4) ** pp / (d * m * K * (B_R + dm ** (1 / pp)) ** pp)
        assert du.ramp_width_for(net, eps, p) == pytest.approx(float(eta), rel=1e-13, abs=0.0)
        term = (d * m * K * mpmath.mpf(1e-4)) ** (1 / pp) * (B_R + dm ** (1 / pp))
        assert du.ramp_term(net, 1e-4, p) == pytest.approx(float(term), rel=1e-13, abs=0.0)


def test_hard_network_ignores_eta_q_inside_the_ramps():
    net = du.build_network(1, 1, 2)
    P = np.array([[0.25, 0.75]])
    on = np.array([[[0.5 - 0.05]], [[1.0 - 0.05]], [[0.0 - 0.02]]])  # inside zeta_2 / zeta_1 ramps of width 0.1
    exact = du.exact_outputs(net, P, on).astype(np.float64) / net.plan.unit
    np.testing.assert_array_equal(du.float_outputs(net, P, on, du.SoftParams(None, 0.1)), exact)
    np.testing.assert_array_equal(
        du.float_outputs(net, np.array([[-0.002, 0.25]]), on, du.SoftParams(None, 0.1)),
        du.exact_outputs(net, np.array([[-0.002, 0.25]]), on).astype(np.float64) / 4,
    )


def test_soft_zeta1_left_ramp_against_reference():
    """A prompt entry in zeta_1's left ramp (-eta, 0): the entry becomes t J / eta (not t - ...)."""
    net = du.build_network(1, 1, 2)
    lam = du.lambda_threshold(net.plan, 1e-4)
    X = np.array([[[0.5]], [[0.0]], [[0.97]]])
    for s in (0.002, 0.001, 0.05):
        P = np.array([[-s, 0.25]])
        got = du.float_outputs(net, P, X, du.soft_params(lam, 0.1))
        ref = _reference_forward(net, P, X, lam, 0.1)
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=64 * _floor(net), err_msg=f"s = {s}")


def _naive_value_map(net, out, soft):
    """Each layer once, in increasing node order, on every column (the network's definition)."""
    U = net.plan.unit
    u = np.array(net.plan.u, dtype=np.float64)
    o = out.copy()
    for node, dlt in zip(net.node_ids.tolist(), net.node_delta.tolist(), strict=True):
        z = zeta5(np.einsum("i,bim->bm", u, o) - node / U, 1.0 / net.K, soft)
        o = o + (np.array(dlt, dtype=np.float64) / U)[None, :, None] * z[:, None, :]
    return o


def test_apply_value_map_partial_firing_never_repeats_a_layer():
    """Soft zeta_5 moves a column by a fraction of A - Z: if it is still in the same window, that layer must not
    fire again (each layer is applied once); the next layer still may."""
    plan = SimpleNamespace(unit=4, u=(1,))
    net = SimpleNamespace(plan=plan, K=2, node_ids=np.array([0, 4, 8]), node_delta=np.array([[-1], [-1], [-1]]))
    for x0 in (0.2, 0.22, 1.2, 2.2, 0.9, 1.9, -0.2, 0.8):
        out = np.full((1, 1, 1), x0)
        want = _naive_value_map(net, out, True)
        du.apply_value_map(net, out, soft=True)
        np.testing.assert_allclose(out, want, rtol=1e-15, atol=1e-15, err_msg=f"start {x0}")
    out = np.full((1, 1, 1), 0.2)
    du.apply_value_map(net, out, soft=True)
    assert out.ravel().tolist() == pytest.approx([0.1], rel=1e-12, abs=0.0), "layer 0 fired twice"


def test_exact_outputs_id_above_every_node_inside_t_bounds():
    """A shifted-band sequence with t_l <= id <= t_r above the largest node: no layer fires (no index error)."""
    net = du.build_network(1, 1, 2)
    P, X = np.array([[0.5, 1.5]]), np.array([[[-2.0]]])
    out = du.exact_outputs(net, P, X)
    U = net.plan.unit
    cells, invalid = du._sequence_cells(net, P, X)
    q = ss.contextual_ids(ss.ids_from_cells(np.where(invalid, 0, cells), net.plan, invalid), net.plan)
    assert int(q[0, 2]) > int(net.node_ids.max()) and net.t_bounds[0] <= Fraction(int(q[0, 2]), U) <= net.t_bounds[1]
    assert out.tolist() == [[[int(q[0, 2])]]]  # d = 1: the entry is the id itself
    np.testing.assert_array_equal(du.float_outputs(net, P, X), out.astype(np.float64) / U)


class _SmallM(du.DeepNetwork):
    """The built network with the cleanup constant M replaced by a small one: the (M + 1) of the cleanup layer
    then shows in the outputs of the sequences it cleans."""

    cleanup_M = 10.0


def _small_m(size):
    n = du.build_network(*size)
    return _SmallM(n.d, n.m, n.K, n.plan, n.node_ids, n.node_delta)


def test_cleanup_subtracts_M_plus_one_then_clamps_at_zero():
    net = _small_m((1, 1, 2))
    rng = np.random.default_rng(11)
    P = rng.integers(-4, 5, size=(40, 1, 2)) / 2
    X = rng.integers(-4, 5, size=(40, 1, 1)) / 2
    U = net.plan.unit
    seen = 0
    for b in range(40):
        raw = du.exact_outputs(net, P[b], X[b : b + 1], skip_cleanup=True)[0, 0, 0]
        cleaned = du.exact_outputs(net, P[b], X[b : b + 1])[0, 0, 0]
        got = du.float_outputs(net, P[b], X[b : b + 1])[0, 0, 0]
        if cleaned == 0 and raw != 0:  # cleaned: raw/U - (M + 1), clamped at 0
            want = max(raw / U - 11.0, 0.0)
            seen += want > 0
        else:
            want = cleaned / U
        assert got == want, f"P = {P[b].tolist()}, X = {X[b].tolist()}: {got} != {want}"
    assert seen >= 3, "no cleaned sequence kept a positive entry"


def _ref_ids(net, P, x, lam):
    """Ids u^T Z of the softmax network before the cleanup layer (one sequence, layer by layer)."""
    d, n, K, plan = net.d, net.n, net.K, net.plan
    Z = np.ones((d + 1, n))
    Z[:d] = np.concatenate([P, x], axis=1) + np.arange(n)[None, :]
    for i in range(d):
        Z[i] = Z[i] + zeta1(Z[i], n, float(plan.J), 0.0)
        for k in range(n * K):
            Z[i] = Z[i] + zeta2(Z[i] - k / K, 1.0 / K, 0.0)
    for heads in ss.all_shift_layers(plan, float(lam)):
        Z = Z + attention(heads, Z, Z, hard=False)
    return np.array([K**i for i in range(d)], dtype=np.float64) @ Z[:d]


def _lam_for_id(net, P, x, col, target, lo, hi):
    """Bisection on lam: the scored column's softmax id crosses target between lam = lo and hi."""
    f_lo = _ref_ids(net, P, x, lo)[col] - target
    f_hi = _ref_ids(net, P, x, hi)[col] - target
    assert f_lo * f_hi < 0, f"no crossing of {target} in [{lo}, {hi}]: {f_lo}, {f_hi}"
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        fm = _ref_ids(net, P, x, mid)[col] - target
        if fm * f_lo > 0:
            lo, f_lo = mid, fm
        else:
            hi = mid
    return lo


def test_soft_cleanup_ramps_and_soft_value_window_against_reference():
    """lam chosen so that a scored id sits (a) in [t_l - delta/2, t_l) where soft zeta_3 = 0 (hard: 1), (b) in the
    middle of zeta_3's ramp, (c) 3 delta/8 below its node, inside soft zeta_5's ramp (hard zeta_5 = 1)."""
    base = du.build_network(1, 1, 2)
    net = _small_m((1, 1, 2))
    P, x = np.array([[0.25, 0.25]]), np.array([[0.0]])
    dl = 0.5
    ls = du.lambda_threshold(base.plan, 1e-4)
    t_l = float(base.t_bounds[0])
    for target in (t_l - dl / 4, t_l - 3 * dl / 4):
        lam = _lam_for_id(net, P, x, 2, target, ls * 2**-14, ls * 2**-12)
        q = _ref_ids(net, P, x, lam)[2]
        assert abs(q - target) < 1e-6
        got = du.float_outputs(net, P, x[None], du.soft_params(lam))
        ref = _reference_forward(net, P, x[None], lam)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6, err_msg=f"id {q} (t_l = {t_l})")
        r = float(zeta3(np.array(q), t_l, float(base.t_bounds[1]), dl, soft=True))
        want = max(q - 11.0 * r, 0.0)  # x - (M + 1) zeta_3, clamped by zeta_4 (d = 1: the entry is the id)
        assert abs(got[0, 0, 0] - want) <= 1e-6, f"cleanup at id {q}: {got[0, 0, 0]} != {want}"
    node = float(_reference_forward(base, P, x[None], None)[0, 0, 0])  # the hardmax output (the table target)
    hard_id = _ref_ids(base, P, x, ls)[2]
    lam = _lam_for_id(base, P, x, 2, hard_id - 3 * dl / 8, ls * 2**-12, ls)
    got = du.float_outputs(base, P, x[None], du.soft_params(lam))
    ref = _reference_forward(base, P, x[None], lam)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-2)
    assert abs(got[0, 0, 0] - node) > 1.0, "the half-fired layer should leave the column off its target"


class _TightT(du.DeepNetwork):
    """The built network with [t_l, t_r] replaced (tb, in units): the cleanup keeps the closed interval."""

    tb = (0, 0)

    @property
    def t_bounds(self):
        U = self.plan.unit
        return Fraction(self.tb[0], U), Fraction(self.tb[1], U)


def test_cleanup_interval_is_closed_at_both_ends():
    """t_l and t_r set to the ids of the extreme sequences with a nonzero target: those are kept (closed interval),
    the sequences outside are cleaned to 0."""
    n0 = du.build_network(1, 1, 2)
    G = _grid_cells(1, 1, 2) / 2
    prompts = _all_prompts(1, n0.m_p, 2)  # the 4 prompts x 2 inputs are all 8 valid sequences
    ids, wants = [], []
    for P in prompts:
        cells, _ = du._sequence_cells(n0, P, G)
        ids.append(ss.contextual_ids(ss.ids_from_cells(cells, n0.plan), n0.plan)[:, n0.m_p].astype(np.int64))
        wants.append(_expected_units(P, G, 1, 1, 2))
    ids, wants = np.stack(ids), np.stack(wants)
    nz = ids[wants[..., 0, 0] != 0]
    net = type("_T", (_TightT,), {"tb": (int(nz.min()), int(nz.max()))})(
        n0.d, n0.m, n0.K, n0.plan, n0.node_ids, n0.node_delta
    )
    for P, qi, w in zip(prompts, ids, wants, strict=True):
        keep = (qi >= net.tb[0]) & (qi <= net.tb[1])
        want = np.where(keep[:, None, None], w, 0)
        np.testing.assert_array_equal(du.exact_outputs(net, P, G).astype(np.int64), want)
        np.testing.assert_array_equal(du.float_outputs(net, P, G) * net.plan.unit, want)
