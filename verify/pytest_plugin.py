"""pytest plugin (entry point ``pytest11``): ``pytest --prompt-limits`` turns claims and mutants into test items.

In any project with prompt-limits installed::

    pytest --prompt-limits                       # every installed plugin's claims, numpy float64
    pytest --prompt-limits --claims mypkg.claims --pl-backend numpy,torch --pl-profile ci -k square -x

Items are ``<claim id>[<backend>-<dtype>]`` (passes when the claim's status is what it expects) and
``<claim id>[mutant-<name>]`` (passes when the mutant is caught). A project that wants the items to live in a test
file (addressable node ids for mutmut, ``--lf``, xdist's scheduling) writes instead::

    def test_claim(prompt_limits_claim):
        prompt_limits_claim()

    def test_mutant(prompt_limits_mutant):
        prompt_limits_mutant()

and the plugin parametrizes both over the same selection (this is how prompt-limits' own tests/ run).
A failure's message carries the evidence and the replay command of the counterexample file written under
``--pl-out``. ``-k``, ``-m``,
``-x``, ``--junitxml`` and pytest-xdist work as for any test; defaults come from PROMPT_LIMITS_BACKENDS,
PROMPT_LIMITS_DTYPES, PROMPT_LIMITS_DEVICE and the profile from HYPOTHESIS_PROFILE (ci under CI=true).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest


def pytest_addoption(parser):
    g = parser.getgroup("prompt-limits")
    g.addoption("--prompt-limits", action="store_true", help="collect prompt-limits claims and mutants as tests")
    g.addoption("--claims", action="append", default=[], metavar="MODULE",
                help="prompt-limits: a claim module or .py file; with --claims only its claims are collected")
    g.addoption("--pl-select", action="append", default=[], metavar="GLOB", help="prompt-limits: claim ids to collect")
    g.addoption("--pl-backend", default=None, help="numpy,torch,jax (default: $PROMPT_LIMITS_BACKENDS or numpy)")
    g.addoption("--pl-dtype", default=None, help="float64,float32 (default: $PROMPT_LIMITS_DTYPES or float64)")
    g.addoption("--pl-device", default=None, help="cpu | cuda (default: $PROMPT_LIMITS_DEVICE or cpu)")
    g.addoption("--pl-profile", default=None, help="dev | ci | thorough (default: ci under CI, else dev)")
    g.addoption("--pl-seed", type=_seed, default=0,
                help="Hypothesis seed of every item (default 0: reproducible; 'random': a fresh one per session)")
    g.addoption("--pl-seconds", type=float, default=None, help="time budget per claim (default: the profile's)")
    g.addoption("--pl-mutant-seconds", type=float, default=20.0, help="time budget per mutant (default 20)")
    g.addoption("--pl-no-mutants", action="store_true", help="collect claims only")
    g.addoption("--pl-out", default="reports", help="where counterexample files of failing items go")


def _seed(text: str) -> int:
    if text == "random":
        import random

        return random.SystemRandom().randrange(2**32)
    return int(text)


def _csv(value, env, default):
    return [x.strip() for x in (value or os.environ.get(env) or default).split(",") if x.strip()]


class ClaimFailure(Exception):
    """A claim item that did not come out as its claim expects."""


def _opt(config, name):
    return config.getoption(name)


def run_mutant_case(config, claim, mutant) -> None:
    """Hunt one mutant; raise ClaimFailure unless it is caught."""
    from verify.backends import Backend
    from verify.runner import hunt
    from verify.settings import default_profile

    res = hunt(claim, Backend(), mutant=mutant, profile=_opt(config, "--pl-profile") or default_profile(),
               max_seconds=_opt(config, "--pl-mutant-seconds"), seed=_opt(config, "--pl-seed"), shrink=False)
    if res.error is not None:
        raise ClaimFailure(f"mutant {mutant.name} ({mutant.kind}) raised instead of failing: {res.error}")
    if not res.found:
        raise ClaimFailure(
            f"mutant {claim.id}/{mutant.name} ({mutant.kind}: {mutant.description}) survived {res.tried} instances"
            f" (worst ratio {res.worst.ratio if res.worst else None}): the property cannot see this defect")


def run_claim_case(config, claim, backend) -> None:
    """Run one claim on one backend; raise ClaimFailure (evidence + replay command) unless it is as expected."""
    from verify import counterexample
    from verify.report import status_text
    from verify.runner import run_claim
    from verify.settings import default_profile

    profile = _opt(config, "--pl-profile") or default_profile()
    row, res = run_claim(claim, backend, profile=profile, max_seconds=_opt(config, "--pl-seconds"),
                         seed=_opt(config, "--pl-seed"))
    if row.ok:
        return
    lines = [f"{claim.id} on {backend.label}: {status_text(row.to_json())} (expected {claim.expect});"
             f" tried {row.tried}, worst ratio {row.worst_ratio}", f"statement: {claim.statement}"]
    ev = res.failure or res.worst
    if ev is not None:
        lines.append(f"evidence: {ev.describe()}" + (f"; {ev.notes}" if ev.notes else ""))
    if res.error_instance is not None:
        lines.append(f"instance: {res.error_instance!r}"[:2000])
    if res.found:
        path = counterexample.write(claim, backend, res, Path(_opt(config, "--pl-out")) / "counterexamples",
                                    profile=profile, modules=list(_opt(config, "--claims")))
        lines.append(f"replay: prompt-limits replay {path}")
    raise ClaimFailure("\n".join(lines))


class PromptLimitsItem(pytest.Item):
    def __init__(self, *, claim, backend=None, mutant=None, **kw):
        super().__init__(**kw)
        self.claim, self.backend, self.mutant = claim, backend, mutant
        for m in _marks(claim, backend):
            self.add_marker(m)

    def runtest(self):
        if self.mutant is not None:
            run_mutant_case(self.config, self.claim, self.mutant)
        else:
            run_claim_case(self.config, self.claim, self.backend)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ClaimFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return Path(self.claim.module.replace(".", "/") + ".py"), None, self.name


def _marks(claim, backend) -> list:
    marks = [pytest.mark.prompt_limits]
    if backend is not None and backend.name in ("torch", "jax"):
        marks.append(pytest.mark.backends)
    if backend is not None and backend.device == "cuda":
        marks.append(pytest.mark.gpu)
    return marks


def _selection(config):
    """(claim x backend cases, claim x mutant cases) selected by the options, in registry order."""
    import fnmatch

    from verify.backends import Backend
    from verify.discovery import load, plugin_label_of

    user = list(config.getoption("--claims"))
    claims = load(user).all()
    patterns = config.getoption("--pl-select")
    if patterns:
        claims = [c for c in claims if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    elif user:
        mine = {plugin_label_of(u) for u in user}
        claims = [c for c in claims if c.plugin in mine]
    device = config.getoption("--pl-device") or os.environ.get("PROMPT_LIMITS_DEVICE", "cpu")
    backends = [Backend(n, dtype=dt, device=device).ensure()
                for n in _csv(config.getoption("--pl-backend"), "PROMPT_LIMITS_BACKENDS", "numpy")
                for dt in _csv(config.getoption("--pl-dtype"), "PROMPT_LIMITS_DTYPES", "float64")]
    cases = [(c, b) for c in claims for b in backends
             if b.name in c.backends and (b.dtype == "float64" or "float32" in c.ladder or c.precision == "float32")]
    mutants = [] if config.getoption("--pl-no-mutants") else [(c, m) for c in claims for m in c.mutants]
    return cases, mutants


def pytest_generate_tests(metafunc):
    if "prompt_limits_claim" in metafunc.fixturenames:
        cases, _ = _selection(metafunc.config)
        metafunc.parametrize("prompt_limits_claim", [
            pytest.param(functools.partial(run_claim_case, metafunc.config, c, b), marks=_marks(c, b),
                         id=f"{c.id}-{b.name}-{b.dtype}") for c, b in cases])
    if "prompt_limits_mutant" in metafunc.fixturenames:
        _, mutants = _selection(metafunc.config)
        metafunc.parametrize("prompt_limits_mutant", [
            pytest.param(functools.partial(run_mutant_case, metafunc.config, c, m), marks=_marks(c, None),
                         id=f"{c.id}-mutant-{m.name}") for c, m in mutants])


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A ClaimFailure inside a file-based case reads as its message, not a traceback through the plugin."""
    outcome = yield
    exc = outcome.excinfo
    if exc is not None and isinstance(exc[1], ClaimFailure):
        outcome.force_exception(pytest.fail.Exception(str(exc[1]), pytrace=False))


class PromptLimitsCollector(pytest.Collector):
    def collect(self):
        cases, mutants = _selection(self.config)
        for c, b in cases:
            yield PromptLimitsItem.from_parent(self, name=f"{c.id}[{b.name}-{b.dtype}]", claim=c, backend=b)
        for c, m in mutants:
            yield PromptLimitsItem.from_parent(self, name=f"{c.id}[mutant-{m.name}]", claim=c, mutant=m)


def pytest_configure(config):
    config.addinivalue_line("markers", "prompt_limits: a claim or mutant collected by the prompt-limits plugin")
    config.addinivalue_line("markers", "backends: exercises torch/jax")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Add the claim items before -k / -m deselect (mark's hook runs after this one)."""
    if not config.getoption("--prompt-limits"):
        return
    import verify.settings  # noqa: F401  (registers the Hypothesis profiles)

    col = PromptLimitsCollector.from_parent(session, name="prompt-limits")
    rep = col.ihook.pytest_make_collect_report(collector=col)
    if rep.failed:
        raise pytest.UsageError(f"prompt-limits: could not collect claims: {rep.longreprtext}")
    items.extend(rep.result)
