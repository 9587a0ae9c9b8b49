"""Checkpoint files in and out: safetensors read by hand, written atomically.

A safetensors file is::

    [8 bytes: N, little-endian u64] [N bytes: JSON header] [data]
    header = {"<tensor name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
              "__metadata__": {...}}            # offsets are relative to the data section

We parse the header ourselves (so every malformed file gets a message naming the
file and the tensor) and memory-map the data: a float32 tensor is a read-only
view of the file, so a LLaMA-3.2-1B-sized checkpoint is never held twice.

bfloat16: NumPy has no bf16 dtype and `safetensors.numpy` refuses it. A bf16
number is the top 16 bits of a float32, so we read the raw uint16 bits, shift
them left by 16 and view the result as float32 — exact, no rounding.

Pickle checkpoints (`*.bin`, `*.pt`, `*.pkl`, `*.pth`) can run arbitrary code
when unpickled: minislm refuses them and never unpickles.
"""
from __future__ import annotations

import glob
import json
import math
import mmap
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from .errors import CheckpointError

# safetensors dtype code -> (numpy dtype of the stored bits, itemsize)
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # decoded by bit shifting, see module docstring
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "U16": np.dtype("<u2"), "U32": np.dtype("<u4"), "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
}
NUMPY_TO_CODE = {np.dtype("float64"): "F64", np.dtype("float32"): "F32",
                 np.dtype("float16"): "F16", np.dtype("int64"): "I64",
                 np.dtype("int32"): "I32", np.dtype("int16"): "I16", np.dtype("int8"): "I8",
                 np.dtype("uint8"): "U8", np.dtype("uint16"): "U16", np.dtype("uint32"): "U32",
                 np.dtype("uint64"): "U64", np.dtype("bool"): "BOOL"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
MAX_HEADER_BYTES = 100 * 1024 * 1024
# safetensors files minislm writes beside the weights: never read as a shard of the model
NOT_WEIGHTS = ("masks.safetensors", "trainer_state.safetensors", "adapter_model.safetensors")


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bf16 is the high half of a float32: widen the uint16 bits and shift left by 16."""
    wide = bits.astype(np.uint32)
    wide <<= 16                      # in place: one float32-sized allocation per tensor
    return wide.view(np.float32)


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bf16 bits (as torch does)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + rounding) >> 16).astype(np.uint16)


# --------------------------------------------------------------------------- reading
def read_header(path) -> tuple[dict, dict, int]:
    """(tensor entries, __metadata__, byte offset of the data section), fully validated."""
    path = Path(path)
    if path.exists() and not path.is_file():   # a folder, or a FIFO that would block forever
        raise CheckpointError(f"{path}: not a regular file (expected a safetensors file)")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: file is {size} bytes, too short for a safetensors "
                                      "header (expected at least 8)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise CheckpointError(f"{path}: header length field says {n} bytes but the file "
                                      f"has only {size - 8} bytes after it (truncated or not "
                                      "a safetensors file)")
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: header length field says {n} bytes, over the "
                                      f"{MAX_HEADER_BYTES // 2 ** 20} MiB limit for a safetensors "
                                      "header (real headers take kilobytes: a corrupted or "
                                      "hostile file)")
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSON, huge ints
        raise CheckpointError(f"{path}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header must be a JSON object, found "
                              f"{type(header).__name__}")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: '__metadata__' must be an object")
    data_start, data_len = 8 + n, size - 8 - n
    ranges = []
    for name, entry in header.items():
        where = f"{path}: tensor '{name}'"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: entry must be an object")
        code, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(code, str) or code not in DTYPES:
            raise CheckpointError(f"{where}: unknown dtype {code!r} (expected one of "
                                  f"{sorted(DTYPES)})")
        if (not isinstance(shape, list) or
                not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise CheckpointError(f"{where}: shape must be a list of non-negative ints, "
                                  f"found {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or
                not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise CheckpointError(f"{where}: data_offsets must be [begin, end], found {offsets!r}")
        begin, end = offsets
        expected = math.prod(shape) * DTYPES[code].itemsize      # Python ints: no overflow
        if not 0 <= begin <= end <= data_len:
            raise CheckpointError(f"{where}: data_offsets {offsets} fall outside the "
                                  f"{data_len}-byte data section (file truncated?)")
        if end - begin != expected:
            raise CheckpointError(f"{where}: shape {shape} of {code} needs {expected} bytes but "
                                  f"data_offsets span {end - begin}")
        ranges.append((begin, end, name))
    ranges.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(ranges, ranges[1:]):
        if b1 < e0:
            raise CheckpointError(f"{path}: tensors '{n0}' and '{n1}' overlap in the data "
                                  f"section ([{b0},{e0}) and [{b1},{e1}))")
    return header, metadata, data_start


def read_safetensors(path, names=None, dtype=None) -> dict[str, np.ndarray]:
    """Tensors of one file as arrays; memory-mapped read-only views where possible.

    dtype: cast floating tensors to it (None keeps F32/F64 as stored and widens
    F16/BF16 to float32). Integer tensors are never cast.
    """
    path = Path(path)
    header, _, data_start = read_header(path)
    out = {}
    if not header:
        return out
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else None
    for name, entry in header.items():
        if names is not None and name not in names:
            continue
        code, shape = entry["dtype"], entry["shape"]
        begin, end = entry["data_offsets"]
        raw = np.frombuffer(mm, dtype=DTYPES[code], count=(end - begin) // DTYPES[code].itemsize,
                            offset=data_start + begin).reshape(shape)
        if code == "BF16":
            arr = bf16_bits_to_float32(raw)
        elif code == "F16":
            arr = raw.astype(np.float32)
        else:
            arr = raw
        if dtype is not None and arr.dtype.kind == "f" and arr.dtype != dtype:
            arr = arr.astype(dtype)
        out[name] = arr
    return out


def checkpoint_files(folder) -> list[Path]:
    """The safetensors files of an HF folder (single file or sharded with an index)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder (expected a Hugging Face checkpoint "
                              "folder with config.json and *.safetensors)")
    index = folder / "model.safetensors.index.json"
    if index.exists():
        if not index.is_file():
            raise CheckpointError(f"{index}: not a regular file (expected a JSON weight map)")
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        except (OSError, ValueError, RecursionError, KeyError, TypeError,
                AttributeError) as e:  # ValueError covers JSON and UTF-8 decoding errors
            raise CheckpointError(f"{index}: expected JSON with a 'weight_map' object of "
                                  f"tensor -> shard file ({e!r})") from None
        paths = []
        for name in files:
            # The shard's *name* must stay inside the folder; the file itself may be a
            # symlink elsewhere: huggingface_hub's cache keeps snapshots/<rev>/NAME as a
            # link to ../../blobs/<sha256>.
            relative = Path(str(name))
            if relative.is_absolute() or ".." in relative.parts:
                raise CheckpointError(f"{index}: shard '{name}' points outside {folder} "
                                      "(expected a file name inside the folder)")
            p = folder / relative
            if not p.exists():
                dangling = f" (a symlink to {os.readlink(p)}, which does not exist)" \
                    if p.is_symlink() else ""
                raise CheckpointError(f"{index}: shard '{name}' is missing from "
                                      f"{folder}{dangling}")
            paths.append(p)
        return paths
    single = folder / "model.safetensors"
    if single.exists():
        return [single]
    shards = sorted(p for p in folder.glob("*.safetensors") if p.name not in NOT_WEIGHTS)
    if shards:
        return shards
    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise CheckpointError(f"{folder}: only pickle checkpoints found ({', '.join(pickles)}); "
                              "unpickling can run arbitrary code, so minislm refuses them. "
                              "Convert them to safetensors with the tool you trust first.")
    others = sorted(p.name for p in folder.glob("*.safetensors"))
    raise CheckpointError(f"{folder}: no *.safetensors weights found" +
                          (f" ({', '.join(others)} hold other data, not the model's weights)"
                           if others else ""))


def read_checkpoint(folder, dtype=None) -> tuple[dict[str, np.ndarray], dict]:
    """All tensors of an HF folder and the merged `__metadata__` of its files."""
    tensors, metadata = {}, {}
    for path in checkpoint_files(folder):
        header, meta, _ = read_header(path)
        metadata.update(meta)
        for name, arr in read_safetensors(path, dtype=dtype).items():
            if name in tensors:
                raise CheckpointError(f"{path}: tensor '{name}' also appears in another shard")
            tensors[name] = arr
    return tensors, metadata


# --------------------------------------------------------------------------- writing
def atomic_write_bytes(path, data: bytes | None = None, writer=None) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename into place.

    An interrupted write leaves the old complete file (or none), never half a file.
    Either pass `data`, or `writer(f)` that writes to the open binary file.
    The temporary name `.NAME.PID.xxxx.tmp` carries the writer's process id: a
    process killed mid-write (SIGKILL cannot be caught) leaves its temp file
    behind, and the next write of the same file removes it once that process is
    gone, so a killed multi-GB save does not leak disk space forever.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if writer is not None:
                writer(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _remove_stale_temps(path: Path) -> None:
    """Delete `.NAME.PID.*.tmp` files of `path` whose writing process no longer exists."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)             # signal 0: only asks whether the process exists
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (PermissionError, OverflowError, OSError):
            pass                             # alive under another user, or not a pid: keep


def atomic_write_text(path, text: str) -> Path:
    """Write `text` as UTF-8 to `path` atomically (see `atomic_write_bytes`); returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_safetensors(path, tensors: dict[str, np.ndarray], metadata: dict | None = None,
                      bf16: bool = False) -> Path:
    """Write tensors as one safetensors file, atomically (float32 stays float32 unless bf16)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        if bf16 and arr.dtype in (np.float32, np.float64):  # fp16 scales stay fp16
            arr, code = float32_to_bf16_bits(arr), "BF16"
        else:
            if arr.dtype not in NUMPY_TO_CODE:
                raise CheckpointError(f"{path}: tensor '{name}' has dtype {arr.dtype}, which "
                                      "safetensors cannot store")
            code = NUMPY_TO_CODE[arr.dtype]
        arr = np.ascontiguousarray(arr)
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        blobs.append(arr)
        offset += arr.nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # align the data section to 8 bytes

    def writer(f):
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for arr in blobs:
            f.write(memoryview(arr.reshape(-1)).cast("B"))

    return atomic_write_bytes(path, writer=writer)
