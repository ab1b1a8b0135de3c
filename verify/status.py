"""A verdict as data: one of four statuses plus a reason, never a "kind: reason" string to parse."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """holds: no instance violated the claim and at least one decided; counterexample: a confirmed violation;
    out_of_reach: nothing was decided (every instance beyond the check, or the bound vacuous); error: the check
    (or a higher precision rung of it) raised, a defect of the check rather than a verdict."""

    HOLDS = "holds"
    COUNTEREXAMPLE = "counterexample"
    OUT_OF_REACH = "out_of_reach"
    ERROR = "error"

    def __str__(self) -> str:  # f"{status}" prints the bare value in reports and messages
        return self.value

    @classmethod
    def parse(cls, text: str) -> tuple[Status, str]:
        """Read a status as written by format 1 files ("out_of_reach: reason") or 2 (bare value)."""
        head, _, reason = str(text).partition(":")
        try:
            return cls(head.strip()), reason.strip()
        except ValueError:
            raise ValueError(f"unknown status {text!r}; known: {[s.value for s in cls]}") from None


EXPECTABLE = (Status.HOLDS, Status.COUNTEREXAMPLE, Status.OUT_OF_REACH)
