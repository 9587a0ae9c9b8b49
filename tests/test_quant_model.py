"""Quantized linear layers, quantized checkpoints, and whole-model RTN/GPTQ/AWQ/EoRA."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minislm
from minislm.errors import CheckpointError
from minislm.model import quantized
from minislm.quant.model_quant import model_nbytes, quantize_model
from minislm.model.pack import packed_row_bytes
from minislm.model.quantized import QuantizedTensor
from minislm.quant.rtn import PER_CHANNEL, PER_TENSOR, quantize_rtn

from conftest import REPO


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000), bits=st.sampled_from([2, 3, 4, 8]),
       group_size=st.sampled_from([PER_TENSOR, PER_CHANNEL, 5, 8, 12]), sym=st.booleans(),
       orientation=st.sampled_from(["in_out", "out_in"]), extras=st.booleans(),
       n_in=st.sampled_from([24, 25]), tokens=st.sampled_from([1, 6, 15]))
def test_quantized_linear_equals_dequantized_matmul(seed, bits, group_size, sym, orientation,
                                                    extras, n_in, tokens):
    """Both matmul paths (grid after the dot for ≤ 8 tokens, dequantize-then-multiply
    for more), equal and ragged groups, rows whose codes do not fill the last byte."""
    rng = np.random.default_rng(seed)
    out = 10
    W = rng.standard_normal((out, n_in)).astype(np.float32)
    qm = quantize_rtn(W, bits, group_size, sym)
    s = rng.uniform(0.5, 2, n_in).astype(np.float32) if extras else None
    A = rng.standard_normal((3, n_in)).astype(np.float32) if extras else None
    B = rng.standard_normal((out, 3)).astype(np.float32) if extras else None
    qt = QuantizedTensor.from_matrix(qm, orientation, s, A, B)
    assert qt.shape == ((n_in, out) if orientation == "in_out" else (out, n_in))
    W_ckpt = qt.dequantize()
    assert W_ckpt.dtype == np.float32 and W_ckpt.shape == qt.shape
    W_eff = qm.dequantize() / (s if extras else 1) + (B @ A if extras else 0)
    np.testing.assert_allclose(W_ckpt.T if orientation == "in_out" else W_ckpt, W_eff,
                               rtol=1e-5, atol=1e-6)
    x = rng.standard_normal((1, tokens, n_in)).astype(np.float32)
    y = qt.linear(x)
    assert y.shape == (1, tokens, out) and y.dtype == np.float32
    np.testing.assert_allclose(y, x @ W_eff.T, rtol=1e-4, atol=1e-4)
    # exact byte accounting
    n_groups = qm.scales.shape[1]
    expected = out * packed_row_bytes(n_in, bits) + qm.scales.size * 2
    expected += 0 if sym else qm.scales.shape[0] * packed_row_bytes(n_groups, bits)
    expected += (n_in * 4 + 3 * n_in * 4 + out * 3 * 4) if extras else 0
    assert qt.nbytes == expected


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), bits=st.sampled_from([2, 4, 8]),
       group_size=st.sampled_from([PER_CHANNEL, 8, 12]), extras=st.booleans())
def test_quantized_linear_backward_is_the_transposed_product(seed, bits, group_size, extras):
    """dx = dy Ŵ_eff (checked against central differences of `linear` in float64);
    the frozen codes get no gradient."""
    rng = np.random.default_rng(seed)
    out, n_in = 10, 24
    W = rng.standard_normal((out, n_in)).astype(np.float32)
    s = rng.uniform(0.5, 2, n_in).astype(np.float32) if extras else None
    A = rng.standard_normal((3, n_in)).astype(np.float32) if extras else None
    B = rng.standard_normal((out, 3)).astype(np.float32) if extras else None
    qt = QuantizedTensor.from_matrix(quantize_rtn(W, bits, group_size), "out_in", s, A, B)
    x = rng.standard_normal((2, 3, n_in))
    dy = rng.standard_normal((2, 3, out))
    dx, grads = qt.linear_backward(x.astype(np.float32), dy.astype(np.float32))
    assert grads == {} and dx.shape == x.shape and dx.dtype == np.float32
    fd = np.zeros_like(x)
    eps = 1e-3
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        fd[i] = ((qt.linear(x + e) - qt.linear(x - e)) * dy).sum() / (2 * eps)
    np.testing.assert_allclose(dx, fd, rtol=1e-4, atol=1e-4)


def test_block_dequantization_matches_one_shot(monkeypatch):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((37, 64)).astype(np.float32)
    qt = QuantizedTensor.from_matrix(quantize_rtn(W, 4, 16), "out_in")
    xs = [rng.standard_normal((n, 64)).astype(np.float32) for n in (5, 20)]   # both paths
    full = [qt.linear(x) for x in xs]
    monkeypatch.setattr(quantized, "BLOCK_FLOATS", 64 * 5)       # 5 rows per block
    for x, y in zip(xs, full):
        np.testing.assert_allclose(qt.linear(x), y, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tiny(tiny_checkpoints):
    return {fam: minislm.load(path) for fam, path in tiny_checkpoints.items()}


def _calib(model, n=8, T=32, seed=0):
    return np.random.default_rng(seed).integers(0, model.config.vocab_size, (n, T))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_gptq_beats_rtn_on_every_layer_and_roundtrips(family, tiny, tmp_path):
    model = tiny[family]
    ids = _calib(model)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in model.params.items()}
    qmodel, report = quantize_model(model, "gptq", bits=4, group_size=16, calib_ids=ids,
                                    progress=False)
    for k, v in model.params.items():                       # the input model is untouched
        np.testing.assert_array_equal(v, before[k])
    assert len(report) == len(minislm.model.families.linear_layers(model.config, model.prefix))
    for entry in report:
        assert entry["error"] <= entry["error_rtn"], entry
    ref = minislm.forward(model, ids[:2])
    out = minislm.forward(qmodel, ids[:2])
    assert out.dtype == np.float32
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()
    # on disk: packed parts, quantization_config, and loading runs it directly
    folder = minislm.save(qmodel, tmp_path / "q")
    cfg = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == "minislm" and cfg["bits"] == 4 and cfg["group_size"] == 16
    loaded = minislm.load(folder)
    np.testing.assert_array_equal(minislm.forward(loaded, ids[:2]), out)
    assert model_nbytes(loaded) < model_nbytes(model)


def test_rtn_needs_no_calibration_and_disk_shrinks(tiny, tiny_checkpoints, tmp_path):
    model = tiny["llama"]
    q8, report = quantize_model(model, "rtn", bits=8, group_size=PER_CHANNEL, sym=True,
                                progress=False)
    assert all("weight_mse" in e for e in report)
    folder = minislm.save(q8, tmp_path / "q8")
    from minislm.model import families
    lin_bytes = sum(lin.d_in * lin.d_out * 4 for lin in families.linear_layers(model.config))
    q_bytes = sum(q8.params[lin.name].nbytes for lin in families.linear_layers(model.config))
    lin_out = sum(lin.d_out for lin in families.linear_layers(model.config))
    assert q_bytes == lin_bytes // 4 + lin_out * 2            # 1 byte/weight + an fp16 scale/row
    def data_bytes(path):                                     # file size minus the JSON header
        from minislm.checkpoint import read_header
        _, _, start = read_header(path)
        return path.stat().st_size - start
    size_in = data_bytes(tiny_checkpoints["llama"] / "model.safetensors")
    size_out = data_bytes(folder / "model.safetensors")
    assert size_in - size_out == lin_bytes - q_bytes


def test_awq_and_eora_run_through_the_model(tiny):
    model = tiny["gpt2"]
    ids = _calib(model)
    qa, report = quantize_model(model, "awq", bits=3, group_size=16, calib_ids=ids,
                                progress=False)
    assert all(e["error"] <= e["error_rtn"] for e in report)
    qe, report = quantize_model(model, "rtn", bits=3, group_size=16, eora_rank=4,
                                calib_ids=ids, progress=False)
    assert all(e["error"] <= e["error_svd"] * (1 + 1e-6) and e["error"] < e["error_before_eora"]
               for e in report)


def _pruned(model, method, ids):
    from minislm.prune.magnitude import magnitude_prune
    from minislm.prune.sparsegpt import sparsegpt
    from minislm.prune.wanda import wanda
    if method == "magnitude 50%":
        return magnitude_prune(model, sparsity=0.5)
    if method == "wanda 2:4":
        return wanda(model, ids, nm="2:4")
    return sparsegpt(model, ids, nm="4:8")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("prune", ["magnitude 50%", "wanda 2:4", "sparsegpt 4:8"])
def test_quantization_keeps_the_pruned_zeros(tiny, family, prune):
    """Issue 13 item 7: after pruning, RTN, GPTQ, AWQ (each with and without EoRA) and NF4
    keep every pruned weight of the quantized base Ŵ exactly zero (the stored masks stay
    true) and never raise the base's nonzero count; EoRA's dense A, B are counted apart."""
    from minislm.evaluate.facts import count_params
    from minislm.prune.masks import out_in
    model = tiny[family]
    ids = _calib(model)
    pruned = _pruned(model, prune, ids)
    masks = pruned.extra_tensors["masks"]
    lins = minislm.model.families.linear_layers(model.config, model.prefix)
    nonzero = count_params(pruned)["params_nonzero"]
    for method, rank in [(m, r) for m in ("rtn", "gptq", "awq") for r in (0, 4)] + [("nf4", 0)]:
        q, _ = quantize_model(pruned, method, bits=4, group_size=64 if method == "nf4" else 16,
                              eora_rank=rank, calib_ids=ids, progress=False)
        for lin in lins:
            qt, keep = q.params[lin.name], np.asarray(masks[lin.name], bool)
            if hasattr(qt, "dequantize_rows"):                  # the base Ŵ [out, in], no EoRA
                base, keep = qt.dequantize_rows(0, qt.n_out), out_in(keep, lin.orientation)
            else:                                               # NF4 has no low-rank term
                base = qt.dequantize()
            pruned_left = np.count_nonzero(base[~keep])
            assert pruned_left == 0, (method, rank, lin.name, pruned_left)
            np.testing.assert_array_equal(q.extra_tensors["masks"][lin.name], masks[lin.name])
        counts = count_params(q)
        assert counts["params_nonzero"] <= nonzero, (method, rank)
        assert counts.get("params_low_rank", 0) == sum(rank * (lin.d_in + lin.d_out)
                                                       for lin in lins)


def test_awq_beats_rtn_on_a_model_with_planted_salient_channels(tiny):
    """Issue 13 item 12, through the model: three channels of every LayerNorm output are made
    30× louder and the next linear's rows for them 30× smaller (the float model computes the
    same function). AWQ must then beat RTN clearly on every layer reading those norms and on
    the logits."""
    model = tiny["gpt2"]
    rng = np.random.default_rng(0)
    params = dict(model.params)
    for i in range(model.config.n_layer):
        p = f"{model.prefix}h.{i}."
        for norm, lin in (("ln_1", "attn.c_attn"), ("ln_2", "mlp.c_fc")):
            loud = rng.choice(model.config.d_model, 3, replace=False)
            for k in ("weight", "bias"):
                v = params[p + f"{norm}.{k}"].copy()
                v[loud] *= 30
                params[p + f"{norm}.{k}"] = v
            W = params[p + f"{lin}.weight"].copy()                  # Conv1D: [in, out]
            W[loud, :] /= 30
            params[p + f"{lin}.weight"] = W
    planted = model.replace(params=params)
    ids = _calib(model)
    ref = minislm.forward(planted, ids[:2])
    np.testing.assert_allclose(ref, minislm.forward(model, ids[:2]), atol=1e-4)
    logits_error = {}
    for method in ("rtn", "awq"):
        q, report = quantize_model(planted, method, bits=3, group_size=16, calib_ids=ids,
                                   progress=False)
        logits_error[method] = float(np.mean((minislm.forward(q, ids[:2]) - ref) ** 2))
    for e in report:
        if e["role"] in ("qkv", "fc"):
            assert e["error"] < 0.6 * e["error_rtn"], e
    assert logits_error["awq"] < 0.5 * logits_error["rtn"], logits_error


def test_load_rejects_inconsistent_quantized_tensors(tiny, tmp_path):
    from minislm.checkpoint import read_safetensors, write_safetensors
    model = tiny["llama"]
    q, _ = quantize_model(model, "rtn", bits=4, group_size=16, progress=False)
    folder = minislm.save(q, tmp_path / "bad")
    tensors = dict(read_safetensors(folder / "model.safetensors"))
    name = "model.layers.0.mlp.up_proj.scales"
    tensors[name] = tensors[name][:, :1]
    write_safetensors(folder / "model.safetensors", tensors)
    with pytest.raises(CheckpointError, match="up_proj.scales"):
        minislm.load(folder)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_int8_kv_cache_is_close_and_smaller(family, tiny):
    from minislm.model.cache import KVCache
    from minislm.quant.kv_cache import Int8KVCache
    model = tiny[family]
    ids = _calib(model, n=2, T=24)
    float_cache, int8_cache = KVCache(), Int8KVCache()
    ref = minislm.forward(model, ids[:, :16], cache=float_cache)
    out = minislm.forward(model, ids[:, :16], cache=int8_cache)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=0.02 * np.abs(ref).max())
    step_ref = minislm.forward(model, ids[:, 16:20], cache=float_cache)   # decode continues
    step = minislm.forward(model, ids[:, 16:20], cache=int8_cache)
    np.testing.assert_allclose(step, step_ref, atol=0.02 * np.abs(step_ref).max())
    D = model.config.head_dim
    assert int8_cache.nbytes == float_cache.nbytes * (D + 4) // (4 * D)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_generate_with_an_int8_kv_cache(family, tiny, capsys):
    """generate(cache=Int8KVCache()) equals the decode loop run by hand on the same cache
    type, keeps a smaller cache than float32, and `minislm generate --kv-cache int8` runs."""
    from minislm.cli import main
    from minislm.errors import InputError
    from minislm.model.cache import KVCache
    from minislm.quant.kv_cache import Int8KVCache
    model = tiny[family]
    prompt = _calib(model, n=2, T=6)
    cache = Int8KVCache()
    out = minislm.generate(model, prompt, 8, stop_tokens=(), cache=cache)
    by_hand, manual = [prompt], Int8KVCache()
    z = minislm.forward(model, prompt, cache=manual)[:, -1]
    for _ in range(8):
        by_hand.append(z.argmax(-1)[:, None])
        z = minislm.forward(model, by_hand[-1], cache=manual)[:, -1]
    np.testing.assert_array_equal(out, np.concatenate(by_hand, axis=1))
    float_cache = KVCache()
    minislm.generate(model, prompt, 8, stop_tokens=(), cache=float_cache)
    assert cache.length == float_cache.length == 6 + 7      # the last token is not fed back
    assert cache.nbytes < float_cache.nbytes
    with pytest.raises(InputError, match="empty KV cache"):
        minislm.generate(model, prompt, 2, cache=cache)      # already filled
    folder = REPO / "weights" / f"tiny-{family}"                # shipped, with a tokenizer
    assert main(["generate", "--model", str(folder), "--prompt", "hello", "--max-new-tokens",
                 "3", "--kv-cache", "int8"]) == 0
    assert capsys.readouterr().out.startswith("hello")


@pytest.mark.parametrize("bits,group_size,sym", [(8, PER_TENSOR, True), (3, 20, False),
                                                 (2, PER_CHANNEL, True), (5, 16, False)])
def test_every_scheme_roundtrips_through_disk(tiny, tmp_path, bits, group_size, sym):
    model = tiny["gpt2"]
    q, _ = quantize_model(model, "rtn", bits, group_size, sym, progress=False)
    loaded = minislm.load(minislm.save(q, tmp_path / "q"))
    for name, value in q.params.items():
        if isinstance(value, QuantizedTensor):
            np.testing.assert_array_equal(loaded.params[name].dequantize(), value.dequantize())
            assert loaded.params[name].nbytes == value.nbytes
    ids = _calib(model, n=1, T=8)
    np.testing.assert_array_equal(minislm.forward(loaded, ids), minislm.forward(q, ids))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_quantized_embeddings_and_head(family, tiny, tmp_path):
    model = tiny[family]
    q, report = quantize_model(model, "rtn", 8, PER_CHANNEL, sym=True, progress=False,
                               embeddings=True)
    from minislm.model import families
    emb = families.embedding_name(model.config, model.prefix)
    assert isinstance(q.params[emb], QuantizedTensor)
    ids = _calib(model, n=2, T=8)
    np.testing.assert_allclose(q.params[emb][ids], q.params[emb].dequantize()[ids])
    ref, out = minislm.forward(model, ids), minislm.forward(q, ids)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    loaded = minislm.load(minislm.save(q, tmp_path / "q"))
    assert loaded.extra_config["quantization_config"]["embeddings"] is True
    np.testing.assert_array_equal(minislm.forward(loaded, ids), out)
    assert model_nbytes(q) < 0.4 * model_nbytes(model)          # 8-bit: ~1/4 + scales, norms
