"""Modules a newcomer can navigate: the engine knows no paper, no module is over ~500 lines, and plugins (entry
points) are discovered, named in `list`, and fail in one line."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 520  # "no module over ~500 lines"
# mutmut runs the tests on a trampolined copy of the tree (ROOT/mutants): what depends on the source text, the
# working directory or import time means nothing there
UNDER_MUTMUT = ROOT.name == "mutants"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_the_engine_imports_no_paper_and_constructions_import_no_claims():
    for pkg, banned in (("verify", {"constructions", "properties"}), ("constructions", {"verify", "properties"})):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            bad = _imports(path) & banned
            assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: data flows from properties only"


@pytest.mark.skipif(UNDER_MUTMUT,
                    reason="mutmut's trampolined copy of the tree: a mutated module is longer than its source")
def test_no_module_over_500_lines():
    long = []
    for pkg in ("verify", "constructions", "properties"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > MAX_LINES:
                long.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert not long, "split these by the mathematical object they build: " + "; ".join(long)


def _fake_site(tmp_path: Path, module_body: str, name: str = "theorist_claims") -> Path:
    """An installed user package, as pip would lay it out: the module plus a dist-info with one entry point."""
    site = tmp_path / "site"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(textwrap.dedent(module_body))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[prompt_limits.claims]\n{name} = {name}\n")
    return site


def _cli(site: Path, *argv) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "verify", *argv], capture_output=True, text=True, env=env,
                          cwd=str(site), timeout=120)


@pytest.mark.skipif(UNDER_MUTMUT,
                    reason="mutmut's trampolines look for their config in the working directory: here a site dir")
def test_an_installed_package_plugs_in_through_its_entry_point(tmp_path):
    site = _fake_site(tmp_path, '''
        from hypothesis import strategies as st
        import verify

        @verify.claim("theorist.am_gm", source="folklore", statement="sqrt(ab) <= (a+b)/2",
                      strategy=st.tuples(st.floats(1e-3, 1e3), st.floats(1e-3, 1e3)), provenance="exact")
        def am_gm(ab, backend):
            a, b = ab
            return verify.Evidence((a * b) ** 0.5, (a + b) / 2 * (1 + 4 * 2.0**-53))
    ''')
    p = _cli(site, "list", "theorist.*")
    assert p.returncode == 0, p.stderr
    assert "theorist.am_gm" in p.stdout and "theorist_claims" in p.stdout  # the plugin column names it
    p = _cli(site, "run", "theorist.am_gm", "--out", str(tmp_path / "r"), "--seed", "0", "--quiet")
    assert p.returncode == 0, p.stderr


def test_a_plugin_that_fails_to_import_is_one_line_and_exit_2(tmp_path):
    site = _fake_site(tmp_path, "raise RuntimeError('broken on purpose')\n", name="broken_plugin")
    p = _cli(site, "list")
    assert p.returncode == 2 and "broken_plugin" in p.stderr and "broken on purpose" in p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


@pytest.mark.skipif(UNDER_MUTMUT,
                    reason="a CPU-time budget means nothing on mutmut's trampolined copy (slower to import)")
def test_one_user_claim_runs_in_under_3_seconds(tmp_path):
    """No report table and no built-in plugin is built for a run of one user claim (CPU time of the child: wall
    time on a shared machine measures the neighbours)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-m", "verify", "run", "user.cauchy_schwarz", "--claims",
                        str(ROOT / "tests" / "fixtures" / "user_claims.py"), "--out", str(tmp_path), "--seed", "0",
                        "--quiet", "--profile", "dev"], capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert p.returncode == 0, p.stderr
    assert cpu < 3.0, f"one user claim took {cpu:.2f} s of CPU"
    assert json.loads((tmp_path / "latest.json").read_text())["tables"] == []  # no unselected table was built
