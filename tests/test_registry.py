"""Meta-tests of the registry. The claims and mutants themselves are test items of the pytest plugin
(`pytest --prompt-limits`, as tox runs it): each claim x backend comes out as it expects, each mutant is caught."""

from __future__ import annotations

from tests.conftest import REGISTRY


def test_every_claim_has_a_mutant():
    missing = [c.id for c in REGISTRY.all() if not c.mutants]
    assert not missing, f"claims without a mutant: {missing}"


def test_every_claim_is_described():
    for c in REGISTRY.all():
        assert c.statement and c.source, c.id
        assert c.provenance in ("exact", "reconstructed", "derived"), c.id
        assert c.expect == "holds" or c.expect_reason, f"{c.id}: an expected counterexample needs its reason"
