"""NF4 weights as stored: QLoRA's 4-bit NormalFloat codes with blockwise (double-quantized)
absmax scales, dequantized block by block inside the matmul (`NF4Tensor`, a
`minislm.model.weights.StoredWeight`), and the checkpoint parts that hold them.

It lives in the model core because loading and running an NF4 checkpoint needs no
quantizer; making one is `minislm.quant.nf4` (the equations are in its docstring):

    ŵ_i = c_{q_i} · â_b,   â_b = d_{r_b} · A_β + μ   (or a_b as stored without double quantization)

with c the 16 NF4 code values (`NF4_CODE`), d bitsandbytes' 8-bit dynamic map
(`dynamic_map`), b the block of B consecutive row-major weights holding i, and β the
block of 256 absmaxes holding b.

Stored (on disk as `<m>.qweight`, `<m>.absmax_q`, … beside the float tensors):

    qweight        uint8   [⌈n/2⌉]             q_{2k}: high nibble of byte k, q_{2k+1}: low
    absmax_q       uint8   [n_blocks]          r_b                (double_quant)
    absmax_scale   float32 [⌈n_blocks/256⌉]    A_β                (double_quant)
    absmax_offset  float32 [1]                 μ                  (double_quant)
    absmax         float32 [n_blocks]          a_b                (without double_quant)

— the buffers of bitsandbytes' `Params4bit` and its `QuantState`, byte for byte.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CheckpointError, InputError

BLOCK = 64                      # weights per absmax (the paper's choice)
SCALE_BLOCK = 256               # absmaxes per second-level scale
BLOCK_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)   # those bitsandbytes accepts
BLOCK_FLOATS = 1 << 20          # float weights dequantized at once in `linear` (4 MB)

NF4_CODE = np.array([                 # QLoRA Appendix E (bitsandbytes' `get_4bit_type("nf4")`)
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
ZERO_CODE = np.uint8(7)               # NF4_CODE[7] = 0.0


def dynamic_map() -> np.ndarray:
    """d: bitsandbytes' signed 8-bit dynamic map (`create_dynamic_map()`), float32 [256], sorted.

    For exponent e = 0 … 6 the 2^e midpoints m_j = 0.1 + 0.9 (j + ½) / 2^e of
    linspace(0.1, 1, 2^e + 1), scaled by ±10^(e − 6); then 0 and 1. Computed exactly
    and rounded once to float32 (bitsandbytes builds its linspace in float32, so its
    table can differ in the last bit of a few entries).
    """
    values = [0.0, 1.0]
    for e in range(7):
        j = np.arange(2 ** e)
        m = 0.1 + 0.9 * (j + 0.5) / 2 ** e                            # midpoints, float64
        values += list(10.0 ** (e - 6) * m) + list(-(10.0 ** (e - 6)) * m)
    return np.sort(np.asarray(values)).astype(np.float32)


DYNAMIC_MAP = dynamic_map()


# byte v -> the code values (c[v >> 4], c[v & 15]) it holds, so `table[bytes]` decodes at once
_PAIR_VALUES = np.stack([NF4_CODE[np.arange(256) >> 4], NF4_CODE[np.arange(256) & 15]], axis=1)


@dataclass(eq=False)
class NF4Tensor:
    """A linear weight in NF4: `linear`, `linear_backward`, `dequantize`, `state_dict` as
    `QuantizedTensor` has them, so the forward, LoRA (QLoRA) and saving take either."""
    qweight: np.ndarray                      # uint8 [⌈n/2⌉]
    absmax: np.ndarray | None                # float32 [n_blocks]     (no double quantization)
    absmax_q: np.ndarray | None              # uint8 [n_blocks]       (double quantization)
    absmax_scale: np.ndarray | None          # float32 [⌈n_blocks/256⌉]
    absmax_offset: np.ndarray | None         # float32 [1]
    block_size: int
    n_out: int
    n_in: int
    orientation: str                         # checkpoint layout: "in_out" or "out_in"

    dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        """The weight's shape in the checkpoint's layout ((in, out) for Conv1D, else (out, in))."""
        return (self.n_in, self.n_out) if self.orientation == "in_out" else (self.n_out, self.n_in)

    @property
    def double_quant(self) -> bool:
        """Whether the blocks' absmax values are quantized too (QLoRA's double quantization)."""
        return self.absmax_q is not None

    @property
    def n_blocks(self) -> int:
        """Number of blocks: ⌈out · in / block_size⌉."""
        return -(-self.n_out * self.n_in // self.block_size)

    @property
    def nbytes(self) -> int:
        """Exact bytes held in memory (and written to disk) for this weight."""
        return sum(a.nbytes for a in (self.qweight, self.absmax, self.absmax_q,
                                      self.absmax_scale, self.absmax_offset) if a is not None)

    def block_absmax(self) -> np.ndarray:
        """â_b = d_{r_b} · A_β + μ (or a_b as stored without double quantization), float32."""
        if not self.double_quant:
            return self.absmax
        A = np.repeat(self.absmax_scale, SCALE_BLOCK)[:self.n_blocks]      # [n_blocks]
        return DYNAMIC_MAP[self.absmax_q] * A + self.absmax_offset

    def _dequantize_flat(self, start: int, stop: int, a_hat: np.ndarray) -> np.ndarray:
        """ŵ_i = c_{q_i} · â_b for the flat positions start … stop − 1, float32."""
        B = self.block_size
        k0, k1 = start // B, -(-stop // B)                                  # blocks touched
        e0, e1 = k0 * B, min(k1 * B, self.n_out * self.n_in)               # their values
        pairs = np.take(_PAIR_VALUES, self.qweight[e0 // 2: -(-e1 // 2)], axis=0)  # [bytes, 2]
        w = np.zeros((k1 - k0) * B, dtype=np.float32)
        w[:e1 - e0] = pairs.reshape(-1)[:e1 - e0]                          # c_q, block-padded
        w = (w.reshape(k1 - k0, B) * a_hat[k0:k1, None]).reshape(-1)      # [blocks · B]
        return w[start - e0: stop - e0]

    def dequantize_rows(self, r0: int, r1: int, a_hat: np.ndarray | None = None) -> np.ndarray:
        """Ŵ[r0:r1] as float32 [r1 − r0, in] (the (out, in) layout)."""
        a_hat = self.block_absmax() if a_hat is None else a_hat
        return self._dequantize_flat(r0 * self.n_in, r1 * self.n_in, a_hat).reshape(-1, self.n_in)

    def effective_out_in(self) -> np.ndarray:
        """The float weight this tensor computes with, (out, in)."""
        return self.dequantize_rows(0, self.n_out)

    def dequantize(self) -> np.ndarray:
        """Float32 weight in the checkpoint layout."""
        W = self.effective_out_in()
        return np.ascontiguousarray(W.T) if self.orientation == "in_out" else W

    def _row_blocks(self):
        block_rows = max(1, BLOCK_FLOATS // self.n_in)
        return [(r0, min(r0 + block_rows, self.n_out)) for r0 in range(0, self.n_out, block_rows)]

    def linear(self, x: np.ndarray) -> np.ndarray:
        """y = x Ŵᵀ for x [..., in] -> [..., out], Ŵ dequantized `block_rows` rows at a time."""
        x2 = x.reshape(-1, self.n_in)                                      # [N, in]
        y = np.empty((x2.shape[0], self.n_out), dtype=np.result_type(x.dtype, np.float32))
        a_hat = self.block_absmax()
        for r0, r1 in self._row_blocks():
            y[:, r0:r1] = x2 @ self.dequantize_rows(r0, r1, a_hat).T        # [N, rows]
        return y.reshape(*x.shape[:-1], self.n_out)

    def linear_backward(self, x: np.ndarray, dy: np.ndarray):
        """(∂L/∂x = dy Ŵ, {}) for y = x Ŵᵀ: the codes and scales are frozen (QLoRA trains
        only the adapters around them), so no gradient is returned for them."""
        dy2 = dy.reshape(-1, self.n_out)                                   # [N, out]
        dx = np.zeros((dy2.shape[0], self.n_in), dtype=np.result_type(dy.dtype, np.float32))
        a_hat = self.block_absmax()
        for r0, r1 in self._row_blocks():
            dx += dy2[:, r0:r1] @ self.dequantize_rows(r0, r1, a_hat)       # [N, in]
        return dx.reshape(*dy.shape[:-1], self.n_in), {}

    def state_dict(self, name: str) -> dict[str, np.ndarray]:
        """Tensors to write for the weight `name` (`<m>.weight` -> `<m>.qweight`, ...)."""
        base = name[: -len(".weight")] if name.endswith(".weight") else name
        parts = {"qweight": self.qweight, "absmax": self.absmax, "absmax_q": self.absmax_q,
                 "absmax_scale": self.absmax_scale, "absmax_offset": self.absmax_offset}
        return {f"{base}.{k}": v for k, v in parts.items() if v is not None}


PARTS = ("qweight", "absmax", "absmax_q", "absmax_scale", "absmax_offset")


def check_block_size(block_size: int) -> None:
    """Raise InputError unless `block_size` is one of BLOCK_SIZES."""
    if block_size not in BLOCK_SIZES:
        raise InputError(f"NF4 block size must be one of {BLOCK_SIZES}, found {block_size!r}")


def from_parts(base: str, parts: dict, block_size: int, n_out: int, n_in: int,
               orientation: str) -> NF4Tensor:
    """An `NF4Tensor` from the tensors `<base>.qweight`, ... read from a checkpoint,
    each checked against the shape the weight (n_out, n_in) implies."""
    check_block_size(block_size)
    n = n_out * n_in
    n_blocks = -(-n // block_size)
    double = parts.get("absmax") is None
    want = {"qweight": ((n + 1) // 2,), "absmax": (n_blocks,), "absmax_q": (n_blocks,),
            "absmax_scale": (-(-n_blocks // SCALE_BLOCK),), "absmax_offset": (1,)}
    needed = ("qweight", "absmax_q", "absmax_scale", "absmax_offset") if double else \
        ("qweight", "absmax")
    for p in PARTS:
        a = parts.get(p)
        if a is None and p in needed:
            raise CheckpointError(f"tensor '{base}.{p}' is missing (NF4 weight of shape "
                                  f"{(n_out, n_in)}{', double-quantized' if double else ''})")
        if a is not None and p not in needed:
            raise CheckpointError(f"tensor '{base}.{p}' does not belong with '{base}.absmax' "
                                  "(an NF4 weight has either absmax or its double-quantized parts)")
        if a is not None and tuple(a.shape) != want[p]:
            raise CheckpointError(f"tensor '{base}.{p}' has shape {tuple(a.shape)}, expected "
                                  f"{want[p]} for an NF4 weight of shape {(n_out, n_in)} in "
                                  f"blocks of {block_size}")
    dtypes = {"qweight": np.uint8, "absmax": np.float32, "absmax_q": np.uint8,
              "absmax_scale": np.float32, "absmax_offset": np.float32}
    arrays = {p: None if parts.get(p) is None else np.asarray(parts[p], dtypes[p]) for p in PARTS}
    return NF4Tensor(**arrays, block_size=block_size, n_out=n_out, n_in=n_in,
                     orientation=orientation)
