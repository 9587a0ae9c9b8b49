"""Solutions to lesson 14's exercises: each prediction is asserted."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import calibration, load_tiny, ppl                          # noqa: E402
from minislm.quant.gguf_blocks import dequantize_blocks, quantize_blocks  # noqa: E402
from minislm.quant.model_quant import model_nbytes, quantize_model       # noqa: E402

model = load_tiny("llama")
calib = calibration(model, n_samples=16)

# 1. EoRA's bytes spent on a third bit instead.
runs = {"2-bit + EoRA 16": dict(bits=2, eora_rank=16), "3-bit": dict(bits=3)}
result = {}
for label, options in runs.items():
    q, _ = quantize_model(model, "gptq", group_size=-1, calib_ids=calib, progress=False, **options)
    result[label] = (model_nbytes(q), ppl(q))
    print(f"1. GPTQ {label:<16} {result[label][0]:>9,} bytes, perplexity {result[label][1]:.2f}")
(b_eora, p_eora), (b_3bit, p_3bit) = result["2-bit + EoRA 16"], result["3-bit"]
assert b_3bit < b_eora              # a third bit costs fewer bytes than rank-16 float factors
assert p_3bit < p_eora              # ... and recovers more: the bit beats the correction here

# 2. An all-positive block: Q4_0's grid spans [−m, m], Q4_1's [min, max].
w = np.abs(np.random.default_rng(0).standard_normal(32)).astype(np.float32)
err = {t: float(np.abs(w - dequantize_blocks(quantize_blocks(w, t), t)).max())
       for t in ("q4_0", "q4_1")}
print(f"2. all-positive block: max error Q4_0 {err['q4_0']:.4f}, Q4_1 {err['q4_1']:.4f} "
      f"({quantize_blocks(w, 'q4_0').size} vs {quantize_blocks(w, 'q4_1').size} bytes)")
assert err["q4_0"] > 1.5 * err["q4_1"]

# 3. INT8 KV cache saving for head_dim 64: 4·D bytes -> D + 4.
D = 64
ratio = 4 * D / (D + 4)
print(f"3. head_dim {D}: {ratio:.2f}× smaller")
assert abs(ratio - 3.76) < 0.01
print("lesson 14 solutions: all predictions hold")
