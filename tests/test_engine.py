"""The engine itself: Evidence arithmetic, the registry, the codec, the ladder, the gate."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import verify
from verify import codec
from verify.backends import Backend
from verify.claims import Claim, ClaimError, Registry
from verify.gate import baseline_from, regressions
from verify.runner import decide, hunt


def test_evidence_ratio_and_margin():
    ev = verify.Evidence(3.0, 4.0)
    assert ev.ratio == 0.75 and ev.margin == 0.25 and ev.holds
    assert verify.Evidence(0.0, 0.0).ratio == 0.0
    assert verify.Evidence(1e-300, 0.0).ratio == math.inf
    assert verify.Evidence(float("nan"), 1.0).ratio == math.inf  # NaN is a violation, never a pass
    with pytest.raises(ValueError):
        verify.Evidence(1.0, -1.0)
    with pytest.raises(TypeError):
        verify.Evidence("a", 1.0)


def test_duplicate_claim_id_is_a_clear_error():
    reg = Registry()
    c = Claim("x.y", "s", "st", st.none(), "exact", lambda i, b: verify.Evidence(0, 1), module="m1")
    reg.add(c)
    with pytest.raises(ClaimError, match="duplicate claim id 'x.y'"):
        reg.add(c)


def test_registered_duplicate_through_decorator():
    with pytest.raises(ClaimError, match="duplicate"):
        verify.claim("attention.prompt_mixture", source="s", statement="t", strategy=st.none(),
                     provenance="exact")(lambda i, b: verify.Evidence(0, 1))


@pytest.mark.parametrize("bad", [dict(provenance="guess"), dict(precision="float16"), dict(expect="maybe")])
def test_claim_arguments_are_validated(bad):
    kw = dict(source="s", statement="t", strategy=st.none(), provenance="exact") | bad
    with pytest.raises(ClaimError):
        verify.claim("engine.bad_args", **kw)


def test_bad_id_rejected():
    with pytest.raises(ClaimError, match="dotted"):
        verify.claim("NoDots", source="s", statement="t", strategy=st.none(), provenance="exact")


instances = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
    | st.sampled_from([math.inf, -math.inf]) | st.fractions().map(Fraction)
    | hnp.arrays(st.sampled_from([np.float64, np.float32, np.int64]), hnp.array_shapes(max_dims=3, max_side=3)),
    lambda kids: st.lists(kids, max_size=3) | st.tuples(kids, kids) | st.dictionaries(st.text(max_size=4), kids,
                                                                                     max_size=3),
    max_leaves=8,
)


def _same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
            a, b, equal_nan=True)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(instances)
def test_codec_round_trips_bit_for_bit(x):
    import json

    assert _same(codec.decode(json.loads(codec.dumps(codec.encode(x)))), x)


def _claim(check, ladder=("float64",), rescue=True):
    return Claim("engine.tmp", "s", "st", st.integers(0, 10), "derived", check, ladder=ladder, rescue=rescue)


def test_ladder_rescues_a_rounding_artefact():
    def check(i, backend):
        # float64 "fails", mpmath clears it: a rounding artefact, not a counterexample
        return verify.Evidence(2.0 if backend.name == "numpy" else 0.5, 1.0)

    d = decide(_claim(check, ("float64", "mpmath")), check, 0, Backend(), check(0, Backend()))
    assert d.rescued and d.evidence.precision == "mpmath" and d.evidence.ratio == 0.5


def test_ladder_never_rescues_when_the_backend_is_the_subject():
    def check(i, backend):
        return verify.Evidence(2.0 if backend.dtype == "float32" else 0.5, 1.0)

    b32 = Backend(dtype="float32")
    d = decide(_claim(check, ("float32", "float64"), rescue=False), check, 0, b32, check(0, b32))
    assert not d.rescued and d.evidence.ratio == 2.0 and d.evidence.precision == "float32"


def test_ladder_confirms_at_the_highest_rung():
    def check(i, backend):
        return verify.Evidence(3.0, 1.0)

    d = decide(_claim(check, ("float64", "mpmath")), check, 0, Backend(), check(0, Backend()))
    assert not d.rescued and d.evidence.precision == "mpmath"


def test_out_of_reach_is_counted_with_its_reason():
    def check(i, backend):
        if i > 3:
            raise verify.OutOfReach("i > 3 needs more memory than 24 GiB")
        return verify.Evidence(i, 10)

    res = hunt(_claim(check), Backend(), profile="dev", max_seconds=10, seed=1)
    assert res.tried > 0 and not res.found
    assert set(res.rejected) <= {"i > 3 needs more memory than 24 GiB"}


def test_time_budget_stops_the_hunt():
    import time

    def check(i, backend):
        time.sleep(0.05)
        return verify.Evidence(0, 1)

    res = hunt(_claim(check), Backend(), profile="dev", max_examples=500, max_seconds=0.3, seed=1)
    assert res.budget_hit and res.tried < 500


def test_a_crashing_check_is_an_error_not_a_verdict():
    def check(i, backend):
        raise ZeroDivisionError("boom")

    res = hunt(_claim(check), Backend(), profile="dev", max_seconds=10, seed=1)
    assert res.error and "ZeroDivisionError" in res.error and not res.found


def test_gate_flags_regressions_and_disappearances():
    rows = [
        {"claim_id": "a.x", "backend": "numpy/float64/cpu", "status": "holds"},
        {"claim_id": "a.y", "backend": "numpy/float64/cpu", "status": "holds"},
        {"claim_id": "a.z", "backend": "numpy/float64/cpu", "status": "out_of_reach: too big"},
    ]
    base = baseline_from({"rows": rows})
    assert base["claims"]["a.z@numpy/float64/cpu"] == {"status": "out_of_reach", "worst_ratio": None}
    now = [dict(rows[0], status="counterexample")]
    probs = regressions(base, now, patterns=None, backends=["numpy/float64/cpu"], known_ids={"a.x"})
    assert any("a.x" in p and "now counterexample" in p for p in probs)
    assert any("a.y" in p and "no longer exists" in p for p in probs)
    assert not any("a.z" in p for p in probs)
    # backends that did not run and unselected claims are out of scope
    assert regressions(base, [], patterns=["b.*"], backends=["numpy/float64/cpu"], known_ids=set()) == []
    assert regressions(base, [], patterns=None, backends=["torch/float64/cpu"], known_ids=set()) == []


@pytest.mark.exact
def test_arb_rung_sets_and_restores_precision():
    flint = pytest.importorskip("flint", reason="python-flint (the exact extra) is not installed")
    before = flint.ctx.dps
    with Backend("arb", dps=80).arb() as f:
        x = f.arb(2).sqrt()
        assert f.ctx.dps == 80 and x.rad() < f.arb("1e-78")
    assert flint.ctx.dps == before


def test_mpmath_backend_context_is_private():
    import mpmath

    before = mpmath.mp.dps
    ctx = Backend("mpmath", dps=120).mp
    assert ctx.dps == 120 and mpmath.mp.dps == before
    assert abs(ctx.sqrt(2) ** 2 - 2) < ctx.mpf(10) ** -115


def test_a_check_that_computes_in_mpmath_reports_that_precision():
    def check(i, backend):
        return verify.Evidence(0.5, 1.0, precision="mpmath")

    d = decide(_claim(check), check, 0, Backend(), check(0, Backend()))
    assert d.evidence.precision == "mpmath"


def test_overflowed_evidence_is_never_a_pass():
    assert verify.Evidence(math.inf, math.inf).ratio == math.inf
    assert verify.Evidence(math.inf, 1.0).ratio == math.inf
