"""Width trimming: importance from statistics, exact equivalences, GQA, GPT-2 768 -> 384."""
from __future__ import annotations

import numpy as np
import pytest

import minislm
from minislm import calibration
from minislm.errors import ConfigError
from minislm.model import families
from minislm.prune import width

from conftest import build_hf_model, hf_logits, save_hf_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("width")
    return {"gpt2": minislm.load(save_hf_model(build_hf_model("gpt2", n_layer=2, seed=1),
                                               root / "gpt2")),
            "llama": minislm.load(save_hf_model(build_hf_model(
                "llama", n_layer=2, seed=1, n_head=4, n_kv_head=2, d_model=32, d_ff=48),
                root / "llama"))}


def calib(n=4, T=12, seed=0):
    return np.random.default_rng(seed).integers(0, 101, size=(n, T))


def test_output_norms_from_statistics_equal_direct():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    W = rng.standard_normal((5, 6)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    s = calibration.Stats()
    s.update(X[:25], ("sum", "xtx"))
    s.update(X[25:], ("sum", "xtx"))
    A = X.astype(np.float64) @ W.T + b
    # XᵀX of float32 inputs is a float32 GEMM per batch (summed in float64): ~1e-8 relative
    np.testing.assert_allclose(width.output_norms(W, b, s), np.linalg.norm(A, axis=0), rtol=1e-6)
    np.testing.assert_allclose(width.output_norms(W, None, s),
                               np.linalg.norm(X.astype(np.float64) @ W.T, axis=0), rtol=1e-6)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_head_importance_equals_direct_activation_norms(models, family):
    model, ids = models[family], calib()
    scores = width.width_importance(model, ids)
    cfg = model.config
    seen = {}
    minislm.forward(model, ids, observer=lambda n, x: seen.setdefault(n, []).append(
        x.reshape(-1, x.shape[-1]).astype(np.float64)))
    for i in range(cfg.n_layer):
        (Wq, bq), (Wk, bk), (Wv, bv) = width._qkv(model, i)
        p = families.block_prefix(cfg, model.prefix, i)
        X = np.concatenate(seen[p + ("attn.c_attn.weight" if family == "gpt2"
                                     else "self_attn.q_proj.weight")])

        def head_norms(W, b):
            A = X @ W.T.astype(np.float64) + (0 if b is None else b)
            return np.linalg.norm(A.reshape(len(X), -1, cfg.head_dim), axis=(0, 2))

        np.testing.assert_allclose(scores.heads[i], head_norms(Wq, bq), rtol=1e-6)
        np.testing.assert_allclose(scores.kv_heads[i], head_norms(Wk, bk) + head_norms(Wv, bv),
                                   rtol=1e-6)
        H_in = np.concatenate(seen[p + ("mlp.c_proj.weight" if family == "gpt2"
                                        else "mlp.down_proj.weight")])
        np.testing.assert_allclose(scores.neurons[i], np.linalg.norm(H_in, axis=0), rtol=1e-6)
    assert scores.channels.shape == (cfg.d_model,) and np.all(scores.channels > 0)


def zero_out(model, heads_kept, neurons_kept):
    """The untrimmed model with dropped heads' and neurons' outputs zeroed."""
    cfg, params = model.config, dict(model.params)
    D = cfg.head_dim
    for i in range(cfg.n_layer):
        p = families.block_prefix(cfg, model.prefix, i)
        o = p + ("attn.c_proj.weight" if cfg.family == "gpt2" else "self_attn.o_proj.weight")
        down = p + ("mlp.c_proj.weight" if cfg.family == "gpt2" else "mlp.down_proj.weight")
        head_dead = np.ones(cfg.n_head * D, bool)
        for h in heads_kept[i]:
            head_dead[h * D:(h + 1) * D] = False
        neuron_dead = np.ones(cfg.d_ff, bool)
        neuron_dead[neurons_kept[i]] = False
        if cfg.family == "gpt2":     # (in, out): inputs are rows
            params[o] = np.where(head_dead[:, None], 0, params[o]).astype(np.float32)
            params[down] = np.where(neuron_dead[:, None], 0, params[down]).astype(np.float32)
        else:                        # (out, in): inputs are columns
            params[o] = np.where(head_dead[None, :], 0, params[o]).astype(np.float32)
            params[down] = np.where(neuron_dead[None, :], 0, params[down]).astype(np.float32)
    return model.replace(params=params)


@pytest.mark.parametrize("family,heads,kv_heads", [("gpt2", None, None), ("llama", 2, None),
                                                   ("llama", 2, 1)])
def test_trimming_heads_and_neurons_equals_zeroing_them(models, family, heads, kv_heads):
    model, ids = models[family], calib()
    scores = width.width_importance(model, ids)
    ffn = model.config.d_ff // 2
    # GPT-2 heads move with hidden; here only neurons are trimmed for it
    trimmed = width.width_trim(model, heads=heads, kv_heads=kv_heads, ffn=ffn, scores=scores)
    cfg = model.config
    H2 = heads or cfg.n_head
    K2 = kv_heads or (cfg.n_kv_head if H2 % cfg.n_kv_head == 0 else H2 // cfg.n_rep)
    assert (trimmed.config.n_head, trimmed.config.n_kv_head, trimmed.config.d_ff) == (H2, K2, ffn)
    G = cfg.n_rep
    heads_kept, neurons_kept = [], []
    for i in range(cfg.n_layer):
        groups = np.sort(np.argsort(-scores.groups(G)[i], kind="stable")[:K2])
        kept = [g * G + h for g in groups for h in
                np.sort(np.argsort(-scores.heads[i, g * G:(g + 1) * G], kind="stable")[:H2 // K2])]
        heads_kept.append(kept)
        neurons_kept.append(np.argsort(-scores.neurons[i], kind="stable")[:ffn])
    reference = zero_out(model, heads_kept, neurons_kept)
    ids2 = calib(2, 9, seed=4)
    np.testing.assert_allclose(minislm.forward(trimmed, ids2), minislm.forward(reference, ids2),
                               rtol=1e-4, atol=1e-4)
    assert trimmed.num_params() < model.num_params()


def test_keeping_everything_is_the_identity(models):
    model = models["llama"]
    same = width.width_trim(model, calib())
    ids = calib(2, 9, seed=4)
    np.testing.assert_allclose(minislm.forward(same, ids), minislm.forward(model, ids),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family,kw", [("gpt2", dict(hidden=16, ffn=64)),
                                       ("gpt2", dict(heads=3)),
                                       ("llama", dict(heads=2, kv_heads=1, ffn=24, hidden=24))])
def test_trimmed_model_loads_in_transformers(models, tmp_path, family, kw):
    transformers = pytest.importorskip("transformers")
    model = models[family]
    before = {k: v.copy() for k, v in model.params.items()}
    trimmed = width.width_trim(model, calib(), **kw)
    for k, v in before.items():
        np.testing.assert_array_equal(model.params[k], v)
    out = minislm.save(trimmed, tmp_path / "w")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert sum(p.numel() for p in hf.parameters()) == trimmed.num_params()
    ids = calib(2, 9, seed=4)
    np.testing.assert_allclose(hf_logits(hf, ids), minislm.forward(trimmed, ids),
                               rtol=1e-4, atol=1e-4)


def test_gpt2_slides_trim_768_to_384_and_12_to_6_heads(tmp_path):
    transformers = pytest.importorskip("transformers")
    folder = save_hf_model(build_hf_model("gpt2", n_layer=2, d_model=768, n_head=12, seed=2),
                           tmp_path / "gpt2-shaped")
    model = minislm.load(folder)
    trimmed = width.width_trim(model, calib(2, 16), hidden=384)
    cfg = trimmed.config
    assert (cfg.d_model, cfg.n_head, cfg.head_dim, cfg.d_ff) == (384, 6, 64, 3072)
    out = minislm.save(trimmed, tmp_path / "trimmed")
    size = lambda f: (f / "model.safetensors").stat().st_size
    assert size(out) < 0.6 * size(folder)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert (hf.config.n_embd, hf.config.n_head) == (384, 6)
    ids = calib(1, 8, seed=3)
    np.testing.assert_allclose(hf_logits(hf, ids), minislm.forward(trimmed, ids),
                               rtol=1e-4, atol=1e-4)


def test_target_sizes_errors(models):
    gpt2, llama = models["gpt2"].config, models["llama"].config
    assert width.target_sizes(gpt2, hidden=16) == (2, 2, gpt2.d_ff, 16)
    with pytest.raises(ConfigError, match="n_head × head_dim"):
        width.target_sizes(gpt2, heads=2, hidden=24)
    with pytest.raises(ConfigError, match="multiple of"):
        width.target_sizes(gpt2, hidden=12)
    with pytest.raises(ConfigError, match="ffn"):
        width.target_sizes(llama, ffn=10 ** 6)
    assert width.target_sizes(llama, heads=2) == (2, 2, llama.d_ff, llama.d_model)
    assert width.target_sizes(llama, heads=2, kv_heads=1)[:2] == (2, 1)
    with pytest.raises(ConfigError, match="share"):
        width.target_sizes(llama, heads=3)
