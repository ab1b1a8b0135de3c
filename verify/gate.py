"""Gating: a claim × backend that held (or failed as expected) in the baseline must still do so."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

FORMAT = "prompt-limits/baseline/1"


def _key(row: dict) -> str:
    return f"{row['claim_id']}@{row['backend']}"


def baseline_from(doc: dict) -> dict:
    return {
        "format": FORMAT,
        "note": "status per claim@backend from a full run; `prompt-limits run --gate` fails on a regression",
        "claims": {_key(r): r["status"].split(":")[0] for r in sorted(doc["rows"], key=_key)},
    }


def load_baseline(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"baseline {path} does not exist (write one with `prompt-limits baseline`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"baseline {path} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("claims"), dict):
        raise ValueError(f"{path} is not a prompt-limits baseline (expected format {FORMAT!r})")
    return doc


def regressions(baseline: dict, rows: list[dict], *, patterns: list[str] | None, backends: list[str],
                known_ids: set[str]) -> list[str]:
    """Baseline entries in scope (selected ids, backends run) whose status got worse or vanished."""
    now = {_key(r): r["status"].split(":")[0] for r in rows}
    problems = []
    for key, was in baseline["claims"].items():
        cid, _, backend = key.rpartition("@")
        if was not in ("holds", "counterexample"):
            continue  # out_of_reach / error rows gate nothing
        if backend not in backends:
            continue
        if patterns and not any(fnmatch.fnmatchcase(cid, p) for p in patterns):
            continue
        if cid not in known_ids:
            problems.append(f"{key}: {was} in the baseline, but the claim no longer exists")
        elif key not in now:
            problems.append(f"{key}: {was} in the baseline, but did not run")
        elif now[key] != was:
            problems.append(f"{key}: {was} in the baseline, now {now[key]}")
    return problems
