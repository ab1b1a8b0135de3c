"""Hypothesis profiles and search budgets: dev (default), ci (builds on Hypothesis' own ci profile), thorough, debug.

Chosen by ``--profile`` or ``HYPOTHESIS_PROFILE`` / ``PROMPT_LIMITS_PROFILE``; under CI=true Hypothesis
auto-loads its ``ci`` profile (derandomized, no database), which ours extends. Each profile also sets a search
budget: at most ``examples`` instances and ``seconds`` of wall time per claim; the runner spends the time by the
claim's measured cost (a cheap check gets the cap, an expensive one what fits).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Verbosity, settings

PROFILES = ("dev", "ci", "thorough", "debug")
_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=list(HealthCheck))

# Hypothesis climbs a target() score only after generating: from max_examples / 2 below 1000, so the caps
# leave the optimiser room. Measured on the barely-false engine suite (tests/test_search_power.py).
BUDGETS = {"dev": (1000, 1.0), "ci": (3000, 4.0), "thorough": (20000, 120.0), "debug": (10, 30.0)}

for _name, (_n, _) in BUDGETS.items():
    _parent = (settings.get_profile("ci"),) if _name == "ci" else ()
    _extra = {"derandomize": False} if _name == "thorough" else {}
    if _name == "debug":
        _extra = {"verbosity": Verbosity.verbose}
    settings.register_profile(_name, *_parent, max_examples=_n, **_extra, **_COMMON)


def default_profile() -> str:
    env = os.environ.get("PROMPT_LIMITS_PROFILE") or os.environ.get("HYPOTHESIS_PROFILE")
    if env:
        if env not in PROFILES:
            raise ValueError(f"unknown Hypothesis profile {env!r}; choose from {PROFILES}")
        return env
    return "ci" if os.environ.get("CI") else "dev"


def profile_settings(name: str) -> settings:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {PROFILES}")
    return settings.get_profile(name)


def budget_of(name: str) -> tuple[int, float]:
    """(example cap, seconds) per claim for a profile."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {PROFILES}")
    return BUDGETS[name]
