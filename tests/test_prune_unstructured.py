"""Unstructured pruning: L1 magnitude (torch's masks), WANDA unstructured and N:M."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minislm
from minislm.errors import ConfigError
from minislm.model import families
from minislm.prune.magnitude import global_l1_masks, l1_unstructured_mask, magnitude_prune
from minislm.prune.masks import nm_mask, out_in, parse_nm, row_mask, zeros_per_group
from minislm.prune.wanda import wanda, wanda_mask, wanda_scores

from conftest import build_hf_model, hf_logits, save_hf_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("unstructured")
    # d_model 32, d_ff 64/48: every input dimension is a multiple of 16 for N:M
    return {f: minislm.load(save_hf_model(build_hf_model(f, n_layer=2, d_ff=64 if f == "gpt2"
                                                         else 48), root / f))
            for f in ("gpt2", "llama")}


def batches(n=4, T=12, V=101, seed=0):
    return np.random.default_rng(seed).integers(0, V, size=(n, T))


def snapshot(model):
    return {k: v.copy() for k, v in model.params.items()}


def assert_unchanged(model, before):
    assert sorted(model.params) == sorted(before)
    for k, v in before.items():
        np.testing.assert_array_equal(model.params[k], v)
    assert "masks" not in model.extra_tensors


# ------------------------------------------------------------- L1 magnitude vs torch
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 12), cols=st.integers(1, 12),
       amount=st.floats(0.0, 1.0))
def test_l1_mask_equals_torch(seed, rows, cols, amount):
    torch = pytest.importorskip("torch")
    prune = pytest.importorskip("torch.nn.utils.prune")
    W = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    layer = torch.nn.Linear(cols, rows, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W))
    prune.l1_unstructured(layer, "weight", amount=amount)
    np.testing.assert_array_equal(l1_unstructured_mask(W, amount),
                                  layer.weight_mask.numpy().astype(bool))


def test_global_l1_equals_torch(models):
    torch = pytest.importorskip("torch")
    prune = pytest.importorskip("torch.nn.utils.prune")
    model = models["llama"]
    linears = families.linear_layers(model.config, model.prefix)
    modules = []
    for lin in linears:
        m = torch.nn.Linear(lin.d_in, lin.d_out, bias=False)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(np.array(model.params[lin.name])))
        modules.append(m)
    prune.global_unstructured([(m, "weight") for m in modules],
                              pruning_method=prune.L1Unstructured, amount=0.37)
    pruned = magnitude_prune(model, 0.37, scope="global")
    masks = pruned.extra_tensors["masks"]
    for lin, m in zip(linears, modules):
        np.testing.assert_array_equal(masks[lin.name].astype(bool),
                                      m.weight_mask.numpy().astype(bool))
    total = sum(m.weight_mask.numel() for m in modules)
    zeros = sum(int((masks[n] == 0).sum()) for n in masks)
    assert zeros == round(0.37 * total)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_magnitude_per_layer(models, family):
    model = models[family]
    before = snapshot(model)
    pruned = magnitude_prune(model, 0.4)
    assert_unchanged(model, before)
    for lin in families.linear_layers(model.config, model.prefix):
        W, keep = pruned.params[lin.name], pruned.extra_tensors["masks"][lin.name]
        assert W.dtype == np.float32 and keep.dtype == np.uint8 and keep.shape == W.shape
        assert int((keep == 0).sum()) == round(0.4 * W.size)
        assert np.all(W[keep == 0] == 0)
        np.testing.assert_array_equal(W[keep == 1], model.params[lin.name][keep == 1])
        # the pruned weights are the smallest ones
        assert np.abs(model.params[lin.name][keep == 0]).max() <= \
            np.abs(model.params[lin.name][keep == 1]).min()
    # biases, norms and embeddings untouched
    for name in model.params:
        if name not in pruned.extra_tensors["masks"]:
            assert pruned.params[name] is model.params[name]
    with pytest.raises(ConfigError):
        magnitude_prune(model, 1.5)
    with pytest.raises(ConfigError):
        magnitude_prune(model, 0.5, scope="row")


def test_global_masks_split_back():
    rng = np.random.default_rng(1)
    weights = {"a": rng.standard_normal((3, 4)), "b": 10 * rng.standard_normal((5,))}
    masks = global_l1_masks(weights, 0.5)
    assert masks["a"].shape == (3, 4) and masks["b"].shape == (5,)
    assert (~masks["a"]).sum() + (~masks["b"]).sum() == round(0.5 * 17)
    assert (~masks["a"]).sum() > (~masks["b"]).sum()  # the small-valued tensor loses more


# ------------------------------------------------------------- WANDA
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), out=st.integers(1, 6), groups=st.integers(1, 4),
       nm=st.sampled_from([(1, 2), (2, 4), (3, 4), (1, 8), (4, 8), (6, 8), (8, 16), (12, 16)]),
       ties=st.booleans())
def test_nm_every_group_has_n_zeros(seed, out, groups, nm, ties):
    n, m = nm
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((out, groups * m)).astype(np.float32)
    if ties:  # repeated magnitudes and existing zeros must not break the pattern
        W = np.round(W)
    x_norm = np.abs(rng.standard_normal(groups * m)).astype(np.float32)
    keep = wanda_mask(W, x_norm, nm=(n, m))
    assert keep.shape == W.shape
    per_group = zeros_per_group(keep, m)
    assert per_group.shape == (out, groups)
    assert np.all(per_group == n)  # exactly N of every M pruned ("at least N zeros")
    S = wanda_scores(W, x_norm).reshape(out, groups, m)
    k = keep.reshape(out, groups, m)
    pruned_max = np.where(~k, S, -np.inf).max(-1)
    kept_min = np.where(k, S, np.inf).min(-1)
    assert np.all(pruned_max <= kept_min)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), out=st.integers(1, 6), d_in=st.integers(1, 20),
       sparsity=st.floats(0.0, 1.0))
def test_wanda_rows_lose_the_lowest_scores(seed, out, d_in, sparsity):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((out, d_in)).astype(np.float32)
    x_norm = np.abs(rng.standard_normal(d_in)).astype(np.float32)
    keep = wanda_mask(W, x_norm, sparsity=sparsity)
    assert np.all((~keep).sum(1) == int(d_in * sparsity))
    S = wanda_scores(W, x_norm)
    for i in range(out):
        if 0 < (~keep[i]).sum() < d_in:
            assert S[i][~keep[i]].max() <= S[i][keep[i]].min()


def test_wanda_scores_use_activations_not_only_magnitude():
    W = np.array([[1.0, 0.1]], dtype=np.float32)           # magnitude prunes column 1
    x_norm = np.array([0.01, 100.0], dtype=np.float32)     # but column 1 carries the signal
    assert wanda_mask(W, x_norm, sparsity=0.5).tolist() == [[False, True]]
    assert l1_unstructured_mask(W, 0.5).tolist() == [[True, False]]


def test_parse_nm_and_divisibility():
    assert parse_nm("2:4") == (2, 4) and parse_nm((1, 16)) == (1, 16)
    for bad in ("4:2", "2-4", "0:4", None):
        with pytest.raises(ConfigError):
            parse_nm(bad)
    with pytest.raises(ConfigError, match="multiple of M=4"):
        nm_mask(np.ones((2, 6)), 2, 4, name="x.weight")
    assert row_mask(np.arange(6.0).reshape(1, 6), 0.5).tolist() == [[0, 0, 0, 1, 1, 1]]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_wanda_model_block0_masks_from_dense_activations(models, family):
    """Block 0 sees dense inputs in both schedules: its masks follow from brute force."""
    model = models[family]
    before = snapshot(model)
    ids = batches()
    pruned = wanda(model, ids, sparsity=0.5)
    assert_unchanged(model, before)
    seen = {}
    minislm.forward(model, ids,
                    observer=lambda n, x: seen.setdefault(n, x.reshape(-1, x.shape[-1])))
    for lin in families.linear_layers(model.config, model.prefix):
        keep = pruned.extra_tensors["masks"][lin.name]
        W = out_in(model.params[lin.name], lin.orientation)
        k = out_in(keep, lin.orientation).astype(bool)
        assert np.all((~k).sum(1) == lin.d_in // 2)
        if lin.layer == 0 and lin.role not in ("o", "proj", "down"):
            x_norm = np.sqrt((seen[lin.name].astype(np.float64) ** 2).sum(0)).astype(np.float32)
            np.testing.assert_array_equal(k, wanda_mask(W, x_norm, sparsity=0.5))
    one_pass = wanda(model, ids, sparsity=0.5, sequential=False)
    last = families.linear_layers(model.config, model.prefix)[-1].name
    assert one_pass.extra_tensors["masks"][last].shape == pruned.extra_tensors["masks"][last].shape


@pytest.mark.parametrize("nm", ["2:4", "4:8", "8:16", "1:16"])
def test_wanda_nm_on_model(models, nm):
    n, m = parse_nm(nm)
    model = models["llama"]
    pruned = wanda(model, batches(), nm=nm)
    for lin in families.linear_layers(model.config, model.prefix):
        keep = out_in(pruned.extra_tensors["masks"][lin.name], lin.orientation)
        assert np.all(zeros_per_group(keep, m) >= n)
        W = out_in(pruned.params[lin.name], lin.orientation)
        assert np.all(zeros_per_group((W != 0).astype(np.uint8), m) >= n)
    with pytest.raises(ConfigError, match="exactly one"):
        wanda(model, batches(), sparsity=0.5, nm="2:4")


# ------------------------------------------------------------- HF round trip
@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "wanda_nm"])
def test_pruned_model_loads_in_transformers(models, tmp_path, family, method):
    transformers = pytest.importorskip("transformers")
    model = models[family]
    ids = batches(2, 9, seed=5)
    pruned = {"magnitude": lambda: magnitude_prune(model, 0.5, scope="global"),
              "wanda": lambda: wanda(model, batches(), sparsity=0.3),
              "wanda_nm": lambda: wanda(model, batches(), nm="2:4")}[method]()
    out = minislm.save(pruned, tmp_path / "pruned")
    assert (out / "masks.safetensors").exists()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    np.testing.assert_allclose(hf_logits(hf, ids), minislm.forward(pruned, ids),
                               rtol=1e-4, atol=1e-4)
    back = minislm.load(out)
    for name, keep in pruned.extra_tensors["masks"].items():
        np.testing.assert_array_equal(back.extra_tensors["masks"][name], keep)
        np.testing.assert_array_equal(back.params[name], pruned.params[name])


def test_magnitude_nm(models):
    model = models["gpt2"]
    pruned = magnitude_prune(model, nm="2:4")
    for lin in families.linear_layers(model.config, model.prefix):
        keep = out_in(pruned.extra_tensors["masks"][lin.name], lin.orientation)
        assert np.all(zeros_per_group(keep, 4) == 2)
        W = out_in(model.params[lin.name], lin.orientation)
        groups = np.abs(W).reshape(W.shape[0], -1, 4)
        k = keep.reshape(groups.shape).astype(bool)
        assert np.all(np.where(~k, groups, -1).max(-1) <= np.where(k, groups, np.inf).min(-1))
    with pytest.raises(ConfigError):
        magnitude_prune(model)
