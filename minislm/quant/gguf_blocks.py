"""GGUF / llama.cpp block quantization: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.

Each row is cut into blocks of 32 values; each block stores a float16 scale d
(and for the `_1` types a float16 minimum m) followed by the codes. Written from
the format definition (ggml-quants.c, `quantize_row_q*_ref`), with the same
float32 arithmetic, so the bytes equal `gguf.quants.quantize` bit for bit.

    type  bytes/block  bits/w  grid
    Q8_0  34 = 2+32      8.5   d = amax/127,      q = round_away(x/d) ∈ [−127, 127], x̂ = d·q
    Q4_0  18 = 2+16      4.5   d = m/−8,          q = min(15, ⌊x/d + 8.5⌋),          x̂ = d·(q − 8)
    Q4_1  20 = 2+2+16    5.0   d = (max−min)/15,  q = min(15, ⌊(x−min)/d + 0.5⌋),    x̂ = d·q + min
    Q5_0  22 = 2+4+16    5.5   d = m/−16,         q = min(31, ⌊x/d + 16.5⌋),         x̂ = d·(q − 16)
    Q5_1  24 = 2+2+4+16  6.0   d = (max−min)/31,  q = min(31, ⌊(x−min)/d + 0.5⌋),    x̂ = d·q + min

m is the signed value of largest magnitude (so the extreme lands exactly on code 0).
The low 4 bits of codes 0–15 fill the low nibbles of the 16 code bytes, codes 16–31
the high nibbles; the 5th bits of Q5 codes form a little-endian uint32 `qh`
(bit j = 5th bit of code j). Note the scale used while rounding is the float32 d;
only the stored copy is float16 (llama.cpp's reference does the same).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..gguf import blocks

BLOCK = 32
BLOCK_BYTES = {"q8_0": 34, "q4_0": 18, "q4_1": 20, "q5_0": 22, "q5_1": 24}
TYPES = tuple(BLOCK_BYTES)
HALF = {"q4_0": 8, "q5_0": 16}           # symmetric types: x̂ = d · (q − HALF)
LEVELS = {"q4_1": 15, "q5_1": 31}        # affine types: x̂ = d · q + lo, q ≤ LEVELS


def _blocks(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0 or x.shape[-1] % BLOCK:
        raise InputError(f"GGUF block quantization needs rows whose length is a multiple of "
                         f"{BLOCK}, found shape {x.shape}")
    return x.reshape(-1, BLOCK)                                         # [N, 32]


def _f16_bytes(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float16).view(np.uint8)                          # [N, 2]


def _inverse(d: np.ndarray) -> np.ndarray:
    """1/d, with 0 where d = 0 (an all-zero block quantizes to codes of 0.0)."""
    safe = np.where(d == 0, np.float32(1.0), d)
    return np.where(d == 0, np.float32(0.0), np.float32(1.0) / safe)


def _nibbles(q: np.ndarray) -> np.ndarray:
    """Codes [N, 32] -> 16 bytes: low nibble = code j, high nibble = code j + 16."""
    return (q[:, :16] & np.uint8(0x0F)) | (q[:, 16:] << np.uint8(4))


def _high_bits(q: np.ndarray) -> np.ndarray:
    """5th bit of each of the 32 codes as one little-endian uint32 (4 bytes)."""
    return np.packbits((q >> np.uint8(4)) & np.uint8(1), axis=-1, bitorder="little")  # [N, 4]


def _signed_absmax(b: np.ndarray) -> np.ndarray:
    """m: the value of largest |x| in each block, sign kept (first one on ties)."""
    return np.take_along_axis(b, np.abs(b).argmax(axis=-1)[..., None], axis=-1)     # [..., 1]


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """roundf(): halves go away from zero (NumPy's round goes to even).

    Written as ⌊a⌋ + ⌊2(a − ⌊a⌋)⌋ rather than ⌊a + ½⌋: in float32, a + ½ can round up
    (0.49999997 + 0.5 == 1.0), the fractional-part form is exact.
    """
    a = np.abs(v)
    whole = np.floor(a)
    return np.sign(v) * (whole + np.floor(2 * (a - whole)))


def _check_type(qtype: str) -> str:
    qtype = qtype.lower()
    if qtype not in BLOCK_BYTES:
        raise InputError(f"GGUF block type must be one of {TYPES}, found {qtype!r}")
    return qtype


def block_grid(b: np.ndarray, qtype: str):
    """llama.cpp's grid of each block b [N, 32]: (d, lo) float32 [N, 1] (lo None for the
    symmetric types). Rounding uses this float32 d; the file stores fp16(d), fp16(lo)."""
    qtype = _check_type(qtype)
    if qtype == "q8_0":
        return np.abs(b).max(axis=-1, keepdims=True) / np.float32(127), None
    if qtype in ("q4_0", "q5_0"):
        return _signed_absmax(b) / np.float32(-HALF[qtype]), None
    lo = b.min(axis=-1, keepdims=True)                                 # q4_1, q5_1
    return (b.max(axis=-1, keepdims=True) - lo) / np.float32(LEVELS[qtype]), lo


def block_codes(x: np.ndarray, d: np.ndarray, lo: np.ndarray | None, qtype: str) -> np.ndarray:
    """The codes llama.cpp stores for values x given their block's (d, lo) (broadcast):
    uint8 0 … 2^b − 1, int8 for Q8_0. Values outside the block's range (GPTQ's updated
    weights) are clipped to the extreme codes; inside it this is `quantize_row_*_ref`."""
    qtype = _check_type(qtype)
    inv = _inverse(d)
    if qtype == "q8_0":
        return np.clip(_round_half_away(x * inv), -127, 127).astype(np.int8)
    if lo is None:                                                     # q4_0, q5_0
        v, top = x * inv + np.float32(HALF[qtype] + 0.5), 2 * HALF[qtype] - 1
    else:                                                              # q4_1, q5_1
        v, top = (x - lo) * inv + np.float32(0.5), LEVELS[qtype]
    return np.clip(np.trunc(v), 0, top).astype(np.uint8)


def pack_blocks(d: np.ndarray, lo: np.ndarray | None, q: np.ndarray, qtype: str) -> np.ndarray:
    """Block bytes [N, block_bytes] from fp16-able d, lo [N, 1] and the codes q [N, 32]."""
    qtype = _check_type(qtype)
    if qtype == "q8_0":
        return np.concatenate([_f16_bytes(d), q.astype(np.int8).view(np.uint8)], axis=-1)
    parts = [_f16_bytes(d)] + ([] if lo is None else [_f16_bytes(lo)]) + \
        ([_high_bits(q)] if qtype in ("q5_0", "q5_1") else []) + [_nibbles(q)]
    return np.concatenate(parts, axis=-1)


def quantize_blocks(x: np.ndarray, qtype: str) -> np.ndarray:
    """float32 [..., n] (n multiple of 32) -> bytes uint8 [..., n/32 · block_bytes]."""
    qtype = _check_type(qtype)
    b = _blocks(x)
    d, lo = block_grid(b, qtype)
    out = pack_blocks(d, lo, block_codes(b, d, lo, qtype), qtype)
    shape = np.shape(x)
    return out.reshape(*shape[:-1], shape[-1] // BLOCK * BLOCK_BYTES[qtype])


def dequantize_blocks(data: np.ndarray, qtype: str) -> np.ndarray:
    """bytes uint8 [..., k · block_bytes] -> float32 [..., 32k] (minislm.gguf.blocks decodes)."""
    qtype = _check_type(qtype)
    size = BLOCK_BYTES[qtype]
    data = np.ascontiguousarray(data, dtype=np.uint8)
    if data.ndim == 0 or data.shape[-1] % size:
        raise InputError(f"{qtype} data rows must be a multiple of {size} bytes, "
                         f"found shape {data.shape}")
    shape = (*data.shape[:-1], data.shape[-1] // size * BLOCK)
    return blocks.dequantize(data.reshape(-1), blocks.TYPE_IDS[qtype.upper()], shape)


def quantize_with_error(x: np.ndarray, qtype: str) -> tuple[np.ndarray, float]:
    """(bytes, max |x − x̂|) — the quantizer returns its error alongside its result."""
    data = quantize_blocks(x, qtype)
    err = np.abs(np.asarray(x, np.float32) - dequantize_blocks(data, qtype))
    return data, float(err.max(initial=0.0))
