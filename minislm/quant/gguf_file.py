"""Writing a GGUF v3 file atomically; the container's layout is described (and read) in
minislm/gguf/reader.py, the block formats in minislm/gguf/blocks.py.
"""
from __future__ import annotations

import struct

import numpy as np

from ..checkpoint import atomic_write_bytes
from ..errors import InputError
from ..gguf.blocks import TYPE_IDS
from ..gguf.reader import ALIGNMENT, ARRAY, BOOL, FLOAT32, INT32, INT64, STRING, UINT32, UINT64

# ggml tensor types written here
GGML_TYPES = {name: TYPE_IDS[name.upper()] for name in ("f32", "f16", "q4_0", "q4_1", "q5_0",
                                                         "q5_1", "q8_0")}


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _value(v) -> tuple[int, bytes]:
    """(type, bytes) of a metadata value: bool, int (u32/i32/u64/i64), float (f32), str, list
    (of bools, strings, ints or floats)."""
    if isinstance(v, bool):
        return BOOL, struct.pack("<?", v)
    if isinstance(v, (int, np.integer)):
        v = int(v)
        if 0 <= v < 2 ** 32:
            return UINT32, struct.pack("<I", v)
        if -2 ** 31 <= v < 0:
            return INT32, struct.pack("<i", v)
        return (UINT64, struct.pack("<Q", v)) if v >= 0 else (INT64, struct.pack("<q", v))
    if isinstance(v, (float, np.floating)):
        return FLOAT32, struct.pack("<f", float(v))
    if isinstance(v, str):
        return STRING, _string(v)
    if isinstance(v, (list, tuple)):
        if not v:
            return ARRAY, struct.pack("<IQ", STRING, 0)
        if all(isinstance(e, (bool, np.bool_)) for e in v):
            return ARRAY, struct.pack("<IQ", BOOL, len(v)) + bytes(bool(e) for e in v)
        if all(isinstance(e, str) for e in v):
            return ARRAY, struct.pack("<IQ", STRING, len(v)) + b"".join(_string(e) for e in v)
        if all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v):
            arr = np.asarray(v, dtype=np.int32)
            return ARRAY, struct.pack("<IQ", INT32, len(v)) + arr.astype("<i4").tobytes()
        if all(isinstance(e, (float, np.floating)) for e in v):
            arr = np.asarray(v, dtype="<f4")
            return ARRAY, struct.pack("<IQ", FLOAT32, len(v)) + arr.tobytes()
    raise InputError(f"GGUF metadata: cannot store a value of type {type(v).__name__}")


def gguf_bytes_layout(tensors: list[tuple[str, tuple, str, np.ndarray]]):
    """Offsets of each tensor's data, 32-aligned, and the total data size."""
    offsets, pos = [], 0
    for _, _, _, data in tensors:
        pos += -pos % ALIGNMENT
        offsets.append(pos)
        pos += data.nbytes
    return offsets, pos


def write_gguf(path, metadata: dict, tensors: list[tuple[str, tuple, str, np.ndarray]]):
    """Write a GGUF v3 file atomically.

    metadata: key -> value (insertion order kept). tensors: (name, ne, type, data) with
    ne the GGUF dims (innermost first), type a key of GGML_TYPES and data the raw
    array (float32/float16 values, or uint8 block bytes).
    """
    head = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(metadata) + 1)]
    kv = [_string("general.alignment") + struct.pack("<II", UINT32, ALIGNMENT)]
    for key, value in metadata.items():
        kind, raw = _value(value)
        kv.append(_string(key) + struct.pack("<I", kind) + raw)
    offsets, _ = gguf_bytes_layout(tensors)
    infos = []
    for (name, ne, kind, _), off in zip(tensors, offsets):
        infos.append(_string(name) + struct.pack("<I", len(ne)) +
                     struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", GGML_TYPES[kind], off))
    header = b"".join(head + kv + infos)
    header += b"\0" * (-len(header) % ALIGNMENT)

    def writer(f):
        f.write(header)
        pos = 0
        for (_, _, _, data), off in zip(tensors, offsets):
            f.write(b"\0" * (off - pos))
            f.write(memoryview(np.ascontiguousarray(data).reshape(-1)).cast("B"))
            pos = off + data.nbytes

    return atomic_write_bytes(path, writer=writer)
