"""Claim discovery: import every module of the ``properties`` package, plus users' modules."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from verify.claims import REGISTRY

_loaded: set[str] = set()


class ClaimModuleError(ImportError):
    """A claim module that could not be imported (one-line reason)."""


def _import(name: str) -> None:
    if name in _loaded:
        return
    try:
        if name.endswith(".py") or "/" in name:
            path = Path(name).resolve()
            if not path.exists():
                raise ClaimModuleError(f"claim module file {name!r} does not exist")
            sys.path.insert(0, str(path.parent))
            importlib.import_module(path.stem)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            importlib.import_module(name)
    except ClaimModuleError:
        raise
    except Exception as exc:  # any import-time failure of a user module is reported in one line
        raise ClaimModuleError(f"claim module {name!r} failed to import: {exc.__class__.__name__}: {exc}") from exc
    _loaded.add(name)


def builtin_modules() -> list[str]:
    import properties

    return [
        f"properties.{m.name}"
        for m in pkgutil.iter_modules(properties.__path__)
        if not m.name.startswith("_")
    ]


def load(extra: list[str] | None = None, *, builtin: bool = True):
    """Import the built-in claim modules and ``extra`` (dotted names or .py paths); return the registry."""
    if builtin:
        for name in builtin_modules():
            _import(name)
    for name in extra or []:
        _import(name)
    orphans = REGISTRY.orphan_mutants()
    if orphans:
        m = orphans[0]
        raise ClaimModuleError(f"mutant {m.name!r} names unknown claim {m.claim_id!r}")
    return REGISTRY
