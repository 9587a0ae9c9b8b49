"""minislm: small language models and their compression, in plain NumPy.

Public API:
    load(path) -> Model            an HF folder (GPT-2, LLaMA-3.x, Gemma 2/3) or a .gguf file
    forward(model, input_ids)      logits [B, T, V]
    generate(model, input_ids, max_new_tokens, temperature, top_k, top_p, seed)
    save(model, path)              an HF folder transformers loads
    value_and_grad(model, input_ids, labels) -> (loss, grads)   hand-written backward
"""
from .config import Config
from .errors import MinislmError
from .loading import download, load, save
from .model import Model
from .model.cache import KVCache
from .model.forward import forward
from .model.generate import generate

__version__ = "0.1.0"


def value_and_grad(model, input_ids, labels):
    """Cross-entropy loss and its gradient for every parameter (see minislm.train.backward)."""
    from .train.backward import value_and_grad as _value_and_grad
    return _value_and_grad(model, input_ids, labels)


__all__ = ["Config", "KVCache", "MinislmError", "Model", "download", "forward", "generate",
           "load", "save", "value_and_grad"]
