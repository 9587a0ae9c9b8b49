"""Real GGUF models: load time, prefill and decode throughput of minislm vs transformers
(torch CPU, same run) and llama.cpp (llama-cpp-python, on the same GGUF file).

    OPENBLAS_NUM_THREADS=1 python bench/gguf_bench.py --threads 1

Files from ../shared/fetch-real-models in $MINISLM_REAL_MODELS (default
~/.cache/minislm/real-models); a missing file (or a family minislm cannot build yet)
is reported and skipped. transformers runs the same float32 weights: the HF folder
`minislm.save` writes of the loaded GGUF (its own GGUF loader, timed separately,
yields the same tensors: tests/test_gguf_real.py). llama.cpp runs the quantized file
with its own kernels. Prefill: one forward over T random tokens (all logits);
decode: greedy tokens after an 8-token prompt, end-of-sequence ignored.
Not part of the test suite; results go to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from common import peak_rss_mb, prefill_and_decode, scratch_dir  # bench/common.py
from core_bench import best_of               # bench/core_bench.py

REAL = Path(os.environ.get("MINISLM_REAL_MODELS",
                           Path.home() / ".cache" / "minislm" / "real-models"))
FILES = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def alternate(fns, repeats):
    """Best time of each function, run in turns so the machine's noise hits all alike."""
    for fn in fns:
        fn()                                     # warm-up: page in weights, build caches
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], best_of(fn, 1))
    return best


def llama_cpp_runner(path, threads, prompt, short, n_decode):
    """(prefill, decode) closures on llama.cpp, or None when llama-cpp-python is absent."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(path), n_ctx=max(1024, prompt.shape[1] + 16),
                n_batch=prompt.shape[1], n_threads=threads, verbose=False)
    eos = llm.token_eos()

    def prefill():
        llm.reset()
        llm.eval(prompt[0].tolist())

    def decode():
        llm.reset()
        out = llm.create_completion(short[0].tolist(), max_tokens=n_decode, temperature=0.0,
                                    logit_bias={eos: -1e9})
        assert out["usage"]["completion_tokens"] == n_decode
    return prefill, decode


def bench_file(key, args):
    import torch
    import transformers

    import minislm
    from minislm.errors import MinislmError
    path = REAL / FILES[key]
    if not path.is_file():
        print(f"{key}: {path} absent (run ../shared/fetch-real-models)")
        return
    print(f"\n## {key}: {path.name} ({path.stat().st_size / 1e6:.0f} MB)")
    try:
        model, t_load = timed(lambda: minislm.load(path))
        _, t_reload = timed(lambda: minislm.load(path))
    except MinislmError as e:
        print(f"minislm cannot load it yet: {e}")
        model = None
    if args.hf_gguf_load:
        _, t_hf_load = timed(lambda: transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name))
        hf_load = f"{t_hf_load:.1f} s"
    else:
        hf_load = "not measured"
    if model is None:
        print(f"transformers GGUF load: {hf_load}")
        return
    print(f"load: minislm {t_load:.1f} s (again, file cached: {t_reload:.1f} s); "
          f"transformers from_pretrained(gguf_file=...) {hf_load}")
    folder = minislm.save(model, scratch_dir("minislm-gguf-bench-") / key)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    hf.generation_config.eos_token_id = None
    V = model.config.vocab_size
    prompt = np.random.default_rng(0).integers(0, V, (1, args.prefill))
    short = prompt[:, :8]
    (ours_prefill, ours_decode), (hf_prefill, hf_decode) = prefill_and_decode(
        model, hf, prompt, args.decode)

    cpp = llama_cpp_runner(path, args.threads or torch.get_num_threads(), prompt, short,
                           args.decode)
    prefill = [ours_prefill, hf_prefill] + ([cpp[0]] if cpp else [])
    decode = [ours_decode, hf_decode] + ([cpp[1]] if cpp else [])
    rows = {f"prefill T={args.prefill}": (args.prefill, alternate(prefill, args.repeats)),
            f"decode {args.decode}": (args.decode, alternate(decode, args.repeats))}
    print(f"{model.num_params() / 1e6:.0f} M params, torch threads {torch.get_num_threads()}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    print("| phase | minislm tok/s | transformers tok/s | minislm / transformers | "
          "llama.cpp tok/s |")
    print("|---|---|---|---|---|")
    for label, (tokens, times) in rows.items():
        ours, ref = tokens / times[0], tokens / times[1]
        cpp_rate = f"{tokens / times[2]:.1f}" if cpp else "not installed"
        print(f"| {label} | {ours:.1f} | {ref:.1f} | {ours / ref:.2f}x | {cpp_rate} |")
    print(f"peak RSS so far: {peak_rss_mb():.0f} MB")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", choices=list(FILES), default=list(FILES))
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch and llama.cpp threads (default: torch's)")
    ap.add_argument("--no-hf-gguf-load", dest="hf_gguf_load", action="store_false",
                    help="skip timing transformers' own GGUF loader (slow)")
    args = ap.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for key in args.models:
        bench_file(key, args)


if __name__ == "__main__":
    sys.exit(main())
