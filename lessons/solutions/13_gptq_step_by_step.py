"""Solutions to lesson 13's exercises: each prediction is asserted."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import calibration, load_tiny                               # noqa: E402
from minislm.calibration import collect                                  # noqa: E402
from minislm.model import families                                       # noqa: E402
from minislm.quant.gptq import gptq_quantize                             # noqa: E402
from minislm.quant.rtn import PER_CHANNEL, quantize_rtn                  # noqa: E402

model = load_tiny("llama")
lin = next(x for x in families.linear_layers(model.config) if x.role == "o" and x.layer == 1)
stats = collect(model, calibration(model, n_samples=16), stats=("xtx",), names=[lin.name])
H = stats[lin.name].hessian()
W = np.asarray(model.params[lin.name])

# 1. A diagonal Hessian: no correlations, no updates, GPTQ = RTN.
diagonal = gptq_quantize(W, np.diag(np.diag(H)), 3, PER_CHANNEL)
rtn = quantize_rtn(W, 3, PER_CHANNEL)
print(f"1. diagonal H: GPTQ codes equal RTN's: {np.array_equal(diagonal.quantized.q, rtn.q)}")
assert np.array_equal(diagonal.quantized.q, rtn.q)

# 2. Heavy damping: H + λI nearly diagonal, so GPTQ gains less over RTN (on the true H).
gain = {}
for damp in (0.01, 1.0):
    r = gptq_quantize(W, H, 3, PER_CHANNEL, damp=damp)
    W_hat = r.quantized.dequantize().astype(np.float64) - W
    error = 0.5 * float(((W_hat @ H) * W_hat).sum())                  # on the undamped H
    gain[damp] = error / r.error_rtn
    print(f"2. damp {damp:>4}: GPTQ/RTN output error {gain[damp]:.3f}")
assert gain[0.01] < gain[1.0] < 1.0
print("lesson 13 solutions: all predictions hold")
