"""Malformed inputs at every entry point end in one clear `MinislmError`.

Each case feeds one broken file, config, tokenizer, id array, corpus, pipeline
config or command line, and requires a `MinislmError` subclass whose message
names the file or field — never a bare IndexError/KeyError/struct.error/
UnicodeDecodeError/ValueError/TypeError, never a hang. Every input fed is
counted; the count is printed at the end of the module (and asserted ≥ 200 by
`test_malformed_input_count` when the whole module runs).
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minislm
from minislm import pipeline
from minislm.checkpoint import read_safetensors, write_safetensors
from minislm.cli import main as cli_main
from minislm.config import Config
from minislm.data.corpus import load_text_corpus
from minislm.errors import (CheckpointError, ConfigError, InputError, MinislmError,
                            NumericalError, ResourceError, TokenizerError)

from reliability_helpers import config_dict, make_checkpoint, raw_safetensors, tiny_tokenizer_json

REPO = Path(__file__).resolve().parents[1]
COUNT: collections.Counter = collections.Counter()      # inputs fed, per category
ACCEPTED: collections.Counter = collections.Counter()   # of those, found harmless (no error)
MINIMUM = 200


def fuzz(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def refused(category, fn, error=MinislmError, names=()):
    """Feed one malformed input: fn() must raise `error` (a MinislmError) naming `names`."""
    with pytest.raises(MinislmError) as info:
        fn()
    assert isinstance(info.value, error), f"expected {error.__name__}, got {info.value!r}"
    message = str(info.value)
    for name in names:
        assert str(name) in message, f"{name!r} not named in: {message}"
    COUNT[category] += 1
    return info.value


def handled(category, fn):
    """Feed one possibly-harmless corrupted input: success or a MinislmError, nothing else."""
    try:
        result = fn()
    except MinislmError as e:
        result = e
    COUNT[category] += 1
    if not isinstance(result, MinislmError):
        ACCEPTED[category] += 1
    return result


class CountReport:
    """A plugin registered at run time: prints the count in pytest's terminal summary."""

    @staticmethod
    def pytest_terminal_summary(terminalreporter):
        total, ok = sum(COUNT.values()), sum(ACCEPTED.values())
        terminalreporter.section("malformed inputs (tests/test_bad_inputs.py)")
        terminalreporter.write_line(f"malformed inputs fed: {total}; refused with a MinislmError: "
                                    f"{total - ok}; harmless corruptions accepted: {ok}")
        for k, v in sorted(COUNT.items()):
            extra = f"  ({ACCEPTED[k]} accepted as valid)" if ACCEPTED[k] else ""
            terminalreporter.write_line(f"  {k:<30} {v}{extra}")


@pytest.fixture(scope="module", autouse=True)
def report_count(request):
    manager = request.config.pluginmanager
    if not manager.has_plugin("minislm-bad-input-count"):
        manager.register(CountReport(), "minislm-bad-input-count")
    yield


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("bad")


def fresh(base) -> Path:
    return Path(tempfile.mkdtemp(dir=base))


@pytest.fixture(scope="module")
def gpt2_dir(base):
    return make_checkpoint(base / "gpt2", "gpt2")


@pytest.fixture(scope="module")
def llama_dir(base):
    return make_checkpoint(base / "llama", "llama")


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return minislm.load(gpt2_dir)


# ============================================================== safetensors files
def valid_file_bytes() -> bytes:
    header = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
              "b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},
              "__metadata__": {"format": "pt"}}
    return raw_safetensors(header, bytes(range(32)))


@fuzz(40)
@given(st.data())
def test_truncated_safetensors(base, data):
    good = valid_file_bytes()
    cut = data.draw(st.integers(0, len(good) - 1), label="cut")
    path = fresh(base) / "model.safetensors"
    path.write_bytes(good[:cut])
    refused("safetensors truncated", lambda: read_safetensors(path), CheckpointError, [path])


@fuzz(20)
@given(st.integers(0, 2 ** 64 - 1))
def test_header_length_field_lies(base, n):
    good = valid_file_bytes()
    true_n = struct.unpack("<Q", good[:8])[0]
    if n == true_n:
        return
    path = fresh(base) / "model.safetensors"
    path.write_bytes(struct.pack("<Q", n) + good[8:])
    refused("safetensors header length", lambda: read_safetensors(path), CheckpointError, [path])


def test_header_over_the_cap_is_not_called_truncated(base):
    """A 101 MiB sparse file whose header claims 100 MiB + 1 byte: the cap, not truncation."""
    path = fresh(base) / "model.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", 100 * 2 ** 20 + 1))
        f.truncate(101 * 2 ** 20)                 # a hole: no disk used
    error = refused("safetensors header length", lambda: read_safetensors(path),
                    CheckpointError, [path, "100 MiB limit"])
    assert "truncated" not in str(error)


@fuzz(20)
@given(st.binary(min_size=1, max_size=64))
def test_header_is_not_json(base, junk):
    try:
        json.loads(junk.decode("utf-8"))
        return                                     # happens to be JSON: other tests cover it
    except (UnicodeDecodeError, ValueError, RecursionError):
        pass
    path = fresh(base) / "model.safetensors"
    path.write_bytes(raw_safetensors(junk, b""))
    refused("safetensors header not JSON", lambda: read_safetensors(path), CheckpointError,
            [path])


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                 st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=2),
                                                                           st.integers(),
                                                                           max_size=2))
DTYPE = st.one_of(st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL"]), JUNK,
                  st.sampled_from(["F8", "f32", "FP32", "Q4_0", "", "float32"]))
SHAPE = st.one_of(st.lists(st.integers(0, 5), max_size=3),
                  st.lists(st.one_of(st.integers(-5, 5), st.integers(2 ** 31, 2 ** 80),
                                     st.booleans(), st.floats(0, 4)), max_size=3), JUNK)
OFFSETS = st.one_of(st.lists(st.integers(-4, 80), min_size=2, max_size=2),
                    st.lists(st.integers(0, 2 ** 66), min_size=0, max_size=3), JUNK)


@fuzz(70)
@given(st.dictionaries(st.text(min_size=1, max_size=6),
                       st.fixed_dictionaries({"dtype": DTYPE, "shape": SHAPE,
                                              "data_offsets": OFFSETS}),
                       min_size=1, max_size=3),
       st.integers(0, 64))
def test_header_lies_about_dtypes_shapes_offsets(base, header, data_len):
    """Random headers over a random-length data section: consistent ones load with the
    declared shapes, every inconsistent one is refused naming the file and the tensor."""
    path = fresh(base) / "model.safetensors"
    path.write_bytes(raw_safetensors(header, b"\x01" * data_len))
    result = handled("safetensors header lies", lambda: read_safetensors(path))
    if isinstance(result, MinislmError):
        assert isinstance(result, CheckpointError) and str(path) in str(result)
        assert "tensor '" in str(result) or "overlap" in str(result) or "header" in str(result)
    else:
        for name, arr in result.items():
            assert list(arr.shape) == header[name]["shape"]


EXPLICIT_HEADERS = {
    "overlap": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 12, "overlap"),
    "same range": ({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                    "b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}, 4, "overlap"),
    "unknown dtype": ({"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, 2,
                      "unknown dtype"),
    "dtype as list": ({"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, 4,
                      "unknown dtype"),
    "shape too big for offsets": ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
                                  8, "needs 12 bytes"),
    "shape overflows int64": ({"a": {"dtype": "F32", "shape": [2 ** 62, 4],
                                     "data_offsets": [0, 0]}}, 0, "needs"),
    "negative dim": ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4,
                     "non-negative"),
    "offsets past end": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8,
                         "outside"),
    "offsets reversed": ({"a": {"dtype": "U8", "shape": [0], "data_offsets": [4, 2]}}, 8,
                         "outside"),
    "entry not object": ({"a": [1, 2, 3]}, 0, "must be an object"),
    "header is a list": ([1, 2], 0, "JSON object"),
    "metadata not object": ({"__metadata__": [1]}, 0, "__metadata__"),
    "offsets missing": ({"a": {"dtype": "F32", "shape": [1]}}, 4, "data_offsets"),
    "deeply nested": (b"[" * 50_000, 0, "not valid"),
    "integer with 5000 digits": (b'{"a": ' + b"7" * 5000 + b"}", 0, "not valid"),
    "invalid utf-8": (b'{"\xff": 1}', 0, "not valid"),
}


@pytest.mark.parametrize("case", list(EXPLICIT_HEADERS))
def test_explicit_broken_headers(base, case):
    header, data_len, words = EXPLICIT_HEADERS[case]
    path = fresh(base) / "model.safetensors"
    path.write_bytes(raw_safetensors(header, b"\0" * data_len))
    refused("safetensors explicit", lambda: read_safetensors(path), CheckpointError,
            [path, words])


@fuzz(30)
@given(st.data())
def test_bit_flips_in_a_checkpoint(base, gpt2_dir, data):
    """Random byte corruption anywhere in model.safetensors: a clean error or a model
    whose tensors all have the declared shapes (data corruption without a header
    change cannot be detected without checksums; NaN/Inf is caught)."""
    folder = fresh(base)
    shutil.copytree(gpt2_dir, folder, dirs_exist_ok=True)
    path = folder / "model.safetensors"
    raw = bytearray(path.read_bytes())
    header_end = 8 + struct.unpack("<Q", raw[:8])[0]
    where = data.draw(st.one_of(st.integers(0, header_end - 1), st.integers(0, len(raw) - 1)),
                      label="offset")
    raw[where] ^= data.draw(st.integers(1, 255), label="xor")
    path.write_bytes(bytes(raw))
    result = handled("safetensors bit flip", lambda: minislm.load(folder))
    if not isinstance(result, MinislmError):
        assert all(np.isfinite(v).all() for v in result.params.values())


# ============================================================== checkpoint folders
def _copy(src, base):
    folder = fresh(base)
    shutil.copytree(src, folder, dirs_exist_ok=True)
    return folder


def _rewrite_tensors(folder, change):
    path = folder / "model.safetensors"
    tensors = {k: np.array(v) for k, v in read_safetensors(path).items()}
    change(tensors)
    write_safetensors(path, tensors)


def _only_pickle(name):
    """Replace the safetensors weights by a (pickle-headed) file called `name`."""
    def change(folder):
        (folder / "model.safetensors").unlink()
        (folder / name).write_bytes(b"\x80\x04.")
    return change


FOLDER_CASES = {
    "config.json missing": (lambda f: (f / "config.json").unlink(), ConfigError, "config.json"),
    "config.json is a folder": (lambda f: ((f / "config.json").unlink(),
                                           (f / "config.json").mkdir()), ConfigError,
                                "config.json"),
    "config.json empty": (lambda f: (f / "config.json").write_text(""), ConfigError,
                          "not valid JSON"),
    "config.json latin-1": (lambda f: (f / "config.json").write_bytes(b'{"a": "\xe9"}'),
                            ConfigError, "UTF-8"),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), CheckpointError,
                   "no *.safetensors"),
    "model.safetensors is a folder": (lambda f: ((f / "model.safetensors").unlink(),
                                                 (f / "model.safetensors").mkdir()),
                                      CheckpointError, "model.safetensors"),
    "only pytorch_model.bin": (_only_pickle("pytorch_model.bin"), CheckpointError, "pickle"),
    "only model.pt": (_only_pickle("model.pt"), CheckpointError, "pickle"),
    "only model.pth": (_only_pickle("model.pth"), CheckpointError, "pickle"),
    "only weights.pkl": (_only_pickle("weights.pkl"), CheckpointError, "pickle"),
    "trust_remote_code": (lambda f: _edit_config(f, trust_remote_code=True), ConfigError,
                          "trust_remote_code"),
    "auto_map": (lambda f: _edit_config(f, auto_map={"AutoModelForCausalLM": "modeling.M"}),
                 ConfigError, "auto_map"),
    "index not JSON": (lambda f: (f / "model.safetensors.index.json").write_text("{"),
                       CheckpointError, "weight_map"),
    "index without weight_map": (lambda f: (f / "model.safetensors.index.json")
                                 .write_text('{"metadata": {}}'), CheckpointError, "weight_map"),
    "index weight_map a list": (lambda f: (f / "model.safetensors.index.json")
                                .write_text('{"weight_map": ["a"]}'), CheckpointError,
                                "weight_map"),
    "index is a folder": (lambda f: (f / "model.safetensors.index.json").mkdir(),
                          CheckpointError, "index"),
    "index with a 5000-digit number": (lambda f: (f / "model.safetensors.index.json")
                                       .write_text('{"weight_map": {}, "n": ' + "9" * 5000 +
                                                   "}"), CheckpointError, "index"),
    "index shard missing": (lambda f: (f / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "model-00002-of-00002.safetensors"}})),
        CheckpointError, "model-00002-of-00002.safetensors"),
    "index shard outside the folder": (lambda f: (f / "model.safetensors.index.json")
                                       .write_text(json.dumps({"weight_map": {
                                           "x": "../../model.safetensors"}})),
                                       CheckpointError, "../../model.safetensors"),
    "tensor missing": (lambda f: _rewrite_tensors(f, lambda t: t.pop("transformer.ln_f.bias")),
                       CheckpointError, "transformer.ln_f.bias"),
    "tensor transposed": (lambda f: _rewrite_tensors(f, lambda t: t.__setitem__(
        "transformer.h.1.mlp.c_proj.weight", t["transformer.h.1.mlp.c_proj.weight"].T.copy())),
        CheckpointError, "transformer.h.1.mlp.c_proj.weight"),
    "tensor of integers": (lambda f: _rewrite_tensors(f, lambda t: t.__setitem__(
        "transformer.ln_f.weight", np.ones(16, np.int32))), CheckpointError,
        "transformer.ln_f.weight"),
    "tensor with Inf": (lambda f: _rewrite_tensors(f, lambda t: t["transformer.h.0.ln_1.bias"]
                                                   .__setitem__(0, np.inf)), MinislmError,
                        "transformer.h.0.ln_1.bias"),
    "unexpected tensor": (lambda f: _rewrite_tensors(f, lambda t: t.__setitem__(
        "transformer.h.7.mlp.c_fc.weight", np.ones(2, np.float32))), CheckpointError,
        "transformer.h.7.mlp.c_fc.weight"),
    "config for a bigger model": (lambda f: _edit_config(f, n_layer=5000), CheckpointError,
                                  "parameters"),
    "config with 10**15 layers": (lambda f: _edit_config(f, n_layer=10 ** 15), ConfigError,
                                  "n_layer"),
    "config vocab larger than weights": (lambda f: _edit_config(f, vocab_size=10 ** 12),
                                         CheckpointError, "config.json"),
    "mask for no weight": (lambda f: write_safetensors(f / "masks.safetensors",
                                                       {"nope": np.ones(3, np.uint8)}),
                           CheckpointError, "nope"),
    "mask of the wrong shape": (lambda f: write_safetensors(
        f / "masks.safetensors", {"transformer.h.0.mlp.c_fc.weight": np.ones((2, 2), np.uint8)}),
        CheckpointError, "transformer.h.0.mlp.c_fc.weight"),
    "masks file garbage": (lambda f: (f / "masks.safetensors").write_bytes(b"garbage garbage"),
                           CheckpointError, "masks.safetensors"),
    "foreign quantization_config": (lambda f: _edit_config(
        f, quantization_config={"quant_method": "gptq", "bits": 4}), CheckpointError, "gptq"),
    "quantization_config without bits": (lambda f: _edit_config(
        f, quantization_config={"quant_method": "minislm"}), CheckpointError, "bits"),
    "tokenizer.json garbage": (lambda f: (f / "tokenizer.json").write_bytes(b"\x89PNG\r\n"),
                               TokenizerError, "tokenizer.json"),
    "tokenizer.json is a folder": (lambda f: ((f / "tokenizer.json").unlink(),
                                              (f / "tokenizer.json").mkdir()), TokenizerError,
                                   "tokenizer.json"),
    "weights deleted, masks left": (lambda f: ((f / "model.safetensors").unlink(),
                                               write_safetensors(f / "masks.safetensors", {
                                                   "transformer.h.0.mlp.c_fc.weight":
                                                   np.ones((2, 2), np.uint8)})),
                                    CheckpointError, "masks.safetensors hold other data"),
    "weights deleted, trainer state left": (lambda f: (
        (f / "model.safetensors").rename(f / "trainer_state.safetensors")),
        CheckpointError, "trainer_state.safetensors hold other data"),
    "vocab.json/merges.txt broken": (lambda f: ((f / "tokenizer.json").unlink(),
                                                (f / "vocab.json").write_text("[]"),
                                                (f / "merges.txt").write_text("a b c\n")),
                                     TokenizerError, "vocab.json"),
}


def _edit_config(folder, **changes):
    path = folder / "config.json"
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_broken_checkpoint_folders(base, gpt2_dir, case):
    breaker, error, words = FOLDER_CASES[case]
    folder = _copy(gpt2_dir, base)
    breaker(folder)
    refused("checkpoint folder", lambda: minislm.load(folder), error, [words])


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json",
                                  "model.safetensors.index.json", "masks.safetensors"])
def test_named_pipes_never_hang_the_loader(base, gpt2_dir, name):
    """A FIFO under a checkpoint file name would block open() forever: refused instead."""
    import signal

    def too_slow(signum, frame):
        raise TimeoutError(f"loading a folder whose {name} is a FIFO hung")

    folder = _copy(gpt2_dir, base)
    (folder / name).unlink(missing_ok=True)
    os.mkfifo(folder / name)
    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(10)
    try:
        refused("FIFO instead of a file", lambda: minislm.load(folder), MinislmError,
                [name, "regular file"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_pipeline_toml_fifo_never_hangs(base):
    import signal

    def too_slow(signum, frame):
        raise TimeoutError("pipeline.load_config hung on a FIFO")

    path = fresh(base) / "pipe.toml"
    os.mkfifo(path)
    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(3)
    try:
        refused("FIFO instead of a file", lambda: pipeline.load_config(path), ConfigError,
                [path])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"])
def test_single_pickle_files_are_never_unpickled(base, suffix):
    folder = fresh(base)
    marker = folder / "pwned"
    # a real pickle that would create `marker` if anything unpickled it
    import pickle

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = folder / f"model{suffix}"
    path.write_bytes(pickle.dumps(Evil()))
    refused("pickle refused", lambda: minislm.load(path), CheckpointError, ["pickle", path])
    refused("pickle refused", lambda: minislm.load(folder), CheckpointError, ["pickle"])
    assert not marker.exists()


@pytest.mark.parametrize("value", [None, 3, 2.5, ["a"], b"bytes"])
def test_load_rejects_non_paths(value):
    refused("load arguments", lambda: minislm.load(value), InputError, ["path"])


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, "nope", bool, object])
def test_load_rejects_non_float_dtypes(gpt2_dir, dtype):
    refused("load arguments", lambda: minislm.load(gpt2_dir, dtype=dtype), InputError,
            ["dtype"])


def test_shard_appearing_twice_and_index_pointing_at_junk(base, gpt2_dir):
    folder = _copy(gpt2_dir, base)
    tensors = read_safetensors(folder / "model.safetensors")
    names = sorted(tensors)
    write_safetensors(folder / "a.safetensors", {n: np.array(tensors[n]) for n in names[:5]})
    write_safetensors(folder / "b.safetensors", {n: np.array(tensors[n]) for n in names[3:]})
    (folder / "model.safetensors").unlink()
    refused("sharded", lambda: minislm.load(folder), CheckpointError, [names[3]])
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"x": "config.json"}}))
    refused("sharded", lambda: minislm.load(folder), CheckpointError, ["config.json"])


# ============================================================== config.json
CONFIG_KEYS = {
    "gpt2": ["model_type", "vocab_size", "n_embd", "n_layer", "n_head", "n_positions",
             "activation_function", "layer_norm_epsilon", "tie_word_embeddings", "n_inner",
             "eos_token_id", "bos_token_id", "scale_attn_by_inverse_layer_idx",
             "reorder_and_upcast_attn", "trust_remote_code", "auto_map"],
    "llama": ["model_type", "vocab_size", "hidden_size", "num_hidden_layers",
              "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
              "max_position_embeddings", "hidden_act", "rms_norm_eps", "rope_theta",
              "rope_scaling", "tie_word_embeddings", "attention_bias", "mlp_bias",
              "eos_token_id", "bos_token_id", "trust_remote_code", "auto_map"],
}
DELETE = object()


@fuzz(80)
@given(st.sampled_from(["gpt2", "llama"]), st.data())
def test_config_fields_missing_or_junk(base, family, data):
    """One field deleted or set to junk: a valid config, or ConfigError naming the file
    and that field (as spelled in config.json)."""
    key = data.draw(st.sampled_from(CONFIG_KEYS[family]), label="key")
    value = data.draw(st.one_of(st.just(DELETE), JUNK.filter(lambda v: v not in ("gpt2",
                                                                                  "llama"))),
                      label="value")
    d = config_dict(family)
    if value is DELETE:
        d.pop(key, None)
    else:
        d[key] = value
    path = fresh(base) / "config.json"
    path.write_text(json.dumps(d))
    result = handled("config field", lambda: Config.from_file(path))
    if isinstance(result, MinislmError):
        assert isinstance(result, ConfigError)
        assert str(path) in str(result) and key in str(result), str(result)
    else:
        result.validate()                      # whatever was accepted is a usable config


CONTRADICTIONS = {
    "heads do not divide width (gpt2)": ("gpt2", dict(n_embd=16, n_head=3), "n_head"),
    "kv heads do not divide heads": ("llama", dict(num_attention_heads=4,
                                                   num_key_value_heads=3), "num_key_value_heads"),
    "more kv heads than heads": ("llama", dict(num_key_value_heads=8), "num_key_value_heads"),
    "zero kv heads": ("llama", dict(num_key_value_heads=0), "num_key_value_heads"),
    "odd head_dim for RoPE": ("llama", dict(head_dim=3), "head_dim"),
    "negative width": ("llama", dict(hidden_size=-16), "hidden_size"),
    "negative layers": ("gpt2", dict(n_layer=-2), "n_layer"),
    "zero vocab": ("gpt2", dict(vocab_size=0), "vocab_size"),
    "float layers": ("llama", dict(num_hidden_layers=2.0), "num_hidden_layers"),
    "string heads": ("gpt2", dict(n_head="2"), "n_head"),
    "unknown model_type": ("gpt2", dict(model_type="mamba"), "model_type"),
    "model_type missing": ("llama", dict(model_type=None), "model_type"),
    "unknown rope_type": ("llama", dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}),
                          "rope_type"),
    "old-style unknown rope type": ("llama", dict(rope_scaling={"type": "dynamic",
                                                                "factor": 2.0}), "rope_type"),
    "rope_parameters unknown type": ("llama", dict(rope_parameters={
        "rope_type": "longrope", "rope_theta": 10000.0}), "rope_type"),
    "llama3 rope without factors": ("llama", dict(rope_scaling={"rope_type": "llama3",
                                                                "factor": 8.0}),
                                    "low_freq_factor"),
    "llama3 rope equal freq factors": ("llama", dict(rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0, "high_freq_factor": 2.0,
        "original_max_position_embeddings": 16}), "high_freq_factor"),
    "linear rope negative factor": ("llama", dict(rope_scaling={"rope_type": "linear",
                                                                "factor": -1}), "factor"),
    "rope_scaling a string": ("llama", dict(rope_scaling="llama3"), "rope_scaling"),
    "rope_theta zero": ("llama", dict(rope_theta=0), "rope_theta"),
    "rope_theta infinite": ("llama", dict(rope_theta=float("inf")), "rope_theta"),
    "epsilon NaN": ("llama", dict(rms_norm_eps=float("nan")), "rms_norm_eps"),
    "epsilon a string": ("gpt2", dict(layer_norm_epsilon="1e-5"), "layer_norm_epsilon"),
    "relu GPT-2": ("gpt2", dict(activation_function="relu"), "activation_function"),
    "gelu LLaMA": ("llama", dict(hidden_act="gelu"), "hidden_act"),
    "untied GPT-2": ("gpt2", dict(tie_word_embeddings=False), "tie_word_embeddings"),
    "tie flag a string": ("llama", dict(tie_word_embeddings="false"), "tie_word_embeddings"),
    "eos id a string": ("gpt2", dict(eos_token_id="</s>"), "eos_token_id"),
    "eos id negative": ("llama", dict(eos_token_id=[1, -2]), "eos_token_id"),
    "no position count": ("gpt2", dict(n_positions=None, n_ctx=None), "n_positions"),
    "unscaled attention": ("gpt2", dict(scale_attn_weights=False), "scale_attn_weights"),
    "trust_remote_code": ("llama", dict(trust_remote_code=True), "trust_remote_code"),
    "auto_map": ("gpt2", dict(auto_map={"AutoConfig": "x.Y"}), "auto_map"),
}


@pytest.mark.parametrize("case", list(CONTRADICTIONS))
def test_contradictory_configs(base, case):
    family, changes, field = CONTRADICTIONS[case]
    d = config_dict(family, **changes)
    path = fresh(base) / "config.json"
    path.write_text(json.dumps(d))
    refused("config contradiction", lambda: Config.from_file(path), ConfigError, [path, field])


@pytest.mark.parametrize("text", ["[1, 2]", '"config"', "null", "{", "\ufeff{}",
                                  "[" * 50_000, '{"vocab_size": ' + "1" * 5000 + "}"])
def test_config_json_not_an_object(base, text):
    path = fresh(base) / "config.json"
    path.write_text(text, encoding="utf-8")
    refused("config not an object", lambda: Config.from_file(path), ConfigError, [path])


# ============================================================== tokenizers
TOKENIZER_CASES = {
    "empty": b"",
    "binary": b"\x00\xff\xfe\x01",
    "JSON list": b"[]",
    "model null": lambda tj: {**tj, "model": None},
    "unknown model type": lambda tj: {**tj, "model": {**tj["model"], "type": "Unigramm"}},
    "vocab a string": lambda tj: {**tj, "model": {**tj["model"], "vocab": "x"}},
    "merge of unknown tokens": lambda tj: {**tj, "model": {**tj["model"],
                                                           "merges": [["zz", "qq"]]}},
    "negative token id": lambda tj: {**tj, "model": {**tj["model"], "vocab": {
        **tj["model"]["vocab"], "zzz": -1}}},
    "token id beyond u32": lambda tj: {**tj, "model": {**tj["model"], "vocab": {
        **tj["model"]["vocab"], "zzz": 2 ** 40}}},
    "broken normalizer regex": lambda tj: {**tj, "normalizer": {
        "type": "Replace", "pattern": {"Regex": "("}, "content": "x"}},
    "more tokens than vocab_size": lambda tj: {**tj, "added_tokens": tj["added_tokens"] + [
        {"id": 10_000, "content": "<x>", "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": True}]},
}


@pytest.mark.parametrize("case", list(TOKENIZER_CASES))
def test_broken_tokenizers(base, gpt2_dir, case):
    content = TOKENIZER_CASES[case]
    if callable(content):
        content = json.dumps(content(json.loads(tiny_tokenizer_json()))).encode()
    folder = _copy(gpt2_dir, base)
    (folder / "tokenizer.json").write_bytes(content)
    refused("tokenizer", lambda: minislm.load(folder), TokenizerError, ["tokenizer.json"])


@fuzz(15)
@given(st.data())
def test_truncated_tokenizer_json(base, gpt2_dir, data):
    good = tiny_tokenizer_json().encode()
    cut = data.draw(st.integers(0, len(good) - 2), label="cut")
    folder = _copy(gpt2_dir, base)
    (folder / "tokenizer.json").write_bytes(good[:cut])
    refused("tokenizer truncated", lambda: minislm.load(folder), TokenizerError,
            ["tokenizer.json"])


def test_tokenizer_smaller_than_vocab_is_fine_but_larger_is_not(base, gpt2_dir):
    folder = _copy(gpt2_dir, base)
    _edit_config(folder, vocab_size=280)        # the tokenizer has 300 tokens
    _rewrite_tensors(folder, lambda t: t.__setitem__("transformer.wte.weight",
                                                     t["transformer.wte.weight"][:280].copy()))
    refused("tokenizer vs vocab", lambda: minislm.load(folder), TokenizerError,
            ["300", "280"])


@pytest.mark.parametrize("ids", [[-1], [[1, 2], [3]], [2 ** 70], None, [None], ["a"],
                                 [[1.5]], 5])
def test_decode_bad_ids(gpt2, ids):
    from minislm.tokenizer import decode
    refused("tokenizer arguments", lambda: decode(gpt2.tokenizer, ids), InputError, ["decode"])


@pytest.mark.parametrize("text", [None, b"bytes", ["a", "b"], 3])
def test_encode_non_text(gpt2, text):
    from minislm.tokenizer import encode
    refused("tokenizer arguments", lambda: encode(gpt2.tokenizer, text), InputError, ["encode"])


# ============================================================== token ids and generation
ID_ARRAYS = st.one_of(
    st.lists(st.lists(st.integers(-5, 400), min_size=1, max_size=4), min_size=1, max_size=3),
    st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), min_size=1, max_size=4),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=3),
    st.lists(st.text(max_size=2), min_size=1, max_size=2),
    st.just([]), st.just([[]]), st.just([[[1]]]), st.just(7), st.booleans().map(lambda b: [b]))


@fuzz(40)
@given(ID_ARRAYS)
def test_token_ids_out_of_range_or_malformed(gpt2, ids):
    """Anything but a rectangular array of ids in [0, V) is refused; valid ones run."""
    V = gpt2.config.vocab_size
    try:   # integral floats such as 3.0 are accepted as ids
        arr = np.asarray(ids)
        integral = arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and np.isfinite(arr).all()
                                              and (arr == np.round(arr)).all())
        valid = (integral and arr.ndim in (1, 2) and arr.size > 0 and arr.min() >= 0 and
                 arr.max() < V)
    except (ValueError, TypeError, OverflowError):
        valid = False
    if valid:
        assert minislm.forward(gpt2, ids).shape[-1] == V
        return
    error = refused("token ids", lambda: minislm.forward(gpt2, ids), InputError)
    assert "input_ids" in str(error) or f"[0, {V})" in str(error), str(error)


GENERATE_CASES = {
    "negative max_new_tokens": dict(max_new_tokens=-1),
    "float max_new_tokens": dict(max_new_tokens=2.0),
    "string max_new_tokens": dict(max_new_tokens="3"),
    "negative temperature": dict(temperature=-0.5),
    "NaN temperature": dict(temperature=float("nan")),
    "string temperature": dict(temperature="hot"),
    "zero top_k": dict(temperature=1.0, top_k=0),
    "fractional top_k": dict(temperature=1.0, top_k=2.5),
    "top_p zero": dict(temperature=1.0, top_p=0.0),
    "top_p above one": dict(temperature=1.0, top_p=1.5),
    "prompt out of vocab": dict(input_ids=[[1, 10_000]]),
    "past max_position": dict(max_new_tokens=10_000),
    "layer index out of range": dict(layers=[0, 5]),
    "layer index a string": dict(layers=["0"]),
}


@pytest.mark.parametrize("case", list(GENERATE_CASES))
def test_generate_bad_arguments(gpt2, case):
    kw = dict(input_ids=[[1, 2, 3]], max_new_tokens=4, stop_tokens=())
    kw.update(GENERATE_CASES[case])
    refused("generate arguments", lambda: minislm.generate(gpt2, **kw), InputError)


def test_huge_max_new_tokens_does_not_allocate_a_huge_cache(gpt2):
    """The KV cache is capped at max_position: no 58 TiB allocation, a clear error instead."""
    refused("generate arguments", lambda: minislm.generate(gpt2, [[1]], 10 ** 12,
                                                           stop_tokens=()),
            InputError, ["max_position"])


# ============================================================== corpora and encodings
CORPORA = {
    "empty file": b"",
    "only whitespace": b"  \n\t\n\r\n",
    "binary (NUL bytes)": b"\x7fELF\x02\x01\x01\x00\x00\x00",
    "latin-1": "caf\xe9 na\xefve r\xe9sum\xe9\n".encode("latin-1"),
    "UTF-16 with BOM": "hello world\n".encode("utf-16"),
    "UTF-16-LE without BOM": "hello world\n".encode("utf-16-le"),
    "UTF-32": "hello\n".encode("utf-32"),
    "Shift-JIS": "日本語のテキスト\n".encode("shift_jis"),
    "cp1252 quotes": "\u201cquoted\u201d\n".encode("cp1252"),
    "truncated UTF-8 sequence": "ok €".encode("utf-8")[:-1],
    "lone surrogate bytes": b"abc \xed\xa0\x80 def",
    "gzip data": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
}


@pytest.mark.parametrize("case", list(CORPORA))
def test_bad_corpora(base, case):
    path = fresh(base) / "corpus.txt"
    path.write_bytes(CORPORA[case])
    refused("corpus", lambda: load_text_corpus(path), InputError, [path])


@fuzz(15)
@given(st.binary(min_size=1, max_size=40))
def test_random_bytes_as_corpus(base, raw):
    path = fresh(base) / "corpus.txt"
    path.write_bytes(raw)
    result = handled("corpus random bytes", lambda: load_text_corpus(path))
    if isinstance(result, MinislmError):
        assert isinstance(result, InputError) and str(path) in str(result)
    else:
        assert result.strip() and raw.decode("utf-8-sig")


def test_corpus_folders_and_paths(base):
    empty = fresh(base)
    refused("corpus", lambda: load_text_corpus(empty), InputError, [empty])
    (empty / "notes.md").write_text("not a .txt file")
    refused("corpus", lambda: load_text_corpus(empty), InputError, [empty])
    refused("corpus", lambda: load_text_corpus(empty / "missing.txt"), InputError,
            ["missing.txt"])
    (empty / "a.txt").write_text("   \n")
    refused("corpus", lambda: load_text_corpus(empty), InputError, [empty])
    assert load_text_corpus(_bom_file(base)) == "text with a BOM\n"


def _bom_file(base):
    path = fresh(base) / "bom.txt"
    path.write_bytes("\ufefftext with a BOM\r\n".encode("utf-8"))
    return path


# ============================================================== quantized checkpoints
@pytest.fixture(scope="module")
def quantized_dir(base, gpt2):
    from minislm.quant.model_quant import quantize_model
    qmodel, _ = quantize_model(gpt2, "rtn", bits=4, group_size=8, calib_ids=None,
                               progress=False)
    return minislm.save(qmodel, base / "quantized")


QUANT_CASES = {
    "scales missing": lambda t: t.pop(next(k for k in t if k.endswith(".scales"))),
    "scales wrong shape": lambda t: t.__setitem__(next(k for k in t if k.endswith(".scales")),
                                                  np.ones((1, 1), np.float16)),
    "codes wrong shape": lambda t: t.__setitem__(next(k for k in t if k.endswith(".qweight")),
                                                 np.zeros((3, 3), np.uint8)),
    "zeros of another layer removed": lambda t: t.pop(next(k for k in t if k.endswith(".zeros"))),
    "scale infinite": lambda t: t[next(k for k in t if k.endswith(".scales"))].__setitem__(
        (0, 0), np.inf),
    "scale NaN": lambda t: t[sorted(k for k in t if k.endswith(".scales"))[-1]].__setitem__(
        (1, 1), np.nan),
}


@pytest.mark.parametrize("case", list(QUANT_CASES))
def test_broken_quantized_checkpoints(base, quantized_dir, case):
    folder = _copy(quantized_dir, base)
    names = list(read_safetensors(folder / "model.safetensors"))
    if case.startswith("codes") and not any(n.endswith(".qweight") for n in names):
        pytest.skip(f"packed codes are not named *.qweight here: {names[:6]}")
    _rewrite_tensors(folder, QUANT_CASES[case])
    refused("quantized checkpoint", lambda: minislm.load(folder),
            NumericalError if case.startswith("scale ") else CheckpointError)


# ============================================================== pipeline configs
PIPELINE_CASES = {
    "stage list is a string": "x",
    "stage without name": [{"nom": "quantize"}],
    "stage entry a number": [3],
    "unknown stage": [{"name": "distil"}],
    "unknown option": [{"name": "quantize", "bitz": 4}],
    "quantize bits 9": [{"name": "quantize", "bits": 9}],
    "quantize bits 1": [{"name": "quantize", "bits": 1}],
    "group size does not divide": [{"name": "quantize", "group_size": 7}],
    "group size a string": [{"name": "quantize", "group_size": "a"}],
    "group size -2": [{"name": "quantize", "group_size": -2}],
    "unknown method": [{"name": "quantize", "method": "bnb", "group_size": 8}],
    "unknown scheme": [{"name": "quantize", "scheme": "int3"}],
    "N >= M": [{"name": "width_prune", "nm": "4:2"}],
    "M does not divide": [{"name": "width_prune", "nm": "2:3"}],
    "nm garbage": [{"name": "width_prune", "nm": "two:four"}],
    "sparsity 1.5": [{"name": "width_prune", "sparsity": 1.5}],
    "sparsity and nm": [{"name": "width_prune", "sparsity": 0.5, "nm": "2:4"}],
    "neither sparsity nor nm": [{"name": "width_prune"}],
    "minitron removes all": [{"name": "width_prune", "method": "minitron", "mlp": 1.0}],
    "minitron ratio a string": [{"name": "width_prune", "method": "minitron", "heads": "x"}],
    "depth prune every layer": [{"name": "depth_prune", "layers": 2}],
    "depth prune zero layers": [{"name": "depth_prune", "layers": 0}],
    "eora without quantize": [{"name": "eora"}],
    "eora rank 0": [{"name": "quantize", "group_size": 8}, {"name": "eora", "rank": 0}],
    "prune after quantize": [{"name": "quantize", "group_size": 8},
                             {"name": "width_prune", "nm": "2:4"}],
    "export formats a string": [{"name": "export", "formats": "hf"}],
    "export unknown gguf type": [{"name": "export", "gguf_type": "q2_k"}],
    "lora rank -1": [{"name": "lora", "rank": -1, "seq_len": 32}],
    "finetune steps -1": [{"name": "finetune", "steps": -1, "seq_len": 32}],
    "finetune seq_len beyond max_position": [{"name": "finetune", "seq_len": 4096}],
    "finetune data missing file": [{"name": "finetune", "data": "/no/such/file.txt",
                                    "seq_len": 32}],
    "finetune lr a string": [{"name": "finetune", "lr": "fast", "seq_len": 32}],
    "finetune seq_len a string": [{"name": "finetune", "seq_len": "long"}],
    "finetune data a number": [{"name": "finetune", "data": 3, "seq_len": 32}],
    "stage name a list": [{"name": ["quantize"]}],
    "export formats nested list": [{"name": "export", "formats": [["hf"]]}],
}


@pytest.fixture(scope="module")
def gpt2_config():
    return Config.from_hf_dict(config_dict("gpt2"))


@pytest.mark.parametrize("case", list(PIPELINE_CASES))
def test_impossible_pipeline_stages(gpt2_config, case):
    refused("pipeline stage", lambda: pipeline.plan(PIPELINE_CASES[case], gpt2_config, "m"),
            ConfigError, ["scheme" if case == "unknown scheme" else "stage"])


PIPELINE_TOP = {
    "eval a number": {"eval": 3},
    "calibration a list": {"calibration": []},
    "seed a string": {"seed": "x"},
    "eval seqlen negative": {"eval": {"seqlen": -1}},
    "calibration samples 0": {"calibration": {"samples": 0}},
    "eval ppl_tokens a string": {"eval": {"ppl_tokens": "x"}},
}


@pytest.mark.parametrize("case", list(PIPELINE_TOP))
def test_pipeline_top_level_values(case):
    refused("pipeline config", lambda: pipeline.pipeline_config(PIPELINE_TOP[case]),
            ConfigError, ["config"])


@pytest.mark.parametrize("raw", [{"bogus": 1}, {"eval": {"nope": 1}},
                                 {"calibration": {"sample": 3}}])
def test_pipeline_unknown_top_level_keys(raw):
    refused("pipeline config", lambda: pipeline.pipeline_config(raw), ConfigError,
            ["unknown"])


@pytest.mark.parametrize("text", ["model = ", "[[stage]\nname='x'", "\x00\x01", "a = 1\na = 2"])
def test_pipeline_toml_not_parsing(base, text):
    path = fresh(base) / "pipe.toml"
    path.write_text(text)
    refused("pipeline TOML", lambda: pipeline.load_config(path), ConfigError, [path])


SWEEP_CASES = {
    "sweep missing": {},
    "sweep a number": {"sweep": 3},
    "axis a number": {"sweep": {"axis": 3}},
    "axis list empty": {"sweep": {"axis": []}},
    "axis unknown stage": {"sweep": {"axis": [{"stage": "distil", "key": "x",
                                                "values": [1]}]}},
    "axis unknown option": {"sweep": {"axis": [{"stage": "quantize", "key": "bitz",
                                                 "values": [4]}]}},
    "axis values empty": {"sweep": {"axis": [{"stage": "quantize", "key": "bits",
                                               "values": []}]}},
    "axis value impossible": {"sweep": {"axis": [{"stage": "quantize", "key": "bits",
                                                   "values": [4, 9],
                                                   "options": {"group_size": 8}}]}},
    "axis with stages too": {"stage": [{"name": "quantize"}], "sweep": {"axis": [
        {"stage": "quantize", "key": "bits", "values": [4]}]}},
    "axis entry a number": {"sweep": {"axis": [3]}},
    "axis stage a list": {"sweep": {"axis": [{"stage": ["quantize"]}]}},
    "axis key a list": {"sweep": {"axis": [{"stage": "quantize", "key": ["bits"]}]}},
    "axis options a number": {"sweep": {"axis": [{"stage": "quantize", "key": "bits",
                                                   "values": [4], "options": 3}]}},
}


@pytest.mark.parametrize("case", list(SWEEP_CASES))
def test_impossible_sweeps(base, gpt2_dir, case):
    from minislm.sweep import sweep
    refused("sweep config", lambda: sweep(SWEEP_CASES[case], fresh(base), str(gpt2_dir),
                                          progress=False), ConfigError)


# ============================================================== memory preflight settings
@pytest.mark.parametrize("value", ["lots", "4 XB", "-1GB", "0", "1e9", "GB", "4..0GB"])
def test_bad_memory_limit_setting(gpt2_dir, monkeypatch, value):
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", value)
    refused("memory limit setting", lambda: minislm.load(gpt2_dir), ConfigError,
            ["MINISLM_MEMORY_LIMIT"])


def test_tiny_memory_limit_refuses_even_tiny_models(gpt2_dir, monkeypatch):
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", "1kB")
    refused("memory limit", lambda: minislm.load(gpt2_dir), ResourceError,
            [gpt2_dir, "1.00 kB"])


# ============================================================== command line
def run_cli(argv, capsys):
    rc = cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


CLI_CASES = {
    "generate: no such model": (["generate", "--model", "{base}/nope", "--prompt", "x"],
                                "nope"),
    "generate: model is a pickle": (["generate", "--model", "{pickle}", "--prompt", "x"],
                                    "pickle"),
    "generate: negative tokens": (["generate", "--model", "{gpt2}", "--prompt", "x",
                                   "--max-new-tokens", "-3"], "max_new_tokens"),
    "generate: top-p 2": (["generate", "--model", "{gpt2}", "--prompt", "x", "--temperature",
                           "1", "--top-p", "2"], "top_p"),
    "generate: empty prompt": (["generate", "--model", "{gpt2}", "--prompt", ""], "prompt"),
    "generate: broken config": (["generate", "--model", "{broken}", "--prompt", "x"],
                                "config.json"),
    "eval: binary data": (["eval", "--model", "{gpt2}", "--task", "ppl", "--data", "{binary}",
                           "--no-log"], "binary"),
    "eval: latin-1 data": (["eval", "--model", "{gpt2}", "--task", "ppl", "--data",
                            "{latin1}", "--no-log"], "UTF-8"),
    "eval: limit 0": (["eval", "--model", "{gpt2}", "--task", "ppl", "--limit", "0",
                       "--no-log"], "limit"),
    "eval: mc without data": (["eval", "--model", "{gpt2}", "--task", "mc", "--no-log"],
                              "--data"),
    "quantize: 9 bits": (["quantize", "--model", "{gpt2}", "--method", "rtn", "--bits", "9",
                          "--out", "{base}/q9"], "bits"),
    "quantize: negative damp": (["quantize", "--model", "{gpt2}", "--damp", "-1", "--out",
                                 "{base}/qd"], "damp"),
    "compress: bad TOML": (["compress", "--config", "{badtoml}", "--out", "{base}/c1"],
                           "TOML"),
    "compress: impossible stage": (["compress", "--config", "{impossible}", "--model",
                                    "{gpt2}", "--out", "{base}/c2", "--no-log"],
                                   "width_prune"),
    "compress: no model": (["compress", "--model", "{base}/none", "--out", "{base}/c3",
                            "--no-log"], "none"),
    "cost: config with junk": (["cost", "--config", "{broken}/config.json", "--device",
                                "siracusa"], "n_head"),
    "export-gguf: no model": (["export-gguf", "--model", "{base}/nope", "--out",
                               "{base}/x.gguf"], "nope"),
    "output under a file": (["quantize", "--model", "{gpt2}", "--method", "rtn", "--group-size",
                             "8", "--out", "{binary}/sub"], "binary.txt"),
}


@pytest.fixture(scope="module")
def cli_paths(base, gpt2_dir):
    p = {"base": base, "gpt2": gpt2_dir}
    p["pickle"] = base / "model.pt"
    p["pickle"].write_bytes(b"\x80\x04.")
    p["broken"] = _copy(gpt2_dir, base)
    _edit_config(p["broken"], n_head=5)
    p["binary"] = base / "binary.txt"
    p["binary"].write_bytes(b"\x00\x01\x02 binary")
    p["latin1"] = base / "latin1.txt"
    p["latin1"].write_bytes("d\xe9j\xe0 vu\n".encode("latin-1"))
    p["badtoml"] = base / "bad.toml"
    p["badtoml"].write_text("[[stage]\n")
    p["impossible"] = base / "impossible.toml"
    p["impossible"].write_text('[[stage]]\nname = "width_prune"\nnm = "3:5"\n')
    return p


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_prints_one_line_and_exits_2(cli_paths, capsys, case):
    argv, words = CLI_CASES[case]
    argv = [a.format(**cli_paths) for a in argv]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2, (rc, out, err)
    assert err.startswith("minislm: error: ") and "Traceback" not in err, err
    assert words in err, err
    COUNT["command line"] += 1


def test_cli_debug_shows_the_traceback_and_no_debug_hides_it(cli_paths):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "minislm", "generate", "--model", str(cli_paths["broken"]),
            "--prompt", "x"]
    quiet = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert "n_head" in quiet.stderr and quiet.stderr.count("\n") == 1
    loud = subprocess.run(argv[:3] + ["--debug"] + argv[3:], capture_output=True, text=True,
                          env=env, timeout=60)
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "ConfigError" in loud.stderr
    COUNT["command line"] += 2


MORE_CLI_CASES = {
    "eval qa: row without question": (["eval", "--model", "{gpt2}", "--task", "qa", "--data",
                                       "{badjsonl}", "--no-log"], "badrows.jsonl:1"),
    "eval qa: truncated JSONL": (["eval", "--model", "{gpt2}", "--task", "qa", "--data",
                                 "{truncjsonl}", "--no-log"], "not valid JSON"),
    "eval qa: empty JSONL": (["eval", "--model", "{gpt2}", "--task", "qa", "--data",
                              "{emptyjsonl}", "--no-log"], "empty.jsonl"),
    "eval toolcall: bad rows": (["eval", "--model", "{gpt2}", "--task", "toolcall", "--data",
                                 "{badjsonl}", "--no-log"], "prompt"),
    "eval mc: binary": (["eval", "--model", "{gpt2}", "--task", "mc", "--data", "{binjsonl}",
                         "--no-log"], "UTF-8"),
    "eval mc: bad rows": (["eval", "--model", "{gpt2}", "--task", "mc", "--data", "{badjsonl}",
                           "--no-log"], "badrows.jsonl:1"),
    "eval mc: text not 6-line tasks": (["eval", "--model", "{gpt2}", "--task", "mc", "--data",
                                        "{text}", "--no-log"], "6 lines"),
    "eval ppl: window beyond max_position": (["eval", "--model", "{gpt2}", "--task", "ppl",
                                              "--data", "{text}", "--seqlen", "1000",
                                              "--no-log"], "max_position"),
    "eval ppl: negative stride": (["eval", "--model", "{gpt2}", "--task", "ppl", "--data",
                                   "{text}", "--stride", "-3", "--no-log"], "stride"),
    "eval ppl: seqlen 0": (["eval", "--model", "{gpt2}", "--task", "ppl", "--data", "{text}",
                            "--seqlen", "0", "--no-log"], "seqlen"),
    "eval ppl: stride 0": (["eval", "--model", "{gpt2}", "--task", "ppl", "--data", "{text}",
                            "--stride", "0", "--no-log"], "stride"),
    "eval facts: seqlen 0": (["eval", "--model", "{gpt2}", "--task", "facts", "--seqlen", "0",
                              "--no-log"], "seqlen"),
    "eval qa: negative answer length": (["eval", "--model", "{gpt2}", "--task", "qa",
                                         "--max-new-tokens", "-1", "--limit", "1",
                                         "--no-log"], "max_new_tokens"),
    "finetune: bad rows": (["finetune", "--model", "{gpt2}", "--data", "{badjsonl}", "--steps",
                            "1", "--out", "{base}/f1"], "badrows.jsonl:1"),
    "finetune: binary text": (["finetune", "--model", "{gpt2}", "--data", "{binary}", "--steps",
                               "1", "--out", "{base}/f2"], "binary"),
    "finetune: 0 steps": (["finetune", "--model", "{gpt2}", "--data", "{text}", "--steps", "0",
                           "--out", "{base}/f3"], "steps"),
    "finetune: negative lr": (["finetune", "--model", "{gpt2}", "--data", "{text}", "--steps",
                               "1", "--lr", "-1", "--out", "{base}/f4"], "learning rate"),
    "finetune: LoRA rank 0": (["finetune", "--model", "{gpt2}", "--data", "{text}", "--steps",
                               "1", "--lora-rank", "0", "--out", "{base}/f5"], "rank"),
    "finetune: unknown LoRA target": (["finetune", "--model", "{gpt2}", "--data", "{text}",
                                       "--steps", "1", "--lora-rank", "2", "--targets", "nope",
                                       "--out", "{base}/f6"], "nope"),
    "eval qa: binary JSONL": (["eval", "--model", "{gpt2}", "--task", "qa", "--data",
                               "{binjsonl}", "--no-log"], "bin.jsonl"),
    "eval qa: latin-1 JSONL": (["eval", "--model", "{gpt2}", "--task", "qa", "--data",
                                "{latin1jsonl}", "--no-log"], "latin1.jsonl"),
    "eval toolcall: binary JSONL": (["eval", "--model", "{gpt2}", "--task", "toolcall",
                                     "--data", "{binjsonl}", "--no-log"], "bin.jsonl"),
    "finetune: binary JSONL": (["finetune", "--model", "{gpt2}", "--data", "{binjsonl}",
                                "--steps", "1", "--out", "{base}/fx1"], "bin.jsonl"),
    "finetune: latin-1 JSONL": (["finetune", "--model", "{gpt2}", "--data", "{latin1jsonl}",
                                 "--steps", "1", "--out", "{base}/fx3"], "latin1.jsonl"),
    "finetune: batch size 0": (["finetune", "--model", "{gpt2}", "--data", "{text}", "--steps",
                                "1", "--batch-size", "0", "--out", "{base}/fx2"], "batch"),
    "distill: temperature 0": (["distill", "--teacher", "{gpt2}", "--student", "{gpt2}",
                                "--data", "{text}", "--steps", "1", "--temperature", "0",
                                "--out", "{base}/d1"], "temperature"),
    "distill: alpha 2": (["distill", "--teacher", "{gpt2}", "--student", "{gpt2}", "--data",
                          "{text}", "--steps", "1", "--alpha", "2", "--out", "{base}/d2"],
                         "alpha"),
    "prune: sparsity 1.5": (["prune", "--model", "{gpt2}", "--method", "magnitude",
                             "--sparsity", "1.5", "--out", "{base}/p1"], "sparsity"),
    "prune: N:M 4:2": (["prune", "--model", "{gpt2}", "--method", "wanda", "--nm", "4:2",
                        "--calib", "{text}", "--out", "{base}/p2"], "4:2"),
    "prune: N:M garbage": (["prune", "--model", "{gpt2}", "--method", "wanda", "--nm", "x",
                            "--calib", "{text}", "--out", "{base}/p3"], "N:M"),
    "prune: M does not divide": (["prune", "--model", "{gpt2}", "--method", "wanda", "--nm",
                                  "2:3", "--calib", "{text}", "--out", "{base}/p4"], "M=3"),
    "prune: remove 5 of 2 layers": (["prune", "--model", "{gpt2}", "--method", "depth",
                                     "--remove-layers", "5", "--calib", "{text}", "--out",
                                     "{base}/p5"], "2-layer"),
    "prune: layer 9 of 2": (["prune", "--model", "{gpt2}", "--method", "depth", "--layers",
                             "0,9", "--out", "{base}/p6"], "[0, 9]"),
    "prune: layers garbage": (["prune", "--model", "{gpt2}", "--method", "depth", "--layers",
                               "a,b", "--out", "{base}/p7"], "a,b"),
    "prune: keep 0 heads": (["prune", "--model", "{gpt2}", "--method", "width", "--heads", "0",
                             "--calib", "{text}", "--out", "{base}/p8"], "heads"),
    "prune: keep more neurons than exist": (["prune", "--model", "{gpt2}", "--method", "width",
                                             "--ffn", "9999", "--calib", "{text}", "--out",
                                             "{base}/p9"], "ffn"),
    "prune: binary calibration": (["prune", "--model", "{gpt2}", "--method", "wanda",
                                   "--sparsity", "0.5", "--calib", "{binary}", "--out",
                                   "{base}/p10"], "binary"),
    "prune: 0 calibration samples": (["prune", "--model", "{gpt2}", "--method", "wanda",
                                      "--sparsity", "0.5", "--calib", "{text}",
                                      "--calib-samples", "0", "--out", "{base}/p11"],
                                     "n_samples"),
    "quantize: binary calibration": (["quantize", "--model", "{gpt2}", "--method", "gptq",
                                      "--group-size", "8", "--calib", "{binary}", "--out",
                                      "{base}/q1"], "binary"),
    "quantize: 0 samples": (["quantize", "--model", "{gpt2}", "--group-size", "8", "--calib",
                             "{text}", "--n-samples", "0", "--out", "{base}/q2"], "n_samples"),
    "quantize: window beyond max_position": (["quantize", "--model", "{gpt2}", "--group-size",
                                              "8", "--calib", "{text}", "--seq-len", "9999",
                                              "--out", "{base}/q3"], "max_position"),
    "cost: negative context": (["cost", "--model", "{gpt2}", "--device", "siracusa",
                                "--context", "-5"], "context"),
    "cost: 1-bit weights": (["cost", "--model", "{gpt2}", "--device", "siracusa",
                             "--weight-bits", "1"], "bits"),
    "cost: sparsity 1.5": (["cost", "--model", "{gpt2}", "--device", "siracusa", "--sparsity",
                            "1.5"], "sparsity"),
    "cost: config not JSON": (["cost", "--config", "{binary}", "--device", "siracusa"],
                              "binary.txt"),
    "cost: 10**15 layers (no hang)": (["cost", "--config", "{hugeconfig}", "--device",
                                       "siracusa"], "n_layer"),
    "train: heads do not divide width": (["train", "--init", "gpt2", "--data", "{text}",
                                          "--d-model", "30", "--n-head", "4", "--out",
                                          "{base}/t1"], "n_head"),
    "train: kv heads do not divide heads": (["train", "--init", "llama", "--data", "{text}",
                                             "--n-kv-head", "3", "--out", "{base}/t2"],
                                            "num_key_value_heads"),
    "train: binary corpus": (["train", "--init", "gpt2", "--data", "{binary}", "--out",
                              "{base}/t3"], "binary"),
    "train: vocabulary of 10": (["train", "--init", "gpt2", "--data", "{text}",
                                 "--vocab-size", "10", "--out", "{base}/t4"], "vocab_size"),
    "train: resume without a run": (["train", "--model", "{gpt2}", "--data", "{text}",
                                     "--resume", "--out", "{base}/t5"], "t5"),
    "train: NaN learning rate": (["train", "--model", "{gpt2}", "--data", "{text}", "--lr",
                                  "nan", "--steps", "2", "--seq-len", "8", "--out",
                                  "{base}/t6"], "lr=nan"),
}


@pytest.fixture(scope="module")
def more_paths(cli_paths, base):
    p = dict(cli_paths)
    for name, raw in (("badjsonl", b'{"prompt": 1}\n[1, 2]\n'),
                      ("truncjsonl", b'{"question": "a", "answ'), ("emptyjsonl", b""),
                      ("binjsonl", b"\x00\xff\xfe garbage"),
                      ("latin1jsonl", '{"question": "caf\xe9", "answer": "x"}\n'
                       .encode("latin-1"))):
        p[name] = base / {"badjsonl": "badrows.jsonl", "truncjsonl": "trunc.jsonl",
                          "emptyjsonl": "empty.jsonl", "binjsonl": "bin.jsonl",
                          "latin1jsonl": "latin1.jsonl"}[name]
        p[name].write_bytes(raw)
    p["bigintjsonl"] = base / "bigint.jsonl"
    p["bigintjsonl"].write_text('{"question": "a", "answer": ' + "9" * 5000 + "}\n")
    p["deepjsonl"] = base / "deep.jsonl"
    p["deepjsonl"].write_text("[" * 50_000 + "\n")
    p["hugeconfig"] = base / "huge.json"
    p["hugeconfig"].write_text(json.dumps(config_dict("llama", num_hidden_layers=10 ** 15)))
    p["text"] = base / "text.txt"
    p["text"].write_text("\n".join(f"line {i}: the quick brown fox" for i in range(100)))
    return p


@pytest.mark.parametrize("case", list(MORE_CLI_CASES))
def test_cli_options_and_data_files(more_paths, capsys, monkeypatch, base, case):
    monkeypatch.setenv("MINISLM_RUNS", str(base / "runs.jsonl"))
    argv, words = MORE_CLI_CASES[case]
    rc, out, err = run_cli([a.format(**more_paths) for a in argv], capsys)
    assert rc == 2, (rc, out, err[-500:])
    last = err.strip().splitlines()[-1]              # progress bars may precede the error
    assert last.startswith("minislm: error: ") and "Traceback" not in err, err
    assert words in last, err
    COUNT["command line"] += 1


EDGE_CLI_CASES = {  # once bare exceptions (ZeroDivisionError, json's ValueError/RecursionError)
    "train: seq-len 0 (commands/train.py)": ["train", "--init", "gpt2", "--data", "{text}",
                                             "--seq-len", "0", "--out", "{base}/tx1"],
}
for _task, _owner in (("qa", "evaluate/qa.py"), ("toolcall", "evaluate/toolcall.py"),
                      ("mc", "evaluate/choice.py")):
    for _file in ("bigintjsonl", "deepjsonl"):
        if _task == "mc" and _file == "deepjsonl":
            continue                       # read as HellaSwag text: refused correctly
        EDGE_CLI_CASES[f"eval {_task}: {_file} ({_owner})"] = [
            "eval", "--model", "{gpt2}", "--task", _task, "--data", "{%s}" % _file, "--no-log"]
for _file in ("bigintjsonl", "deepjsonl"):
    EDGE_CLI_CASES[f"finetune: {_file} (adapt/finetune.py)"] = [
        "finetune", "--model", "{gpt2}", "--data", "{%s}" % _file, "--steps", "1", "--out",
        "{base}/fx-" + _file]


@pytest.mark.parametrize("case", list(EDGE_CLI_CASES))
def test_cli_edge_values(more_paths, capsys, monkeypatch, base, case):
    monkeypatch.setenv("MINISLM_RUNS", str(base / "runs.jsonl"))
    rc, out, err = run_cli([a.format(**more_paths) for a in EDGE_CLI_CASES[case]], capsys)
    assert rc == 2 and err.strip().splitlines()[-1].startswith("minislm: error: ")
    COUNT["command line"] += 1


REFUSED_BY_ARGPARSE = {   # once a 6-12-line usage block, or a NumPy traceback after work began
    "no command": ([], "COMMAND"),
    "unknown command": (["nope"], "nope"),
    "missing options": (["quantize"], "--model"),
    "not an int": (["quantize", "--model", "{gpt2}", "--bits", "four", "--out", "{base}/a1"],
                   "--bits"),
    "not a choice": (["eval", "--model", "{gpt2}", "--task", "nope"], "--task"),
    "unknown option": (["generate", "--model", "{gpt2}", "--prompt", "x", "--nope"], "--nope"),
    "lone surrogates in --prompt": (["generate", "--model", "{gpt2}", "--prompt",
                                     "abc \udcff\udcfe def"], "0xff"),
    "lone surrogates in --sample-prompt": (["train", "--init", "gpt2", "--data", "{text}",
                                            "--sample-prompt", "a\udcff", "--out",
                                            "{base}/a2"], "0xff"),
}
for _argv in (["generate", "--model", "{gpt2}", "--prompt", "x"],
              ["quantize", "--model", "{gpt2}", "--method", "gptq", "--out", "{base}/s1"],
              ["finetune", "--model", "{gpt2}", "--data", "{text}", "--steps", "1", "--out",
               "{base}/s2"],
              ["prune", "--model", "{gpt2}", "--method", "wanda", "--sparsity", "0.5", "--out",
               "{base}/s3"],
              ["train", "--init", "gpt2", "--data", "{text}", "--out", "{base}/s4"],
              ["distill", "--teacher", "{gpt2}", "--student", "{gpt2}", "--data", "{text}",
               "--steps", "1", "--out", "{base}/s5"]):
    REFUSED_BY_ARGPARSE[f"{_argv[0]}: negative seed"] = (_argv + ["--seed", "-1"], "--seed")


@pytest.mark.parametrize("case", list(REFUSED_BY_ARGPARSE))
def test_refused_command_lines_are_one_line(more_paths, capsys, base, case):
    """Exit 2 with exactly one `minislm: error:` line naming the option, before any work."""
    argv, words = REFUSED_BY_ARGPARSE[case]
    before = set(base.iterdir())
    rc, out, err = run_cli([a.format(**more_paths) for a in argv], capsys)
    assert rc == 2, (rc, out, err)
    assert err.startswith("minislm: error: ") and err.count("\n") == 1, err
    assert words in err and out == "", err
    assert set(base.iterdir()) == before, "refused before any file was written"
    COUNT["command line"] += 1


def test_undecodable_prompt_bytes_from_a_real_command_line(gpt2_dir):
    """The bytes a shell passes for $'abc \\xff\\xfe def' (once a TypeError traceback)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), LANG="C.UTF-8", LC_ALL="C.UTF-8")
    done = subprocess.run([sys.executable, "-m", "minislm", "generate", "--model",
                           str(gpt2_dir), "--prompt", b"abc \xff\xfe def"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("minislm: error: generate: argument --prompt") and \
        "0xff" in done.stderr, done.stderr


def test_named_pipe_as_eval_data_is_called_a_pipe(more_paths, capsys, base):
    fifo = base / "data.fifo"
    os.mkfifo(fifo)
    rc, out, err = run_cli(["eval", "--model", more_paths["gpt2"], "--task", "ppl", "--data",
                            fifo, "--no-log"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "named pipe" in err, err
    assert "does not exist" not in err
    COUNT["command line"] += 1


def test_folder_names_that_are_not_utf8(more_paths, base, gpt2_dir):
    """Linux names are bytes: quantize --out writes such a folder, and commands read it
    (once: a TokenizerError from a folder `quantize --out` had just created)."""
    copy = base / "m\udcff"                       # the name b"m\xff", as Python decodes it
    shutil.copytree(gpt2_dir, copy)
    minislm.load(copy)
    out = os.fsencode(base / "q\udcfe")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8:strict")
    for argv in (["quantize", "--model", os.fsencode(copy), "--method", "rtn", "--group-size",
                  "8", "--out", out],
                 ["generate", "--model", out, "--prompt", "w1", "--max-new-tokens", "2"],
                 ["eval", "--model", out, "--task", "ppl", "--data", str(more_paths["text"]),
                  "--limit", "40", "--no-log"]):
        done = subprocess.run([sys.executable, "-m", "minislm", *argv], env=env,
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode("utf-8", "replace")[-800:]
        if argv[0] == "quantize":                   # the name printed as its own bytes
            assert b"wrote " + out + b"\n" in done.stdout, done.stdout


def test_library_encode_refuses_lone_surrogates(gpt2):
    from minislm.tokenizer import encode
    refused("text", lambda: encode(gpt2.tokenizer, "abc \udcff def"), InputError,
            ["surrogate", "character 4"])


# ============================================================== trainer state, LoRA adapters
@pytest.fixture(scope="module")
def trained_run(more_paths, base):
    out = base / "trained"
    argv = ["train", "--model", str(more_paths["gpt2"]), "--data", str(more_paths["text"]),
            "--steps", "2", "--batch-size", "2", "--seq-len", "16", "--eval-tokens", "32",
            "--sample-prompt", "", "--no-progress", "--out", str(out)]
    assert cli_main(argv) == 0
    return argv, out


def _corrupt_state(out, change_tensors=None, change_meta=None, raw=None):
    state = out / "trainer_state.safetensors"
    if raw is not None:
        state.write_bytes(raw(state.read_bytes()))
        return
    tensors = {k: np.array(v) for k, v in read_safetensors(state).items()}
    meta = minislm.checkpoint.read_header(state)[1]
    if change_tensors:
        change_tensors(tensors)
    if change_meta:
        change_meta(meta)
    write_safetensors(state, tensors, metadata=meta)


STATE_CASES = {
    "truncated": dict(raw=lambda b: b[: len(b) // 2]),
    "tensor missing": dict(change_tensors=lambda t: t.pop(next(k for k in sorted(t)
                                                               if k.startswith("param/")))),
    "no step": dict(change_meta=lambda m: m.pop("step")),
    "step not a number": dict(change_meta=lambda m: m.__setitem__("step", "x")),
    "history not JSON": dict(change_meta=lambda m: m.__setitem__("history", "{")),
    "no history": dict(change_meta=lambda m: m.pop("history")),
    "history without elapsed time": dict(change_meta=lambda m: m.__setitem__("history",
                                                                             '[{"step": 1}]')),
    "moment of an unknown weight": dict(change_tensors=lambda t: t.__setitem__(
        "adam_m/nope", np.ones(2, np.float32))),
    "moment of another shape": dict(change_tensors=lambda t: t.__setitem__(
        next(k for k in sorted(t) if k.startswith("adam_v/")), np.ones(3, np.float32))),
}


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_corrupted_trainer_state_on_resume(trained_run, base, capsys, case):
    argv, out = trained_run
    folder = fresh(base)
    shutil.copytree(out, folder, dirs_exist_ok=True)
    _corrupt_state(folder, **STATE_CASES[case])
    argv = argv[:-1] + [str(folder), "--resume"]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and "trainer_state.safetensors" in err, err
    COUNT["trainer state"] += 1


@pytest.fixture(scope="module")
def adapter_dir(gpt2, base):
    from minislm.adapt import lora
    return lora.save_adapter(lora.add_lora(gpt2, 2, 4.0, 0.0, None, seed=0), base / "adapter")


ADAPTER_CASES = {
    "config missing": lambda d: (d / "adapter_config.json").unlink(),
    "weights missing": lambda d: (d / "adapter_model.safetensors").unlink(),
    "config not JSON": lambda d: (d / "adapter_config.json").write_text("{"),
    "not LoRA": lambda d: _edit_json(d / "adapter_config.json", peft_type="IA3"),
    "rank a string": lambda d: _edit_json(d / "adapter_config.json", r="2"),
    "rank disagrees with tensors": lambda d: _edit_json(d / "adapter_config.json", r=3),
    "DoRA": lambda d: _edit_json(d / "adapter_config.json", use_dora=True),
    "weights truncated": lambda d: (d / "adapter_model.safetensors").write_bytes(
        (d / "adapter_model.safetensors").read_bytes()[:100]),
    "config binary": lambda d: (d / "adapter_config.json").write_bytes(b"\xff\xfe\x00"),
    "config a list": lambda d: (d / "adapter_config.json").write_text("[1]"),
    "dropout a string": lambda d: _edit_json(d / "adapter_config.json", lora_dropout="x"),
}


def _edit_json(path, **changes):
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("case", list(ADAPTER_CASES))
def test_broken_lora_adapters(gpt2, adapter_dir, base, case):
    from minislm.adapt import lora
    folder = fresh(base)
    shutil.copytree(adapter_dir, folder, dirs_exist_ok=True)
    ADAPTER_CASES[case](folder)
    refused("LoRA adapter", lambda: lora.load_adapter(gpt2, folder), CheckpointError,
            [folder])


# ============================================================== the count
def test_malformed_input_count(request):
    """Runs last: at least MINIMUM malformed inputs were fed (when the module ran whole)."""
    total = sum(COUNT.values()) - sum(ACCEPTED.values())
    print(f"malformed inputs refused: {total}")
    if request.config.option.keyword or request.config.option.markexpr or \
            any("::" in a for a in request.config.args):
        pytest.skip(f"only part of the module ran ({total} inputs)")
    assert total >= MINIMUM, dict(COUNT)
