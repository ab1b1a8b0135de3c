"""pytest plugin (entry point ``pytest11``): ``pytest --prompt-limits`` turns claims and mutants into test items.

In any project with prompt-limits installed::

    pytest --prompt-limits                       # every installed plugin's claims, numpy float64
    pytest --prompt-limits --claims mypkg.claims --pl-backend numpy,torch --pl-profile ci -k square -x

Items are ``prompt-limits::<claim id>[<backend>-<dtype>]`` (passes when the claim's status is what it expects)
and ``prompt-limits::<claim id>[mutant-<name>]`` (passes when the mutant is caught). A failure's message carries
the evidence and the replay command of the counterexample file written under ``--pl-out``. ``-k``, ``-m``,
``-x``, ``--junitxml`` and pytest-xdist work as for any test; defaults come from PROMPT_LIMITS_BACKENDS,
PROMPT_LIMITS_DTYPES, PROMPT_LIMITS_DEVICE and the profile from HYPOTHESIS_PROFILE (ci under CI=true).
"""

from __future__ import annotations

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
    g.addoption("--pl-seed", type=int, default=0, help="Hypothesis seed of every item (default 0: reproducible)")
    g.addoption("--pl-seconds", type=float, default=None, help="time budget per claim (default: the profile's)")
    g.addoption("--pl-mutant-seconds", type=float, default=20.0, help="time budget per mutant (default 20)")
    g.addoption("--pl-no-mutants", action="store_true", help="collect claims only")
    g.addoption("--pl-out", default="reports", help="where counterexample files of failing items go")


def _csv(value, env, default):
    return [x.strip() for x in (value or os.environ.get(env) or default).split(",") if x.strip()]


class ClaimFailure(Exception):
    """A claim item that did not come out as its claim expects."""


class PromptLimitsItem(pytest.Item):
    def __init__(self, *, claim, backend=None, mutant=None, **kw):
        super().__init__(**kw)
        self.claim, self.backend, self.mutant = claim, backend, mutant
        self.add_marker("prompt_limits")
        if backend is not None and backend.name in ("torch", "jax"):
            self.add_marker("backends")
        if backend is not None and backend.device == "cuda":
            self.add_marker("gpu")

    def _opt(self, name):
        return self.config.getoption(name)

    def runtest(self):
        from verify.runner import hunt, run_claim
        from verify.settings import default_profile

        profile = self._opt("--pl-profile") or default_profile()
        seed = self._opt("--pl-seed")
        if self.mutant is not None:
            from verify.backends import Backend

            res = hunt(self.claim, Backend(), mutant=self.mutant, profile=profile,
                       max_seconds=self._opt("--pl-mutant-seconds"), seed=seed, shrink=False)
            if res.error is not None:
                raise ClaimFailure(f"mutant {self.mutant.name} ({self.mutant.kind}) raised instead of failing:"
                                   f" {res.error}")
            if not res.found:
                raise ClaimFailure(
                    f"mutant {self.claim.id}/{self.mutant.name} ({self.mutant.kind}: {self.mutant.description})"
                    f" survived {res.tried} instances (worst ratio {res.worst.ratio if res.worst else None}):"
                    " the property cannot see this defect")
            return
        from verify import counterexample
        from verify.report import status_text

        row, res = run_claim(self.claim, self.backend, profile=profile, max_seconds=self._opt("--pl-seconds"),
                             seed=seed)
        if row.ok:
            return
        lines = [f"{self.claim.id} on {self.backend.label}: {status_text(row.to_json())}"
                 f" (expected {self.claim.expect}); tried {row.tried}, worst ratio {row.worst_ratio}",
                 f"statement: {self.claim.statement}"]
        ev = res.failure or res.worst
        if ev is not None:
            lines.append(f"evidence: {ev.describe()}" + (f"; {ev.notes}" if ev.notes else ""))
        if res.error_instance is not None:
            lines.append(f"instance: {res.error_instance!r}"[:2000])
        if res.found:
            path = counterexample.write(self.claim, self.backend, res, Path(self._opt("--pl-out")) / "counterexamples",
                                        profile=profile, modules=list(self._opt("--claims")))
            lines.append(f"replay: prompt-limits replay {path}")
        raise ClaimFailure("\n".join(lines))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ClaimFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return Path(self.claim.module.replace(".", "/") + ".py"), None, self.name


class PromptLimitsCollector(pytest.Collector):
    def collect(self):
        import fnmatch

        from verify.backends import Backend
        from verify.discovery import load

        cfg = self.config
        user = list(cfg.getoption("--claims"))
        registry = load(user)
        claims = registry.all()
        patterns = cfg.getoption("--pl-select")
        if patterns:
            claims = [c for c in claims if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
        elif user:
            from verify.discovery import plugin_label_of

            mine = {plugin_label_of(u) for u in user}
            claims = [c for c in claims if c.plugin in mine]
        device = cfg.getoption("--pl-device") or os.environ.get("PROMPT_LIMITS_DEVICE", "cpu")
        backends = [Backend(n, dtype=dt, device=device).ensure()
                    for n in _csv(cfg.getoption("--pl-backend"), "PROMPT_LIMITS_BACKENDS", "numpy")
                    for dt in _csv(cfg.getoption("--pl-dtype"), "PROMPT_LIMITS_DTYPES", "float64")]
        for c in claims:
            for b in backends:
                if b.name in c.backends and (b.dtype == "float64" or "float32" in c.ladder
                                             or c.precision == "float32"):
                    yield PromptLimitsItem.from_parent(self, name=f"{c.id}[{b.name}-{b.dtype}]", claim=c, backend=b)
        if not cfg.getoption("--pl-no-mutants"):
            for c in claims:
                for m in c.mutants:
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
