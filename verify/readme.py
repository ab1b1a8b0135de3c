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
    rows = [[f"`{c.id}`", c.statement.replace("|", "\\|"), c.source.replace("|", "\\|"), c.provenance, c.precision,
             len(c.mutants)] for c in REGISTRY.all() if c.module.startswith("properties.")]
    return tabulate(rows, headers=["claim", "statement", "source", "provenance", "precision", "mutants"],
                    tablefmt="github", disable_numparse=True)


def render(text: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"README has no {START} … {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{claims_table()}\n{END}{tail}"


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
