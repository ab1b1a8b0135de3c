"""The command line end to end: run, report, gate, replay, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from verify.cli import main

USER = str(Path(__file__).parent / "fixtures" / "user_claims.py")
ENGINE = str(Path(__file__).parent / "fixtures" / "engine_claims.py")


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_list(capsys):
    rc, out, _ = run_cli(capsys, "list")
    assert rc == 0 and "attention.prompt_mixture" in out and "derived" in out


def test_run_writes_reports_and_passes_its_own_gate(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "run", "attention.*", "--out", str(tmp_path), "--seed", "1", "--no-tables")
    assert rc == 0, err
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert {r["claim_id"] for r in doc["rows"]} == {"attention.prompt_mixture", "attention.permutation_equivariance"}
    assert all(r["status"] == "holds" and r["tried"] > 0 for r in doc["rows"])
    md = (tmp_path / "latest.md").read_text()
    assert "| claim" in md and "worst ratio" in md and "margin" in md
    rc, _, _ = run_cli(capsys, "baseline", "--input", str(tmp_path / "latest.json"), "--out", str(tmp_path / "b.json"))
    assert rc == 0
    rc, _, err = run_cli(capsys, "run", "attention.*", "--out", str(tmp_path), "--gate", str(tmp_path / "b.json"),
                         "--no-tables", "--seed", "2")
    assert rc == 0 and "gate: passed" in err
    rc, out, _ = run_cli(capsys, "report", "--input", str(tmp_path / "latest.json"), "--format", "latex")
    assert rc == 0 and "\\toprule" in out


def test_user_claims_true_false_and_replay(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "run", "user.cauchy_schwarz", "user.square_below_one", "--claims", USER, "--out",
                         str(tmp_path), "--seed", "3",
                         "--no-tables")
    assert rc == 1  # the false claim is a confirmed counterexample
    doc = json.loads((tmp_path / "latest.json").read_text())
    status = {r["claim_id"]: r["status"] for r in doc["rows"]}
    assert status == {"user.cauchy_schwarz": "holds", "user.square_below_one": "counterexample"}
    files = list((tmp_path / "counterexamples").glob("user.square_below_one*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["format"] == "prompt-limits/counterexample/2" and "numpy" in stored["versions"]
    rc, out, _ = run_cli(capsys, "replay", str(files[0]))
    # still a counterexample: exit 1, so `git bisect run prompt-limits replay FILE` finds the fixing commit
    assert rc == 1 and "reproduced bit for bit" in out and "still a counterexample" in out
    assert f"observed {float(stored['evidence']['observed'])!r}" in out


def test_replay_exits_0_once_the_instance_holds(capsys, tmp_path):
    doc = {"format": "prompt-limits/counterexample/2", "claim": "user.square_below_one", "claims_modules": [USER],
           "backend": {"name": "numpy", "dtype": "float64", "device": "cpu"}, "instance": 0.5,
           "evidence": {"observed": 4.0, "bound": 1.0}}
    f = tmp_path / "now_holds.json"
    f.write_text(json.dumps(doc))
    rc, out, _ = run_cli(capsys, "replay", str(f))
    assert rc == 0 and "now holds" in out and "stored:    observed 4.0 vs bound 1.0" in out


def test_replay_reads_format_1_and_names_the_version_it_cannot(capsys, tmp_path):
    doc = {"format": "prompt-limits/counterexample/1", "claim": "user.square_below_one", "claims_modules": [USER],
           "backend": {"name": "numpy", "dtype": "float64", "device": "cpu"}, "instance": 1.5,
           "evidence": {"observed": 2.25, "bound": 1.0}}
    f = tmp_path / "v1.json"
    f.write_text(json.dumps(doc))
    rc, out, _ = run_cli(capsys, "replay", str(f))
    assert rc == 1 and "reproduced bit for bit" in out
    f.write_text(json.dumps(dict(doc, format="prompt-limits/counterexample/9")))
    rc, _, err = run_cli(capsys, "replay", str(f))
    assert rc == 2 and "needs a newer prompt-limits" in err and err.count("\n") == 1


def test_gate_fails_on_a_regression(capsys, tmp_path):
    base = {"format": "prompt-limits/baseline/1",
            "claims": {"user.square_below_one@numpy/float64/cpu": "holds"}}
    (tmp_path / "b.json").write_text(json.dumps(base))
    rc, _, err = run_cli(capsys, "run", "user.square_below_one", "--claims", USER, "--out", str(tmp_path),
                         "--gate", str(tmp_path / "b.json"), "--no-tables", "--seed", "1")
    assert rc == 1 and "gate: FAILED" in err and "now counterexample" in err


def test_gate_sees_a_loosened_bound_and_accepts_it_when_asked(capsys, tmp_path):
    key = "user.cauchy_schwarz@numpy/float64/cpu"
    base = {"format": "prompt-limits/baseline/2", "profile": "ci", "seed": 4,
            "claims": {key: {"status": "holds", "worst_ratio": 50.0}}}  # as if the bound had been 50x tighter
    (tmp_path / "b.json").write_text(json.dumps(base))
    argv = ["run", "user.cauchy_schwarz", "--claims", USER, "--out", str(tmp_path), "--gate", str(tmp_path / "b.json"),
            "--no-tables", "--seed", "4", "--profile", "ci"]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 1 and "gate: loosened:" in err and "below the baseline's 50" in err
    rc, _, err = run_cli(capsys, *argv, "--allow-loosened")
    assert rc == 0 and "accepted (--allow-loosened)" in err
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert doc["meta"]["accepted_loosened"] == [key]
    rc, _, _ = run_cli(capsys, "baseline", "--input", str(tmp_path / "latest.json"), "--out", str(tmp_path / "n.json"))
    new = json.loads((tmp_path / "n.json").read_text())
    assert rc == 0 and new["accepted_loosened"] == [key] and new["claims"][key]["worst_ratio"] < 5.0


def test_gate_reports_a_claim_newly_out_of_reach(capsys, tmp_path):
    base = {"format": "prompt-limits/baseline/2", "profile": "ci", "seed": 1,
            "claims": {"user.nothing_decided@numpy/float64/cpu": {"status": "holds", "worst_ratio": 0.5}}}
    (tmp_path / "b.json").write_text(json.dumps(base))
    rc, _, err = run_cli(capsys, "run", "user.nothing_decided", "--claims", ENGINE, "--out", str(tmp_path),
                         "--gate", str(tmp_path / "b.json"), "--no-tables", "--seed", "1", "--profile", "ci")
    assert rc == 1 and "gate: out_of_reach:" in err and "NOT AS EXPECTED" in err


@pytest.mark.parametrize(
    "content,needle",
    [
        ('{"format": "prompt-limits/counterexample/1", "claim": "user.square', "not valid JSON"),
        ('{"hello": "world"}', "not a prompt-limits counterexample"),
        ("\x00\x01binary", "not valid JSON"),
        ('{"format": "prompt-limits/counterexample/1", "claim": "x.y"}', "missing field"),
    ],
)
def test_replay_of_a_bad_file_is_one_line_and_exit_2(capsys, tmp_path, content, needle):
    f = tmp_path / "bad.json"
    f.write_text(content)
    rc, out, err = run_cli(capsys, "replay", str(f))
    assert rc == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_replay_of_a_missing_file(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "replay", str(tmp_path / "nope.json"))
    assert rc == 2 and "no such file" in err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "no.such.claim"], "no claim matches"),
        (["run", "--backend", "tensorflow"], "unknown backend"),
        (["run", "--claims", "no_such_module_xyz"], "failed to import"),
        (["run", "--claims", "tests/fixtures/does_not_exist.py"], "does not exist"),
        (["report", "--sizes", "no_such_table"], "no table named"),
        (["run", "--gate", "no/such/baseline.json", "attention.*"], "does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, needle):
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and needle in err and "Traceback" not in err


def test_missing_backend_is_reported(capsys, monkeypatch):
    import verify.backends as vb

    monkeypatch.setattr(vb, "installed", lambda name: name not in ("torch",))
    rc, _, err = run_cli(capsys, "run", "--backend", "torch", "attention.*")
    assert rc == 2 and "not installed" in err


def test_absent_device_is_reported(capsys, monkeypatch):
    import verify.backends as vb

    monkeypatch.setattr(vb, "cuda_available", lambda name: False)
    monkeypatch.setattr(vb, "installed", lambda name: True)
    rc, _, err = run_cli(capsys, "run", "--backend", "torch", "--device", "cuda", "attention.*")
    assert rc == 2 and "no CUDA device" in err


def test_a_failing_claim_module_import(capsys, tmp_path):
    bad = tmp_path / "broken_claims.py"
    bad.write_text("import verify\nraise RuntimeError('oops in user module')\n")
    rc, _, err = run_cli(capsys, "run", "--claims", str(bad))
    assert rc == 2 and "oops in user module" in err


def test_interrupted_run_leaves_a_valid_report(capsys, tmp_path, monkeypatch):
    import verify.runner as vr

    real = vr.run_claim
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(vr, "run_claim", flaky)
    rc, _, err = run_cli(capsys, "run", "attention.*", "--out", str(tmp_path), "--no-tables", "--seed", "1")
    assert rc == 130 and "interrupted" in err
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert doc["meta"]["interrupted"] is True and len(doc["rows"]) == 1


def test_console_script_and_module_entry_points():
    exe = shutil.which("prompt-limits")
    cmds = [[sys.executable, "-m", "verify", "--help"]] + ([[exe, "--help"]] if exe else [])
    for cmd in cmds:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "replay" in out.stdout
