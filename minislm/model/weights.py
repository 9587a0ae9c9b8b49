"""The stored-weight protocol: what a linear weight that is not a plain array must offer.

`model.params` maps checkpoint names to NumPy arrays, except where a technique
stores a weight differently — packed b-bit codes (`quantized.QuantizedTensor`) or a
frozen base with a LoRA adapter (`adapt.lora.LoraLinear`). The forward and the
backward (`layers.linear_forward` / `linear_backward`) call only these four
methods, so the model core needs to know no technique:

    linear(x)               y = x Ŵᵀ for x [..., in] -> [..., out] (whatever the layout)
    linear_backward(x, dy)  (dx [..., in], {gradient name: array}) — {} when frozen
    dequantize()            the float weight in the checkpoint's layout
    state_dict(name)        {tensor name: array} that `minislm.save` writes for it
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class StoredWeight(Protocol):
    """A linear weight held in some other form than a float array (see the module docstring)."""

    shape: tuple

    def linear(self, x: np.ndarray) -> np.ndarray:
        """y = x Ŵᵀ: x [..., in] -> y [..., out], whatever the stored layout."""

    def linear_backward(self, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, dict]:
        """(dx = dy Ŵ [..., in], {gradient name: array} of its trainable parts, {} when frozen)."""

    def dequantize(self) -> np.ndarray:
        """The float weight Ŵ in the checkpoint's layout."""

    def state_dict(self, name: str) -> dict[str, np.ndarray]:
        """{tensor name: array} that `minislm.save` writes for the weight named `name`."""


def as_array(W) -> np.ndarray:
    """The float weight of an array or a `StoredWeight`, in the checkpoint's layout."""
    return W if isinstance(W, np.ndarray) else W.dequantize()
