"""Every technique on a tiny Gemma 3: one KV head (MQA), head_dim 16 ≠ hidden / heads = 8,
sliding windows shorter than the calibration windows. Each test checks what the technique
promises (LoRA gradients = finite differences, the sparsity pattern, quantization error
bounds, exact depth pruning, a trimmed checkpoint transformers runs alike, the cost model's
parameter count), not only that it runs."""
from __future__ import annotations

import numpy as np
import pytest

import minislm
from minislm.model import families
from minislm.model.quantized import QuantizedTensor

from conftest import build_hf_model, hf_logits, save_hf_model

torch = pytest.importorskip("torch")
KW = dict(n_layer=3, n_head=4, n_kv_head=1, head_dim=16, d_model=32, d_ff=48, vocab_size=61,
          sliding_window=4, layer_types=["sliding_attention", "full_attention",
                                         "sliding_attention"])


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """(transformers model, folder, minislm model) of the tiny Gemma 3."""
    hf = build_hf_model("gemma3", seed=3, **KW)
    folder = save_hf_model(hf, tmp_path_factory.mktemp("gemma3"))
    return hf, folder, minislm.load(folder)


@pytest.fixture(scope="module")
def calib():
    return np.random.default_rng(0).integers(0, KW["vocab_size"], (8, 12))      # [N, T]


def _block_weights(model):
    return {lin.name: lin for lin in families.linear_layers(model.config, model.prefix)}


def test_lora_gradients_equal_finite_differences(gemma):
    from minislm.adapt import lora
    from minislm.train.backward import loss_and_grads
    _, folder, _ = gemma
    model = minislm.load(folder, dtype=np.float64)
    adapted = lora.add_lora(model, rank=2, seed=1)
    names = sorted(lora.lora_weights(adapted))
    assert [n.split(".")[-2] for n in names] == ["q_proj", "v_proj"] * 3   # PEFT's defaults
    rng = np.random.default_rng(2)
    tensors = {k: rng.standard_normal(v.shape) * 0.3 for k, v in lora.trainable(adapted).items()}
    adapted = lora.with_trainable(adapted, tensors)
    ids = np.random.default_rng(4).integers(1, KW["vocab_size"], (2, 9))
    loss, grads = loss_and_grads(adapted, ids, ids, trainable=set())
    h = 1e-6
    for name in (names[0], names[-1]):
        for part, key in (("lora_A", "A"), ("lora_B", "B")):
            g = grads[name][part]
            idx = tuple(int(rng.integers(0, s)) for s in g.shape)
            plus, minus = ({**tensors}, {**tensors})
            for table, sign in ((plus, 1), (minus, -1)):
                t = tensors[f"{name}.{part}"].copy()
                t[idx] += sign * h
                table[f"{name}.{part}"] = t
            numeric = (loss_and_grads(lora.with_trainable(adapted, plus), ids, ids)[0]
                       - loss_and_grads(lora.with_trainable(adapted, minus), ids, ids)[0]) / (2 * h)
            assert abs(g[idx] - numeric) <= 1e-5 * max(1.0, abs(numeric)), (name, part)


def test_depth_pruning_is_exact_and_keeps_the_layer_types(gemma):
    from minislm.prune.depth import remove_layers
    _, _, model = gemma
    pruned = remove_layers(model, [1])
    assert pruned.config.n_layer == 2
    assert pruned.config.layer_types == ("sliding_attention", "sliding_attention")
    ids = np.random.default_rng(5).integers(0, KW["vocab_size"], (2, 10))
    np.testing.assert_array_equal(minislm.forward(pruned, ids),
                                  minislm.forward(model, ids, layers=[0, 2]))


def test_width_trimming_gives_a_checkpoint_transformers_runs_alike(gemma, calib, tmp_path):
    """Trim heads 4 → 2 (one KV head kept), MLP 48 → 24, hidden 32 → 24: the result is a
    Gemma 3 whose q_norm/k_norm (over head_dim) are untouched; transformers loads it and
    computes the same logits. Keeping every size changes nothing."""
    import transformers
    from minislm.prune.width import width_trim
    _, _, model = gemma
    same = width_trim(model, calib, heads=4, ffn=48, hidden=32)
    ids = calib[:2]
    np.testing.assert_allclose(minislm.forward(same, ids), minislm.forward(model, ids),
                               atol=1e-6, rtol=0)
    small = width_trim(model, calib, heads=2, ffn=24, hidden=24)
    cfg = small.config
    assert (cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.d_ff, cfg.d_model) == (2, 1, 16, 24, 24)
    p = "model.layers.0."
    assert small.params[p + "self_attn.q_proj.weight"].shape == (32, 24)
    assert small.params[p + "self_attn.k_norm.weight"].shape == (16,)
    assert small.params[p + "post_feedforward_layernorm.weight"].shape == (24,)
    minislm.save(small, tmp_path / "small")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "small").eval()
    np.testing.assert_allclose(minislm.forward(small, ids), hf_logits(hf, ids), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_unstructured_and_nm_sparsity_patterns(gemma, calib, method):
    from minislm.prune.magnitude import magnitude_prune
    from minislm.prune.sparsegpt import sparsegpt
    from minislm.prune.wanda import wanda
    _, _, model = gemma
    run = {"magnitude": lambda **kw: magnitude_prune(model, **kw),
           "wanda": lambda **kw: wanda(model, calib, **kw),
           "sparsegpt": lambda **kw: sparsegpt(model, calib, **kw)}[method]
    half = run(sparsity=0.5)
    nm = run(nm="2:4")
    for name, lin in _block_weights(model).items():
        W = half.params[name]                                         # (out, in)
        assert W.shape == model.params[name].shape
        if method == "wanda":                                         # per output row
            assert np.all((W == 0).sum(1) == lin.d_in // 2), name
        else:                                  # per layer (SparseGPT: per column block)
            assert (W == 0).sum() == W.size // 2, name
        groups = (nm.params[name] == 0).reshape(lin.d_out, lin.d_in // 4, 4).sum(-1)
        assert np.all(groups >= 2), name                             # 2 of every 4 inputs
    ids = calib[:2]
    assert np.isfinite(minislm.forward(half, ids)).all()


def test_rtn_error_is_at_most_half_a_step(gemma):
    from minislm.quant.model_quant import quantize_model
    _, _, model = gemma
    q, _ = quantize_model(model, method="rtn", bits=4, group_size=16, progress=False)
    for name in _block_weights(model):
        t = q.params[name]
        assert isinstance(t, QuantizedTensor)
        W = model.params[name]
        step = np.repeat(t.scales.astype(np.float32), 16, axis=1)       # [out, in]
        assert np.all(np.abs(t.dequantize() - W) <= step / 2 + 1e-6), name


def test_gptq_awq_and_eora_lower_the_calibration_error(gemma, calib):
    """GPTQ's and AWQ's output error on the calibration inputs is below plain RTN's on the
    same grid (summed over layers); EoRA's rank-4 term lowers every layer's error."""
    from minislm.quant.model_quant import quantize_model
    _, _, model = gemma
    for method in ("gptq", "awq"):
        q, report = quantize_model(model, method=method, bits=3, group_size=16,
                                   calib_ids=calib, progress=False)
        assert len(report) == len(_block_weights(model))
        assert sum(r["error"] for r in report) < sum(r["error_rtn"] for r in report), method
        assert all(isinstance(q.params[r["name"]], QuantizedTensor) for r in report)
    q, report = quantize_model(model, method="rtn", bits=3, group_size=16, eora_rank=4,
                               calib_ids=calib, progress=False)
    assert all(r["error"] < r["error_before_eora"] for r in report)


def test_cost_model_counts_the_gemma_parameters_and_windows(gemma):
    """parameter_count = the checkpoint's parameters (four norms per block, QK-norm, tied
    head); a sliding layer's attention reads at most `window` keys."""
    from minislm.hardware.cost import estimate
    from minislm.hardware.workload import WeightFormat, step_ops
    from minislm.resources import parameter_count
    _, _, model = gemma
    assert parameter_count(model.config) == model.num_params()
    ops = step_ops(model.config, WeightFormat(), n=1, p=30, act_bytes=4)
    scores = {op.layer: op for op in ops if op.name == "attn_scores"}
    H, D = model.config.n_head, model.config.head_dim
    assert scores["block 0"].macs == H * D * 4            # the window: 4 keys
    assert scores["block 1"].macs == H * D * 31           # full attention: all 31 keys
    assert {op.name for op in ops if op.layer == "block 0"} >= {"qk_norm", "norm_attn_out",
                                                                 "norm_mlp_out"}
    r = estimate(model.config, "siracusa", context=30)
    assert r["fits"] and r["tokens_per_s"] > 0


def test_a_fresh_gemma_starts_with_unit_norm_gains(gemma):
    """init_model stores Gemma's norm weights as w = 0 (the gain is 1 + w), as transformers'
    own initialisation does, not as 1 (a gain of 2)."""
    from minislm.train.init import init_model
    hf, _, model = gemma
    fresh = init_model(model.config, seed=0)
    reference = type(hf)(hf.config).state_dict()                 # transformers' fresh init
    norms = [n for n, p in reference.items() if p.ndim == 1 and "norm" in n]
    assert norms
    for name in norms:
        np.testing.assert_array_equal(fresh.params[name], reference[name].numpy(), err_msg=name)
        assert fresh.params[name].dtype == np.float32
