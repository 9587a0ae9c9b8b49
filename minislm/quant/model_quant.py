"""Quantize a whole model: model -> new model whose linear weights are `QuantizedTensor`s.

Layer by layer, as in GPTQ's reference pipeline (Frantar et al. §4 "Setup"):

    x₀ = embeddings of the calibration windows                 [n, T, C]
    for block l = 0 … L−1:
        run block l (float weights) on x_l, recording every linear input X
            -> H = 2 X Xᵀ / n  and  x̄ = mean |x| per input channel
        quantize each linear of block l (RTN | GPTQ | AWQ, then optional EoRA)
        x_{l+1} = block l with the *quantized* weights applied to x_l

so block l + 1 is calibrated on what the quantized blocks before it really
produce. Embeddings, norms, biases and the LM head stay in float (as GPTQ does;
GPT-2 ties its head to the embedding table).
The input model is never modified; arrays that are not quantized are shared.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, InputError
from ..model import families
from ..model.forward import check_ids, gpt2_block, llama_block
from ..model.layers import rope_inv_freq, rope_tables
from .awq import awq_quantize
from .eora import eora
from .gptq import accumulate_hessian, gptq_quantize
from .qlinear import QuantizedTensor, quantization_config
from .rtn import output_error, quantize_rtn

METHODS = ("rtn", "gptq", "awq")


def calibration_windows(model, text: str, n_samples: int = 128, seq_len: int = 512,
                        seed: int = 0) -> np.ndarray:
    """n_samples random windows of seq_len tokens from `text` (GPTQ's recipe), int64 [n, T]."""
    from ..tokenizer import encode
    ids = np.asarray(encode(model.tokenizer, text), dtype=np.int64)
    seq_len = min(seq_len, model.config.max_position)
    if len(ids) <= seq_len:
        raise InputError(f"calibration text has {len(ids)} tokens; need more than seq_len "
                         f"= {seq_len}")
    starts = np.random.default_rng(seed).integers(0, len(ids) - seq_len, n_samples)
    return np.stack([ids[s:s + seq_len] for s in starts])


def _as_out_in(W: np.ndarray, orientation: str) -> np.ndarray:
    return np.ascontiguousarray(W.T) if orientation == "in_out" else W


def _run_block(model, i, x, observer=None, batch: int = 8):
    """Block i on x [n, T, C], a few windows at a time (bounds the attention memory)."""
    cfg = model.config
    out = np.empty_like(x)
    rope = None
    if cfg.family == "llama":
        inv = rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        rope = rope_tables(np.arange(x.shape[1]), inv, x.dtype)
    for b0 in range(0, x.shape[0], batch):
        xb = x[b0:b0 + batch]
        if cfg.family == "gpt2":
            out[b0:b0 + batch] = gpt2_block(model, i, xb, 0, observer=observer)
        else:
            out[b0:b0 + batch] = llama_block(model, i, xb, 0, rope, observer=observer)
    return out


def quantize_model(model, method: str = "gptq", bits: int = 4, group_size: int = 128,
                   sym: bool = False, act_order: bool = False, damp: float = 0.01,
                   eora_rank: int = 0, calib_ids: np.ndarray | None = None,
                   progress: bool = True):
    """(new model, report): every block linear quantized; report = one dict per layer.

    Report entries: name, role, layer, error (‖WX − ŴX‖²/n of the chosen method,
    EoRA included), error_rtn (same grid, plain RTN), and error_before_eora /
    error_svd when EoRA is on. Errors need calibration data; RTN without it reports
    the weight MSE only.
    """
    if method not in METHODS:
        raise ConfigError(f"quantization method must be one of {METHODS}, found {method!r}")
    needs_calib = method != "rtn" or eora_rank > 0
    if needs_calib and calib_ids is None:
        raise ConfigError(f"method {method!r}{' with EoRA' if eora_rank else ''} needs "
                          "calibration token windows (calib_ids / --calib FILE)")
    cfg = model.config
    params = dict(model.params)
    lins = families.linear_layers(cfg, model.prefix)
    report = []
    x = None
    if calib_ids is not None:
        ids = check_ids(model, calib_ids)                                  # [n, T]
        emb = params[families.embedding_name(cfg, model.prefix)]
        x = emb[ids]                                                       # [n, T, C]
        if cfg.family == "gpt2":
            x = x + params[model.prefix + "wpe.weight"][:ids.shape[1]]
    blocks = tqdm(range(cfg.n_layer), desc=f"{method} {bits}-bit", disable=not progress)
    for i in blocks:
        block_lins = [lin for lin in lins if lin.layer == i]
        stats = {}
        if x is not None:
            names = {lin.name for lin in block_lins}

            def observe(name, inp):
                if name in names:
                    H, n, abs_sum = stats.get(name, (None, 0, 0.0))
                    flat = inp.reshape(-1, inp.shape[-1])
                    H, n_new = accumulate_hessian(H, n, flat)
                    stats[name] = (H, n_new, abs_sum + np.abs(flat).sum(0, dtype=np.float64))

            _run_block(model.replace(params=params), i, x, observe)
        for lin in block_lins:
            W = _as_out_in(np.asarray(params[lin.name], dtype=np.float32), lin.orientation)
            entry = {"name": lin.name, "role": lin.role, "layer": i}
            H = stats[lin.name][0] if lin.name in stats else None
            input_scale = None
            if method == "gptq":
                res = gptq_quantize(W, H, bits, group_size, sym, damp, act_order=act_order)
                qm, entry["error"], entry["error_rtn"] = res.quantized, res.error_gptq, \
                    res.error_rtn
            elif method == "awq":
                H_, n, abs_sum = stats[lin.name]
                res = awq_quantize(W, H_, (abs_sum / n).astype(np.float32), bits, group_size, sym)
                qm, input_scale = res.quantized, res.input_scale
                entry["error"], entry["error_rtn"], entry["alpha"] = res.error_awq, \
                    res.error_rtn, res.alpha
            else:
                qm = quantize_rtn(W, bits, group_size, sym)
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
            params[lin.name] = QuantizedTensor.from_matrix(qm, lin.orientation, input_scale, A, B)
            report.append(entry)
        if x is not None and i + 1 < cfg.n_layer:
            x = _run_block(model.replace(params=params), i, x)            # quantized block l
    extra = dict(model.extra_config)
    extra["quantization_config"] = quantization_config(
        bits, group_size, sym, method, damp=damp if method == "gptq" else None,
        act_order=bool(act_order) if method == "gptq" else None,
        eora_rank=int(eora_rank) or None, lm_head=False)
    extra["quantization_config"] = {k: v for k, v in extra["quantization_config"].items()
                                    if v is not None}
    return model.replace(params=params, extra_config=extra), report


def model_nbytes(model) -> int:
    """Bytes of all parameters as held in memory (packed bytes for quantized weights)."""
    return int(sum(v.nbytes for v in model.params.values()))
