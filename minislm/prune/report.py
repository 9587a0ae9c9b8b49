"""Sparsity reporting: how many weights are zero, and what that would save on disk.

Why unstructured sparsity rarely saves memory: a weight matrix W [out, in]
with nnz non-zeros, b bytes per value, costs

    dense   out·in·b
    CSR     nnz·b  +  nnz·4  (int32 column index per value)  +  (out + 1)·4  (row pointers)
    N:M     out·in·(M−N)/M · b  +  out·in·(M−N)/M · ⌈log₂ M⌉ / 8   (kept slots + their
            position inside the group; NVIDIA's 2:4 stores 2 bits per kept value)

In float32 CSR only beats dense below 50 % density (each kept value drags a 4-byte
index along); in float16/bfloat16 (b = 2) only below 33 %. 2:4 keeps half the
values plus 2 bits each: 56 % of dense in fp32. Trimming (depth/width) removes
the rows, columns and blocks outright — there the bytes really go away.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..model import families
from .masks import out_in, zeros_per_group

NM_PATTERNS_M = (2, 4, 8, 16, 32)
INDEX_BYTES = 4                                 # int32 CSR indices (scipy's default)


@dataclasses.dataclass(frozen=True)
class TensorReport:
    """One weight's zeros and its size stored dense, as CSR and (if it has one) as N:M."""
    name: str
    shape: tuple
    params: int
    zeros: int
    dense_bytes: int
    csr_bytes: int
    nm: tuple | None          # (N, M): every group of M consecutive inputs has ≥ N zeros
    nm_bytes: int | None

    @property
    def sparsity(self) -> float:
        """zeros / params."""
        return self.zeros / max(self.params, 1)

    @property
    def best_bytes(self) -> int:
        """The smallest of the dense, CSR and N:M sizes."""
        return min(b for b in (self.dense_bytes, self.csr_bytes, self.nm_bytes) if b is not None)


def csr_bytes(W_out_in: np.ndarray, itemsize: int) -> int:
    """Bytes of W as CSR: nnz · (itemsize + 4) + (rows + 1) · 4 (int32 indices)."""
    nnz = int(np.count_nonzero(W_out_in))
    return nnz * (itemsize + INDEX_BYTES) + (W_out_in.shape[0] + 1) * INDEX_BYTES


def nm_bytes(size: int, n: int, m: int, itemsize: int) -> int:
    """Bytes of an N:M-sparse tensor: size·(M−N)/M kept values, ⌈log₂ M⌉ position bits each."""
    slots = size * (m - n) // m
    return slots * itemsize + math.ceil(slots * math.ceil(math.log2(m)) / 8)


def detect_nm(W_out_in: np.ndarray, itemsize: int):
    """The N:M pattern (N = fewest zeros in any group) with the smallest storage, or None."""
    best = None
    for m in NM_PATTERNS_M:
        if W_out_in.shape[1] % m:
            continue
        n = int(zeros_per_group((W_out_in != 0).astype(np.uint8), m).min())
        if n > 0:
            size = nm_bytes(W_out_in.size, n, m, itemsize)
            if best is None or size < best[1]:
                best = ((n, m), size)
    return best if best is not None else (None, None)


def tensor_report(name: str, W_out_in: np.ndarray, itemsize: int | None = None) -> TensorReport:
    """The `TensorReport` of W [out, in], counted at `itemsize` bytes per value (default W's)."""
    itemsize = W_out_in.dtype.itemsize if itemsize is None else itemsize
    nm, nm_size = detect_nm(W_out_in, itemsize)
    return TensorReport(name, tuple(W_out_in.shape), int(W_out_in.size),
                        int(W_out_in.size - np.count_nonzero(W_out_in)),
                        int(W_out_in.size * itemsize), csr_bytes(W_out_in, itemsize), nm, nm_size)


def sparsity_report(model, itemsize: int | None = None) -> dict:
    """Per block-linear reports and model totals.

    Returns {"layers": [TensorReport], "params": all parameters, "zeros": zero
    weights in the block linears, "dense_bytes": every tensor stored dense,
    "sparse_bytes": the same with each linear in its cheapest format}.
    """
    rows = []
    for lin in families.linear_layers(model.config, model.prefix):
        W = model.params[lin.name]
        if isinstance(W, np.ndarray):
            rows.append(tensor_report(lin.name, out_in(W, lin.orientation), itemsize))
    reported = {r.name for r in rows}
    size = lambda v: int(np.prod(v.shape)) * (itemsize or v.dtype.itemsize)
    other = sum(size(v) for n, v in model.params.items()
                if n not in reported and isinstance(v, np.ndarray))
    return {"layers": rows, "params": model.num_params(),
            "zeros": sum(r.zeros for r in rows),
            "linear_params": sum(r.params for r in rows),
            "dense_bytes": other + sum(r.dense_bytes for r in rows),
            "sparse_bytes": other + sum(r.best_bytes for r in rows)}


def format_report(report: dict, per_layer: bool = True) -> str:
    """A plain-text table of `sparsity_report` (MiB with 3 decimals)."""
    mib = lambda b: f"{b / 2 ** 20:9.3f}"
    lines = []
    if per_layer:
        lines.append(f"{'tensor':48s} {'shape':>12s} {'sparsity':>8s} {'dense MiB':>9s} "
                     f"{'CSR MiB':>9s} {'N:M':>5s} {'N:M MiB':>9s}")
        for r in report["layers"]:
            nm = f"{r.nm[0]}:{r.nm[1]}" if r.nm else "-"
            lines.append(f"{r.name[-48:]:48s} {'x'.join(map(str, r.shape)):>12s} "
                         f"{r.sparsity:8.1%} {mib(r.dense_bytes)} {mib(r.csr_bytes)} {nm:>5s} "
                         f"{mib(r.nm_bytes) if r.nm_bytes else '        -'}")
    lines.append(f"parameters {report['params']:,}; block linears {report['linear_params']:,} "
                 f"of which zero {report['zeros']:,} "
                 f"({report['zeros'] / max(report['linear_params'], 1):.1%})")
    lines.append(f"bytes dense {report['dense_bytes']:,}; with the cheapest format per linear "
                 f"{report['sparse_bytes']:,} "
                 f"({report['sparse_bytes'] / max(report['dense_bytes'], 1):.1%} of dense)")
    return "\n".join(lines)
