"""Prefill and decode throughput of minislm vs transformers (torch CPU), side by side.

    python bench/core_bench.py --model gpt2            # GPT-2-124M shape, T=512 prefill, 128 decode
    python bench/core_bench.py --model llama --prefill 128 --decode 32   # LLaMA-3.2-1B shape

Random weights from the public configs in ../shared/data/configs/ (written once
to a temporary safetensors folder by transformers, then loaded by both), real
tokenizer shapes. Both run in the same process, alternating, so the shared
machine's noise hits both alike. Reports tokens/s, the ratio, peak RSS, and the
decode roofline: bytes of weights read per token / measured DRAM bandwidth.
Not part of the test suite; results go to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from common import DATA, peak_rss_mb, prefill_and_decode, scratch_dir  # bench/common.py

CONFIGS = {"gpt2": "gpt2-124m.config.json", "llama": "llama-3.2-1b.config.json"}


def measure_bandwidth(n_bytes=512 * 2 ** 20, repeats=5) -> float:
    """Read bandwidth in GB/s: a float32 GEMV over a matrix far larger than the caches."""
    W = np.ones((n_bytes // 4 // 4096, 4096), dtype=np.float32)
    x = np.ones(4096, dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        W @ x
        best = min(best, time.perf_counter() - t0)
    return W.nbytes / best / 1e9


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=list(CONFIGS), default="gpt2")
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)

    import torch
    import transformers

    import minislm
    if args.threads:
        torch.set_num_threads(args.threads)
    config = json.loads((DATA / "configs" / CONFIGS[args.model]).read_text())
    folder = scratch_dir("minislm-bench-")
    torch.manual_seed(0)
    hf_config = transformers.AutoConfig.for_model(**config)
    with torch.device("cpu"):
        hf = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32).eval()
    hf.save_pretrained(folder)
    model = minislm.load(folder)
    V = model.config.vocab_size
    prompt = np.random.default_rng(0).integers(0, V, (1, args.prefill))
    hf.generation_config.eos_token_id = None
    (ours_prefill, ours_decode), (hf_prefill, hf_decode) = prefill_and_decode(
        model, hf, prompt, args.decode)

    rows = {}
    for name, fn, tokens in (("prefill", (ours_prefill, hf_prefill), args.prefill),
                             ("decode", (ours_decode, hf_decode), args.decode)):
        fn[0](), fn[1]()  # warm up both (page in the memory-mapped weights, torch init)
        t_ours = t_hf = float("inf")
        for _ in range(args.repeats):  # alternate so noise hits both alike
            t_ours = min(t_ours, best_of(fn[0], 1))
            t_hf = min(t_hf, best_of(fn[1], 1))
        rows[name] = (tokens / t_ours, tokens / t_hf)

    weight_bytes = sum(v.nbytes for v in model.params.values())
    bandwidth = measure_bandwidth()
    roofline = bandwidth * 1e9 / weight_bytes
    print(f"model {args.model}: {model.num_params() / 1e6:.1f} M params, "
          f"{weight_bytes / 1e9:.2f} GB fp32, torch threads {torch.get_num_threads()}")
    print(f"| phase | minislm tok/s | transformers tok/s | ratio |")
    print(f"|---|---|---|---|")
    for name, (ours, ref) in rows.items():
        label = f"prefill T={args.prefill}" if name == "prefill" else f"decode {args.decode}"
        print(f"| {label} | {ours:.1f} | {ref:.1f} | {ours / ref:.2f}x |")
    print(f"decode roofline: {bandwidth:.1f} GB/s / {weight_bytes / 1e9:.2f} GB per token = "
          f"{roofline:.1f} tok/s; minislm reaches {rows['decode'][0] / roofline:.0%}")
    print(f"peak RSS (both models in one process): {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
