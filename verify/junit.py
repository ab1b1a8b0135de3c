"""JUnit XML for CI: one testcase per claim@backend, and one for the baseline gate.

A row that is not as expected is a ``failure`` (an unexpected counterexample, a claim that decided nothing
when it was expected to hold, or one that expected a counterexample and held) or an ``error`` (the check
raised, a worker was lost); rows as expected pass, with their evidence as ``system-out``. The failure text is
the evidence (observed, bound, ratio, margin, precision, failed side conditions, notes) and the command that
replays the stored counterexample, so a CI page shows what broke and how to reproduce it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from verify.status import Status

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text) -> str:
    return _XML_BAD.sub("?", str(text))


def status_of_row(row: dict) -> tuple[str, str]:
    """(status value, reason) from a report row, whether it keeps "kind: reason" or split status/reason."""
    st, reason = Status.parse(str(getattr(row["status"], "value", row["status"])))
    return st.value, row.get("reason") or reason


def evidence_text(row: dict) -> str:
    """The row's deciding evidence and the replay command, in a few plain lines."""
    status, reason = status_of_row(row)
    ev = row.get("worst_evidence") or {}
    lines = [f"{row['claim_id']} on {row['backend']}: {status}" + (f" ({reason})" if reason else "")
             + f"; expected {row.get('expected', 'holds')}"]
    lines.append(f"statement: {row.get('statement', '')}")
    lines.append(f"source: {row.get('source', '')} ({row.get('provenance', '')})")
    if ev:
        lines.append(f"observed {ev.get('observed')!r} vs bound {ev.get('bound')!r}: ratio {ev.get('ratio')!r},"
                     f" margin {ev.get('margin')!r}, precision {ev.get('precision') or row.get('precision')}")
        for c in ev.get("conditions") or ():
            if not c.get("ok", True):
                lines.append(f"side condition failed: {c.get('name')}: {c.get('detail', '')}")
        if ev.get("notes"):
            lines.append(f"evidence notes: {ev['notes']}")
    lines.append(f"instances tried: {row.get('tried')}, out of reach: {sum((row.get('rejected') or {}).values())},"
                 f" {row.get('seconds', 0):.1f} s")
    if row.get("notes"):
        lines.append(f"notes: {row['notes']}")
    if row.get("counterexample_file"):
        lines.append(f"replay: prompt-limits replay {row['counterexample_file']}")
    return "\n".join(lines)


def _verdict(row: dict) -> str:
    """pass | failure | error, as the run itself judges the row (a claim that decided nothing unexpectedly fails)."""
    status, _ = status_of_row(row)
    if status == row.get("expected", "holds"):
        return "pass"
    return "error" if status == Status.ERROR.value else "failure"


def build(rows: list[dict], *, gate: list[str] | None = None, gate_file: str | None = None,
          name: str = "prompt-limits", meta: dict | None = None) -> ET.ElementTree:
    """The XML tree: one testsuite; ``gate`` (the gate's findings, [] when it passed) adds a 'gate' testcase."""
    suite = ET.Element("testsuite", name=name)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    if meta:
        props = ET.SubElement(suite, "properties")
        for k in ("profile", "seed", "backends", "workers", "shards"):
            if meta.get(k) is not None:
                ET.SubElement(props, "property", name=k, value=_clean(meta[k]))
    for row in rows:
        seconds = float(row.get("seconds") or 0.0)
        total += seconds
        case = ET.SubElement(suite, "testcase", classname=f"{name}.{row['claim_id'].split('.')[0]}",
                             name=_clean(f"{row['claim_id']}@{row['backend']}"), time=f"{seconds:.3f}")
        counts["tests"] += 1
        verdict = _verdict(row)
        status, reason = status_of_row(row)
        text = _clean(evidence_text(row))
        if verdict == "failure":
            counts["failures"] += 1
            el = ET.SubElement(case, "failure", type=status,
                               message=_clean(f"{status}, expected {row.get('expected', 'holds')}"
                                              + (f": {reason}" if reason else "")))
            el.text = text
        elif verdict == "error":
            counts["errors"] += 1
            el = ET.SubElement(case, "error", type="error", message=_clean(reason or "the check raised"))
            el.text = text
        else:
            ET.SubElement(case, "system-out").text = text
    if gate is not None:
        counts["tests"] += 1
        case = ET.SubElement(suite, "testcase", classname=f"{name}.gate",
                             name=_clean(f"gate against {gate_file or 'the baseline'}"), time="0")
        if gate:
            counts["failures"] += 1
            el = ET.SubElement(case, "failure", type="regression", message=f"{len(gate)} regression(s)")
            el.text = _clean("\n".join(gate))
    for k, v in counts.items():
        suite.set(k, str(v))
    suite.set("time", f"{total:.3f}")
    tree = ET.ElementTree(suite)
    ET.indent(tree)
    return tree


def write(path, rows: list[dict], **kw) -> Path:
    """Write the JUnit file (parents created); return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build(rows, **kw).write(path, encoding="utf-8", xml_declaration=True)
    return path
