"""Plugin discovery: claims and studies come from entry points, and from files or modules a user names.

Entry point groups (``importlib.metadata``): ``prompt_limits.claims`` and ``prompt_limits.studies``. Each entry
names a module; importing it registers its claims, mutants, tables and studies (a package is imported with
every public submodule). The built-ins are this project's own entry points (pyproject.toml); an installed user
package plugs in with one line in its pyproject.toml. ``--claims FILE.py|MODULE`` stays for scripts: a file
loads under a module name unique to its path, so two ``claims.py`` in different folders both load.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path

from verify.claims import _CURRENT_PLUGIN, REGISTRY

GROUPS = ("prompt_limits.claims", "prompt_limits.studies")
_loaded: set[str] = set()


class ClaimModuleError(ImportError):
    """A plugin or claim module that could not be imported (one-line reason)."""


def _import_tree(modname: str) -> None:
    mod = importlib.import_module(modname)
    path = getattr(mod, "__path__", None)
    if path is not None:  # a package: every public submodule, depth first, in name order
        for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
            if not info.name.startswith("_"):
                _import_tree(f"{modname}.{info.name}")


def _file_module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    return f"prompt_limits_user.{stem}_{digest}"


def _import_file(path: Path) -> None:
    name = _file_module_name(path)
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ClaimModuleError(f"claim file {str(path)!r} cannot be loaded as a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # before exec: dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise


def _load(label: str, plugin: str, fn) -> None:
    if label in _loaded:
        return
    _CURRENT_PLUGIN.append(plugin)
    try:
        fn()
    except ClaimModuleError:
        raise
    except Exception as exc:  # any import-time failure of a plugin is reported in one line
        raise ClaimModuleError(f"{label} failed to import: {exc.__class__.__name__}: {exc}") from exc
    finally:
        _CURRENT_PLUGIN.pop()
    _loaded.add(label)


def plugin_entry_points() -> list:
    """Entry points of both groups, one per (group, name, value), in a stable order."""
    eps = []
    for group in GROUPS:
        eps += list(entry_points(group=group))
    seen, out = set(), []
    for ep in sorted(eps, key=lambda e: (e.group, e.name, e.value)):
        if (ep.value, ep.name) not in seen:
            seen.add((ep.value, ep.name))
            out.append(ep)
    return out


def _plugin_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name}:{ep.name}" if dist is not None and dist.name != ep.name else ep.name


def _is_file(name: str) -> bool:
    return name.endswith(".py") or "/" in name or "\\" in name


def plugin_label_of(name: str) -> str:
    """The plugin label that claims loaded from one ``--claims`` argument carry (``Claim.plugin``)."""
    return str(Path(name).resolve()) if _is_file(name) else name


def load_user(name: str) -> None:
    """Import one ``--claims`` argument: a .py file (unique module name) or a dotted module."""
    if _is_file(name):
        path = Path(name).resolve()
        if not path.exists():
            raise ClaimModuleError(f"claim module file {name!r} does not exist")
        _load(f"claim file {name!r}", plugin_label_of(name), lambda: _import_file(path))
    else:
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        _load(f"claim module {name!r}", name, lambda: _import_tree(name))


def load(extra: list[str] | None = None, *, builtin: bool = True):
    """Import every installed plugin (entry points) and ``extra`` (files or modules); return the registry."""
    if builtin:
        eps = plugin_entry_points()
        if not any(ep.value.split(":")[0] == "properties" for ep in eps):
            # an uninstalled checkout: the built-in claims are still this package's own
            _load("built-in plugin 'properties'", "prompt-limits", lambda: _import_tree("properties"))
        for ep in eps:
            modname = ep.value.split(":")[0].strip()
            _load(f"plugin {_plugin_name(ep)!r} ({ep.group} = {modname!r})", _plugin_name(ep),
                  lambda m=modname: _import_tree(m))
    for name in extra or []:
        load_user(name)
    orphans = REGISTRY.orphan_mutants()
    if orphans:
        m = orphans[0]
        raise ClaimModuleError(f"mutant {m.name!r} names unknown claim {m.claim_id!r}")
    return REGISTRY
