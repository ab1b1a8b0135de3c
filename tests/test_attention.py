"""The attention claims' precision ladder: the mpmath rung recomputes the same instance."""

from __future__ import annotations

import verify
from properties.attention import check_prompt_mixture
from verify import Backend
from verify.discovery import load
from verify.runner import decide

INSTANCES = [
    dict(seed=s, d=1 + s % 5, s=1 + s % 3, m=1 + s % 7, m_p=1 + 3 * s, weight_scale=0.5 + s, prompt_scale=0.1 * 3**s)
    for s in range(5)
]


def test_mpmath_rung_measures_the_same_instance():
    for inst in INSTANCES:
        lo, hi = check_prompt_mixture(inst, Backend()), check_prompt_mixture(inst, Backend("mpmath", dps=60))
        assert hi.precision is None and hi.ratio <= 1.0
        assert hi.bound < lo.bound * 1e-40  # the floor scales with the unit roundoff (10^-59 vs 2^-52)


def test_a_suspect_float64_failure_is_cleared_at_mpmath():
    claim = load().get("attention.prompt_mixture")
    inst = INSTANCES[3]
    fake = verify.Evidence(observed=1.5, bound=1.0)  # as if float64 rounding had pushed the ratio over 1
    d = decide(claim, claim.check, inst, Backend(), fake)
    assert d.rescued and d.evidence.precision == "mpmath" and d.evidence.ratio <= 1.0
    assert [label for label, _ in d.trail] == ["numpy/float64/cpu", "mpmath[50]"]
