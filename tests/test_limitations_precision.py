"""Precision of the limitations claims: derived floors, the mpmath rung, and the false counterexample it fixed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from properties.limitations import invertibility, memorizer, witness
from properties.limitations._common import stored_witness, with_witness_arrays
from verify import Backend

_W = dict(spread=1.0, weight_scale=1.0, prompt_log10_scale=0.0, tight=True)
_WITNESS_TIGHT = [
    witness.with_witness_prompts(with_witness_arrays(dict(seed=s, d=d, full_head=fh, kappa=k, alpha=a, m_p=mp,
                                                          adversary=adv, **_W)))
    for s, d, fh, k, a, mp, adv in [(0, 2, True, 0.5, 1.0, 1, False), (1, 4, False, 0.9, 0.3, 8, True),
                                    (2, 6, True, 0.1, 4.0, 3, True)]
]
_BILIP = [
    invertibility.with_mlp_arrays(dict(seed=s, d=d, r_extra=r, kappa=k, kind=kind, log10_scale=sc))
    for s, d, r, k, kind, sc in [(0, 3, 2, 0.5, "contract", 0.0), (1, 5, 0, 0.9, "expand", -1.0),
                                 (2, 2, 4, 0.3, "random", 1.0), (3, 8, 3, 0.0, "contract", 0.5)]
]
_MASS = [
    memorizer.with_mass_arrays(dict(seed=s, d=d, m_p=mp, weight_scale=w, prompt_log10_scale=sc))
    for s, d, mp, w, sc in [(0, 1, 1, 1.0, 0.0), (1, 3, 5, 2.0, -3.0), (2, 6, 64, 0.5, 1.0), (3, 4, 17, 3.0, 1.5)]
]
# the instance the thorough profile reported as a counterexample of wang23.single_example_memorizable (seed 0):
# tight MLP z -> (1 - kappa) z on a ball of radius 10 (1 + spread), so b_1 ~ 15 while the outputs are O(1)
_MEMO_FALSE_CE = dict(d=2, seed=246, kappa=0.9173829358411213, alpha=0.3757263876049556, tight=True, full_head=True,
                      weight_scale=0.30817108680715183, spread=0.5, example=1)
_MEMO = [with_witness_arrays(_MEMO_FALSE_CE)] + [
    with_witness_arrays(dict(seed=s, d=d, kappa=k, alpha=a, tight=t, full_head=True, weight_scale=w, spread=sp,
                             example=e))
    for s, d, k, a, t, w, sp, e in [(5, 4, 0.95, 0.8, True, 1.1, 2.0, 2), (10, 3, 0.76, 1.5, False, 0.66, 1.9, 1),
                                    (11, 5, 0.9, 0.5, True, 0.5, 1.0, 1)]
]


def _cases():
    return {"witness_bound": (witness.check_witness_bound, _WITNESS_TIGHT),
            "mlp_bilipschitz": (invertibility.check_bilip, _BILIP),
            "prompt_mass_bound": (memorizer.check_mass_bound, _MASS),
            "single_example_memorizable": (memorizer.check_single_example, _MEMO)}


@pytest.mark.parametrize("which", list(_cases()))
def test_mpmath_rung_recomputes_the_same_instance(which):
    """Float64 and mpmath[50] evaluate the same stored instance; at 50 digits the claim holds."""
    check, instances = _cases()[which]
    assert "mpmath" in check.claim.ladder
    b64, bmp = Backend(), Backend("mpmath", dps=50)
    for inst in instances:
        e64, emp = check(inst, b64), check(inst, bmp)
        assert emp.precision == "mpmath" and emp.resources["dps"] == 50
        assert e64.ratio <= 1.0 and emp.ratio <= 1.0, (inst, e64, emp)
        if which == "witness_bound":  # observed: the certificate, the same at 30 and 50 digits
            assert abs(e64.observed - emp.observed) <= 4e-16 * emp.observed
            assert e64.bound >= emp.bound * (1 - 1e-12)
        elif which == "single_example_memorizable":  # the residual at 50 digits is at 50-digit rounding level
            assert emp.observed <= 1e-40 and emp.bound <= 1e-30
        elif which == "mlp_bilipschitz":
            assert abs(e64.observed - emp.observed) <= 1e-12 * emp.observed
        else:  # mass: the entropy gap agrees to within the float rung's derived floor
            floor = e64.bound - math.log(inst["m_p"])
            assert abs(e64.observed - emp.observed) <= 1e-12 * emp.observed + floor


@pytest.mark.parametrize("which", list(_cases()))
def test_ladder_rescues_a_suspect_float64_failure_at_mpmath(which):
    """A float64 verdict of ratio 1 + 1e-9 on a real instance is re-checked at mpmath[50] and cleared there; a patch
    mutant's real violation is re-checked too (its patch covers the mpmath path) and confirmed."""
    from verify import Evidence
    from verify.runner import decide

    check, instances = _cases()[which]
    claim = check.claim
    for inst in instances:
        ev = check(inst, Backend())
        suspect = Evidence(ev.bound * (1.0 + 1e-9) if ev.bound else 1.0, ev.bound or 0.5, "fabricated suspect",
                           dict(ev.resources))
        d = decide(claim, check, inst, Backend(), suspect)
        assert d.rescued and d.evidence.precision == "mpmath" and d.evidence.ratio <= 1.0
        assert [lab for lab, _ in d.trail] == ["numpy/float64/cpu", "mpmath[50]"] and d.trail[0][1] > 1.0
    caught = 0
    for m in (m for m in claim.mutants if m.kind == "patch"):
        with m.active():
            for inst in instances:
                mev = claim.check(inst, Backend())
                if mev.ratio > 1.0:
                    dm = decide(claim, claim.check, inst, Backend(), mev)
                    assert not dm.rescued and dm.evidence.precision == "mpmath" and dm.evidence.ratio > 1.0, m.name
                    caught += 1
    assert caught, "no patch mutant was violated on these instances"


def test_single_example_false_counterexample_regression():
    """`run --profile thorough` reported wang23.single_example_memorizable as a counterexample on this kind of
    instance: the residual (1.40e-15 here; 4.6e-15 in the report) over a fixed-multiple floor 16 eps (...) (1.10e-15;
    4.3e-15), with no rung above float64. The MLP's biases b_1 ~ 15 cancel in its output, so one evaluation rounds
    at ~1e-14 though the outputs are O(1): the derived floor sees the biases (4.2e-14 for the evaluation, 4.2e-14
    for the float target), and the mpmath rung re-checks the same instance at 50 digits."""
    inst = _MEMO[0]
    ev = memorizer.check_single_example(inst, Backend())
    assert ev.ratio <= 1.0 and 1.4e-15 < 0.1 * ev.bound, ev
    assert "mpmath" in memorizer.check_single_example.claim.ladder
    emp = memorizer.check_single_example(inst, Backend("mpmath", dps=50))
    assert emp.ratio <= 1.0 and emp.observed < 1e-45


def test_memorizer_construction_bound_is_sound():
    """The exact residual (50 digits) of the STORED float prompt is below (1 + kappa) memorizer_attention_bound: the
    a-priori construction bound holds on its own, not only together with the evaluation's rounding."""
    import mpmath

    from constructions.residual_mlp import mlp_kappa, mp_mlp
    from constructions.single_layer import mp_last_output
    from constructions.single_memorizer import memorizer_attention_bound, single_example_memorizer
    from constructions.transformer import mp_matrix

    ctx = mpmath.MPContext()
    ctx.dps = 50
    for inst in _MEMO:
        layer, ds = stored_witness(inst)
        X, t = (ds.X1, ds.t1) if inst["example"] == 1 else (ds.X2, ds.t2)
        sm = single_example_memorizer(layer.heads[0], ds.x0, X, t, max_k=4096)
        exact = ctx.norm(mp_last_output(ctx, layer, sm.prompt(), X)
                         - mp_mlp(ctx, layer.mlp, mp_matrix(ctx, ds.x0) + mp_matrix(ctx, t)))
        bound = (1 + mlp_kappa(layer.mlp)) * memorizer_attention_bound(layer.heads[0], ds.x0, X, t, sm)
        assert float(exact) <= bound, (inst["seed"], float(exact), bound)


def test_bilipschitz_floor_does_not_grow_near_violation():
    """The bi-Lipschitz slack comes from the inputs (pair_norm_rounding), not from min ||df|| (the old
    32 eps mag / (df.min() + 1e-300) grew without bound as a pair collapsed, the direction of a violation)."""
    from constructions.residual_mlp import pair_norm_rounding
    from constructions.transformer import MLP

    inst = _BILIP[0]
    mlp = MLP(inst["W1"], inst["b1"], inst["W2"], inst["b2"])
    X1 = inst["X1"]
    ef_far, ex_far = pair_norm_rounding(mlp, X1, X1 + 1.0, 2.0**-53)
    ef_near, ex_near = pair_norm_rounding(mlp, X1, X1 + 1e-12, 2.0**-53)
    assert np.all(ef_near <= 10 * ef_far) and np.all(ex_near <= 10 * ex_far)  # no 1 / ||df|| growth


def test_mlp_inverse_slow_contraction_regression():
    """Found by the thorough profile: at kappa = 0.99 the old stop-on-stagnation rule left an error 1.44x the floor
    (4.4e-12): a true decrease of (1 - kappa) per step is drowned by rounding long before convergence."""
    inst = invertibility.with_mlp_arrays({"seed": 0, "d": 1, "r_extra": 0, "kappa": 0.99, "kind": "random",
                                          "log10_scale": 0.0})
    ev = invertibility.check_mlp_inverse(inst, Backend())
    assert ev.ratio <= 1.0 and ev.observed < 1e-12
    five = next(m for m in invertibility.check_mlp_inverse.claim.mutants if m.name == "five_iterations")
    with five.active():
        assert invertibility.check_mlp_inverse(inst, Backend()).ratio > 1.0


def test_bilipschitz_constants_are_attained_separately():
    """Each constant on its own: 'expand' MLPs attain the upper 1 + kappa, 'contract' ones the lower 1 - kappa (the
    claim's max over both sides would hide a loosened upper constant; mutmut's residual_mlp survivor 2 + kappa)."""
    from constructions.residual_mlp import bilipschitz_constants
    from constructions.transformer import MLP

    for kind in ("contract", "expand"):
        inst = invertibility.with_mlp_arrays(dict(seed=4, d=3, r_extra=2, kappa=0.6, kind=kind, log10_scale=0.0))
        mlp = MLP(inst["W1"], inst["b1"], inst["W2"], inst["b2"])
        lo, hi = bilipschitz_constants(0.6)
        dx = np.linalg.norm(inst["X1"] - inst["X2"], axis=0)
        df = np.linalg.norm(mlp(inst["X1"]) - mlp(inst["X2"]), axis=0)
        side = (lo * dx / df) if kind == "contract" else (df / (hi * dx))
        assert abs(side.max() - 1.0) < 1e-9, (kind, side)  # attained on the pairs inside the affine region
