# %% [markdown]
# # Lesson 17 — a real model from a GGUF file
#
# Until now every model was tiny and ours. Real small models usually arrive as
# **GGUF** files (llama.cpp, Ollama, LM Studio): one file holding the config as
# metadata, the tokenizer's vocabulary, and the weights in quantized blocks.
# Here we open SmolLM2-135M-Instruct (LLaMA architecture, Q4_1 blocks), decode
# blocks by hand — a Q4_1 block and a Q4_K super-block — and check every step
# against an independent reference: the `gguf` package and transformers for the
# values, transformers for the logits, llama.cpp for the predictions. Then we chat.
#
# The files come from `../shared/fetch-real-models` (or your own download) into
# `$MINISLM_REAL_MODELS`, default `~/.cache/minislm/real-models`. Without them
# the lesson says so and stops.

# %%
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

import minislm
from minislm.gguf import blocks
from minislm.gguf.reader import read_gguf

REAL = Path(os.environ.get("MINISLM_REAL_MODELS",
                           Path.home() / ".cache" / "minislm" / "real-models"))
SMOL = REAL / "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = REAL / "gemma-3-270m-q4_k_m.gguf"
if not SMOL.is_file():
    print(f"skipped: {SMOL} is absent (run ../shared/fetch-real-models, or set "
          "MINISLM_REAL_MODELS to the folder holding it)")
    sys.exit(0)

# %% [markdown]
# ## The container
# A GGUF file is a header ("GGUF", version, counts), key/value metadata, a
# table of tensors (name, dims innermost first, type, offset) and the aligned
# data. `read_gguf` parses the first three and memory-maps the data.

# %%
f = read_gguf(SMOL)
print(f"GGUF v{f.version}, {len(f.metadata)} metadata keys, {len(f.tensors)} tensors")
for key in ("general.architecture", "llama.block_count", "llama.embedding_length",
            "llama.attention.head_count", "llama.attention.head_count_kv",
            "llama.rope.freq_base", "tokenizer.ggml.model", "tokenizer.ggml.pre"):
    print(f"  {key:34} {f.metadata[key]}")
kinds = {}
for info in f.tensors.values():
    kinds[info.type_name] = kinds.get(info.type_name, 0) + 1
print("  tensor types:", kinds)

# %% [markdown]
# ## One Q4_1 block by hand
# 20 bytes hold 32 weights: an fp16 scale d, an fp16 minimum m, then 16 bytes
# whose low nibbles are codes 0–15 and high nibbles codes 16–31.
# The weight is x̂ = d · q + m (5 bits per weight).

# %%
name = "blk.0.attn_q.weight"
raw = f.tensor_bytes(name)
block = raw[:20]
d = block[0:2].view(np.float16)[0].astype(np.float32)
m = block[2:4].view(np.float16)[0].astype(np.float32)
q = np.concatenate([block[4:20] & 0x0F, block[4:20] >> 4]).astype(np.float32)
by_hand = d * q + m
library = blocks.dequantize(block, blocks.TYPE_IDS["Q4_1"], (32,))
print(f"d = {d:.5f}, m = {m:.5f}, codes {q[:8].astype(int)} ...")
print("first weights:", np.round(by_hand[:6], 5))
assert np.array_equal(by_hand, library)

# %% [markdown]
# ## One Q4_K super-block by hand (Gemma 3's file)
# K-quants group 256 weights into a 144-byte super-block: fp16 d and dmin,
# 12 bytes packing eight 6-bit (scale, min) pairs, and 128 bytes of 4-bit codes.
# Sub-block s (32 weights) gets x̂ = d·sc_s·q − dmin·m_s. The 6-bit pairs are
# packed so that the first four fit in the low 6 bits of bytes 0–7 and the last
# four borrow their top 2 bits from the high bits of those bytes.

# %%
if GEMMA.is_file():
    g = read_gguf(GEMMA)
    k_name = next(n for n, t in g.tensors.items() if t.type_name == "Q4_K")
    sb = g.tensor_bytes(k_name)[:144]
    d = sb[0:2].view(np.float16)[0].astype(np.float32)
    dmin = sb[2:4].view(np.float16)[0].astype(np.float32)
    s = sb[4:16].astype(np.int32)
    sc = [int(s[j] & 63) for j in range(4)] + \
        [int((s[j + 4] & 15) | (s[j - 4] >> 6) << 4) for j in range(4, 8)]
    mn = [int(s[j + 4] & 63) for j in range(4)] + \
        [int((s[j + 4] >> 4) | (s[j] >> 6) << 4) for j in range(4, 8)]
    codes = sb[16:144].reshape(4, 32)       # chunk c: low nibbles = sub-block 2c, high = 2c + 1
    q = np.stack([codes & 0x0F, codes >> 4], axis=1).reshape(8, 32).astype(np.float32)
    by_hand = (d * np.float32(sc)[:, None] * q - dmin * np.float32(mn)[:, None]).reshape(-1)
    library = blocks.dequantize(sb, blocks.TYPE_IDS["Q4_K"], (256,))
    print(f"{k_name}: d = {d:.3g}, dmin = {dmin:.3g}, scales {sc}, mins {mn}")
    assert np.array_equal(by_hand, library)
else:
    print(f"({GEMMA.name} absent: Q4_K part skipped)")

# %% [markdown]
# ## A whole tensor, against the references
# `gguf.quants.dequantize` is llama.cpp's own Python decoder, and transformers'
# GGUF loader calls it, then undoes what llama.cpp's converter did to the
# layout: for LLaMA's q and k it permuted the rows (llama.cpp rotates adjacent
# pairs (2i, 2i+1), transformers rotates halves (i, i + D/2)). minislm's loaded
# params are in transformers' layout.

# %%
model = minislm.load(SMOL)
ours = model.params["model.layers.0.self_attn.q_proj.weight"]
try:
    import gguf
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor
    reference = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_1).reshape(ours.shape)
    processor = LlamaTensorProcessor({"num_attention_heads": 9, "num_key_value_heads": 3})
    reference = processor.process(reference, name).weights
    print(f"q_proj {ours.shape}: equal to transformers' dequantization: "
          f"{np.array_equal(ours, reference)}")
    assert np.array_equal(ours, reference)
except ImportError:
    print("(gguf / transformers not installed: tensor comparison skipped)")

# %% [markdown]
# ## Logits: transformers and llama.cpp
# The model saved as a Hugging Face folder loads in transformers, which must
# compute the same logits. llama.cpp runs the *quantized* file with its own
# kernels (it also quantizes the activations to 8 bits), so we compare its
# predictions: near-ties may flip, most positions agree.

# %%
chat = ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\nThe capital of France is Paris.")
ids = model.tokenizer.encode(chat).ids
logits = minislm.forward(model, np.array([ids]))[0]
try:
    import torch
    import transformers
    with tempfile.TemporaryDirectory() as tmp:
        hf = transformers.AutoModelForCausalLM.from_pretrained(minislm.save(model, tmp))
        with torch.no_grad():
            theirs = hf(torch.tensor([ids])).logits[0].numpy()
    rel = np.abs(theirs - logits).max() / np.abs(theirs).max()
    print(f"transformers: max |Δlogit| / max |logit| = {rel:.2e}")
    assert rel < 1e-4
except ImportError:
    print("(transformers not installed: skipped)")
try:
    from llama_cpp import Llama
    llm = Llama(model_path=str(SMOL), n_ctx=128, logits_all=True, verbose=False, n_threads=1)
    assert llm.tokenize(chat.encode(), add_bos=False, special=True) == ids
    llm.eval(ids)
    cpp = np.asarray(llm.scores[:len(ids)])
    agree = np.mean(cpp.argmax(-1) == logits.argmax(-1))
    print(f"llama.cpp: same next-token prediction at {agree:.0%} of {len(ids)} positions, "
          f"max |Δlogit| {np.abs(cpp - logits).max():.2f} (largest logit {np.abs(logits).max():.0f})")
    assert agree >= 0.8
except ImportError:
    print("(llama-cpp-python not installed: skipped)")

# %% [markdown]
# ## A chat answer
# The ChatML markers are control tokens of the vocabulary, kept whole by the
# tokenizer; generation stops at <|im_end|> (the eos id in the file's metadata).

# %%
prompt = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\nGive me one tip for learning a new language.<|im_end|>\n"
          "<|im_start|>assistant\n")
ids = np.array([model.tokenizer.encode(prompt).ids])
out = minislm.generate(model, ids, 40)
answer = model.tokenizer.decode(list(out[0, ids.shape[1]:]), skip_special_tokens=True)
print(answer)
assert len(answer.split()) >= 3

# %% [markdown]
# ## Exercises
# 1. Predict, then check: how many bytes would `blk.0.attn_q.weight` take as Q8_0
#    (34 bytes per 32 weights) instead of Q4_1 (20)?
# 2. Forget to undo llama.cpp's q/k row permutation in layer 0: which logits change,
#    and do the predictions survive?
#
# Solution: (1) 34/20 of the Q4_1 bytes; (2) every position's logits move (RoPE now
# rotates the wrong pairs of q), and some predictions change — run the cell below.

# %%
print("Q8_0 size of", name, ":", f.tensors[name].nbytes * 34 // 20, "bytes vs",
      f.tensors[name].nbytes, "as Q4_1")
from minislm.gguf.convert import rope_rows_to_pairs  # noqa: E402

q_name = "model.layers.0.self_attn.q_proj.weight"
wrong = model.replace(params=dict(model.params, **{q_name: rope_rows_to_pairs(
    model.params[q_name], model.config.n_head)}))
ids = np.array([model.tokenizer.encode(chat).ids])
right_logits, wrong_logits = minislm.forward(model, ids)[0], minislm.forward(wrong, ids)[0]
changed = np.mean(right_logits.argmax(-1) != wrong_logits.argmax(-1))
print(f"max |Δlogit| {np.abs(right_logits - wrong_logits).max():.2f}; "
      f"{changed:.0%} of the next-token predictions change")
assert np.abs(right_logits - wrong_logits).max() > 0.1
