"""Does GPTQ's gain survive inside llama.cpp? (issue 17 item 6)

The same model is quantized on llama.cpp's Q4_0 grid (4-bit sym, groups of 32,
d = signed max / −8) twice: by round-to-nearest, which is llama.cpp's own quantizer
(the exported bytes equal gguf.quants.quantize, tests/test_gguf_grid.py), and by GPTQ.
Both are written to Q4_0 GGUF files from their codes (`export_gguf(..., exact=True)`:
nothing is rounded a second time), and llama.cpp (llama-cpp-python) measures their
perplexity on the same WikiText-2 test windows; minislm's forward of the same models
is measured beside it as a check (the weights are identical — the token embedding is
quantized on the same grid by both methods — and llama.cpp also rounds activations to
8 bits).

    OPENBLAS_NUM_THREADS=1 python bench/gguf_grid_bench.py --tokens 4096 --n-samples 32

Default model: SmolLM2-135M-Instruct from ../shared/fetch-real-models (its Q4_1 GGUF,
loaded by minislm and dequantized: the "float" row is that file). Calibration: random
windows of the WikiText-2 *validation* split; evaluation: the first `--tokens` tokens
of the raw test split in non-overlapping windows of `--seqlen` (the first token of a
window is context only). Not part of the test suite; results go to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np

from common import DATA, scratch_dir  # bench/common.py

REAL = Path(os.environ.get("MINISLM_REAL_MODELS",
                           Path.home() / ".cache" / "minislm" / "real-models"))


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def llama_cpp_perplexity(path, ids, spans, seqlen, threads):
    """(perplexity, tokens/s of the evaluation) of llama.cpp on the windows `spans`."""
    from llama_cpp import Llama
    from minislm.evaluate.perplexity import token_nll
    llm = Llama(model_path=str(path), n_ctx=seqlen, n_batch=seqlen, logits_all=True,
                n_threads=threads, verbose=False)
    nll, n, t0 = 0.0, 0, time.perf_counter()
    for b, e, first in spans:
        llm.reset()
        llm.eval(ids[b:e].tolist())
        logits = np.asarray(llm.scores[:e - b], dtype=np.float32)                # [T, V]
        losses = token_nll(logits[None, :-1], ids[None, b + 1:e])[0]              # [T − 1]
        nll += float(losses[first - b - 1:].sum(dtype=np.float64))
        n += e - first
    seconds = time.perf_counter() - t0
    return float(np.exp(nll / n)), sum(e - b for b, e, _ in spans) / seconds


def main(argv=None):
    import minislm
    from minislm.calibration import calibration_batches
    from minislm.evaluate.perplexity import perplexity_of_ids, windows
    from minislm.quant.gguf_export import export_gguf
    from minislm.quant.model_quant import quantize_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(REAL / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--n-samples", type=int, default=32, help="GPTQ calibration windows")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    args = p.parse_args(argv)

    model = minislm.load(args.model)
    test = (DATA / "wikitext-2-raw" / "wiki.test.txt").read_text(encoding="utf-8")
    valid = (DATA / "wikitext-2" / "valid.txt").read_text(encoding="utf-8")
    ids = np.asarray(model.tokenizer.encode(test).ids[:args.tokens], dtype=np.int64)
    spans = windows(len(ids), args.seqlen, args.seqlen)
    calib = calibration_batches(model, n_samples=args.n_samples, seqlen=args.seqlen, text=valid)

    rows = {}
    t0, c0 = time.perf_counter(), cpu_seconds()
    rows["rtn"] = quantize_model(model, "rtn", grid="q4_0", progress=False, embeddings=True)[0]
    t_rtn = (time.perf_counter() - t0, cpu_seconds() - c0)
    t0, c0 = time.perf_counter(), cpu_seconds()
    rows["gptq"], report = quantize_model(model, "gptq", grid="q4_0", calib_ids=calib,
                                          embeddings=True)
    t_gptq = (time.perf_counter() - t0, cpu_seconds() - c0)
    report = [e for e in report if "error" in e]         # the block linears (not embeddings)
    wins = sum(e["error"] < e["error_rtn"] for e in report)
    print(f"RTN (Q4_0 grid): {t_rtn[0]:.1f} s wall, {t_rtn[1]:.1f} s CPU; GPTQ (Q4_0 grid, "
          f"{args.n_samples} x {args.seqlen} calibration tokens): {t_gptq[0]:.1f} s wall, "
          f"{t_gptq[1]:.1f} s CPU; GPTQ's layer error below RTN's in {wins}/{len(report)} "
          f"linears, median ratio "
          f"{np.median([e['error'] / e['error_rtn'] for e in report]):.3f}")

    out = scratch_dir("gguf-grid")
    files = {"float": Path(args.model) if str(args.model).endswith(".gguf") else
             export_gguf(model, out / "float.gguf", "f32")[0]}
    for key in ("rtn", "gptq"):
        files[key] = export_gguf(rows[key], out / f"{key}-q4_0.gguf", "q4_0", exact=True)[0]
    rows["float"] = model

    print(f"\n{len(ids)} WikiText-2 test tokens, {len(spans)} windows of {args.seqlen}\n")
    print("| model | GGUF file | bytes | llama.cpp perplexity | llama.cpp tokens/s (eval) "
          "| minislm perplexity |")
    print("|---|---|---|---|---|---|")
    for key, label in (("float", "as loaded (file's own weights)"),
                       ("rtn", "RTN on Q4_0's grid (= llama.cpp's quantizer)"),
                       ("gptq", "GPTQ on Q4_0's grid")):
        ppl_cpp, tps = llama_cpp_perplexity(files[key], ids, spans, args.seqlen, args.threads)
        ours = perplexity_of_ids(rows[key], ids, args.seqlen, args.seqlen, progress=False)
        print(f"| {label} | {files[key].name} | {files[key].stat().st_size:,} | {ppl_cpp:.2f} "
              f"| {tps:.0f} | {ours.perplexity:.2f} |", flush=True)


if __name__ == "__main__":
    main()
