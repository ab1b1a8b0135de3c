"""Hypothesis profiles: dev (default), ci (builds on Hypothesis' own ci profile), thorough, debug.

Chosen by ``--profile`` or ``HYPOTHESIS_PROFILE`` / ``PROMPT_LIMITS_PROFILE``; under CI=true Hypothesis
auto-loads its ``ci`` profile (derandomized, no database), which ours extends.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Verbosity, settings

PROFILES = ("dev", "ci", "thorough", "debug")
_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=list(HealthCheck))

settings.register_profile("dev", max_examples=30, **_COMMON)
settings.register_profile("ci", settings.get_profile("ci"), max_examples=30, **_COMMON)
# target() needs on the order of a thousand examples to climb towards worst cases.
settings.register_profile("thorough", max_examples=1000, derandomize=False, **_COMMON)
settings.register_profile("debug", max_examples=10, verbosity=Verbosity.verbose, **_COMMON)


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
