"""Registries for tables that claim modules contribute to the report (resource growth, comparisons)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """A named table: ``fn(max_seconds) -> (headers, rows, notes)``; ``in_report`` appends it to latest.md."""

    name: str
    title: str
    fn: Callable
    in_report: bool = False


TABLES: dict[str, Table] = {}


def table(name: str, *, title: str, in_report: bool = False):
    """Register ``fn(max_seconds: float = 60.0) -> (headers, rows, notes)`` under ``name``."""

    def deco(fn):
        if name in TABLES:
            raise ValueError(f"duplicate table name {name!r}")
        TABLES[name] = Table(name, title, fn, in_report)
        return fn

    return deco
