"""Every registered claim holds (or fails as it documents) on every backend under test; every mutant is caught."""

from __future__ import annotations

import os

import pytest

from tests.conftest import REGISTRY, backends_under_test
from verify.backends import Backend
from verify.runner import hunt, run_claim
from verify.settings import default_profile

BACKENDS = backends_under_test()
PROFILE = default_profile()
BUDGET = float(os.environ.get("PROMPT_LIMITS_TEST_SECONDS", "40"))
# jax dispatches eagerly op by op and recompiles per shape: fewer instances keep its env inside the budget
PER_BACKEND_EXAMPLES = {"jax": 5}

CASES = [
    pytest.param(c, b, id=f"{c.id}-{b.name}-{b.dtype}")
    for c in REGISTRY.all()
    for b in BACKENDS
    if b.name in c.backends and (b.dtype == "float64" or "float32" in c.ladder or c.precision == "float32")
]


@pytest.mark.backends
@pytest.mark.parametrize("claim,backend", CASES)
def test_claim(claim, backend):
    row, res = run_claim(claim, backend, profile=PROFILE, max_seconds=BUDGET, seed=0,
                         max_examples=PER_BACKEND_EXAMPLES.get(backend.name))
    assert not row.status.startswith("error"), f"{claim.id}: the check raised: {row.status} on {res.error_instance!r}"
    if row.status.startswith("out_of_reach"):
        assert claim.limits, f"{claim.id} was out of reach but states no limits: {row.status}"
        return
    assert row.tried > 0
    assert row.as_expected, (
        f"{claim.id} on {backend.label}: {row.status} (expected {claim.expect}); worst ratio {row.worst_ratio};"
        f" instance {res.failure_instance!r}; evidence {row.worst_evidence}"
    )


MUTANTS = [pytest.param(c, m, id=f"{c.id}-{m.name}") for c in REGISTRY.all() for m in c.mutants]


@pytest.mark.parametrize("claim,mutant", MUTANTS)
def test_mutant_is_caught(claim, mutant):
    res = hunt(claim, Backend(), mutant=mutant, profile=PROFILE,
               max_seconds=BUDGET, seed=0, shrink=False)
    assert res.error is None, f"mutant {mutant.name} raised instead of failing: {res.error}"
    assert res.found, (
        f"mutant {claim.id}/{mutant.name} survived {res.tried} instances"
        f" (worst ratio {res.worst.ratio if res.worst else None}): the property cannot see this defect"
    )


def test_every_claim_has_a_mutant():
    missing = [c.id for c in REGISTRY.all() if not c.mutants]
    assert not missing, f"claims without a mutant: {missing}"


def test_every_claim_is_described():
    for c in REGISTRY.all():
        assert c.statement and c.source, c.id
        assert c.provenance in ("exact", "reconstructed", "derived"), c.id
        assert c.expect == "holds" or c.expect_reason, f"{c.id}: an expected counterexample needs its reason"
