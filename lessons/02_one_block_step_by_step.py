# %% [markdown]
# # Lesson 02 — One transformer block, step by step
#
# A decoder is a stack of identical blocks, each adding two things to the
# residual stream x [T, C]:
#
#     x = x + Attention(Norm₁(x))
#     x = x + MLP(Norm₂(x))
#
# We compute block 0 of both tiny models by hand with the pieces in
# `minislm.model.layers`, print every intermediate, and compare each one with
# the matching module inside `transformers` (captured with forward hooks).

# %%
from pathlib import Path

import numpy as np

import minislm
from minislm.model.layers import (apply_rope, attention, gelu_tanh, layer_norm, rms_norm,
                                  rope_inv_freq, rope_tables, silu)
from minislm.tokenizer import encode

ROOT = Path(__file__).resolve().parents[1]
text = "Open the file and return a stream."

# %% [markdown]
# ## GPT-2: LayerNorm, fused q/k/v, causal attention, GELU-tanh MLP
# GPT-2 stores its linear layers as Conv1D, shape (in, out), so y = x W + b,
# and `c_attn` holds W_q | W_k | W_v side by side (C -> 3C).

# %%
gpt2 = minislm.load(ROOT / "weights" / "tiny-gpt2")
cfg, W = gpt2.config, gpt2.params
p = gpt2.prefix + "h.0."
ids = np.array([encode(gpt2.tokenizer, text)])
T, C, H, D = ids.shape[1], cfg.d_model, cfg.n_head, cfg.head_dim
hidden = []
minislm.forward(gpt2, ids, hidden_states=hidden)
x = hidden[0][0]                                                      # [T, C]

a = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], cfg.norm_eps)
qkv = a @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]    # [T, 3C]
q, k, v = (qkv[:, j * C:(j + 1) * C].reshape(T, H, D).transpose(1, 0, 2) for j in range(3))
o = attention(q[None], k[None], v[None])[0]                           # [H, T, D]
attn_out = o.transpose(1, 0, 2).reshape(T, C) @ W[p + "attn.c_proj.weight"] \
    + W[p + "attn.c_proj.bias"]
x1 = x + attn_out
m = layer_norm(x1, W[p + "ln_2.weight"], W[p + "ln_2.bias"], cfg.norm_eps)
mlp_out = gelu_tanh(m @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"]) \
    @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
x2 = x1 + mlp_out
gpt2_steps = {"ln_1": a, "attn": attn_out, "ln_2": m, "mlp": mlp_out, "block": x2}
for name, value in gpt2_steps.items():
    print(f"gpt2 {name:6s} {str(value.shape):12s} mean {value.mean():+.4f} std {value.std():.4f}")
assert np.allclose(x2, hidden[1][0], atol=1e-5), "hand-computed block equals forward()'s"

# %% [markdown]
# ## LLaMA: RMSNorm, RoPE, grouped-query attention, SwiGLU
# RMSNorm drops LayerNorm's centring and bias. RoPE rotates each (i, i + D/2)
# pair of q and k by an angle proportional to the position, so q·k depends on
# the distance between tokens. With GQA, H query heads share K < H key/value
# heads (head h reads KV head h // (H/K)), shrinking the KV cache H/K times.

# %%
llama = minislm.load(ROOT / "weights" / "tiny-llama")
lc, LW = llama.config, llama.params
lp = "model.layers.0."
lids = np.array([encode(llama.tokenizer, text)])
T, H, K, D = lids.shape[1], lc.n_head, lc.n_kv_head, lc.head_dim
lhidden = []
minislm.forward(llama, lids, hidden_states=lhidden)
x = lhidden[0][0]

a = rms_norm(x, LW[lp + "input_layernorm.weight"], lc.norm_eps)
q = (a @ LW[lp + "self_attn.q_proj.weight"].T).reshape(T, H, D).transpose(1, 0, 2)   # [H, T, D]
k = (a @ LW[lp + "self_attn.k_proj.weight"].T).reshape(T, K, D).transpose(1, 0, 2)   # [K, T, D]
v = (a @ LW[lp + "self_attn.v_proj.weight"].T).reshape(T, K, D).transpose(1, 0, 2)
cos, sin = rope_tables(np.arange(T), rope_inv_freq(D, lc.rope_theta, lc.rope_scaling), x.dtype)
q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
o = attention(q[None], k[None], v[None])[0]                                            # [H, T, D]
attn_out = o.transpose(1, 0, 2).reshape(T, H * D) @ LW[lp + "self_attn.o_proj.weight"].T
x1 = x + attn_out
m = rms_norm(x1, LW[lp + "post_attention_layernorm.weight"], lc.norm_eps)
mlp_out = (silu(m @ LW[lp + "mlp.gate_proj.weight"].T) * (m @ LW[lp + "mlp.up_proj.weight"].T)) \
    @ LW[lp + "mlp.down_proj.weight"].T
x2 = x1 + mlp_out
llama_steps = {"input_layernorm": a, "self_attn": attn_out,
               "post_attention_layernorm": m, "mlp": mlp_out, "block": x2}
for name, value in llama_steps.items():
    print(f"llama {name:24s} {str(value.shape):10s} std {value.std():.4f}")
assert np.allclose(x2, lhidden[1][0], atol=1e-5)

# %% [markdown]
# ## Against transformers, module by module
# Forward hooks record what each submodule of transformers' block 0 returns.
# The first mismatch (if any) names the layer where the two implementations part.

# %%
try:
    import torch
    import transformers
except ImportError:
    print("transformers not installed (pip install -e '.[reference]'): comparison skipped")
else:
    def captured(folder, token_ids, block_path, names):
        hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        block = hf.get_submodule(block_path)
        seen = {}
        for name in names:
            def hook(module, args, out, name=name):
                seen[name] = (out[0] if isinstance(out, tuple) else out)[0].detach().numpy()
            block.get_submodule(name).register_forward_hook(hook)
        with torch.no_grad():
            seen["block"] = hf(torch.tensor(token_ids), output_hidden_states=True) \
                .hidden_states[1][0].numpy()
        return seen

    for label, folder, token_ids, block_path, steps in (
            ("gpt2", ROOT / "weights" / "tiny-gpt2", ids, "transformer.h.0", gpt2_steps),
            ("llama", ROOT / "weights" / "tiny-llama", lids, "model.layers.0", llama_steps)):
        ref = captured(folder, token_ids, block_path, [n for n in steps if n != "block"])
        for name, ours in steps.items():
            diff = np.abs(ref[name] - ours).max()
            print(f"{label} {name:24s} max |Δ| vs transformers = {diff:.2e}")
            assert diff < 1e-4, f"{label}: first mismatch at {name}"
