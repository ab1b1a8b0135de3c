"""Meta-tests of properties/strategies.py: each shared strategy stores its arrays and reaches its tight regime."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from constructions import contextual as cm
from constructions.lipschitz import random_lipschitz
from properties import strategies as S

FIND = settings(max_examples=3000, database=None, suppress_health_check=list(HealthCheck), deadline=None)
FEW = settings(max_examples=15, database=None, suppress_health_check=list(HealthCheck), deadline=None)


@FEW
@given(S.lipschitz_targets())
def test_lipschitz_targets_store_their_arrays(inst):
    """The map is rebuilt from the stored arrays and equals the seeded constructor's."""
    f = S.target_map(inst)
    g = random_lipschitz(inst["seed"], inst["d"], inst["L"], inst["C"], inst["alpha"], inst["kind"])
    X = np.random.default_rng(0).uniform(size=(5, inst["d"], inst["L"]))
    assert np.array_equal(f(X), g(X))
    assert all(isinstance(v, np.ndarray) for v in inst["params"].values())


def test_lipschitz_targets_reach_the_tight_family():
    """Signed permutations with a large C and dL > 1: where the surrogate bound is nearly attained."""
    inst = find(S.lipschitz_targets(), lambda i: i["kind"] == "permutation" and i["C"] >= 3.0 and i["d"] * i["L"] >= 4,
                settings=FIND)
    f = S.target_map(inst)
    A = f.params["A"]
    assert np.count_nonzero(A) == f.d * f.L  # one entry per row: the errors align entry by entry


def test_ff1_instances_reach_both_ramp_extremes():
    narrow = find(S.ff1_instances(), lambda i: i["log10_eta_frac"] <= -2.9 and i["positional"], settings=FIND)
    wide = find(S.ff1_instances(), lambda i: i["log10_eta_frac"] >= math.log10(0.45), settings=FIND)
    assert 10 ** narrow["log10_eta_frac"] <= 1.3e-3 and 10 ** wide["log10_eta_frac"] < 0.5
    assert narrow["uniform"].shape == (narrow["d"], 16, narrow["n"])


def _lam_log(inst):
    """ln lambda = -ln(1 + exp(lx - lp)) for query 0, computed stably."""
    lp, lx = S.prompt_log_masses(inst)
    z = lx - lp
    return -(z + math.log1p(math.exp(-z))) if z > 0 else -math.log1p(math.exp(z))


def test_attention_instances_reach_an_underflowing_prompt_mass():
    """A prompt whose softmax share underflows float64 (lambda < 1e-300) and one that takes all the mass."""
    tiny = find(S.attention_instances(), lambda i: _lam_log(i) < math.log(1e-300), settings=FIND)
    assert _lam_log(tiny) < -690
    full = find(S.attention_instances(), lambda i: _lam_log(i) > -1e-16, settings=FIND)
    assert -_lam_log(full) < 1e-16  # 1 - lambda ~ -ln(lambda) below float64's resolution at 1
    assert {"Wq", "Wk", "Wv", "Wo", "X", "P"} <= set(full)


def test_attention_instances_with_mlp_have_its_arrays():
    inst = find(S.attention_instances(mlp=True), lambda i: i["d"] >= 2, settings=FIND)
    assert inst["W1"].shape == (2 * inst["d"], inst["d"]) and inst["W2"].shape == (inst["d"], 2 * inst["d"])


def test_vocabularies_reach_mixed_signs_and_the_separation():
    mixed = find(S.vocabularies(d=st.just(1)), lambda i: i["mixed"] and i["V"].min() < 0 < i["V"].max(),
                 settings=FIND)
    assert len(set(mixed["V"][0].tolist())) == mixed["n_vocab"]
    high = find(S.vocabularies(), lambda i: i["d"] == 3 and i["n_vocab"] == 5, settings=FIND)
    assert cm.separation(high["V"])[2] >= 0.75


def test_lemma_d_instances_materialise_sequences_and_projection():
    inst = find(S.lemma_d_instances(), lambda i: i["d"] >= 2 and i["e_random"], settings=FIND)
    V, seqs, w = inst["V"], inst["seqs"], inst["w"]
    assert seqs.ndim == 3 and seqs.shape[1] == V.shape[0]
    cm.check_no_duplicates(list(seqs))
    assert cm.projection_constant(w, V) >= cm.c_theory(V.shape[1], V.shape[0])
    head = cm.lemma_d(list(seqs), vocab=V, w=w, e=inst["e"], c="empirical")
    assert np.array_equal(head.w, w / np.linalg.norm(w))
