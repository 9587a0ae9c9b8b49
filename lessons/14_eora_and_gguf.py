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
from minislm.calibration import calibration_batches
from minislm.evaluate.perplexity import default_text, perplexity, token_nll
from minislm.model.cache import KVCache
from minislm.quant.gguf_blocks import dequantize_blocks, quantize_blocks
from minislm.quant.gguf_export import export_gguf
from minislm.quant.kv_cache import Int8KVCache
from minislm.quant.model_quant import model_nbytes, quantize_model
from minislm.tokenizer import encode

ROOT = Path(__file__).resolve().parents[1]
model = minislm.load(ROOT / "weights" / "tiny-llama")
calib = calibration_batches(model, None, n_samples=32, seqlen=128, seed=0)
text = default_text("test")


def ppl(m) -> float:
    return perplexity(m, text, seqlen=128, limit=8192, progress=False).perplexity


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
for rank in (4, 16):
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
# ## A GGUF block by hand
# Q4_0 on one block of 32 weights: m is the weight of largest magnitude (sign
# kept), d = m / −8, codes q = min(15, ⌊w/d + 8.5⌋), so m lands exactly on
# code 0 and ŵ = d·(q − 8). The 16 code bytes hold codes 0–15 in their low
# nibbles and codes 16–31 in their high nibbles.

# %%
w = np.asarray(model.params["model.layers.0.mlp.up_proj.weight"][0, :32], dtype=np.float32)
block = quantize_blocks(w, "q4_0")
d = block[:2].view(np.float16)[0]
print(f"{block.size} bytes: d = {float(d):.4g}, codes {block[2:].tobytes().hex(' ')}")
w_hat = dequantize_blocks(block, "q4_0")
print(f"max |w − ŵ| = {np.abs(w - w_hat).max():.3g} (step |d| = {abs(float(d)):.3g}; the far tail\n"
      "can clip by a whole step: −m would need code 16)")

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
# ## An INT8 KV cache
# Each cached key (and value) vector of a head at one position is stored as
# int8 codes with one float32 scale s = max|k| / 127: D + 4 bytes instead of
# 4·D. Generation takes the cache object to fill; the float32 and INT8 caches
# are compared on the same prompt, then by perplexity over 8 held-out windows.

# %%
prompt = np.array([calib[1, :16]])
caches = {"float32": KVCache(), "int8": Int8KVCache()}
outs = {name: minislm.generate(model, prompt, 24, stop_tokens=(), cache=c)
        for name, c in caches.items()}
same = int((outs["int8"] == outs["float32"]).all(axis=0)[16:].sum())
print(f"cache bytes after 40 positions: float32 {caches['float32'].nbytes:,}, "
      f"int8 {caches['int8'].nbytes:,} ({caches['float32'].nbytes / caches['int8'].nbytes:.2f}× "
      f"smaller); {same}/24 generated tokens identical")
test_ids = np.array(encode(model.tokenizer, text)[:8 * 128])
windows = test_ids.reshape(8, 128)                               # held-out windows
kv_ppl = {}
for name, make in (("float32", KVCache), ("int8", Int8KVCache)):
    nll = [token_nll(minislm.forward(model, w[None, :-1], cache=make()), w[None, 1:]).mean()
           for w in windows]
    kv_ppl[name] = float(np.exp(np.mean(nll)))
    print(f"{name:>8} KV cache: perplexity {kv_ppl[name]:.3f}")

# %%
shutil.rmtree(tmp)
assert caches["int8"].nbytes < caches["float32"].nbytes / 3
assert abs(kv_ppl["int8"] / kv_ppl["float32"] - 1) < 0.01
assert results[16][0] <= results[0][0]
assert sizes["q4_0"] < sizes["q8_0"] < sizes["f32"]
assert np.abs(w - w_hat).max() <= abs(float(d)) * 1.01 + 1e-6   # one step at the far tail
