"""One task's metrics for one model: what `minislm eval` prints and a report row holds.

    ppl       perplexity of a text file (default: the corpus test split), window T, stride S
    qa        closed/open-book accuracy on TriviaQA-shaped JSONL (default: the project's set)
    toolcall  tool / syntax / parameter accuracy (default: the task generator's test split)
    mc        multiple choice: HellaSwag/Winogrande files, or 'corpus' sentence completion
    facts     prefill/decode tokens/s, peak memory and their scaling with BLAS threads
"""
from __future__ import annotations

from ..data.corpus import load_text_corpus
from ..errors import ConfigError
from .choice import corpus_choice_set, evaluate_choice, load_choice_file
from .facts import measure_speed, thread_scaling
from .perplexity import default_text, perplexity
from .qa import evaluate_qa, load_qa_jsonl, project_qa_set
from .toolcall import evaluate_toolcall, heldout_examples, load_toolcall_jsonl

TASKS = ("ppl", "qa", "toolcall", "mc", "facts")


def evaluate_task(model, task, data=None, seqlen=None, stride=None, limit=None, mode="both",
                  template=None, max_new_tokens=None, progress=True, threads="1,2") -> dict:
    """The metrics of one task; None options take each task's default.

    limit: tokens for ppl, items for the other tasks. mode: qa's closed, open or both.
    template: qa's prompt form (default chat for the project's set, thesis for files).
    threads: facts' comma-separated BLAS thread counts to time.
    """
    for name, value in (("limit", limit), ("seqlen", seqlen), ("stride", stride),
                        ("max_new_tokens", max_new_tokens)):
        if value is not None and value < 1:       # 0 must not silently mean "the default"
            raise ConfigError(f"{name} must be a positive number, found {value}")
    if task == "ppl":
        text = load_text_corpus(data) if data else default_text()
        return perplexity(model, text, seqlen, stride, limit, progress=progress).as_dict()
    if task == "qa":
        items = load_qa_jsonl(data, limit) if data else list(project_qa_set())[:limit]
        modes = ("closed", "open") if mode == "both" else (mode,)
        return evaluate_qa(model, items, modes, template or ("thesis" if data else "chat"),
                           max_new_tokens or 32, progress=progress)
    if task == "toolcall":
        examples = load_toolcall_jsonl(data, limit) if data else heldout_examples(limit)
        return evaluate_toolcall(model, examples, max_new_tokens or 64, progress=progress)
    if task == "mc":
        if not data:
            raise ConfigError("--task mc needs --data (HellaSwag/Winogrande JSONL, the "
                              "HellaSwag six-line text file, or 'corpus' for sentence "
                              "completion on the held-out corpus)")
        items = corpus_choice_set(limit or 100) if data == "corpus" else \
            load_choice_file(data, limit)
        return evaluate_choice(model, items, progress=progress)
    if task == "facts":
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
