"""A freshly initialised model, ready to train (new configs: GPT-2 or LLaMA).

Initialisation of GPT-2 (Radford et al. 2019, section 2.3; HF `_init_weights`):
every linear weight and embedding ~ N(0, 0.02²), biases 0, norm gains 1
(stored as w = 1 − offset: Gemma's RMSNorm multiplies by 1 + w, so its w starts at 0),
and the projections that write into the residual stream (attention output,
MLP down/proj) ~ N(0, (0.02/√(2L))²) so the residual's variance does not grow
with depth. The same scheme is used for LLaMA.
"""
from __future__ import annotations

import math

import numpy as np

from ..config import Config
from ..errors import ConfigError
from ..model import Model, families

RESIDUAL_ROLES = ("o", "proj", "down")


def hf_config_dict(family: str, vocab_size: int, d_model: int, n_layer: int, n_head: int,
                   d_ff: int, max_position: int, n_kv_head: int | None = None,
                   tied: bool = True, rope_theta: float = 10000.0, eos_id: int | None = None,
                   bos_id: int | None = None) -> dict:
    """The config.json of a new model in transformers' own vocabulary."""
    if family == "gpt2":
        return dict(model_type="gpt2", vocab_size=vocab_size, n_embd=d_model, n_layer=n_layer,
                    n_head=n_head, n_inner=d_ff, n_positions=max_position, n_ctx=max_position,
                    activation_function="gelu_new", layer_norm_epsilon=1e-5,
                    tie_word_embeddings=True, bos_token_id=bos_id, eos_token_id=eos_id)
    if family == "llama":
        return dict(model_type="llama", vocab_size=vocab_size, hidden_size=d_model,
                    num_hidden_layers=n_layer, num_attention_heads=n_head,
                    num_key_value_heads=n_kv_head or n_head, head_dim=d_model // n_head,
                    intermediate_size=d_ff, max_position_embeddings=max_position,
                    rms_norm_eps=1e-5, rope_theta=rope_theta, hidden_act="silu",
                    tie_word_embeddings=tied, bos_token_id=bos_id, eos_token_id=eos_id)
    raise ConfigError(f"--init must be 'gpt2' or 'llama', found {family!r}")


def init_model(config: Config, seed: int = 0, tokenizer=None, std: float = 0.02) -> Model:
    """A Model of `config` with GPT-2's initialisation, from np.random.default_rng(seed)."""
    rng = np.random.default_rng(seed)
    prefix = families.default_prefix(config)
    residual = {lin.name for lin in families.linear_layers(config, prefix)
                if lin.role in RESIDUAL_ROLES}
    residual_std = std / math.sqrt(2 * config.n_layer)
    shapes = families.expected_shapes(config, prefix)
    gain = 1.0 - families.family(config).norm_offset     # the stored w whose gain is 1
    params = {}
    for name in sorted(shapes):                    # a fixed order: the same seed, the same model
        shape = shapes[name]
        if len(shape) == 1:
            is_gain = name.endswith("weight")      # LayerNorm / RMSNorm gains
            params[name] = np.full(shape, gain if is_gain else 0.0, dtype=np.float32)
        else:
            s = residual_std if name in residual else std
            params[name] = (rng.standard_normal(shape) * s).astype(np.float32)
    return Model(config=config, params=params, tokenizer=tokenizer, prefix=prefix)
