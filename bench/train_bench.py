"""Training-step throughput: minislm's hand-written backward + AdamW vs torch autograd + AdamW.

    python bench/train_bench.py                         # GPT-2-124M shape, 4 of 12 layers
    python bench/train_bench.py --layers 12 --batch 4 --seq 256 --threads 2

One step = forward, cross-entropy, backward, global-norm clipping, AdamW update,
on the GPT-2-small shape of ../shared/data/configs/gpt2-124m.config.json (V =
50257, C = 768, H = 12, F = 3072) with fewer layers by default to keep the run
short (the embedding / LM head — 38.6 M of the parameters — is kept whole).
Both sides get the same random float32 weights (minislm's init, written once
to a temporary folder and loaded by transformers, dropout off) and the same
batches; steps alternate numpy / torch so the shared machine's noise hits both
alike. Reports the median step time as tokens/s and the ratio (target ≥ 0.7×).
Not part of the test suite; results go to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, REPO  # bench/common.py


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=4, help="blocks (GPT-2 small has 12)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps per side")
    p.add_argument("--threads", type=int, default=1, help="BLAS / torch threads on both sides")
    args = p.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)       # before numpy / torch are imported

    import json

    import numpy as np
    import torch
    import transformers

    sys.path.insert(0, str(REPO))
    import minislm
    from minislm.config import Config
    from minislm.train.init import init_model
    from minislm.train.optim import AdamWState, adamw_step, clip_by_global_norm

    torch.set_num_threads(args.threads)
    config_path = DATA / "configs" / "gpt2-124m.config.json"
    if not config_path.exists():
        print(f"{config_path} not found (set MINISLM_DATA)", file=sys.stderr)
        return 1
    raw = json.loads(config_path.read_text())
    raw.update(n_layer=args.layers, attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0)
    config = Config.from_hf_dict(raw, where=str(config_path))
    model = init_model(config, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        minislm.save(model, tmp)
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp, dtype=torch.float32)
    hf.train()
    params = {k: v.copy() for k, v in model.params.items()}
    state = AdamWState()
    decay = [p for n, p in hf.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in hf.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4,
                            betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    B, T = args.batch, args.seq

    def numpy_step(ids):
        loss, grads = minislm.value_and_grad(model.replace(params=params), ids, ids)
        grads, _ = clip_by_global_norm(grads, 1.0, in_place=True)
        adamw_step(params, grads, state, 1e-4, (0.9, 0.95), 1e-8, 0.1)
        return loss

    def torch_step(ids):
        t = torch.tensor(ids)
        loss = hf(t, labels=t).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    times = {"minislm": [], "torch": []}
    losses = {"minislm": [], "torch": []}
    for step in range(args.steps + 1):          # step 0 warms both up and is not timed
        ids = rng.integers(0, config.vocab_size, (B, T))
        for name, fn in (("minislm", numpy_step), ("torch", torch_step)):
            t0 = time.perf_counter()
            losses[name].append(fn(ids))
            if step:
                times[name].append(time.perf_counter() - t0)
    n_params = model.num_params()
    print(f"GPT-2-small shape with {args.layers} of 12 layers ({n_params / 1e6:.1f} M parameters), "
          f"B={B} T={T}, {args.threads} thread(s), {args.steps} timed steps each")
    rate = {}
    for name in times:
        med = float(np.median(times[name]))
        rate[name] = B * T / med
        print(f"  {name:8s} median step {med * 1000:8.1f} ms  {rate[name]:8.0f} tokens/s  "
              f"(losses {losses[name][0]:.4f} -> {losses[name][-1]:.4f})")
    print(f"  ratio minislm / torch: {rate['minislm'] / rate['torch']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
