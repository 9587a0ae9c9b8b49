"""Solutions to lesson 11's exercises: each prediction is asserted."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import calibration, load_tiny, ppl                          # noqa: E402
from minislm.model import families                                       # noqa: E402
from minislm.prune.magnitude import magnitude_prune                      # noqa: E402
from minislm.prune.masks import out_in, zeros_per_group                  # noqa: E402
from minislm.prune.sparsegpt import sparsegpt                            # noqa: E402
from minislm.prune.wanda import wanda                                    # noqa: E402

model = load_tiny("llama")
calib = calibration(model)


def rescaled(alpha, channels=np.arange(0, model.config.d_model, 4)):
    """The lesson's outlier trick: the same function, a few MLP input channels ×α in the norm."""
    params = dict(model.params)
    for i in range(model.config.n_layer):
        p = f"model.layers.{i}."
        norm = params[p + "post_attention_layernorm.weight"].copy()
        norm[channels] *= alpha
        params[p + "post_attention_layernorm.weight"] = norm
        for proj in ("gate_proj", "up_proj"):
            W = params[p + f"mlp.{proj}.weight"].copy()
            W[:, channels] /= alpha
            params[p + f"mlp.{proj}.weight"] = W
    return model.replace(params=params)


# 1. α = 100 instead of 20: WANDA does not notice (its score is invariant), and neither does
#    magnitude pruning: at α = 20 it already removed every rescaled weight of gate/up.
result = {}
channels = np.arange(0, model.config.d_model, 4)
for alpha in (20.0, 100.0):
    m = rescaled(alpha, channels)
    pruned = magnitude_prune(m, 0.5)
    result[alpha] = (ppl(pruned), ppl(wanda(m, calib, sparsity=0.5)))
    print(f"1. α = {alpha:>5}: magnitude 50% {result[alpha][0]:.2f}, "
          f"WANDA 50% {result[alpha][1]:.2f}")
    for i in range(model.config.n_layer):
        for proj in ("gate_proj", "up_proj"):
            mask = pruned.extra_tensors["masks"][f"model.layers.{i}.mlp.{proj}.weight"]
            assert not mask[:, channels].any()              # every rescaled weight is gone
assert abs(result[100.0][0] / result[20.0][0] - 1) < 0.01
assert abs(result[100.0][1] / result[20.0][1] - 1) < 0.01

# 2. SparseGPT under the 2:4 pattern: lower perplexity than WANDA 2:4, pattern intact.
sgpt, wnd = sparsegpt(model, calib, nm="2:4"), wanda(model, calib, nm="2:4")
p_sgpt, p_wanda = ppl(sgpt), ppl(wnd)
print(f"2. 2:4: SparseGPT {p_sgpt:.2f}, WANDA {p_wanda:.2f}")
assert p_sgpt < p_wanda
for lin in families.linear_layers(model.config, model.prefix):
    W = out_in(sgpt.params[lin.name], lin.orientation)
    assert zeros_per_group((W != 0).astype(np.uint8), 4).min() >= 2, lin.name
print("lesson 11 solutions: all predictions hold")
