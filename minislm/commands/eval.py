"""`minislm eval`: one metric of one model, printed as a line or JSON, logged to runs/runs.jsonl."""
from __future__ import annotations

import json
import time

NAME = "eval"
HELP = "evaluate a model: perplexity, QA, tool-call or multiple-choice accuracy, speed facts"
TASKS = ("ppl", "qa", "toolcall", "mc", "facts")


def add_arguments(p):
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


def evaluate(model, task, data=None, seqlen=None, stride=None, limit=None, mode="both",
             template=None, max_new_tokens=None, progress=True, threads="1,2") -> dict:
    """The metrics of one task (shared by `minislm eval` and the pipeline)."""
    from ..errors import ConfigError
    for name, value in (("limit", limit), ("seqlen", seqlen), ("stride", stride),
                        ("max_new_tokens", max_new_tokens)):
        if value is not None and value < 1:       # 0 must not silently mean "the default"
            raise ConfigError(f"{name} must be a positive number, found {value}")
    if task == "ppl":
        from ..data.corpus import load_text_corpus
        from ..evaluate.perplexity import default_text, perplexity
        text = load_text_corpus(data) if data else default_text()
        return perplexity(model, text, seqlen, stride, limit, progress=progress).as_dict()
    if task == "qa":
        from ..evaluate.qa import evaluate_qa, load_qa_jsonl, project_qa_set
        items = load_qa_jsonl(data, limit) if data else list(project_qa_set())[:limit]
        modes = ("closed", "open") if mode == "both" else (mode,)
        return evaluate_qa(model, items, modes, template or ("thesis" if data else "chat"),
                           max_new_tokens or 32, progress=progress)
    if task == "toolcall":
        from ..evaluate.toolcall import evaluate_toolcall, heldout_examples, load_toolcall_jsonl
        examples = load_toolcall_jsonl(data, limit) if data else heldout_examples(limit)
        return evaluate_toolcall(model, examples, max_new_tokens or 64, progress=progress)
    if task == "mc":
        from ..evaluate.choice import corpus_choice_set, evaluate_choice, load_choice_file
        if not data:
            raise ConfigError("--task mc needs --data (HellaSwag/Winogrande JSONL, the "
                              "HellaSwag six-line text file, or 'corpus' for sentence "
                              "completion on the held-out corpus)")
        items = corpus_choice_set(limit or 100) if data == "corpus" else \
            load_choice_file(data, limit)
        return evaluate_choice(model, items, progress=progress)
    if task == "facts":
        from ..evaluate.facts import measure_speed, thread_scaling
        try:
            counts = [int(t) for t in str(threads).split(",") if t.strip()]
        except ValueError:
            raise ConfigError(f"--threads must be comma-separated integers, found "
                              f"{threads!r}") from None
        if not counts or min(counts) < 1:
            raise ConfigError(f"--threads needs positive thread counts, found {threads!r}")
        prompt = min(seqlen or 64, model.config.max_position // 2)
        new = min(max_new_tokens or 32, model.config.max_position - prompt)
        speed = measure_speed(model, prompt, new)
        scaling = thread_scaling(model.path, counts, prompt, new)
        return {**speed, "tokens": prompt + new,
                "threads": {n: {k: r[k] for k in ("prefill_tok_s", "decode_tok_s")}
                            for n, r in scaling.items()}}
    raise ConfigError(f"unknown task {task!r}; expected one of {TASKS}")


def run(args) -> int:
    from .. import load
    from ..evaluate.facts import auto_threads, blas_threads, bytes_on_disk, count_params
    from ..evaluate.runlog import append_run
    start = time.perf_counter()
    model = load(args.model)
    with blas_threads(None if args.task == "facts" else auto_threads(model)):
        metrics = evaluate(model, args.task, args.data, args.seqlen, args.stride, args.limit,
                           args.mode, args.template, args.max_new_tokens,
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
