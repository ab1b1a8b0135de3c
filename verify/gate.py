"""Gating: compare a run with a committed baseline, one finding per line.

Findings (each makes ``run --gate`` exit 1):
- regression: a claim@backend that held (or failed as it documents) in the baseline now has another status,
  or did not run, or no longer exists;
- out of reach: a claim@backend that decided in the baseline now decides nothing;
- loosened: at the same profile and seed, the worst ratio fell more than ``LOOSENED_FACTOR`` x below the
  baseline's — the bound (or floor) got looser, which a status-only gate cannot see. ``--allow-loosened``
  accepts an intended change; re-baselining then records the new ratio.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path

from verify.status import Status

FORMAT = "prompt-limits/baseline/2"
READABLE = ("prompt-limits/baseline/1", FORMAT)
LOOSENED_FACTOR = 10.0


@dataclass(frozen=True)
class Finding:
    kind: str  # regression | out_of_reach | loosened
    key: str
    text: str

    def __str__(self) -> str:
        return f"{self.key}: {self.text}"


def _key(row: dict) -> str:
    return f"{row['claim_id']}@{row['backend']}"


def _status(row: dict) -> Status:
    return Status.parse(row["status"])[0]


def baseline_from(doc: dict) -> dict:
    meta = doc.get("meta", {})
    claims = {}
    for r in sorted(doc["rows"], key=_key):
        wr = r.get("worst_ratio")
        claims[_key(r)] = {"status": _status(r).value,
                           "worst_ratio": None if wr is None else (wr if isinstance(wr, (int, float)) else str(wr))}
    return {
        "format": FORMAT,
        "note": "status and worst ratio per claim@backend from a full run; `prompt-limits run --gate` reports"
                " regressions, claims newly out of reach, and bounds loosened (worst ratio fallen > 10x)",
        "profile": meta.get("profile"),
        "seed": meta.get("seed"),
        "accepted_loosened": list(meta.get("accepted_loosened", [])),
        "claims": claims,
    }


def load_baseline(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"baseline {path} does not exist (write one with `prompt-limits baseline`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"baseline {path} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("claims"), dict) \
            or not str(doc.get("format", "")).startswith("prompt-limits/baseline/"):
        raise ValueError(f"{path} is not a prompt-limits baseline (expected format {FORMAT!r})")
    if doc["format"] not in READABLE:
        raise ValueError(f"baseline {path} has format {doc['format']!r}, which needs a newer prompt-limits"
                         f" (this one reads {', '.join(READABLE)})")
    if doc["format"] == READABLE[0]:  # format 1: bare statuses, no ratios
        doc = {**doc, "claims": {k: {"status": Status.parse(v)[0].value, "worst_ratio": None}
                                 for k, v in doc["claims"].items()}}
    return doc


def _ratio(x) -> float | None:
    if x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def findings(baseline: dict, rows: list[dict], *, patterns: list[str] | None, backends: list[str],
             known_ids: set[str], profile: str | None = None, seed: int | None = None) -> list[Finding]:
    """Baseline entries in scope (selected ids, backends run) that regressed, went out of reach or loosened."""
    now = {_key(r): r for r in rows}
    same_search = baseline.get("profile") is not None and (baseline.get("profile"), baseline.get("seed")) == (
        profile, seed)
    out = []
    for key, entry in baseline["claims"].items():
        cid, _, backend = key.rpartition("@")
        was = Status(entry["status"])
        if backend not in backends:
            continue
        if patterns and not any(fnmatch.fnmatchcase(cid, p) for p in patterns):
            continue
        if was in (Status.OUT_OF_REACH, Status.ERROR):
            continue  # nothing was decided there: nothing to regress from
        if cid not in known_ids:
            out.append(Finding("regression", key, f"{was} in the baseline, but the claim no longer exists"))
            continue
        if key not in now:
            out.append(Finding("regression", key, f"{was} in the baseline, but did not run"))
            continue
        row = now[key]
        status = _status(row)
        if status == Status.OUT_OF_REACH:
            out.append(Finding("out_of_reach", key,
                               f"{was} in the baseline, now out of reach: {row.get('reason', '')}"))
        elif status != was:
            out.append(Finding("regression", key, f"{was} in the baseline, now {status}"
                               + (f": {row['reason']}" if row.get("reason") else "")))
        elif status == Status.HOLDS and same_search:
            before, after = _ratio(entry.get("worst_ratio")), _ratio(row.get("worst_ratio"))
            if before and after is not None and math.isfinite(before) and before > 0 \
                    and after * LOOSENED_FACTOR < before:
                out.append(Finding("loosened", key, f"worst ratio {after:.6g}, {before / max(after, 1e-300):.3g}x"
                                   f" below the baseline's {before:.6g} at the same profile and seed: the bound"
                                   " got looser (accept with --allow-loosened, then re-baseline)"))
    return out


def regressions(baseline: dict, rows: list[dict], *, patterns: list[str] | None, backends: list[str],
                known_ids: set[str], **kw) -> list[str]:
    """The findings as one line each (the historical interface)."""
    return [str(f) for f in findings(baseline, rows, patterns=patterns, backends=backends, known_ids=known_ids,
                                     **kw)]
