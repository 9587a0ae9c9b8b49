"""The two families as tables: every checkpoint tensor name, its shape, and its role.

This is the one abstraction every technique needs (see ARCHITECTURE.md):
`model.params` keeps the checkpoint's own names and layouts, and
`linear_layers(config)` names every linear weight with its role and
orientation, so GPTQ, WANDA, LoRA, RTN and the cost model have one code path
for both families.

Layout traps, stated once:
  * GPT-2 stores linear weights as Conv1D, shape (in, out): y = x W + b.
    Its `c_attn` fuses q, k, v along the output axis: W[:, 0:C] is q, W[:, C:2C]
    is k, W[:, 2C:3C] is v.
  * LLaMA stores nn.Linear, shape (out, in): y = x Wᵀ. HF's q/k rows are ordered
    for the split-halves RoPE (pair i with i + D/2), which `layers.rotate_half` uses.
  * Tied heads: the LM head is the token embedding; there is no `lm_head.weight`.
  * GPT-2 checkpoints from the Hub name tensors `h.0.attn...`; ones written by
    transformers' `save_pretrained` prefix them with `transformer.`. Both are kept
    as found: `prefix` is "" or "transformer." (LLaMA always "model.").
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import Config

GPT2_PREFIXES = ("transformer.", "")


@dataclass(frozen=True)
class Linear:
    """One linear weight of the model."""
    name: str          # checkpoint tensor name of the weight
    bias: str | None   # checkpoint tensor name of the bias, if the family has one
    role: str          # qkv (fused), q, k, v, o, fc, proj, gate, up, down, lm_head
    layer: int | None  # block index, None for the LM head
    orientation: str   # "in_out" (GPT-2 Conv1D) or "out_in" (nn.Linear)
    d_in: int
    d_out: int


def block_prefix(config: Config, prefix: str, i: int) -> str:
    return f"{prefix}h.{i}." if config.family == "gpt2" else f"model.layers.{i}."


def default_prefix(config: Config) -> str:
    return "transformer." if config.family == "gpt2" else "model."


def embedding_name(config: Config, prefix: str) -> str:
    return f"{prefix}wte.weight" if config.family == "gpt2" else "model.embed_tokens.weight"


def lm_head_name(config: Config, prefix: str) -> str:
    """The tensor the logits are computed from: the embedding when tied."""
    return embedding_name(config, prefix) if config.tied else "lm_head.weight"


def linear_layers(config: Config, prefix: str | None = None, include_lm_head: bool = False):
    """Every linear weight as a `Linear` record, in forward order."""
    prefix = default_prefix(config) if prefix is None else prefix
    C, F, H, K, D = config.d_model, config.d_ff, config.n_head, config.n_kv_head, config.head_dim
    out = []
    for i in range(config.n_layer):
        p = block_prefix(config, prefix, i)
        if config.family == "gpt2":
            rows = [("attn.c_attn", "qkv", C, 3 * C), ("attn.c_proj", "o", C, C),
                    ("mlp.c_fc", "fc", C, F), ("mlp.c_proj", "proj", F, C)]
            out += [Linear(f"{p}{n}.weight", f"{p}{n}.bias", role, i, "in_out", din, dout)
                    for n, role, din, dout in rows]
        else:
            rows = [("self_attn.q_proj", "q", C, H * D, config.attention_bias),
                    ("self_attn.k_proj", "k", C, K * D, config.attention_bias),
                    ("self_attn.v_proj", "v", C, K * D, config.attention_bias),
                    ("self_attn.o_proj", "o", H * D, C, config.attention_bias),
                    ("mlp.gate_proj", "gate", C, F, config.mlp_bias),
                    ("mlp.up_proj", "up", C, F, config.mlp_bias),
                    ("mlp.down_proj", "down", F, C, config.mlp_bias)]
            out += [Linear(f"{p}{n}.weight", f"{p}{n}.bias" if bias else None, role, i,
                           "out_in", din, dout) for n, role, din, dout, bias in rows]
    if include_lm_head:
        out.append(Linear(lm_head_name(config, prefix), None, "lm_head", None, "out_in",
                          C, config.vocab_size))
    return out


def expected_shapes(config: Config, prefix: str | None = None) -> dict[str, tuple]:
    """Every tensor a checkpoint of this config must contain, with its shape."""
    prefix = default_prefix(config) if prefix is None else prefix
    C, V = config.d_model, config.vocab_size
    shapes = {}
    for lin in linear_layers(config, prefix):
        shapes[lin.name] = (lin.d_in, lin.d_out) if lin.orientation == "in_out" \
            else (lin.d_out, lin.d_in)
        if lin.bias:
            shapes[lin.bias] = (lin.d_out,)
    if config.family == "gpt2":
        shapes[f"{prefix}wte.weight"] = (V, C)
        shapes[f"{prefix}wpe.weight"] = (config.max_position, C)
        for i in range(config.n_layer):
            p = block_prefix(config, prefix, i)
            for norm in ("ln_1", "ln_2"):
                shapes[f"{p}{norm}.weight"] = (C,)
                shapes[f"{p}{norm}.bias"] = (C,)
        shapes[f"{prefix}ln_f.weight"] = (C,)
        shapes[f"{prefix}ln_f.bias"] = (C,)
    else:
        shapes["model.embed_tokens.weight"] = (V, C)
        for i in range(config.n_layer):
            p = block_prefix(config, prefix, i)
            shapes[f"{p}input_layernorm.weight"] = (C,)
            shapes[f"{p}post_attention_layernorm.weight"] = (C,)
        shapes["model.norm.weight"] = (C,)
        if not config.tied:
            shapes["lm_head.weight"] = (V, C)
    return shapes


def ignorable(config: Config, name: str) -> bool:
    """Tensors found in real checkpoints that are buffers, not parameters."""
    if config.family == "gpt2":
        return name.endswith((".attn.bias", ".attn.masked_bias")) or \
            (config.tied and name == "lm_head.weight")
    return name.endswith("rotary_emb.inv_freq") or (config.tied and name == "lm_head.weight")


def detect_prefix(config: Config, names) -> str:
    if config.family == "llama":
        return "model."
    for prefix in GPT2_PREFIXES:
        if f"{prefix}wte.weight" in names:
            return prefix
    return "transformer."
