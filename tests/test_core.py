"""The core promise: minislm loads transformers' checkpoints and computes the same numbers."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minislm
from minislm.errors import CheckpointError, ConfigError, InputError, NumericalError

from conftest import build_hf_model, hf_logits, llama3_scaling, save_hf_model

torch = pytest.importorskip("torch")
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@st.composite
def tiny_configs(draw, family=None):
    family = family or draw(st.sampled_from(["gpt2", "llama"]))
    K = draw(st.sampled_from([1, 2, 4]))
    G = draw(st.sampled_from([1, 2]))
    H = K * G if family == "llama" else draw(st.sampled_from([1, 2, 4]))
    D = draw(st.sampled_from([4, 8, 16]))
    kw = dict(n_layer=draw(st.integers(1, 3)), n_head=H, d_model=H * D,
              vocab_size=draw(st.integers(11, 120)), max_position=48)
    if family == "llama":
        kw.update(n_kv_head=K, d_ff=draw(st.sampled_from([16, 40])), head_dim=D,
                  tied=draw(st.booleans()),
                  rope_scaling=draw(st.sampled_from([None, llama3_scaling(8),
                                                     llama3_scaling(32)])))
    return family, kw


def ids_for(kw, seed, B=2, T=None):
    rng = np.random.default_rng(seed)
    return rng.integers(0, kw["vocab_size"], (B, T or int(rng.integers(1, 24))))


@SETTINGS
@given(tiny_configs(), st.integers(0, 10_000))
def test_logits_match_transformers_float32(tmp_path_factory, case, seed):
    family, kw = case
    hf = build_hf_model(family, seed=seed, **kw)
    folder = save_hf_model(hf, tmp_path_factory.mktemp("ckpt"))
    model = minislm.load(folder)
    assert model.config.family == family
    ids = ids_for(kw, seed)
    logits = minislm.forward(model, ids)
    assert logits.dtype == np.float32
    assert logits.shape == ids.shape + (kw["vocab_size"],)
    np.testing.assert_allclose(logits, hf_logits(hf, ids), atol=1e-4, rtol=0)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tiny_configs(), st.integers(0, 10_000))
def test_logits_match_transformers_float64(tmp_path_factory, case, seed):
    family, kw = case
    hf = build_hf_model(family, seed=seed, **kw)
    folder = save_hf_model(hf, tmp_path_factory.mktemp("ckpt"))
    model = minislm.load(folder, dtype=np.float64)
    ids = ids_for(kw, seed)
    logits = minislm.forward(model, ids)
    assert logits.dtype == np.float64
    # transformers builds LLaMA's RoPE tables in float32 even for a float64 model; NumPy's
    # and torch's float32 cos/sin differ in the last bit, which bounds the LLaMA agreement.
    atol = 1e-10 if family == "gpt2" else 1e-6
    np.testing.assert_allclose(logits, hf_logits(hf.double(), ids), atol=atol, rtol=0)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("disk_dtype", ["bfloat16", "float16"])
def test_half_precision_files_load_exactly(tmp_path, family, disk_dtype):
    hf = build_hf_model(family)
    folder = save_hf_model(hf, tmp_path / "half", dtype=getattr(torch, disk_dtype))
    header = json.loads(open(folder / "model.safetensors", "rb").read()[8:].split(b"}}")[0]
                        .decode(errors="ignore") + "}}")
    code = {"bfloat16": "BF16", "float16": "F16"}[disk_dtype]
    assert code in {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    model = minislm.load(folder)
    ref = type(hf).from_pretrained(folder, dtype=torch.float32).eval()
    for name, p in ref.state_dict().items():
        if name in model.params:  # widening is exact: same float32 bits as torch's upcast
            np.testing.assert_array_equal(model.params[name], p.numpy())
    ids = ids_for({"vocab_size": 101}, 1)
    np.testing.assert_allclose(minislm.forward(model, ids), hf_logits(ref, ids), atol=1e-4)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_greedy_generation_identical_for_32_tokens(tiny_checkpoints, family):
    import transformers
    folder = tiny_checkpoints[family]
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    model = minislm.load(folder)
    prompt = ids_for({"vocab_size": 101}, 3, B=1, T=5)
    ours = minislm.generate(model, prompt, 40, stop_tokens=())
    hf.generation_config.eos_token_id = None   # run all 40 steps, like stop_tokens=()
    with torch.no_grad():
        ref = hf.generate(torch.tensor(prompt), max_new_tokens=40, do_sample=False,
                          pad_token_id=0).numpy()
    assert ours.shape == (1, 45)
    np.testing.assert_array_equal(ours, ref)
    # by default both stop at the config's eos token: make the 3rd generated token the eos
    eos = int(ours[0, 7])
    hf.generation_config.eos_token_id = eos
    model = model.replace(config=model.config.replace(eos_token_id=eos))
    with torch.no_grad():
        ref = hf.generate(torch.tensor(prompt), max_new_tokens=40, do_sample=False,
                          pad_token_id=0).numpy()
    np.testing.assert_array_equal(minislm.generate(model, prompt, 40), ref)


@SETTINGS
@given(tiny_configs(), st.integers(0, 10_000), st.integers(1, 12))
def test_kv_cache_decoding_equals_recomputation(tmp_path_factory, case, seed, split):
    family, kw = case
    folder = save_hf_model(build_hf_model(family, seed=seed, **kw),
                           tmp_path_factory.mktemp("ckpt"))
    model = minislm.load(folder, dtype=np.float64)
    ids = ids_for(kw, seed, B=2, T=16)
    full = minislm.forward(model, ids)
    cache = minislm.KVCache()
    steps = [minislm.forward(model, ids[:, :split], cache)]
    for t in range(split, 16):
        steps.append(minislm.forward(model, ids[:, t:t + 1], cache))
    assert cache.length == 16
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 2]), st.sampled_from([1, 2, 3]),
       st.integers(1, 20), st.integers(0, 9), st.integers(1, 25))
def test_blocked_attention_equals_the_masked_softmax(seed, K, G, T, q_start, block):
    """Queries taken `block` at a time give every row the softmax over exactly the keys
    0 … q_start + t (a direct loop over queries, float64)."""
    from minislm.model.layers import attention
    rng = np.random.default_rng(seed)
    B, D, S = 2, 4, q_start + T
    q = rng.standard_normal((B, K * G, T, D))
    k, v = rng.standard_normal((2, B, K, S, D))
    out = attention(q, k, v, q_start, block=block)
    assert out.shape == q.shape and out.dtype == np.float64
    for h in range(K * G):
        for t in range(T):
            keys = slice(0, q_start + t + 1)
            z = np.einsum("bd,bsd->bs", q[:, h, t], k[:, h // G, keys]) / np.sqrt(D)
            p = np.exp(z - z.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            np.testing.assert_allclose(out[:, h, t], np.einsum("bs,bsd->bd", p,
                                                                v[:, h // G, keys]), atol=1e-12)
    assert attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32),
                     q_start, block=block).dtype == np.float32


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_small_attention_blocks_match_transformers(tmp_path, family, monkeypatch):
    """The whole model with 5-query attention blocks (several blocks per window, a
    prefill then decoding with the cache) still equals transformers."""
    from minislm.model import layers
    monkeypatch.setattr(layers, "ATTENTION_BLOCK", 5)
    kw = dict(n_layer=2, n_head=4, d_model=32, vocab_size=50, max_position=48)
    if family == "llama":
        kw.update(n_kv_head=2, d_ff=40, head_dim=8)
    hf = build_hf_model(family, seed=1, **kw)
    model = minislm.load(save_hf_model(hf, tmp_path))
    ids = ids_for(kw, 1, B=2, T=23)
    ref = hf_logits(hf, ids)
    np.testing.assert_allclose(minislm.forward(model, ids), ref, atol=1e-4, rtol=0)
    cache = minislm.KVCache()
    parts = [minislm.forward(model, ids[:, :12], cache),
             minislm.forward(model, ids[:, 12:], cache)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_last_only_logits(tiny_checkpoints, family):
    """forward(last_only=True) is the last row of the full logits (the LM head skipped
    for the others), also with a cache and for 1-D input."""
    model = minislm.load(tiny_checkpoints[family])
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (2, 9))
    full = minislm.forward(model, ids)
    last = minislm.forward(model, ids, last_only=True)
    assert last.shape == (2, 1, model.config.vocab_size) and last.dtype == np.float32
    np.testing.assert_allclose(last, full[:, -1:], rtol=1e-6, atol=1e-6)
    cache = minislm.KVCache()
    minislm.forward(model, ids[:, :5], cache, last_only=True)
    np.testing.assert_allclose(minislm.forward(model, ids[:, 5:], cache, last_only=True),
                               full[:, -1:], rtol=1e-5, atol=1e-5)
    assert minislm.forward(model, ids[0], last_only=True).shape == (1, model.config.vocab_size)


@SETTINGS
@given(tiny_configs(), st.integers(0, 10_000), st.integers(1, 15))
def test_causal_masking(tmp_path_factory, case, seed, t):
    family, kw = case
    folder = save_hf_model(build_hf_model(family, seed=seed, **kw),
                           tmp_path_factory.mktemp("ckpt"))
    model = minislm.load(folder, dtype=np.float64)
    ids = ids_for(kw, seed, B=1, T=16)
    changed = ids.copy()
    changed[0, t:] = (changed[0, t:] + 1) % kw["vocab_size"]
    a, b = minislm.forward(model, ids), minislm.forward(model, changed)
    np.testing.assert_array_equal(a[:, :t], b[:, :t])
    assert not np.allclose(a[:, t:], b[:, t:])


def test_sampling_is_seeded_and_respects_top_k(tiny_checkpoints):
    model = minislm.load(tiny_checkpoints["llama"])
    prompt = np.array([[1, 2, 3]])
    a = minislm.generate(model, prompt, 20, temperature=1.0, top_k=5, seed=7, stop_tokens=())
    b = minislm.generate(model, prompt, 20, temperature=1.0, top_k=5, seed=7, stop_tokens=())
    np.testing.assert_array_equal(a, b)
    # every sampled token is among the 5 most likely under the model at its step
    logits = minislm.forward(model, a[:, :-1])[0, 2:]
    top5 = np.argsort(logits, -1)[:, -5:]
    assert all(tok in row for tok, row in zip(a[0, 3:], top5))
    c = minislm.generate(model, prompt, 20, temperature=1.0, top_p=1e-6, seed=1, stop_tokens=())
    np.testing.assert_array_equal(c, minislm.generate(model, prompt, 20, stop_tokens=()))


def test_stop_tokens_end_generation(tiny_checkpoints):
    model = minislm.load(tiny_checkpoints["gpt2"])
    prompt = np.array([[4, 5]])
    greedy = minislm.generate(model, prompt, 10, stop_tokens=())
    first = int(greedy[0, 2])
    stopped = minislm.generate(model, prompt, 10, stop_tokens=[first])
    np.testing.assert_array_equal(stopped, greedy[:, :3])


def test_sharded_checkpoint_and_old_config_form(tmp_path):
    hf = build_hf_model("llama", n_layer=3)
    folder = tmp_path / "sharded"
    hf.save_pretrained(folder, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").exists()
    config = json.loads((folder / "config.json").read_text())
    params = config.pop("rope_parameters")          # rewrite in the older (Hub) form
    config["rope_theta"] = params.pop("rope_theta")
    config["rope_scaling"] = params
    (folder / "config.json").write_text(json.dumps(config))
    model = minislm.load(folder)
    assert model.config.rope_scaling["rope_type"] == "llama3"
    ids = ids_for({"vocab_size": 101}, 0)
    np.testing.assert_allclose(minislm.forward(model, ids), hf_logits(hf, ids), atol=1e-4)


def test_hub_style_gpt2_names_without_prefix(tmp_path):
    hf = build_hf_model("gpt2")
    folder = save_hf_model(hf, tmp_path / "hub")
    tensors = minislm.checkpoint.read_safetensors(folder / "model.safetensors")
    renamed = {k.removeprefix("transformer."): np.array(v) for k, v in tensors.items()}
    renamed["h.0.attn.bias"] = np.tril(np.ones((1, 1, 64, 64), np.float32))  # old mask buffer
    minislm.checkpoint.write_safetensors(folder / "model.safetensors", renamed)
    model = minislm.load(folder)
    assert "wte.weight" in model.params and model.prefix == ""
    ids = ids_for({"vocab_size": 101}, 0)
    np.testing.assert_allclose(minislm.forward(model, ids), hf_logits(hf, ids), atol=1e-4)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_save_round_trips_through_transformers(tiny_checkpoints, tmp_path, family):
    import transformers
    src = tiny_checkpoints[family]
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    model = minislm.load(src)
    out = minislm.save(model, tmp_path / "saved")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = ids_for({"vocab_size": 101}, 2)
    np.testing.assert_allclose(hf_logits(hf, ids), minislm.forward(model, ids), atol=1e-5)
    assert before == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        minislm.save(model, src)


def test_bf16_save_round_trip(tiny_checkpoints, tmp_path):
    model = minislm.load(tiny_checkpoints["llama"])
    out = minislm.save(model, tmp_path / "bf16", bf16=True)
    again = minislm.load(out)
    for name, w in model.params.items():
        np.testing.assert_allclose(again.params[name], w, rtol=2 ** -8, atol=1e-30)


# ------------------------------------------------------------------ clear errors
def corrupt_copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_tensor_named(tiny_checkpoints, tmp_path):
    folder = corrupt_copy(tiny_checkpoints["llama"], tmp_path / "m")
    tensors = dict(minislm.checkpoint.read_safetensors(folder / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    minislm.checkpoint.write_safetensors(folder / "model.safetensors", tensors)
    with pytest.raises(CheckpointError, match="model.layers.1.mlp.up_proj.weight.*missing"):
        minislm.load(folder)


def test_shape_mismatch_named(tiny_checkpoints, tmp_path):
    folder = corrupt_copy(tiny_checkpoints["gpt2"], tmp_path / "m")
    tensors = {k: np.array(v) for k, v in
               minislm.checkpoint.read_safetensors(folder / "model.safetensors").items()}
    tensors["transformer.h.0.mlp.c_fc.weight"] = tensors["transformer.h.0.mlp.c_fc.weight"].T
    minislm.checkpoint.write_safetensors(folder / "model.safetensors", tensors)
    with pytest.raises(CheckpointError, match=r"c_fc.weight.*shape"):
        minislm.load(folder)


def test_nan_weights_named(tiny_checkpoints, tmp_path):
    folder = corrupt_copy(tiny_checkpoints["llama"], tmp_path / "m")
    tensors = {k: np.array(v) for k, v in
               minislm.checkpoint.read_safetensors(folder / "model.safetensors").items()}
    tensors["model.norm.weight"][3] = np.nan
    minislm.checkpoint.write_safetensors(folder / "model.safetensors", tensors)
    with pytest.raises(NumericalError, match="model.norm.weight.*NaN"):
        minislm.load(folder)


def test_unknown_model_type_and_pickle_refused(tiny_checkpoints, tmp_path):
    folder = corrupt_copy(tiny_checkpoints["gpt2"], tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "mamba"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="model_type.*mamba"):
        minislm.load(folder)
    pickled = tmp_path / "p"
    pickled.mkdir()
    shutil.copy(tiny_checkpoints["gpt2"] / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        minislm.load(pickled)
    with pytest.raises(CheckpointError, match="pickle"):
        minislm.load(pickled / "pytorch_model.bin")


def test_bad_token_ids(tiny_checkpoints):
    model = minislm.load(tiny_checkpoints["gpt2"])
    with pytest.raises(InputError, match="vocab"):
        minislm.forward(model, np.array([[1, 500]]))
    with pytest.raises(InputError, match="shape"):
        minislm.forward(model, np.zeros((1, 0), dtype=np.int64))
    with pytest.raises(InputError, match="max_position"):
        minislm.forward(model, np.zeros((1, 65), dtype=np.int64))


def test_franken_layer_order_runs_blocks_without_copying(tiny_checkpoints):
    model = minislm.load(tiny_checkpoints["llama"], dtype=np.float64)
    ids = ids_for({"vocab_size": 101}, 5, B=1, T=8)
    repeated = minislm.forward(model, ids, layers=[0, 1, 1])
    assert not np.allclose(repeated, minislm.forward(model, ids))
    cache = minislm.KVCache()
    stepped = np.concatenate([minislm.forward(model, ids[:, :4], cache, layers=[0, 1, 1]),
                              minislm.forward(model, ids[:, 4:], cache, layers=[0, 1, 1])], 1)
    np.testing.assert_allclose(stepped, repeated, atol=1e-10)


def test_download_pins_revision_and_verifies_files(tiny_checkpoints, tmp_path, monkeypatch):
    """No machine here reaches the Hub: huggingface_hub's API is mocked with a local folder."""
    import types

    import huggingface_hub
    src = tiny_checkpoints["gpt2"]
    siblings = [types.SimpleNamespace(rfilename=p.name, size=p.stat().st_size)
                for p in src.iterdir()]
    calls = {}

    class FakeApi:
        def model_info(self, repo_id, revision=None, files_metadata=False):
            calls["revision"] = revision
            return types.SimpleNamespace(sha="abc123", siblings=siblings)

    def fake_snapshot(repo_id, revision, local_dir, allow_patterns):
        calls["pinned"] = revision
        shutil.copytree(src, local_dir, dirs_exist_ok=True)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    path = minislm.download("someone/tiny", revision="main", out_dir=tmp_path)
    assert calls == {"revision": "main", "pinned": "abc123"}
    assert (path / "REVISION").read_text().strip() == "someone/tiny@abc123"
    assert minislm.load(path).config.family == "gpt2"


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 2]), st.sampled_from([1, 2, 3]),
       st.integers(1, 20), st.integers(0, 9), st.integers(1, 25),
       st.sampled_from([np.float32, np.float64]))
def test_fast_attention_agrees_with_the_textbook_one(seed, K, G, T, q_start, block, dtype):
    """The blocked `attention` (the prefill fast path) equals `attention_reference`, the
    one-line softmax(q kᵀ/√D + mask) v a student reads first, in float32 and float64."""
    from minislm.model.layers import attention, attention_reference
    rng = np.random.default_rng(seed)
    B, D, S = 2, 8, q_start + T
    q = rng.standard_normal((B, K * G, T, D)).astype(dtype)
    k, v = rng.standard_normal((2, B, K, S, D)).astype(dtype)
    fast, plain = attention(q, k, v, q_start, block=block), attention_reference(q, k, v, q_start)
    assert fast.dtype == plain.dtype == dtype
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(1, 7), min_size=1, max_size=3),
       st.sampled_from([np.float32, np.float64]))
def test_in_place_gelu_agrees_with_the_textbook_one(seed, shape, dtype):
    """`gelu_tanh` (evaluated in one buffer) equals the formula written out in one line."""
    from minislm.model.layers import gelu_tanh, gelu_tanh_reference
    x = (np.random.default_rng(seed).standard_normal(shape) * 4).astype(dtype)
    fast, plain = gelu_tanh(x), gelu_tanh_reference(x)
    assert fast.dtype == plain.dtype == dtype
    np.testing.assert_allclose(fast, plain, rtol=1e-6 if dtype == np.float32 else 1e-14,
                               atol=1e-7 if dtype == np.float32 else 1e-15)


def test_stored_weights_follow_one_protocol():
    """QuantizedTensor and LoraLinear are `StoredWeight`s: linear, linear_backward, dequantize
    and state_dict agree with the float weight each one dequantizes to."""
    from minislm.adapt.lora import LoraLinear
    from minislm.model.quantized import QuantizedTensor
    from minislm.model.weights import StoredWeight
    from minislm.quant.rtn import quantize_rtn
    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 16)).astype(np.float32)                     # (out, in)
    quantized = QuantizedTensor.from_matrix(quantize_rtn(W, 4, 8), "out_in")
    lora = LoraLinear(base=W, A=rng.standard_normal((2, 16)).astype(np.float32),
                      B=rng.standard_normal((6, 2)).astype(np.float32), alpha=4.0)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    dy = rng.standard_normal((3, 6)).astype(np.float32)
    for weight in (quantized, lora):
        assert isinstance(weight, StoredWeight)
        W_hat = weight.dequantize()                                         # (out, in)
        assert W_hat.shape == (6, 16) and not np.allclose(W_hat, W, atol=1e-6)
        np.testing.assert_allclose(weight.linear(x), x @ W_hat.T, rtol=1e-5, atol=1e-5)
        dx, _ = weight.linear_backward(x, dy)
        np.testing.assert_allclose(dx, dy @ W_hat, rtol=1e-5, atol=1e-5)
        assert "w.weight" in weight.state_dict("w.weight") or \
            "w.qweight" in weight.state_dict("w.weight")
    assert not isinstance(W, StoredWeight)


def test_the_model_core_imports_no_technique():
    """loading.py and model/ import no technique, and hardware/ does not import quant/:
    the packed quantized tensor is part of the core (minislm.model.quantized)."""
    import ast
    from pathlib import Path
    root = Path(minislm.__file__).parent

    def imports(path):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                found.add("." * node.level + (node.module or ""))
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        return found

    techniques = ("quant", "prune", "adapt", "train", "calibration", "pipeline")
    for path in [root / "loading.py", *sorted((root / "model").glob("*.py"))]:
        bad = [m for m in imports(path) if m.lstrip(".").split(".")[0] in techniques
               or m.startswith("minislm.") and m.split(".")[1] in techniques]
        assert not bad, f"{path.name} imports {bad}"
    for path in sorted((root / "hardware").rglob("*.py")):
        bad = [m for m in imports(path) if "quant" in m.lstrip(".").split(".")]
        assert not bad, f"hardware/{path.name} imports {bad}"
