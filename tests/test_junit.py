"""CI conventions: the JUnit file (one testcase per claim@backend) and the GitHub step summary."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from verify import junit, summary


def _row(cid, status, expected="holds", reason="", **kw):
    row = {"claim_id": cid, "backend": "numpy/float64/cpu", "source": "folklore", "provenance": "exact",
           "statement": "x^2 <= 1", "status": status, "reason": reason, "expected": expected, "tried": 12,
           "rejected": {"too big": 2}, "seconds": 1.25, "worst_ratio": 0.5, "margin": 0.5, "notes": "",
           "worst_evidence": {"observed": 0.5, "bound": 1.0, "ratio": 0.5, "margin": 0.5, "precision": "float64",
                              "conditions": [], "notes": ""}}
    row.update(kw)
    return row


ROWS = [
    _row("a.holds", "holds"),
    _row("a.broken", "counterexample", reason="observed 4.0 vs bound 1.0", worst_ratio=4.0, margin=-3.0,
         counterexample_file="reports/counterexamples/a.broken__numpy-float64-cpu__0123456789.json",
         worst_evidence={"observed": 4.0, "bound": 1.0, "ratio": 4.0, "margin": -3.0, "precision": "float64",
                         "conditions": [{"name": "rank", "ok": False, "detail": "rank 3 != 4"}], "notes": "n=2"}),
    _row("a.expected_cx", "counterexample", expected="counterexample", worst_ratio=2.0),
    _row("a.lost", "error: worker lost"),  # the older "kind: reason" format
    _row("a.undecided", "out_of_reach", reason="every instance too big\x01", worst_ratio=None, margin=None),
]


def test_one_testcase_per_claim_backend_and_the_gate(tmp_path):
    path = junit.write(tmp_path / "j" / "junit.xml", ROWS, gate=["a.holds@numpy/float64/cpu: holds, now x"],
                       gate_file="reports/baseline.json", meta={"profile": "ci", "seed": 0})
    suite = ET.parse(path).getroot()
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert len(cases) == len(ROWS) + 1
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "3", "1")
    assert cases["a.holds@numpy/float64/cpu"].find("failure") is None
    assert cases["a.expected_cx@numpy/float64/cpu"].find("failure") is None  # as expected: a pass
    fail = cases["a.broken@numpy/float64/cpu"].find("failure")
    assert "expected holds" in fail.get("message")
    assert "observed 4.0 vs bound 1.0" in fail.text and "rank 3 != 4" in fail.text
    assert "replay: prompt-limits replay reports/counterexamples/a.broken__" in fail.text
    assert cases["a.lost@numpy/float64/cpu"].find("error").get("message") == "worker lost"
    assert "every instance too big?" in cases["a.undecided@numpy/float64/cpu"].find("failure").get("message")
    gate = cases["gate against reports/baseline.json"].find("failure")
    assert "holds, now x" in gate.text


def test_gate_passed_is_a_passing_testcase():
    suite = junit.build(ROWS[:1], gate=[]).getroot()
    assert suite.get("failures") == "0" and len(list(suite.iter("testcase"))) == 2


def test_summary_appended_only_when_github_sets_the_file(tmp_path, monkeypatch):
    doc = {"meta": {"profile": "ci", "seed": 0}, "rows": ROWS}
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert summary.append(doc) is None
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert summary.append(doc, gate=["a.holds@numpy/float64/cpu: holds in the baseline, now error"]) == target
    text = target.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n")  # appended, never overwritten
    assert "## prompt-limits: FAILED" in text and "`a.broken`" in text
    assert "prompt-limits replay reports/counterexamples/a.broken__" in text
    assert "1 regression(s)" in text and "`a.expected_cx`" not in text.split("### Gate")[0]


def test_summary_never_rounds_a_near_tight_ratio_to_one():
    doc = {"meta": {}, "rows": [_row("a.tight", "holds", worst_ratio=1 - 2**-40, margin=2**-40)]}
    text = summary.render(doc)
    assert "## prompt-limits: passed" in text and "0.99999999999909" in text and "9.095e-13" in text
