"""LoRA: the layer's hand-written backward, merge/unmerge, PEFT files and gradients vs autograd."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minislm
from minislm.adapt import lora
from minislm.errors import CheckpointError, ConfigError

from conftest import build_hf_model, hf_logits, save_hf_model


def random_lora(rng, d_in, d_out, r, orientation, dropout=0.0, dtype=np.float64):
    shape = (d_in, d_out) if orientation == "in_out" else (d_out, d_in)
    W0 = rng.normal(size=shape).astype(dtype)
    A = rng.normal(size=(r, d_in)).astype(dtype)
    B = rng.normal(size=(d_out, r)).astype(dtype)
    return lora.LoraLinear(W0, A, B, alpha=2.0 * r, dropout=dropout,
                           fan_in_fan_out=orientation == "in_out",
                           dropout_seed=(7, 1) if dropout else None)


@settings(max_examples=20, deadline=None)
@given(d_in=st.integers(1, 6), d_out=st.integers(1, 6), r=st.integers(1, 3),
       orientation=st.sampled_from(["in_out", "out_in"]), dropout=st.sampled_from([0.0, 0.3]),
       seed=st.integers(0, 2**16))
def test_lora_linear_backward_matches_finite_differences(d_in, d_out, r, orientation, dropout,
                                                         seed):
    rng = np.random.default_rng(seed)
    w = random_lora(rng, d_in, d_out, r, orientation, dropout)
    x = rng.normal(size=(2, 3, d_in))
    g = rng.normal(size=(2, 3, d_out))          # L = Σ g ⊙ y, so ∂L/∂y = g

    def loss(w, x):
        return float((w.linear(x) * g).sum())

    dx, grads = w.linear_backward(x, g)
    eps = 1e-6
    for name, arr, analytic in (("x", x, dx), ("A", w.A, grads["lora_A"]),
                                ("B", w.B, grads["lora_B"])):
        numeric = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += eps
            minus[idx] -= eps
            if name == "x":
                numeric[idx] = (loss(w, plus) - loss(w, minus)) / (2 * eps)
            else:
                numeric[idx] = (loss(w.replace(**{name: plus}), x)
                                - loss(w.replace(**{name: minus}), x)) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_dropout_is_inverted_and_reproducible():
    rng = np.random.default_rng(0)
    w = random_lora(rng, 64, 8, 2, "out_in", dropout=0.25, dtype=np.float32)
    x = np.ones((4, 64), dtype=np.float32)
    keep = w._keep(x)
    assert keep.dtype == np.float32
    assert set(np.unique(keep)) <= {0.0, np.float32(1 / 0.75)}
    assert abs(float((keep > 0).mean()) - 0.75) < 0.1
    np.testing.assert_array_equal(w.linear(x), w.linear(x))        # same seed, same mask
    assert w.replace(dropout_seed=None)._keep(x) is None           # inference: no dropout


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    return {family: save_hf_model(build_hf_model(family), root / family)
            for family in ("gpt2", "llama")}


def with_random_b(model, seed=0, scale=0.1):
    """B = 0 at init makes the adapter invisible; give it values to test anything."""
    rng = np.random.default_rng(seed)
    t = {k: v if k.endswith("lora_A") else (scale * rng.normal(size=v.shape)).astype(v.dtype)
         for k, v in lora.trainable(model).items()}
    return lora.with_trainable(model, t)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_init_is_identity_merge_and_unmerge(checkpoints, family):
    m = minislm.load(checkpoints[family])
    ids = np.arange(12).reshape(2, 6)
    lm = lora.add_lora(m, rank=4, alpha=8, dropout=0.1, targets=None, seed=3)
    assert len(lora.lora_weights(lm)) == m.config.n_layer * (1 if family == "gpt2" else 2)
    assert not any(isinstance(v, lora.LoraLinear) for v in m.params.values())  # input untouched
    np.testing.assert_array_equal(minislm.forward(lm, ids), minislm.forward(m, ids))
    lm = with_random_b(lm)
    y = minislm.forward(lm, ids)
    assert y.dtype == np.float32
    assert np.abs(y - minislm.forward(m, ids)).max() > 1e-3
    merged = lora.merge(lm)
    assert all(isinstance(v, np.ndarray) for v in merged.params.values())
    np.testing.assert_allclose(minislm.forward(merged, ids), y, atol=2e-5)
    back = lora.unmerge(merged, lm)
    for name, w in lora.lora_weights(back).items():
        np.testing.assert_allclose(w.base, m.params[name], atol=1e-6)
    np.testing.assert_allclose(minislm.forward(back, ids), y, atol=2e-5)


def test_kaiming_init_bounds():
    A = lora.kaiming_uniform_a(np.random.default_rng(0), 8, 100, np.float32)
    assert A.dtype == np.float32 and A.shape == (8, 100)
    assert np.abs(A).max() <= 0.1 and np.abs(A).max() > 0.09    # U(−1/√100, 1/√100)


@pytest.mark.parametrize("family,targets", [("gpt2", None), ("gpt2", ["attn.c_proj", "c_fc"]),
                                            ("llama", ["q_proj", "v_proj", "down_proj"])])
def test_peft_loads_our_adapter_with_equal_logits(checkpoints, tmp_path, family, targets):
    peft = pytest.importorskip("peft")
    m = minislm.load(checkpoints[family])
    lm = with_random_b(lora.add_lora(m, rank=4, alpha=8, targets=targets, seed=1))
    folder = lora.save_adapter(lm, tmp_path / "adapter")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["fan_in_fan_out"] == (family == "gpt2")
    ref_model = peft.PeftModel.from_pretrained(build_hf_model(family), str(folder)).eval()
    ids = np.random.default_rng(0).integers(0, m.config.vocab_size, size=(2, 9))
    np.testing.assert_allclose(minislm.forward(lm, ids), hf_logits(ref_model, ids), atol=1e-5)
    again = lora.load_adapter(m, folder)
    np.testing.assert_array_equal(minislm.forward(again, ids), minislm.forward(lm, ids))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_adapter_gradients_match_peft_autograd(checkpoints, family):
    """Full-model LoRA gradients (hand-written backward) against torch autograd on PEFT."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from minislm.train.backward import loss_and_grads
    m = minislm.load(checkpoints[family], dtype=np.float64)
    targets = ["c_attn", "mlp.c_proj"] if family == "gpt2" else ["q_proj", "v_proj", "up_proj"]
    lm = with_random_b(lora.add_lora(m, rank=3, alpha=6, targets=targets, seed=2))
    rng = np.random.default_rng(1)
    ids = rng.integers(0, m.config.vocab_size, size=(2, 7))
    labels = ids.copy()
    labels[:, :2] = -100
    loss, grads = loss_and_grads(lm, ids, labels, trainable=lambda name: False)
    ref = build_hf_model(family, dtype=torch.float64)
    cfg = peft.LoraConfig(r=3, lora_alpha=6, target_modules=targets, lora_dropout=0.0,
                          fan_in_fan_out=family == "gpt2")
    pm = peft.get_peft_model(ref, cfg).double()   # PEFT creates float32 adapters
    with torch.no_grad():
        for name, w in lora.lora_weights(lm).items():
            path = lora.module_path(m.config, m.prefix, name)
            module = pm.base_model.model.get_submodule(path)
            module.lora_A["default"].weight.copy_(torch.from_numpy(w.A))
            module.lora_B["default"].weight.copy_(torch.from_numpy(w.B))
    logits = pm(torch.from_numpy(ids)).logits    # transformers' own loss casts to float32
    ref_loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 torch.from_numpy(labels[:, 1:]).reshape(-1))
    ref_loss.backward()
    assert abs(loss - ref_loss.item()) < 1e-7 * abs(loss)   # RoPE tables are float32 in both
    assert set(grads) == set(lora.lora_weights(lm))
    for name in lora.lora_weights(lm):
        module = pm.base_model.model.get_submodule(lora.module_path(m.config, m.prefix, name))
        for part in ("lora_A", "lora_B"):
            expected = getattr(module, part)["default"].weight.grad.numpy()
            # float32 RoPE tables (NumPy's and torch's cos differ in the last bit) limit
            # the LLaMA agreement to ~1e-7 of the gradient's scale; GPT-2 agrees to ~1e-15
            np.testing.assert_allclose(grads[name][part], expected, rtol=1e-6,
                                       atol=1e-6 * np.abs(expected).max(), err_msg=f"{name}.{part}")


def test_bad_targets_and_bad_adapter_files(checkpoints, tmp_path):
    m = minislm.load(checkpoints["gpt2"])
    with pytest.raises(ConfigError, match="c_attn"):
        lora.add_lora(m, targets=["q_proj"])
    with pytest.raises(ConfigError, match="rank"):
        lora.add_lora(m, rank=0)
    with pytest.raises(CheckpointError, match="adapter_config.json"):
        lora.load_adapter(m, tmp_path)
    lm = lora.add_lora(minislm.load(checkpoints["llama"]), rank=2)
    folder = lora.save_adapter(lm, tmp_path / "llama_adapter")
    with pytest.raises(CheckpointError, match="lora_A"):
        lora.load_adapter(m, folder)            # a LLaMA adapter on a GPT-2 model
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "lora_alpha": math.nan}))
    with pytest.raises(CheckpointError, match="lora_alpha must be a finite"):
        lora.load_adapter(minislm.load(checkpoints["llama"]), folder)   # json reads NaN


def test_qlora_trains_over_a_quantized_base(checkpoints):
    """QLoRA: the frozen base is a quantized tensor (dequantized on the fly); the adapter
    forward and gradients equal LoRA over the dense dequantized weights. Every quantized
    linear is a target: a bare quantized weight has no backward to pass gradients through."""
    from minislm.quant.model_quant import quantize_model
    from minislm.train.backward import loss_and_grads
    m = minislm.load(checkpoints["gpt2"])
    q, _ = quantize_model(m, "rtn", bits=4, group_size=16, progress=False)
    ql = with_random_b(lora.add_lora(q, rank=4, alpha=8, targets=["c_attn", "c_proj", "c_fc"],
                                         seed=5))
    dense = ql.replace(params={name: (w.replace(base=w.base.dequantize())
                                      if isinstance(w, lora.LoraLinear) else
                                      (w if isinstance(w, np.ndarray) else w.dequantize()))
                               for name, w in ql.params.items()})
    ids = np.random.default_rng(0).integers(0, m.config.vocab_size, size=(2, 8))
    np.testing.assert_allclose(minislm.forward(ql, ids), minislm.forward(dense, ids), atol=1e-5)
    frozen = lambda name: False  # noqa: E731
    loss_q, grads_q = loss_and_grads(ql, ids, ids, trainable=frozen)
    loss_d, grads_d = loss_and_grads(dense, ids, ids, trainable=frozen)
    assert abs(loss_q - loss_d) < 1e-5
    for name in lora.lora_weights(ql):
        for part in ("lora_A", "lora_B"):
            np.testing.assert_allclose(grads_q[name][part], grads_d[name][part], atol=1e-5)
    merged = lora.merge(ql)
    assert isinstance(merged.params[next(iter(lora.lora_weights(ql)))], np.ndarray)
    np.testing.assert_allclose(minislm.forward(merged, ids), minislm.forward(ql, ids), atol=1e-5)
