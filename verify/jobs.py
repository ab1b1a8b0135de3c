"""Jobs and their results: one claim on one backend, one shard of its examples; shards merged into one row.

A :class:`Job` is small, frozen and picklable: everything a fresh process needs to run it. ``--shards K`` splits
one claim's examples over K seeds derived from (seed, shard); :func:`merge` folds the shards' results into one
report row: tried summed, rejection reasons summed, worst ratio max, the smallest confirmed counterexample kept,
the status decided by the runner's own ``status_of`` on the pooled counts. Rows may carry status as the older
"kind: reason" string or as split ``status``/``reason`` fields; both are read and the runner's is written.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

WORKER_LOST = "worker lost"

@dataclass(frozen=True)
class Job:
    """One hunt: a claim on a backend, one shard of its examples. Everything a fresh process needs to run it."""

    claim_id: str
    backend: tuple[str, str, str]  # (name, dtype, device)
    seed: int
    profile: str
    max_seconds: float | None  # None: the profile's budget
    shard: int = 0
    shards: int = 1
    max_examples: int | None = None  # this shard's share; None: the claim's own count
    modules: tuple[str, ...] = ()  # --claims modules to import besides the entry points
    database: str | None = None  # directory of the Hypothesis example database written by this job
    shared_database: str | None = None  # a read-only database multiplexed with it (cluster pattern)
    corpus: tuple[str, ...] = ()  # counterexample files (JSON text) replayed before the hunt
    order: int = 0  # position in the plan: merged rows keep the serial order

    @property
    def group(self) -> tuple[str, tuple[str, str, str]]:
        return self.claim_id, self.backend

    @property
    def key(self) -> str:
        return f"{self.claim_id}@{'/'.join(self.backend)}#{self.shard}/{self.shards}"


@dataclass
class JobResult:
    job: Job
    row: dict
    failure: object = None  # verify.Evidence of the confirmed violation, if any
    failure_instance: object = None
    failure_trail: list = field(default_factory=list)
    seed: int | None = None
    seconds: float = 0.0  # wall time in the worker, plugin import included
    cpu_seconds: float = 0.0  # CPU time of the worker process for this job: the cost on a dedicated core
    from_corpus: bool = False
    attempts: int = 1

    @property
    def found(self) -> bool:
        return self.failure is not None


def shard_seed(seed: int, shard: int) -> int:
    """Shard 0 keeps the run's seed (one shard is exactly the unsharded run); the others hash (seed, shard)."""
    if shard == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"prompt-limits/shard/{seed}/{shard}".encode()).digest()[:4], "big")


def examples_of(claim, profile: str) -> int:
    """The number of examples the runner gives this claim at this profile (same rule as ``runner.hunt``)."""
    from verify import settings

    budget = getattr(settings, "budget_of", None)
    n = budget(profile)[0] if budget else settings.profile_settings(profile).max_examples
    return min(claim.max_examples, n) if claim.max_examples else n


def backend_key(backend) -> tuple[str, str, str]:
    return backend.name, backend.dtype, backend.device


def _new_format() -> bool:
    from verify.runner import ClaimResult

    return "reason" in getattr(ClaimResult, "__dataclass_fields__", {})


def error_row(claim, backend_label: str, reason: str, notes: str = "") -> dict:
    """A report row for a job that produced none (worker lost, runner raised), built by the runner's row type."""
    from verify.runner import ClaimResult
    from verify.status import Status

    new = _new_format()
    kw = dict(claim_id=claim.id, source=claim.source, provenance=claim.provenance, statement=claim.statement,
              backend=backend_label, tried=0, rejected={}, worst_ratio=None, precision=None,
              status=Status.ERROR if new else f"error: {reason}", seconds=0.0, expected=claim.expect,
              expect_reason=claim.expect_reason, limits=claim.limits,
              notes=notes or "the job produced no result; a defect of the run or the check, not a verdict")
    fields = getattr(ClaimResult, "__dataclass_fields__", {})
    if new:
        kw["reason"] = reason
    if "plugin" in fields:
        kw["plugin"] = claim.plugin
    return ClaimResult(**kw).to_json()


# ----------------------------------------------------------------------------------------------------------
# merging shards


def parse_status(row: dict) -> tuple[str, str]:
    """(status value, reason) from a row in either format: "kind: reason", or split status/reason fields."""
    from verify.status import Status

    st, reason = Status.parse(str(getattr(row["status"], "value", row["status"])))
    return st.value, (row.get("reason") or reason or "")


def _set_status(row: dict, status: str, reason: str, new: bool | None = None) -> None:
    new = _new_format() if new is None else new
    if new:
        row["status"], row["reason"] = status, reason
    else:
        row["status"] = f"{status}: {reason}" if reason and status in ("out_of_reach", "error") else status
    row["as_expected"] = status == row.get("expected", "holds")


def _ratio(x) -> float:
    return -math.inf if x is None else float(x)


def merge(results: list[JobResult]) -> JobResult:
    """Fold the shards of one claim x backend into one result (a single shard is returned unchanged)."""
    if len(results) == 1:
        return results[0]
    results = sorted(results, key=lambda r: r.job.shard)
    rows = [r.row for r in results]
    parsed = [parse_status(r) for r in rows]
    new = any("reason" in r for r in rows) or _new_format()
    rejected = Counter()
    for r in rows:
        rejected.update(r.get("rejected") or {})
    found = [r for r in results if r.found]
    keep = min(found, key=lambda r: len(repr(r.failure_instance))) if found else None
    worst = max(results, key=lambda r: _ratio(r.row.get("worst_ratio")))
    base = dict((keep or worst).row)
    base["tried"] = sum(r.get("tried") or 0 for r in rows)
    base["rejected"] = dict(rejected)
    base["rescued"] = sum(r.get("rescued") or 0 for r in rows)
    base["seconds"] = round(sum(r.get("seconds") or 0.0 for r in rows), 3)
    base["worst_ratio"] = worst.row.get("worst_ratio")
    base["margin"] = worst.row.get("margin")
    base["seeds"] = [r.job.seed for r in results]
    errors = [why for st_, why in parsed if st_ == "error"]
    status, reason = _merged_status(results[0].job.claim_id, base["tried"], rejected, keep,
                                    errors[0] if errors else None)
    for k in ("planned",):
        if k in base:
            base[k] = sum(r.get(k) or 0 for r in rows)
    _set_status(base, status, reason, new)
    notes = [n for n in dict.fromkeys(r.get("notes") or "" for r in rows) if n]
    base["notes"] = "; ".join([f"{len(rows)} shards (seeds {', '.join(str(s) for s in base['seeds'])})"] + notes)
    out = replace(keep or worst, row=base, seconds=sum(r.seconds for r in results),
                  cpu_seconds=sum(r.cpu_seconds for r in results),
                  attempts=max(r.attempts for r in results))
    if keep is None:
        out.failure, out.failure_instance, out.failure_trail = None, None, []
    return out


def _merged_status(claim_id: str, tried: int, rejected: Counter, keep: JobResult | None,
                   error: str | None) -> tuple[str, str]:
    """The runner's own verdict (``runner.status_of``) on the shards' pooled counts."""
    from verify import runner
    from verify.claims import REGISTRY
    from verify.status import Status

    hr = runner.HuntResult(tried=tried, rejected=Counter(rejected), error=error,
                           failure=keep.failure if keep is not None else None,
                           failure_instance=keep.failure_instance if keep is not None else None)
    out = runner.status_of(REGISTRY.get(claim_id), hr)
    if len(out) == 3:  # (Status, reason, notes)
        return str(getattr(out[0], "value", out[0])), out[1]
    st_, reason = Status.parse(out[0])  # the older "kind: reason" string
    return st_.value, reason


class Merger:
    """Collects job results; when the last shard of a claim x backend arrives, hands the merged result on."""

    def __init__(self, jobs: list[Job], on_row: Callable[[JobResult], None]):
        self.expected = Counter(j.group for j in jobs)
        self.pending: dict = {}
        self.on_row = on_row
        self.done: list[JobResult] = []

    def add(self, result: JobResult) -> None:
        g = result.job.group
        self.pending.setdefault(g, []).append(result)
        if len(self.pending[g]) == self.expected[g]:
            merged = merge(self.pending.pop(g))
            self.done.append(merged)
            self.on_row(merged)
