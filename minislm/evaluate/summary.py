"""One model's row of a compression report: size, perplexity, task accuracy, speed.

`eval_options` (the `[eval]` table of a pipeline config):
    ppl_tokens   tokens scored for perplexity (0: skip); seqlen = window = stride
    ppl_data     a text file instead of the corpus test split
    toolcall     held-out tool-call examples (0: skip)
    qa           questions of the project QA set, closed and open book (0: skip)
    choice       sentence-completion items of the held-out corpus (0: skip); reported
                 per-byte normalised (`choice`) and summed (`choice_unnormalized`)
    speed        prefill/decode tokens/s and peak memory (64-token prompt, 16 new tokens)
"""
from __future__ import annotations

from .facts import bytes_on_disk, count_params, measure_speed
from .tasks import evaluate_task


def summarize(model, folder, eval_options: dict, progress: bool = False) -> dict:
    """Size, perplexity, task accuracy and speed of one model saved in `folder`."""
    e = eval_options
    metrics = count_params(model)
    metrics["bytes"] = bytes_on_disk(folder)
    if e["ppl_tokens"]:
        seqlen = min(e["seqlen"], model.config.max_position)
        metrics["perplexity"] = evaluate_task(model, "ppl", e["ppl_data"], seqlen, seqlen,
                                              e["ppl_tokens"], progress=progress)["perplexity"]
    if e["toolcall"]:
        r = evaluate_task(model, "toolcall", limit=e["toolcall"], progress=progress)
        metrics.update(toolcall=r["accuracy"], tool=r["tool_accuracy"],
                       syntax=r["syntax_accuracy"], parameters=r["parameter_accuracy"])
    if e["qa"]:
        r = evaluate_task(model, "qa", limit=e["qa"], template="chat", progress=progress)
        metrics.update(qa_closed=r["accuracy_closed"], qa_open=r.get("accuracy_open"))
    if e["choice"]:
        r = evaluate_task(model, "mc", "corpus", limit=e["choice"], progress=progress)
        # per-byte scores: the endings differ in length, and summed log-likelihoods
        # mostly pick the shortest one (lm-evaluation-harness' acc_norm)
        metrics.update(choice=r["accuracy_norm"], choice_unnormalized=r["accuracy"])
    if e["speed"]:
        s = measure_speed(model, prompt_tokens=min(64, model.config.max_position // 2),
                          new_tokens=16, repeats=3)
        metrics.update(prefill_tok_s=s["prefill_tok_s"], decode_tok_s=s["decode_tok_s"],
                       peak_bytes=s["peak_bytes"])
    return metrics
