"""Registries for what claim plugins contribute beside claims: report tables and studies.

A *table* (resource growth, a comparison) is built for the report only when one of its claims was selected
(or it is asked for by name). A *study* (a benchmark, a reproduced experiment) is a command of its own:
``prompt-limits study NAME [options]``, with ``main(argv) -> exit code``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """A named table: ``fn(max_seconds) -> (headers, rows, notes)``; ``in_report`` appends it to latest.md
    when a selected claim matches one of ``claims`` (glob patterns; empty: always)."""

    name: str
    title: str
    fn: Callable
    in_report: bool = False
    claims: tuple[str, ...] = ()
    plugin: str = ""

    def wanted(self, claim_ids) -> bool:
        if not self.in_report:
            return False
        if not self.claims:
            return True
        return any(fnmatch.fnmatchcase(cid, p) for cid in claim_ids for p in self.claims)


@dataclass(frozen=True)
class Study:
    """A registered study: ``main(argv: list[str]) -> int``; ``summary`` is its one-line description."""

    name: str
    title: str
    main: Callable
    module: str = ""
    plugin: str = ""


TABLES: dict[str, Table] = {}
STUDIES: dict[str, Study] = {}


def _plugin() -> str:
    from verify.claims import _CURRENT_PLUGIN

    return _CURRENT_PLUGIN[-1] if _CURRENT_PLUGIN else ""


def table(name: str, *, title: str, in_report: bool = False, claims: tuple[str, ...] = ()):
    """Register ``fn(max_seconds: float = 60.0) -> (headers, rows, notes)`` under ``name``."""

    def deco(fn):
        if name in TABLES:
            raise ValueError(f"duplicate table name {name!r}")
        TABLES[name] = Table(name, title, fn, in_report, tuple(claims), _plugin())
        return fn

    return deco


def study(name: str, *, title: str):
    """Register ``main(argv: list[str]) -> int`` as ``prompt-limits study NAME``."""

    def deco(fn):
        if name in STUDIES:
            prev = STUDIES[name]
            raise ValueError(f"duplicate study name {name!r}: already registered by {prev.module}")
        STUDIES[name] = Study(name, title, fn, getattr(fn, "__module__", ""), _plugin())
        return fn

    return deco
