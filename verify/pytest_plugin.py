"""pytest plugin (entry point ``pytest11``): ``pytest --prompt-limits`` collects claims and mutants as test items."""

from __future__ import annotations


def pytest_addoption(parser):
    g = parser.getgroup("prompt-limits")
    g.addoption("--prompt-limits", action="store_true", help="collect prompt-limits claims and mutants as tests")
