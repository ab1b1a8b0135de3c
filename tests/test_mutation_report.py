"""tools/mutation-report: per-module kill rate from `mutmut results --all true` text (synthetic; no mutmut run)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "mutation-report"


def _load():
    loader = importlib.machinery.SourceFileLoader("mutation_report", str(SCRIPT))
    spec = importlib.util.spec_from_loader("mutation_report", loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mutation_report"] = mod  # dataclasses look the module up by name
    loader.exec_module(mod)
    return mod


mr = _load()

RESULTS = """\
⠋ Generating mutants
    constructions.lipschitz.x_alpha_norm__mutmut_1: killed
    constructions.lipschitz.x_alpha_norm__mutmut_2: survived
    constructions.lipschitz.x_alpha_norm__mutmut_3: killed
    constructions.lipschitz.xǁLipschitzMapǁ__call____mutmut_1: killed
    constructions.lipschitz.xǁLipschitzMapǁ__call____mutmut_2: timeout
    constructions.quantization.x_quantize__mutmut_1: survived
    constructions.quantization.x_quantize__mutmut_2: no tests
    constructions.quantization.x_quantize__mutmut_3: killed
    constructions.quantization.x_quantize__mutmut_4: killed
"""

EQUIV = """\
# lipschitz equivalents
- `constructions.lipschitz.x_alpha_norm__mutmut_2`  # alpha == 2 shortcut computes the same norm
constructions.lipschitz.x_alpha_norm__mutmut_3  # claimed equivalent, but killed
constructions.lipschitz.x_gone__mutmut_9  # renumbered away
constructions.other.x_f__mutmut_1  # a module not in these results: not reported stale
"""


def test_module_of_functions_and_methods():
    assert mr.module_of("constructions.lipschitz.x_alpha_norm__mutmut_2") == "constructions.lipschitz"
    assert mr.module_of("constructions.lipschitz.xǁLipschitzMapǁ__call____mutmut_1") == "constructions.lipschitz"
    with pytest.raises(mr.InputError):
        mr.module_of("nothing_here")


def test_parse_results_skips_noise_and_reads_every_status():
    res = mr.parse_results(RESULTS)
    assert len(res) == 9
    assert res["constructions.lipschitz.xǁLipschitzMapǁ__call____mutmut_2"] == "timeout"
    assert res["constructions.quantization.x_quantize__mutmut_2"] == "no tests"
    with pytest.raises(mr.InputError, match="unknown mutmut status"):
        mr.parse_results("    constructions.a.x_f__mutmut_1: exploded\n")


def test_rates_per_module_with_equivalents(tmp_path):
    (tmp_path / "lipschitz.md").write_text(EQUIV, encoding="utf-8")
    (tmp_path / "README.md").write_text("constructions.quantization.x_quantize__mutmut_1\n", encoding="utf-8")
    eq = mr.parse_equivalents(tmp_path)
    lip_names = {"constructions.lipschitz.x_alpha_norm__mutmut_2", "constructions.lipschitz.x_alpha_norm__mutmut_3",
                 "constructions.lipschitz.x_gone__mutmut_9", "constructions.other.x_f__mutmut_1"}
    assert set(eq) == lip_names  # README.md is not a list
    rep = mr.build(mr.parse_results(RESULTS), eq)
    lip, qua = rep.rows["constructions.lipschitz"], rep.rows["constructions.quantization"]
    # lipschitz: 5 mutants, 3 killed, 1 equivalent survivor (the killed "equivalent" stays in the denominator)
    assert (lip.total, lip.counts["killed"], lip.equivalent) == (5, 3, 1)
    assert lip.rate == pytest.approx(4 / 4)  # the timeout (a hang) counts as detected
    assert lip.survivors == ["constructions.lipschitz.xǁLipschitzMapǁ__call____mutmut_2: timeout"]
    assert qua.rate == pytest.approx(2 / 4)
    assert rep.killed_equivalents == ["constructions.lipschitz.x_alpha_norm__mutmut_3"]
    assert rep.stale == ["constructions.lipschitz.x_gone__mutmut_9"]
    text = mr.render(rep, survivors=True)
    assert "| constructions.lipschitz | 5 | 3 | 1 | 1 | 0 | 0 | 1 | 75.0% |"  # survived counts the equivalent in text
    assert "| constructions.quantization | 4 | 2 | 1 | 0 | 1 | 0 | 0 | 50.0% |" in text
    assert "x_gone__mutmut_9 is listed as equivalent but is not in the results" in text
    assert "x_alpha_norm__mutmut_3 is listed as equivalent but a test kills it" in text
    assert "  constructions.quantization.x_quantize__mutmut_1: survived" in text


def test_an_equivalent_needs_a_reason(tmp_path):
    (tmp_path / "q.md").write_text("constructions.quantization.x_quantize__mutmut_1\n", encoding="utf-8")
    with pytest.raises(mr.InputError, match="states no reason"):
        mr.parse_equivalents(tmp_path)


def test_command_line_exit_codes(tmp_path):
    res = tmp_path / "results.txt"
    res.write_text(RESULTS, encoding="utf-8")
    eq = tmp_path / "eq"
    eq.mkdir()
    run = [sys.executable, str(SCRIPT), "--results", str(res), "--equivalents", str(eq)]
    ok = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "constructions.quantization" in ok.stdout
    low = subprocess.run(run + ["--fail-under", "0.7"], capture_output=True, text=True, timeout=60)
    assert low.returncode == 1 and "constructions.quantization" in low.stderr  # 2/4 < 0.7; lipschitz 3/5 < 0.7 too
    only = subprocess.run(run + ["--module", "constructions.lipschitz"], capture_output=True, text=True, timeout=60)
    assert "constructions.quantization" not in only.stdout
    empty = tmp_path / "empty.txt"
    empty.write_text("nothing\n", encoding="utf-8")
    bad = subprocess.run([sys.executable, str(SCRIPT), "--results", str(empty)], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "no mutants" in bad.stderr
