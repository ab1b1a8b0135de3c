"""prompt-limits' engine: the claim registry, backends, runner, counterexamples, reports and CLI.

Public API for claim authors::

    import verify
    @verify.claim("mine.square_nonneg", source="folklore", statement="x^2 >= 0",
                  strategy=st.floats(-1e3, 1e3), provenance="exact")
    def check(x, backend):
        return verify.Evidence(observed=-x * x, bound=0.0)
"""

from verify.backends import Backend, BackendUnavailable
from verify.claims import (
    REGISTRY,
    Claim,
    ClaimError,
    Condition,
    Evidence,
    Mutant,
    OutOfReach,
    UnsupportedPrecision,
    claim,
    mutant,
    patch_mutant,
    tightened,
)
from verify.extras import STUDIES, TABLES, study, table
from verify.status import Status

__all__ = [
    "REGISTRY",
    "STUDIES",
    "TABLES",
    "Backend",
    "BackendUnavailable",
    "Claim",
    "ClaimError",
    "Condition",
    "Evidence",
    "Mutant",
    "OutOfReach",
    "Status",
    "UnsupportedPrecision",
    "claim",
    "mutant",
    "patch_mutant",
    "study",
    "table",
    "tightened",
]
