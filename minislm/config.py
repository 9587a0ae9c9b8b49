"""Model configuration: one frozen dataclass read from either form of `config.json`.

Dimension legend used across minislm (stated once, here):
    B batch, T time (sequence), C channels (d_model), H query heads,
    K key/value heads, G = H // K query heads per KV head, D head dim,
    F feed-forward width (d_ff), V vocabulary, L layers.

Two families:
  * ``gpt2``  — `GPT2LMHeadModel`: learned positions, LayerNorm, GELU-tanh,
    fused q/k/v in a Conv1D (in, out) layout, tied LM head.
  * ``llama`` — `LlamaForCausalLM`: RMSNorm, RoPE (default / linear / llama3
    scaling), grouped-query attention, SwiGLU, tied or untied LM head.

`config.json` comes in two dialects for RoPE: the older top-level
``rope_theta`` + ``rope_scaling`` (real LLaMA-3.2 checkpoints) and
transformers 5's ``rope_parameters`` (what the installed transformers writes).
Both are read; `to_hf_dict` writes the older one back, plus `rope_parameters`
when the source had it, so either transformers generation can read our output.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from .errors import ConfigError

FAMILIES = ("gpt2", "llama")
MAX_LAYERS = 10_000     # real decoders have at most a few hundred blocks; every consumer of a
                        # config enumerates them, so an absurd n_layer would hang, not fail
ROPE_TYPES = ("default", "linear", "llama3")
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# config.json key of each Config field, so error messages name what the user sees in the file
HF_KEYS = {
    "gpt2": {"d_model": "n_embd", "n_layer": "n_layer", "n_head": "n_head", "d_ff": "n_inner",
             "max_position": "n_positions", "norm_eps": "layer_norm_epsilon"},
    "llama": {"d_model": "hidden_size", "n_layer": "num_hidden_layers",
              "n_head": "num_attention_heads", "n_kv_head": "num_key_value_heads",
              "d_ff": "intermediate_size", "max_position": "max_position_embeddings",
              "norm_eps": "rms_norm_eps"},
}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Config:
    family: str               # "gpt2" | "llama"
    vocab_size: int           # V
    d_model: int              # C
    n_layer: int              # L
    n_head: int               # H
    n_kv_head: int            # K (== H for GPT-2)
    head_dim: int             # D
    d_ff: int                 # F
    norm_eps: float
    max_position: int
    tied: bool                # LM head shares the token embedding
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None   # {"rope_type": ..., "factor": ..., ...} or None
    attention_bias: bool = False       # LLaMA q/k/v/o biases
    mlp_bias: bool = False             # LLaMA gate/up/down biases
    bos_token_id: int | None = None
    eos_token_id: int | tuple | None = None
    query_pre_attn_scalar: float | None = None   # attention scale 1/√this (Gemma), else 1/√D
    sliding_window: int | None = None  # keys a sliding-attention layer sees (itself included)
    layer_types: tuple | None = None   # per block "full_attention" | "sliding_attention"
    rope_local_theta: float | None = None   # RoPE base of the sliding layers (Gemma 3)
    attn_softcap: float | None = None  # scores -> cap · tanh(scores / cap) (Gemma 2)
    final_softcap: float | None = None  # logits -> cap · tanh(logits / cap) (Gemma 2)
    raw: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def n_rep(self) -> int:
        """G: query heads sharing one KV head."""
        return self.n_head // self.n_kv_head

    @property
    def attention_scale(self) -> float:
        """The factor on q kᵀ: 1/√D, or 1/√query_pre_attn_scalar where the config sets it."""
        if self.query_pre_attn_scalar is not None:
            return self.query_pre_attn_scalar ** -0.5
        return 1.0 / math.sqrt(self.head_dim)

    def layer_type(self, i: int) -> str:
        """"full_attention" or "sliding_attention" for block i."""
        return self.layer_types[i] if self.layer_types else "full_attention"

    def window_of_layer(self, i: int) -> int | None:
        """The sliding window of block i (None: it attends to every earlier position)."""
        return self.sliding_window if self.layer_type(i) == "sliding_attention" else None

    def rope_of_type(self, layer_type: str) -> tuple[float, dict | None]:
        """(θ, scaling) of the RoPE a layer type uses: sliding layers have their own base."""
        if layer_type == "sliding_attention" and self.rope_local_theta is not None:
            return self.rope_local_theta, None
        return self.rope_theta, self.rope_scaling

    @property
    def eos_ids(self) -> tuple:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, (list, tuple)):
            return tuple(int(i) for i in self.eos_token_id)
        return (int(self.eos_token_id),)

    def replace(self, **changes) -> "Config":
        """A copy with some dimensions changed (pruning, trimming), re-validated."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    # ------------------------------------------------------------------ checks
    def validate(self, where: str = "config") -> None:
        def need(cond, field, expected, found):
            if not cond:
                field = HF_KEYS.get(self.family, {}).get(field, field)
                raise ConfigError(f"{where}: field '{field}' must be {expected}, found {found!r}")

        need(self.family in FAMILIES, "model_type", f"one of {FAMILIES}", self.family)
        for field in ("vocab_size", "d_model", "n_layer", "n_head", "n_kv_head", "head_dim",
                      "d_ff", "max_position"):
            value = getattr(self, field)
            need(_is_int(value) and value > 0, field, "a positive integer", value)
        need(self.n_layer <= MAX_LAYERS, "n_layer", f"at most {MAX_LAYERS}", self.n_layer)
        need(self.n_head % self.n_kv_head == 0, "num_key_value_heads",
             f"a divisor of num_attention_heads ({self.n_head})", self.n_kv_head)
        if self.family == "gpt2":
            need(self.n_head * self.head_dim == self.d_model, "n_head",
                 f"a divisor of n_embd ({self.d_model})", self.n_head)
            need(self.n_kv_head == self.n_head, "n_kv_head", "equal to n_head for GPT-2",
                 self.n_kv_head)
        need(self.head_dim % 2 == 0 or self.family == "gpt2", "head_dim",
             "even (RoPE rotates pairs)", self.head_dim)
        need(_is_number(self.norm_eps) and math.isfinite(self.norm_eps) and self.norm_eps > 0,
             "norm_eps", "a positive float", self.norm_eps)
        need(_is_number(self.rope_theta) and math.isfinite(self.rope_theta) and
             self.rope_theta > 0, "rope_theta", "a positive number", self.rope_theta)
        for field in ("bos_token_id", "eos_token_id"):
            value = getattr(self, field)
            ids = value if isinstance(value, (list, tuple)) else [value]
            need(value is None or all(_is_int(i) and i >= 0 for i in ids), field,
                 "null, a non-negative token id or a list of them", value)
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            need(kind in ROPE_TYPES, "rope_scaling.rope_type", f"one of {ROPE_TYPES}", kind)
            if kind in ("linear", "llama3"):
                factor = self.rope_scaling.get("factor")
                need(_is_number(factor) and factor > 0, "rope_scaling.factor",
                     "a positive number", factor)
            if kind == "llama3":
                for key in ("low_freq_factor", "high_freq_factor",
                            "original_max_position_embeddings"):
                    value = self.rope_scaling.get(key)
                    need(_is_number(value) and value > 0,
                         f"rope_scaling.{key}", "a positive number", value)
                need(self.rope_scaling["high_freq_factor"] != self.rope_scaling["low_freq_factor"],
                     "rope_scaling.high_freq_factor", "different from low_freq_factor",
                     self.rope_scaling["high_freq_factor"])

    # --------------------------------------------------------------- reading
    @classmethod
    def from_hf_dict(cls, d: dict, where: str = "config.json") -> "Config":
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a JSON object, found {type(d).__name__}")
        if d.get("auto_map") or d.get("trust_remote_code"):
            raise ConfigError(f"{where}: 'auto_map'/'trust_remote_code' asks to run code shipped "
                              "with the checkpoint; minislm never runs checkpoint code")
        model_type = d.get("model_type")
        if model_type not in FAMILIES:
            raise ConfigError(f"{where}: field 'model_type' must be one of {FAMILIES} "
                              f"(GPT2LMHeadModel or LlamaForCausalLM), found {model_type!r}")

        def get(*keys, default=KeyError):
            for key in keys:
                if key in d and d[key] is not None:
                    return d[key]
            if default is KeyError:
                raise ConfigError(f"{where}: missing field '{keys[0]}'")
            return default

        def number(key, default):  # ints become floats; anything else is left for validate()
            value = get(key, default=default)
            return float(value) if _is_number(value) else value

        def boolean(key, default):
            value = get(key, default=default)
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: field '{key}' must be true or false, "
                                  f"found {value!r}")
            return value

        if model_type == "gpt2":
            act = get("activation_function", default="gelu_new")
            if act not in GPT2_ACTIVATIONS:
                raise ConfigError(f"{where}: field 'activation_function' must be one of "
                                  f"{GPT2_ACTIVATIONS} (GELU-tanh), found {act!r}")
            for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
                if d.get(flag):
                    raise ConfigError(f"{where}: field '{flag}' = true is not supported")
            if d.get("scale_attn_weights") is False:
                raise ConfigError(f"{where}: field 'scale_attn_weights' = false is not supported")
            C, H = get("n_embd"), get("n_head")
            head_dim = C // H if isinstance(C, int) and isinstance(H, int) and H > 0 else H
            cfg = cls(
                family="gpt2", vocab_size=get("vocab_size"), d_model=C, n_layer=get("n_layer"),
                n_head=H, n_kv_head=H, head_dim=head_dim,
                d_ff=get("n_inner", default=None) or (4 * C if isinstance(C, int) else C),
                norm_eps=number("layer_norm_epsilon", 1e-5),
                max_position=get("n_positions", "n_ctx"),
                tied=boolean("tie_word_embeddings", True),
                bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"), raw=d)
            if not cfg.tied:
                raise ConfigError(f"{where}: field 'tie_word_embeddings' = false (GPT-2 with "
                                  "an untied LM head) is not supported")
        else:
            act = get("hidden_act", default="silu")
            if act != "silu":
                raise ConfigError(f"{where}: field 'hidden_act' must be 'silu', found {act!r}")
            C, H = get("hidden_size"), get("num_attention_heads")
            default_hd = C // H if isinstance(C, int) and isinstance(H, int) and H > 0 else None
            theta, scaling = _read_rope(d, where)
            cfg = cls(
                family="llama", vocab_size=get("vocab_size"), d_model=C,
                n_layer=get("num_hidden_layers"), n_head=H,
                n_kv_head=get("num_key_value_heads", default=H),
                head_dim=get("head_dim", default=default_hd),
                d_ff=get("intermediate_size"), norm_eps=number("rms_norm_eps", 1e-6),
                max_position=get("max_position_embeddings", default=2048),
                tied=boolean("tie_word_embeddings", False),
                rope_theta=theta, rope_scaling=scaling,
                attention_bias=boolean("attention_bias", False),
                mlp_bias=boolean("mlp_bias", False),
                bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"), raw=d)
        cfg.validate(where)
        return cfg

    @classmethod
    def from_file(cls, path) -> "Config":
        path = Path(path)
        if path.exists() and not path.is_file():   # a folder, or a FIFO that would block
            raise ConfigError(f"{path}: not a regular file (expected config.json)")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config.json not found") from None
        except (UnicodeDecodeError, OSError) as e:
            raise ConfigError(f"{path}: cannot read as UTF-8 text ({e})") from None
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as e:  # ValueError: bad JSON or a huge integer
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        return cls.from_hf_dict(d, where=str(path))

    # --------------------------------------------------------------- writing
    def to_hf_dict(self) -> dict:
        """The `config.json` transformers needs, keeping unknown fields of the source."""
        d: dict[str, Any] = {k: v for k, v in self.raw.items()
                             if k not in ("torch_dtype", "dtype", "transformers_version")}
        d["vocab_size"] = self.vocab_size
        d["bos_token_id"] = self.bos_token_id
        d["eos_token_id"] = list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) \
            else self.eos_token_id
        d["tie_word_embeddings"] = self.tied
        d["torch_dtype"] = "float32"
        if self.family == "gpt2":
            d.update(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=self.d_model,
                     n_layer=self.n_layer, n_head=self.n_head, layer_norm_epsilon=self.norm_eps,
                     n_positions=self.max_position, activation_function=d.get(
                         "activation_function", "gelu_new"))
            d["n_inner"] = None if self.d_ff == 4 * self.d_model else self.d_ff
            d.setdefault("n_ctx", self.max_position)
            d["n_ctx"] = self.max_position
        else:
            d.update(model_type="llama", architectures=["LlamaForCausalLM"],
                     hidden_size=self.d_model, num_hidden_layers=self.n_layer,
                     num_attention_heads=self.n_head, num_key_value_heads=self.n_kv_head,
                     head_dim=self.head_dim, intermediate_size=self.d_ff,
                     rms_norm_eps=self.norm_eps, max_position_embeddings=self.max_position,
                     hidden_act="silu", attention_bias=self.attention_bias,
                     mlp_bias=self.mlp_bias, rope_theta=self.rope_theta,
                     rope_scaling=dict(self.rope_scaling) if self.rope_scaling else None)
            params = {"rope_theta": self.rope_theta, "rope_type": "default"}
            if self.rope_scaling:
                params.update(self.rope_scaling)
            d["rope_parameters"] = params
        return d


def _read_rope(d: dict, where: str) -> tuple[float, dict | None]:
    """(rope_theta, rope_scaling) from either config dialect.

    transformers 5 writes ``rope_parameters = {"rope_type": ..., "rope_theta": ..., ...}``;
    older files (real LLaMA-3.2) write top-level ``rope_theta`` and ``rope_scaling``.
    """
    params = d.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:
        theta = params["rope_theta"]
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = d.get("rope_theta", 10000.0)
        scaling = d.get("rope_scaling")
    if scaling is not None:
        if not isinstance(scaling, dict):
            raise ConfigError(f"{where}: field 'rope_scaling' must be an object or null, "
                              f"found {scaling!r}")
        scaling = dict(scaling)
        if "rope_type" not in scaling and "type" in scaling:
            scaling["rope_type"] = scaling.pop("type")
        if scaling.get("rope_type") == "default":
            scaling = None
    return theta, scaling
