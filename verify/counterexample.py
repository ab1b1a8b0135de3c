"""Counterexample files: written on every confirmed failure, replayed bit for bit."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from verify import codec
from verify.backends import Backend
from verify.claims import Claim, Evidence
from verify.report import versions
from verify.runner import HuntResult, decide


def write(claim: Claim, backend: Backend, res: HuntResult, out_dir: Path, *, profile: str, modules: list[str]) -> Path:
    instance = codec.encode(res.failure_instance)
    body = codec.dumps(instance)
    digest = hashlib.sha256(f"{claim.id}|{backend.label}|{body}".encode()).hexdigest()[:10]
    path = Path(out_dir) / f"{claim.id}__{backend.name}-{backend.dtype}-{backend.device}__{digest}.json"
    doc = {
        "format": codec.FORMAT,
        "claim": claim.id,
        "claim_module": claim.module,
        "claims_modules": modules,
        "statement": claim.statement,
        "source": claim.source,
        "backend": {"name": backend.name, "dtype": backend.dtype, "device": backend.device},
        "instance": instance,
        "seed": res.seed,
        "profile": profile,
        "versions": versions(),
        "evidence": res.failure.to_json(),
        "ladder": [[label, _j(r)] for label, r in res.failure_trail],
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(codec.dumps(doc), encoding="utf-8")
    return path


def _j(x):
    from verify.claims import _jfloat

    return _jfloat(x)


def replay(doc: dict, claim: Claim) -> tuple[Evidence, list, bool]:
    """Re-run the stored instance; return (evidence, ladder trail, reproduced bit for bit)."""
    b = doc["backend"]
    backend = Backend(name=b["name"], dtype=b.get("dtype", "float64"), device=b.get("device", "cpu")).ensure()
    ev = claim.check(doc["instance"], backend)
    d = decide(claim, claim.check, doc["instance"], backend, ev)
    stored = Evidence.from_json(doc["evidence"])
    same = (d.evidence.observed == stored.observed or (d.evidence.observed != d.evidence.observed
                                                       and stored.observed != stored.observed)) \
        and d.evidence.bound == stored.bound
    return d.evidence, d.trail, same
