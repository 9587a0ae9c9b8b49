"""Quantization benchmarks: GPTQ wall time, quantized vs float speed and memory, llama.cpp
side by side, and the INT8 × INT8 matmul NumPy cannot accelerate.

    python bench/quant_bench.py --parts gptq              # GPTQ 4-bit g128 on a GPT-2-124M shape
    python bench/quant_bench.py --parts decode,llamacpp   # minislm float / packed vs llama.cpp
    python bench/quant_bench.py --parts int8
    python bench/quant_bench.py --parts ppl,kv --model weights/tiny-gpt2   # GPTQ vs RTN, INT8 KV

Random weights (GPT-2 init, std 0.02) in the public GPT-2-124M config from
../shared/data/configs/ unless --model gives a trained checkpoint. Prints
markdown tables; results are appended by hand to bench/RESULTS.md with the command.
Not part of the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from common import DATA, REPO, peak_rss_mb, scratch_dir  # bench/common.py
sys.path.insert(0, str(REPO))

import minislm  # noqa: E402
from minislm.quant.model_quant import model_nbytes, quantize_model  # noqa: E402


def random_gpt2(folder: Path) -> Path:
    """The GPT-2-124M config with random weights, written by transformers (bench-only)."""
    import torch
    import transformers
    config = json.loads((DATA / "configs" / "gpt2-124m.config.json").read_text())
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**config), dtype=torch.float32).eval()
    hf.save_pretrained(folder)
    return folder


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def timed_cpu(fn):
    """(result, wall seconds, CPU seconds of this process) — the machine is shared, so
    CPU time says what the work costs when wall time is inflated by other jobs."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def calib_ids(model, n_samples, seqlen, seed=0):
    seqlen = min(seqlen, model.config.max_position)
    if model.tokenizer is not None:
        from minislm.calibration import calibration_batches
        return calibration_batches(model, None, n_samples, seqlen, seed)
    return np.random.default_rng(seed).integers(0, model.config.vocab_size, (n_samples, seqlen))


def part_gptq(model, args):
    ids = calib_ids(model, args.n_samples, args.seqlen)
    (q, report), seconds, cpu = timed_cpu(lambda: quantize_model(model, "gptq", 4, 128,
                                                                 calib_ids=ids))
    wins = sum(e["error"] <= e["error_rtn"] for e in report)
    ratio = np.median([e["error"] / e["error_rtn"] for e in report])
    print(f"\n### GPTQ 4-bit g128 asym, {args.n_samples}×{args.seqlen} calibration tokens\n")
    print("| layers | wall time | CPU time | GPTQ ≤ RTN | median error GPTQ/RTN | float bytes | "
          "packed bytes |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(report)} | {seconds:.0f} s | {cpu:.0f} s | {wins}/{len(report)} | {ratio:.3f} | "
          f"{model_nbytes(model):,} | {model_nbytes(q):,} |")
    return q


def part_decode(model, args, quantized=None):
    V = model.config.vocab_size
    prompt = np.random.default_rng(0).integers(0, V, (1, args.prefill))
    variants = [("float32", model)]
    for bits, g, emb in ((8, -1, False), (4, 128, False), (4, 128, True)):
        q, _ = quantize_model(model, "rtn", bits, g, sym=bits == 8, progress=False,
                              embeddings=emb)
        variants.append((f"packed {bits}-bit g{g}" + (" + embedding/head" if emb else ""), q))
    print(f"\n### minislm prefill T={args.prefill} and decode {args.decode} tokens\n")
    print("| weights | bytes at rest | prefill tok/s | decode tok/s |")
    print("|---|---|---|---|")
    for name, m in variants:
        minislm.forward(m, prompt[:, :8])                               # warm up
        _, t_pre = timed(lambda: minislm.forward(m, prompt))
        _, t_dec = timed(lambda: minislm.generate(m, prompt[:, :8], args.decode, stop_tokens=()))
        print(f"| {name} | {model_nbytes(m):,} | {args.prefill / t_pre:.1f} | "
              f"{args.decode / t_dec:.1f} |")


def part_llamacpp(model, args):
    from llama_cpp import Llama

    from minislm.quant.gguf_export import export_gguf
    V = model.config.vocab_size
    prompt = np.random.default_rng(0).integers(0, V, args.prefill).tolist()
    tmp = scratch_dir("minislm-gguf-")
    print(f"\n### llama.cpp (llama-cpp-python 0.3.36, {args.threads} threads) on our exported "
          f"GGUF\n")
    print("| type | file bytes | prefill tok/s | decode tok/s | max |Δlogit| vs minislm float |")
    print("|---|---|---|---|---|")
    ref = minislm.forward(model, np.array([prompt[:64]]))[0]
    for qtype in ("f32", "q8_0", "q4_0"):
        path, size = export_gguf(model, tmp / f"m-{qtype}.gguf", qtype)
        llm = Llama(model_path=str(path), n_ctx=args.prefill + args.decode + 8, n_batch=512,
                    logits_all=False, verbose=False, n_threads=args.threads)
        llm.eval(prompt[:8])                                            # warm up
        llm.reset()
        _, t_pre = timed(lambda: llm.eval(prompt))
        llm.reset()
        llm.eval(prompt[:8])

        def decode():
            for _ in range(args.decode):
                llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        _, t_dec = timed(decode)
        check = Llama(model_path=str(path), n_ctx=128, logits_all=True, verbose=False,
                      n_threads=args.threads)
        check.eval(prompt[:64])
        delta = float(np.abs(np.asarray(check.scores[:64]) - ref).max())
        print(f"| {qtype} | {size:,} | {args.prefill / t_pre:.1f} | {args.decode / t_dec:.1f} | "
              f"{delta:.3g} |")


def part_int8(args):
    from minislm.quant.int8 import int8_linear, quantize_weight_int8
    rng = np.random.default_rng(0)
    W = (0.02 * rng.standard_normal((3072, 768))).astype(np.float32)
    q_w, s_w = quantize_weight_int8(W)
    print("\n### y = x Wᵀ, W 3072×768: float32 BLAS vs int8×int8→int32 in NumPy\n")
    print("| tokens | float32 ms | int8/int32 ms | slowdown | rel. error |")
    print("|---|---|---|---|---|")
    for n in (1, 512):
        x = rng.standard_normal((n, 768)).astype(np.float32)
        t_f = min(timed(lambda: x @ W.T)[1] for _ in range(20))
        t_i = min(timed(lambda: int8_linear(x, q_w, s_w))[1] for _ in range(3))
        y, y8 = x @ W.T, int8_linear(x, q_w, s_w)
        err = float(np.linalg.norm(y8 - y) / np.linalg.norm(y))
        print(f"| {n} | {t_f * 1e3:.2f} | {t_i * 1e3:.2f} | {t_i / t_f:.1f}x | {err:.2e} |")


def test_windows(model, args) -> np.ndarray:
    """Non-overlapping windows [N, T] of the first --ppl-tokens tokens of the corpus test
    split, T = --seqlen (at most max_position)."""
    from minislm.evaluate.perplexity import default_text
    from minislm.tokenizer import encode
    T = min(args.seqlen, model.config.max_position)
    ids = np.asarray(encode(model.tokenizer, default_text("test"))[:args.ppl_tokens])
    return ids[:len(ids) // T * T].reshape(-1, T)


def window_nll(model, windows) -> np.ndarray:
    """Σ −log p of each window's targets: windows [N, T] -> [N] float64."""
    from minislm.evaluate.perplexity import token_nll
    return np.array([float(token_nll(minislm.forward(model, w[None, :-1]), w[None, 1:])
                           .sum(dtype=np.float64)) for w in windows])


def paired_ratio_ci(nll_a, nll_b, tokens_per_window, n_boot=2000, seed=0):
    """95 % bootstrap interval of ppl(a) / ppl(b), resampling the same windows for both."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(nll_a), (n_boot, len(nll_a)))
    ratios = np.exp((nll_a[idx] - nll_b[idx]).sum(1) / (idx.shape[1] * tokens_per_window))
    return np.percentile(ratios, [2.5, 97.5])


def part_ppl(model, args):
    windows = test_windows(model, args)
    T = windows.shape[1]
    n = windows.shape[0] * (T - 1)
    calib = calib_ids(model, args.n_samples, args.seqlen)
    base = np.exp(window_nll(model, windows).sum() / n)
    print(f"\n### held-out perplexity ({windows.shape[0]} windows of {T} tokens of the corpus "
          f"test split), float {base:.3f}; calibration {args.n_samples} × {args.seqlen}\n")
    print("| bits | group | RTN ppl | GPTQ ppl | GPTQ+EoRA r16 ppl | GPTQ/RTN (95 % CI) | "
          "layers GPTQ ≤ RTN |")
    print("|---|---|---|---|---|---|---|")
    for bits, g in ((4, 128), (4, -1), (3, 128), (3, -1)):
        rtn, _ = quantize_model(model, "rtn", bits, g, progress=False)
        gptq, report = quantize_model(model, "gptq", bits, g, calib_ids=calib, progress=False)
        eo, _ = quantize_model(model, "gptq", bits, g, calib_ids=calib, eora_rank=16,
                               progress=False)
        nll = [window_nll(m, windows) for m in (rtn, gptq, eo)]
        p = [np.exp(x.sum() / n) for x in nll]
        lo, hi = paired_ratio_ci(nll[1], nll[0], T - 1)
        wins = sum(e["error"] <= e["error_rtn"] for e in report)
        print(f"| {bits} | {g} | {p[0]:.3f} | {p[1]:.3f} | {p[2]:.3f} | {p[1] / p[0]:.4f} "
              f"[{lo:.4f}, {hi:.4f}] | {wins}/{len(report)} |")


def part_kv(model, args):
    from minislm.evaluate.perplexity import token_nll
    from minislm.model.cache import KVCache
    from minislm.quant.kv_cache import Int8KVCache
    windows = test_windows(model, args)
    T = windows.shape[1]
    print(f"\n### KV cache: float32 vs INT8 (per-head, per-position scales), {windows.size} "
          f"tokens in windows of {T}\n")
    print("| cache | bytes per window | perplexity |")
    print("|---|---|---|")
    for name, make in (("float32", KVCache), ("int8", Int8KVCache)):
        nll, n, nbytes = 0.0, 0, 0
        for w in windows:
            cache = make()
            logits = minislm.forward(model, w[None, :-1], cache=cache)
            nll += float(token_nll(logits, w[None, 1:]).sum())
            n += T - 1
            nbytes = cache.nbytes
        print(f"| {name} | {nbytes:,} | {np.exp(nll / n):.3f} |")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="gptq,decode,llamacpp,int8")
    ap.add_argument("--model", default=None, help="checkpoint folder (default: random GPT-2-124M)")
    ap.add_argument("--n-samples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--ppl-tokens", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads (match "
                    "OPENBLAS_NUM_THREADS for a fair comparison)")
    args = ap.parse_args(argv)
    parts = args.parts.split(",")
    model = None
    if set(parts) - {"int8"}:
        folder = Path(args.model) if args.model else \
            random_gpt2(scratch_dir("minislm-qbench-"))
        model = minislm.load(folder)
        print(f"model: {args.model or 'random GPT-2-124M shape'}, "
              f"{model.num_params() / 1e6:.1f} M params; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
    for part in parts:
        if part == "gptq":
            part_gptq(model, args)
        elif part == "decode":
            part_decode(model, args)
        elif part == "llamacpp":
            part_llamacpp(model, args)
        elif part == "int8":
            part_int8(args)
        elif part == "ppl":
            part_ppl(model, args)
        elif part == "kv":
            part_kv(model, args)
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
