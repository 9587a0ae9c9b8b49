"""A GGUF file as a minislm Model: transformers' config, tensor names and layouts.

`model.params` of a loaded GGUF is exactly what transformers' own GGUF loader
(`modeling_gguf_pytorch_utils.load_gguf_checkpoint`) produces: same names, shapes and
float32 values, with the tied head absent. llama.cpp's converter changed three things
on the way in, undone here per architecture:

  * llama  — q/k rows permuted from HF's split-halves RoPE pairing (i, i + D/2) to
             llama.cpp's interleaved one (2i, 2i + 1): `rope_rows_to_halves` undoes it.
  * gemma3 — every RMSNorm weight stored as (1 + w), the factor Gemma multiplies by:
             the norms get w = stored − 1.
  * gpt2   — Conv1D weights (in, out) stored transposed like nn.Linear: transposed back;
             the tied head is stored again as `output.weight`.

The config is rebuilt from `<arch>.*` metadata with the fields transformers writes;
the tokenizer from `tokenizer.ggml.*` (tokenizer.py).
"""
from __future__ import annotations

import re

import numpy as np

from ..config import Config
from ..errors import CheckpointError, ConfigError, NumericalError
from ..model import Model, families
from .reader import GGUFFile, read_gguf
from .tokenizer import build_tokenizer

# GGUF block tensor -> transformers name, per architecture ({} = the block index)
LLAMA_BLOCK = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
               "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
               "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
GEMMA3_BLOCK = dict(LLAMA_BLOCK, ffn_norm="pre_feedforward_layernorm",
                    post_attention_norm="post_attention_layernorm",
                    post_ffw_norm="post_feedforward_layernorm",
                    attn_q_norm="self_attn.q_norm", attn_k_norm="self_attn.k_norm")
GPT2_BLOCK = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
              "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
NAMES = {
    "llama": ({"token_embd": "model.embed_tokens", "output_norm": "model.norm",
               "output": "lm_head"}, "model.layers.{}.", LLAMA_BLOCK),
    "gemma3": ({"token_embd": "model.embed_tokens", "output_norm": "model.norm",
                "output": "lm_head"}, "model.layers.{}.", GEMMA3_BLOCK),
    "gpt2": ({"token_embd": "transformer.wte", "position_embd": "transformer.wpe",
              "output_norm": "transformer.ln_f", "output": "lm_head"}, "transformer.h.{}.",
             GPT2_BLOCK),
}
SUPPORTED = tuple(NAMES)
GEMMA3_SLIDING_PATTERN = 6          # llama.cpp's gemma3: every 6th layer attends globally
GEMMA3_LOCAL_ROPE_BASE = 10000.0


def rope_rows_to_pairs(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF → llama.cpp (llama.cpp's converter `permute`): per head, rows (i, i + D/2) become
    (2i, 2i + 1): rows [h, 2, D/2] -> [h, D/2, 2]."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_rows_to_halves(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp → HF, the inverse: rows [h, D/2, 2] -> [h, 2, D/2]."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_name(arch: str, gguf_name: str) -> str | None:
    """transformers' name for a GGUF tensor name, or None if the architecture has none."""
    top, block_prefix, block = NAMES[arch]
    stem, dot, suffix = gguf_name.rpartition(".")
    if not dot or suffix not in ("weight", "bias"):
        return None
    if stem in top:
        return f"{top[stem]}.{suffix}"
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)", stem)
    if match and match[2] in block:
        return f"{block_prefix.format(match[1])}{block[match[2]]}.{suffix}"
    return None


# ----------------------------------------------------------------------------- config
def _meta(f: GGUFFile, key: str, default=KeyError):
    full = f"{f.architecture}.{key}"
    if full in f.metadata:
        return f.metadata[full]
    if default is KeyError:
        raise CheckpointError(f"{f.path}: metadata '{full}' is missing")
    return default


def _token_ids(f: GGUFFile) -> dict:
    ids = {}
    for ours, theirs in (("bos_token_id", "bos"), ("eos_token_id", "eos"),
                         ("pad_token_id", "padding"), ("unk_token_id", "unknown")):
        value = f.metadata.get(f"tokenizer.ggml.{theirs}_token_id")
        if value is not None:
            ids[ours] = int(value)
    return ids


def hf_config(f: GGUFFile) -> dict:
    """The config.json transformers' GGUF loader builds from this file's metadata."""
    arch = f.architecture
    if arch not in SUPPORTED:
        raise CheckpointError(f"{f.path}: architecture {arch!r} is not supported (minislm reads "
                              f"GGUF files of {', '.join(SUPPORTED)})")
    tokens = f.metadata.get("tokenizer.ggml.tokens")
    vocab = _meta(f, "vocab_size", len(tokens) if tokens is not None else None)
    if vocab is None:
        raise CheckpointError(f"{f.path}: neither {arch}.vocab_size nor tokenizer.ggml.tokens "
                              "says how large the vocabulary is")
    scaling = f.metadata.get(f"{arch}.rope.scaling.type", "none")
    if scaling != "none":
        raise CheckpointError(f"{f.path}: RoPE scaling {scaling!r} ({arch}.rope.scaling.type) "
                              "is not supported")
    tied = "output.weight" not in f.tensors or _stores_tied_head(f)
    C, H = _meta(f, "embedding_length"), _meta(f, "attention.head_count")
    common = dict(vocab_size=int(vocab), tie_word_embeddings=tied, **_token_ids(f))
    if arch == "gpt2":
        F = _meta(f, "feed_forward_length", 4 * C)
        n_ctx = _meta(f, "context_length")
        return dict(common, model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=C,
                    n_layer=_meta(f, "block_count"), n_head=H, n_ctx=n_ctx, n_positions=n_ctx,
                    n_inner=None if F == 4 * C else F, activation_function="gelu_new",
                    layer_norm_epsilon=_meta(f, "attention.layer_norm_epsilon"))
    shape = dict(hidden_size=C, intermediate_size=_meta(f, "feed_forward_length"),
                 num_hidden_layers=_meta(f, "block_count"), num_attention_heads=H,
                 num_key_value_heads=_meta(f, "attention.head_count_kv", H),
                 max_position_embeddings=_meta(f, "context_length"),
                 rms_norm_eps=_meta(f, "attention.layer_norm_rms_epsilon"))
    theta = float(_meta(f, "rope.freq_base", 10000.0))
    if arch == "llama":
        return dict(common, **shape, model_type="llama", architectures=["LlamaForCausalLM"],
                    head_dim=_meta(f, "rope.dimension_count", C // H), hidden_act="silu",
                    attention_bias=False, mlp_bias=False, rope_theta=theta,
                    rope_parameters={"rope_type": "default", "rope_theta": theta})
    L = shape["num_hidden_layers"]
    D = _meta(f, "attention.key_length")
    # llama.cpp's gemma3 defaults (every 6th block global, local base 10000), unless the file
    # names its sliding blocks (one bool each) and their RoPE base, as minislm's export does
    window = _meta(f, "attention.sliding_window", None) or None   # none or 0: no sliding
    sliding = _meta(f, "attention.sliding_window_pattern",
                    [window is not None and (i + 1) % GEMMA3_SLIDING_PATTERN != 0
                     for i in range(L)])
    if not isinstance(sliding, (list, tuple, np.ndarray)) or len(sliding) != L:
        raise CheckpointError(f"{f.path}: gemma3.attention.sliding_window_pattern must be one "
                              f"bool per block ({L}), found {sliding!r}"[:300])
    return dict(   # gemma3: transformers' Gemma3TextConfig with the file's dimensions
        common, **shape, model_type="gemma3_text", architectures=["Gemma3ForCausalLM"],
        head_dim=D, hidden_activation="gelu_pytorch_tanh",
        # llama.cpp scales q kᵀ by 1/√head_dim (transformers' default 256 is the same on
        # the released 270M-12B models, whose head_dim is 256)
        query_pre_attn_scalar=D, sliding_window=window,
        layer_types=["sliding_attention" if window and bool(s) else "full_attention"
                     for s in sliding],
        rope_parameters={"sliding_attention": {
                            "rope_type": "default",
                            "rope_theta": float(_meta(f, "rope.freq_base_swa",
                                                      GEMMA3_LOCAL_ROPE_BASE))},
                         "full_attention": {"rope_type": "default", "rope_theta": theta}},
        final_logit_softcapping=None, attn_logit_softcapping=None, attention_bias=False,
        attention_dropout=0.0, use_bidirectional_attention=False)


def _stores_tied_head(f: GGUFFile) -> bool:
    """GPT-2 files store the tied head a second time as output.weight."""
    return f.architecture == "gpt2" and "token_embd.weight" in f.tensors and \
        f.tensors["output.weight"].ggml_type == f.tensors["token_embd.weight"].ggml_type and \
        np.array_equal(f.tensor_bytes("output.weight"), f.tensor_bytes("token_embd.weight"))


# ----------------------------------------------------------------------------- tensors
def hf_params(f: GGUFFile, config: dict, dtype=np.float32) -> dict[str, np.ndarray]:
    """Every tensor of the file under transformers' name, in its layout, as `dtype`."""
    arch = f.architecture
    if "rope_freqs.weight" in f.tensors:
        raise CheckpointError(f"{f.path}: RoPE frequency factors (rope_freqs.weight, LLaMA-3.1+ "
                              "long-context scaling) are not supported")
    params = {}
    for name in f.tensors:
        target = hf_name(arch, name)
        if target is None:
            raise CheckpointError(f"{f.path}: unexpected tensor '{name}' (not part of a {arch} "
                                  "model as minislm maps it)")
        if target == "lm_head.weight" and config["tie_word_embeddings"]:
            continue
        w = f.tensor(name)
        if arch == "llama" and target.endswith("self_attn.q_proj.weight"):
            w = rope_rows_to_halves(w, config["num_attention_heads"])
        elif arch == "llama" and target.endswith("self_attn.k_proj.weight"):
            w = rope_rows_to_halves(w, config["num_key_value_heads"])
        elif arch == "gemma3" and "norm.weight" in name:
            w = w - np.float32(1)
        elif arch == "gpt2" and w.ndim == 2 and name.startswith("blk."):
            w = w.T                                   # Conv1D stores (in, out)
        if not np.isfinite(w).all():
            raise NumericalError(f"{f.path}: tensor '{name}' contains "
                                 f"{int(w.size - np.isfinite(w).sum())} NaN/Inf values")
        params[target] = np.ascontiguousarray(w, dtype=dtype)
    return params


def load_gguf(path, dtype=np.float32) -> Model:
    """`minislm.load` of a .gguf file."""
    f = read_gguf(path)
    raw = hf_config(f)
    try:
        config = Config.from_hf_dict(raw, where=f"{f.path} (config from GGUF metadata)")
    except ConfigError as e:
        raise CheckpointError(f"{f.path}: {f.architecture} GGUF files need the "
                              f"{raw['model_type']} family, which this minislm cannot build "
                              f"({e})") from None
    params = hf_params(f, raw, dtype)
    prefix = families.detect_prefix(config, params)
    expected = families.expected_shapes(config, prefix)
    found = {name: tuple(arr.shape) for name, arr in params.items()}
    if found != expected:
        wrong = sorted(set(found.items()) ^ set(expected.items()))[:5]
        raise CheckpointError(f"{f.path}: tensors do not match the {config.family} config from "
                              f"its metadata (first differences, name and shape: {wrong})")
    tokenizer = build_tokenizer(f.metadata, str(f.path)) if "tokenizer.ggml.tokens" in \
        f.metadata else None
    return Model(config=config, params=params, tokenizer=tokenizer, prefix=prefix,
                 path=f.path.resolve())


def tokenizer_config(path) -> dict:
    """tokenizer_config.json fields a GGUF states: special tokens, BOS/EOS flags, chat template."""
    meta = read_gguf(path).metadata
    tokens = meta.get("tokenizer.ggml.tokens") or []
    out = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for field, key in (("bos_token", "bos"), ("eos_token", "eos"), ("pad_token", "padding"),
                       ("unk_token", "unknown")):
        token_id = meta.get(f"tokenizer.ggml.{key}_token_id")
        if isinstance(token_id, int) and 0 <= token_id < len(tokens):
            out[field] = tokens[token_id]
    for field in ("add_bos_token", "add_eos_token"):
        if f"tokenizer.ggml.{field}" in meta:
            out[field] = bool(meta[f"tokenizer.ggml.{field}"])
    if "tokenizer.chat_template" in meta:
        out["chat_template"] = meta["tokenizer.chat_template"]
    return out
