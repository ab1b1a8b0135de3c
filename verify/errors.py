"""The exceptions a check or a registration raises."""

from __future__ import annotations


class OutOfReach(Exception):
    """Raised by a check when an instance is beyond what it can decide (size, memory, digits).

    The runner counts it as a rejected instance with this reason; if every instance of a run is
    out of reach, the claim's status is ``out_of_reach: <reason>``. Never a silent skip.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UnsupportedPrecision(Exception):
    """Raised by a check asked to run at a precision it does not implement (ends the ladder)."""


class ClaimError(ValueError):
    """A claim or mutant registered wrongly (duplicate id, bad provenance, unknown claim)."""
