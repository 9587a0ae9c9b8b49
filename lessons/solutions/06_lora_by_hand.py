"""Solutions to lesson 06's exercises; each asserts the predicted effect."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # lessons/: common.py
import minislm  # noqa: E402
from common import load_tiny  # noqa: E402
from minislm.adapt import lora  # noqa: E402
from minislm.model import families  # noqa: E402

base = load_tiny("llama")
probe = np.array([base.tokenizer.encode("User: Call Mom.\nAssistant:").ids])
rng = np.random.default_rng(0)

# 1. B ≠ 0 at init: the model no longer starts as the pretrained one.
model = lora.add_lora(base, rank=8, alpha=16, targets=["q_proj", "v_proj"], seed=0)
random_b = lora.with_trainable(model, {k: (v if k.endswith("A") else rng.normal(size=v.shape)
                                           .astype(np.float32) * 0.1)
                                       for k, v in lora.trainable(model).items()})
gap = np.abs(minislm.forward(random_b, probe) - minislm.forward(base, probe)).max()
print(f"1. random B at init: max |logit difference| from the base = {gap:.3f}")
assert gap > 1e-3

# 2. α doubles s = α/r: ΔW and both adapter gradients double.
w = next(iter(lora.lora_weights(random_b).values()))
w2 = w.replace(alpha=2 * w.alpha)
x = rng.normal(size=(3, w.A.shape[1])).astype(np.float32)
dy = rng.normal(size=(3, w.B.shape[0])).astype(np.float32)
g, g2 = w.linear_backward(x, dy)[1], w2.linear_backward(x, dy)[1]
assert np.allclose(w2.delta(), 2 * w.delta(), rtol=1e-5, atol=1e-7)
assert np.allclose(g2["lora_A"], 2 * g["lora_A"], rtol=1e-5, atol=1e-7)
assert np.allclose(g2["lora_B"], 2 * g["lora_B"], rtol=1e-5, atol=1e-7)
print("2. 2α: ΔW, dA and dB all exactly doubled")

# 3. The trainable count is r·(d_in + d_out) over the adapted layers.
all_seven = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
predicted = sum(8 * (layer.d_in + layer.d_out)
                for layer in families.linear_layers(base.config, base.prefix))
wide = lora.add_lora(base, rank=8, alpha=16, targets=all_seven, seed=0)
counted = sum(a.A.size + a.B.size for a in lora.lora_weights(wide).values())
print(f"3. r=8 on all seven projections: predicted {predicted:,}, counted {counted:,} "
      f"({100 * counted / base.num_params():.1f} % of the model)")
assert counted == predicted
