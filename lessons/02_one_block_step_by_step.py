# %% [markdown]
# # Lesson 02 — One transformer block, step by step
#
# A decoder is a stack of identical blocks, each adding two things to the
# residual stream x [T, C]:
#
#     x = x + Attention(Norm₁(x))
#     x = x + MLP(Norm₂(x))
#
# We first write each piece in a few lines of NumPy and check it against
# `minislm.model.layers`; then we compute block 0 of both tiny models with those
# pieces, print every intermediate, check the result against the library's
# `block`, and compare each step with the matching module inside `transformers`
# (captured with forward hooks).

# %%
import math

import numpy as np

from common import WEIGHTS, load_tiny, pyplot, save_figure
from minislm.model.block import block
from minislm.model.forward import embed
from minislm.model.layers import (apply_rope, attention, gelu_tanh, layer_norm, rms_norm,
                                  rope_inv_freq, rope_tables, silu)
from minislm.tokenizer import encode

text = "Open the file and return a stream."
rng = np.random.default_rng(0)

# %% [markdown]
# ## The pieces, written first
#
#     LayerNorm(x) = (x − μ) / √(σ² + ε) · w + b      μ, σ² over the C features
#     RMSNorm(x)   = x / √(mean(x²) + ε) · w          (no centring, no bias)
#     GELU(x)      = ½x (1 + tanh(√(2/π) (x + 0.044715 x³)))
#     RoPE: the pair (x_i, x_{i+D/2}) at position t turns by the angle t·θ^(−2i/D)
#     Attention(q, k, v) = softmax(q kᵀ / √D + M) v,  M[t, s] = −∞ for s > t (the future)

# %%
def layer_norm_by_hand(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) * (x - mu)).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def rms_norm_by_hand(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def gelu_by_hand(x):
    return 0.5 * x * (1 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + 0.044715 * x * x * x)))


def rope_by_hand(x, positions, theta):                       # x [..., T, D]
    half = x.shape[-1] // 2
    angle = positions[:, None] * theta ** (-np.arange(half, dtype=np.float32) / half)   # [T, D/2]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * np.cos(angle) - x2 * np.sin(angle),
                           x2 * np.cos(angle) + x1 * np.sin(angle)], axis=-1)


def attention_weights_by_hand(q, k):                         # q [H, T, D], k [H, T, D]
    scores = q @ k.swapaxes(-1, -2) / np.float32(math.sqrt(q.shape[-1]))   # [H, T, T]
    future = np.triu(np.ones(scores.shape[-2:], dtype=bool), k=1)
    scores = np.where(future, -np.inf, scores)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)                     # rows sum to 1, zero above the diagonal


x = rng.standard_normal((7, 16)).astype(np.float32)
w, b = rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)
assert np.allclose(layer_norm_by_hand(x, w, b, 1e-5), layer_norm(x, w, b, 1e-5), atol=1e-5)
assert np.allclose(rms_norm_by_hand(x, w, 1e-5), rms_norm(x, w, 1e-5), atol=1e-5)
assert np.allclose(gelu_by_hand(x), gelu_tanh(x), atol=1e-6)
q, k, v = (rng.standard_normal((1, 2, 7, 16)).astype(np.float32) for _ in range(3))
cos, sin = rope_tables(np.arange(7), rope_inv_freq(16, 10000.0, None), np.float32)
assert np.allclose(rope_by_hand(q, np.arange(7, dtype=np.float32), np.float32(10000.0)),
                   apply_rope(q, cos, sin), atol=1e-5)
assert np.allclose(attention_weights_by_hand(q[0], k[0]) @ v[0], attention(q, k, v)[0], atol=1e-5)
print("LayerNorm, RMSNorm, GELU, RoPE and causal attention by hand = the library's")

# %% [markdown]
# They agree, so from here on the block uses the library's versions
# (`minislm.model.layers`), which are the same formulas written for speed.

# %% [markdown]
# ## GPT-2: LayerNorm, fused q/k/v, causal attention, GELU-tanh MLP
# GPT-2 stores its linear layers as Conv1D, shape (in, out), so y = x W + b,
# and `c_attn` holds W_q | W_k | W_v side by side (C -> 3C).

# %%
gpt2 = load_tiny("gpt2")
cfg, W = gpt2.config, gpt2.params
p = gpt2.prefix + "h.0."
ids = np.array([encode(gpt2.tokenizer, text)])
T, C, H, D = ids.shape[1], cfg.d_model, cfg.n_head, cfg.head_dim
x_in, pos = embed(gpt2, ids)                                          # [1, T, C], positions
x = x_in[0]                                                           # [T, C]

a = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], cfg.norm_eps)
qkv = a @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]    # [T, 3C]
q, k, v = (qkv[:, j * C:(j + 1) * C].reshape(T, H, D).transpose(1, 0, 2) for j in range(3))
o = attention(q[None], k[None], v[None])[0]                           # [H, T, D]
gpt2_weights = attention_weights_by_hand(q, k)                        # [H, T, T], for the map
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
assert np.allclose(x2, block(gpt2, 0, x_in, pos)[0][0], atol=1e-5), "by hand = the library's block"

# %% [markdown]
# ## What the heads look at
# Row t of a head's attention map is the softmax over the tokens 0 … t it may
# read; everything above the diagonal is the mask's zero.

# %%
pieces = gpt2.tokenizer.encode(text).tokens
assert np.allclose(np.triu(gpt2_weights, k=1), 0) and np.allclose(gpt2_weights.sum(-1), 1)
plt = pyplot()
if plt is not None:
    fig, axes = plt.subplots(1, H, figsize=(3.2 * H, 3.4))
    for h, ax in enumerate(axes):
        ax.imshow(gpt2_weights[h], cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"tiny-gpt2 block 0, head {h}")
        ax.set_xticks(range(T), pieces, rotation=90, fontsize=7)
        ax.set_yticks(range(T), pieces if h == 0 else [], fontsize=7)
    save_figure(fig, "02_attention_map")

# %% [markdown]
# ## LLaMA: RMSNorm, RoPE, grouped-query attention, SwiGLU
# RMSNorm drops LayerNorm's centring and bias. RoPE rotates each (i, i + D/2)
# pair of q and k by an angle proportional to the position, so q·k depends on
# the distance between tokens. With GQA, H query heads share K < H key/value
# heads (head h reads KV head h // (H/K)), shrinking the KV cache H/K times.

# %%
llama = load_tiny("llama")
lc, LW = llama.config, llama.params
lp = "model.layers.0."
lids = np.array([encode(llama.tokenizer, text)])
T, H, K, D = lids.shape[1], lc.n_head, lc.n_kv_head, lc.head_dim
lx_in, lpos = embed(llama, lids)
x = lx_in[0]

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
assert np.allclose(x2, block(llama, 0, lx_in, lpos)[0][0], atol=1e-5)

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
            ("gpt2", WEIGHTS / "tiny-gpt2", ids, "transformer.h.0", gpt2_steps),
            ("llama", WEIGHTS / "tiny-llama", lids, "model.layers.0", llama_steps)):
        ref = captured(folder, token_ids, block_path, [n for n in steps if n != "block"])
        for name, ours in steps.items():
            diff = np.abs(ref[name] - ours).max()
            print(f"{label} {name:24s} max |Δ| vs transformers = {diff:.2e}")
            assert diff < 1e-4, f"{label}: first mismatch at {name}"

# %% [markdown]
# ## Exercises (solutions: `lessons/solutions/02_one_block_step_by_step.py`)
# 1. Drop the causal mask. Predict: the last position's output is unchanged
#    (it may read every token anyway), every earlier one changes, so the check
#    against the library's block fails.
# 2. Shift every RoPE position by 10. Predict: the scores q·k do not change,
#    because after the rotation they depend only on the distance between tokens.
# 3. Multiply the residual stream by 10 before RMSNorm. Predict: the output
#    does not change (up to ε) — the norm divides the scale away.
