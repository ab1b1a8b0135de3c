"""What was found is tried first: the counterexample corpus and the Hypothesis example database.

Shard 0 of each job replays the counterexample files stored for its claim and backend before hunting (a
claim that still fails there needs no hunt), and the hunt reads and writes a ``DirectoryBasedExampleDatabase``
keyed by claim and backend; for a team or a cluster, Hypothesis' documented pattern: each machine's own
database multiplexed with a read-only shared one.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path


def corpus_index(corpus_dir) -> dict[tuple[str, tuple[str, str, str]], list[str]]:
    """Counterexample files under ``corpus_dir`` by (claim id, backend triple); unreadable files are skipped."""
    from verify import codec

    index: dict = {}
    root = Path(corpus_dir) if corpus_dir else None
    if root is None or not root.is_dir():
        return index
    for path in sorted(root.glob("*.json")):
        try:
            doc = codec.load_counterexample(path)
        except codec.CorruptFile:
            continue
        b = doc["backend"]
        key = (doc["claim"], (b["name"], b.get("dtype", "float64"), b.get("device", "cpu")))
        index.setdefault(key, []).append(path.read_text(encoding="utf-8"))
    return index


def open_database(local: str | None, shared: str | None = None):
    """``DirectoryBasedExampleDatabase(local)``, multiplexed with ``ReadOnlyDatabase(shared)`` when given:
    Hypothesis' documented pattern for a team or cluster (each machine writes its own, all read the shared one)."""
    if not local and not shared:
        return None
    from hypothesis.database import (
        DirectoryBasedExampleDatabase,
        InMemoryExampleDatabase,
        MultiplexedDatabase,
        ReadOnlyDatabase,
    )

    db = DirectoryBasedExampleDatabase(local) if local else InMemoryExampleDatabase()
    if shared:
        db = MultiplexedDatabase(db, ReadOnlyDatabase(DirectoryBasedExampleDatabase(shared)))
    return db


def keyed_database(db, key: str):
    """``db`` with every key prefixed by ``key``: the runner's test body is one function for every claim, so
    Hypothesis' own key (a digest of that function) would mix all claims' examples under one entry."""
    if db is None:
        return None
    from hypothesis.database import ExampleDatabase

    class _Keyed(ExampleDatabase):
        def __init__(self, inner, prefix: bytes):
            super().__init__()
            self.inner, self.prefix = inner, prefix

        def _k(self, k: bytes) -> bytes:
            return self.prefix + b"." + k

        def save(self, k, value):
            self.inner.save(self._k(k), value)

        def fetch(self, k):
            return self.inner.fetch(self._k(k))

        def delete(self, k, value):
            self.inner.delete(self._k(k), value)

        def move(self, src, dest, value):
            self.inner.move(self._k(src), self._k(dest), value)

        def __repr__(self):
            return f"keyed({self.inner!r}, {self.prefix!r})"

    return _Keyed(db, hashlib.sha256(key.encode()).hexdigest()[:16].encode())


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def database_supported() -> bool:
    """Whether the runner takes ``database=`` yet (hunt's signature); without it the database is not used."""
    from verify import runner

    return _accepts(runner.hunt, "database")


def replay_corpus(claim, backend, job, runner):
    """Hunt over exactly the stored instances (no shrinking): the runner's own verdict on each."""
    import json

    from hypothesis import strategies as st

    from verify import codec

    instances = [codec.decode(json.loads(text)["instance"]) for text in job.corpus]
    # no database here: these choice sequences are sampled_from's, meaningless to the claim's own strategy
    kw = {} if job.max_seconds is None else {"max_seconds": job.max_seconds}
    row, res = runner.run_claim(claim, backend, strategy=st.sampled_from(instances), profile=job.profile,
                                seed=job.seed, max_examples=4 * len(instances) + 4, shrink=False, **kw)
    if res.found:
        note = f"reproduced from the counterexample corpus ({len(instances)} stored instance(s)); hunt skipped"
        row.notes = "; ".join(filter(None, [row.notes, note]))
    return row, res
