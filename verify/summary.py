"""A short markdown summary of a run for CI pages, appended to ``$GITHUB_STEP_SUMMARY`` when it is set.

GitHub renders that file on the workflow run's page: counts by status, the rows that are not as expected
(with their evidence and replay command), the gate's findings, and the closest bounds (smallest margins).
"""

from __future__ import annotations

import os
from pathlib import Path

from verify.junit import status_of_row


def _fmt(x) -> str:
    if x is None:
        return "—"
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    text = f"{x:.6g}"
    return repr(x) if float(text) == 1.0 and x != 1.0 else text  # never round a near-tight ratio into "1"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(doc: dict, *, gate: list[str] | None = None, gate_file: str | None = None, closest: int = 5) -> str:
    """The summary of a report document (``{"meta": ..., "rows": [...]}``) as markdown."""
    meta, rows = doc.get("meta", {}), doc.get("rows", [])
    counts: dict[str, int] = {}
    bad = []
    for r in rows:
        status, _ = status_of_row(r)
        counts[status] = counts.get(status, 0) + 1
        if status != r.get("expected", "holds"):
            bad.append(r)
    verdict = "FAILED" if bad or gate else "passed"
    lines = [f"## prompt-limits: {verdict}", "",
             f"profile `{meta.get('profile')}` · seed `{meta.get('seed')}` · "
             f"{len(rows)} claim×backend rows · " + " · ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
             + (" · **interrupted**" if meta.get("interrupted") else ""), ""]
    if bad:
        lines += ["### Not as expected", "", "| claim | backend | status | expected | worst ratio | evidence |",
                  "|---|---|---|---|---|---|"]
        for r in bad:
            status, reason = status_of_row(r)
            ev = r.get("worst_evidence") or {}
            what = f"observed {_fmt(ev.get('observed'))} vs bound {_fmt(ev.get('bound'))}" if ev else "—"
            lines.append(f"| `{r['claim_id']}` | {r['backend']} | {_cell(status + (': ' + reason if reason else ''))}"
                         f" | {r.get('expected', 'holds')} | {_fmt(r.get('worst_ratio'))} | {_cell(what)} |")
        lines.append("")
        replays = [r for r in bad if r.get("counterexample_file")]
        if replays:
            lines += ["Reproduce:", "", "```"] + [f"prompt-limits replay {r['counterexample_file']}"
                                                  for r in replays] + ["```", ""]
    if gate is not None:
        lines += [f"### Gate against `{gate_file or 'the baseline'}`: "
                  + (f"{len(gate)} regression(s)" if gate else "passed"), ""]
        lines += [f"- {_cell(p)}" for p in gate] + ([""] if gate else [])
    decided = [r for r in rows if r.get("worst_ratio") is not None and status_of_row(r)[0] == "holds"]
    if decided and closest:
        lines += ["### Closest bounds (smallest margin 1 − ratio)", "", "| claim | backend | worst ratio | margin |",
                  "|---|---|---|---|"]
        for r in sorted(decided, key=lambda r: -float(r["worst_ratio"]))[:closest]:
            m = r.get("margin")
            lines.append(f"| `{r['claim_id']}` | {r['backend']} | {_fmt(r['worst_ratio'])} |"
                         f" {'—' if m is None else f'{float(m):.3e}'} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def append(doc: dict, *, path: str | os.PathLike | None = None, **kw) -> Path | None:
    """Append the summary to ``path`` or ``$GITHUB_STEP_SUMMARY``; return the file written, None when unset."""
    target = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    target = Path(target)
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(render(doc, **kw))
    return target
