"""Reading a GGUF file, written from the format definition (ggml docs/gguf.md).

    header    "GGUF" | version u32 (2 or 3) | n_tensors u64 | n_kv u64
    metadata  n_kv × (key: string, type: u32, value)
    tensors   n_tensors × (name: string, n_dims u32, ne[0..n_dims) u64, ggml type u32, offset u64)
    padding   to `general.alignment` (32 when absent)
    data      each tensor's bytes at its offset (relative to the data start), aligned

string = u64 byte length + UTF-8 bytes; array = element type u32 + count u64 +
elements. All integers little-endian. `ne` lists dimensions innermost first, so a
NumPy matrix [rows, cols] has ne = (cols, rows) and each row is cols/32 (or cols/256)
quantized blocks (see blocks.py).

The file is memory-mapped: `tensor_bytes` returns a read-only view of the stored
bytes, and `tensor` dequantizes it to float32. Nothing is read twice.
"""
from __future__ import annotations

import dataclasses
import mmap
import struct
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from . import blocks

MAGIC = b"GGUF"
VERSIONS = (2, 3)
ALIGNMENT = 32            # default data alignment (a file may set general.alignment)
# metadata value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, \
    FLOAT64 = range(13)
SCALARS = {UINT8: "<u1", INT8: "<i1", UINT16: "<u2", INT16: "<i2", UINT32: "<u4", INT32: "<i4",
           FLOAT32: "<f4", BOOL: "?", UINT64: "<u8", INT64: "<i8", FLOAT64: "<f8"}
MAX_DIMS = 4              # ggml tensors have at most four dimensions


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table: name, NumPy-order shape, ggml type, byte offset and size."""
    name: str
    shape: tuple          # NumPy order (outermost first): reversed `ne`
    ggml_type: int
    offset: int           # absolute byte offset in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        """The name of the tensor's ggml type (e.g. "Q4_0")."""
        return blocks.type_name(self.ggml_type)


@dataclasses.dataclass
class GGUFFile:
    """A GGUF file opened for reading: version, metadata, tensor table and the mapped bytes."""
    path: Path
    version: int
    metadata: dict        # key -> int | float | bool | str | list[str] | np.ndarray
    tensors: dict         # name -> TensorInfo, in file order
    alignment: int
    data: object = dataclasses.field(repr=False, default=None)   # the mmap

    @property
    def architecture(self) -> str | None:
        """`general.architecture` from the metadata ("llama", "gpt2", "gemma3", ...), or None."""
        return self.metadata.get("general.architecture")

    def tensor_bytes(self, name: str) -> np.ndarray:
        """The stored bytes of one tensor: a read-only uint8 view of the mapped file."""
        info = self.tensors[name]
        return np.frombuffer(self.data, dtype=np.uint8, count=info.nbytes, offset=info.offset)

    def tensor(self, name: str) -> np.ndarray:
        """One tensor as float32 in NumPy order (quantized types dequantized)."""
        info = self.tensors[name]
        try:
            return blocks.dequantize(self.tensor_bytes(name), info.ggml_type, info.shape)
        except CheckpointError as e:
            raise CheckpointError(f"{self.path}: tensor '{name}': {e}") from None


class _Cursor:
    """Sequential little-endian reads from the mapped header, every read bounds-checked."""

    def __init__(self, buf, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise CheckpointError(f"{self.path}: file ends inside the {what} (needs {n} bytes at "
                                  f"offset {self.pos}, file has {len(self.buf)}; truncated?)")
        view = memoryview(self.buf)[self.pos:self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("<Q", what)
        raw = self.take(n, what)
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as e:
            raise CheckpointError(f"{self.path}: {what} is not valid UTF-8 ({e})") from None

    def value(self, kind: int, what: str):
        if kind == STRING:
            return self.string(what)
        if kind in SCALARS:
            dt = np.dtype(SCALARS[kind])
            return np.frombuffer(self.take(dt.itemsize, what), dtype=dt)[0].item()
        if kind == ARRAY:
            item, count = self.unpack("<I", what), self.unpack("<Q", what)
            if item in SCALARS:     # numeric arrays: one frombuffer, no Python loop
                dt = np.dtype(SCALARS[item])
                raw = self.take(count * dt.itemsize, what)
                return np.frombuffer(raw, dtype=dt).copy()
            if count > len(self.buf) - self.pos:   # every element takes at least one byte
                raise CheckpointError(f"{self.path}: {what} claims {count} elements, more than "
                                      "the file could hold (truncated or corrupt)")
            return [self.value(item, what) for _ in range(count)]
        raise CheckpointError(f"{self.path}: {what} has unknown value type {kind} "
                              f"(expected 0-12)")


def read_gguf(path) -> GGUFFile:
    """Parse the header, metadata and tensor table of a GGUF file and map its data."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such GGUF file" if not path.exists() else
                              f"{path}: not a regular file (expected a .gguf file)")
    with open(path, "rb") as f:
        size = path.stat().st_size
        if size < 24:
            raise CheckpointError(f"{path}: file is {size} bytes, too short for a GGUF header "
                                  "(24 bytes)")
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    cur = _Cursor(data, path)
    magic = bytes(cur.take(4, "header"))
    if magic != MAGIC:
        raise CheckpointError(f"{path}: not a GGUF file (magic {magic!r}, expected {MAGIC!r})")
    version = cur.unpack("<I", "header")
    if version not in VERSIONS:
        hint = " (a big-endian file?)" if version > 0xFFFF else ""
        raise CheckpointError(f"{path}: GGUF version {version} is not supported (expected one "
                              f"of {VERSIONS}){hint}")
    n_tensors, n_kv = cur.unpack("<Q", "header"), cur.unpack("<Q", "header")
    if n_tensors > size or n_kv > size:
        raise CheckpointError(f"{path}: header claims {n_tensors} tensors and {n_kv} metadata "
                              f"entries, impossible in {size} bytes (corrupt file)")
    metadata = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}")
        metadata[key] = cur.value(cur.unpack("<I", f"metadata '{key}'"), f"metadata '{key}'")
    alignment = metadata.get("general.alignment", ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise CheckpointError(f"{path}: general.alignment must be a power of two, found "
                              f"{alignment!r}")
    infos = []
    for i in range(n_tensors):
        name = cur.string(f"tensor info #{i}")
        where = f"tensor '{name}'"
        n_dims = cur.unpack("<I", where)
        if not 1 <= n_dims <= MAX_DIMS:
            raise CheckpointError(f"{path}: {where} has {n_dims} dimensions (expected 1 to "
                                  f"{MAX_DIMS})")
        ne = [cur.unpack("<Q", where) for _ in range(n_dims)]
        ggml_type, offset = cur.unpack("<I", where), cur.unpack("<Q", where)
        infos.append((name, ne, ggml_type, offset))
    data_start = cur.pos + (-cur.pos % alignment)
    tensors = {}
    for name, ne, ggml_type, offset in infos:
        where = f"{path}: tensor '{name}'"
        if name in tensors:
            raise CheckpointError(f"{where} appears twice in the tensor table")
        try:
            nbytes = blocks.nbytes(ggml_type, ne)
        except CheckpointError as e:
            raise CheckpointError(f"{where}: {e}") from None
        if offset % alignment:
            raise CheckpointError(f"{where}: offset {offset} is not a multiple of the "
                                  f"alignment {alignment}")
        start = data_start + offset
        if start + nbytes > size:
            raise CheckpointError(f"{where}: data [{start}, {start + nbytes}) runs past the end "
                                  f"of the {size}-byte file (truncated?)")
        tensors[name] = TensorInfo(name, tuple(int(n) for n in reversed(ne)), ggml_type, start,
                                   nbytes)
    ranges = sorted((t.offset, t.offset + t.nbytes, t.name) for t in tensors.values())
    for (b0, e0, n0), (b1, _, n1) in zip(ranges, ranges[1:]):
        if b1 < e0:
            raise CheckpointError(f"{path}: tensors '{n0}' and '{n1}' overlap in the data section")
    return GGUFFile(path=path, version=version, metadata=metadata, tensors=tensors,
                    alignment=alignment, data=data)
