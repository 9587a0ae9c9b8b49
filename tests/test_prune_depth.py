"""Depth pruning: the four block-importance metrics, protection, renumbering, Franken layers."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minislm
from minislm.errors import ConfigError
from minislm.model import families
from minislm.prune import depth
from minislm.prune.magnitude import magnitude_prune

from conftest import build_hf_model, hf_logits, save_hf_model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth")
    return {f: save_hf_model(build_hf_model(f, n_layer=4, seed=3), root / f)
            for f in ("gpt2", "llama")}


@pytest.fixture(scope="module")
def models(checkpoints):
    return {f: minislm.load(p) for f, p in checkpoints.items()}


def calib(n=3, T=10, seed=0):
    return np.random.default_rng(seed).integers(0, 101, size=(n, T))


def test_magnitude_importance_is_block_l1(models):
    model = models["llama"]
    scores = depth.importance(model, "magnitude")
    for i in range(4):
        p = f"model.layers.{i}."
        ref = sum(np.abs(v.astype(np.float64)).sum() for n, v in model.params.items()
                  if n.startswith(p))
        assert scores[i] == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_taylor_importance_equals_torch_autograd(models, checkpoints, family):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model, ids = models[family], calib()
    scores = depth.importance(model, "taylor", ids)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(checkpoints[family])).eval()
    t_ids = torch.tensor(ids)
    hf(t_ids, labels=t_ids).loss.backward()
    ref = np.zeros(4)
    for name, p in hf.named_parameters():
        for i in range(4):
            if name.startswith(families.block_prefix(model.config, model.prefix, i)):
                ref[i] += float((p.detach() * p.grad).abs().sum())
    np.testing.assert_allclose(scores, ref, rtol=2e-3)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_ppl_importance_equals_physically_removed_blocks(models, family):
    model, ids = models[family], calib()
    scores = depth.importance(model, "ppl", ids)
    for i in (0, 2):
        smaller = depth.remove_layers(model, [i])
        logits = minislm.forward(smaller, ids).astype(np.float64)
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                               keepdims=True)) - logits.max(-1, keepdims=True)
        nll = -np.take_along_axis(logp[:, :-1], ids[:, 1:, None], -1).mean()
        assert scores[i] == pytest.approx(math.exp(nll), rel=1e-4)


def test_block_importance_against_transformers_hidden_states(models, checkpoints):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model, ids = models["llama"], calib()
    scores = depth.importance(model, "block", ids)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(checkpoints["llama"])).eval()
    with torch.no_grad():
        hs = [h.double().numpy() for h in hf(torch.tensor(ids), output_hidden_states=True)
              .hidden_states]
    for i in range(3):  # transformers' last hidden state is after the final norm
        a, b = hs[i], hs[i + 1]
        cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert scores[i] == pytest.approx(float((1 - cos).mean()), rel=1e-4)
    assert np.all((scores >= 0) & (scores <= 2))


def test_choose_blocks_and_protection():
    scores = np.array([0.1, 5, 3, 0.2, 4, 1, 9, 0.0])
    assert depth.choose_blocks(scores, 2, 1, 1) == [3, 5]
    assert depth.choose_blocks(scores, 2, 0, 0) == [0, 7]
    assert depth.protection(16, 2) == (4, 2)             # the thesis default
    assert depth.protection(4, 1) == (2, 1)              # shrunk on a shallow model
    assert depth.protection(4, 3) == (1, 0)
    with pytest.raises(ConfigError, match="protecting"):
        depth.choose_blocks(scores, 3, 4, 2)
    with pytest.raises(ConfigError):
        depth.protection(4, 4)
    assert depth.symmetric_middle(12, 6) == [3, 4, 5, 6, 7, 8]   # GPT-2 slides: keep 0-2, 9-11
    assert depth.symmetric_middle(5, 3) == [1, 2, 3]
    assert depth.parse_layers("0, 1,2,2,3") == [0, 1, 2, 2, 3]
    with pytest.raises(ConfigError):
        depth.parse_layers("0,a")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("method", ["magnitude", "taylor", "ppl", "block", "middle"])
def test_depth_pruned_model_loads_in_transformers(models, tmp_path, family, method):
    transformers = pytest.importorskip("transformers")
    model = models[family]
    before = {k: v.copy() for k, v in model.params.items()}
    pruned = depth.depth_prune(model, 2, method, calib(), protect_first=1, protect_last=0)
    assert pruned.config.n_layer == 2 and model.config.n_layer == 4
    for k, v in before.items():
        np.testing.assert_array_equal(model.params[k], v)
    assert pruned.num_params() < model.num_params()
    out = minislm.save(pruned, tmp_path / "out")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ids = calib(2, 7, seed=9)
    np.testing.assert_allclose(hf_logits(hf, ids), minislm.forward(pruned, ids),
                               rtol=1e-4, atol=1e-4)


def test_franken_sequence_without_copies_and_materialised(models, tmp_path):
    transformers = pytest.importorskip("transformers")
    model, ids = models["gpt2"], calib(2, 8)
    seq = depth.parse_layers("0,1,2,2,3")
    run = minislm.forward(model, ids, layers=seq)       # no weight copied
    franken = depth.select_layers(model, seq)
    assert franken.config.n_layer == 5
    p2, p3 = (families.block_prefix(model.config, model.prefix, j) for j in (2, 3))
    assert franken.params[p2 + "mlp.c_fc.weight"] is franken.params[p3 + "mlp.c_fc.weight"]
    np.testing.assert_allclose(minislm.forward(franken, ids), run, rtol=1e-6, atol=1e-6)
    out = minislm.save(franken, tmp_path / "franken")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    np.testing.assert_allclose(hf_logits(hf, ids), run, rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError):
        depth.select_layers(model, [0, 9])


def test_masks_follow_renumbering(models, tmp_path):
    model = magnitude_prune(models["llama"], 0.5)
    pruned = depth.remove_layers(model, [1, 2])
    masks = pruned.extra_tensors["masks"]
    assert all(n.startswith(("model.layers.0.", "model.layers.1.")) for n in masks)
    np.testing.assert_array_equal(masks["model.layers.1.mlp.up_proj.weight"],
                                  model.extra_tensors["masks"]["model.layers.3.mlp.up_proj.weight"])
    back = minislm.load(minislm.save(pruned, tmp_path / "p"))
    assert sorted(back.extra_tensors["masks"]) == sorted(masks)
