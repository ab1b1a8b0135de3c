"""Limitations of prompt tuning (constructions/{witness,single_memorizer,rank_obstruction,causal_stack,...}.py and the
wang23 study): hypotheses, constructions, the adversary, the study's smoke run."""

from __future__ import annotations

import numpy as np
import pytest

from constructions.causal_stack import causal_certificate, random_causal_stack
from constructions.rank_obstruction import (
    certificate_A,
    certificate_B,
    lora_rank1,
    rank_obstruction_dataset,
    with_w2_update,
)
from constructions.residual_mlp import mlp_inverse
from constructions.single_memorizer import single_example_memorizer
from constructions.transformer import MLP, Head, Layer, prompt_tuned, random_contractive_mlp, random_head
from constructions.witness import two_head_counterexample, witness_dataset, witness_errors


def _layer(d=4, s=4, kappa=0.5, heads=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng, Layer(tuple(random_head(rng, d, s) for _ in range(heads)), random_contractive_mlp(rng, d, 2 * d, kappa))


def test_witness_rejects_two_heads():
    rng, layer = _layer(heads=2)
    with pytest.raises(ValueError, match=r"h = 1"):
        witness_dataset(layer, 1.0, rng)


@pytest.mark.parametrize("kappa", [1.01, 1.5])
def test_witness_rejects_non_contractive_mlp(kappa):
    rng, layer = _layer(kappa=kappa)
    with pytest.raises(ValueError, match=r"kappa = \|\|W_1\|\| \|\|W_2\|\| < 1"):
        witness_dataset(layer, 1.0, rng)


def test_witness_rejects_alpha_zero():
    rng, layer = _layer()
    with pytest.raises(ValueError, match=r"alpha > 0"):
        witness_dataset(layer, 0.0, rng)


def test_memorizer_rejects_singular_values_matrix():
    rng, layer = _layer(d=4, s=1)  # head size 1 < d: W_o W_v has rank 1
    ds = witness_dataset(layer, 1.0, rng)
    with pytest.raises(ValueError, match=r"W_o W_v invertible"):
        single_example_memorizer(layer.heads[0], ds.x0, ds.X1, ds.t1)


def test_rank_dataset_rejects_too_many_examples():
    rng, layer = _layer(d=4)
    with pytest.raises(ValueError, match=r"n \+ 1 <= d"):
        rank_obstruction_dataset(layer, 4, rng)


def test_rank_dataset_rejects_inactive_relus():
    rng = np.random.default_rng(1)
    d, r = 5, 10
    W1 = rng.normal(size=(r, d))
    W2 = rng.normal(size=(d, r))
    c = np.sqrt(0.5 / (np.linalg.norm(W1, 2) * np.linalg.norm(W2, 2)))
    layer = Layer((random_head(rng, d, d),), MLP(W1 * c, -10.0 * np.ones(r), W2 * c, np.zeros(d)))
    with pytest.raises(ValueError, match=r"ReLUs active"):
        rank_obstruction_dataset(layer, 2, rng)


def test_certificates_need_enough_dimensions():
    C = np.ones((3, 3))
    with pytest.raises(ValueError, match=r"n \+ 1 <= d"):
        certificate_B(C, np.ones(3))
    with pytest.raises(ValueError, match=r"n <= d"):
        certificate_A(np.ones((2, 3)), np.ones((2, 3)))


def test_mlp_inverse_rejects_kappa_one():
    _, layer = _layer(kappa=1.2)
    with pytest.raises(ValueError, match=r"kappa"):
        mlp_inverse(layer.mlp, np.zeros(4))


def test_causal_certificate_rejects_bidirectional_and_large_attention():
    rng = np.random.default_rng(0)
    layers = random_causal_stack(rng, 3, 2, 0.5, 0.01, 0.01, 1.0)
    bidir = [Layer(ly.heads, ly.mlp, causal=False) for ly in layers]
    with pytest.raises(ValueError, match=r"causal masking"):
        causal_certificate(bidir, 1.0, 1.0, 2)
    loud = random_causal_stack(rng, 3, 1, 0.5, 2.0, 2.0, 1.0)
    with pytest.raises(ValueError, match=r"a_l < 1"):
        causal_certificate(loud, 1.0, 1.0, 2)


def test_witness_bound_on_random_prompts_and_memorizers():
    rng, layer = _layer(d=4, s=4, kappa=0.5, seed=3)
    ds = witness_dataset(layer, 1.0, rng)
    for mp in (1, 5, 40):
        for scale in (0.1, 3.0, 30.0):
            assert max(witness_errors(layer, ds, rng.normal(0, scale, (4, mp)))) >= ds.certificate
    # each example alone is memorized exactly, and then the other one carries the whole certificate
    for X, t, Y in ((ds.X1, ds.t1, ds.Y1), (ds.X2, ds.t2, ds.Y2)):
        sm = single_example_memorizer(layer.heads[0], ds.x0, X, t)
        assert sm.k <= max(1, np.ceil(sm.k_lower)) + 1
        out = prompt_tuned(layer, sm.prompt(), X)[:, -1]
        assert np.linalg.norm(out - Y[:, -1]) < 1e-10 * (1 + np.abs(Y).max())
        assert max(witness_errors(layer, ds, sm.prompt())) >= ds.certificate


def test_two_head_counterexample_beats_the_certificate():
    layer, ds, P = two_head_counterexample(np.random.default_rng(0), 36.0, 0.5, 1.0)
    assert len(layer.heads) == 2
    assert max(witness_errors(layer, ds, P)) < 1e-5 * ds.certificate


def test_lora_rank1_memorizes_with_d_plus_r_parameters():
    rng = np.random.default_rng(2)
    from constructions.residual_mlp import affine_mlp

    d, r, n = 6, 12, 4
    layer = Layer((random_head(rng, d, d),), affine_mlp(rng, d, r, 0.5, radius=20.0))
    ds = rank_obstruction_dataset(layer, n, rng)
    upd = lora_rank1(ds)
    assert upd.params == d + r < n * d
    assert np.linalg.matrix_rank(upd.delta) == 1
    tuned = with_w2_update(layer, upd.delta)
    for i, X in enumerate(ds.Xs):
        assert np.linalg.norm(tuned(X)[:, -1] - ds.Y[:, i]) < 1e-10
    assert certificate_B(ds.C, ds.w) > 0


def test_head_type_is_shared():
    # the constructions use the shared Head/Layer types, not private copies
    rng, layer = _layer()
    assert isinstance(layer.heads[0], Head)


@pytest.mark.backends
def test_experiment_smoke(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tabulate")
    from properties.limitations.experiment import main as wang23_main

    argv = ["--steps", "20", "--lengths", "1,2", "--seeds", "1", "--no-figures"]
    assert wang23_main(argv + ["--out", str(tmp_path / "a")]) == 0
    assert wang23_main(argv + ["--out", str(tmp_path / "b")]) == 0
    md = (tmp_path / "a" / "wang23_experiment.md").read_text()
    assert "| dataset" in md and "prompt tuning" in md and "rank-1 LoRA on W2" in md and "Measured:" in md
    # reproducible: same seeds, same numbers (only the wall time may differ)
    strip = lambda t: [ln for ln in t.splitlines() if not ln.startswith("Wall time")]  # noqa: E731
    assert strip(md) == strip((tmp_path / "b" / "wang23_experiment.md").read_text())
    rc = wang23_main(["--steps", "20", "--lengths", "1", "--seeds", "1", "--out", str(tmp_path)])
    assert rc == 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "figures" / "wang23_loss_vs_params.png").stat().st_size > 0
    assert (tmp_path / "figures" / "wang23_loss_curves.png").stat().st_size > 0


@pytest.mark.backends
def test_experiment_rejects_bad_lengths(tmp_path, capsys):
    pytest.importorskip("torch")
    from properties.limitations.experiment import main
    from verify import STUDIES

    assert STUDIES["wang23"].main is main
    assert main(["--lengths", "0", "--out", str(tmp_path)]) == 2


def test_rounding_bound_covers_float32_evaluation():
    """last_output_rounding (u = 2^-24, weights and data rounded) bounds the float32 layer's deviation."""
    from constructions.single_layer import last_output_rounding

    rng = np.random.default_rng(5)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    for _ in range(20):
        d = int(rng.integers(2, 7))
        layer = Layer((random_head(rng, d, d, 2.0),), random_contractive_mlp(rng, d, 2 * d, 0.7))
        P = rng.normal(0.0, 10.0 ** rng.uniform(-2, 2), size=(d, int(rng.integers(1, 40))))
        X = rng.normal(0.0, 3.0, size=(d, 2))
        h = layer.heads[0]
        l32 = Layer((Head(*map(f32, (h.Wq, h.Wk, h.Wv, h.Wo))),), MLP(*map(f32, vars(layer.mlp).values())))
        dev = np.linalg.norm(prompt_tuned(l32, f32(P), f32(X))[:, -1] - prompt_tuned(layer, P, X)[:, -1])
        assert dev <= last_output_rounding(layer, P, X, 2.0**-24, extra=2)


def test_witness_certificate_at_30_digits_matches_float():
    from constructions.witness import witness_certificate_lower

    rng, layer = _layer(d=5, s=5, kappa=0.6, seed=7)
    ds = witness_dataset(layer, 0.8, rng)
    cert, defect = witness_certificate_lower(layer, ds)
    assert 0 <= defect < 1e-12 * (1 + np.abs(ds.Y1).max())
    assert cert <= ds.certificate + 1e-12 * ds.certificate and abs(cert - ds.certificate) < 1e-12 * ds.certificate


def test_prompt_objective_gradient_matches_finite_differences():
    from constructions.prompt_adversary import prompt_objective

    rng, layer = _layer(d=4, s=4, seed=11)
    ds = witness_dataset(layer, 1.0, rng)
    for power in (1, 4):
        f = prompt_objective(layer, ((ds.X1, ds.Y1[:, -1]), (ds.X2, ds.Y2[:, -1])), power=power)
        x = rng.normal(size=4 * 3)
        _, g = f(x)
        h = 1e-6
        fd = np.array([(f(x + h * e)[0] - f(x - h * e)[0]) / (2 * h) for e in np.eye(x.size)])
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)


def test_adversary_fits_the_inward_dataset():
    """The prompt adversary is a claim too: on targets between c1 and c2 (memorizable by two tokens) BFGS from a
    random start gets far below the witness certificate; returning the start unchanged does not."""
    from constructions.prompt_adversary import best_prompt, prompt_objective
    from constructions.residual_mlp import mlp_apply

    rng, layer = _layer(d=4, s=4, kappa=0.5, seed=3)
    ds = witness_dataset(layer, 1.0, rng)
    a = 0.4
    t1, t2 = ds.c1 - a * (ds.c1 - ds.c2), ds.c2 - a * (ds.c2 - ds.c1)
    ex = ((ds.X1, mlp_apply(layer.mlp, ds.x0 + t1)), (ds.X2, mlp_apply(layer.mlp, ds.x0 + t2)))
    P0 = rng.normal(size=(4, 2))
    (P,) = best_prompt(layer, ex, [P0], maxiter=200)
    f = prompt_objective(layer, ex, power=4)
    assert f(P.ravel())[0] < 0.05 * f(P0.ravel())[0]
    assert f(P.ravel())[0] ** 0.5 < 0.5 * ds.certificate


def test_strategies_reach_their_tight_regimes():
    """Meta-tests: the strategies draw the regimes where the bounds are (nearly) attained."""
    from hypothesis import find, settings

    from properties.limitations import invertibility, memorizer, rank, witness

    quick = settings(max_examples=2000, database=None)
    assert find(witness.witness_instances, lambda i: i["tight"] and i["kappa"] > 0.9, settings=quick)
    assert find(memorizer.memo_instances, lambda i: i["kappa"] > 0.9, settings=quick)
    assert find(invertibility.mlp_instances, lambda i: i["kind"] != "random" and i["kappa"] > 0.95, settings=quick)
    assert find(memorizer.mass_instances, lambda i: i["prompt_log10_scale"] < -2.5 and i["m_p"] > 32,
                settings=quick)
    assert find(rank.rank_instances, lambda i: i["case"] == "B" and len(i["Xs"]) == i["d"] - 1 and i["d"] >= 5,
                settings=quick)
    assert find(invertibility.causal_instances, lambda i: i["L"] == 3 and i["att_log10"] > -1.2, settings=quick)


def test_instances_hold_their_arrays():
    """A drawn instance carries its arrays; the checks rebuild from them, not from the seed."""
    from hypothesis import find, settings

    from properties.limitations import memorizer
    from properties.limitations._common import stored_witness
    from verify import Backend

    inst = find(memorizer.memo_instances, lambda i: True, settings=settings(database=None))
    assert isinstance(inst["Wq"], np.ndarray) and inst["x0"].shape == (inst["d"],)
    a = memorizer.check_single_example(inst, Backend())
    b = memorizer.check_single_example({**inst, "seed": inst["seed"] + 1}, Backend())  # the seed is not read
    assert a.observed == b.observed and a.bound == b.bound
    _, ds = stored_witness(inst)
    assert np.array_equal(ds.x0, inst["x0"])
