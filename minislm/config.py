"""Model configuration: one frozen dataclass read from either form of `config.json`.

Dimension legend used across minislm (stated once, here):
    B batch, T time (sequence), C channels (d_model), H query heads,
    K key/value heads, G = H // K query heads per KV head, D head dim,
    F feed-forward width (d_ff), V vocabulary, L layers.

Four families (their tensors and pieces are tables in `minislm.model.families`):
  * ``gpt2``  — `GPT2LMHeadModel`: learned positions, LayerNorm, GELU-tanh,
    fused q/k/v in a Conv1D (in, out) layout, tied LM head.
  * ``llama`` — `LlamaForCausalLM`: RMSNorm, RoPE (default / linear / llama3
    scaling), grouped-query attention, SwiGLU, tied or untied LM head.
  * ``gemma3`` — `Gemma3ForCausalLM` (model_type ``gemma3_text``) and ``gemma2`` —
    `Gemma2ForCausalLM`: LLaMA's attention plus embeddings scaled by √C, RMSNorm
    with gain (1 + w), four norms per block, GeGLU, attention scale
    1/√query_pre_attn_scalar, sliding-window attention on the layers `layer_types`
    marks (Gemma 3: with its own RoPE base), QK-norm (Gemma 3), soft-capped
    attention scores and logits (Gemma 2).

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

FAMILIES = ("gpt2", "llama", "gemma3", "gemma2")
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
HF_KEYS["gemma3"] = HF_KEYS["gemma2"] = dict(HF_KEYS["llama"], query_pre_attn_scalar=
                                             "query_pre_attn_scalar",
                                             attn_softcap="attn_logit_softcapping",
                                             final_softcap="final_logit_softcapping",
                                             rope_local_theta="rope_local_base_freq",
                                             padding_idx="pad_token_id")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Config:
    """A decoder's dimensions and options, the same fields for every family, validated."""
    family: str               # "gpt2" | "llama" | "gemma2" | "gemma3"
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
    padding_idx: int | None = None     # embedding row with no lookup gradient (Gemma's pad
                                       # token, as transformers' nn.Embedding(padding_idx))
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
        """The end-of-sequence token ids as a tuple (config.json gives one, a list or none)."""
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

    def select_layers(self, layers) -> "Config":
        """The config of a model whose block j is block layers[j] of this one (depth pruning,
        Franken sequences): n_layer and the per-layer attention types follow the blocks."""
        layers = [int(i) for i in layers]
        types = tuple(self.layer_types[i] for i in layers) if self.layer_types else None
        return self.replace(n_layer=len(layers), layer_types=types)

    # ------------------------------------------------------------------ checks
    def validate(self, where: str = "config") -> None:
        """Raise ConfigError naming the config.json field of the first value out of range."""
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
        need(self.padding_idx is None or (_is_int(self.padding_idx) and
                                          0 <= self.padding_idx < self.vocab_size),
             "padding_idx", "null or a token id", self.padding_idx)
        for field in ("bos_token_id", "eos_token_id"):
            value = getattr(self, field)
            ids = value if isinstance(value, (list, tuple)) else [value]
            need(value is None or all(_is_int(i) and i >= 0 for i in ids), field,
                 "null, a non-negative token id or a list of them", value)
        for field in ("query_pre_attn_scalar", "attn_softcap", "final_softcap",
                      "rope_local_theta"):
            value = getattr(self, field)
            need(value is None or (_is_number(value) and math.isfinite(value) and value > 0),
                 field, "null or a positive number", value)
        need(self.sliding_window is None or (_is_int(self.sliding_window) and
                                             self.sliding_window > 0),
             "sliding_window", "null or a positive integer", self.sliding_window)
        need(self.layer_types is None or (isinstance(self.layer_types, tuple) and
                                          len(self.layer_types) == self.n_layer and
                                          all(t in LAYER_TYPES for t in self.layer_types)),
             "layer_types", f"a list of {self.n_layer} entries from {LAYER_TYPES}",
             self.layer_types)
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
        """The Config of a config.json dict, read by its model type's reader (no remote code)."""
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a JSON object, found {type(d).__name__}")
        if d.get("auto_map") or d.get("trust_remote_code"):
            raise ConfigError(f"{where}: 'auto_map'/'trust_remote_code' asks to run code shipped "
                              "with the checkpoint; minislm never runs checkpoint code")
        model_type = d.get("model_type")
        if not isinstance(model_type, str) or model_type not in READERS:
            raise ConfigError(f"{where}: field 'model_type' must be one of {tuple(READERS)} "
                              "(GPT2LMHeadModel, LlamaForCausalLM, Gemma3ForCausalLM or "
                              f"Gemma2ForCausalLM), found {model_type!r}")

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

        cfg = READERS[model_type](cls, d, get, number, boolean, where)
        cfg.validate(where)
        return cfg

    @classmethod
    def from_file(cls, path) -> "Config":
        """The Config of a config.json file, with errors that name the file."""
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
        WRITERS[self.family](self, d)
        return d


def _read_gpt2(cls, d, get, number, boolean, where):
    """GPT2LMHeadModel's config.json."""
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
    return cfg


def _read_llama(cls, d, get, number, boolean, where):
    """LlamaForCausalLM's config.json."""
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
    return cfg


GEMMA_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_tanh", "gelu_new")
LAYER_TYPES = ("full_attention", "sliding_attention")
GEMMA = {  # model_type: (family, architecture, sliding pattern, max positions, rope θ full/sliding)
    "gemma3_text": ("gemma3", "Gemma3ForCausalLM", 6, 131_072, 1_000_000.0, 10_000.0),
    "gemma2": ("gemma2", "Gemma2ForCausalLM", 2, 8192, 10_000.0, None),
}


def _read_gemma(cls, d, get, number, boolean, where):
    """Gemma3ForCausalLM's (model_type gemma3_text) or Gemma2ForCausalLM's config.json,
    with transformers' defaults for absent fields. The sliding layers' RoPE base is read
    from `rope_parameters["sliding_attention"]` (transformers 5) or `rope_local_base_freq`."""
    family, _, pattern, max_pos, theta_full, theta_local = GEMMA[d["model_type"]]
    act = get("hidden_activation", "hidden_act", default="gelu_pytorch_tanh")
    if act not in GEMMA_ACTIVATIONS:
        raise ConfigError(f"{where}: field 'hidden_activation' must be one of "
                          f"{GEMMA_ACTIVATIONS} (GELU-tanh), found {act!r}")
    if d.get("use_bidirectional_attention"):
        raise ConfigError(f"{where}: field 'use_bidirectional_attention' = true is not supported")
    L = get("num_hidden_layers")
    layer_types = d.get("layer_types")
    if layer_types is None and _is_int(L) and 0 < L <= MAX_LAYERS:
        pattern = get("sliding_window_pattern", default=pattern)
        if not _is_int(pattern) or pattern < 1:
            raise ConfigError(f"{where}: field 'sliding_window_pattern' must be a positive "
                              f"integer, found {pattern!r}")
        layer_types = ["sliding_attention" if (i + 1) % pattern else "full_attention"
                       for i in range(L)]
    params = d.get("rope_parameters")
    if isinstance(params, dict) and isinstance(params.get("full_attention"), dict):
        full = dict(params["full_attention"])
        sliding = params.get("sliding_attention") or {}
        if not isinstance(sliding, dict):
            raise ConfigError(f"{where}: field 'rope_parameters.sliding_attention' must be an "
                              f"object, found {sliding!r}")
        sliding = dict(sliding)
        theta = full.pop("rope_theta", d.get("rope_theta", theta_full))
        local = sliding.pop("rope_theta", d.get("rope_local_base_freq", theta_local))
        if sliding.get("rope_type", "default") != "default":
            raise ConfigError(f"{where}: field 'rope_parameters.sliding_attention.rope_type' "
                              f"must be 'default', found {sliding.get('rope_type')!r}")
        scaling = _rope_scaling(full, where)
    else:
        theta, scaling = _read_rope(dict(d, rope_theta=d.get("rope_theta", theta_full)), where)
        local = d.get("rope_local_base_freq", theta_local)
    C, H = get("hidden_size"), get("num_attention_heads")
    return cls(
        family=family, vocab_size=get("vocab_size"), d_model=C, n_layer=L, n_head=H,
        n_kv_head=get("num_key_value_heads", default=H), head_dim=get("head_dim", default=256),
        d_ff=get("intermediate_size"), norm_eps=number("rms_norm_eps", 1e-6),
        max_position=get("max_position_embeddings", default=max_pos),
        tied=boolean("tie_word_embeddings", True), rope_theta=theta, rope_scaling=scaling,
        attention_bias=boolean("attention_bias", False),
        bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"),
        query_pre_attn_scalar=get("query_pre_attn_scalar", default=256),   # an int in transformers
        sliding_window=d.get("sliding_window", 4096),          # null: no window
        layer_types=tuple(layer_types) if isinstance(layer_types, list) else layer_types,
        rope_local_theta=float(local) if _is_number(local) else local,
        attn_softcap=number("attn_logit_softcapping", None),
        final_softcap=number("final_logit_softcapping", None),
        padding_idx=d.get("pad_token_id", 0), raw=d)


READERS = {"gpt2": _read_gpt2, "llama": _read_llama, "gemma3_text": _read_gemma,
           "gemma2": _read_gemma}


def _write_gpt2(cfg, d: dict) -> None:
    d.update(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=cfg.d_model,
             n_layer=cfg.n_layer, n_head=cfg.n_head, layer_norm_epsilon=cfg.norm_eps,
             n_positions=cfg.max_position, activation_function=d.get(
                 "activation_function", "gelu_new"))
    d["n_inner"] = None if cfg.d_ff == 4 * cfg.d_model else cfg.d_ff
    d["n_ctx"] = cfg.max_position


def _rope_dict(theta, scaling) -> dict:
    """transformers 5's `rope_parameters` entry for one RoPE."""
    return {"rope_theta": theta, "rope_type": "default", **(scaling or {})}


def _write_llama_shape(cfg, d: dict) -> None:
    d.update(hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layer,
             num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head,
             head_dim=cfg.head_dim, intermediate_size=cfg.d_ff, rms_norm_eps=cfg.norm_eps,
             max_position_embeddings=cfg.max_position, attention_bias=cfg.attention_bias,
             rope_theta=cfg.rope_theta,
             rope_scaling=dict(cfg.rope_scaling) if cfg.rope_scaling else None)


def _write_llama(cfg, d: dict) -> None:
    _write_llama_shape(cfg, d)
    d.update(model_type="llama", architectures=["LlamaForCausalLM"], hidden_act="silu",
             mlp_bias=cfg.mlp_bias, rope_parameters=_rope_dict(cfg.rope_theta, cfg.rope_scaling))


def _write_gemma(cfg, d: dict) -> None:
    model_type = next(t for t, row in GEMMA.items() if row[0] == cfg.family)
    _write_llama_shape(cfg, d)
    d.update(model_type=model_type, architectures=[GEMMA[model_type][1]],
             hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=cfg.query_pre_attn_scalar,
             sliding_window=cfg.sliding_window,
             layer_types=list(cfg.layer_types) if cfg.layer_types else None,
             attn_logit_softcapping=cfg.attn_softcap, final_logit_softcapping=cfg.final_softcap)
    d.pop("sliding_window_pattern", None)
    if cfg.rope_local_theta is None:                      # one RoPE for every layer (Gemma 2)
        d["rope_parameters"] = _rope_dict(cfg.rope_theta, cfg.rope_scaling)
    else:                                                 # Gemma 3: one per layer type
        d["rope_local_base_freq"] = cfg.rope_local_theta
        d["rope_parameters"] = {
            "full_attention": _rope_dict(cfg.rope_theta, cfg.rope_scaling),
            "sliding_attention": _rope_dict(cfg.rope_local_theta, None)}


WRITERS = {"gpt2": _write_gpt2, "llama": _write_llama, "gemma3": _write_gemma,
           "gemma2": _write_gemma}


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
    return theta, _rope_scaling(scaling, where)


def _rope_scaling(scaling, where: str) -> dict | None:
    """The scaling entry normalised: None for "default", "type" renamed "rope_type"."""
    if scaling is not None:
        if not isinstance(scaling, dict):
            raise ConfigError(f"{where}: field 'rope_scaling' must be an object or null, "
                              f"found {scaling!r}")
        scaling = dict(scaling)
        if "rope_type" not in scaling and "type" in scaling:
            scaling["rope_type"] = scaling.pop("type")
        if scaling.get("rope_type") == "default":
            scaling = None
    return scaling
