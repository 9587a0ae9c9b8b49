"""Solutions to lesson 10's exercises: each prediction is asserted."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import calibration, load_tiny, ppl                          # noqa: E402
from minislm.prune import width                                          # noqa: E402

model = load_tiny("llama")
cfg = model.config
calib = calibration(model)
scores = width.width_importance(model, calib)

# 1. Half the query heads: every KV group keeps H/(2K) of its heads, K is unchanged, and each
#    block loses the q rows and o columns of H/2 heads.
half = width.width_trim(model, scores=scores, heads=cfg.n_head // 2)
removed = model.num_params() - half.num_params()
predicted = cfg.n_layer * 2 * (cfg.n_head // 2) * cfg.head_dim * cfg.d_model
print(f"1. heads {cfg.n_head} -> {half.config.n_head}, KV heads {cfg.n_kv_head} -> "
      f"{half.config.n_kv_head}; removed {removed:,} parameters (predicted {predicted:,})")
assert (half.config.n_head, half.config.n_kv_head) == (cfg.n_head // 2, cfg.n_kv_head)
assert removed == predicted

# 2. Scores from one calibration window: different numbers, nearly the same trim.
one = width.width_importance(model, calib[:1])
ffn = cfg.d_ff * 3 // 4
p8 = ppl(width.width_trim(model, scores=scores, ffn=ffn))
p1 = ppl(width.width_trim(model, scores=one, ffn=ffn))
print(f"2. FFN −25%: scores from 8 windows {p8:.2f}, from 1 window {p1:.2f}")
assert not np.allclose(one.neurons, scores.neurons)
assert abs(p1 / p8 - 1) < 0.10
print("lesson 10 solutions: all predictions hold")
