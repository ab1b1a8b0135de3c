"""The claim model: Evidence, the claim/mutant registry, and the decorators users apply.

A claim is a check ``check(instance, backend) -> Evidence`` plus a Hypothesis strategy that
draws instances, a source, a provenance tag and the arithmetic it needs. The engine never
imports a specific claim: it discovers them through this registry.
"""

from __future__ import annotations

import fnmatch
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from verify.errors import ClaimError, OutOfReach, UnsupportedPrecision  # noqa: F401  (the claim author's API)
from verify.mutants import Mutant, mutant, patch_mutant, tightened  # noqa: F401

PROVENANCES = ("exact", "reconstructed", "derived")
PRECISIONS = ("float32", "float64", "mpmath", "arb")
_ID_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


@dataclass(frozen=True)
class Condition:
    """A named side condition of a claim's conclusion: ``Condition("rank", r == 10, "rank 12 != C(d+g, g) = 10")``.

    A failed condition makes the instance a violation (ratio inf) and the report names it, instead of an
    anonymous ``observed = inf``.
    """

    name: str
    ok: bool
    detail: str = ""

    def __post_init__(self):
        object.__setattr__(self, "ok", bool(self.ok))

    def __str__(self) -> str:
        return f"{self.name}: {self.detail or ('holds' if self.ok else 'fails')}"


@dataclass(frozen=True)
class Evidence:
    """What one check measured: ``observed`` against ``bound``; the claim holds when ratio <= 1.

    ``resources`` carries size/resource counts (prompt length, digits, rank...) that the report
    prints beside the ratio; ``notes`` is free text for a human; ``conditions`` are named side
    conditions, each of which must hold. A non-finite bound decides nothing (``vacuous``): the runner
    reports such an instance out of reach, never as a pass.
    """

    observed: float
    bound: float
    notes: str = ""
    resources: Mapping[str, Any] = field(default_factory=dict)
    precision: str | None = None
    conditions: tuple[Condition, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "conditions", tuple(self.conditions))
        for c in self.conditions:
            if not isinstance(c, Condition):
                raise TypeError(f"Evidence.conditions holds verify.Condition objects, got {c!r}")
        for name in ("observed", "bound"):
            v = getattr(self, name)
            try:
                fv = float(v)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"Evidence.{name} must be a real number, got {v!r}") from exc
            object.__setattr__(self, name, fv)
        if math.isnan(self.bound) or self.bound < 0:
            raise ValueError(f"Evidence.bound must be >= 0, got {self.bound!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"Evidence.precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def failed(self) -> tuple[Condition, ...]:
        return tuple(c for c in self.conditions if not c.ok)

    @property
    def vacuous(self) -> str:
        """Why this evidence decides nothing ('' when it decides): a non-finite bound."""
        if not math.isfinite(self.bound):
            return f"vacuous bound ({self.bound!r}): nothing to compare against"
        return ""

    @property
    def ratio(self) -> float:
        """observed / bound; a failed condition or NaN observation counts as a violation (inf), never a pass."""
        if self.failed:
            return math.inf
        if math.isnan(self.observed):
            return math.inf
        if self.bound == 0.0:
            return 0.0 if self.observed <= 0.0 else math.inf
        r = self.observed / self.bound
        # inf / inf: an overflowed measurement decides nothing, so it is never a pass
        return math.inf if math.isnan(r) else r

    @property
    def margin(self) -> float:
        return 1.0 - self.ratio

    @property
    def holds(self) -> bool:
        return self.ratio <= 1.0

    def with_precision(self, precision: str) -> Evidence:
        return Evidence(self.observed, self.bound, self.notes, dict(self.resources), precision, self.conditions)

    def scaled_bound(self, factor: float) -> Evidence:
        """The same evidence against ``factor * bound`` (a tightened-bound mutant)."""
        return Evidence(self.observed, self.bound * factor, self.notes, dict(self.resources), self.precision,
                        self.conditions)

    def describe(self) -> str:
        """One line for a report: the failed conditions if any, else observed vs bound."""
        if self.failed:
            return "; ".join(str(c) for c in self.failed)
        return f"observed {self.observed!r} vs bound {self.bound!r} (ratio {self.ratio!r})"

    def to_json(self) -> dict:
        return {
            "observed": _jfloat(self.observed),
            "bound": _jfloat(self.bound),
            "ratio": _jfloat(self.ratio),
            "margin": _jfloat(self.margin),
            "precision": self.precision,
            "notes": self.notes,
            "resources": {k: _jsonable_resource(v) for k, v in self.resources.items()},
            "conditions": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.conditions],
        }

    @classmethod
    def from_json(cls, d: Mapping) -> Evidence:
        return cls(
            observed=_pfloat(d["observed"]),
            bound=_pfloat(d["bound"]),
            notes=d.get("notes", ""),
            resources=dict(d.get("resources", {})),
            precision=d.get("precision"),
            conditions=tuple(Condition(c["name"], c["ok"], c.get("detail", "")) for c in d.get("conditions", ())),
        )


def _jfloat(x: float):
    """Floats for JSON: finite values as numbers (repr round-trips exactly), others as strings."""
    x = float(x)
    return x if math.isfinite(x) else repr(x)


def _pfloat(x) -> float:
    return float(x)


def _jsonable_resource(v):
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, float):
        return _jfloat(v)
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return _jsonable_resource(v.item())
    except ImportError:  # pragma: no cover - numpy is a core dependency
        pass
    return str(v)


@dataclass(frozen=True)
class Claim:
    id: str
    source: str
    statement: str
    strategy: Any
    provenance: str
    check: Callable[[Any, Any], Evidence]
    precision: str = "float64"
    ladder: tuple[str, ...] = ("float64",)
    rescue: bool = True
    backends: tuple[str, ...] = ("numpy",)
    limits: str = ""
    expect: str = "holds"
    expect_reason: str = ""
    module: str = ""
    max_examples: int | None = None
    tight: float | None = None
    min_decided: float = 0.5
    plugin: str = ""

    @property
    def mutants(self) -> tuple[Mutant, ...]:
        return REGISTRY.mutants_of(self.id)


def _where(module: str) -> str:
    """A module's file where it has one (user files load under generated names), else its name."""
    mod = sys.modules.get(module)
    return getattr(mod, "__file__", None) or module or "?"


class Registry:
    def __init__(self):
        self._claims: dict[str, Claim] = {}
        self._mutants: dict[str, dict[str, Mutant]] = {}

    def add(self, c: Claim) -> None:
        if c.id in self._claims:
            prev = self._claims[c.id]
            raise ClaimError(
                f"duplicate claim id {c.id!r}: already registered by {_where(prev.module)}"
                f" (now again by {_where(c.module)})"
            )
        self._claims[c.id] = c

    def add_mutant(self, m: Mutant) -> None:
        bucket = self._mutants.setdefault(m.claim_id, {})
        if m.name in bucket:
            raise ClaimError(f"duplicate mutant {m.name!r} for claim {m.claim_id!r}")
        bucket[m.name] = m

    def mutants_of(self, claim_id: str) -> tuple[Mutant, ...]:
        return tuple(self._mutants.get(claim_id, {}).values())

    def orphan_mutants(self) -> list[Mutant]:
        return [m for cid, b in self._mutants.items() if cid not in self._claims for m in b.values()]

    def get(self, claim_id: str) -> Claim:
        try:
            return self._claims[claim_id]
        except KeyError:
            raise ClaimError(f"unknown claim id {claim_id!r}") from None

    def all(self) -> list[Claim]:
        return sorted(self._claims.values(), key=lambda c: c.id)

    def select(self, patterns: list[str] | None) -> list[Claim]:
        """Claims matching ids or shell globs; a pattern that matches nothing is an error."""
        if not patterns:
            return self.all()
        chosen: dict[str, Claim] = {}
        for p in patterns:
            hits = [c for c in self.all() if fnmatch.fnmatchcase(c.id, p)]
            if not hits:
                raise ClaimError(f"no claim matches {p!r} (see `prompt-limits list`)")
            for c in hits:
                chosen[c.id] = c
        return sorted(chosen.values(), key=lambda c: c.id)

    def __len__(self):
        return len(self._claims)

    def __contains__(self, claim_id):
        return claim_id in self._claims


REGISTRY = Registry()


def claim(
    id: str,
    *,
    source: str,
    statement: str,
    strategy,
    provenance: str,
    precision: str = "float64",
    mutants: Mapping[str, Callable] | tuple = (),
    ladder: tuple[str, ...] | None = None,
    rescue: bool = True,
    backends: tuple[str, ...] = ("numpy",),
    limits: str = "",
    expect: str = "holds",
    expect_reason: str = "",
    max_examples: int | None = None,
    tight: float | None = None,
    min_decided: float = 0.5,
):
    """Register ``check(instance, backend) -> Evidence`` as a claim.

    precision: the arithmetic the check needs to decide (float32 | float64 | mpmath | arb).
    ladder: the precisions the check implements, lowest first; a suspect failure is re-checked on
        the rungs above the one it was found at. Defaults to (precision,): no re-check.
    rescue: False when the low-precision backend *is* the subject (a float32 kernel's error): the
        ladder then only validates the reference and never clears the backend.
    backends: array backends the check supports (numpy | torch | jax).
    expect: "holds"; "counterexample" for a claim that documents where a theorem's hypothesis is needed;
        "out_of_reach" for a claim that documents what a precision cannot decide (asserted: deciding
        suddenly is reported too). Both need expect_reason.
    tight: the worst ratio the strategy is known to reach (the bound is attained or nearly on a known family);
        registers a generic "bound_tightened" mutant at that factor, so a loosened constant is caught.
    min_decided: the share of drawn instances that must be decided (not out of reach) for the run to count.
    mutants: {name: check} pairs (or Mutant objects) registered beside the claim.
    """
    if not _ID_RE.match(id):
        raise ClaimError(f"claim id {id!r} must be dotted lower-case, like 'hu24.contextual_mapping'")
    if provenance not in PROVENANCES:
        raise ClaimError(f"claim {id!r}: provenance must be one of {PROVENANCES}, got {provenance!r}")
    if precision not in PRECISIONS:
        raise ClaimError(f"claim {id!r}: precision must be one of {PRECISIONS}, got {precision!r}")
    if expect not in ("holds", "counterexample", "out_of_reach"):
        raise ClaimError(f"claim {id!r}: expect must be 'holds', 'counterexample' or 'out_of_reach'")
    if expect != "holds" and not expect_reason:
        raise ClaimError(f"claim {id!r}: expect={expect!r} needs an expect_reason")
    if tight is not None and not 0.0 < tight < 1.0:
        raise ClaimError(f"claim {id!r}: tight must lie in (0, 1), got {tight!r}")
    if not 0.0 <= min_decided <= 1.0:
        raise ClaimError(f"claim {id!r}: min_decided must lie in [0, 1]")
    if ladder is None:
        # Opt-in: only a check that really computes at a higher rung may be re-checked there,
        # otherwise the report would name a precision that never decided anything.
        ladder = (precision,)
    bad = [b for b in backends if b not in ("numpy", "torch", "jax")]
    if bad:
        raise ClaimError(f"claim {id!r}: unknown backends {bad}")

    def deco(check):
        c = Claim(
            id=id,
            source=source,
            statement=statement,
            strategy=strategy,
            provenance=provenance,
            check=check,
            precision=precision,
            ladder=tuple(ladder),
            rescue=rescue,
            backends=tuple(backends),
            limits=limits,
            expect=expect,
            expect_reason=expect_reason,
            module=getattr(check, "__module__", ""),
            max_examples=max_examples,
            tight=tight,
            min_decided=min_decided,
            plugin=_CURRENT_PLUGIN[-1] if _CURRENT_PLUGIN else "",
        )
        REGISTRY.add(c)
        if tight is not None:
            REGISTRY.add_mutant(Mutant(id, "bound_tightened", kind="tightened", factor=tight,
                                       description=f"the bound scaled by {tight}: the worst known ratio, so the"
                                                   " property sees a bound looser than the truth"))
        items = mutants.items() if isinstance(mutants, Mapping) else [(m.name, m) for m in mutants]
        for name, m in items:
            if isinstance(m, Mutant):
                REGISTRY.add_mutant(m)
            else:
                REGISTRY.add_mutant(Mutant(id, name, m, (m.__doc__ or "").strip().split("\n")[0]))
        check.claim = c
        return check

    return deco


_CURRENT_PLUGIN: list[str] = []
