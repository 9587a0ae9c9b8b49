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
def hf_models():
    return {"gpt2": build_hf_model("gpt2", n_layer=2, seed=1),
            "llama": build_hf_model("llama", n_layer=2, seed=1, n_head=4, n_kv_head=2,
                                    d_model=32, d_ff=48)}


@pytest.fixture(scope="module")
def models(tmp_path_factory, hf_models):
    root = tmp_path_factory.mktemp("width")
    return {f: minislm.load(save_hf_model(m, root / f)) for f, m in hf_models.items()}


def calib(n=4, T=12, seed=0):
    return np.random.default_rng(seed).integers(0, 101, size=(n, T))


def torch_activations(hf, family, ids):
    """{what: [tensor per layer]} caught by forward (pre-)hooks on the transformers modules."""
    import torch
    seen = {}

    def keep(key, pre):
        def hook(module, args, output=None):
            seen.setdefault(key, []).append((args[0] if pre else output).detach().double())
        return hook

    if family == "gpt2":
        blocks, final = hf.transformer.h, hf.transformer.ln_f
        outputs = lambda b: {"attn_norm": b.ln_1, "mlp_norm": b.ln_2, "qkv": b.attn.c_attn,
                             "gate": b.mlp.c_fc}
        inputs = lambda b: {"attn_out": b.attn.c_proj, "mlp_hidden": b.mlp.c_proj}
    else:
        blocks, final = hf.model.layers, hf.model.norm
        outputs = lambda b: {"attn_norm": b.input_layernorm, "mlp_norm": b.post_attention_layernorm,
                             "q": b.self_attn.q_proj, "k": b.self_attn.k_proj,
                             "v": b.self_attn.v_proj, "gate": b.mlp.gate_proj}
        inputs = lambda b: {"attn_out": b.self_attn.o_proj, "mlp_hidden": b.mlp.down_proj}
    handles = [final.register_forward_hook(keep("final_norm", False))]
    for b in blocks:
        handles += [m.register_forward_hook(keep(k, False)) for k, m in outputs(b).items()]
        handles += [m.register_forward_pre_hook(keep(k, True)) for k, m in inputs(b).items()]
    with torch.no_grad():
        hf(torch.tensor(ids))
    for h in handles:
        h.remove()
    if family == "gpt2":                             # c_attn's output is q, k, v side by side
        seen["q"], seen["k"], seen["v"] = zip(*(a.chunk(3, dim=-1) for a in seen.pop("qkv")))
    return seen


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_minitron_importance_equals_a_torch_computation_with_hooks(models, hf_models, family):
    """Issue 13 item 11: mean over the sequence, then L2 over the batch, of the per-head
    attention output norm, the MLP intermediate activation and every norm's output."""
    model, ids, cfg = models[family], calib(), models[family].config
    scores = width.width_importance(model, ids, importance="minitron", batch_size=3)
    assert scores.method == "minitron"
    a = torch_activations(hf_models[family], family, ids)
    B, T = ids.shape
    agg = lambda x: x.mean(dim=1).norm(dim=0).numpy()          # [B, T, n] -> [n]
    for i in range(cfg.n_layer):
        O = a["attn_out"][i].reshape(B, T, cfg.n_head, cfg.head_dim).norm(dim=-1)
        np.testing.assert_allclose(scores.heads[i], agg(O), rtol=1e-5)
        np.testing.assert_allclose(scores.neurons[i], agg(a["mlp_hidden"][i].abs()), rtol=1e-5)
    norms = a["attn_norm"] + a["mlp_norm"] + a["final_norm"]
    np.testing.assert_allclose(scores.channels, sum(agg(x.abs()) for x in norms), rtol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_voice_thesis_importance_equals_a_torch_computation_with_hooks(models, hf_models, family):
    """Issue 13 item 11: heads ‖A_q‖₂ + ‖A_k‖₂ + ‖A_v‖₂ (L2 over batch and sequence, k and v
    of the head's KV group), neurons (1/T) Σ_t ‖gate output_t‖₂ (L2 over the batch; GPT-2's
    c_fc output), channels the L2 over batch and sequence of every norm's output."""
    model, ids, cfg = models[family], calib(), models[family].config
    scores = width.width_importance(model, ids, importance="voice-thesis", batch_size=3)
    assert scores.method == "voice-thesis"
    a = torch_activations(hf_models[family], family, ids)
    B, T = ids.shape
    per_head = lambda A: A.reshape(B, T, -1, cfg.head_dim).pow(2).sum(dim=(0, 1, 3)).sqrt()
    for i in range(cfg.n_layer):
        kv = per_head(a["k"][i]) + per_head(a["v"][i])
        expected = per_head(a["q"][i]) + kv.repeat_interleave(cfg.n_head // cfg.n_kv_head)
        np.testing.assert_allclose(scores.heads[i], expected.numpy(), rtol=1e-5)
        expected = a["gate"][i].pow(2).sum(dim=0).sqrt().mean(dim=0)   # ‖·‖₂ over b, mean over t
        np.testing.assert_allclose(scores.neurons[i], expected.numpy(), rtol=1e-5)
    norms = a["attn_norm"] + a["mlp_norm"] + a["final_norm"]
    expected = sum(x.pow(2).sum(dim=(0, 1)).sqrt() for x in norms)
    np.testing.assert_allclose(scores.channels, expected.numpy(), rtol=1e-5)


def test_the_two_formulas_rank_differently_and_bad_names_fail(models):
    model, ids = models["llama"], calib()
    m, t = (width.width_importance(model, ids, importance=k) for k in width.IMPORTANCE)
    assert not np.allclose(m.neurons / m.neurons.max(), t.neurons / t.neurons.max())
    with pytest.raises(ConfigError, match="minitron"):
        width.width_importance(model, ids, importance="taylor")


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
