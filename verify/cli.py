"""The command line: prompt-limits {list, run, mutants, replay, report, baseline, study}.

Exit codes: 0 all as expected; 1 a confirmed counterexample, a check error, a claim that decided nothing
(unless it expects exactly that), an uncaught mutant, a gate finding, or (replay) an instance that still
violates its claim; 2 bad usage (unknown claim, missing backend or device, corrupt file, plugin import failure).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from verify import codec
from verify.backends import Backend, BackendUnavailable
from verify.claims import REGISTRY, ClaimError
from verify.discovery import ClaimModuleError, load
from verify.mutants import kinds_summary
from verify.report import _fmt_ratio
from verify.settings import PROFILES, default_profile


class UsageError(Exception):
    pass


def _backends(args) -> list[Backend]:
    names = [n for part in (args.backend or ["numpy"]) for n in part.split(",") if n]
    dtypes = [n for part in (args.dtype or ["float64"]) for n in part.split(",") if n]
    out = []
    for n in names:
        for dt in dtypes:
            try:
                out.append(Backend(name=n, dtype=dt, device=args.device).ensure())
            except BackendUnavailable as exc:
                raise UsageError(str(exc)) from None
    return out


def _load_for(args) -> None:
    """Load plugins; when every pattern is an exact id found in the --claims modules, skip the installed plugins
    (a user's one claim then runs without importing every built-in construction)."""
    patterns = getattr(args, "patterns", None)
    if args.claims and patterns and not any(ch in p for p in patterns for ch in "*?["):
        load(args.claims, builtin=False)
        if all(p in REGISTRY for p in patterns):
            return
    load(args.claims)


def cmd_list(args) -> int:
    load(args.claims)
    from tabulate import tabulate

    rows = [[c.id, c.plugin or "—", c.source, c.provenance, c.precision, ",".join(c.backends),
             kinds_summary(c.mutants), c.statement] for c in REGISTRY.select(args.patterns)]
    fmt = {"md": "github", "plain": "simple"}[args.format]
    print(tabulate(rows, headers=["claim", "plugin", "source", "provenance", "precision", "backends", "mutants",
                                  "statement"], tablefmt=fmt, disable_numparse=True))
    return 0


def cmd_run(args) -> int:
    from verify.extras import TABLES
    from verify.gate import findings, load_baseline
    from verify.report import ReportWriter, status_text

    _load_for(args)
    claims = REGISTRY.select(args.patterns)
    backends = _backends(args)
    baseline = load_baseline(Path(args.gate)) if args.gate else None
    profile = args.profile or default_profile()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    out = Path(args.out)
    writer = ReportWriter(out, {"profile": profile, "seed": seed, "backends": [b.label for b in backends],
                                "patterns": args.patterns, "claims_modules": args.claims or []})
    from verify import executor

    modules = args.claims or []
    database = None if args.database == "none" else str(Path(args.database or out / ".hypothesis").resolve())
    corpus = None if args.corpus == "none" else Path(args.corpus or out / "counterexamples")
    parallel = args.workers > 1 or bool(args.scheduler)
    costs = executor.costs_from_report(out / "latest.json") if parallel else None  # before the writer replaces it
    jobs = executor.plan(claims, backends, seed=seed, profile=profile, max_seconds=args.max_seconds,
                         shards=args.shards, modules=modules, database=database,
                         shared_database=args.shared_database, corpus_dir=corpus, costs=costs)
    pairs = len({j.group for j in jobs})
    skipped = [(c, b) for c in claims for b in backends if b.name not in c.backends]
    tty = sys.stderr.isatty() and not args.quiet
    where = (f", on {args.scheduler}" if args.scheduler else f", {args.workers} workers" if parallel else "")
    print(f"prompt-limits: {pairs} claim×backend runs ({len(jobs)} jobs), profile {profile}, seed {seed}{where}"
          + (f" ({len(skipped)} pairs not applicable: claim does not support that backend)" if skipped else ""),
          file=sys.stderr)
    bad = 0
    done = 0

    def on_row(r) -> None:
        nonlocal bad, done
        done += 1
        executor.write_counterexample(r, out / "counterexamples", modules=modules)
        row = r.row
        writer.add(row)
        ok = bool(row.get("as_expected"))
        bad += not ok
        c = REGISTRY.get(row["claim_id"])
        line = (f"[{done}/{pairs}] {c.id} on {row['backend']}: {status_text(row)} · tried {row['tried']}"
                f" · worst ratio {_fmt_ratio(row.get('worst_ratio'))} · {row['seconds']:.1f}s")
        if not ok:
            line += f"\n    NOT AS EXPECTED: expected {c.expect}" + (f" ({c.expect_reason})" if c.expect_reason else "")
        if row.get("counterexample_file"):
            line += f"\n    replay: prompt-limits replay {row['counterexample_file']}"
        print(line, file=sys.stderr)

    interrupted = False
    try:
        try:
            outcome = executor.execute(jobs, workers=args.workers, scheduler=args.scheduler, on_row=on_row,
                                       progress=tty)
        except ImportError as exc:  # --workers/--scheduler without the [distributed] extra
            raise UsageError(str(exc)) from None
        interrupted = outcome.interrupted
        # rows in plan order (claims, then backends), whatever order the workers finished in
        writer.doc["rows"] = [r.row for r in outcome.ordered()]
        if interrupted:
            raise KeyboardInterrupt
        if not args.no_tables:
            selected = [c.id for c in claims]
            for t in TABLES.values():
                if t.wanted(selected) or t.name in (args.table or []):
                    try:
                        headers, rows, notes = t.fn(max_seconds=args.tables_seconds)
                    except Exception as exc:  # a table is documentation: report its failure, don't lose the run
                        headers, rows, notes = ["error"], [[f"{exc.__class__.__name__}: {exc}"]], ""
                    writer.add_table(t.name, t.title, headers, rows, notes)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: the report holds the claims that finished", file=sys.stderr)
    writer.finish(interrupted)
    doc = writer.doc
    if not args.quiet:
        from tabulate import tabulate

        from verify.report import HEADERS, table_rows

        keep = [HEADERS.index(h) for h in ("claim", "backend", "tried", "worst ratio", "margin", "precision",
                                           "status", "s")]
        print(tabulate([[r[i] for i in keep] for r in table_rows(doc["rows"])], headers=[HEADERS[i] for i in keep],
                       tablefmt="github", disable_numparse=True))
    if args.format == "latex":
        from verify.report import render_latex

        (out / "latest.tex").write_text(render_latex(doc), encoding="utf-8")
    print(f"report: {out / 'latest.md'} and {out / 'latest.json'}", file=sys.stderr)
    rc = 1 if bad else 0
    gate_lines = None
    if baseline is not None and not interrupted:
        found = findings(baseline, doc["rows"], patterns=args.patterns, backends=[b.label for b in backends],
                         known_ids={c.id for c in REGISTRY.all()}, profile=profile, seed=seed)
        accepted = [f for f in found if f.kind == "loosened" and args.allow_loosened]
        probs = [f for f in found if f not in accepted]
        for f in probs:
            print(f"gate: {f.kind}: {f}", file=sys.stderr)
        for f in accepted:
            print(f"gate: accepted (--allow-loosened): {f}", file=sys.stderr)
        if accepted:
            writer.doc["meta"]["accepted_loosened"] = [f.key for f in accepted]
            writer.flush()
        if (baseline.get("profile"), baseline.get("seed")) != (profile, seed):
            print(f"gate: worst ratios not compared (baseline: profile {baseline.get('profile')} seed"
                  f" {baseline.get('seed')}; this run: profile {profile} seed {seed})", file=sys.stderr)
        print(f"gate: {'FAILED' if probs else 'passed'} against {args.gate} ({len(probs)} finding(s))",
              file=sys.stderr)
        gate_lines = [f"{f.kind}: {f}" for f in probs]
        rc = rc or (1 if probs else 0)
    if args.junit:
        from verify import junit

        path = junit.write(args.junit, doc["rows"], gate=gate_lines, gate_file=args.gate, meta=doc["meta"])
        print(f"junit: {path}", file=sys.stderr)
    from verify import summary

    summary.append(doc, gate=gate_lines, gate_file=args.gate)  # only where $GITHUB_STEP_SUMMARY is set
    if interrupted:
        return 130
    return rc


def cmd_mutants(args) -> int:
    from verify.runner import hunt

    _load_for(args)
    backend = _backends(args)[0]
    profile = args.profile or default_profile()
    missed = 0
    rows = []
    for c in REGISTRY.select(args.patterns):
        if not c.mutants:
            print(f"{c.id}: NO MUTANT (every claim needs one)", file=sys.stderr)
            missed += 1
        for m in c.mutants:
            res = hunt(c, backend, mutant=m, profile=profile,
                       max_seconds=args.max_seconds, seed=args.seed, shrink=False)
            caught = res.found
            missed += not caught
            ratio = res.failure.ratio if caught else (res.worst.ratio if res.worst else None)
            rows.append([c.id, m.name, "caught" if caught else "MISSED", res.tried,
                         "—" if ratio is None else f"{ratio:.6g}", f"{res.seconds:.1f}", res.error or ""])
            print(f"{c.id} / {m.name}: {'caught' if caught else 'MISSED'} after {res.tried} instances", file=sys.stderr)
    from tabulate import tabulate

    print(tabulate(rows, headers=["claim", "mutant", "verdict", "tried", "ratio", "s", "error"], tablefmt="github",
                   disable_numparse=True))
    return 1 if missed else 0


def cmd_replay(args) -> int:
    """Exit 1 while the stored instance still violates its claim, 0 when it now holds, 2 on a bad file."""
    from verify import counterexample
    from verify.runner import RungError

    try:
        doc = codec.load_counterexample(args.file)
    except codec.CorruptFile as exc:
        raise UsageError(str(exc)) from None
    load(list(dict.fromkeys((args.claims or []) + list(doc.get("claims_modules") or []))))
    claim = REGISTRY.get(doc["claim"])
    try:
        ev, trail, same = counterexample.replay(doc, claim)
    except BackendUnavailable as exc:
        raise UsageError(str(exc)) from None
    except RungError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    stored = counterexample.Evidence.from_json(doc["evidence"])
    print(f"claim:     {claim.id} — {claim.statement}")
    print(f"source:    {claim.source} ({claim.provenance})")
    print(f"backend:   {doc['backend']}")
    print(f"instance:  {json.dumps(codec.encode(doc['instance']))[:2000]}")
    print(f"stored:    {stored.describe()}")
    print(f"current:   {ev.describe()} (margin {ev.margin!r})")
    print(f"precision: {ev.precision}; ladder: " + ", ".join(f"{lab} -> {r:.6g}" for lab, r in trail))
    if ev.notes:
        print(f"notes:     {ev.notes}")
    print("reproduced bit for bit" if same else "evidence differs from the stored one")
    if ev.ratio > 1.0:
        print("verdict:   still a counterexample (exit 1)")
        return 1
    print("verdict:   the claim now holds on this instance (exit 0)")
    return 0


def cmd_report(args) -> int:
    from verify.extras import TABLES
    from verify.report import load_report, render_latex, render_markdown

    if args.sizes:
        load(args.claims)
        if args.sizes not in TABLES:
            raise UsageError(f"no table named {args.sizes!r}; known: {', '.join(sorted(TABLES)) or 'none'}")
        from tabulate import tabulate

        t = TABLES[args.sizes]
        headers, rows, notes = t.fn(max_seconds=args.max_seconds)
        print(f"# {t.title}\n")
        print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
        if notes:
            print(f"\n{notes}")
        return 0
    try:
        doc = load_report(Path(args.input))
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read report {args.input}: {exc}") from None
    print(render_latex(doc) if args.format == "latex" else json.dumps(doc, indent=1) if args.format == "json"
          else render_markdown(doc))
    return 0


def cmd_baseline(args) -> int:
    from verify.gate import baseline_from
    from verify.report import load_report

    try:
        doc = load_report(Path(args.input))
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read report {args.input}: {exc}") from None
    if doc["meta"].get("interrupted"):
        raise UsageError(f"{args.input} is from an interrupted run; rerun before writing a baseline")
    base = baseline_from(doc)
    Path(args.out).write_text(json.dumps(base, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"baseline: {len(base['claims'])} entries written to {args.out}")
    return 0


def cmd_study(args) -> int:
    from verify.extras import STUDIES

    load(args.claims)
    if args.list or not args.name:
        from tabulate import tabulate

        rows = [[s.name, s.plugin or "—", s.module, s.title] for s in sorted(STUDIES.values(), key=lambda s: s.name)]
        print(tabulate(rows, headers=["study", "plugin", "module", "what"], tablefmt="simple", disable_numparse=True))
        return 0
    if args.name not in STUDIES:
        raise UsageError(f"unknown study {args.name!r}; known: {', '.join(sorted(STUDIES)) or 'none'}"
                         " (see `prompt-limits study --list`)")
    return int(STUDIES[args.name].main(list(args.rest)) or 0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prompt-limits",
                                description="Property-based verification of prompt-tuning theory.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, backends=True):
        sp.add_argument("--claims", action="append", metavar="MODULE",
                        help="also import this module (dotted name or .py path) of user claims; repeatable")
        if backends:
            sp.add_argument("--backend", action="append", metavar="NAME",
                            help="numpy | torch | jax (repeatable or comma-separated; default numpy)")
            sp.add_argument("--dtype", action="append", metavar="DTYPE", help="float64 (default) | float32")
            sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
            sp.add_argument("--profile", choices=PROFILES, help="Hypothesis profile (default: ci under CI, else dev)")
            sp.add_argument("--seed", type=int, help="Hypothesis seed (recorded in the report)")
            sp.add_argument("--max-seconds", type=float, default=None,
                            help="time budget per claim (default: the profile's, e.g. 4 s at ci, 120 s thorough)")

    sp = sub.add_parser("list", help="the claims, their sources and provenance")
    sp.add_argument("patterns", nargs="*")
    sp.add_argument("--format", choices=["plain", "md"], default="plain")
    common(sp, backends=False)
    sp.set_defaults(fn=cmd_list)

    sp = sub.add_parser("run", help="hunt for counterexamples; write reports/latest.{md,json}")
    sp.add_argument("patterns", nargs="*", help="claim ids or globs, e.g. 'hu24.*' (default: all)")
    common(sp)
    sp.add_argument("--out", default="reports", help="report directory (default reports)")
    sp.add_argument("--gate", metavar="BASELINE", help="exit 1 if a claim that held in BASELINE now fails")
    sp.add_argument("--no-tables", action="store_true", help="skip the resource tables in the report")
    sp.add_argument("--table", action="append", metavar="NAME",
                    help="also build this registered table (tables of selected claims are built anyway)")
    sp.add_argument("--allow-loosened", action="store_true",
                    help="accept the gate's 'bound loosened' findings (an intended change; then re-baseline)")
    sp.add_argument("--tables-seconds", type=float, default=10.0, help="time budget per resource table")
    sp.add_argument("--quiet", action="store_true", help="no progress bar and no table on stdout")
    sp.add_argument("--format", choices=["md", "latex"], default="md",
                    help="latex also writes reports/latest.tex (booktabs) for a paper")
    sp.add_argument("--workers", type=int, default=0, metavar="N",
                    help="run the jobs on an embedded Dask LocalCluster of N processes (pip install -e"
                         " '.[distributed]'); default: serial, in this process")
    sp.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                    help="run the jobs on an existing Dask cluster (dask scheduler / dask worker, dask-jobqueue)")
    sp.add_argument("--shards", type=int, default=1, metavar="K",
                    help="split each claim's examples over K seeds; the shards merge into one row")
    sp.add_argument("--junit", metavar="FILE", help="also write JUnit XML: one testcase per claim@backend")
    sp.add_argument("--corpus", metavar="DIR",
                    help="counterexample files replayed before hunting (default OUT/counterexamples; 'none')")
    sp.add_argument("--database", metavar="DIR",
                    help="Hypothesis example database (default OUT/.hypothesis; 'none' for no database)")
    sp.add_argument("--shared-database", metavar="DIR",
                    help="a read-only example database read besides --database (a team's or a cluster's)")
    sp.set_defaults(fn=cmd_run)

    sp = sub.add_parser("mutants", help="check that every mutant of the selected claims is caught")
    sp.add_argument("patterns", nargs="*")
    common(sp)
    sp.set_defaults(fn=cmd_mutants)

    sp = sub.add_parser("replay", help="re-run one counterexample file: exit 1 while it still fails, 0 once it holds")
    sp.add_argument("file")
    common(sp, backends=False)
    sp.set_defaults(fn=cmd_replay)

    sp = sub.add_parser("report", help="print the last report (md | latex | json) or a resource table")
    sp.add_argument("--format", choices=["md", "latex", "json"], default="md")
    sp.add_argument("--input", default="reports/latest.json")
    sp.add_argument("--sizes", metavar="NAME", help="print a registered growth table, e.g. hu24")
    sp.add_argument("--max-seconds", type=float, default=60.0)
    common(sp, backends=False)
    sp.set_defaults(fn=cmd_report)

    sp = sub.add_parser("baseline", help="write a gating baseline from the last report")
    sp.add_argument("--input", default="reports/latest.json")
    sp.add_argument("--out", default="reports/baseline.json")
    sp.set_defaults(fn=cmd_baseline)

    sp = sub.add_parser("study", help="run a registered study (benchmark, experiment): study --list, study NAME ...")
    sp.add_argument("name", nargs="?")
    sp.add_argument("rest", nargs=argparse.REMAINDER, help="the study's own options (study NAME --help)")
    sp.add_argument("--list", action="store_true", help="list the registered studies")
    sp.add_argument("--claims", action="append", metavar="MODULE", help="also import this plugin module or file")
    sp.set_defaults(fn=cmd_study)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (UsageError, ClaimError, ClaimModuleError, ValueError) as exc:
        print(f"prompt-limits: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
