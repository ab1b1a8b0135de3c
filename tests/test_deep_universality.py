"""Invariants of the Yun-style deep construction (constructions.selective_shift, constructions.deep_universality)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from constructions import deep_universality as du
from constructions import selective_shift as ss
from constructions.lipschitz import random_lipschitz
from constructions.transformer import attention


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="K = 1/delta >= 2"):
        ss.ShiftPlan(1, 3, 1)
    with pytest.raises(ValueError, match="eps must be > 0"):
        du.choose_K(1.0, 1, 1, 1.0, 0.0)
    with pytest.raises(ValueError, match="1 <= p"):
        du.choose_K(1.0, 1, 1, 0.5, 0.1)
    with pytest.raises(ValueError, match="tau must satisfy"):
        du.lambda_threshold(ss.ShiftPlan(1, 3, 2), 0.5)
    with pytest.raises(ValueError, match="dyadic"):
        net = du.build_network(1, 1, 3)
        du.float_outputs(net, np.full((1, 3), 0.5), np.zeros((1, 1, 1)))
    with pytest.raises(ss.TooLarge, match=r"8\^9"):
        du.build_network(1, 1, 8)
    with pytest.raises(ValueError, match="K >= 2"):
        du.resource_counts(1, 1, 1)


@pytest.mark.parametrize(
    "size, att, vm", [((1, 1, 2), 7, 8), ((2, 1, 2), 21, 1024), ((1, 2, 2), 21, 2048), ((1, 1, 5), 31, 15625)]
)
def test_built_counts_match_formula_and_digest(size, att, vm):
    net = du.build_network(*size)
    c = net.counts()
    rc = du.resource_counts(*size)
    assert c["attention_layers"] == rc["attention_layers"] == att
    assert c["value_map_ffn_layers"] == rc["value_map_ffn_layers"] == vm
    assert c["quantization_ffn_layers"] == rc["quantization_ffn_layers"]
    assert c["L_p"] == rc["L_p"] and c["n"] == rc["n"]


@pytest.mark.parametrize(
    "size, gap",
    [((1, 2, 2), "1/2"), ((1, 3, 2), "2"), ((2, 2, 2), "27/2"), ((1, 3, 3), "6"), ((1, 4, 2), "4"), ((2, 3, 2), "45")],
)
def test_contextual_gaps_match_digest_and_typo_breaks_p3(size, gap):
    plan = ss.ShiftPlan(*size)
    q = ss.contextual_ids(ss.ids_from_cells(ss.enumerate_cells(*size), plan), plan)
    r = ss.contextual_report(plan, q)
    assert r.min_gap == Fraction(gap)
    assert r.distinct_violations == r.p3_violations == 0
    if size in ((1, 2, 2), (2, 2, 2), (1, 3, 3), (2, 3, 2)):
        assert ss.contextual_report(plan, q, typo=True).p3_violations > 0


def test_batched_attention_matches_shared_attention():
    plan = ss.ShiftPlan(1, 3, 2)
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.integers(0, 8, size=(4, 1, 3)) / 2.0, np.ones((4, 1, 3))], axis=1)
    for heads in ss.all_shift_layers(plan, lam=3.0)[:3] + ss.all_shift_layers(plan)[-1:]:
        for hard in (True, False):
            got = ss.batched_attention(heads, Z, hard=hard)
            for b in range(4):
                ref = attention(heads, Z[b], Z[b], hard=hard)
                np.testing.assert_allclose(got[b], ref, rtol=1e-13, atol=1e-9)


@pytest.mark.parametrize("size", [(1, 1, 2), (1, 1, 4), (2, 1, 2), (1, 2, 2)])
def test_weight_level_hardmax_equals_exact_evaluator(size):
    d, m, K = size
    net = du.build_network(*size)
    rng = np.random.default_rng(1)
    P = (rng.integers(0, K, size=(d, net.m_p)) + 0.5) / K
    X = np.concatenate([du.grid_inputs(d, m, K), rng.uniform(0, 1, size=(20, d, m))])
    exact = du.exact_outputs(net, P, X).astype(np.float64) / net.plan.unit
    np.testing.assert_array_equal(du.float_outputs(net, P, X), exact)


def test_value_map_shortcut_equals_sequential_layers():
    """All m K^{dn} value-map layers applied one after the other (hard zeta_5, exact ints) = the lookup."""
    net = du.build_network(1, 1, 2)
    plan, U = net.plan, net.plan.unit
    f = random_lipschitz(3, 1, 1, 1.0, 1.0, "permutation")
    P = du.wang_table_prompt(f, 1, 1, 2)
    X = du.grid_inputs(1, 1, 2)
    cells, invalid = du._sequence_cells(net, P, X)
    ids0 = ss.ids_from_cells(cells, plan)
    q = ss.contextual_ids(ids0, plan)
    col = net.m_p
    Z = (U * col + 2 * cells[:, :, col]).astype(object)
    Z[:, 0] += q[:, col] - ids0[:, col]
    for node, dlt in zip(net.node_ids, net.node_delta, strict=True):
        qq = Z[:, 0] * 1  # d = 1: u^T z is the single entry
        fire = (qq >= node - 1) & (qq < node + 1)
        Z = Z + np.outer(fire.astype(object), dlt.astype(object))
    np.testing.assert_array_equal(Z, du.exact_outputs(net, P, X)[:, :, 0])
    np.testing.assert_array_equal(Z, du.fbar_units(f, X, 2)[:, :, 0])


def test_relu_forms_agree_with_piecewise_zetas():
    t = np.linspace(-3, 9, 24001)
    dl, eta, n, J = 0.25, 0.01, 5, 40.0
    pairs = [
        (du.relu_form("zeta1", n=n, J=J, eta=eta), du.zeta1(t, n, J, eta)),
        (du.relu_form("zeta2", delta=dl, eta=eta), du.zeta2(t, dl, eta)),
        (du.relu_form("zeta3", t_l=1.0, t_r=6.0, delta=dl), du.zeta3(t, 1.0, 6.0, dl, soft=True)),
        (du.relu_form("zeta4"), du.zeta4(t)),
        (du.relu_form("zeta5", delta=dl), du.zeta5(t, dl, soft=True)),
    ]
    for form, ref in pairs:
        assert len(form[0]) <= 4
        np.testing.assert_allclose(du.relu_eval(form, t), ref, atol=1e-9)
    # one residual construction layer as a transformer.MLP: x + v zeta_5(a^T x - c)
    mlp = du.ff_layer_mlp([1.0, 0.0], 2.0, [0.5, 0.0], du.relu_form("zeta5", delta=dl))
    Xc = np.stack([t[:200] + 2.0, np.ones(200)])
    expect = Xc.copy()
    expect[0] += 0.5 * du.zeta5(t[:200], dl, soft=True)
    np.testing.assert_allclose(mlp(Xc), expect, atol=1e-12)


def test_soft_zetas_equal_hard_on_lattice():
    """The ramps sit where the hardmax network's lattice values never fall: soft = hard on multiples of delta."""
    K = 4
    dl = 1.0 / K
    t = np.arange(-40, 41) * dl
    np.testing.assert_array_equal(du.zeta2(t, dl, 1e-3), du.zeta2(t, dl))
    np.testing.assert_array_equal(du.zeta1(t, 3, 50.0, 1e-3), du.zeta1(t, 3, 50.0))
    np.testing.assert_array_equal(du.zeta3(t, 2.0, 5.0, dl, soft=True), du.zeta3(t, 2.0, 5.0, dl))
    np.testing.assert_array_equal(du.zeta5(t, dl, soft=True), du.zeta5(t, dl))


def test_softmax_error_vanishes_above_threshold_and_fails_far_below():
    net = du.build_network(1, 1, 4)
    P = (np.arange(net.m_p)[None] % 4 + 0.5) / 4
    G = du.grid_inputs(1, 1, 4)
    hard = du.float_outputs(net, P, G)
    lam = du.lambda_threshold(net.plan, 1e-4)
    assert np.max(np.abs(du.float_outputs(net, P, G, du.soft_params(lam)) - hard)) <= 1e-4
    assert np.max(np.abs(du.float_outputs(net, P, G, du.soft_params(lam / 64)) - hard)) > 1.0


def test_network_does_not_depend_on_f():
    """Two targets, one cached network: only the prompt changes, and each prompt reproduces its own fbar."""
    net = du.build_network(2, 1, 2)
    G = du.grid_inputs(2, 1, 2)
    for seed in (0, 1):
        f = random_lipschitz(seed, 2, 1, 1.5, 1.0, "bump_sum")
        out = du.exact_outputs(net, du.wang_table_prompt(f, 2, 1, 2), G)
        np.testing.assert_array_equal(out.astype(np.int64), du.fbar_units(f, G, 2))


def test_comparison_table_has_both_constructions():
    import properties.deep_resource_counts  # noqa: F401  (registers the table)
    import verify

    headers, rows, notes = verify.TABLES["wang23_vs_hu24"].fn()
    names = {r[5] for r in rows}
    assert any(s.startswith("Wang23") for s in names) and any(s.startswith("Hu24") for s in names)
    assert all(len(r) == len(headers) for r in rows)


def _reaches(strategy, condition, n=400):
    from hypothesis import HealthCheck, find, settings

    return find(strategy, condition, settings=settings(max_examples=n, database=None,
                                                       suppress_health_check=list(HealthCheck)))


def test_value_map_lookup_needs_the_lower_neighbour():
    """A column just above a node (soft zeta_5, s > 0) sits above it in the sorted ids: searchsorted points at the
    next node, so only the node below carries the update."""
    net = du.build_network(1, 1, 4)
    U = net.plan.unit
    nodes = net.node_ids.astype(np.float64) / U
    out = np.zeros((3, 1, 1))
    out[:, 0, 0] = nodes[[0, 5, 9]] + 0.2 / 4
    want = out[:, :, 0] + net.node_delta[[0, 5, 9]].astype(np.float64) / U
    du.apply_value_map(net, out, soft=True)
    np.testing.assert_array_equal(out[:, :, 0], want)
    assert du._value_map_events is du.apply_value_map


def test_strategies_reach_their_tight_regimes():
    import verify
    from properties.deep_universality import check_surrogate_bound, surrogate_instances
    from properties.deep_value_map import value_map_instances

    b = verify.Backend()
    _reaches(surrogate_instances, lambda i: i["kind"] == "adversarial" and check_surrogate_bound(i, b).ratio > 0.999)
    _reaches(value_map_instances(), lambda i: i["soft"] and max(i["s"]) > 0.2 and tuple(i["size"]) == (1, 2, 2))


def test_n_sequences_is_the_enumerated_count():
    for d, n, K in ((1, 2, 3), (2, 2, 2), (1, 4, 2)):
        plan = ss.ShiftPlan(d, n, K)
        assert plan.n_sequences == len(ss.enumerate_cells(d, n, K)) == len(set(map(tuple, ss.enumerate_cells(
            d, n, K).reshape(-1, d * n).tolist())))
