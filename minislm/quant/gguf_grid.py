"""llama.cpp's Q4_0, Q4_1 and Q8_0 grids as minislm grids, and back to GGUF blocks.

A GGUF block is 32 consecutive input values of one row sharing an fp16 scale:
exactly minislm's grouped grid with group_size 32. Written in minislm's terms
(codes q, fp16 scale s, zero point z or fp16 minimum lo; gguf_blocks.py has the
formats):

    type   minislm grid                ŵ               grid chosen as llama.cpp does
    Q4_0   4-bit sym g32, z = 8        s · (q − 8)     d = m / −8   (m: signed value of largest |x|)
    Q8_0   8-bit sym g32, z = 128      s · (q − 128)   d = max|x| / 127, q − 128 ∈ [−127, 127]
    Q4_1   4-bit g32, fp16 minimum     s · q + lo      d = (max − min) / 15, lo = min

with s = fp16(d). With `grid="q4_0"` (or q4_1, q8_0) RTN and GPTQ take each group's
(d, lo) from `gguf_blocks.block_grid` and round with the float32 d exactly as
`quantize_row_*_ref` does (`gguf_blocks.block_codes`), while ŵ — what the model
computes and what GPTQ feeds back as error — uses the fp16 copies a GGUF file
stores. So RTN on the Q4_0 grid is llama.cpp's own quantizer, byte for byte, and
the codes and scales GPTQ chooses on it ARE the Q4_0 file's blocks.

`to_blocks` writes a quantized weight into blocks of a GGUF type when its grid is
that type's, from its codes (nothing rounded again): any sym 4-bit g32 weight is
Q4_0 and sym 8-bit g32 is Q8_0 (whatever chose the scales), 4-bit g32 with fp16
minimums is Q4_1, and minislm's asymmetric 4-bit g32 (integer zero z) is Q4_1
when every lo = −s · z is exact in fp16.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .gguf_blocks import BLOCK, block_codes, block_grid, pack_blocks

GRIDS = {"q4_0": (4, True), "q4_1": (4, False), "q8_0": (8, True)}   # type -> (bits, sym)
ZERO = {"q4_0": 8, "q4_1": 0, "q8_0": 128}                            # z in ŵ = s · (q − z)


def check_grid(grid: str, bits: int, group_size: int, sym: bool, n_in: int | None = None):
    """A GGUF grid fixes bits, group size 32 and symmetry; refuse anything else."""
    if grid not in GRIDS:
        raise InputError(f"grid must be one of {tuple(GRIDS)}, found {grid!r}")
    want_bits, want_sym = GRIDS[grid]
    if (bits, group_size, bool(sym)) != (want_bits, BLOCK, want_sym):
        raise InputError(f"grid {grid!r} is {want_bits}-bit, group size {BLOCK}, "
                         f"{'symmetric' if want_sym else 'asymmetric'}; found bits {bits}, "
                         f"group size {group_size}, sym {bool(sym)}")
    if n_in is not None and n_in % BLOCK:
        raise InputError(f"grid {grid!r} needs rows whose length is a multiple of {BLOCK}, "
                         f"found {n_in} input columns")


def find_params(w: np.ndarray, grid: str):
    """llama.cpp's grid of each row of the group w [R, 32]:
    (s float16, z uint8, lo float16 | None) as stored, and (d, lo) float32 for rounding."""
    d, lo = block_grid(np.asarray(w, np.float32), grid)                 # [R, 1] each
    s = d.astype(np.float16)
    z = np.full(s.shape, ZERO[grid], dtype=np.uint8)
    return s, z, None if lo is None else lo.astype(np.float16), d, lo


def codes(w: np.ndarray, d: np.ndarray, lo: np.ndarray | None, grid: str) -> np.ndarray:
    """minislm's uint8 codes of w on the grid (d, lo): llama.cpp's, Q8_0's int8 shifted by 128."""
    q = block_codes(w, d, lo, grid)
    return (q.astype(np.int16) + 128).astype(np.uint8) if grid == "q8_0" else q


def grid_of(qt) -> str | None:
    """The GGUF type whose blocks hold this `QuantizedTensor` exactly, or None."""
    if qt.input_scale is not None or qt.eora_A is not None or qt.n_in % BLOCK or \
            qt.group_size != BLOCK or qt.scales.shape[0] != qt.n_out:
        return None
    if qt.bits == 8 and qt.sym:
        return "q8_0"
    if qt.bits == 4 and qt.sym:
        return "q4_0"
    if qt.bits == 4 and (qt.mins is not None or _exact_mins(qt) is not None):
        return "q4_1"
    return None


def _exact_mins(qt):
    """lo = −s · z as fp16 [out, G] when exact for every group, else None."""
    lo = qt._grid(slice(0, qt.n_out))[1]                               # −s · z, float32
    lo16 = lo.astype(np.float16)
    return lo16 if np.array_equal(lo16.astype(np.float32), lo) else None


def to_blocks(qt, qtype: str) -> np.ndarray | None:
    """The weight's GGUF blocks [out, in/32 · block_bytes] written from its own codes and
    fp16 scales, or None when its grid is not `qtype`'s (then it would be rounded again) —
    or, for Q8_0, when a code is −128, which llama.cpp never writes."""
    if grid_of(qt) != qtype:
        return None
    G = qt.n_in // BLOCK
    q = qt.codes().reshape(qt.n_out * G, BLOCK)                        # [blocks, 32]
    d = qt.scales.reshape(-1, 1)                                       # fp16 [blocks, 1]
    if qtype == "q8_0":
        if not q.all():         # int8 −128: llama.cpp's SIMD dot products (sign tricks) need ≥ −127
            return None
        q = (q.astype(np.int16) - 128).astype(np.int8)
    lo = None
    if qtype == "q4_1":
        lo = (qt.mins if qt.mins is not None else _exact_mins(qt)).reshape(-1, 1)
    return pack_blocks(d, lo, q, qtype).reshape(qt.n_out, -1)
