"""Shared test set-up: the backends under test come from PROMPT_LIMITS_BACKENDS (tox sets them)."""

from __future__ import annotations

import os

import pytest

import verify.settings  # noqa: F401  (registers the Hypothesis profiles)
from verify.backends import Backend, BackendUnavailable, cuda_available
from verify.discovery import load

REGISTRY = load()


def backends_under_test() -> list[Backend]:
    names = os.environ.get("PROMPT_LIMITS_BACKENDS", "numpy").split(",")
    dtypes = os.environ.get("PROMPT_LIMITS_DTYPES", "float64").split(",")
    device = os.environ.get("PROMPT_LIMITS_DEVICE", "cpu")
    out = []
    for n in names:
        for dt in dtypes:
            try:
                out.append(Backend(n.strip(), dtype=dt.strip(), device=device).ensure())
            except BackendUnavailable:
                # A backend named in PROMPT_LIMITS_BACKENDS must be installed: fail loudly, never skip.
                raise
    return out


def pytest_collection_modifyitems(config, items):
    has_gpu = cuda_available("torch") or cuda_available("jax")
    skip_gpu = pytest.mark.skip(reason="no CUDA device visible to torch or jax on this machine")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True, scope="session")
def _fresh_caches_under_mutation():
    """mutmut 3 forks each mutant's test run from a process that already ran the clean suite: a construction
    cached there (lru_cache) would hand the mutant's tests the unmutated object. Clear every cache first."""
    if os.environ.get("MUTANT_UNDER_TEST"):
        import functools
        import gc

        for obj in gc.get_objects():
            if isinstance(obj, functools._lru_cache_wrapper):
                obj.cache_clear()
    yield
