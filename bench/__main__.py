"""``python -m bench [--quick] [--only NAME]… [--deliveries N] [--events N] [--engine E]``."""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import traceback
from pathlib import Path
from types import ModuleType

from bench.harness import (
    RESULTS,
    Bench,
    Figure,
    Skip,
    quick_summary,
    report,
    state,
    stopwatch,
    table,
    write_report,
)
from bench.profiling import py_spy

#: Workload modules, in the order the report lists them.
WORKLOADS = {
    "fanout": "bench.fanout",
    "webhooks": "bench.webhooks",
    "callbacks": "bench.callbacks",
    "dispatch-sandbox": "bench.dispatch_sandbox",
    "dispatch-apns": "bench.dispatch_apns",
    "export": "bench.export",
    "lookup": "bench.lookup",
    "lookup-user": "bench.lookup_user",
    "lookup-campaign": "bench.lookup_campaign",
    "stats": "bench.stats",
    "retention": "bench.retention",
    "targeting": "bench.targeting",
    "dashboard": "bench.dashboard",
}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--quick", action="store_true", help="every workload at small scale (no targets)"
    )
    p.add_argument(
        "--only", action="append", choices=list(WORKLOADS), help="run only these workloads"
    )
    p.add_argument("--deliveries", type=int, help="fanout deliveries and the stats message's size")
    p.add_argument(
        "--events", type=int, help="events of the lookup trail (export and retention scale with it)"
    )
    p.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument(
        "--out",
        type=Path,
        help="report path (default for full runs: bench/results/latest.json, on"
        " PostgreSQL latest-postgresql.json)",
    )
    p.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample the process under test with py-spy (default: on for full runs if installed)",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return p.parse_args(argv)


def run_one(bench: Bench, name: str) -> Figure:
    logs = len(bench.logs)
    with stopwatch() as elapsed:
        try:
            module: ModuleType = importlib.import_module(WORKLOADS[name])
            fig: Figure = module.run(bench)
        except Skip as exc:
            fig = Figure(name, skipped=str(exc))
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("bench."):
                raise
            fig = Figure(name, skipped=f"feature not built: {exc}")
        except Exception as exc:
            traceback.print_exc()
            for log in bench.logs[logs:]:
                tail = log.read_text(errors="replace").splitlines()[-30:] if log.exists() else []
                print(f"--- {log.name} (last lines)", *tail, sep="\n", file=sys.stderr)
            fig = Figure(name, error=f"{type(exc).__name__}: {exc}")
    fig.seconds = elapsed()
    return fig


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    profile = args.profile if args.profile is not None else not args.quick
    tmp = Path(tempfile.mkdtemp(prefix="pushtrack-bench-"))
    bench = Bench(
        quick=args.quick,
        engine=args.engine,
        tmp=tmp,
        profile=profile and py_spy() is not None,
        deliveries=args.deliveries,
        events=args.events,
    )
    names = args.only or list(WORKLOADS)
    figures: list[Figure] = []
    try:
        for name in names:
            print(f"bench: {name} …", file=sys.stderr, flush=True)
            fig = run_one(bench, name)
            figures.append(fig)
            outcome = state(fig, quick=bench.quick)
            print(f"bench: {name}: {outcome} ({fig.seconds:.0f}s)", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"bench: scratch kept in {tmp}", file=sys.stderr)
        else:
            bench.cleanup()
    doc = report(bench, figures, argv)
    default = "latest.json" if args.engine == "sqlite" else f"latest-{args.engine}.json"
    out = args.out or (None if args.quick or args.only else RESULTS / default)
    if out is not None:
        write_report(doc, out)
        print(f"bench: report written to {out}", file=sys.stderr)
    broken = [f.name for f in figures if not f.complete()]
    if bench.quick:
        # Small scale says nothing about the targets: only whether each workload ran.
        print(quick_summary(figures))
        return 1 if broken else 0
    print(table(figures))
    if broken:
        print(f"bench: no numbers from {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
