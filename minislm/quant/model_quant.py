"""Quantize a whole model: model -> new model whose linear weights are `QuantizedTensor`s.

Layer by layer, as in GPTQ's reference pipeline (Frantar et al. §4 "Setup"):

    x₀ = embeddings of the calibration windows                 [n, T, C]
    for block l = 0 … L−1:
        run block l (float weights) on x_l, recording every linear input X
            -> H = 2 X Xᵀ / n  and  x̄ = mean |x| per input channel
        quantize each linear of block l (RTN | GPTQ | AWQ, then optional EoRA; or NF4)
        x_{l+1} = block l with the *quantized* weights applied to x_l

so block l + 1 is calibrated on what the quantized blocks before it really
produce. Embeddings, norms, biases and the LM head stay in float (as GPTQ does;
GPT-2 ties its head to the embedding table). NF4 (QLoRA's base, nf4.py) needs no
calibration: each linear becomes an `NF4Tensor` (blocks of `group_size`, default 64).
The input model is never modified; arrays that are not quantized are shared.
"""
from __future__ import annotations

import numpy as np

from .. import calibration
from ..errors import ConfigError
from ..model import families
from . import gguf_grid
from .awq import awq_quantize
from .eora import eora
from .gptq import gptq_quantize
from ..model.quantized import QuantizedTensor, quantization_config
from .nf4 import BLOCK as NF4_BLOCK
from .nf4 import check_block_size, quantize_nf4
from .rtn import output_error, quantize_rtn

METHODS = ("rtn", "gptq", "awq", "nf4")


def _as_out_in(W: np.ndarray, orientation: str) -> np.ndarray:
    return np.ascontiguousarray(W.T) if orientation == "in_out" else W


def quantize_linear(W, lin, stats, method, bits, group_size, sym, act_order, damp, eora_rank,
                    grid=None):
    """(QuantizedTensor, report entry) for one linear weight in its checkpoint layout.

    stats: the `calibration.Stats` of its input (None for RTN without calibration).
    """
    W = _as_out_in(np.asarray(W, dtype=np.float32), lin.orientation)       # [out, in]
    entry = {"name": lin.name, "role": lin.role, "layer": lin.layer}
    H = stats.hessian() if stats is not None else None                     # 2 XᵀX / n
    input_scale = None
    if method == "nf4":
        res = quantize_nf4(W, group_size, orientation=lin.orientation)
        entry["weight_mse"] = res.mse
        if H is not None:
            entry["error"] = output_error(W, res.tensor.effective_out_in(), H)
        return res.tensor, entry
    if method == "gptq":
        res = gptq_quantize(W, H, bits, group_size, sym, damp, act_order=act_order, grid=grid)
        qm, entry["error"], entry["error_rtn"] = res.quantized, res.error_gptq, res.error_rtn
    elif method == "awq":
        res = awq_quantize(W, H, stats.mean_abs(), bits, group_size, sym)
        qm, input_scale = res.quantized, res.input_scale
        entry["error"], entry["error_rtn"], entry["alpha"] = res.error_awq, res.error_rtn, \
            res.alpha
    else:
        qm = quantize_rtn(W, bits, group_size, sym, grid)
        entry["weight_mse"] = qm.mse
        if H is not None:
            entry["error"] = entry["error_rtn"] = output_error(W, qm.dequantize(), H)
    A = B = None
    if eora_rank > 0:
        W_hat = qm.dequantize() if input_scale is None else qm.dequantize() / input_scale
        comp = eora(W, W_hat, H, min(eora_rank, *W.shape))
        A, B = comp.A, comp.B
        entry["error_before_eora"], entry["error"] = comp.error_before, comp.error_eora
        entry["error_svd"] = comp.error_svd
    return QuantizedTensor.from_matrix(qm, lin.orientation, input_scale, A, B), entry


def check_nf4_options(bits: int, group_size: int, eora_rank: int, embeddings: bool) -> None:
    """NF4 is QLoRA's base: 4-bit, the block linears only, blocks bitsandbytes accepts."""
    if bits != 4 or eora_rank or embeddings:
        raise ConfigError("method 'nf4' is 4-bit NormalFloat of the block linears, as QLoRA's "
                          "base: it takes no other --bits, no EoRA and no --embeddings (use "
                          "rtn, gptq or awq for those)")
    check_block_size(group_size)


def grid_scheme(grid: str, method: str, bits: int | None, group_size: int | None,
                sym: bool | None) -> tuple[int, int, bool]:
    """(bits, group_size, sym) of a GGUF grid, the ones left at None taken from it; refuses
    a method other than rtn/gptq or values the grid does not have."""
    if method not in ("rtn", "gptq"):
        raise ConfigError(f"a GGUF grid ({grid}) is for rtn or gptq, not {method!r}")
    want_bits, want_sym = gguf_grid.GRIDS.get(grid, (bits, sym))
    bits = want_bits if bits is None else bits
    sym = want_sym if sym is None else sym
    group_size = gguf_grid.BLOCK if group_size is None else group_size
    gguf_grid.check_grid(grid, bits, group_size, sym)
    return bits, group_size, sym


def quantize_model(model, method: str = "gptq", bits: int | None = None,
                   group_size: int | None = None, sym: bool | None = None,
                   act_order: bool = False, damp: float = 0.01, eora_rank: int = 0,
                   calib_ids: np.ndarray | None = None, progress: bool = True,
                   embeddings: bool = False, grid: str | None = None):
    """(new model, report): every block linear quantized; report = one dict per layer.

    Report entries: name, role, layer, error (‖WX − ŴX‖²/n of the chosen method,
    EoRA included), error_rtn (same grid, plain RTN), and error_before_eora /
    error_svd when EoRA is on. Errors need calibration data; RTN without it reports
    the weight MSE only. embeddings=True also quantizes the token embedding and the LM
    head (RTN, same grid; one table when tied) — for GPT-2-124M that is 154 MB of 498.
    group_size None means 128, or 64 for method "nf4" (its block size).
    grid "q4_0" | "q4_1" | "q8_0": RTN or GPTQ on llama.cpp's grid for that GGUF type
    (gguf_grid.py; bits, group size 32 and sym follow from it when left at None), so
    `export-gguf --type <grid>` writes the codes as they are.
    """
    if method not in METHODS:
        raise ConfigError(f"quantization method must be one of {METHODS}, found {method!r}")
    if grid is not None:
        bits, group_size, sym = grid_scheme(grid, method, bits, group_size, sym)
    bits = 4 if bits is None else bits
    sym = False if sym is None else sym
    if group_size is None:                       # 128 columns, or NF4's 64 weights
        group_size = NF4_BLOCK if method == "nf4" else 128
    if method == "nf4":
        check_nf4_options(bits, group_size, eora_rank, embeddings)
    needs_calib = method not in ("rtn", "nf4") or eora_rank > 0
    if needs_calib and calib_ids is None:
        raise ConfigError(f"method {method!r}{' with EoRA' if eora_rank else ''} needs "
                          "calibration token windows (calib_ids / --calib FILE)")
    lins = families.linear_layers(model.config, model.prefix)
    for lin in lins if grid is not None else ():
        gguf_grid.check_grid(grid, bits, group_size, sym, lin.d_in)
    report = []
    args = (method, bits, group_size, sym, act_order, damp, eora_rank, grid)

    def transform(m, i, stats):
        params = dict(m.params)
        for lin in (lin for lin in lins if lin.layer == i):
            params[lin.name], entry = quantize_linear(params[lin.name], lin,
                                                      stats.get(lin.name), *args)
            report.append(entry)
        return m.replace(params=params)

    if calib_ids is None:
        quantized = model
        for i in range(model.config.n_layer):
            quantized = transform(quantized, i, {})
    else:
        quantized = calibration.sequential(model, calib_ids, transform,
                                           stats=("xtx", "abs_sum"), progress=progress)
    if embeddings:
        params = dict(quantized.params)
        names = {families.embedding_name(model.config, model.prefix),
                 families.lm_head_name(model.config, model.prefix)}
        for name in sorted(names):
            qm = quantize_rtn(np.asarray(params[name], dtype=np.float32), bits, group_size, sym,
                              grid)
            params[name] = QuantizedTensor.from_matrix(qm, "out_in")
            report.append({"name": name, "role": "embedding", "layer": None,
                           "weight_mse": qm.mse})
        quantized = quantized.replace(params=params)
    qc = quantization_config(bits, group_size, sym, method, lm_head=bool(embeddings),
                             embeddings=bool(embeddings))
    if method == "nf4":
        qc.update(sym=True, packing="two codes per byte, first in the high nibble, row-major "
                  "blocks over the flattened (out, in) weight", scale_dtype="nf4 absmax",
                  double_quant=True, scale_block_size=256)
        del qc["zero_point"]
    if method == "gptq":
        qc.update(damp=damp, act_order=bool(act_order))
    if grid is not None:
        qc["grid"] = grid
    if eora_rank:
        qc["eora_rank"] = int(eora_rank)
    extra = dict(model.extra_config, quantization_config=qc)
    return quantized.replace(extra_config=extra), report


def model_nbytes(model) -> int:
    """Bytes of all parameters as held in memory (packed bytes for quantized weights)."""
    return int(sum(v.nbytes for v in model.params.values()))
