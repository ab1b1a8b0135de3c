"""Limitations of prompt tuning (constructions/limitations.py, verify/experiments.py): hypotheses, smoke run."""

from __future__ import annotations

import numpy as np
import pytest

from constructions.limitations import (
    causal_certificate,
    certificate_A,
    certificate_B,
    lora_rank1,
    mlp_inverse,
    random_causal_stack,
    rank_obstruction_dataset,
    single_example_memorizer,
    two_head_counterexample,
    with_w2_update,
    witness_dataset,
    witness_errors,
)
from constructions.transformer import MLP, Head, Layer, prompt_tuned, random_contractive_mlp, random_head


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
    from constructions.limitations import affine_mlp

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
    from verify.experiments import wang23_main

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
    from verify.experiments import main

    assert main(["wang23", "--lengths", "0", "--out", str(tmp_path)]) == 2
    assert main(["nope"]) == 2


def test_rounding_bound_covers_float32_evaluation():
    """last_output_rounding (u = 2^-24, weights and data rounded) bounds the float32 layer's deviation."""
    from constructions.limitations import last_output_rounding

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
    from constructions.limitations import witness_certificate_lower

    rng, layer = _layer(d=5, s=5, kappa=0.6, seed=7)
    ds = witness_dataset(layer, 0.8, rng)
    cert, defect = witness_certificate_lower(layer, ds)
    assert 0 <= defect < 1e-12 * (1 + np.abs(ds.Y1).max())
    assert cert <= ds.certificate + 1e-12 * ds.certificate and abs(cert - ds.certificate) < 1e-12 * ds.certificate


def test_prompt_objective_gradient_matches_finite_differences():
    from properties.limitations import _prompt_objective

    rng, layer = _layer(d=4, s=4, seed=11)
    ds = witness_dataset(layer, 1.0, rng)
    for power in (1, 4):
        f = _prompt_objective(layer, ((ds.X1, ds.Y1[:, -1]), (ds.X2, ds.Y2[:, -1])), power=power)
        x = rng.normal(size=4 * 3)
        _, g = f(x)
        h = 1e-6
        fd = np.array([(f(x + h * e)[0] - f(x - h * e)[0]) / (2 * h) for e in np.eye(x.size)])
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# the mpmath rung of the tightest float64 claims: same instance, same prompts/points, 50 digits

_WITNESS_TIGHT = [
    dict(seed=s, d=d, full_head=fh, kappa=k, alpha=a, tight=True, spread=1.0, weight_scale=1.0, m_p=mp,
         prompt_log10_scale=0.0, adversary=adv)
    for s, d, fh, k, a, mp, adv in [(0, 2, True, 0.5, 1.0, 1, False), (1, 4, False, 0.9, 0.3, 8, True),
                                    (2, 6, True, 0.1, 4.0, 3, True)]
]
_BILIP = [
    dict(seed=s, d=d, r_extra=r, kappa=k, kind=kind, log10_scale=sc)
    for s, d, r, k, kind, sc in [(0, 3, 2, 0.5, "contract", 0.0), (1, 5, 0, 0.9, "expand", -1.0),
                                 (2, 2, 4, 0.3, "random", 1.0), (3, 8, 3, 0.0, "contract", 0.5)]
]
_MASS = [
    dict(seed=s, d=d, m_p=mp, weight_scale=w, prompt_log10_scale=sc)
    for s, d, mp, w, sc in [(0, 1, 1, 1.0, 0.0), (1, 3, 5, 2.0, -3.0), (2, 6, 64, 0.5, 1.0), (3, 4, 17, 3.0, 1.5)]
]


def _rung_cases():
    from properties import limitations as lim

    return [(lim.check_witness_bound, _WITNESS_TIGHT), (lim.check_bilip, _BILIP), (lim.check_mass_bound, _MASS)]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["witness_bound", "mlp_bilipschitz", "prompt_mass_bound"])
def test_mpmath_rung_recomputes_the_same_instance(which):
    """Float64 and mpmath[50] evaluate the same instance (same prompts / points); at 50 digits the claim holds."""
    from verify import Backend

    check, instances = _rung_cases()[which]
    assert "mpmath" in check.claim.ladder
    b64, bmp = Backend(), Backend("mpmath", dps=50)
    for inst in instances:
        e64, emp = check(inst, b64), check(inst, bmp)
        assert emp.precision == "mpmath" and emp.resources["dps"] == 50
        assert emp.ratio <= 1.0, (inst, emp)
        if which == 2 and inst["m_p"] == 1:
            # the entropy gap is 0 in exact arithmetic: both rungs sit at their own rounding level
            assert abs(e64.observed) <= e64.bound and abs(emp.observed) <= emp.bound < 1e-45
            continue
        if which == 0:  # observed: the certificate, the same at 30 and 50 digits; bound: best error (+ floor)
            assert abs(e64.observed - emp.observed) <= 4e-16 * emp.observed, inst
            assert e64.bound >= emp.bound * (1 - 1e-12), inst
            continue
        assert abs(e64.ratio - emp.ratio) <= 1e-11 * emp.ratio, (inst, e64.ratio, emp.ratio)
        if which == 1:  # observed: the worst pair ratio
            assert abs(e64.observed - emp.observed) <= 1e-12 * emp.observed, inst
        elif which == 2:  # observed: the entropy gap
            assert abs(e64.observed - emp.observed) <= 1e-12 * emp.observed, inst


def test_witness_mpmath_errors_match_float64_per_prompt():
    """The mpmath rung evaluates exactly the prompts the float64 rung tried (BFGS ones included): each float64
    error agrees with its 50-digit value to 1e-12 of the output's size, and within the float64 rounding bound."""
    import mpmath

    from constructions.limitations import last_output_rounding, mp_witness_errors
    from properties.limitations import _witness_layer, _witness_prompts

    ctx = mpmath.MPContext()
    ctx.dps = 50
    for inst in _WITNESS_TIGHT:
        rng, layer = _witness_layer(inst)
        ds = witness_dataset(layer, inst["alpha"], rng, spread=inst["spread"])
        prompts = _witness_prompts(inst, layer, ds, rng)
        assert len(prompts) >= 9
        for P in prompts:
            e64, emp = witness_errors(layer, ds, P), mp_witness_errors(ctx, layer, ds, P)
            for a, b, (X, Y) in zip(e64, emp, ((ds.X1, ds.Y1), (ds.X2, ds.Y2)), strict=True):
                u = 2.0**-53
                floor = last_output_rounding(layer, P, X, u) + (inst["d"] + 2) * u * float(b)
                assert abs(a - float(b)) <= min(floor, 1e-12 * (float(b) + np.abs(Y).max())), (inst, a, b, floor)
            assert max(emp) >= ds.certificate * (1 - 1e-12)


@pytest.mark.parametrize("which", [0, 1, 2], ids=["witness_bound", "mlp_bilipschitz", "prompt_mass_bound"])
def test_ladder_rescues_a_suspect_float64_failure_at_mpmath(which):
    """A float64 verdict of ratio 1 + 1e-9 on a real instance is re-checked at mpmath[50] and cleared there;
    a mutant's real violation is re-checked too and confirmed at mpmath."""
    from verify import Backend, Evidence
    from verify.runner import decide

    check, instances = _rung_cases()[which]
    claim = check.claim
    inst = instances[[1, 0, 1][which]]  # instances where the claim's mutant is violated
    ev = check(inst, Backend())
    suspect = Evidence(ev.bound * (1.0 + 1e-9), ev.bound, "fabricated suspect failure", dict(ev.resources))
    d = decide(claim, check, inst, Backend(), suspect)
    assert d.rescued and d.evidence.precision == "mpmath" and d.evidence.ratio <= 1.0
    assert [lab for lab, _ in d.trail] == ["numpy/float64/cpu", "mpmath[50]"] and d.trail[0][1] > 1.0
    mutant = claim.mutants[0]
    mev = mutant.check(inst, Backend())
    assert mev.ratio > 1.0, "this instance must break the mutant"
    dm = decide(claim, mutant.check, inst, Backend(), mev)
    assert not dm.rescued and dm.evidence.precision == "mpmath" and dm.evidence.ratio > 1.0


def test_mlp_inverse_slow_contraction_regression():
    """Found by the thorough profile: at kappa = 0.99 the old stop-on-stagnation rule left an error 1.44x the floor
    (4.4e-12): a true decrease of (1 - kappa) per step is drowned by rounding long before convergence."""
    from properties.limitations import check_mlp_inverse, mutant_mlp_inverse_short
    from verify import Backend

    inst = {"seed": 0, "d": 1, "r_extra": 0, "kappa": 0.99, "kind": "random", "log10_scale": 0.0}
    ev = check_mlp_inverse(inst, Backend())
    assert ev.ratio <= 1.0 and ev.observed < 1e-12
    assert mutant_mlp_inverse_short(inst, Backend()).ratio > 1.0
