"""What the benchmark scripts share: paths, peak memory, and scratch folders that
are removed when the script exits (a GPT-2-124M folder is 0.5 GB, LLaMA-1B 5 GB)."""
from __future__ import annotations

import atexit
import os
import resource
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MINISLM_DATA", REPO.parent / "shared" / "data"))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scratch_dir(prefix: str) -> Path:
    """A new temporary folder, deleted when the interpreter exits (also after an error)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def prefill_and_decode(model, hf, prompt, n_decode):
    """The four timed calls the speed benchmarks compare, on the same token ids:
    ((minislm prefill, minislm decode), (transformers prefill, transformers decode)).

    Prefill: logits of every position of prompt [1, T]. Decode: n_decode greedy tokens
    after the prompt's first 8 (hf's generation_config.eos_token_id must be None, and
    min_new_tokens holds it to n_decode anyway, so both sides make the same count).
    """
    import minislm
    import torch
    short = prompt[:, :8]

    def ours_prefill():
        minislm.forward(model, prompt)

    def ours_decode():
        minislm.generate(model, short, n_decode, stop_tokens=())

    def hf_prefill():
        with torch.no_grad():
            hf(torch.tensor(prompt), use_cache=False)

    def hf_decode():
        with torch.no_grad():
            hf.generate(torch.tensor(short), max_new_tokens=n_decode, min_new_tokens=n_decode,
                        do_sample=False, pad_token_id=0)

    return (ours_prefill, ours_decode), (hf_prefill, hf_decode)
