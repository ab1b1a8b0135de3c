"""Executors: claim x backend x shard jobs (verify.jobs), run serially (the default) or on Dask, merged as they land.

:func:`plan` makes the jobs; :func:`run_job` runs one in whatever process receives it (it loads the plugins
there: Dask workers are separate processes) and returns a picklable :class:`JobResult` holding the report row
and, if the hunt confirmed a violation, the failing instance, its evidence and ladder trail, so the parent
writes the counterexample file (:func:`write_counterexample`). Shard 0 replays the counterexample corpus
first and the hunt uses the example database (verify.corpus).

Serial execution imports no Dask. ``DaskExecutor`` starts an embedded ``LocalCluster`` (processes, one thread
and one BLAS thread each) or connects to an existing scheduler; results arrive as they finish
(``as_completed``) and reach ``on_row`` once a claim x backend's last shard is in; a worker that dies mid-job
has the job retried once and is then reported as an ``error`` row "worker lost"; Ctrl-C keeps the finished
rows and cancels the rest.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from verify.corpus import (  # noqa: F401  (re-exported: the executor is the one import a caller needs)
    corpus_index,
    database_supported,
    keyed_database,
    open_database,
    replay_corpus,
)
from verify.jobs import (  # noqa: F401
    WORKER_LOST,
    Job,
    JobResult,
    Merger,
    backend_key,
    error_row,
    examples_of,
    merge,
    parse_status,
    shard_seed,
)

# Environment for worker processes: one BLAS/OpenMP thread each, so N workers use N cores and never contend.
WORKER_ENV = {v: "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}


def plan(claims, backends, *, seed: int, profile: str, max_seconds: float | None = None, shards: int = 1,
         modules: Iterable[str] = (), database: str | None = None, shared_database: str | None = None,
         corpus_dir=None, costs: dict | None = None) -> list[Job]:
    """The jobs for claims x backends (those the claim supports), ``shards`` per pair.

    ``costs`` (seconds by ``"claim@backend-label"``, e.g. from the previous report) orders the jobs longest
    first, which is what keeps N workers busy to the end; without it the serial order is kept.
    """
    if shards < 1:
        raise ValueError(f"--shards must be >= 1, got {shards}")
    corpus = corpus_index(corpus_dir)
    jobs, order = [], 0
    for c in claims:
        for b in backends:
            if b.name not in c.backends:
                continue
            k = min(shards, examples_of(c, profile))
            share = math.ceil(examples_of(c, profile) / k) if k > 1 else None
            for s in range(k):
                jobs.append(Job(claim_id=c.id, backend=backend_key(b), seed=shard_seed(seed, s), profile=profile,
                                max_seconds=max_seconds, shard=s, shards=k, max_examples=share,
                                modules=tuple(modules), database=database, shared_database=shared_database,
                                corpus=tuple(corpus.get((c.id, backend_key(b)), ())) if s == 0 else (),
                                order=order))
            order += 1
    if costs:
        label = {j.backend: _label(j.backend) for j in jobs}
        jobs.sort(key=lambda j: -costs.get(f"{j.claim_id}@{label[j.backend]}", 0.0) / j.shards)
    return jobs


def _label(triple) -> str:
    from verify.backends import Backend

    return Backend(*triple).label


def costs_from_report(path) -> dict[str, float]:
    """Seconds per claim@backend from a previous report (latest.json), for longest-first ordering."""
    import json

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return {f"{r['claim_id']}@{r['backend']}": float(r.get("seconds") or 0.0) for r in doc["rows"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


# ----------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------
# one job, in the worker


def run_job(job: Job) -> JobResult:
    """Load the plugins, replay the corpus (shard 0), hunt; return a picklable result. Runs in the worker."""
    t0, c0 = time.monotonic(), time.process_time()
    from verify import runner
    from verify.backends import Backend
    from verify.claims import REGISTRY
    from verify.discovery import load

    load(list(job.modules))
    _warm_up()
    claim = REGISTRY.get(job.claim_id)
    backend = Backend(*job.backend).ensure()
    kw = dict(profile=job.profile, seed=job.seed)
    if job.max_seconds is not None:
        kw["max_seconds"] = job.max_seconds
    if job.max_examples is not None:
        kw["max_examples"] = job.max_examples
    if (job.database or job.shared_database) and database_supported():
        kw["database"] = keyed_database(open_database(job.database, job.shared_database),
                                        f"{job.claim_id}@{backend.label}")
    try:
        if job.corpus:
            row, res = replay_corpus(claim, backend, job, runner)
            if res.found:
                return _result(job, row, res, t0, c0, from_corpus=True)
        row, res = runner.run_claim(claim, backend, **kw)
    except Exception as exc:  # the runner re-raises what it cannot classify: an error row, never a lost run
        return JobResult(job, error_row(claim, backend.label, f"{exc.__class__.__name__}: {exc}"), seed=job.seed,
                         seconds=time.monotonic() - t0, cpu_seconds=time.process_time() - c0)
    return _result(job, row, res, t0, c0)


def run_job_in_worker(job: Job) -> JobResult:
    """run_job on a Dask worker. The worker's own threads (heartbeats, retry jitter) draw from the global
    ``random`` while a hunt runs, which Hypothesis reads as a strategy using ``random``: that warning is silenced
    here, where no strategy is at fault, and nowhere else."""
    import warnings

    from hypothesis.errors import HypothesisDeprecationWarning

    warnings.filterwarnings("ignore", message="Do not use the `random` module", category=HypothesisDeprecationWarning)
    return run_job(job)


_WARM: list[bool] = []


def _warm_up() -> None:
    """Once per process, a throw-away Hypothesis search: the runner budgets each hunt by the cost of its first
    examples, and in a fresh worker those would otherwise pay Hypothesis' own first-use imports and set-up."""
    if _WARM:
        return
    from hypothesis import given, settings
    from hypothesis import strategies as st

    given(st.lists(st.floats(0, 1)))(settings(max_examples=5, database=None, deadline=None)(lambda xs: None))()
    _WARM.append(True)

def _result(job: Job, row, res, t0: float, c0: float, from_corpus: bool = False) -> JobResult:
    out = JobResult(job, row.to_json(), seed=res.seed, seconds=time.monotonic() - t0,
                    cpu_seconds=time.process_time() - c0, from_corpus=from_corpus)
    if res.found:
        out.failure, out.failure_instance, out.failure_trail = res.failure, res.failure_instance, res.failure_trail
    return out

# ----------------------------------------------------------------------------------------------------------
# executors


class Progress:
    """One bar for the run: jobs done, worst ratio so far (tqdm on a terminal, nothing otherwise)."""

    def __init__(self, total: int, enabled: bool):
        self.bar, self.worst = None, None
        if enabled:
            try:
                import sys

                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="job", leave=False, file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, result: JobResult) -> None:
        r = result.row.get("worst_ratio")
        if r is not None and (self.worst is None or float(r) > self.worst):
            self.worst = float(r)
        if self.bar is not None:
            self.bar.set_postfix_str(f"worst {self.worst:.4g}" if self.worst is not None else "")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class Outcome:
    results: list[JobResult]  # merged, in the order they finished
    interrupted: bool = False
    lost: int = 0  # jobs reported as "worker lost"

    def ordered(self) -> list[JobResult]:
        """The merged results in plan order (claims, then backends): what a serial run reports."""
        return sorted(self.results, key=lambda r: r.job.order)


class SerialExecutor:
    """In this process, one job after another; imports no Dask."""

    def map(self, jobs: list[Job], on_result: Callable[[JobResult], None]) -> tuple[bool, int]:
        try:
            for job in sorted(jobs, key=lambda j: (j.order, j.shard)):
                on_result(run_job(job))
        except KeyboardInterrupt:
            return True, 0
        return False, 0

    def close(self) -> None:
        pass


class DaskExecutor:
    """Jobs on Dask: an embedded LocalCluster of ``workers`` processes, or the cluster at ``scheduler``.

    The embedded cluster's scheduler allows one failure per task (a job whose worker dies is retried once,
    then reported "worker lost") and assigns one task per worker at a time, so a death can only be blamed on
    the job that was running. An external scheduler applies its own ``distributed.scheduler.allowed-failures``
    (start it with ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1`` for the same rule).
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None, *, timeout: float = 60.0,
                 env: dict | None = None):
        import dask
        from distributed import Client, LocalCluster

        self.cluster, self.retries = None, None
        if scheduler:
            self.client = Client(scheduler, timeout=timeout, set_as_default=False)
        else:
            import logging

            cfg = {"distributed.scheduler.allowed-failures": 1, "distributed.scheduler.worker-saturation": 1.0,
                   "distributed.worker.daemon": False}
            with dask.config.set(cfg):
                self.cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                            processes=True, dashboard_address=None, env={**WORKER_ENV, **(env or {})},
                                            silence_logs=logging.ERROR)
            self.client = Client(self.cluster, set_as_default=False)
            self.retries = 1

    def map(self, jobs: list[Job], on_result: Callable[[JobResult], None]) -> tuple[bool, int]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        futures = {}
        for i, job in enumerate(jobs):  # earlier in the list (longest first, when costs are known) runs first
            key = f"prompt-limits-{job.key}-{os.getpid()}-{time.time_ns()}"
            f = self.client.submit(run_job_in_worker, job, key=key, pure=False, priority=len(jobs) - i)
            futures[f] = job
        lost = 0
        try:
            for f in as_completed(list(futures), loop=self.client.loop):
                job = futures[f]
                try:
                    result = f.result()
                except KilledWorker:
                    lost += 1
                    result = _lost(job, self.retries)
                except Exception as exc:  # unpickling or scheduler trouble: that job's error row, not the run's
                    result = _failed(job, f"{exc.__class__.__name__}: {exc}")
                on_result(result)
        except KeyboardInterrupt:
            self.client.cancel(list(futures))
            return True, lost
        return False, lost

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _lost(job: Job, retries: int | None) -> JobResult:
    tries = "retried once" if retries == 1 else f"retried {retries} times" if retries else "retried by the scheduler"
    return _failed(job, WORKER_LOST, notes=f"the worker process running this job died mid-job on every attempt"
                   f" ({tries}); no other job was affected", attempts=(retries or 0) + 1)


def _failed(job: Job, reason: str, notes: str = "", attempts: int = 1) -> JobResult:
    from verify.claims import REGISTRY

    return JobResult(job, error_row(REGISTRY.get(job.claim_id), _label(job.backend), reason, notes), seed=job.seed,
                     attempts=attempts)


def make_executor(workers: int = 0, scheduler: str | None = None):
    """Serial for ``workers`` 0 or 1 without a scheduler (no Dask import); Dask otherwise."""
    if not scheduler and (workers or 0) <= 1:
        return SerialExecutor()
    try:
        return DaskExecutor(workers=workers, scheduler=scheduler)
    except ImportError as exc:
        raise ImportError(f"--workers/--scheduler need Dask: pip install -e '.[distributed]' ({exc})") from None


def execute(jobs: list[Job], *, executor=None, workers: int = 0, scheduler: str | None = None,
            on_row: Callable[[JobResult], None] | None = None, progress: bool = False) -> Outcome:
    """Run ``jobs``; ``on_row`` gets each merged claim x backend result as soon as its last shard is in."""
    merged: list[JobResult] = []

    def deliver(r: JobResult) -> None:
        merged.append(r)
        if on_row is not None:
            on_row(r)

    merger = Merger(jobs, deliver)
    bar = Progress(len(jobs), progress)
    own = executor is None
    ex = make_executor(workers, scheduler) if own else executor
    lost_before = 0
    try:
        def got(r: JobResult) -> None:
            bar.update(r)
            merger.add(r)

        interrupted, lost_before = ex.map(jobs, got)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        if own:
            ex.close()
    return Outcome(merged, interrupted, lost_before)


def write_counterexample(result: JobResult, out_dir, *, modules: list[str]):
    """Write the kept counterexample of a merged result (parent side); return its path, or None."""
    if not result.found:
        return None
    from verify import counterexample
    from verify.backends import Backend
    from verify.claims import REGISTRY
    from verify.runner import HuntResult

    res = HuntResult(failure=result.failure, failure_instance=result.failure_instance,
                     failure_trail=result.failure_trail, seed=result.seed)
    path = counterexample.write(REGISTRY.get(result.job.claim_id), Backend(*result.job.backend), res,
                                Path(out_dir), profile=result.job.profile, modules=list(modules))
    result.row["counterexample_file"] = str(path)
    return path
