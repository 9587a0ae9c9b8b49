# %% [markdown]
# # Lesson 14 — EoRA compensation, and GGUF files for llama.cpp
#
# **EoRA** (Liu et al. 2024; LLaMA thesis §3.5.1) adds back what quantization
# lost with a low-rank term, without training: h = Ŵx + B A x. The plain
# choice, the rank-r SVD of ΔW = W − Ŵ, minimises ‖ΔW − BA‖ — but the output
# error is ‖(ΔW − BA) X‖, which weighs input directions by how much the data
# uses them. EoRA eigendecomposes XᵀX = QΛQᵀ, takes the SVD of ΔW·Q√Λ (errors
# on busy directions amplified), and projects back with (Q√Λ)⁻¹. Since
# (Q√Λ)(Q√Λ)ᵀ = XᵀX, this is the *optimal* rank-r correction of the output.
#
# **GGUF** is llama.cpp's file: tensors in blocks of 32 weights, each block with
# a float16 scale (Q8_0: 8-bit codes; Q4_0: 4-bit codes, 18 bytes per 32
# weights = 4.5 bits/weight). minislm writes the blocks and the file itself.
#
# Last, the **KV cache** (the LLaMA thesis' future work): at long contexts it,
# not the weights, fills the memory, and it quantizes well too.

# %%
import shutil
import tempfile
from pathlib import Path

import numpy as np

import minislm
from common import calibration, load_tiny, ppl, toolcall_model, toolcall_score, yardstick_ids
from minislm.evaluate.perplexity import token_nll
from minislm.model.cache import KVCache
from minislm.quant.gguf_blocks import TYPES, dequantize_blocks, quantize_blocks
from minislm.quant.gguf_export import export_gguf
from minislm.quant.kv_cache import Int8KVCache
from minislm.quant.model_quant import model_nbytes, quantize_model

model = load_tiny("llama")
calib = calibration(model, n_samples=16)


# %% [markdown]
# ## EoRA after 2-bit GPTQ: per-layer errors and perplexity
# For every layer: the output error ‖ΔW X‖²/n before compensation, after a
# rank-r plain SVD of ΔW, and after EoRA of the same rank. (2 bits per output
# channel, so that this small model's perplexity visibly suffers; the LLaMA
# thesis applies EoRA after 4-bit g128 GPTQ of a 1 B model.)

# %%
q2, _ = quantize_model(model, "gptq", bits=2, group_size=-1, calib_ids=calib, progress=False)
results = {0: (ppl(q2), model_nbytes(q2))}
print(f"float32 {ppl(model):.3f}   GPTQ 2-bit per channel {results[0][0]:.3f}")
for rank in (16,):
    q, report = quantize_model(model, "gptq", bits=2, group_size=-1, eora_rank=rank,
                               calib_ids=calib, progress=False)
    before = sum(e["error_before_eora"] for e in report)
    svd = sum(e["error_svd"] for e in report)
    eora = sum(e["error"] for e in report)
    results[rank] = (ppl(q), model_nbytes(q))
    print(f"rank {rank:>2}: summed layer error {before:.4g} -> plain SVD {svd:.4g}, "
          f"EoRA {eora:.4g}; perplexity {results[rank][0]:.3f}, "
          f"+{results[rank][1] - results[0][1]:,} bytes of B, A")
    assert all(e["error"] <= e["error_svd"] * (1 + 1e-6) for e in report)

# %% [markdown]
# The same correction on the task: the tool-calling model of lesson 07 after
# 2-bit GPTQ, with and without a rank-16 EoRA.

# %%
tool_model = toolcall_model()
tool_calib = calibration(tool_model, n_samples=16)
tool = {"float32": toolcall_score(tool_model)}
for rank in (0, 16):
    q, _ = quantize_model(tool_model, "gptq", bits=2, group_size=-1, eora_rank=rank,
                          calib_ids=tool_calib, progress=False)
    tool[f"GPTQ 2-bit + EoRA {rank}" if rank else "GPTQ 2-bit"] = toolcall_score(q)
for name, r in tool.items():
    print(f"{name:<22} tool {r['tool']:.0%}  syntax {r['syntax']:.0%}  parameters "
          f"{r['parameters']:.0%}  all {r['all']:.0%}")

# %% [markdown]
# ## A GGUF block by hand
# Q4_0 on one block of 32 weights: m is the weight of largest magnitude (sign
# kept), d = m / −8, codes q = min(15, trunc(w/d + 8.5)), so m lands exactly on
# code 0 and ŵ = d·(q − 8). The block is d as float16 (2 bytes), then 16 code
# bytes holding codes 0–15 in their low nibbles and codes 16–31 in their high
# nibbles: 18 bytes.

# %%
w = np.asarray(model.params["model.layers.0.mlp.up_proj.weight"][0, :32], dtype=np.float32)
m = w[np.argmax(np.abs(w))]
d = np.float32(m / np.float32(-8))
q = np.minimum(np.trunc(w * (np.float32(1) / d) + np.float32(8.5)), 15).astype(np.uint8)
by_hand = np.concatenate([np.array([d], np.float16).view(np.uint8), q[:16] | (q[16:] << 4)])
block = quantize_blocks(w, "q4_0")
assert np.array_equal(by_hand, block)
d = block[:2].view(np.float16)[0]
print(f"{block.size} bytes: d = {float(d):.4g}, codes {block[2:].tobytes().hex(' ')}")
w_hat = dequantize_blocks(block, "q4_0")
print(f"max |w − ŵ| = {np.abs(w - w_hat).max():.3g} (step |d| = {abs(float(d)):.3g}; "
      "the far tail\n"
      "can clip by a whole step: −m would need code 16)")

# %% [markdown]
# **Reference.** The `gguf` package (llama.cpp's own Python library) has a
# NumPy quantizer for every block type. Our blocks must equal its bytes on a
# whole weight matrix, for each type minislm writes.

# %%
import gguf                                                 # noqa: E402  (reference only)

W_up = np.asarray(model.params["model.layers.0.mlp.up_proj.weight"], dtype=np.float32)
for qtype in TYPES:
    ref = gguf.quants.quantize(W_up, gguf.GGMLQuantizationType[qtype.upper()])
    assert np.array_equal(quantize_blocks(W_up, qtype), ref), qtype
print(f"gguf.quants.quantize gives the same bytes for {', '.join(TYPES)}")

# %% [markdown]
# ## Export and run
# The exporter renames tensors to llama.cpp's names (`blk.N.attn_q`, ...),
# permutes the q/k rows back to the interleaved RoPE layout llama.cpp uses,
# and stores the tokenizer (tokens, merges, special ids). If llama-cpp-python
# is installed the file is run there and its logits compared with minislm's.

# %%
tmp = Path(tempfile.mkdtemp())   # removed at the end of the lesson
ids = calib[0, :32].tolist()
ours = minislm.forward(model, np.array([ids]))[0]
sizes = {}
for qtype in ("f32", "q8_0", "q4_0"):
    path, sizes[qtype] = export_gguf(model, tmp / f"tiny-{qtype}.gguf", qtype)
    line = f"{qtype:>5}: {sizes[qtype]:,} bytes"
    try:
        from llama_cpp import Llama
        llm = Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=1)
        llm.eval(ids)
        theirs = np.asarray(llm.scores[:len(ids)])
        line += (f", llama.cpp max |Δlogit| {np.abs(theirs - ours).max():.3g}, same argmax "
                 f"{np.mean(theirs.argmax(-1) == ours.argmax(-1)):.0%}")
        if qtype == "f32":
            assert np.abs(theirs - ours).max() < 1e-3 * np.abs(ours).max()
    except ImportError:
        line += " (llama-cpp-python not installed: not run)"
    print(line)

# %% [markdown]
# **Reference.** `gguf.GGUFReader` reads every file back. The float32 file
# holds the exported weights (renamed, q/k rows permuted); quantizing each of
# its tensors with `gguf.quants` must give exactly the bytes of our file of
# every block type — so the whole file, not one block, matches llama.cpp's code.

# %%
def tensors(path):
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


exported = tensors(tmp / "tiny-f32.gguf")
for qtype in TYPES:
    path, sizes[qtype] = export_gguf(model, tmp / f"tiny-{qtype}.gguf", qtype)
    for name, t in tensors(path).items():
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            assert np.array_equal(t.data, exported[name].data), name
            continue
        assert t.tensor_type.name.lower() == qtype, (name, t.tensor_type)
        ref = gguf.quants.quantize(np.asarray(exported[name].data), t.tensor_type)
        assert np.array_equal(np.asarray(t.data).reshape(ref.shape), ref), (qtype, name)
print("GGUFReader: every tensor of the " + ", ".join(TYPES) + " files equals gguf.quants "
      "applied to the float32 file; sizes " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))

# %% [markdown]
# ## An INT8 KV cache
# Each cached key (and value) vector of a head at one position is stored as
# int8 codes with one float32 scale s = max|k| / 127: D + 4 bytes instead of
# 4·D. Generation takes the cache object to fill; the float32 and INT8 caches
# are compared on the same prompt, then by perplexity over 8 held-out windows.
# The cache object allocates room ahead (capacity doubles as it grows), so its
# `nbytes` overstates what the positions need; we count the positions used:
# 2 (k, v) · L · K · positions · D · 4 bytes in float32, (D + 4) instead of 4·D in int8.

# %%
prompt = np.array([calib[1, :16]])
caches = {"float32": KVCache(), "int8": Int8KVCache()}
outs = {name: minislm.generate(model, prompt, 24, stop_tokens=(), cache=c)
        for name, c in caches.items()}
same = int((outs["int8"] == outs["float32"]).all(axis=0)[16:].sum())
cfg = model.config
used = {name: c.length for name, c in caches.items()}
per_position = {"float32": 2 * cfg.n_layer * cfg.n_kv_head * cfg.head_dim * 4,
                "int8": 2 * cfg.n_layer * cfg.n_kv_head * (cfg.head_dim + 4)}
cache_bytes = {name: per_position[name] * used[name] for name in caches}
for name, c in caches.items():                  # the allocation holds capacity positions
    assert c.nbytes == per_position[name] * c.capacity
print(f"cache bytes for the {used['int8']} positions used: float32 {cache_bytes['float32']:,}, "
      f"int8 {cache_bytes['int8']:,} ({cache_bytes['float32'] / cache_bytes['int8']:.2f}× "
      f"smaller = 4·{cfg.head_dim}/({cfg.head_dim} + 4)); {same}/24 generated tokens identical")
windows = yardstick_ids(model)[:8 * 128].reshape(8, 128)        # held-out windows
kv_ppl = {}
for name, make in (("float32", KVCache), ("int8", Int8KVCache)):
    nll = [token_nll(minislm.forward(model, w[None, :-1], cache=make()), w[None, 1:]).mean()
           for w in windows]
    kv_ppl[name] = float(np.exp(np.mean(nll)))
    print(f"{name:>8} KV cache: perplexity {kv_ppl[name]:.3f}")

# %%
shutil.rmtree(tmp)
assert used["int8"] == used["float32"] == 16 + 24 - 1       # the last token is never fed back
assert cache_bytes["int8"] < cache_bytes["float32"] / 3
assert abs(kv_ppl["int8"] / kv_ppl["float32"] - 1) < 0.01
assert results[16][0] <= results[0][0]
assert sizes["q4_0"] < sizes["q4_1"] < sizes["q8_0"] < sizes["f32"]
assert np.abs(w - w_hat).max() <= abs(float(d)) * 1.01 + 1e-6   # one step at the far tail

# %% [markdown]
# ## Exercises (solutions in `lessons/solutions/14_eora_and_gguf.py`)
# 1. Spend EoRA's bytes on bits instead: quantize with 3-bit GPTQ per channel
#    (no EoRA) and compare bytes and perplexity with 2-bit GPTQ + rank-16 EoRA.
#    Predict which is smaller and which is better.
# 2. Quantize a block whose 32 weights are all positive with Q4_0 and with Q4_1.
#    Predict: Q4_0's grid is symmetric around 0, so half its codes are wasted
#    and its largest error is about twice Q4_1's (which stores a minimum too,
#    for 2 more bytes per block).
# 3. Predict the INT8 KV cache's saving for head_dim 64 (LLaMA-3.2-1B) before
#    computing it: 4·64 / (64 + 4) ≈ 3.76×.
