"""Gemma 3 (Gemma3ForCausalLM, model_type gemma3_text) and Gemma 2 (Gemma2ForCausalLM) against
transformers on hypothesis-drawn tiny configs: the bars GPT-2 and LLaMA meet in test_core.py
and test_backward.py (float32 logits within 1e-4, greedy tokens identical, KV-cache decoding
equal to recomputation past the sliding window, gradients equal to torch autograd)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minislm
from minislm.model import families

from conftest import build_hf_model, hf_logits, save_hf_model

torch = pytest.importorskip("torch")
SETTINGS = settings(max_examples=8, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@st.composite
def gemma_configs(draw, family=None):
    """A tiny Gemma: MQA or GQA, head_dim ≠ hidden/heads, a window shorter than the inputs."""
    family = family or draw(st.sampled_from(["gemma3", "gemma2"]))
    K = draw(st.sampled_from([1, 2]))
    H = K * draw(st.sampled_from([1, 2, 4]))
    L = draw(st.integers(1, 3))
    kw = dict(n_layer=L, n_head=H, n_kv_head=K, head_dim=draw(st.sampled_from([8, 16])),
              d_model=draw(st.sampled_from([16, 24, 32])), d_ff=draw(st.sampled_from([16, 40])),
              vocab_size=draw(st.integers(11, 120)), max_position=48,
              sliding_window=draw(st.integers(1, 8)),
              layer_types=draw(st.lists(st.sampled_from(["sliding_attention", "full_attention"]),
                                        min_size=L, max_size=L)),
              query_pre_attn_scalar=draw(st.sampled_from([8, 16, 24])),
              tied=draw(st.booleans()))
    if family == "gemma2":
        kw.update(attn_softcap=draw(st.sampled_from([2.0, 50.0])),
                  final_softcap=draw(st.sampled_from([1.5, 30.0])))
    else:
        kw.update(rope_local_theta=draw(st.sampled_from([10.0, 1e4])))
    return family, kw


def ids_for(kw, seed, B=2, T=17):
    return np.random.default_rng(seed).integers(0, kw["vocab_size"], (B, T))


def loaded(tmp_path_factory, family, kw, seed):
    hf = build_hf_model(family, seed=seed, **kw)
    folder = save_hf_model(hf, tmp_path_factory.mktemp("gemma"))
    return hf, folder, minislm.load(folder)


@SETTINGS
@given(gemma_configs(), st.integers(0, 10_000))
def test_logits_match_transformers(tmp_path_factory, case, seed):
    family, kw = case
    hf, _, model = loaded(tmp_path_factory, family, kw, seed)
    assert model.config.family == family
    assert set(model.params) == {n for n in hf.state_dict() if not (
        kw["tied"] and n == "lm_head.weight")}                # transformers' own names
    ids = ids_for(kw, seed)                                   # T = 17 > every window drawn
    logits = minislm.forward(model, ids)
    assert logits.dtype == np.float32 and logits.shape == ids.shape + (kw["vocab_size"],)
    np.testing.assert_allclose(logits, hf_logits(hf, ids), atol=1e-4, rtol=0)


@SETTINGS
@given(gemma_configs(), st.integers(0, 10_000), st.integers(1, 9))
def test_kv_cache_decoding_equals_recomputation_past_the_window(tmp_path_factory, case, seed,
                                                                split):
    """Prefill `split` tokens, then decode one at a time to T = 17 (> the window): every
    step's logits equal the full forward's at that position."""
    family, kw = case
    _, _, model = loaded(tmp_path_factory, family, kw, seed)
    ids = ids_for(kw, seed)
    full = minislm.forward(model, ids)
    cache = minislm.model.cache.KVCache()
    steps = [minislm.forward(model, ids[:, :split], cache)]
    for t in range(split, ids.shape[1]):
        steps.append(minislm.forward(model, ids[:, t:t + 1], cache))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["gemma3", "gemma2"])
def test_greedy_generation_identical(tmp_path, family):
    import transformers
    kw = dict(n_layer=3, n_head=4, n_kv_head=1, head_dim=16, d_model=32, vocab_size=97,
              sliding_window=4)
    hf = build_hf_model(family, seed=1, **kw)
    folder = save_hf_model(hf, tmp_path / family)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    model = minislm.load(folder)
    prompt = ids_for(kw, 3, B=1, T=5)
    ours = minislm.generate(model, prompt, 30, stop_tokens=())
    hf.generation_config.eos_token_id = None
    with torch.no_grad():
        ref = hf.generate(torch.tensor(prompt), max_new_tokens=30, do_sample=False,
                          pad_token_id=0).numpy()
    assert ours.shape == (1, 35)
    np.testing.assert_array_equal(ours, ref)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(gemma_configs(), st.integers(0, 10_000))
def test_gradients_match_torch_autograd(tmp_path_factory, case, seed):
    """value_and_grad (the hand-written backward: scaled embedding, (1 + w) norms, QK-norm,
    soft-capping, sliding windows, GeGLU, tied head, the pad row) equals torch's autograd."""
    family, kw = case
    hf, _, model = loaded(tmp_path_factory, family, kw, seed)
    ids = ids_for(kw, seed)
    ids[0, 3] = 0                                  # the pad token: no lookup gradient (torch)
    loss, grads = minislm.value_and_grad(model, ids, ids)
    out = hf(torch.tensor(ids), labels=torch.tensor(ids))
    out.loss.backward()
    assert abs(loss - out.loss.item()) <= 1e-5 * max(1.0, abs(loss))
    for name, p in hf.named_parameters():
        ref = p.grad.numpy()
        assert grads[name].dtype == np.float32
        # + 1e-7: a window of 1 makes ∂L/∂W_q exactly 0 here, ~1e-9 of rounding in torch
        assert np.abs(grads[name] - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-7, name


def _rewrite_config(folder, edit):
    path = folder / "config.json"
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))


def test_both_rope_config_forms_give_the_same_model(tmp_path):
    """Gemma 3's RoPE bases per layer type come from `rope_parameters` (transformers 5) or
    from the older top-level `rope_theta` / `rope_local_base_freq`; both read alike, and a
    config without layer_types gets transformers' sliding pattern (every 6th layer full)."""
    kw = dict(n_layer=3, n_head=2, n_kv_head=1, d_model=16, vocab_size=50, sliding_window=3,
              rope_theta=5e5, rope_local_theta=20.0)
    hf = build_hf_model("gemma3", **kw)
    folder = save_hf_model(hf, tmp_path / "new")
    model = minislm.load(folder)
    assert (model.config.rope_theta, model.config.rope_local_theta) == (5e5, 20.0)

    def old_form(d):
        del d["rope_parameters"]
        d.update(rope_theta=5e5, rope_local_base_freq=20.0)
    _rewrite_config(folder, old_form)
    old = minislm.load(folder)
    assert (old.config.rope_theta, old.config.rope_local_theta) == (5e5, 20.0)
    ids = ids_for(kw, 0)
    ref = hf_logits(hf, ids)
    for m in (model, old):
        np.testing.assert_allclose(minislm.forward(m, ids), ref, atol=1e-4, rtol=0)
    # swapped bases change the logits: the sliding layers really use their own base
    _rewrite_config(folder, lambda d: d.update(rope_theta=20.0, rope_local_base_freq=5e5))
    assert np.abs(minislm.forward(minislm.load(folder), ids) - ref).max() > 1e-3

    def no_layer_types(d):
        del d["layer_types"]
        d["num_hidden_layers"] = 7
    cfg = json.loads((folder / "config.json").read_text())
    no_layer_types(cfg)
    from minislm.config import Config
    assert Config.from_hf_dict(cfg).layer_types == ("sliding_attention",) * 5 + (
        "full_attention", "sliding_attention")


@pytest.mark.parametrize("family", ["gemma3", "gemma2"])
def test_save_round_trips_through_transformers(tmp_path, family):
    import transformers
    kw = dict(n_layer=2, n_head=2, n_kv_head=1, d_model=16, vocab_size=50, tied=False)
    hf = build_hf_model(family, **kw)
    model = minislm.load(save_hf_model(hf, tmp_path / "in"))
    minislm.save(model, tmp_path / "out")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(again).__name__ == type(hf).__name__
    ids = ids_for(kw, 1)
    np.testing.assert_allclose(hf_logits(again, ids), hf_logits(hf, ids), atol=1e-6, rtol=0)


def test_the_family_tables_name_transformers_tensors():
    """expected_shapes of a Gemma config are exactly transformers' Gemma3ForCausalLM
    state_dict (names and shapes), head_dim 256 ≠ hidden / heads, one KV head."""
    kw = dict(n_layer=2, n_head=4, n_kv_head=1, head_dim=256, d_model=64, vocab_size=40,
              tied=True)
    for family in ("gemma3", "gemma2"):
        hf = build_hf_model(family, **kw)
        cfg = minislm.config.Config.from_hf_dict(hf.config.to_dict())
        want = {n: tuple(p.shape) for n, p in hf.state_dict().items() if n != "lm_head.weight"}
        assert families.expected_shapes(cfg) == want


@pytest.mark.parametrize("field, value, message", [
    ("layer_types", ["sliding_attention"], "layer_types"),
    ("layer_types", "sliding_attention", "layer_types"),
    ("sliding_window_pattern", "6", "sliding_window_pattern"),
    ("sliding_window", 0, "sliding_window"),
    ("query_pre_attn_scalar", -1, "query_pre_attn_scalar"),
    ("attn_logit_softcapping", "x", "attn_logit_softcapping"),
    ("rope_parameters", {"full_attention": {"rope_theta": 1e6}, "sliding_attention": 3},
     "sliding_attention"),
    ("pad_token_id", 500, "pad_token_id"),
    ("use_bidirectional_attention", True, "use_bidirectional_attention"),
    ("hidden_activation", "relu", "hidden_activation"),
])
def test_bad_gemma_config_fields_are_named(field, value, message):
    """A Gemma config.json with a junk field fails with a ConfigError naming the field as
    the file spells it (never a TypeError from deep inside)."""
    from minislm.config import Config
    from minislm.errors import ConfigError
    d = dict(model_type="gemma3_text", vocab_size=50, hidden_size=16, num_hidden_layers=2,
             num_attention_heads=2, intermediate_size=32)
    Config.from_hf_dict(d)                                          # the base is fine
    if field == "sliding_window_pattern":
        d.pop("layer_types", None)
    with pytest.raises(ConfigError, match=message):
        Config.from_hf_dict(dict(d, **{field: value}))
