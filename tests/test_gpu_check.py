"""tools/gpu-check runs here on the CPU with small n (the device run is the same script with --device cuda)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.backends
def test_gpu_check_cpu_smoke(tmp_path):
    # the script is about torch (and jax) on a device: it runs in the torch env; the core install has neither
    pytest.importorskip("torch", reason="tools/gpu-check exercises torch; run in the torch tox env")
    env = {**os.environ, "OUT": str(tmp_path), "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "tools" / "gpu-check"), "--device", "cpu", "--quick", "--budget", "30",
           "--claims-from", "properties.fast_attention", "--claims", "as23.zero_query_mean,as23.exp_polynomial"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = (tmp_path / "gpu_report.md").read_text()
    assert "Claims" in report and "bfloat16" in report and "TF32 off" in report
    numbers = json.loads((tmp_path / "gpu_numbers.json").read_text())
    ran = [r for r in numbers["claims"] if r["claim"] == "as23.zero_query_mean"]
    assert ran and all(r.get("as_expected") or r["status"].startswith("skipped") for r in ran)
    assert any(r.get("as_expected") for r in ran)
    assert numbers["low_precision_certificate"]["bfloat16"]["meets_eps"] is False
    for d in (4, 8):
        assert numbers["bench"][f"d{d}"]["rc"] == 0
        assert (tmp_path / f"bench_attention_cpu_d{d}.md").exists()
