"""The executor: jobs, shards and their merge, the corpus and example database, serial and Dask execution.

The Dask tests (a LocalCluster of 2 workers; a scheduler and a worker started as processes on 127.0.0.1) are
skipped with a stated reason where ``distributed`` is not installed (the ``[distributed]`` extra). They compare
statuses with a serial run at the same seed on a few cheap claims, and kill workers on purpose with the
claims of tests/fixtures/dying_claims.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verify import executor as E
from verify import jobs as J
from verify.backends import Backend
from verify.claims import REGISTRY, Evidence
from verify.discovery import load

HERE = Path(__file__).resolve().parent
USER = str(HERE / "fixtures" / "user_claims.py")
DYING = str(HERE / "fixtures" / "dying_claims.py")
MODULES = (USER, DYING)
load(list(MODULES))
NUMPY = Backend("numpy").ensure()
# cheap claims of every kind: holds, counterexample, out of reach (expected); built-ins where present
CHEAP = ["user.cauchy_schwarz", "user.square_below_one"] + [
    c for c in ("hu24.table_prompt_counting", "hu24.float64_cannot_decide", "hu24.phase_transition",
                "wang23.universality.prompt_counting") if c in REGISTRY][:3]
SEED, SECONDS = 0, 1.0
# under `pytest -n 2 --dist loadgroup` the whole file goes to one xdist worker: one cluster, one serial reference
pytestmark = [pytest.mark.xdist_group("executor")] if importlib.util.find_spec("xdist") else []


def _jobs(ids, **kw):
    kw.setdefault("max_seconds", SECONDS)
    return E.plan([REGISTRY.get(i) for i in ids], [NUMPY], seed=SEED, profile="ci", modules=MODULES, **kw)


def _statuses(outcome) -> dict[str, str]:
    return {r.row["claim_id"]: E.parse_status(r.row)[0] for r in outcome.results}


@pytest.fixture(scope="module")
def serial():
    out = E.execute(_jobs(CHEAP))
    assert not out.interrupted and len(out.results) == len(CHEAP)
    return out


# ---------------------------------------------------------------------------------------------- plan and merge


def test_one_shard_is_the_unsharded_run_and_shard_seeds_are_fixed():
    assert E.shard_seed(7, 0) == 7
    assert E.shard_seed(7, 1) == E.shard_seed(7, 1) != E.shard_seed(7, 2) != 7
    jobs = _jobs(["user.cauchy_schwarz"], shards=3)
    assert [j.shard for j in jobs] == [0, 1, 2] and {j.shards for j in jobs} == {3}
    n = E.examples_of(REGISTRY.get("user.cauchy_schwarz"), "ci")
    assert all(j.max_examples * 3 >= n for j in jobs)  # the examples are split, none lost
    assert len({j.seed for j in jobs}) == 3
    assert _jobs(["user.cauchy_schwarz"])[0].max_examples is None


def test_jobs_pickle_and_order_by_cost():
    import pickle

    jobs = _jobs(["user.cauchy_schwarz", "user.square_below_one"],
                 costs={"user.square_below_one@numpy/float64/cpu": 9.0})
    assert pickle.loads(pickle.dumps(jobs)) == jobs
    assert jobs[0].claim_id == "user.square_below_one"  # longest first keeps N workers busy to the end
    assert [j.order for j in jobs] == [1, 0]  # ... while rows keep the serial order


def _result(claim_id, shard, status, tried, worst, rejected=None, failure=None, instance=None):
    job = E.Job(claim_id, ("numpy", "float64", "cpu"), seed=shard, profile="ci", max_seconds=1.0, shard=shard,
                shards=3)
    claim = REGISTRY.get(claim_id)
    row = E.error_row(claim, NUMPY.label, "placeholder")
    row.update(tried=tried, rejected=rejected or {}, worst_ratio=worst, margin=1 - worst, seconds=1.0,
               worst_evidence={"observed": worst, "bound": 1.0}, worst_instance=instance)
    J._set_status(row, status, "")
    return E.JobResult(job, row, failure=failure, failure_instance=instance, seed=shard)


def test_merge_sums_tried_and_rejections_and_keeps_the_worst_ratio():
    parts = [_result("user.cauchy_schwarz", 0, "holds", 10, 0.5, {"too big": 2}),
             _result("user.cauchy_schwarz", 1, "holds", 20, 0.9, {"too big": 1, "singular": 4}),
             _result("user.cauchy_schwarz", 2, "holds", 5, 0.7)]
    m = E.merge(parts).row
    assert m["tried"] == 35 and m["rejected"] == {"too big": 3, "singular": 4}
    assert m["worst_ratio"] == 0.9 and E.parse_status(m)[0] == "holds" and m["seeds"] == [0, 1, 2]
    assert "3 shards" in m["notes"]


def test_merge_keeps_the_smallest_confirmed_counterexample():
    big = Evidence(3.9, 1.0)
    small = Evidence(1.5, 1.0)
    parts = [_result("user.square_below_one", 0, "holds", 10, 0.8),
             _result("user.square_below_one", 1, "counterexample", 3, 3.9, failure=big, instance=-1.974812343),
             _result("user.square_below_one", 2, "counterexample", 4, 1.5, failure=small, instance=1.5)]
    m = E.merge(parts)
    assert m.found and m.failure is small and m.failure_instance == 1.5
    assert E.parse_status(m.row)[0] == "counterexample" and m.row["worst_ratio"] == 3.9 and m.row["tried"] == 17


def test_merge_all_out_of_reach_is_out_of_reach_and_an_error_wins():
    parts = [_result("user.cauchy_schwarz", s, "out_of_reach", 4, 0.1, {"too big": 4}) for s in range(3)]
    for p in parts:
        p.row["worst_ratio"] = None
    st, reason = E.parse_status(E.merge(parts).row)
    assert st == "out_of_reach" and "too big" in reason
    parts[1] = E.JobResult(parts[1].job, E.error_row(REGISTRY.get("user.cauchy_schwarz"), NUMPY.label,
                                                     E.WORKER_LOST))
    assert E.parse_status(E.merge(parts).row) == ("error", E.WORKER_LOST)


def test_parse_status_reads_both_row_formats():
    assert E.parse_status({"status": "out_of_reach: too big"}) == ("out_of_reach", "too big")
    assert E.parse_status({"status": "out_of_reach", "reason": "too big"}) == ("out_of_reach", "too big")
    assert E.parse_status({"status": "holds", "reason": ""}) == ("holds", "")


# ---------------------------------------------------------------------------------------------- serial runs


def test_serial_run_imports_no_dask():
    code = ("import sys; from verify import executor as E; from verify.discovery import load;"
            f" from verify.claims import REGISTRY; from verify.backends import Backend; load([{USER!r}]);"
            " out = E.execute(E.plan([REGISTRY.get('user.square_below_one')], [Backend('numpy')], seed=0,"
            f" profile='ci', max_seconds=1.0, modules=[{USER!r}]));"
            " assert out.results[0].found;"
            " bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env={**os.environ, **E.WORKER_ENV})


def test_serial_statuses(serial):
    st = _statuses(serial)
    assert st["user.cauchy_schwarz"] == "holds" and st["user.square_below_one"] == "counterexample"
    found = [r for r in serial.results if r.found]
    assert [r.row["claim_id"] for r in found] == ["user.square_below_one"] and found[0].failure.ratio > 1


def test_serial_interrupt_keeps_finished_rows():
    seen = []

    def on_row(r):
        seen.append(r)
        raise KeyboardInterrupt

    out = E.execute(_jobs(["user.square_below_one", "user.cauchy_schwarz"]), on_row=on_row)
    assert out.interrupted and len(out.results) == len(seen) == 1


def test_corpus_is_replayed_before_the_hunt(tmp_path, serial):
    cx = next(r for r in serial.results if r.found)
    path = E.write_counterexample(cx, tmp_path / "counterexamples", modules=list(MODULES))
    assert path.exists() and cx.row["counterexample_file"] == str(path)
    jobs = _jobs(["user.square_below_one"], corpus_dir=tmp_path / "counterexamples", shards=2)
    assert len(jobs[0].corpus) == 1 and jobs[1].corpus == ()  # shard 0 replays, the others hunt
    r = E.run_job(jobs[0])
    assert r.from_corpus and r.found and r.failure_instance == cx.failure_instance
    assert "corpus" in r.row["notes"]
    # the same instance gives the same file: replaying the corpus does not grow it
    assert E.write_counterexample(r, tmp_path / "counterexamples", modules=list(MODULES)) == path


def test_keyed_database_keeps_claims_apart():
    from hypothesis.database import InMemoryExampleDatabase

    db = InMemoryExampleDatabase()
    a, b = E.keyed_database(db, "a@numpy"), E.keyed_database(db, "b@numpy")
    a.save(b"k", b"1")
    b.save(b"k", b"2")
    assert list(a.fetch(b"k")) == [b"1"] and list(b.fetch(b"k")) == [b"2"]
    a.move(b"k", b"k2", b"1")
    assert list(a.fetch(b"k2")) == [b"1"] and not list(a.fetch(b"k"))


def test_database_remembers_a_failure(tmp_path):
    if not E.database_supported():
        pytest.skip("the runner does not take database= yet")
    db = tmp_path / "db"
    r = E.run_job(_jobs(["user.square_below_one"], database=str(db))[0])
    assert r.found and any(p.is_file() for p in db.rglob("*"))
    shared = E.open_database(str(tmp_path / "local"), str(db))
    assert type(shared).__name__ == "MultiplexedDatabase"


# ---------------------------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("distributed", reason="Dask executor tests need the [distributed] extra")
    die = tmp_path_factory.mktemp("die")
    ex = E.DaskExecutor(workers=2, env={"PROMPT_LIMITS_TEST_DIE_DIR": str(die)})
    try:
        yield ex
    finally:
        ex.close()


def test_local_cluster_gives_the_serial_statuses(cluster, serial):
    out = E.execute(_jobs(CHEAP), executor=cluster)
    assert not out.interrupted and out.lost == 0
    assert _statuses(out) == _statuses(serial)
    assert [r.row["claim_id"] for r in out.ordered()] == CHEAP


def test_a_dead_worker_is_retried_once_then_reported_lost(cluster):
    out = E.execute(_jobs(["dying.once", "dying.always", "user.cauchy_schwarz"]), executor=cluster)
    st = {r.row["claim_id"]: E.parse_status(r.row) for r in out.results}
    assert st["dying.once"][0] == "holds"  # died once, the retry finished
    assert st["dying.always"] == ("error", E.WORKER_LOST) and out.lost == 1
    assert st["user.cauchy_schwarz"][0] == "holds"  # nothing else lost


def test_dask_interrupt_keeps_finished_rows_and_cancels_the_rest(cluster):
    def on_row(r):
        raise KeyboardInterrupt

    out = E.execute(_jobs(["user.square_below_one"] * 1 + ["user.cauchy_schwarz"], shards=3), executor=cluster,
                    on_row=on_row)
    assert out.interrupted and len(out.results) == 1


@pytest.fixture
def external_cluster(tmp_path):
    pytest.importorskip("distributed", reason="Dask executor tests need the [distributed] extra")
    env = {**os.environ, **E.WORKER_ENV, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 30
        while not sched_file.exists() or not sched_file.read_text():
            assert time.monotonic() < deadline, "dask scheduler did not start within 30 s"
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                       "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                                      env=env, cwd=os.getcwd(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield address
    finally:
        for p in reversed(procs):  # only the processes this fixture started
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def test_external_scheduler_gives_the_serial_statuses(external_cluster, serial):
    ex = E.DaskExecutor(scheduler=external_cluster, timeout=30)
    try:
        ex.client.wait_for_workers(1, timeout=60)
        out = E.execute(_jobs(CHEAP[:3]), executor=ex)
    finally:
        ex.close()
    want = {k: v for k, v in _statuses(serial).items() if k in CHEAP[:3]}
    assert not out.interrupted and _statuses(out) == want
