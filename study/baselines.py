"""Baselines (issue 17 item 2): one model, every engine, the same windows and items.

    cd <repo> && PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=1 python study/baselines.py \
        --model smollm2 --ppl-tokens 16384 --lambada 100 --hellaswag 50 --winogrande 100

Engines: minislm (library functions: perplexity_of_ids, evaluate_choice; LAMBADA by the
shared scorer), transformers (its GGUF loader on the same file) and llama.cpp (llama-cpp-python
on the same file, quantized kernels; perplexity and LAMBADA only). One JSON line per
(engine, task) to study/out/baselines.jsonl with wall/CPU time and load average.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(C.GGUF), default="smollm2")
    ap.add_argument("--ppl-tokens", type=int, default=16384)
    ap.add_argument("--lambada", type=int, default=100)
    ap.add_argument("--hellaswag", type=int, default=50)
    ap.add_argument("--winogrande", type=int, default=100)
    ap.add_argument("--engines", default="minislm,transformers,llamacpp")
    ap.add_argument("--tasks", default="ppl,lambada,hellaswag,winogrande")
    ap.add_argument("--out", default=str(C.OUT / "baselines.jsonl"))
    a = ap.parse_args(argv)

    import minislm
    from minislm.evaluate.choice import evaluate_choice
    from minislm.evaluate.perplexity import perplexity_of_ids
    model = minislm.load(str(C.GGUF[a.model]))
    tok = model.tokenizer
    ids = C.wikitext_ids(tok, a.ppl_tokens)
    tasks = a.tasks.split(",")
    data = {"lambada": C.lambada_items(a.lambada),
            "hellaswag": C.choice_items("hellaswag", a.hellaswag) if "hellaswag" in tasks else [],
            "winogrande": C.choice_items("winogrande", a.winogrande) if "winogrande" in tasks else []}

    for engine in a.engines.split(","):
        if engine == "minislm":
            fn = C.minislm_logits(model)
        elif engine == "transformers":
            fn = C.torch_logits(C.load_transformers(a.model))
        elif engine == "llamacpp":
            fn = C.llama_cpp_logits(C.GGUF[a.model])
        for task in tasks:
            if engine == "llamacpp" and task in ("hellaswag", "winogrande"):
                continue
            with C.Clock() as clk:
                if task == "ppl":
                    if engine == "minislm":
                        r = perplexity_of_ids(model, ids, C.T, C.S, progress=False).as_dict()
                        r["ppl"] = r.pop("perplexity")
                    else:
                        r = C.strided_ppl(fn, ids)
                    r["prefix_tokens"] = len(ids)
                elif task == "lambada":
                    r = C.lambada_acc(fn, tok, data["lambada"])
                else:
                    if engine == "minislm":
                        r = evaluate_choice(model, data[task], progress=False)
                        r["acc"] = r.pop("accuracy")
                        r["acc_norm"] = r.pop("accuracy_norm")
                    else:
                        r = C.choice_acc(fn, tok, data[task])
            row = {"model": a.model, "engine": engine, "task": task, **r, **clk.as_dict()}
            print(row, flush=True)
            C.append_jsonl(a.out, row)


if __name__ == "__main__":
    main()
