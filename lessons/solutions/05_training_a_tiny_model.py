"""Solutions to lesson 05's exercises; each asserts the predicted effect."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # lessons/: common.py
import minislm  # noqa: E402
from common import PPL_SEQLEN, corpus, load_tiny, yardstick_ids  # noqa: E402
from minislm.config import Config  # noqa: E402
from minislm.train.data import eval_windows, random_batch, token_stream  # noqa: E402
from minislm.train.init import hf_config_dict, init_model  # noqa: E402
from minislm.train.optim import AdamWState, adamw_step, clip_by_global_norm  # noqa: E402
from minislm.train.trainer import TrainOptions, train  # noqa: E402

tokenizer = load_tiny("llama").tokenizer
train_stream = token_stream(tokenizer, corpus("train").split("\n\n")[:2000])
val_windows = eval_windows(yardstick_ids(load_tiny("llama")), PPL_SEQLEN)
config = Config.from_hf_dict(hf_config_dict(
    "llama", vocab_size=tokenizer.get_vocab_size(), d_model=64, n_layer=2, n_head=4,
    n_kv_head=2, d_ff=192, max_position=PPL_SEQLEN, tied=True, eos_id=0, bos_id=0))
model = init_model(config, seed=0, tokenizer=tokenizer)
ids = random_batch(train_stream, batch_size=8, seq_len=64, seed=0, step=0)
_, grads = minislm.value_and_grad(model, ids, ids)


def first_step(clip, weight_decay):
    params = {k: v.copy() for k, v in model.params.items()}
    adamw_step(params, clip_by_global_norm(grads, clip)[0], AdamWState(), lr=1e-2,
               weight_decay=weight_decay)
    return params


# 1. Adam normalises the gradient's scale away: clipping 10x harder barely moves the step
#    (only the gradients already close to ε shrink); SGD's step would be 10x smaller.
base, tight = first_step(0.5, 0.1), first_step(0.05, 0.1)
delta = np.concatenate([(base[k] - model.params[k]).ravel() for k in grads])
delta_tight = np.concatenate([(tight[k] - model.params[k]).ravel() for k in grads])
change = np.linalg.norm(delta_tight - delta) / np.linalg.norm(delta)
print(f"1. AdamW step with the gradient clipped to 0.05 instead of 0.5: {100 * change:.1f} % "
      f"different (SGD: 90 %)")
assert change < 0.1

# 2. Decoupled weight decay: matrices shrink by exactly ηλθ, gains are not decayed.
no_decay = first_step(0.5, 0.0)
for name in grads:
    expected = -1e-2 * 0.1 * model.params[name] if model.params[name].ndim >= 2 else 0.0
    assert np.allclose(base[name] - no_decay[name], expected, atol=1e-7), name
print("2. weight decay 0.1 vs 0: matrices differ by η·λ·θ, gains not at all")

# 3. A 10x smaller learning rate learns less in the same 80 steps.
final = {}
for lr in (1e-2, 1e-3):
    options = TrainOptions(steps=80, batch_size=8, seq_len=64, lr=lr, min_lr=lr / 10, warmup=10,
                           seed=0, eval_every=80)
    _, history = train(model, train_stream, options, val_windows=val_windows, progress=False)
    final[lr] = history[-1]["val_loss"]
print(f"3. validation loss after 80 steps: lr 1e-2 {final[1e-2]:.3f}, lr 1e-3 {final[1e-3]:.3f}")
assert final[1e-3] > final[1e-2]
