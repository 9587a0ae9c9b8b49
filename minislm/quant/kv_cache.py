"""INT8 KV cache: keys and values stored as int8 with one scale per (head, position).

The LLaMA thesis lists KV-cache compression as future work: at long contexts the
cache, not the weights, dominates memory (2 · L · K · S · D floats per sequence).
Each new key (and value) vector k [D] of head h at position t is stored as

    s[h, t] = max_d |k[h, t, d]| / 127,    q[h, t, d] = round(k / s) ∈ [−127, 127]

so the cache costs D + 4 bytes per vector instead of 4·D (≈ 3.8× smaller for D = 32,
3.9× for D = 64). Attention reads the dequantized ŝ·q: the error on every entry is at
most s/2. Same interface as `minislm.model.cache.KVCache`, so
`forward(model, ids, cache=Int8KVCache())` runs with it.
"""
from __future__ import annotations

import numpy as np

from ..model.cache import KVCache


class Int8KVCache(KVCache):
    """`KVCache` whose slots hold (codes int8 [B, K, S_max, D], scales f32 [B, K, S_max])."""

    def _grown(self, entry):
        grow = super()._grown                     # codes and scales grow alike
        return tuple(grow(a) for a in entry)

    @staticmethod
    def _quantize(x):
        """x [B, K, T, D] -> codes int8 [B, K, T, D], scales float32 [B, K, T]."""
        amax = np.abs(x).max(axis=-1)
        s = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        return np.clip(np.round(x / s[..., None]), -127, 127).astype(np.int8), s

    def update(self, slot: int, k_new, v_new):
        """Quantize and store k_new, v_new [B, K, T, D]; return all dequantized [B, K, S, D]."""
        B, K, T, D = k_new.shape
        out = []
        for store, x in ((self.k, k_new), (self.v, v_new)):
            if store[slot] is None:
                store[slot] = (np.zeros((B, K, self.capacity, D), dtype=np.int8),
                               np.zeros((B, K, self.capacity), dtype=np.float32))
            codes, scales = store[slot]
            end = self.length + T
            codes[:, :, self.length:end], scales[:, :, self.length:end] = self._quantize(x)
            full = codes[:, :, :end].astype(x.dtype) * scales[:, :, :end, None].astype(x.dtype)
            out.append(full)                                            # [B, K, S, D]
        return out[0], out[1]

    @property
    def nbytes(self) -> int:
        """Bytes allocated for the int8 codes and float32 scales of keys and values."""
        return sum(a.nbytes for entry in self.k + self.v if entry is not None for a in entry)
