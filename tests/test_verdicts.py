"""Verdicts that can fail: vacuous bounds, claims that decide nothing, broken rungs, named conditions, patch and
tightened mutants, exact mpf/mpc encoding, and user files that load under unique names."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest

import verify
from verify import codec
from verify.backends import Backend
from verify.claims import REGISTRY, ClaimError
from verify.discovery import ClaimModuleError, load
from verify.runner import hunt, run_claim
from verify.status import Status

FIX = Path(__file__).parent / "fixtures"
load([str(FIX / "engine_claims.py")])


def _row(cid, **kw):
    row, res = run_claim(REGISTRY.get(cid), Backend(), profile="ci", seed=0, max_seconds=5, **kw)
    return row, res


def test_an_infinite_bound_is_never_holds():
    ev = verify.Evidence(0.5, math.inf)
    assert ev.vacuous and "vacuous bound" in ev.vacuous
    row, _ = _row("user.vacuous_bound")
    assert row.status is Status.OUT_OF_REACH and "vacuous bound" in row.reason and not row.ok


def test_a_claim_that_decides_nothing_fails_the_run():
    row, _ = _row("user.nothing_decided")
    assert row.status is Status.OUT_OF_REACH and row.reason == "too big for this check"
    assert not row.ok  # it does not expect out_of_reach: the tests and `run` fail on it


def test_expected_out_of_reach_is_asserted():
    row, _ = _row("user.expected_out_of_reach")
    assert row.status is Status.OUT_OF_REACH and row.ok
    with pytest.raises(ClaimError, match="needs an expect_reason"):
        verify.claim("user.x_y", source="s", statement="s", strategy=None, provenance="exact",
                     expect="out_of_reach")


def test_a_claim_deciding_too_few_instances_is_out_of_reach():
    from hypothesis import strategies as st

    from verify.claims import Claim

    def check(i, backend):
        if i % 10:
            raise verify.OutOfReach("mostly too big")
        return verify.Evidence(0.0, 1.0)

    c = Claim(id="user.rarely", source="t", statement="t", strategy=st.integers(0, 10**6), provenance="derived",
              check=check, min_decided=0.5)
    res = hunt(c, Backend(), profile="ci", seed=0, max_seconds=2)
    from verify.runner import status_of

    status, reason, _ = status_of(c, res)
    assert res.decided > 0 and status is Status.OUT_OF_REACH and "decided" in reason


def test_an_exception_in_a_higher_rung_is_an_error_naming_the_rung():
    row, res = _row("user.broken_rung")
    assert row.status is Status.ERROR and "mpmath" in row.reason and "AttributeError" in row.reason


def test_a_failed_condition_says_which():
    row, res = _row("user.rank_condition")
    assert row.status is Status.COUNTEREXAMPLE
    assert "rank 12 != C(2+2, 2) = 6" in row.reason
    assert res.failure.ratio == math.inf and res.failure.to_json()["conditions"][0]["ok"] is False


def test_patch_mutant_breaks_the_construction_not_the_check():
    c = REGISTRY.get("user.sum_bound")
    kinds = {m.name: m.kind for m in c.mutants}
    assert kinds == {"bound_tightened": "tightened", "add_too_much": "patch"}
    from tests.fixtures import engine_target

    m = next(m for m in c.mutants if m.name == "add_too_much")
    with m.active():
        assert engine_target.add(1.0, 1.0) == pytest.approx(2.03)
    assert engine_target.add(1.0, 1.0) == 2.0  # restored
    res = hunt(c, Backend(), mutant=m, profile="ci", seed=0, max_seconds=5, shrink=False)
    assert res.found and res.failure.ratio > 1.0
    # the claim itself holds, and its bound is attained: the tightened mutant is caught too
    row, _ = _row("user.sum_bound")
    assert row.status is Status.HOLDS and row.worst_ratio > 0.99
    tm = next(m for m in c.mutants if m.kind == "tightened")
    assert hunt(c, Backend(), mutant=tm, profile="ci", seed=0, max_seconds=5, shrink=False).found


def test_patch_reaches_every_module_that_imported_the_object():
    import sys

    from tests.fixtures import engine_target

    engine_claims = sys.modules[REGISTRY.get("user.sum_bound").module]  # loaded from its file, unique name
    m = next(m for m in REGISTRY.get("user.sum_bound").mutants if m.name == "add_too_much")
    sentinel = engine_target.add
    with m.active():
        assert engine_target.add is not sentinel and engine_claims.tgt.add is not sentinel
    assert engine_target.add is sentinel


def test_mpf_and_mpc_round_trip_exactly_at_any_precision():
    with mpmath.workdps(300):
        x = mpmath.mpf(1) / 3
        z = mpmath.mpc(mpmath.sqrt(2), -mpmath.pi)
    enc = codec.encode({"x": x, "z": z, "inf": mpmath.inf, "a": np.arange(3.0)})
    text = codec.dumps(enc)
    assert len(text) < 2000  # not a 10^6-character decimal string
    with mpmath.workdps(15):  # a reader at a lower precision still gets every bit
        back = codec.decode(json.loads(text))
    assert back["x"]._mpf_ == x._mpf_ and back["z"]._mpc_ == z._mpc_ and back["inf"] == mpmath.inf
    assert back["a"].dtype == np.float64 and back["a"].tolist() == [0.0, 1.0, 2.0]
    # format 1 files stored decimal strings; they still decode
    assert codec.decode({"__mpf__": "0.25"}) == mpmath.mpf("0.25")


def test_same_named_claim_files_both_load_and_a_duplicate_id_names_both_files():
    load([str(FIX / "same_name" / "a" / "claims.py"), str(FIX / "same_name" / "b" / "claims.py"),
          str(FIX / "same_name" / "properties.py")])
    assert {"user.same_name_a", "user.same_name_b", "user.named_properties"} <= {c.id for c in REGISTRY.all()}
    import properties

    assert Path(properties.__file__).parent.name == "properties"  # the built-in package is not shadowed
    with pytest.raises(ClaimModuleError) as err:
        load([str(FIX / "same_name" / "dup" / "claims.py")])
    text = str(err.value)
    assert "duplicate claim id 'user.same_name_a'" in text
    assert str(FIX / "same_name" / "a" / "claims.py") in text and str(FIX / "same_name" / "dup" / "claims.py") in text


def test_status_is_data_in_python_and_json():
    row, _ = _row("user.sum_bound")
    d = row.to_json()
    assert d["status"] == "holds" and d["reason"] == "" and json.loads(json.dumps(d))["status"] == "holds"
    assert Status.parse("out_of_reach: too big") == (Status.OUT_OF_REACH, "too big")


def test_a_patched_method_with_original_still_binds_self():
    from verify.mutants import apply_patches

    class Thing:
        def value(self, x):
            return 2 * x

    import types

    mod = types.ModuleType("fake_construction_mod")
    mod.Thing = Thing
    import sys

    sys.modules["fake_construction_mod"] = mod
    try:
        def broken(self, x, *, original):
            return original(self, x) + 1

        with apply_patches((("fake_construction_mod.Thing.value", broken),)):
            assert Thing().value(3) == 7
        assert Thing().value(3) == 6
    finally:
        del sys.modules["fake_construction_mod"]
