"""minislm.gguf: the container reader and the dequantizers of every supported block type.

Dequantizers are compared bit for bit with the `gguf` package (llama.cpp's gguf-py) on
random blocks: random bytes already hit every code, and the drawn fp16 scales include
zero, subnormals, the largest finite value, ±inf and NaN.
"""
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minislm.errors import CheckpointError
from minislm.gguf import blocks
from minislm.gguf.reader import read_gguf

gguf = pytest.importorskip("gguf")

# byte offsets of the fp16 scalars (d, dmin / m) inside each block type
SCALE_OFFSETS = {"Q8_0": (0,), "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2),
                 "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2),
                 "Q6_K": (208,)}
EXTREME_F16 = [0.0, -0.0, 6.0e-8, -6.0e-8, 3.0e-5, 65504.0, -65504.0, np.inf, -np.inf, np.nan,
               1.0, 0.00097656]


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(blocks.DEQUANTIZERS)), n_blocks=st.integers(1, 9),
       seed=st.integers(0, 2 ** 32 - 1),
       scales=st.lists(st.sampled_from(EXTREME_F16), min_size=0, max_size=4))
def test_dequantizers_bit_exact_with_gguf_package(name, n_blocks, seed, scales):
    size, type_size, _ = blocks.DEQUANTIZERS[name]
    raw = np.random.default_rng(seed).integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for i, value in enumerate(scales):                 # plant extreme scales in some blocks
        for off in SCALE_OFFSETS.get(name, ()):
            raw[i % n_blocks, off:off + 2] = np.frombuffer(np.float16(value).tobytes(), np.uint8)
    with np.errstate(all="ignore"):
        ref = gguf.quants.dequantize(raw.reshape(1, -1), gguf.GGMLQuantizationType[name])
    ours = blocks.dequantize(raw.reshape(-1), blocks.TYPE_IDS[name], ref.shape)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (1, n_blocks * size)
    np.testing.assert_array_equal(ours, ref)                      # NaN positions equal too
    finite = np.isfinite(ref)
    assert np.array_equal(ours[finite].view(np.uint32), ref[finite].view(np.uint32))


def test_q4_1_block_by_hand():
    d, m = np.float16(0.5), np.float16(-1.0)
    codes = np.arange(32) % 16
    qs = (codes[:16] | (codes[16:] << 4)).astype(np.uint8)
    raw = np.concatenate([np.frombuffer(d.tobytes() + m.tobytes(), np.uint8), qs])
    x = blocks.dequantize(raw, blocks.TYPE_IDS["Q4_1"], (32,))
    np.testing.assert_array_equal(x, 0.5 * codes - 1.0)


def test_q4_k_sub_block_scales_by_hand():
    """Sub-block 5 (j ≥ 4) takes its scale's top bits from byte j-4 and low bits from j+4."""
    raw = np.zeros(144, np.uint8)
    raw[0:2] = np.frombuffer(np.float16(1.0).tobytes(), np.uint8)       # d
    raw[2:4] = np.frombuffer(np.float16(2.0).tobytes(), np.uint8)       # dmin
    raw[4 + 1] = 0b11_000000            # top bits of sc_5 = 3
    raw[4 + 9] = 0b0010_0101            # low bits of sc_5 = 5, of m_5 = 2
    raw[16 + 64:16 + 96] = 0x70         # chunk 2: sub-block 4 codes 0, sub-block 5 codes 7
    x = blocks.dequantize(raw, blocks.TYPE_IDS["Q4_K"], (256,)).reshape(8, 32)
    sc5, m5 = 5 | 3 << 4, 2
    np.testing.assert_array_equal(x[5], np.full(32, 1.0 * sc5 * 7 - 2.0 * m5, np.float32))


# --------------------------------------------------------------------------- the container
def _write(path, tensors=None, arch="llama", extra=None):
    """A small GGUF file through the reference writer (gguf.GGUFWriter)."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_uint32("test.count", 7)
    w.add_array("test.list", [1, 2, 3])
    w.add_array("test.words", ["a", "bé", "🤖"])
    w.add_float32("test.eps", 1e-5)
    for key, value in (extra or {}).items():
        w.add_string(key, value)
    for name, arr, qtype in tensors or []:
        if qtype is None:
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def small_file(tmp_path):
    rng = np.random.default_rng(0)
    Q = gguf.GGMLQuantizationType
    tensors = [("a.weight", rng.standard_normal((3, 64)).astype(np.float32), None),
               ("b.weight", rng.standard_normal((5,)).astype(np.float16), None),
               ("c.weight", rng.standard_normal((4, 64)).astype(np.float32), Q.Q4_1),
               ("d.weight", rng.standard_normal((2, 32)).astype(np.float32), Q.Q8_0)]
    return _write(tmp_path / "small.gguf", tensors), tensors


def test_reader_matches_reference_reader(small_file):
    path, tensors = small_file
    f = read_gguf(path)
    ref = gguf.GGUFReader(str(path))
    assert f.version == 3 and f.architecture == "llama"
    assert f.metadata["test.count"] == 7 and f.metadata["test.words"] == ["a", "bé", "🤖"]
    assert list(f.metadata["test.list"]) == [1, 2, 3]
    assert f.metadata["test.eps"] == pytest.approx(1e-5)
    assert list(f.tensors) == [t.name for t in ref.tensors]
    for t in ref.tensors:
        info = f.tensors[t.name]
        assert info.offset == int(t.data_offset)             # absolute in both readers
        assert info.offset % f.alignment == 0
        np.testing.assert_array_equal(f.tensor_bytes(t.name), np.asarray(t.data).view(np.uint8).reshape(-1))
        ours = f.tensor(t.name)
        expected = gguf.quants.dequantize(t.data, t.tensor_type)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, expected.reshape(ours.shape))
    assert f.tensor("a.weight").shape == (3, 64) and f.tensor("c.weight").shape == (4, 64)
    np.testing.assert_array_equal(f.tensor("a.weight"), tensors[0][1])


def test_reader_honours_alignment(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "a.gguf"), "llama")
    w.data_alignment = 64
    w.add_uint32("general.alignment", 64)
    w.add_tensor("x", np.ones(3, np.float32))
    w.add_tensor("y", np.arange(5, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = read_gguf(tmp_path / "a.gguf")
    assert f.alignment == 64 and all(t.offset % 64 == 0 for t in f.tensors.values())
    np.testing.assert_array_equal(f.tensor("y"), np.arange(5, dtype=np.float32))


def _patched(path, offset, new: bytes, out):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(new)] = new
    out.write_bytes(bytes(raw))
    return out


@pytest.mark.parametrize("case, pattern", [
    ("magic", "not a GGUF file"),
    ("version", "version 7 is not supported"),
    ("big_endian", "big-endian"),
    ("truncated_header", "truncated"),
    ("truncated_data", "past the end"),
    ("unknown_type", "unknown ggml tensor type 99"),
    ("unsupported_type", "IQ2_XXS .* not supported"),
    ("tiny", "too short"),
])
def test_bad_files_give_clear_errors(small_file, tmp_path, case, pattern):
    path, _ = small_file
    raw = path.read_bytes()
    bad = tmp_path / "bad.gguf"
    f = read_gguf(path)
    info = f.tensors["a.weight"]
    # the tensor-info record of a.weight: name, n_dims, ne, then the type u32
    name_at = raw.index(b"a.weight")
    type_at = name_at + len(b"a.weight") + 4 + 8 * 2
    if case == "magic":
        _patched(path, 0, b"GGUX", bad)
    elif case == "version":
        _patched(path, 4, struct.pack("<I", 7), bad)
    elif case == "big_endian":
        _patched(path, 4, struct.pack(">I", 3), bad)
    elif case == "truncated_header":
        bad.write_bytes(raw[:name_at])
    elif case == "truncated_data":
        bad.write_bytes(raw[:info.offset + 10])
    elif case == "unknown_type":
        _patched(path, type_at, struct.pack("<I", 99), bad)
    elif case == "unsupported_type":
        _patched(path, type_at, struct.pack("<I", 16), bad)
    elif case == "tiny":
        bad.write_bytes(b"GGUF")
    with pytest.raises(CheckpointError, match=pattern):
        read_gguf(bad)


def test_offset_past_the_end_and_misaligned(small_file, tmp_path):
    path, _ = small_file
    raw = path.read_bytes()
    at = raw.index(b"d.weight") + len(b"d.weight") + 4 + 8 * 2 + 4     # offset u64 of d.weight
    (offset,) = struct.unpack_from("<Q", raw, at)
    with pytest.raises(CheckpointError, match="past the end"):
        read_gguf(_patched(path, at, struct.pack("<Q", offset + 32 * 1000), tmp_path / "p.gguf"))
    with pytest.raises(CheckpointError, match="not a multiple of the alignment"):
        read_gguf(_patched(path, at, struct.pack("<Q", offset + 1), tmp_path / "m.gguf"))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such GGUF file"):
        read_gguf(tmp_path / "absent.gguf")
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_gguf(tmp_path)
