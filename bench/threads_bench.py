"""minislm vs transformers on a quiet machine and with one busy process per core, in ONE run.

    python bench/threads_bench.py                    # GPT-2-124M shape, prefill 256, decode 32
    python bench/threads_bench.py --prefill 512 --decode 64 --repeats 3

GPT-2-124M-shaped random weights (transformers' GPT2Config defaults), written once
by transformers and loaded by both. Two phases:

  quiet   nothing started by the benchmark (the machine's own load is recorded)
  loaded  one CPU-bound process (`while True: pass`) per usable core

In each phase three engines run, alternating within every repeat so the noise
hits them alike:

  minislm         the library as a command uses it: `minislm.load` at the start of
                  the phase applies the thread policy (minislm/threads.py)
  minislm-allcores  the old behaviour: OpenBLAS with one thread per core whatever
                  the load (for the record: what the policy replaced)
  transformers    torch with its default intra-op threads

Prefill = logits of all T prompt positions in one forward; decode = greedy
generation of N tokens with the KV cache after an 8-token prompt (best of the
repeats). The load average and the BLAS threads chosen are printed with the table.
Results go to bench/RESULTS.md; never part of the test suite.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from common import prefill_and_decode, scratch_dir  # bench/common.py


def loadavg() -> str:
    return open("/proc/loadavg").read().strip()


def busy_processes(n: int) -> list:
    """n CPU-bound children, returned once each has used some CPU time."""
    children = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ticks = [int(open(f"/proc/{c.pid}/stat").read().rsplit(")", 1)[1].split()[11])
                 for c in children]
        if min(ticks) > 0:
            break
        time.sleep(0.05)
    time.sleep(1.0)
    return children


def best_time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefill", type=int, default=256)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true",
                    help="a 1-layer, 64-wide model: checks the script, measures nothing")
    args = ap.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "MINISLM_THREADS"):
        if os.environ.get(var):
            sys.exit(f"unset {var}: the benchmark measures minislm's own thread policy")

    import torch
    import transformers

    import minislm
    from minislm import threads

    folder = scratch_dir("minislm-threads-bench-")
    torch.manual_seed(0)
    config = transformers.GPT2Config(**(dict(n_layer=1, n_embd=64, n_head=2, vocab_size=500)
                                        if args.smoke else {}))
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(folder)
    hf.generation_config.eos_token_id = None
    cores = threads.usable_cores()
    prompt = np.random.default_rng(0).integers(0, hf.config.vocab_size, (1, args.prefill))
    print(f"{'smoke test' if args.smoke else 'GPT-2-124M shape'}, {cores} usable cores, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, numpy {np.__version__}")

    results = {}
    for phase in ("quiet", "loaded"):
        children = busy_processes(cores) if phase == "loaded" else []
        try:
            before = loadavg()
            model = minislm.load(folder)                  # applies the thread policy now
            policy = threads._openblas_controls()[0]() if threads._openblas_controls() else "?"

            def ours(fn, n_threads=None):
                def run():
                    with threads.blas_threads(n_threads):
                        fn()
                return run

            (m_prefill, m_decode), (t_prefill, t_decode) = prefill_and_decode(
                model, hf, prompt, args.decode)

            engines = {"minislm": (ours(m_prefill), ours(m_decode)),
                       "minislm-allcores": (ours(m_prefill, cores), ours(m_decode, cores)),
                       "transformers": (t_prefill, t_decode)}
            for fns in engines.values():                  # warm up: page in, torch init
                fns[0]()
            best = {(e, k): float("inf") for e in engines for k in (0, 1)}
            for _ in range(args.repeats):
                for k in (0, 1):
                    for e, fns in engines.items():
                        best[e, k] = min(best[e, k], best_time(fns[k]))
            after = loadavg()
        finally:
            for c in children:
                c.kill()
                c.wait()
        results[phase] = {e: (args.prefill / best[e, 0], args.decode / best[e, 1])
                          for e in engines}
        print(f"\n{phase}: {len(children)} busy processes; /proc/loadavg before {before!r}, "
              f"after {after!r}; minislm's policy chose {policy} BLAS thread(s)")
        print("| engine | prefill T=%d tok/s | decode %d tok/s | prefill vs transformers "
              "| decode vs transformers |" % (args.prefill, args.decode))
        print("|---|---|---|---|---|")
        ref = results[phase]["transformers"]
        for e, (p, d) in results[phase].items():
            print(f"| {e} | {p:.1f} | {d:.1f} | {p / ref[0]:.2f}x | {d / ref[1]:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
