"""`minislm sweep`: run a grid of pipelines (e.g. depth × N:M × quantization) and tabulate it."""
from __future__ import annotations

import time

from . import add_overwrite
from .compress import add_run_options

NAME = "sweep"
HELP = "run a grid of compression pipelines and write one table (LLaMA thesis Table A.1/A.2)"


def add_arguments(p):
    """Declare `minislm sweep`'s options on the subparser p."""
    p.add_argument("--config", required=True, help="sweep TOML with [[sweep.axis]] tables "
                   "(see configs/sweep_tiny.toml)")
    p.add_argument("--model", help="HF checkpoint folder (overrides the config's model)")
    p.add_argument("--out", required=True, help="output folder (cache/, report.md)")
    p.add_argument("--resume", action="store_true", help="reuse the stages an earlier run "
                   "left in --out/cache (without it every stage is computed afresh)")
    add_overwrite(p)
    add_run_options(p)


def run(args) -> int:
    """Run the sweep's grid of pipelines into --out, print its table and log the run;
    0 on success."""
    from ..evaluate.runlog import append_run
    from ..pipeline import load_config
    from ..sweep import sweep
    start = time.perf_counter()
    raw = load_config(args.config)
    rows, report = sweep(raw, args.out, args.model, progress=not args.quiet,
                         threads=args.threads, resume=args.resume, overwrite=args.overwrite)
    wall = time.perf_counter() - start
    print(report)
    print(f"report: {args.out}/report.md  ({wall:.1f} s, {len(rows)} points)")
    if not args.no_log:
        append_run("sweep", {"config": args.config, "model": args.model, "out": args.out,
                             "sweep": raw},
                   {r["label"]: r["metrics"] for r in rows}, wall, args.runs)
    return 0
