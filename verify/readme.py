"""Keep the README's table of claims generated from the registry.

``python -m verify.readme`` rewrites the block between the markers; the tests fail if it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tabulate import tabulate

START, END = "<!-- claims:start -->", "<!-- claims:end -->"


def claims_table() -> str:
    from verify.claims import REGISTRY
    from verify.discovery import load

    load()
    # only the toolkit's own claims: users' modules loaded in the same process are not the README's
    from verify.mutants import kinds_summary

    rows = [[f"`{c.id}`", c.statement.replace("|", "\\|"), c.source.replace("|", "\\|"), c.provenance, c.precision,
             kinds_summary(c.mutants)] for c in REGISTRY.all() if c.module.startswith("properties.")]
    return tabulate(rows, headers=["claim", "statement", "source", "provenance", "precision", "mutants"],
                    tablefmt="github", disable_numparse=True)


def registered_table(name: str) -> str:
    """A deterministic registered table (counts only, no timings), rendered for the README."""
    from verify.discovery import load
    from verify.extras import TABLES

    load()
    headers, rows, notes = TABLES[name].fn(max_seconds=0.0)
    body = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    return f"{body}\n\n{notes}" if notes else body


def _fill(text: str, start: str, end: str, content: str) -> str:
    if start not in text or end not in text:
        raise ValueError(f"README has no {start} … {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{content}\n{end}{tail}"


def render(text: str) -> str:
    text = _fill(text, START, END, claims_table())
    # generated tables: <!-- table:NAME:start --> ... <!-- table:NAME:end -->
    import re

    for name in re.findall(r"<!-- table:([a-z0-9_]+):start -->", text):
        text = _fill(text, f"<!-- table:{name}:start -->", f"<!-- table:{name}:end -->", registered_table(name))
    return text


def main(argv: list[str]) -> int:
    path = Path(__file__).resolve().parent.parent / "README.md"
    new = render(path.read_text(encoding="utf-8"))
    if "--check" in argv:
        if new != path.read_text(encoding="utf-8"):
            print("README claims table is stale: run `python -m verify.readme`", file=sys.stderr)
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
