"""KV cache: keys and values of past positions, so each new token costs one column.

One slot per block run (a block repeated in a Franken-LLaMA sequence gets its
own slot). Each slot holds preallocated arrays k, v [B, K, S_max, D]; `length`
is how many positions are filled. Decoding one token appends one position and
attends over `k[:, :, :length]` — a strided view, no copy.
"""
from __future__ import annotations

import numpy as np


class KVCache:
    """Keys and values of the positions seen so far, one slot per block run, grown by doubling."""
    def __init__(self, capacity: int = 0):
        self.length = 0
        self.capacity = capacity
        self.k: list[np.ndarray | None] = []
        self.v: list[np.ndarray | None] = []

    def reserve(self, n_slots: int, needed: int) -> None:
        """Make room for `needed` positions in `n_slots` slots (grows by doubling)."""
        while len(self.k) < n_slots:
            self.k.append(None)
            self.v.append(None)
        if needed > self.capacity:
            self.capacity = max(needed, 2 * self.capacity)
            for store in (self.k, self.v):
                for s, entry in enumerate(store):
                    if entry is not None:
                        store[s] = self._grown(entry)

    def _grown(self, a):
        """A copy of the slot array a [B, K, S, ...] with room for `capacity` positions."""
        b = np.zeros(a.shape[:2] + (self.capacity,) + a.shape[3:], dtype=a.dtype)
        b[:, :, :self.length] = a[:, :, :self.length]
        return b

    def update(self, slot: int, k_new, v_new):
        """Write k_new, v_new [B, K, T, D] after the cached positions; return all [B, K, S, D]."""
        B, K, T, D = k_new.shape
        if self.k[slot] is None:
            self.k[slot] = np.zeros((B, K, self.capacity, D), dtype=k_new.dtype)
            self.v[slot] = np.zeros((B, K, self.capacity, D), dtype=v_new.dtype)
        end = self.length + T
        self.k[slot][:, :, self.length:end] = k_new
        self.v[slot][:, :, self.length:end] = v_new
        return self.k[slot][:, :, :end], self.v[slot][:, :, :end]

    @property
    def nbytes(self) -> int:
        """Bytes allocated for keys and values (the capacity, not only the filled positions)."""
        return sum(a.nbytes for a in self.k + self.v if a is not None)
