"""Contextual-mapping constructions (hu2024.md §2.3): bad inputs, the float64 collision, arb certification."""

from __future__ import annotations

import math

import numpy as np
import pytest

from constructions import contextual as cm
from properties.contextual_rank import float64_collisions

V1 = np.array([[-2.0, 1.0, 2.0, 3.0]])


def test_duplicate_token_rejected():
    X = np.array([[1.0, 2.0, 1.0]])
    with pytest.raises(ValueError, match="duplicate token"):
        cm.lemma_d([X])


def test_separation_hypothesis_rejected():
    seqs = cm.duplicate_free_sequences(V1, 2)
    with pytest.raises(ValueError, match="separation hypothesis"):
        cm.lemma_d(seqs, eps=1.5)  # tokens are only 1-separated


def test_zero_token_and_short_sequences_rejected():
    with pytest.raises(ValueError, match="r_min"):
        cm.lemma_d([np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])])
    with pytest.raises(ValueError, match="n >= 2"):
        cm.lemma_d([np.array([[1.0]]), np.array([[2.0]])])


def test_projection_constant_above_measured_rejected():
    seqs = cm.duplicate_free_sequences(V1, 2)
    with pytest.raises(ValueError, match="c_emp"):
        cm.lemma_d(seqs, c=1.5)


def test_boltzmann_separation_hypothesis_checked():
    with pytest.raises(ValueError, match="duplicate entry"):
        cm.check_entrywise_separated([[1.0, 1.0, 9.0]], 1.0)
    with pytest.raises(ValueError, match="separated"):
        cm.check_entrywise_separated([[0.0, 1.0], [5.0, 9.0]], cm.boltzmann_separation_threshold(2))


def test_closed_form_matches_general_formula_at_c_theory():
    seqs = cm.duplicate_free_sequences(V1, 3)
    h = cm.lemma_d(seqs, c="theory")
    ctx = cm.mp_context(60)
    # c is stored as a float64, so the two agree to float64 relative precision
    assert abs(h.log_delta(ctx) - h.log_delta_closed(ctx)) < 1e-14 * abs(h.log_delta(ctx))


def test_float64_collides_where_mpmath_separates():
    """The negative control (hu2024.md §5 item 12): float64 outputs of distinct contexts are bit-identical."""
    seqs = cm.duplicate_free_sequences(V1, 2)
    h = cm.lemma_d(seqs, c="empirical", xi_factor=4.0)
    ctx = h.context()
    identical, below, total, log10_gap, log10_floor = float64_collisions(h, seqs, ctx)
    assert total > 0 and identical > 0, "float64 should collapse some same-token/different-context pairs"
    assert log10_gap < log10_floor  # the true gap lies below float64's rounding floor
    g = cm.measure_gaps(h, seqs, ctx)
    assert g.log_min_same_token > h.log_delta(ctx)  # mpmath separates them, above Lemma D's floor
    assert g.log_min_same_token > -math.inf


@pytest.mark.exact
def test_arb_certifies_the_gap():
    pytest.importorskip("flint", reason="python-flint (the 'exact' extra) is not installed: no arb certification")
    seqs = cm.duplicate_free_sequences(V1, 2)
    h = cm.lemma_d(seqs, c="empirical", xi_factor=4.0)
    ctx = h.context()
    cert = cm.certify_gaps_arb(h, seqs)
    floor10 = float(h.log_delta(ctx)) / math.log(10)
    assert cert["certified_log10_min_same"] > floor10
    mp10 = float(cm.measure_gaps(h, seqs, ctx).log_min_same_token) / math.log(10)
    assert abs(cert["certified_log10_min_same"] - mp10) < 1e-6
    assert cert["max_radius_log10"] < mp10 - 50  # the balls are far narrower than the gap


def test_any_rank_padding_is_exact():
    seqs = cm.duplicate_free_sequences(np.array([[1.0, 2.0, -1.5], [0.5, -1.0, 1.0]]), 2)
    h = cm.lemma_d(seqs, c="empirical")
    ctx = h.context()
    W = h.weights(s=3, rank=2, rng=np.random.default_rng(1))
    assert np.linalg.matrix_rank(W[1]) == 2
    for X in seqs:
        a, la = h.apply_general_mp(X, ctx, *W)
        b, lb = h.apply_general_mp(X, ctx, *h.weights(s=1))
        assert a == b and la == lb
