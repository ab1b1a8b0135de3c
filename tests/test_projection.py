"""constructions.projection against brute force: vocabulary, separation, c_emp over V u {0}, the pair budgets and
the rejection sampler's defaults (hu2024.md §2.3 Lemma D)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from constructions import projection as pj


def _brute_c(w, V):
    U = [np.asarray(V[:, j], dtype=np.float64) for j in range(V.shape[1])] + [np.zeros(V.shape[0])]
    out = math.inf
    for a, b in itertools.combinations(U, 2):
        n = float(np.linalg.norm(a - b))
        if n > 0:
            out = min(out, abs(float(np.dot(w, a - b))) / n)
    return out


def test_columns_and_vocabulary():
    X = np.array([[1, 2, 1], [0, 5, 0]])
    cols = pj.columns(X)
    assert cols == [(1.0, 0.0), (2.0, 5.0), (1.0, 0.0)] and all(isinstance(v, float) for c in cols for v in c)
    with pytest.raises(ValueError, match="d x n"):
        pj.columns(np.zeros(3))
    V = pj.vocabulary([X, np.array([[7, 2], [7, 5]])])
    assert V.dtype == np.float64 and V.tolist() == [[1.0, 2.0, 7.0], [0.0, 5.0, 7.0]]  # first-seen order
    pj.check_no_duplicates([np.array([[1.0, 2.0]])])
    with pytest.raises(ValueError, match="sequence 1"):
        pj.check_no_duplicates([np.array([[1.0, 2.0]]), X])


def test_separation_values_and_budget(monkeypatch):
    V = np.array([[3.0, 0.0, 0.0], [4.0, 1.0, 0.5]])
    assert pj.separation(V) == (0.5, 5.0, 0.5)
    assert pj.separation(np.array([[2], [0]])) == (2.0, 2.0, math.inf)  # one token: no pair
    monkeypatch.setattr(pj, "MAX_VOCAB_PAIRS", 6)  # m = 3: m(m+1)/2 = 6 pairs, at the budget
    pj.separation(V)
    monkeypatch.setattr(pj, "MAX_VOCAB_PAIRS", 5)
    with pytest.raises(ValueError, match="6 pairs exceed budget 5"):
        pj.separation(V)


def test_projection_constant_is_the_brute_force_minimum(monkeypatch):
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, m = int(rng.integers(2, 5)), int(rng.integers(1, 7))
        V = rng.normal(size=(d, m)) * rng.uniform(0.05, 3.0)
        w = pj.random_unit(rng, d)
        assert np.linalg.norm(w) == pytest.approx(1.0, abs=1e-15)
        assert pj.projection_constant(w, V) == pytest.approx(_brute_c(w, V), rel=1e-12)
    # neighbouring columns hold the closest pair; pairs closer than 1 count; a zero and a repeated token are skipped
    V = np.array([[1.0, 1.2, 5.0, 0.0, 5.0], [0.0, 0.1, 4.0, 0.0, 4.0]])
    w = np.array([0.6, 0.8])
    got = pj.projection_constant(w, V)
    assert np.isfinite(got) and got == pytest.approx(_brute_c(w, V), rel=1e-12)
    monkeypatch.setattr(pj, "MAX_VOCAB_PAIRS", 15)  # |V| + 1 = 6 points: 15 pairs
    pj.projection_constant(w, V)
    monkeypatch.setattr(pj, "MAX_VOCAB_PAIRS", 14)
    with pytest.raises(ValueError, match="15 vocabulary pairs exceed budget 14"):
        pj.projection_constant(w, V)


def test_c_theory_and_the_sampler_defaults():
    assert pj.c_theory(3, 2) == 4.0**-2 * math.sqrt(8.0 / (math.pi * 2))
    assert pj.c_theory(0, 8) == math.sqrt(1.0 / math.pi)
    w, c, tries = pj.separating_projection(np.array([[0.5, 2.0]]), np.random.default_rng(0))
    assert w.tolist() == [1.0] and c == 1.0 and tries == 0
    rng = np.random.default_rng(1)
    V = rng.normal(size=(3, 4))
    w, c, tries = pj.separating_projection(V, np.random.default_rng(2))
    w2, c2, tries2 = pj.separating_projection(V, np.random.default_rng(2), c=pj.c_theory(4, 3))
    assert c >= pj.c_theory(4, 3) and (w.tolist(), c, tries) == (w2.tolist(), c2, tries2)
    assert c == pj.projection_constant(w, V)
    w0, c0, t0 = pj.separating_projection(V, np.random.default_rng(3), c=0.0)  # the first draw is accepted
    assert t0 == 1 and w0.tolist() == pj.random_unit(np.random.default_rng(3), 3).tolist()
    _, cb, tb = pj.separating_projection(V, np.random.default_rng(3), c=0.0, best_of=5)
    draws = np.random.default_rng(3)
    assert tb == 5 and cb == max(pj.projection_constant(pj.random_unit(draws, 3), V) for _ in range(5))
    with pytest.raises(ValueError, match="no c-separating projection"):
        pj.separating_projection(V, np.random.default_rng(0), c=2.0, max_tries=3)


def test_permutations_same_token_pairs_and_sequences():
    A, B = np.array([[1.0, 2.0]]), np.array([[2.0, 1.0]])
    C = np.array([[1.0, 3.0]])
    assert pj.is_permutation(A, B) and not pj.is_permutation(A, C)
    assert list(pj.same_token_pairs([A, B, C])) == [((0, 0), (2, 0)), ((1, 1), (2, 0))]
    V = np.array([[1.0, 2.0, 3.0]])
    seqs = pj.duplicate_free_sequences(V, 2)
    assert len(seqs) == 6 and all(len(set(s[0].tolist())) == 2 for s in seqs)
    some = pj.duplicate_free_sequences(V, 2, limit=4, rng=np.random.default_rng(0))
    assert len(some) == 4 and all(s.shape == (1, 2) and len(set(s[0].tolist())) == 2 for s in some)
    assert len(pj.duplicate_free_sequences(V, 3, limit=6)) == 6  # total <= limit: all of them
    with pytest.raises(ValueError, match="length 4 over 3 tokens"):
        pj.duplicate_free_sequences(V, 4)


def test_float32_tokens_are_measured_in_float64():
    rng = np.random.default_rng(4)
    V = rng.normal(size=(3, 5)).astype(np.float32)
    w = pj.random_unit(rng, 3).astype(np.float32)
    V64, w64 = V.astype(np.float64), w.astype(np.float64)
    assert pj.separation(V) == pj.separation(V64)
    assert pj.projection_constant(w, V) == pj.projection_constant(w64, V64)
    assert pj.separating_projection(V, np.random.default_rng(0))[1] == \
        pj.separating_projection(V64, np.random.default_rng(0))[1]
    assert pj.separation(np.array([[0.0, 3.0], [0.0, 4.0]])) == (0.0, 5.0, 5.0)  # two tokens: one pair


def test_duplicate_free_sequences_all_or_sampled():
    V = np.array([[1, 2, 3, 4]])  # integer tokens come back as float64 sequences
    allp = pj.duplicate_free_sequences(V, 2, limit=12)  # 4 * 3 = 12 <= limit: every sequence, in order
    assert [s[0].tolist() for s in allp] == [[float(a), float(b)] for a, b in itertools.permutations([1, 2, 3, 4], 2)]
    assert all(s.dtype == np.float64 for s in allp)
    some = pj.duplicate_free_sequences(V, 2, limit=11)  # sampled with the default rng, default_rng(0)
    want = pj.duplicate_free_sequences(V, 2, limit=11, rng=np.random.default_rng(0))
    assert len(some) == 11 and [s.tolist() for s in some] == [s.tolist() for s in want]


def test_separating_projection_counts_its_draws():
    V = np.random.default_rng(1).normal(size=(3, 4))
    with pytest.raises(ValueError, match="in 200 draws"):  # the default max_tries
        pj.separating_projection(V, np.random.default_rng(0), c=2.0)
    rng, fresh = np.random.default_rng(5), np.random.default_rng(5)
    with pytest.raises(ValueError, match="in 3 draws"):
        pj.separating_projection(V, rng, c=2.0, max_tries=3)
    for _ in range(3):
        pj.random_unit(fresh, 3)
    assert rng.standard_normal() == fresh.standard_normal()  # exactly max_tries draws were taken
    first = pj.projection_constant(pj.random_unit(np.random.default_rng(6), 3), V)
    _, c, tries = pj.separating_projection(V, np.random.default_rng(6), c=first)  # c_emp = c is accepted
    assert (c, tries) == (first, 1)
