"""Tiny checkpoints and malformed-file builders shared by the reliability tests.

Everything here is made with minislm itself (no torch), in milliseconds: a
byte-level BPE tokenizer trained on a few lines, random float32 weights of the
shapes `families.expected_shapes` asks for, and raw safetensors bytes written by
hand so a test can make the header lie in any way it likes.
"""
from __future__ import annotations

import hashlib
import json
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np

from minislm.checkpoint import write_safetensors
from minislm.config import Config
from minislm.model import families

TEXT = ("def add(a, b):\n    return a + b\n\nReturn the sum of two numbers.\n"
        "The quick brown fox jumps over the lazy dog. Ünïcödé text: ½ → ∞\n") * 20


@lru_cache(maxsize=1)
def tiny_tokenizer_json() -> str:
    from minislm.data.tokenizer_train import train_tokenizer
    return train_tokenizer([TEXT], vocab_size=300, min_frequency=1).to_str()


def tokenizer_vocab_size() -> int:
    from tokenizers import Tokenizer
    return Tokenizer.from_str(tiny_tokenizer_json()).get_vocab_size()


def config_dict(family: str, **overrides) -> dict:
    """A valid config.json dict of a tiny model (vocab = the tiny tokenizer's)."""
    V = tokenizer_vocab_size()
    if family == "gpt2":
        d = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=V, n_embd=16,
                 n_layer=2, n_head=2, n_positions=64, n_ctx=64, activation_function="gelu_new",
                 layer_norm_epsilon=1e-5, tie_word_embeddings=True, bos_token_id=0,
                 eos_token_id=0)
    else:
        d = dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=V,
                 hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=4, intermediate_size=24,
                 max_position_embeddings=64, hidden_act="silu", rms_norm_eps=1e-6,
                 rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=0,
                 eos_token_id=0,
                 rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    d.update(overrides)
    return d


def random_params(config: Config, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (0.2 * rng.standard_normal(shape)).astype(np.float32)
            for name, shape in families.expected_shapes(config).items()}


def make_checkpoint(folder, family: str = "gpt2", seed: int = 0, tokenizer: bool = True,
                    **overrides) -> Path:
    """Write a tiny valid HF folder (config.json, model.safetensors, tokenizer.json)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = config_dict(family, **overrides)
    config = Config.from_hf_dict(d)
    write_safetensors(folder / "model.safetensors", random_params(config, seed),
                      metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(d, indent=1))
    if tokenizer:
        (folder / "tokenizer.json").write_text(tiny_tokenizer_json())
    return folder


def raw_safetensors(header, data: bytes = b"", length: int | None = None) -> bytes:
    """Bytes of a safetensors file with an arbitrary header (dict or raw bytes)."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    n = len(raw) if length is None else length
    return struct.pack("<Q", n) + raw + data


def tree_hashes(folder) -> dict[str, str]:
    """sha256 of every file below folder (relative path -> hex digest)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
