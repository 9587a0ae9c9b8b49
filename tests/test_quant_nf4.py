"""NF4 (QLoRA's 4-bit NormalFloat): the code, blockwise absmax, double quantization,
bitsandbytes' bytes, the NF4 linear, checkpoints and QLoRA over an NF4 base."""
import json
import statistics

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minislm
from minislm.cli import main
from minislm.errors import CheckpointError
from minislm.quant import nf4
from minislm.model import nf4 as stored_nf4
from minislm.model.nf4 import DYNAMIC_MAP, NF4_CODE, SCALE_BLOCK, NF4Tensor
from minislm.quant.model_quant import quantize_model
from minislm.quant.nf4 import quantize_nf4

from conftest import REPO, assert_adapter_grads_equal_over_dense_copy

TINY = REPO / "weights" / "tiny-llama"


def test_the_code_is_qloras_normal_float():
    """The 16 values are the paper's construction (Appendix E, δ = 0.9677083): normal
    quantiles of 9 and 8 evenly spaced probabilities, an exact 0, scaled to [−1, 1]."""
    phi_inv = statistics.NormalDist().inv_cdf
    delta = 0.9677083
    positive = [phi_inv(p) for p in np.linspace(delta, 0.5, 9)[:-1]]
    negative = [-phi_inv(p) for p in np.linspace(delta, 0.5, 8)[:-1]]
    derived = np.sort(np.array(positive + negative + [0.0]))
    derived /= derived.max()
    np.testing.assert_allclose(NF4_CODE, derived, atol=2e-7)
    assert NF4_CODE.dtype == np.float32 and np.all(np.diff(NF4_CODE) > 0)
    assert NF4_CODE[0] == -1 and NF4_CODE[7] == 0 and NF4_CODE[15] == 1


def test_dynamic_map_is_the_8_bit_tree():
    d = DYNAMIC_MAP
    assert d.shape == (256,) and d.dtype == np.float32 and np.all(np.diff(d) > 0)
    assert 0.0 in d and d[-1] == 1.0 and d[0] == -d[-2]          # symmetric but for +1
    assert np.isclose(d[-2], 0.1 + 0.9 * 63.5 / 64, rtol=1e-7)   # finest exponent's top mean
    assert np.isclose(d[d > 0].min(), 1e-6 * 0.55, rtol=1e-6)     # 10⁻⁶ · mid(0.1, 1)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_out=st.integers(1, 9), n_in=st.sampled_from([5, 45, 64, 130]),
       block=st.sampled_from([32, 64]), spread=st.sampled_from([1e-3, 1.0, 30.0]))
def test_blockwise_absmax_nearest_code_and_error_bounds(seed, n_out, n_in, block, spread):
    """Per block of the flattened weight: the largest |w| lands exactly on ±a (c = ±1),
    every other w on its nearest code, so |w − ŵ| ≤ a · (widest gap)/2; with double
    quantization â is within half a dynamic-map step (times A) of a."""
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((n_out, n_in)) * spread).astype(np.float32)
    W[rng.random(W.shape) < 0.05] = 0.0
    plain = quantize_nf4(W, block, double_quant=False).tensor
    flat = W.reshape(-1)
    a = nf4.blockwise_absmax(flat, block)
    np.testing.assert_array_equal(plain.absmax, a)
    a_of = np.repeat(a, block)[:flat.size]
    q = np.stack([plain.qweight >> 4, plain.qweight & 15], 1).reshape(-1)[:flat.size]
    x = np.where(a_of > 0, flat / np.where(a_of > 0, a_of, 1), 0)
    dist = np.abs(x[:, None] - NF4_CODE[None, :])                      # [n, 16]
    assert np.all(dist[np.arange(flat.size), q] <= dist.min(1) + 1e-6)
    top = np.abs(flat) == a_of
    assert np.all(np.abs(NF4_CODE[q[top & (a_of > 0)]]) == 1)
    W_hat = plain.effective_out_in().reshape(-1)
    assert W_hat.dtype == np.float32
    np.testing.assert_array_equal(W_hat[top], flat[top])              # extremes exact
    assert np.all(np.abs(flat - W_hat) <= a_of * np.diff(NF4_CODE).max() / 2 * (1 + 1e-6))

    dq = quantize_nf4(W, block).tensor
    np.testing.assert_array_equal(dq.qweight, plain.qweight)          # codes use the exact a
    A = np.repeat(dq.absmax_scale, SCALE_BLOCK)[:a.size]
    a_hat = dq.block_absmax()
    assert np.all(np.abs(a_hat - a) <= A * np.diff(DYNAMIC_MAP).max() / 2 + 1e-6 * a.max())
    np.testing.assert_allclose(dq.absmax_offset, [a.mean()], rtol=1e-6)


def test_bytes_are_4_127_bits_per_weight():
    W = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
    t = quantize_nf4(W).tensor
    n = W.size
    assert t.nbytes == n // 2 + n // 64 + 4 * (n // 64 // 256) + 4
    assert abs(8 * t.nbytes / n - 4.127) < 1e-3                         # QLoRA §3
    assert quantize_nf4(W, double_quant=False).tensor.nbytes == n // 2 + 4 * (n // 64)


@pytest.mark.parametrize("shape", [(96, 128), (7, 45), (3, 64 * 300)])
def test_equals_bitsandbytes(shape):
    """Bit for bit with bitsandbytes' quantize_4bit(nf4, blocksize 64): the packed codes,
    the absmaxes; the 8-bit scale codes equal its reference (PyTorch) blockwise kernel;
    bitsandbytes' dequantize_4bit reads our buffers to exactly our weights."""
    bnb_f = pytest.importorskip("bitsandbytes.functional")
    import torch
    W = (np.random.default_rng(sum(shape)).standard_normal(shape) * 0.02).astype(np.float32)
    code4 = bnb_f.get_4bit_type("nf4", device="cpu")
    np.testing.assert_array_equal(code4.numpy(), NF4_CODE)
    assert np.abs(bnb_f.create_dynamic_map().numpy() - DYNAMIC_MAP).max() <= 6e-8  # 1 ulp
    for double in (False, True):
        ours = quantize_nf4(W, double_quant=double).tensor
        packed, state = bnb_f.quantize_4bit(torch.from_numpy(W), blocksize=64, quant_type="nf4",
                                            compress_statistics=double)
        np.testing.assert_array_equal(packed.numpy().reshape(-1), ours.qweight)
        if not double:
            np.testing.assert_array_equal(state.absmax.numpy(), ours.absmax)
            mine = bnb_f.QuantState(absmax=torch.from_numpy(ours.absmax), shape=torch.Size(shape),
                                    dtype=torch.float32, blocksize=64, code=code4,
                                    quant_type="nf4")
        else:
            # bitsandbytes' float32 mean may differ from NumPy's in the last bit
            np.testing.assert_allclose(ours.absmax_offset, [state.offset.item()], rtol=1e-6)
            absmax = nf4.blockwise_absmax(W.reshape(-1), 64)
            reference = torch.ops.bitsandbytes.quantize_blockwise.default.redispatch(
                torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd),
                torch.from_numpy(absmax - ours.absmax_offset), torch.from_numpy(DYNAMIC_MAP), 256)
            np.testing.assert_array_equal(reference[0].numpy(), ours.absmax_q)
            np.testing.assert_array_equal(reference[1].numpy(), ours.absmax_scale)
            state2 = bnb_f.QuantState(absmax=torch.from_numpy(ours.absmax_scale),
                                      code=torch.from_numpy(DYNAMIC_MAP), blocksize=256,
                                      dtype=torch.float32)
            mine = bnb_f.QuantState(absmax=torch.from_numpy(ours.absmax_q),
                                    shape=torch.Size(shape), dtype=torch.float32, blocksize=64,
                                    code=code4, quant_type="nf4",
                                    offset=torch.tensor(float(ours.absmax_offset[0])),
                                    state2=state2)
        theirs = bnb_f.dequantize_4bit(torch.from_numpy(ours.qweight).reshape(-1, 1), mine)
        np.testing.assert_array_equal(theirs.numpy(), ours.dequantize())


@pytest.mark.parametrize("orientation", ["out_in", "in_out"])
def test_nf4_linear_and_backward_equal_the_dequantized_weight(orientation, monkeypatch):
    """Row blocks that cut through a 64-block (45 inputs per row) give the same product."""
    monkeypatch.setattr(stored_nf4, "BLOCK_FLOATS", 90)                       # 2 rows per block
    rng = np.random.default_rng(1)
    W = rng.standard_normal((11, 45)).astype(np.float32)
    t = quantize_nf4(W, orientation=orientation).tensor
    W_hat = t.effective_out_in()                                       # (out, in)
    assert t.shape == ((45, 11) if orientation == "in_out" else (11, 45))
    np.testing.assert_array_equal(t.dequantize(), W_hat.T if orientation == "in_out" else W_hat)
    x = rng.standard_normal((2, 3, 45)).astype(np.float32)
    y = t.linear(x)
    assert y.dtype == np.float32 and y.shape == (2, 3, 11)
    np.testing.assert_allclose(y, x @ W_hat.T, rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal((2, 3, 11)).astype(np.float32)
    dx, grads = t.linear_backward(x, dy)
    assert grads == {} and dx.dtype == np.float32
    np.testing.assert_allclose(dx, dy @ W_hat, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def nf4_model():
    return quantize_model(minislm.load(TINY), "nf4", progress=False)


def test_nf4_model_saves_loads_and_runs(nf4_model, tmp_path):
    model, report = nf4_model
    float_model = minislm.load(TINY)
    qc = model.extra_config["quantization_config"]
    assert qc["method"] == "nf4" and qc["bits"] == 4 and qc["group_size"] == 64
    assert len(report) == 7 * model.config.n_layer and all(e["weight_mse"] > 0 for e in report)
    q = model.params["model.layers.0.mlp.down_proj.weight"]
    assert isinstance(q, NF4Tensor) and q.double_quant and q.shape == (128, 384)
    ids = np.array([[1, 5, 9, 200, 7]])
    logits = minislm.forward(model, ids)
    assert logits.dtype == np.float32
    assert 0 < np.abs(logits - minislm.forward(float_model, ids)).max() < 2
    out = minislm.save(model, tmp_path / "nf4")
    loaded = minislm.load(out)
    np.testing.assert_array_equal(minislm.forward(loaded, ids), logits)
    lq = loaded.params["model.layers.0.mlp.down_proj.weight"]
    assert isinstance(lq, NF4Tensor)
    np.testing.assert_array_equal(lq.absmax_q, q.absmax_q)
    size = (out / "model.safetensors").stat().st_size
    assert size < 0.7 * (TINY / "model.safetensors").stat().st_size


def test_nf4_checkpoint_with_a_missing_or_misshapen_part_is_refused(nf4_model, tmp_path):
    from minislm.checkpoint import read_safetensors, write_safetensors
    out = minislm.save(nf4_model[0], tmp_path / "nf4")
    tensors = dict(read_safetensors(out / "model.safetensors"))
    name = "model.layers.1.self_attn.k_proj.absmax_scale"
    write_safetensors(out / "model.safetensors", {k: v for k, v in tensors.items() if k != name})
    with pytest.raises(CheckpointError, match="absmax_scale' is missing"):
        minislm.load(out)
    tensors["model.layers.1.self_attn.k_proj.absmax_q"] = np.zeros(3, np.uint8)
    write_safetensors(out / "model.safetensors", tensors)
    with pytest.raises(CheckpointError, match=r"absmax_q' has shape \(3,\)"):
        minislm.load(out)


def test_qlora_over_nf4_equals_lora_over_its_dequantized_weights(nf4_model):
    """QLoRA: adapter gradients through the frozen NF4 linears equal LoRA's over the
    dense dequantized copy."""
    assert isinstance(next(v for v in nf4_model[0].params.values()
                           if not isinstance(v, np.ndarray)), NF4Tensor)
    assert_adapter_grads_equal_over_dense_copy(nf4_model[0], loss_atol=1e-4, rtol=1e-3)


def test_quantize_nf4_then_qlora_finetune_on_the_command_line(tmp_path, capsys):
    nf4_dir, adapter = tmp_path / "nf4", tmp_path / "adapter"
    assert main(["quantize", "--model", str(TINY), "--method", "nf4", "--out", str(nf4_dir)]) == 0
    qc = json.loads((nf4_dir / "config.json").read_text())["quantization_config"]
    assert qc["method"] == "nf4" and qc["group_size"] == 64 and qc["double_quant"] is True
    assert main(["finetune", "--model", str(nf4_dir), "--data", "toolcall", "--steps", "2",
                 "--batch-size", "2", "--max-len", "64", "--lora-rank", "2",
                 "--out", str(adapter)]) == 0
    assert (adapter / "adapter_model.safetensors").exists()
    assert main(["cost", "--model", str(nf4_dir), "--device", "siracusa"]) == 0
    assert "bits 4, group 64" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--bits", "3"], "no other --bits"), (["--group-size", "48"], "block size must be one of"),
    (["--eora-rank", "2"], "no EoRA")])
def test_quantize_nf4_bad_options_are_one_line_errors(extra, message, tmp_path, capsys):
    assert main(["quantize", "--model", str(TINY), "--method", "nf4", *extra,
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minislm: error:") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()
