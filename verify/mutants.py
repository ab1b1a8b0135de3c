"""Mutants: deliberately broken variants of a claim that its unchanged property must catch.

The strongest form patches a construction (``patch``): a named function of a ``constructions`` module is replaced
for the duration of the hunt and the claim's own check runs. ``tightened`` scales the claim's bound below the
truth, generic, no code per claim. ``flag`` (a broken check) is kept only where the defect lives in the check.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from verify.errors import ClaimError

MUTANT_KINDS = ("patch", "tightened", "flag")


@dataclass(frozen=True)
class Mutant:
    """A deliberately broken variant of a claim; the claim's property must report ratio > 1 on some instance.

    kind "patch": ``patches`` replace named functions/attributes of construction modules for the duration of
        the hunt, and the claim's own, unchanged check runs; the strongest form.
    kind "tightened": the claim's unchanged check against ``factor * bound`` (factor < 1): a bound made
        tighter than the truth must be seen, so the property also sees a bound that got looser.
    kind "flag": a broken *check* (``check``); only where the defect lives in the check itself.
    """

    claim_id: str
    name: str
    check: Callable[[Any, Any], Any] | None = None
    description: str = ""
    strategy: Any = None  # optional: a strategy that reaches the mutant's failures faster
    kind: str = "flag"
    patches: tuple[tuple[str, Any], ...] = ()
    factor: float = 1.0

    def __post_init__(self):
        if self.kind not in MUTANT_KINDS:
            raise ClaimError(f"mutant {self.name!r}: kind must be one of {MUTANT_KINDS}")
        if self.kind == "flag" and self.check is None:
            raise ClaimError(f"flag mutant {self.name!r} needs a check")
        if self.kind == "patch" and not self.patches:
            raise ClaimError(f"patch mutant {self.name!r} needs at least one patch")
        if self.kind == "tightened" and not 0.0 < self.factor < 1.0:
            raise ClaimError(f"tightened mutant {self.name!r}: factor must lie in (0, 1), got {self.factor!r}")

    def checker(self, claim) -> Callable[[Any, Any], Any]:
        """The function the hunt calls: the broken check (flag), or the claim's own check (patch, tightened)."""
        if self.kind == "flag":
            return self.check
        if self.kind == "tightened":
            f = self.factor

            def tightened(instance, backend):
                return claim.check(instance, backend).scaled_bound(f)

            return tightened
        return claim.check

    @contextlib.contextmanager
    def active(self):
        """Apply this mutant's patches (if any) everywhere the patched objects are bound; restore on exit."""
        with apply_patches(self.patches):
            yield self


def resolve(target: str):
    """(owner, attribute, current object) for a dotted 'package.module.[Class.]attr' path."""
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        modname = ".".join(parts[:i])
        try:
            owner = importlib.import_module(modname)
        except ImportError:
            continue
        try:
            for p in parts[i:-1]:
                owner = getattr(owner, p)
            return owner, parts[-1], getattr(owner, parts[-1])
        except AttributeError:
            break
    raise ClaimError(f"patch target {target!r} does not name an attribute of an importable module")


@contextlib.contextmanager
def apply_patches(patches):
    """Replace each target by its replacement in its owner and in every loaded module that bound the same object
    (``from m import f`` copies the reference), so the claim's unchanged check sees the defect wherever it calls it.

    A replacement whose signature has a parameter named ``original`` receives the unpatched object there.
    """
    undo = []
    try:
        for target, replacement in patches:
            owner, attr, orig = resolve(target)
            new = replacement
            if callable(replacement) and _takes_original(replacement):
                new = _with_original(replacement, orig)
            undo.append((owner, attr, orig))
            setattr(owner, attr, new)
            for mod in list(sys.modules.values()):
                d = getattr(mod, "__dict__", None)
                if d is None or mod is owner:
                    continue
                for k, v in list(d.items()):
                    if v is orig:
                        undo.append((mod, k, orig))
                        d[k] = new
        yield
    finally:
        for owner, attr, orig in reversed(undo):
            setattr(owner, attr, orig)


def _with_original(replacement, orig):
    """A plain function (so a class attribute still binds ``self``) that hands the unpatched object over."""

    @functools.wraps(replacement)
    def patched(*args, **kwargs):
        return replacement(*args, original=orig, **kwargs)

    return patched


def _takes_original(fn) -> bool:
    try:
        return "original" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def mutant(claim_id: str, name: str, *, patch: str | None = None, strategy=None, description: str = ""):
    """Register a mutant of ``claim_id``.

    With ``patch="constructions.module.attr"`` the decorated function *replaces* that attribute for the hunt and
    the claim's unchanged check runs (give it a parameter ``original`` to receive the unpatched object).
    Without ``patch`` the decorated ``check(instance, backend) -> Evidence`` is a broken check (a flag mutant):
    only for a defect that lives in the check itself; say so in its docstring.
    The claim may be registered before or after its mutants; orphans are reported by the tests.
    """

    from verify.claims import REGISTRY

    def deco(fn):
        desc = description or (fn.__doc__ or "").strip().split("\n")[0]
        if patch is None:
            REGISTRY.add_mutant(Mutant(claim_id, name, fn, desc, strategy))
        else:
            REGISTRY.add_mutant(Mutant(claim_id, name, None, desc, strategy, kind="patch", patches=((patch, fn),)))
        return fn

    return deco


def patch_mutant(claim_id: str, name: str, patches: Mapping[str, Any], *, strategy=None, description: str = ""):
    """Register a mutant that replaces several construction attributes at once ({target: replacement})."""
    from verify.claims import REGISTRY

    REGISTRY.add_mutant(Mutant(claim_id, name, None, description, strategy, kind="patch",
                               patches=tuple(patches.items())))


def tightened(claim_id: str, factor: float, *, name: str = "bound_tightened", strategy=None, description: str = ""):
    """Register the generic tightened-bound mutant: the claim's check against ``factor * bound``."""
    from verify.claims import REGISTRY

    REGISTRY.add_mutant(Mutant(claim_id, name, None, description or f"the bound scaled by {factor}", strategy,
                               kind="tightened", factor=factor))


def kinds_summary(mutants) -> str:
    """'2 patch, 1 tightened': how a claim's mutants break it, for `list` and the README."""
    kinds: dict[str, int] = {}
    for m in mutants:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "0"
