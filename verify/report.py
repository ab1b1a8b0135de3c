"""Reports: reports/latest.json and reports/latest.md (tabulate, github), or LaTeX for papers.

Written after every claim (atomically), so an interrupted run still leaves a valid report of what
finished. Ratios are printed with 6 significant digits and margins as 1 - ratio in %.3e: a bound
that is nearly tight is never rounded into "1.0".
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from tabulate import tabulate

HEADERS = ["claim", "source", "provenance", "backend", "tried", "rejected", "worst ratio", "margin",
           "floor share", "precision", "status", "s"]


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("prompt-limits", "numpy", "hypothesis", "mpmath", "torch", "jax", "jaxlib", "python-flint",
                 "array-api-compat"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def _fmt_ratio(r):
    if r is None:
        return "—"
    r = float(r)
    text = f"{r:.6g}"
    # a ratio just below (or above) 1 must never print as "1": show every digit instead
    return repr(r) if float(text) == 1.0 and r != 1.0 else text


def _fmt_margin(m):
    if m is None:
        return "—"
    return f"{float(m):.3e}"


def status_text(row: dict) -> str:
    """'holds', or 'out_of_reach: reason' for a human; rows of format 1 carry the reason inside status."""
    from verify.status import Status

    status, reason = Status.parse(row["status"])
    reason = row.get("reason") or reason
    return f"{status}: {reason}" if reason and status is not Status.HOLDS else str(status)


def _floor_share(row: dict) -> str:
    ev = row.get("worst_evidence") or {}
    floor, bound = (ev.get("resources") or {}).get("floor"), ev.get("bound")
    try:
        return f"{float(floor) / float(bound):.3g}" if floor is not None and float(bound) > 0 else "—"
    except (TypeError, ValueError):
        return "—"


def _status(row: dict) -> str:
    s = status_text(row)
    if row.get("expected", "holds") != "holds":
        tag = "as expected" if row.get("as_expected") else f"expected {row['expected']}"
        s = f"{s} ({tag}: {row.get('expect_reason') or 'documents a needed hypothesis'})"
    return s


def table_rows(rows: list[dict]) -> list[list]:
    out = []
    for r in rows:
        out.append([
            r["claim_id"], r["source"], r["provenance"], r["backend"], r["tried"],
            sum(r.get("rejected", {}).values()), _fmt_ratio(r.get("worst_ratio")), _fmt_margin(r.get("margin")),
            _floor_share(r), r.get("precision") or "—", _status(r), f"{r['seconds']:.1f}",
        ])
    return out


def render_markdown(doc: dict) -> str:
    meta = doc["meta"]
    rows = doc["rows"]
    from verify.status import Status

    counts = {}
    for r in rows:
        k = Status.parse(r["status"])[0].value
        counts[k] = counts.get(k, 0) + 1
    lines = [
        "# prompt-limits report",
        "",
        f"- run: {meta.get('started')} · profile `{meta.get('profile')}` · seed `{meta.get('seed')}`"
        f" · backends {', '.join(meta.get('backends', []))}",
        f"- claims: {len(rows)} rows · " + " · ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        + (" · **interrupted**" if meta.get("interrupted") else ""),
        f"- versions: {', '.join(f'{k} {v}' for k, v in meta.get('versions', {}).items())}",
        "",
        "A claim holds on an instance when observed / bound <= 1 and its named side conditions hold; `worst ratio`"
        " is the largest over all instances tried, `margin` = 1 - worst ratio, `floor share` the part of the worst"
        " instance's bound that is a rounding floor. `precision` is the arithmetic that decided the worst instance."
        " `holds` means: at least the claim's stated share of the drawn instances was decided, every bound was"
        " finite, and no instance violated the claim after the precision ladder re-checked suspect failures.",
        "",
        tabulate(table_rows(rows), headers=HEADERS, tablefmt="github", disable_numparse=True),
        "",
    ]
    if rows:
        lines += ["## Worst instances: resources, notes and size limits", ""]
        for r in rows:
            ev = r.get("worst_evidence") or {}
            res = ", ".join(f"{k}={v}" for k, v in ev.get("resources", {}).items())
            failed = [c for c in ev.get("conditions", []) if not c.get("ok")]
            head = ("; ".join(f"{c['name']}: {c['detail']}" for c in failed) if failed
                    else f"observed {ev['observed']} vs bound {ev['bound']}" if ev else "no instance decided")
            lines.append(f"- `{r['claim_id']}` ({r['backend']}): {head}"
                         + (f"; {res}" if res else "") + (f". {ev['notes']}" if ev.get("notes") else "")
                         + (f" — {r['notes']}" if r.get("notes") else "")
                         + (f". Sizes drawn: {r['limits']}." if r.get("limits") else ""))
        lines.append("")
    cx = [r for r in rows if r.get("counterexample_file")]
    if cx:
        lines += ["## Counterexamples", ""]
        for r in cx:
            lines.append(f"- `{r['claim_id']}`: `prompt-limits replay {r['counterexample_file']}`")
        lines.append("")
    for t in doc.get("tables", []):
        lines += [f"## {t['title']}", ""]
        lines.append(tabulate(t["rows"], headers=t["headers"], tablefmt="github", disable_numparse=True))
        if t.get("notes"):
            lines += ["", t["notes"]]
        lines.append("")
    return "\n".join(lines)


def render_latex(doc: dict) -> str:
    return tabulate(table_rows(doc["rows"]), headers=HEADERS, tablefmt="latex_booktabs", disable_numparse=True)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class ReportWriter:
    """Accumulates rows and rewrites latest.{json,md} after each one."""

    def __init__(self, out_dir: Path, meta: dict):
        self.out_dir = Path(out_dir)
        self.doc = {"meta": {**meta, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "versions": versions()},
                    "rows": [], "tables": []}

    def add(self, row: dict) -> None:
        self.doc["rows"].append(row)
        self.flush()

    def add_table(self, name: str, title: str, headers, rows, notes: str = "") -> None:
        self.doc["tables"].append({"name": name, "title": title, "headers": list(headers),
                                   "rows": [[str(c) for c in r] for r in rows], "notes": notes})
        self.flush()

    def finish(self, interrupted: bool = False) -> None:
        self.doc["meta"]["interrupted"] = interrupted
        self.doc["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        self.flush()

    def flush(self) -> None:
        _atomic_write(self.out_dir / "latest.json", json.dumps(self.doc, indent=1, allow_nan=False))
        _atomic_write(self.out_dir / "latest.md", render_markdown(self.doc))


def load_report(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or "rows" not in doc or "meta" not in doc:
        raise ValueError(f"{path} is not a prompt-limits report")
    return doc
