"""`minislm eval`: one metric of one model, printed as a line or JSON, logged to runs/runs.jsonl."""
from __future__ import annotations

import json
import time

NAME = "eval"
HELP = "evaluate a model: perplexity, QA, tool-call or multiple-choice accuracy, speed facts"


def add_arguments(p):
    """Declare `minislm eval`'s options on the subparser p."""
    from ..evaluate.tasks import TASKS
    p.add_argument("--model", required=True, help="HF checkpoint folder")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--data", help="ppl: a UTF-8 text file (default: the corpus test split); "
                   "qa: TriviaQA-shaped JSONL (default: the project's QA set); toolcall: "
                   "JSONL of prompt/response (default: the generator's test split); mc: "
                   "HellaSwag/Winogrande JSONL, HellaSwag .txt[.bz2] or 'corpus' (required)")
    p.add_argument("--seqlen", type=int, help="ppl window T (default min(512, max_position))")
    p.add_argument("--stride", type=int, help="ppl stride S (default T: no overlap)")
    p.add_argument("--limit", type=int, help="tokens for ppl, items for the other tasks")
    p.add_argument("--mode", choices=("closed", "open", "both"), default="both",
                   help="qa: closed-book, open-book or both (default)")
    p.add_argument("--template", choices=("thesis", "chat"),
                   help="qa prompt form (default: chat for the project's set, thesis for files)")
    p.add_argument("--max-new-tokens", type=int, help="qa/toolcall answer length (32 / 64)")
    p.add_argument("--threads", default="1,2", help="facts: BLAS thread counts to time "
                   "(comma-separated, default 1,2)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--runs", help="experiment log (default runs/runs.jsonl or $MINISLM_RUNS)")
    p.add_argument("--no-log", action="store_true", help="do not append to the experiment log")


def run(args) -> int:
    """Measure one task on one model, print a summary line (or JSON) and log the run;
    0 on success."""
    from .. import load
    from ..evaluate.facts import bytes_on_disk, count_params
    from ..threads import auto_threads, blas_threads
    from ..evaluate.runlog import append_run
    from ..evaluate.tasks import evaluate_task
    start = time.perf_counter()
    model = load(args.model)
    with blas_threads(None if args.task == "facts" else auto_threads(model)):
        metrics = evaluate_task(model, args.task, args.data, args.seqlen, args.stride,
                                args.limit, args.mode, args.template, args.max_new_tokens,
                                progress=not args.json, threads=args.threads)
    metrics.update(count_params(model), bytes=bytes_on_disk(args.model))
    wall = time.perf_counter() - start
    result = {"task": args.task, "model": str(args.model), **metrics, "wall_s": round(wall, 3)}
    if not args.no_log:
        config = {k: getattr(args, k) for k in ("model", "task", "data", "seqlen", "stride",
                                                  "limit", "mode", "template", "max_new_tokens",
                                                  "threads")}
        append_run("eval", config, metrics, wall, args.runs)
    if args.json:
        print(json.dumps(result))
    else:
        print(summary_line(result))
    return 0


def summary_line(r: dict) -> str:
    """One line of a task's result, e.g. "perplexity 31.416 over 4096 tokens (T=256, S=128) ..."."""
    head = {"ppl": f"perplexity {r.get('perplexity', float('nan')):.3f} over {r.get('tokens')} "
                   f"tokens (T={r.get('seqlen')}, S={r.get('stride')})",
            "qa": "QA accuracy " + ", ".join(f"{m}-book {r[f'accuracy_{m}']:.3f}"
                                             for m in ("closed", "open") if f"accuracy_{m}" in r),
            "toolcall": f"tool-call accuracy {r.get('accuracy', 0):.3f} (tool "
                        f"{r.get('tool_accuracy', 0):.3f}, syntax "
                        f"{r.get('syntax_accuracy', 0):.3f},"
                        f" parameters {r.get('parameter_accuracy') or 0:.3f})",
            "facts": f"prefill {r.get('prefill_tok_s', 0):.0f} tok/s, decode "
                     f"{r.get('decode_tok_s', 0):.0f} tok/s, peak {r.get('peak_bytes', 0):,} "
                     "bytes; by BLAS threads: " + ", ".join(
                         f"{n}: {v['decode_tok_s']:.0f} tok/s decode"
                         for n, v in r.get("threads", {}).items()),
            "mc": f"multiple-choice accuracy {r.get('accuracy', 0):.3f} (norm "
                  f"{r.get('accuracy_norm', 0):.3f}, chance {r.get('chance', 0):.3f})"}[r["task"]]
    return f"{head}; {r['params']:,} params, {r['bytes']:,} bytes on disk, {r['wall_s']:.1f} s"
