"""Gradient checks: every layer against central finite differences (float64), then the
whole model against torch autograd on transformers' model with the same weights.

A layer y = f(x, θ) is checked through the scalar L = Σ y ⊙ R for a fixed random
R, so ∂L/∂y = R is the `dy` handed to the backward.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minislm
from minislm.errors import InputError
from minislm.model import layers as fwd
from minislm.model import layers as lb
from minislm.train.backward import loss_and_grads, model_forward
from minislm.train.loss import cross_entropy_backward, cross_entropy_forward

from conftest import build_hf_model, save_hf_model

FAST = settings(max_examples=8, deadline=None)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def numerical_grad(f, x, h=1e-6):
    """Central differences ∂f/∂x for a scalar f of the array x (perturbed in place, restored)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return g


def check_layer(forward, inputs, backward, seed=0, tol=1e-6):
    """forward(*inputs) -> (y, cache); backward(R, cache) -> grads of inputs (None to skip)."""
    rng = np.random.default_rng(seed)
    y, cache = forward(*inputs)
    R = rng.standard_normal(y.shape)
    grads = backward(R, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for x, g in zip(inputs, grads):
        if g is None:
            continue
        num = numerical_grad(lambda: float((forward(*inputs)[0] * R).sum()), x)
        assert g.shape == x.shape and g.dtype == np.float64
        assert rel_err(g, num) <= tol, rel_err(g, num)


dims = st.integers(1, 4)


@FAST
@given(B=dims, T=dims, d_in=dims, d_out=dims, bias=st.booleans(),
       orientation=st.sampled_from(["out_in", "in_out"]), seed=st.integers(0, 99))
def test_linear(B, T, d_in, d_out, bias, orientation, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, d_in))
    W = rng.standard_normal((d_out, d_in) if orientation == "out_in" else (d_in, d_out))
    b = rng.standard_normal(d_out) if bias else None
    inputs = (x, W, b) if bias else (x, W)
    check_layer(lambda x, W, b=None: lb.linear_forward(x, W, b, orientation), inputs,
                lambda dy, c: lb.linear_backward(dy, c)[:len(inputs)], seed)
    y, _ = lb.linear_forward(x, W, b, orientation)
    np.testing.assert_allclose(y, fwd.linear(x, W, b, orientation), rtol=1e-12)


@FAST
@given(B=dims, T=dims, V=st.integers(1, 6), C=dims, seed=st.integers(0, 99))
def test_embedding(B, T, V, C, seed):
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((V, C))
    ids = rng.integers(0, V, (B, T))   # repeated ids: their gradients must add up
    check_layer(lambda E: lb.embedding_forward(E, ids), (E,), lb.embedding_backward, seed)


@FAST
@given(shape=st.lists(dims, min_size=1, max_size=2), C=st.integers(3, 6),
       seed=st.integers(0, 99))
def test_layer_norm(shape, C, seed):
    # C ≥ 3: with two channels x̂ = ±1 whatever x is, and dx is ε-sized FD noise
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*shape, C)) * 2 + 0.5
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    check_layer(lambda x, w, b: lb.layer_norm_forward(x, w, b, 1e-5), (x, w, b),
                lb.layer_norm_backward, seed)
    np.testing.assert_allclose(lb.layer_norm_forward(x, w, b, 1e-5)[0],
                               fwd.layer_norm(x, w, b, 1e-5), rtol=1e-10, atol=1e-12)


@FAST
@given(shape=st.lists(dims, min_size=1, max_size=2), C=st.integers(2, 6),
       seed=st.integers(0, 99))
def test_rms_norm(shape, C, seed):
    # C ≥ 2: with one channel x̂ = ±1 whatever x is, and dx is ε-sized FD noise
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*shape, C))
    w = rng.standard_normal(C)
    check_layer(lambda x, w: lb.rms_norm_forward(x, w, 1e-6), (x, w), lb.rms_norm_backward, seed)
    np.testing.assert_allclose(lb.rms_norm_forward(x, w, 1e-6)[0], fwd.rms_norm(x, w, 1e-6),
                               rtol=1e-12)


@FAST
@given(shape=st.lists(dims, min_size=1, max_size=3), seed=st.integers(0, 99))
def test_activations(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    check_layer(lb.gelu_tanh_forward, (x,), lb.gelu_tanh_backward, seed)
    check_layer(lb.silu_forward, (x,), lb.silu_backward, seed)
    u = rng.standard_normal(shape)
    check_layer(lb.swiglu_forward, (x, u), lb.swiglu_backward, seed)
    np.testing.assert_allclose(lb.gelu_tanh_forward(x)[0], fwd.gelu_tanh(x), rtol=1e-12)
    np.testing.assert_allclose(lb.silu_forward(x)[0], fwd.silu(x), rtol=1e-12)


@FAST
@given(B=dims, heads=dims, T=dims, half=st.integers(1, 3), seed=st.integers(0, 99))
def test_rope(B, heads, T, half, seed):
    rng = np.random.default_rng(seed)
    D = 2 * half
    x = rng.standard_normal((B, heads, T, D))
    inv_freq = fwd.rope_inv_freq(D, 10000.0, None)
    cos, sin = fwd.rope_tables(np.arange(T) + 3, inv_freq, np.float64)
    check_layer(lambda x: lb.rope_forward(x, cos, sin), (x,), lb.rope_backward, seed)


@FAST
@given(B=st.integers(1, 2), K=st.integers(1, 2), G=st.integers(1, 3), T=st.integers(1, 5),
       D=st.integers(1, 4), seed=st.integers(0, 99))
def test_attention(B, K, G, T, D, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, K * G, T, D))
    k, v = rng.standard_normal((2, B, K, T, D))
    check_layer(lb.attention_forward, (q, k, v), lb.attention_backward, seed)
    np.testing.assert_allclose(lb.attention_forward(q, k, v)[0], fwd.attention(q, k, v),
                               rtol=1e-10, atol=1e-12)


@FAST
@given(B=dims, T=st.integers(2, 5), V=st.integers(1, 7), seed=st.integers(0, 99))
def test_cross_entropy(B, T, V, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((B, T, V)) * 2
    labels = rng.integers(0, V, (B, T))
    labels[rng.random((B, T)) < 0.3] = -100
    labels[0, 1] = 0  # at least one counted token
    loss, cache = cross_entropy_forward(z, labels)
    num = numerical_grad(lambda: cross_entropy_forward(z, labels)[0], z)
    dz = cross_entropy_backward(cache)
    assert rel_err(dz, num) <= 1e-6
    assert np.all(dz[:, -1] == 0)
    # the definition: mean over counted (t, t+1) pairs of −log softmax
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    pairs = [(b, t) for b in range(B) for t in range(T - 1) if labels[b, t + 1] != -100]
    expected = -np.mean([logp[b, t, labels[b, t + 1]] for b, t in pairs])
    assert math.isclose(loss, expected, rel_tol=1e-12, abs_tol=1e-14)


def test_cross_entropy_refuses_no_counted_token():
    with pytest.raises(InputError, match="count no token"):
        cross_entropy_forward(np.zeros((1, 3, 4)), np.array([[1, -100, -100]]))
    with pytest.raises(InputError, match=r"labels must lie in \[0, 4\)"):
        cross_entropy_forward(np.zeros((1, 3, 4)), np.array([[1, 2, 9]]))


# --------------------------------------------------------- whole model vs torch
@pytest.fixture(scope="module")
def torch_float64_norms():
    """transformers' LlamaRMSNorm computes in float32 even for a float64 model; make the
    reference compute in the model's dtype so the check can be tight."""
    torch = pytest.importorskip("torch")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    original = llama.LlamaRMSNorm.forward

    def forward(self, hidden_states):
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

    llama.LlamaRMSNorm.forward = forward
    yield torch
    llama.LlamaRMSNorm.forward = original


def torch_loss_and_grads(torch, hf, ids, labels):
    """Reference: cross-entropy in float64 (transformers' own loss upcasts to float32 only)."""
    hf.zero_grad()
    logits = hf(torch.tensor(ids)).logits
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), torch.tensor(labels)[:, 1:].reshape(-1),
        ignore_index=-100)
    loss.backward()
    return loss.item(), {n: p.grad.numpy() for n, p in hf.named_parameters()}


model_configs = st.fixed_dictionaries({
    "family": st.sampled_from(["gpt2", "llama"]),
    "n_layer": st.integers(1, 2),
    "K": st.integers(1, 2), "G": st.integers(1, 3), "D": st.sampled_from([2, 4, 8]),
    "tied": st.booleans(), "B": st.integers(1, 2), "T": st.integers(2, 7),
    "seed": st.integers(0, 999)})


@settings(max_examples=12, deadline=None)
@given(cfg=model_configs)
def test_value_and_grad_matches_torch(torch_float64_norms, tmp_path_factory, cfg):
    torch = torch_float64_norms
    H = cfg["K"] * cfg["G"]
    kw = dict(n_layer=cfg["n_layer"], n_head=H, d_model=H * cfg["D"], vocab_size=37,
              max_position=16, d_ff=24)
    if cfg["family"] == "llama":
        kw.update(n_kv_head=cfg["K"], tied=cfg["tied"], head_dim=cfg["D"])
    hf = build_hf_model(cfg["family"], seed=cfg["seed"], dtype=torch.float64, **kw)
    folder = save_hf_model(hf, tmp_path_factory.mktemp("vg"))
    model = minislm.load(folder, dtype=np.float64)
    rng = np.random.default_rng(cfg["seed"])
    ids = rng.integers(0, 37, (cfg["B"], cfg["T"]))
    labels = ids.copy()
    labels[rng.random(ids.shape) < 0.25] = -100
    labels[0, 1] = ids[0, 1]
    loss, grads = minislm.value_and_grad(model, ids, labels)
    ref_loss, ref = torch_loss_and_grads(torch, hf, ids, labels)
    assert math.isclose(loss, ref_loss, rel_tol=1e-10)
    assert list(grads) == list(model.params)
    for name, g in grads.items():
        assert g.shape == model.params[name].shape and g.dtype == np.float64
        r = ref[name if name in ref else "transformer." + name]
        if cfg["family"] == "gpt2" or g.shape != r.shape:
            r = r.reshape(g.shape) if r.shape == g.shape else r.T
        assert rel_err(g, r) <= 1e-5, f"{name}: relative error {rel_err(g, r):.2e}"


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_float32_grads_stay_float32(tiny_checkpoints, family):
    model = minislm.load(tiny_checkpoints[family])
    ids = np.arange(6)[None] % model.config.vocab_size
    loss, grads = minislm.value_and_grad(model, ids, ids)
    assert isinstance(loss, float) and math.isfinite(loss)
    assert all(g.dtype == np.float32 for g in grads.values())
    logits, _ = model_forward(model, ids)
    np.testing.assert_allclose(logits, minislm.forward(model, ids), rtol=1e-5, atol=1e-5)


# --------------------------------------------- the lower level others build on
class ToyLoRA:
    """A weight object as the adaptation code builds them: y = x W₀ᵀ + x Aᵀ Bᵀ (out_in)."""

    def __init__(self, W0, A, B):
        self.W0, self.A, self.B = W0, A, B
        self.shape = W0.shape

    def linear(self, x):
        return x @ self.W0.T + (x @ self.A.T) @ self.B.T

    def linear_backward(self, x, dy):
        xa = x @ self.A.T                                    # [..., r]
        dxa = dy @ self.B                                    # [..., r]
        dx = dy @ self.W0 + dxa @ self.A
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        return dx, {"A": dxa.reshape(-1, dxa.shape[-1]).T @ x2,
                    "B": dy2.T @ xa.reshape(-1, xa.shape[-1])}


def test_weight_objects_trainable_and_dlogits_fn(tiny_checkpoints):
    model = minislm.load(tiny_checkpoints["llama"], dtype=np.float64)
    rng = np.random.default_rng(0)
    name = "model.layers.1.self_attn.v_proj.weight"
    W0 = model.params[name]
    lora = ToyLoRA(W0, rng.standard_normal((2, W0.shape[1])) * 0.1,
                   rng.standard_normal((W0.shape[0], 2)) * 0.1)
    wrapped = model.replace(params={**model.params, name: lora})
    ids = rng.integers(0, model.config.vocab_size, (2, 5))

    def ce(logits):  # cross-entropy supplied from outside, as distillation does with its KL
        loss, cache = cross_entropy_forward(logits, ids)
        return loss, cross_entropy_backward(cache)

    loss, grads = loss_and_grads(wrapped, ids, dlogits_fn=ce, trainable=())
    assert set(grads) == {name} and set(grads[name]) == {"A", "B"}
    for key in ("A", "B"):
        num = numerical_grad(lambda: loss_and_grads(wrapped, ids, ids, trainable=())[0],
                             getattr(lora, key))
        assert rel_err(grads[name][key], num) <= 1e-6

    # merged weights give the same loss; trainable selects which gradients are made
    merged = model.replace(params={**model.params, name: W0 + lora.B @ lora.A})
    full_loss, full = minislm.value_and_grad(merged, ids, ids)
    assert math.isclose(loss, full_loss, rel_tol=1e-12)
    some = ["model.norm.weight", "model.layers.0.mlp.up_proj.weight"]
    part_loss, part = loss_and_grads(merged, ids, ids, trainable=some)
    assert set(part) == set(some)
    for key in some:
        np.testing.assert_allclose(part[key], full[key], rtol=1e-12)
    with pytest.raises(InputError, match="exactly one"):
        loss_and_grads(model, ids)


def test_repeated_layers_sum_their_gradients(tiny_checkpoints):
    model = minislm.load(tiny_checkpoints["gpt2"], dtype=np.float64)
    ids = np.array([[3, 1, 4, 1, 5]])
    name = model.prefix + "h.1.mlp.c_fc.bias"
    loss, grads = loss_and_grads(model, ids, ids, layers=[0, 1, 1])
    b = model.params[name]
    num = numerical_grad(lambda: loss_and_grads(model, ids, ids, layers=[0, 1, 1])[0], b)
    assert rel_err(grads[name], num) <= 1e-6
