"""Every selected claim comes out as it expects on every backend under test; every mutant is caught.

The cases come from prompt-limits' own pytest plugin (verify.pytest_plugin), over PROMPT_LIMITS_BACKENDS and
PROMPT_LIMITS_DTYPES (tox sets them), at seed 0 and the profile's budget: ``-k`` selects claims by id.
"""


def test_claim(prompt_limits_claim):
    prompt_limits_claim()


def test_mutant(prompt_limits_mutant):
    prompt_limits_mutant()
