"""Model facts: parameters, bytes on disk, measured peak memory, tokens/s, thread scaling.

What the voice-assistant thesis' tables report beside accuracy (Parameters,
Memory (GB), Tokens/s; 4 vs 6 CPU threads in Table 6.1) and what the GPT-2
slides watch (CPU and memory):

    params          every stored number (a 2:4-sparse matrix still stores its zeros)
    params_nonzero  the numbers that are not exactly 0 — what the LLaMA thesis'
                    "#Params" column counts for N:M-pruned models
    bytes           size of the checkpoint files on disk (safetensors, masks, GGUF)
    peak_bytes      the most memory the inference allocated at once (tracemalloc:
                    activations, logits, KV cache — weights already loaded are
                    not counted; `max_rss_bytes` is the whole process' peak)
    prefill_tok_s   T prompt tokens in one forward / its time
    decode_tok_s    tokens generated one at a time with the KV cache / their time

Thread scaling runs the speed measurement with 1, 2, … BLAS threads, set with
`threads.blas_threads(n)` (threadpoolctl or OpenBLAS' own setter, see
minislm/threads.py). When neither works, each count is timed in a child process
started with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS set (BLAS
reads them only at start-up). Every other measurement runs under minislm's thread
policy (`threads.policy_threads`: 1 thread for a model under 20 M parameters, else
the cores no other process is using).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..model.cache import KVCache
from ..model.forward import forward
from ..threads import BLAS_VARIABLES, blas_threads

CHECKPOINT_SUFFIXES = (".safetensors", ".gguf")


def count_params(model) -> dict:
    """{'params': stored numbers, 'params_nonzero': numbers ≠ 0 outside low-rank terms,
    'params_low_rank': numbers in low-rank terms (only when there are some)}.

    A quantized weight counts its codes (zeros where pruned weights quantized to 0)
    as `params` and the nonzeros of its dequantized base Ŵ as `params_nonzero`; its
    EoRA factors A [r, in] and B [out, r] are dense and are counted on their own
    (in `params` and `params_low_rank`), so a pruned model's #Nonzero says whether
    quantization kept its zeros.
    """
    total = nonzero = low_rank = 0
    for value in model.params.values():
        n = int(np.prod(value.shape))
        if isinstance(value, np.ndarray):
            total += n
            nonzero += int(np.count_nonzero(value))
            continue
        factors = sum(a.size for a in (getattr(value, "eora_A", None),
                                       getattr(value, "eora_B", None)) if a is not None)
        base = value.dequantize_rows(0, value.n_out) if hasattr(value, "dequantize_rows") \
            else value.dequantize()
        total += n + factors
        nonzero += int(np.count_nonzero(base))
        low_rank += factors
    counts = {"params": total, "params_nonzero": nonzero}
    if low_rank:
        counts["params_low_rank"] = low_rank
    return counts


def bytes_on_disk(path) -> int:
    """Bytes of the checkpoint files in a folder (or of one file)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        raise ConfigError(f"{path}: no such checkpoint folder or file")
    return sum(p.stat().st_size for p in path.iterdir()
               if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)


def bytes_in_memory(model) -> int:
    """Bytes of the parameters as held in memory (compressed layers by their own parts)."""
    total = 0
    for name, value in model.params.items():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        else:
            total += sum(np.asarray(v).nbytes for v in value.state_dict(name).values())
    return total


def measure_speed(model, prompt_tokens: int = 64, new_tokens: int = 32, repeats: int = 2,
                  seed: int = 0) -> dict:
    """Prefill and decode tokens/s (best of `repeats` timed runs) and the peak memory of a run."""
    cfg = model.config
    P = max(1, min(prompt_tokens, cfg.max_position - new_tokens))
    N = max(1, min(new_tokens, cfg.max_position - P))
    ids = np.random.default_rng(seed).integers(0, cfg.vocab_size, size=(1, P))   # [1, P]

    def run():
        cache = KVCache(capacity=P + N)
        t0 = time.perf_counter()
        z = forward(model, ids, cache)[:, -1]                                       # [1, V]
        t1 = time.perf_counter()
        for _ in range(N):
            z = forward(model, z.argmax(-1)[:, None], cache)[:, -1]                 # [1, V]
        return t1 - t0, time.perf_counter() - t1

    forward(model, ids, check_numerics=True, last_only=True)   # no speed for NaN/Inf output
    tracemalloc.start()                      # first run: memory (tracing slows it, not timed)
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    times = [run() for _ in range(max(1, repeats))]
    best_prefill, best_decode = min(t[0] for t in times), min(t[1] for t in times)
    return {"prefill_tok_s": P / best_prefill, "decode_tok_s": N / best_decode,
            "prompt_tokens": P, "new_tokens": N, "peak_bytes": int(peak),
            "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def thread_scaling(model_path, threads=(1, 2), prompt_tokens: int = 64,
                   new_tokens: int = 32) -> dict:
    """{n_threads: measure_speed(...)} with the BLAS limited to n threads."""
    from ..loading import load
    model = load(model_path)
    results = {}
    for n in threads:
        with blas_threads(int(n)) as limited:
            if limited:
                results[int(n)] = measure_speed(model, prompt_tokens, new_tokens)
                continue
        env = dict(os.environ, **{v: str(int(n)) for v in BLAS_VARIABLES})
        cmd = [sys.executable, "-m", "minislm.evaluate.facts", str(model_path),
               str(prompt_tokens), str(new_tokens)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ConfigError(f"thread-scaling child for {model_path} failed: "
                              f"{done.stderr.strip().splitlines()[-1:]}")
        results[int(n)] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def model_facts(model, path=None, speed: bool = True, **speed_kw) -> dict:
    """Parameters, bytes (on disk when a path is known, else in memory) and speed."""
    facts = count_params(model)
    folder = path if path is not None else model.path
    facts["bytes"] = bytes_on_disk(folder) if folder is not None else bytes_in_memory(model)
    if speed:
        facts.update(measure_speed(model, **speed_kw))
    return facts


if __name__ == "__main__":       # the child process of thread_scaling
    from ..loading import load
    _model = load(sys.argv[1])
    print(json.dumps(measure_speed(_model, int(sys.argv[2]), int(sys.argv[3]))))
