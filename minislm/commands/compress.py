"""`minislm compress`: run the staged compression pipeline and print its report."""
from __future__ import annotations

import time

from . import add_overwrite

NAME = "compress"
HELP = "compress a model stage by stage (prune, LoRA, quantize, EoRA, export) and report"


def add_arguments(p):
    """Declare `minislm compress`'s options on the subparser p."""
    p.add_argument("--config", help="pipeline TOML (default: the built-in pipeline, "
                   "see configs/default.toml)")
    p.add_argument("--model", help="HF checkpoint folder (overrides the config's model; "
                   "default weights/tiny-gpt2)")
    p.add_argument("--out", required=True, help="output folder (stages, report.md)")
    p.add_argument("--resume", action="store_true", help="skip stages already finished in --out")
    add_overwrite(p)
    add_run_options(p)


def add_run_options(p):
    """Options every pipeline-running command shares (compress, sweep)."""
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, help="BLAS threads (default: 1 for models under "
                   "20 M parameters, whose matrices are too small to share; else the BLAS "
                   "default)")
    p.add_argument("--runs", help="experiment log (default runs/runs.jsonl or $MINISLM_RUNS)")
    p.add_argument("--no-log", action="store_true", help="do not append to the experiment log")


def run(args) -> int:
    """Run the pipeline (--config, or the built-in one), print its report and log the run;
    0 on success."""
    from ..evaluate.runlog import append_run
    from ..pipeline import DEFAULT_PIPELINE, compress, load_config
    start = time.perf_counter()
    raw = load_config(args.config) if args.config else DEFAULT_PIPELINE
    rows, report = compress(raw, args.out, args.model, args.resume, progress=not args.quiet,
                           threads=args.threads, overwrite=args.overwrite)
    wall = time.perf_counter() - start
    print(report)
    print(f"report: {args.out}/report.md  ({wall:.1f} s, "
          f"{sum(r.resumed for r in rows)} of {len(rows)} rows resumed)")
    if not args.no_log:
        append_run("compress", {"config": args.config or "default", "model": args.model,
                                "out": args.out, "resume": args.resume, "pipeline": raw},
                   {r.label: r.metrics for r in rows}, wall, args.runs)
    return 0
