"""The runner: hunt each claim with Hypothesis, re-check suspect failures up the precision ladder.

For one (claim, backend) it records: instances tried, rejected (with reasons), the worst ratio and
its instance, the precision that decided, time, and a confirmed counterexample if any. Mutants
are hunted the same way; a mutant is caught when a confirmed violation is found.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import given, reject, settings, target
from hypothesis import seed as hyp_seed
from hypothesis.errors import Unsatisfiable

from verify.backends import Backend, rungs_above
from verify.claims import Claim, Evidence, OutOfReach, UnsupportedPrecision
from verify.settings import budget_of, profile_settings
from verify.status import Status


class _Budget(BaseException):
    """Raised inside the Hypothesis body when the per-claim time budget is spent."""


class _Violation(AssertionError):
    """Raised inside the Hypothesis body on a confirmed violation, so Hypothesis shrinks it."""


@dataclass
class Decision:
    evidence: Evidence
    trail: list  # [(precision label, ratio)] for every rung evaluated
    rescued: bool = False


class RungError(Exception):
    """A higher precision rung of a check raised: a defect of the check, reported as an error naming the rung."""

    def __init__(self, rung: str, exc: BaseException):
        super().__init__(f"the {rung} rung raised {exc.__class__.__name__}: {exc}")
        self.rung = rung


def decide(claim: Claim, check, instance, backend: Backend, ev: Evidence) -> Decision:
    """Re-check a suspect failure on the ladder's higher rungs; the highest rung evaluated decides.

    With ``claim.rescue`` False the backend's own arithmetic is the subject: no rung may clear it. The ladder
    stops only where a check says it does not implement a rung (UnsupportedPrecision); any other exception in
    a higher rung is a defect of the check (RungError), never a reason to let the float verdict stand.
    """
    # a check that computed in higher precision than its backend (mpmath inside) says so itself
    ev = ev if ev.precision else ev.with_precision(backend.precision)
    trail = [(backend.label, ev.ratio)]
    if ev.ratio <= 1.0 or not claim.rescue:
        return Decision(ev, trail)
    for rung in rungs_above(backend, claim.ladder, dps=50):
        try:
            ev2 = check(instance, rung)
        except UnsupportedPrecision:
            break
        except Exception as exc:
            raise RungError(rung.label, exc) from exc
        if not isinstance(ev2, Evidence):
            raise RungError(rung.label, TypeError(f"returned {type(ev2).__name__}, not verify.Evidence"))
        ev2 = ev2 if ev2.precision else ev2.with_precision(rung.precision)
        trail.append((rung.label, ev2.ratio))
        ev = ev2
        if ev2.vacuous:
            break  # a rung that cannot bound decides nothing: the suspect failure stays suspect
        if ev2.ratio <= 1.0:
            return Decision(ev2, trail, rescued=True)
    return Decision(ev, trail)


@dataclass
class HuntResult:
    tried: int = 0
    rejected: Counter = field(default_factory=Counter)
    rescued: int = 0
    worst: Evidence | None = None
    worst_instance: object = None
    worst_trail: list = field(default_factory=list)
    failure: Evidence | None = None
    failure_instance: object = None
    failure_trail: list = field(default_factory=list)
    error: str | None = None
    error_instance: object = None
    seconds: float = 0.0
    budget_hit: bool = False
    seed: int | None = None
    planned: int = 0  # examples the cost-based budget allowed

    @property
    def found(self) -> bool:
        return self.failure is not None

    @property
    def decided(self) -> int:
        return self.tried - sum(self.rejected.values())


def _finite(r: float) -> float:
    return r if math.isfinite(r) else 1e300


CALIBRATION_EXAMPLES = 5
TARGET_SHARE = 0.5


def _round_seed(seed: int, k: int) -> int:
    return (seed * 1_000_003 + k * 7_919) % 2**32


def hunt(
    claim: Claim,
    backend: Backend,
    *,
    check=None,
    strategy=None,
    mutant=None,
    profile: str = "dev",
    max_examples: int | None = None,
    max_seconds: float | None = None,
    seed: int | None = None,
    on_example=None,
    shrink: bool = True,
    database=None,
) -> HuntResult:
    """Run ``check`` (default: the claim's) under Hypothesis; stop at the first confirmed violation.

    The search is budgeted by time and by the claim's cost: a short calibration measures the cost of one
    example, then the main search draws as many as ``max_seconds`` allows (capped by the profile and by the
    claim's ``max_examples``), so a cheap check gets hundreds of examples and Hypothesis' target phase (which
    climbs the ratio from the worst instances) has examples to act on. With ``mutant``, its patches are applied
    for the whole hunt and its checker (the claim's own check for patch and tightened mutants) is what runs.
    """
    if mutant is not None:
        with mutant.active():
            return hunt(claim, backend, check=mutant.checker(claim),
                        strategy=strategy if strategy is not None else mutant.strategy, profile=profile,
                        max_examples=max_examples, max_seconds=max_seconds, seed=seed, on_example=on_example,
                        shrink=shrink, database=database)
    check = check or claim.check
    strategy = strategy if strategy is not None else claim.strategy
    base = profile_settings(profile)
    cap_examples, default_seconds = budget_of(profile)
    max_seconds = default_seconds if max_seconds is None else max_seconds
    cap = max_examples or (min(claim.max_examples, cap_examples) if claim.max_examples else cap_examples)
    res = HuntResult(seed=seed)
    # The budget is CPU time of this process, so the number of examples a claim gets (and with it the verdict at
    # a seed) hardly depends on what else the machine runs; a wall-clock cap of 3x stops a check that blocks.
    t0, c0 = time.monotonic(), time.process_time()
    deadline, wall_deadline = c0 + max_seconds, t0 + 3.0 * max_seconds

    entries: list[float] = []  # CPU time at each example's start, for the cost estimate
    round_end = [deadline]  # CPU deadline of the current round (the hunt's deadline for the last one)

    stopped = [False]  # a _Budget was raised in the current round (its own end, or the hunt's)

    def body(instance):
        entries.append(time.process_time())
        now, wall = time.process_time(), time.monotonic()
        if now > round_end[0] or wall > wall_deadline:
            if now > deadline or wall > wall_deadline:
                res.budget_hit = True  # the hunt's budget, not only this round's, is spent
            stopped[0] = True
            if res.found:
                return  # over budget while shrinking: keep the smallest failure seen so far
            raise _Budget()
        res.tried += 1
        try:
            ev = check(instance, backend)
        except OutOfReach as exc:
            res.rejected[exc.reason] += 1
            reject()
        except Exception as exc:
            res.error = f"{exc.__class__.__name__}: {exc}"
            res.error_instance = copy.deepcopy(instance)
            raise
        if not isinstance(ev, Evidence):
            res.error = f"check returned {type(ev).__name__}, not verify.Evidence"
            raise TypeError(res.error)
        if ev.vacuous:
            res.rejected[ev.vacuous] += 1
            reject()
        try:
            d = decide(claim, check, instance, backend, ev)
        except RungError as exc:
            res.error = str(exc)
            res.error_instance = copy.deepcopy(instance)
            raise
        if d.rescued:
            res.rescued += 1
        if on_example:
            on_example(res, d.evidence)
        target(_finite(d.evidence.ratio), label="ratio")
        if res.worst is None or d.evidence.ratio > res.worst.ratio:
            res.worst, res.worst_instance, res.worst_trail = d.evidence, copy.deepcopy(instance), d.trail
        if d.evidence.ratio > 1.0:
            if res.failure is None or _size(instance) <= _size(res.failure_instance):
                res.failure, res.failure_instance, res.failure_trail = d.evidence, copy.deepcopy(instance), d.trail
            raise _Violation(f"ratio {d.evidence.ratio:.6g} > 1")

    def run(n: int, phases, round_seed) -> str:
        """One Hypothesis search of at most n examples: 'over' (found, error, hunt budget spent), 'round' (this
        round's budget spent) or 'done' (n examples drawn)."""
        stopped[0] = False
        test = given(strategy)(body)
        if round_seed is not None:
            test = hyp_seed(round_seed)(test)  # before settings: @seed on its own turns the database off
        test = settings(base, max_examples=max(n, 1), database=database, deadline=None, phases=phases,
                        report_multiple_bugs=False)(test)
        try:
            test()
        except _Budget:
            return "over" if round_end[0] >= deadline or time.monotonic() > wall_deadline else "round"
        except Unsatisfiable:
            return "over" if res.found else "done"
        except Exception:
            # Hypothesis re-raises the (shrunk) failure; what we recorded in `res` is the verdict. A final
            # replay that returned early (budget spent while shrinking), or a database example replayed when the
            # budget ran out, surfaces as Flaky: the same verdict, or the end of the budget.
            if not res.found and res.error is None and not stopped[0]:
                raise
            return "over"
        return "over" if res.found or res.error is not None else "done"

    phases = tuple(p for p in base.phases if shrink or p.name != "shrink")
    explore = tuple(p for p in phases if p.name != "target")
    # Calibrate on a few examples; then a climbing round (Hypothesis' target phase hill-climbs the ratio from the
    # worst instances) gets TARGET_SHARE of what is left, and an exploring round without the target phase the rest
    # (the optimiser spends many simulated calls per real one and can stall on a plateau; fresh random draws
    # from another seed are cheap). Each round's seed derives from the hunt's, so no round repeats another.
    calibrate = min(CALIBRATION_EXAMPLES, cap)
    res.planned = calibrate
    state = run(calibrate, phases, seed)
    for k, round_phases in ((1, phases), (2, explore)):
        if state == "over" or res.tried >= cap:
            break
        marks = entries[1:] if len(entries) > 2 else entries
        per_example = max((marks[-1] - marks[0]) / max(len(marks) - 1, 1), 1e-6) if len(marks) > 1 else 1e-3
        left = deadline - time.process_time()
        n = int(min(cap - res.tried, 2.0 * left / per_example))
        if n >= (cap - res.tried) // 4:
            # a cheap check asks for the whole cap and lets the budget stop it: the draws at a seed then do not
            # depend on how loaded the machine was when the cost was measured
            n = cap - res.tried
        if n < 2:
            res.budget_hit = True
            break
        round_end[0] = time.process_time() + TARGET_SHARE * left if k == 1 else deadline
        res.planned += n
        entries.clear()
        state = run(n, round_phases, None if seed is None else _round_seed(seed, k))
    res.seconds = time.monotonic() - t0
    return res


def _size(instance) -> int:
    return len(repr(instance))


@dataclass
class ClaimResult:
    """One report row: a claim on one backend."""

    claim_id: str
    source: str
    provenance: str
    statement: str
    backend: str
    tried: int
    rejected: dict
    worst_ratio: float | None
    precision: str | None
    status: Status
    seconds: float
    reason: str = ""
    expected: str = "holds"
    expect_reason: str = ""
    rescued: int = 0
    worst_evidence: dict | None = None
    worst_instance: object = None
    limits: str = ""
    counterexample_file: str | None = None
    notes: str = ""
    plugin: str = ""
    planned: int = 0

    @property
    def margin(self) -> float | None:
        return None if self.worst_ratio is None else 1.0 - self.worst_ratio

    @property
    def as_expected(self) -> bool:
        return self.status.value == self.expected

    @property
    def ok(self) -> bool:
        """Counts as a pass of the run: as expected. Deciding nothing (unexpectedly) fails the run."""
        return self.as_expected

    def to_json(self) -> dict:
        from verify.claims import _jfloat

        d = dict(self.__dict__)
        d["status"] = self.status.value
        d["worst_ratio"] = None if self.worst_ratio is None else _jfloat(self.worst_ratio)
        d["margin"] = None if self.margin is None else _jfloat(self.margin)
        d["as_expected"] = self.as_expected
        return d


def status_of(claim: Claim, res: HuntResult) -> tuple[Status, str, str]:
    """(status, reason, notes) from a hunt.

    A claim that decided fewer than ``claim.min_decided`` of the instances it drew holds nothing: its status is
    out_of_reach with the share, so a check that rejects nearly everything cannot pass by deciding one instance.
    """
    if res.error is not None:
        return Status.ERROR, res.error, "the check raised; this is a defect of the check, not a verdict"
    if res.found:
        return Status.COUNTEREXAMPLE, res.failure.describe() if res.failure else "", ""
    top = "; ".join(f"{n} x {r}" for r, n in res.rejected.most_common(3))
    if res.decided <= 0:
        reason = res.rejected.most_common(1)[0][0] if res.rejected else "no instance could be drawn"
        return Status.OUT_OF_REACH, reason, top
    share = res.decided / max(res.tried, 1)
    if share < claim.min_decided:
        return (Status.OUT_OF_REACH,
                f"decided {res.decided} of {res.tried} instances ({share:.0%} < the claim's {claim.min_decided:.0%});"
                f" most out of reach: {res.rejected.most_common(1)[0][0]}", top)
    notes = "; ".join(f"{n} out of reach ({r})" for r, n in res.rejected.most_common(3)) if res.rejected else ""
    return Status.HOLDS, "", notes


def run_claim(claim: Claim, backend: Backend, **kw) -> tuple[ClaimResult, HuntResult]:
    res = hunt(claim, backend, **kw)
    status, reason, notes = status_of(claim, res)
    ev = res.failure or res.worst
    if res.budget_hit and not res.found:
        notes = "; ".join(filter(None, [notes, f"time budget reached after {res.tried} instances"]))
    if res.rescued:
        notes = "; ".join(filter(None, [notes, f"{res.rescued} float failure(s) cleared by higher precision"]))
    if claim.expect != "holds" and status.value != claim.expect:
        notes = "; ".join(filter(None, [notes, f"expected {claim.expect} ({claim.expect_reason}), got {status.value}"]))
    row = ClaimResult(
        claim_id=claim.id,
        source=claim.source,
        provenance=claim.provenance,
        statement=claim.statement,
        backend=backend.label,
        tried=res.tried,
        rejected=dict(res.rejected),
        worst_ratio=None if ev is None else ev.ratio,
        precision=None if ev is None else ev.precision,
        status=status,
        reason=reason,
        seconds=round(res.seconds, 3),
        expected=claim.expect,
        expect_reason=claim.expect_reason,
        rescued=res.rescued,
        worst_evidence=None if ev is None else ev.to_json(),
        worst_instance=_encoded(res.failure_instance if res.found else res.worst_instance),
        notes=notes,
        limits=claim.limits,
        plugin=claim.plugin,
        planned=res.planned,
    )
    return row, res


def _encoded(instance, limit: int = 20000):
    """The instance as JSON for the report; very large ones are summarised, not inlined."""
    from verify import codec

    try:
        enc = codec.encode(instance)
    except TypeError as exc:
        return f"not encodable: {exc}"
    size = len(codec.dumps(enc))
    return enc if size <= limit else f"omitted ({size} characters of JSON)"
