"""GGUF tensor types and their dequantizers, one small function per block type.

Written from llama.cpp's block layouts (ggml-common.h, `dequantize_row_*` in
ggml-quants.c). Each function takes the blocks of a tensor as uint8 rows
[N, type_size] and returns float32 values [N, block_size]; the float32
operations are the reference's, in its order, so results equal
`gguf.quants.dequantize` bit for bit (products of an fp16 scale and small
integers are exact in float32; only the final `- min` / `+ m` rounds).

Notation: d, dmin, m are fp16 scalars stored in the block; q are the integer codes.
Sub-block scales in the K-quants are small integers (4 or 6 bits, or int8 in Q6_K).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CheckpointError

QK = 32                   # values per block of the simple quants
QK_K = 256                # values per super-block of the K-quants

# ggml type id -> name (ggml.h `enum ggml_type`); ids without a dequantizer here are named
# so that an error can say which type a file uses
TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
              9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
              16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
              22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
              29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"}
TYPE_IDS = {name: i for i, name in TYPE_NAMES.items()}


def _f16(col: np.ndarray) -> np.ndarray:
    """Two bytes per block -> the stored fp16 scalar as float32 [N, 1]."""
    return np.ascontiguousarray(col).view(np.float16).astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """Bytes [N, n] -> 2n codes: the n low nibbles, then the n high nibbles."""
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=-1)


def _bits(packed: np.ndarray, count: int) -> np.ndarray:
    """Little-endian bit planes: [N, n] bytes -> [N, 8n] bits, bit j of byte i at 8i + j."""
    return np.unpackbits(packed, axis=-1, count=count, bitorder="little")


def dequantize_f32(b):
    """F32: 4 bytes per value, x = the float32 itself."""
    return np.ascontiguousarray(b).view(np.float32)


def dequantize_f16(b):
    """F16: 2 bytes per value, x = float32(the fp16)."""
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


def dequantize_bf16(b):
    """BF16: 2 bytes per value, the top half of a float32: x = bits << 16."""
    bits = np.ascontiguousarray(b).view(np.uint16).astype(np.uint32)
    return (bits << np.uint32(16)).view(np.float32)


def dequantize_q8_0(b):
    """Q8_0, 34 bytes / 32 values: d (fp16) | q[32] (int8).   x_j = d · q_j"""
    return _f16(b[:, 0:2]) * b[:, 2:34].view(np.int8).astype(np.float32)


def dequantize_q4_0(b):
    """Q4_0, 18 bytes / 32 values: d | qs[16]; q_j = low nibble of qs[j], q_{j+16} = high.
    x_j = d · (q_j − 8)"""
    q = _nibbles(b[:, 2:18]).astype(np.int8) - np.int8(8)
    return _f16(b[:, 0:2]) * q.astype(np.float32)


def dequantize_q4_1(b):
    """Q4_1, 20 bytes / 32 values: d | m | qs[16] (nibbles as Q4_0).   x_j = d · q_j + m"""
    q = _nibbles(b[:, 4:20]).astype(np.float32)
    return _f16(b[:, 0:2]) * q + _f16(b[:, 2:4])


def _five_bit(qh: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Q5 codes: nibbles of qs (as Q4) with bit j of the uint32 qh as 5th bit of code j."""
    return _nibbles(qs) | (_bits(qh, 32) << np.uint8(4))


def dequantize_q5_0(b):
    """Q5_0, 22 bytes / 32 values: d | qh (u32) | qs[16].   x_j = d · (q_j − 16)"""
    q = _five_bit(b[:, 2:6], b[:, 6:22]).astype(np.int8) - np.int8(16)
    return _f16(b[:, 0:2]) * q.astype(np.float32)


def dequantize_q5_1(b):
    """Q5_1, 24 bytes / 32 values: d | m | qh (u32) | qs[16].   x_j = d · q_j + m"""
    q = _five_bit(b[:, 4:8], b[:, 8:24]).astype(np.float32)
    return _f16(b[:, 0:2]) * q + _f16(b[:, 2:4])


def _crumbs(qs: np.ndarray, width: int = 32) -> np.ndarray:
    """2-bit fields: each chunk of `width` bytes gives 4·width codes, the `width` values at
    bits 0-1, then those at bits 2-3, 4-5, 6-7. [N, k·width] -> [N, 4k·width]"""
    n = qs.shape[0]
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    return ((qs.reshape(n, -1, 1, width) >> shifts) & np.uint8(3)).reshape(n, -1)


def dequantize_q2_k(b):
    """Q2_K, 84 bytes / 256 values: scales[16] | qs[64] | d | dmin.
    16 groups of 16 values; scales[g] holds sc_g (low nibble) and m_g (high nibble);
    codes are 2-bit (`_crumbs`).   x = d · sc_g · q − dmin · m_g"""
    n = b.shape[0]
    scales = b[:, 0:16]
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    dl = (d * (scales & np.uint8(0x0F)).astype(np.float32)).reshape(n, 16, 1)
    ml = (dmin * (scales >> np.uint8(4)).astype(np.float32)).reshape(n, 16, 1)
    q = _crumbs(b[:, 16:80]).reshape(n, 16, 16).astype(np.float32)
    return (dl * q - ml).reshape(n, QK_K)


def dequantize_q3_k(b):
    """Q3_K, 110 bytes / 256 values: hmask[32] | qs[64] | scales[12] | d.
    Codes: 2 low bits from qs (`_crumbs`), a high bit h from the hmask planes (value i uses
    bit i // 32 of hmask[i % 32]); q = low − 4 · (1 − h) ∈ [−4, 3].
    16 six-bit scales: low 4 bits from scales[0:8] (low nibbles, then high nibbles), high 2
    bits from scales[8:12] (bits 0-1 of all four bytes, then 2-3, 4-5, 6-7); s_g = that − 32.
    x = d · s_g · q"""
    n = b.shape[0]
    raw = b[:, 96:108]
    low = _nibbles(raw[:, 0:8])                                                   # [N, 16]
    high = _crumbs(raw[:, 8:12], width=4)                                         # [N, 16]
    s = ((low | (high << np.uint8(4))).astype(np.int8) - np.int8(32)).astype(np.float32)
    dl = (_f16(b[:, 108:110]) * s).reshape(n, 16, 1)
    h = _bits(b[:, 0:32], 256).reshape(n, 32, 8).transpose(0, 2, 1).reshape(n, 256)
    q = _crumbs(b[:, 32:96]).astype(np.int8) - ((h ^ np.uint8(1)) << np.uint8(2)).astype(np.int8)
    return (dl * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, QK_K)


def k_scale_min(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8 six-bit (scale, min) pairs of Q4_K / Q5_K from 12 bytes (`get_scale_min_k4`):
        j < 4:  sc = raw[j] & 63,                         m = raw[j+4] & 63
        j ≥ 4:  sc = (raw[j+4] & 15) | (raw[j-4] >> 6) << 4,  m = (raw[j+4] >> 4) | (raw[j] >> 6) << 4
    """
    a, b, c = raw[:, 0:4], raw[:, 4:8], raw[:, 8:12]
    sc = np.concatenate([a & np.uint8(63), (c & np.uint8(15)) | ((a >> np.uint8(6)) << np.uint8(4))], -1)
    m = np.concatenate([b & np.uint8(63), (c >> np.uint8(4)) | ((b >> np.uint8(6)) << np.uint8(4))], -1)
    return sc, m


def _k_nibbles(qs: np.ndarray) -> np.ndarray:
    """4-bit codes of Q4_K / Q5_K: each 32-byte chunk gives sub-block 2c (low nibbles) and
    2c + 1 (high nibbles). [N, 128] -> [N, 8, 32]"""
    n = qs.shape[0]
    return _nibbles(qs.reshape(n, 4, 32)).reshape(n, 8, 32)


def _k_affine(b, q):
    """x = d · sc_s · q − dmin · m_s for the 8 sub-blocks s of 32 values (Q4_K, Q5_K)."""
    n = b.shape[0]
    sc, m = k_scale_min(b[:, 4:16])
    d = (_f16(b[:, 0:2]) * sc.astype(np.float32)).reshape(n, 8, 1)
    dm = (_f16(b[:, 2:4]) * m.astype(np.float32)).reshape(n, 8, 1)
    return (d * q.astype(np.float32) - dm).reshape(n, QK_K)


def dequantize_q4_k(b):
    """Q4_K, 144 bytes / 256 values: d | dmin | scales[12] | qs[128].
    8 sub-blocks of 32 with 6-bit scale sc_s and min m_s (`k_scale_min`), 4-bit codes.
    x = d · sc_s · q − dmin · m_s"""
    return _k_affine(b, _k_nibbles(b[:, 16:144]))


def dequantize_q5_k(b):
    """Q5_K, 176 bytes / 256 values: d | dmin | scales[12] | qh[32] | qs[128].
    As Q4_K with a 5th bit: value l of sub-block s takes bit s of qh[l].
    x = d · sc_s · q − dmin · m_s"""
    n = b.shape[0]
    high = _bits(b[:, 16:48], 256).reshape(n, 32, 8).transpose(0, 2, 1)          # [N, 8, 32]
    return _k_affine(b, _k_nibbles(b[:, 48:176]) | (high << np.uint8(4)))


def dequantize_q6_k(b):
    """Q6_K, 210 bytes / 256 values: ql[128] | qh[64] | scales[16] (int8) | d.
    Each half of 128 values uses 64 bytes of ql and 32 of qh: value l + 32k (k = 0..3) has
    low nibble from ql[l] (k = 0), ql[l+32] (k = 1), high nibbles of those (k = 2, 3), and
    bits 2k..2k+1 of qh[l] on top; q = that − 32. 16 groups of 16 share scale s_g.
    x = d · s_g · q"""
    n = b.shape[0]
    ql = _nibbles(b[:, 0:128].reshape(n, 2, 64)).reshape(n, 2, 4, 32)
    qh = _crumbs(b[:, 128:192]).reshape(n, 2, 4, 32)
    q = (ql | (qh << np.uint8(4))).astype(np.int8) - np.int8(32)
    d = (_f16(b[:, 208:210]) * b[:, 192:208].view(np.int8).astype(np.float32)).reshape(n, 16, 1)
    return (d * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, QK_K)


# name -> (values per block, bytes per block, dequantizer)
DEQUANTIZERS = {
    "F32": (1, 4, dequantize_f32), "F16": (1, 2, dequantize_f16), "BF16": (1, 2, dequantize_bf16),
    "Q8_0": (QK, 34, dequantize_q8_0), "Q4_0": (QK, 18, dequantize_q4_0),
    "Q4_1": (QK, 20, dequantize_q4_1), "Q5_0": (QK, 22, dequantize_q5_0),
    "Q5_1": (QK, 24, dequantize_q5_1), "Q2_K": (QK_K, 84, dequantize_q2_k),
    "Q3_K": (QK_K, 110, dequantize_q3_k), "Q4_K": (QK_K, 144, dequantize_q4_k),
    "Q5_K": (QK_K, 176, dequantize_q5_k), "Q6_K": (QK_K, 210, dequantize_q6_k),
}
CHUNK_BLOCKS = 1 << 16    # blocks dequantized at once: bounds the temporaries to a few MB


def type_name(ggml_type: int) -> str:
    """The ggml type's name (e.g. "Q4_K"), or "unknown type N"."""
    return TYPE_NAMES.get(ggml_type, f"unknown type {ggml_type}")


def layout(ggml_type: int) -> tuple[int, int]:
    """(values per block, bytes per block) of a supported type; clear error otherwise."""
    name = TYPE_NAMES.get(ggml_type)
    if name is None:
        raise CheckpointError(f"unknown ggml tensor type {ggml_type} (known: "
                              f"{sorted(TYPE_NAMES)})")
    if name not in DEQUANTIZERS:
        raise CheckpointError(f"tensor type {name} (ggml type {ggml_type}) is not supported; "
                              f"minislm reads {', '.join(DEQUANTIZERS)}")
    return DEQUANTIZERS[name][:2]


def nbytes(ggml_type: int, ne) -> int:
    """Bytes of a tensor with GGUF dims `ne` (innermost first)."""
    size, type_size = layout(ggml_type)
    if any(int(n) <= 0 for n in ne) or ne[0] % size:
        raise CheckpointError(f"dims {list(ne)} do not fit {type_name(ggml_type)} blocks of "
                              f"{size} values (the row length must be a positive multiple)")
    return math.prod(int(n) for n in ne) // size * type_size


def dequantize(raw: np.ndarray, ggml_type: int, shape) -> np.ndarray:
    """Stored bytes (uint8) -> float32 array of `shape` (NumPy order), chunk by chunk."""
    size, type_size = layout(ggml_type)
    fn = DEQUANTIZERS[TYPE_NAMES[ggml_type]][2]
    count = math.prod(shape)
    if raw.size != count // size * type_size or count % size:
        raise CheckpointError(f"{raw.size} bytes do not hold {shape} {type_name(ggml_type)} "
                              "values")
    rows = raw.reshape(-1, type_size)                                 # [N blocks, type_size]
    out = np.empty((rows.shape[0], size), dtype=np.float32)
    step = max(1, CHUNK_BLOCKS * QK // size)
    with np.errstate(invalid="ignore", over="ignore"):    # inf/nan scales: the caller checks
        for start in range(0, rows.shape[0], step):
            out[start:start + step] = fn(rows[start:start + step]).reshape(-1, size)
    return out.reshape(shape)
