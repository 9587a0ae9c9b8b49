"""Export a model to a GGUF file llama.cpp runs: tensor names, layouts, metadata, tokenizer.

Name mapping (llama.cpp's `gguf` tensor table; `N` = block index):

    GPT-2 (arch "gpt2")                    LLaMA (arch "llama")
    wte            -> token_embd            embed_tokens        -> token_embd
    wpe            -> position_embd         norm                -> output_norm
    ln_f           -> output_norm           lm_head (or E)      -> output
    (tied)         -> output (copy of wte)  input_layernorm     -> blk.N.attn_norm
    ln_1           -> blk.N.attn_norm       q_proj / k_proj / v_proj -> blk.N.attn_q / _k / _v
    attn.c_attn    -> blk.N.attn_qkv        o_proj              -> blk.N.attn_output
    attn.c_proj    -> blk.N.attn_output     post_attention_layernorm -> blk.N.ffn_norm
    ln_2           -> blk.N.ffn_norm        gate_proj / up_proj / down_proj
    mlp.c_fc       -> blk.N.ffn_up                               -> blk.N.ffn_gate / _up / _down
    mlp.c_proj     -> blk.N.ffn_down        (llama3 rope scaling) -> rope_freqs

Gemma 3 (arch "gemma3") takes LLaMA's names plus its extra norms — the inverse of the
reader's table (gguf/convert.py GEMMA3_BLOCK): pre_feedforward_layernorm -> ffn_norm,
post_attention_layernorm -> post_attention_norm, post_feedforward_layernorm ->
post_ffw_norm, q_norm / k_norm -> attn_q_norm / attn_k_norm. Every norm is stored as
1 + w (llama.cpp multiplies by the stored weight), q/k rows are not permuted (gemma3 uses
NeoX RoPE), and the sliding blocks are named in the metadata (`_gemma3_metadata`).

Layout traps:
  * GGUF matrices are (out, in) rows: GPT-2's Conv1D (in, out) weights are transposed.
  * llama.cpp's LLaMA rotates *adjacent* pairs (the original Meta layout); HF rows
    are ordered for split halves, so q/k rows (and biases) are permuted back per
    head: rows [h, 2, D/2] -> [h, D/2, 2] (`rope_rows_to_pairs`), as
    llama.cpp's converter does.
  * llama3 rope scaling is a per-frequency divisor tensor `rope_freqs`
    (1 for high frequencies, `factor` for low ones, blended in between).

Tensor types: 2-D weights take the requested type when their rows are a multiple
of 32 (else F16); 1-D tensors (norms, biases, rope_freqs) stay F32.

Quantized weights (minislm's `QuantizedTensor`) whose grid is the requested
type's — sym 4-bit g32 for Q4_0, sym 8-bit g32 for Q8_0, 4-bit g32 with fp16
minimums (or exact ones) for Q4_1; `quantize --grid` makes them — are written from
their own codes and fp16 scales (`gguf_grid.to_blocks`): llama.cpp computes with
exactly the weights minislm computes with. Any other quantized weight would be
dequantized and rounded a second time, which throws away what GPTQ chose: that
is done with a warning naming the weights, or refused with `exact=True`.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np

from ..errors import InputError
from ..gguf.convert import GEMMA3_BLOCK, rope_rows_to_pairs
from ..gguf.tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED
from ..model import families
from ..model.quantized import QuantizedTensor
from ..outputs import refuse_inputs
from .gguf_blocks import TYPES as BLOCK_TYPES
from .gguf_blocks import quantize_blocks
from .gguf_file import write_gguf
from .gguf_grid import to_blocks

EXPORT_TYPES = ("f32", "f16") + BLOCK_TYPES
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9}


EXPORT_FAMILIES = ("gpt2", "llama", "gemma3")


def llama3_rope_factors(config) -> np.ndarray:
    """Divisors of each RoPE frequency under llama3 scaling (llama.cpp's `rope_freqs`)."""
    s = config.rope_scaling
    D = config.head_dim
    freqs = 1.0 / (config.rope_theta ** (np.arange(0, D, 2, dtype=np.float32) / D))
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old_ctx = s["original_max_position_embeddings"]
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / float(freq)
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(float(factor))
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _float(value) -> np.ndarray:
    """A parameter as float32 (quantized tensors are dequantized in their checkpoint layout)."""
    return np.asarray(value if isinstance(value, np.ndarray) else value.dequantize(), np.float32)


def _conv1d_rows(W: np.ndarray) -> np.ndarray:
    """GPT-2 Conv1D (in, out) -> (out, in) rows: a layout change, so it is not applied to
    quantized codes, which are stored (out, in) already."""
    return W.T


def _tensor_names(model):
    """(gguf name, checkpoint name, transform) for every tensor of the model."""
    cfg, p = model.config, model.prefix
    T = _conv1d_rows
    rows = []
    if cfg.family == "gpt2":
        rows += [("token_embd.weight", f"{p}wte.weight", None),
                 ("position_embd.weight", f"{p}wpe.weight", None),
                 ("output_norm.weight", f"{p}ln_f.weight", None),
                 ("output_norm.bias", f"{p}ln_f.bias", None),
                 ("output.weight", f"{p}wte.weight", None)]
        for i in range(cfg.n_layer):
            b = families.block_prefix(cfg, p, i)
            for src, dst, tr in (("ln_1", "attn_norm", None), ("attn.c_attn", "attn_qkv", T),
                                 ("attn.c_proj", "attn_output", T), ("ln_2", "ffn_norm", None),
                                 ("mlp.c_fc", "ffn_up", T), ("mlp.c_proj", "ffn_down", T)):
                rows.append((f"blk.{i}.{dst}.weight", f"{b}{src}.weight", tr))
                rows.append((f"blk.{i}.{dst}.bias", f"{b}{src}.bias", None))
        return rows
    if cfg.family == "gemma3":
        return _gemma3_tensor_names(cfg, p)
    H, K = cfg.n_head, cfg.n_kv_head
    rows += [("token_embd.weight", "model.embed_tokens.weight", None),
             ("output_norm.weight", "model.norm.weight", None)]
    if not cfg.tied:
        rows.append(("output.weight", "lm_head.weight", None))
    for i in range(cfg.n_layer):
        b = families.block_prefix(cfg, p, i)
        rope_q = lambda W: rope_rows_to_pairs(W, H)            # noqa: E731
        rope_k = lambda W: rope_rows_to_pairs(W, K)            # noqa: E731
        for src, dst, tr in (("input_layernorm", "attn_norm", None),
                             ("self_attn.q_proj", "attn_q", rope_q),
                             ("self_attn.k_proj", "attn_k", rope_k),
                             ("self_attn.v_proj", "attn_v", None),
                             ("self_attn.o_proj", "attn_output", None),
                             ("post_attention_layernorm", "ffn_norm", None),
                             ("mlp.gate_proj", "ffn_gate", None), ("mlp.up_proj", "ffn_up", None),
                             ("mlp.down_proj", "ffn_down", None)):
            rows.append((f"blk.{i}.{dst}.weight", f"{b}{src}.weight", tr))
            rows.append((f"blk.{i}.{dst}.bias", f"{b}{src}.bias", tr))
    return rows


def _plus_one(w: np.ndarray) -> np.ndarray:
    """Gemma's RMSNorm multiplies by (1 + w); llama.cpp's converter stores 1 + w."""
    return w + np.float32(1)


def _gemma3_tensor_names(cfg, p):
    """The inverse of the reader's gemma3 table (gguf/convert.py GEMMA3_BLOCK): names as
    there, norms stored as 1 + w, q/k rows untouched (llama.cpp's gemma3 uses NeoX RoPE,
    the split-halves pairing transformers uses)."""
    rows = [("token_embd.weight", f"{p}embed_tokens.weight", None),
            ("output_norm.weight", f"{p}norm.weight", _plus_one)]
    if not cfg.tied:
        rows.append(("output.weight", "lm_head.weight", None))
    for i in range(cfg.n_layer):
        b = families.block_prefix(cfg, p, i)
        for dst, src in GEMMA3_BLOCK.items():
            rows.append((f"blk.{i}.{dst}.weight", f"{b}{src}.weight",
                         _plus_one if dst.endswith("norm") else None))
    return rows


def _gemma3_metadata(cfg) -> dict:
    """gemma3.* keys beyond the common ones, after refusing what llama.cpp's gemma3 cannot run.

    llama.cpp's gemma3 scales q kᵀ by 1/√head_dim and has no soft-capping; the sliding
    layers, their window and RoPE base are the keys `attention.sliding_window`,
    `attention.sliding_window_pattern` (one bool per block: sliding or not) and
    `rope.freq_base_swa`.
    """
    D = cfg.head_dim
    if cfg.query_pre_attn_scalar is not None and float(cfg.query_pre_attn_scalar) != D:
        raise InputError(f"llama.cpp's gemma3 scales attention by 1/sqrt(head_dim = {D}); this "
                         f"model's query_pre_attn_scalar is {cfg.query_pre_attn_scalar}")
    for field in ("attn_softcap", "final_softcap"):
        if getattr(cfg, field) is not None:
            raise InputError(f"llama.cpp's gemma3 has no soft-capping; this model sets {field}")
    theta, scaling = cfg.rope_of_type("full_attention")
    local, _ = cfg.rope_of_type("sliding_attention")
    if scaling:
        raise InputError(f"GGUF export of gemma3 writes no RoPE scaling; this model has "
                         f"{scaling.get('rope_type')!r}")
    meta = {"gemma3.attention.head_count_kv": cfg.n_kv_head,
            "gemma3.attention.layer_norm_rms_epsilon": float(cfg.norm_eps),
            "gemma3.attention.key_length": D, "gemma3.attention.value_length": D,
            "gemma3.rope.freq_base": float(theta)}
    sliding = [cfg.window_of_layer(i) is not None for i in range(cfg.n_layer)]
    if any(sliding):
        meta.update({"gemma3.attention.sliding_window": int(cfg.sliding_window),
                     "gemma3.attention.sliding_window_pattern": sliding,
                     "gemma3.rope.freq_base_swa": float(local)})
    return meta


def _special_ids(model, meta: dict) -> None:
    """bos/eos token ids and whether `encode` starts with BOS (as the tokenizer does)."""
    tok, cfg = model.tokenizer, model.config
    if cfg.bos_token_id is not None and 0 <= cfg.bos_token_id < cfg.vocab_size:
        meta["tokenizer.ggml.bos_token_id"] = int(cfg.bos_token_id)
        ids = tok.encode("a").ids
        meta["tokenizer.ggml.add_bos_token"] = bool(ids) and ids[0] == cfg.bos_token_id
    if cfg.eos_ids and 0 <= cfg.eos_ids[0] < cfg.vocab_size:
        meta["tokenizer.ggml.eos_token_id"] = int(cfg.eos_ids[0])


def _sentencepiece_metadata(model, spec: dict) -> dict:
    """tokenizer.ggml.* keys for a SentencePiece-style BPE (byte fallback, "▁" for spaces:
    Gemma's tokenizer): `tokenizer.ggml.model = llama`, tokens, scores and token types.

    llama.cpp merges the adjacent pair whose joined token has the highest score; the score
    of a token is minus the rank of the first merge that makes it, so llama.cpp merges in
    the tokenizer's order. Tokens no merge makes score below every merge.
    """
    tok, cfg = model.tokenizer, model.config
    vocab = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    merges = [m.split(" ", 1) if isinstance(m, str) else m for m in spec["model"]["merges"]]
    rank = {}
    for r, (left, right) in enumerate(merges):
        rank.setdefault(left + right, r)
    unk = spec["model"].get("unk_token")
    tokens, scores, types = [], [], []
    for i in range(cfg.vocab_size):
        t = vocab.get(i)
        tokens.append(f"[PAD{i}]" if t is None else t)
        scores.append(-float(rank.get(t, len(merges) + 1)) if t is not None else -1e9)
        types.append(UNUSED if t is None else
                     (CONTROL if added[i].get("special") else USER_DEFINED) if i in added else
                     UNKNOWN if t == unk else
                     BYTE if len(t) == 6 and t.startswith("<0x") and t.endswith(">") else
                     NORMAL)
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.token_type": types,
            # a Metaspace that prepends "▁" (LLaMA-2 style); Gemma's normalizer does not
            "tokenizer.ggml.add_space_prefix": '"prepend_scheme": "first"' in
            json.dumps(spec.get("pre_tokenizer")) or '"prepend_scheme": "always"' in
            json.dumps(spec.get("pre_tokenizer"))}
    if unk in tokens:
        meta["tokenizer.ggml.unknown_token_id"] = tokens.index(unk)
    pad = getattr(cfg, "padding_idx", None)
    if pad is not None and 0 <= pad < cfg.vocab_size:
        meta["tokenizer.ggml.padding_token_id"] = int(pad)
    _special_ids(model, meta)
    return meta


def _tokenizer_metadata(model) -> dict:
    """tokenizer.ggml.* keys for a byte-level BPE tokenizer (GPT-2 and LLaMA-3 style), or a
    SentencePiece-style one (`_sentencepiece_metadata`)."""
    tok, cfg = model.tokenizer, model.config
    if tok is None:
        return {"tokenizer.ggml.model": "no_vocab"}       # token ids only
    spec = json.loads(tok.to_str())
    bpe = spec.get("model", {})
    if bpe.get("type") == "BPE" and bpe.get("byte_fallback"):
        return _sentencepiece_metadata(model, spec)
    if bpe.get("type") != "BPE":
        raise InputError(f"GGUF export supports byte-level BPE tokenizers, found model type "
                         f"{bpe.get('type')!r}")
    vocab = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(cfg.vocab_size):
        if i not in vocab:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        else:
            tokens.append(vocab[i])
            types.append(NORMAL if i not in added else
                         CONTROL if added[i].get("special") else USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe.get("merges", [])]
    pre_spec = json.dumps(spec.get("pre_tokenizer") or {})
    pre = "llama-bpe" if "p{N}{1,3}" in pre_spec else "gpt-2"   # LLaMA-3 digit split
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre,
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.merges": merges}
    _special_ids(model, meta)
    return meta


def gguf_contents(model, qtype: str = "f32", name: str = "minislm-export",
                  exact: bool = False):
    """(metadata, tensors) of the GGUF file for `model` stored as `qtype`."""
    qtype = qtype.lower()
    if qtype not in EXPORT_TYPES:
        raise InputError(f"--type must be one of {EXPORT_TYPES}, found {qtype!r}")
    cfg = model.config
    arch = cfg.family
    if arch not in EXPORT_FAMILIES:
        raise InputError(f"GGUF export writes {' and '.join(EXPORT_FAMILIES)} models; this "
                         f"{arch} model is not supported yet (its extra norms and GGUF tensor "
                         "names are not mapped)")
    meta = {"general.architecture": arch, "general.name": name,
            "general.file_type": FILE_TYPE[qtype],
            f"{arch}.context_length": cfg.max_position,
            f"{arch}.embedding_length": cfg.d_model,
            f"{arch}.feed_forward_length": cfg.d_ff,
            f"{arch}.block_count": cfg.n_layer,
            f"{arch}.attention.head_count": cfg.n_head,
            f"{arch}.vocab_size": cfg.vocab_size}
    if arch == "gpt2":
        meta["gpt2.attention.layer_norm_epsilon"] = float(cfg.norm_eps)
    elif arch == "gemma3":
        meta.update(_gemma3_metadata(cfg))
    else:
        meta.update({"llama.attention.head_count_kv": cfg.n_kv_head,
                     "llama.attention.layer_norm_rms_epsilon": float(cfg.norm_eps),
                     "llama.rope.freq_base": float(cfg.rope_theta),
                     "llama.rope.dimension_count": cfg.head_dim,
                     "llama.attention.key_length": cfg.head_dim,
                     "llama.attention.value_length": cfg.head_dim})
        kind = (cfg.rope_scaling or {}).get("rope_type")
        if kind == "linear":
            meta["llama.rope.scaling.type"] = "linear"
            meta["llama.rope.scaling.factor"] = float(cfg.rope_scaling["factor"])
    meta.update(_tokenizer_metadata(model))

    tensors, rounded_again = [], []
    for gguf_name, ckpt_name, transform in _tensor_names(model):
        if ckpt_name not in model.params:
            continue                                          # biases the family lacks
        value = model.params[ckpt_name]
        blocks = to_blocks(value, qtype) if isinstance(value, QuantizedTensor) and \
            qtype in BLOCK_TYPES else None
        if blocks is not None:                                # the codes as they are
            if transform not in (None, _conv1d_rows):
                blocks = np.ascontiguousarray(transform(blocks))  # RoPE rows: whole rows move
            tensors.append((gguf_name, (value.n_in, value.n_out), qtype, blocks))
            continue
        if not isinstance(value, np.ndarray) and qtype in BLOCK_TYPES:
            rounded_again.append(ckpt_name)
        W = _float(value)
        if transform is not None:
            W = np.ascontiguousarray(transform(W))
        tensors.append(_encode(gguf_name, W, qtype))
    if rounded_again:
        grid = (model.extra_config.get("quantization_config") or {})
        what = (f"{len(rounded_again)} quantized weights ({rounded_again[0]}, ...) are not on "
                f"{qtype}'s grid (the model is {grid.get('bits')}-bit, group size "
                f"{grid.get('group_size')}, sym {grid.get('sym')}, method {grid.get('method')})")
        if exact:
            raise InputError(f"{what}; exporting would dequantize and round them again. "
                             f"Quantize with --grid {qtype} (rtn or gptq), or export another type")
        warnings.warn(f"{what}: they are dequantized and rounded again to {qtype}, which "
                      f"loses what the quantizer chose (rtn or gptq with --grid {qtype} keep "
                      "it)", stacklevel=3)
    if arch == "llama" and (cfg.rope_scaling or {}).get("rope_type") == "llama3":
        tensors.append(_encode("rope_freqs.weight", llama3_rope_factors(cfg), "f32"))
    return meta, tensors


def _encode(name: str, W: np.ndarray, qtype: str):
    """(name, ne, type, data): 1-D as F32, 2-D in qtype (F16 if rows are not 32-aligned)."""
    ne = tuple(reversed(W.shape))
    if W.ndim == 1 or qtype == "f32":
        return name, ne, "f32", W.astype(np.float32)
    if qtype == "f16" or W.shape[-1] % 32:
        return name, ne, "f16", W.astype(np.float16)
    return name, ne, qtype, quantize_blocks(W, qtype)


def export_gguf(model, path, qtype: str = "f32", name: str | None = None,
                exact: bool = False):
    """Write `model` as a GGUF file; returns (path, bytes written).

    Refuses a path in the folder the model was loaded from (inputs are never modified).
    exact: refuse, instead of warning, when a quantized weight would be rounded again.
    """
    refuse_inputs(path, [model.path], what="GGUF file")
    meta, tensors = gguf_contents(model, qtype, name or (model.path.name if model.path
                                                         else "minislm-export"), exact)
    out = write_gguf(path, meta, tensors)
    return out, out.stat().st_size
