"""Meta-tests of the registry. The claims and mutants themselves are test items of the pytest plugin
(`pytest --prompt-limits`, as tox runs it): each claim x backend comes out as it expects, each mutant is caught."""

from __future__ import annotations

from tests.conftest import REGISTRY

BUILTIN = [c for c in REGISTRY.all() if c.module.startswith("properties.")]


def test_every_claim_has_a_mutant():
    missing = [c.id for c in BUILTIN if not c.mutants]
    assert not missing, f"claims without a mutant: {missing}"


def test_every_claim_is_described():
    for c in REGISTRY.all():
        assert c.statement and c.source, c.id
        assert c.provenance in ("exact", "reconstructed", "derived"), c.id
        assert c.expect == "holds" or c.expect_reason, f"{c.id}: an expected counterexample needs its reason"


def test_the_strongest_mutant_breaks_a_construction():
    """Every built-in claim has a patch (a broken construction) or tightened-bound mutant. Only claims that document
    a limitation rather than a theorem may rest on a flag alone: their subject is the check's own verdict."""
    documenting = {c.id for c in BUILTIN if c.expect != "holds"}
    flag_only = {c.id for c in BUILTIN if c.mutants and all(m.kind == "flag" for m in c.mutants)}
    assert flag_only <= documenting, f"claims whose only mutants are flags: {sorted(flag_only - documenting)}"
    for c in BUILTIN:
        for m in c.mutants:
            if m.kind == "flag":
                doc = (m.check.__doc__ or "").lower()
                assert "flag" in doc, f"{c.id}/{m.name}: a flag mutant says why in its docstring"
