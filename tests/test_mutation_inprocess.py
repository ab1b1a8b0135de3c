"""tools/mutation-inprocess on a toy package: mutmut's names, the kill verdicts a test file implies, timeouts.

Needs mutmut (the mutation env's dependency, not a core one): skipped with that reason without it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mutmut", reason="tools/mutation-inprocess uses mutmut's mutant generator (tox -e mutation)")

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "mutation-inprocess"

TOY = """
import functools


def add(a, b=1):
    return a + b


def square(x):
    return x * x


@functools.lru_cache(maxsize=None)  # mutmut leaves decorated functions alone; this one caches square's value
def cached_square(x):
    return square(x)


def count_down(n):
    while n > 0:
        n = n - 1
    return n


class Box:
    def __init__(self, v):
        self.v = v

    def double(self):
        return 2 * self.v
"""

# kills every mutant of add and Box.double; square's mutants are seen only through the cache that the clean
# run filled (so the tool must clear it); count_down's `n = n + 1` never ends
TESTS = """
from toy.arith import Box, add, cached_square, count_down


def test_add():
    assert add(2) == 3
    assert add(2, 5) == 7


def test_square_through_the_cache():
    assert cached_square(3) == 9


def test_count_down():
    assert count_down(3) == 0


def test_box():
    assert Box(4).double() == 8
"""


def _toy(tmp_path: Path) -> Path:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "__init__.py").write_text("")
    (tmp_path / "toy" / "arith.py").write_text(textwrap.dedent(TOY))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_toy.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mutmut]\nsource_paths = ["toy"]\npytest_add_cli_args = ["-p", "no:cacheprovider"]\n'
        'pytest_add_cli_args_test_selection = ["tests"]\n'
    )
    return tmp_path


def _statuses(stdout: str) -> dict[str, str]:
    """NAME -> status from the tool's `    NAME: status` lines."""
    return dict(ln.strip().split(": ") for ln in stdout.splitlines())


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_names_and_verdicts_on_a_toy_package(tmp_path):
    root = _toy(tmp_path)
    listing = _run(root, "toy/arith.py", "--list")
    assert listing.returncode == 0, listing.stderr
    names = [ln.split()[0] for ln in listing.stdout.splitlines()]
    # mutmut 3's mangling: x_function__mutmut_N and xǁClassǁmethod__mutmut_N, numbered per function from 1
    assert "toy.arith.x_add__mutmut_1" in names
    assert "toy.arith.xǁBoxǁdouble__mutmut_1" in names
    assert "toy.arith.x_square__mutmut_1" in names
    assert not any("cached_square" in n for n in names)
    assert all(n.startswith("toy.arith.x") and "__mutmut_" in n for n in names)

    res = _run(root, "toy/arith.py", "tests/test_toy.py", "--timeout", "20")
    assert res.returncode == 0, res.stderr
    status = _statuses(res.stdout)
    assert set(status) == set(names)
    for name, verdict in status.items():
        if "x_add" in name or "double" in name or "x_square" in name:
            assert verdict == "killed", (name, verdict, res.stderr)
    # count_down: `n = n + 1` never ends (timeout); `while n > 1` returns 1 (killed); `n >= 0` returns -1
    down = {n: v for n, v in status.items() if "count_down" in n}
    assert "timeout" in down.values(), down
    assert set(down.values()) <= {"killed", "timeout"}, down
    # --report ends with the kill-rate table, the judged equivalents subtracted
    (root / "eq").mkdir()
    survivors = [n for n, v in status.items() if v == "survived"]
    assert not survivors, survivors
    (root / "eq" / "toy.md").write_text("- `toy.arith.x_add__mutmut_1`  # judged for the test\n")
    rep = _run(
        root, "toy/arith.py", "tests/test_toy.py", "--function", "add", "--report", "--equivalents", str(root / "eq")
    )
    assert rep.returncode == 0, rep.stderr
    assert "is listed as equivalent but a test kills it" in rep.stdout, rep.stdout
    # the lines are `mutmut results` lines: tools/mutation-report reads them
    rep = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "mutation-report"), "--results", "-", "--equivalents", str(root / "none")],
        input=res.stdout,
        capture_output=True,
        text=True,
    )
    assert rep.returncode == 0, rep.stderr
    assert "| toy.arith |" in rep.stdout and "100.0%" in rep.stdout, rep.stdout


def _verdicts(root: Path, test_source: str, function: str) -> tuple[dict[str, str], str]:
    """Run the tool on one function of the toy module against a one-file test suite: (name -> status, stderr)."""
    (root / "tests" / "test_toy.py").write_text(test_source)
    res = _run(root, "toy/arith.py", "tests/test_toy.py", "--function", function)
    assert res.returncode == 0, res.stderr
    status = _statuses(res.stdout)
    assert status and all(f"x_{function}__mutmut_" in n for n in status), status
    return status, res.stderr


def test_a_surviving_mutant_is_reported_survived(tmp_path):
    status, _ = _verdicts(
        _toy(tmp_path), "from toy.arith import add\n\ndef test_add():\n    assert add(2) > 0\n", "add"
    )
    assert "survived" in status.values(), status  # `a - b` gives 1 > 0: the weak test cannot see it


def test_the_swap_reaches_a_reference_taken_before_the_run(tmp_path):
    """A test module that bound `square` to another name at import (before any mutant) still calls the mutant."""
    test = "from toy.arith import square\n\nCALLER = square\n\ndef test_square():\n    assert CALLER(3) == 9\n"
    status, _ = _verdicts(_toy(tmp_path), test, "square")
    assert set(status.values()) == {"killed"}, status


def test_a_mutant_it_cannot_swap_in_is_not_checked_never_killed(tmp_path):
    """The module rebinds the function's name to a functools.partial: there is no function object to swap into,
    which is the tool's limit, so the mutant counts as not killed."""
    root = _toy(tmp_path)
    arith = root / "toy" / "arith.py"
    arith.write_text(arith.read_text() + "\n\ndef inc(x):\n    return x + 1\n\n\ninc = functools.partial(inc)\n")
    status, stderr = _verdicts(root, "from toy.arith import inc\n\ndef test_inc():\n    assert inc(1) == 2\n", "inc")
    assert set(status.values()) == {"not checked"}, status
    assert "not applied" in stderr


def test_bad_input_exits_2(tmp_path):
    root = _toy(tmp_path)
    assert _run(root, "toy/missing.py", "tests/test_toy.py").returncode == 2
    assert _run(root, "toy/arith.py").returncode == 2  # no test files named
    assert _run(root, "toy/arith.py", "tests/test_toy.py", "--mutant", "toy.arith.x_add__mutmut_999").returncode == 2
    (root / "tests" / "test_toy.py").write_text("def test_fails():\n    assert False\n")
    res = _run(root, "toy/arith.py", "tests/test_toy.py")
    assert res.returncode == 2 and "fail without a mutant" in res.stderr
