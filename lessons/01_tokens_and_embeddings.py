# %% [markdown]
# # Lesson 01 — Tokens and embeddings
#
# A language model never sees text. A tokenizer cuts text into pieces from a
# fixed vocabulary and hands the model their integer ids; the first thing the
# model does is look each id up in an embedding table E [V, C] — one row of C
# numbers per token. GPT-2 then adds a learned position row P[t]; LLaMA adds
# nothing here and rotates queries and keys by position later (RoPE, lesson 02).
#
# We use the tiny models shipped in `weights/` (trained by `minislm train`, see
# `weights/README.md`) and check every number against `transformers`.

# %%
from pathlib import Path

import numpy as np

import minislm
from minislm.model import families
from minislm.tokenizer import decode, encode

ROOT = Path(__file__).resolve().parents[1]
gpt2 = minislm.load(ROOT / "weights" / "tiny-gpt2")
llama = minislm.load(ROOT / "weights" / "tiny-llama")
print(gpt2.config)

# %% [markdown]
# ## Text -> pieces -> ids
# The tokenizer is byte-level BPE: it starts from the 256 bytes and merges the
# most frequent pairs learnt from the corpus, so any string can be encoded.

# %%
text = "Return the number of items in a container."
ids = encode(gpt2.tokenizer, text)
pieces = gpt2.tokenizer.encode(text).tokens
print(f"{len(text)} characters -> {len(ids)} tokens")
for piece, i in zip(pieces, ids):
    print(f"{i:6d}  {piece!r}")
assert decode(gpt2.tokenizer, ids) == text, "byte-level BPE must round-trip exactly"

# %% [markdown]
# ## The embedding lookup
# x₀[t] = E[ids[t]] (+ P[t] for GPT-2). E is a plain array in `model.params`,
# under the checkpoint's own name.

# %%
E = gpt2.params[families.embedding_name(gpt2.config, gpt2.prefix)]   # [V, C]
P = gpt2.params[gpt2.prefix + "wpe.weight"]                          # [T_max, C]
x0 = E[ids] + P[: len(ids)]                                          # [T, C]
print("E", E.shape, "P", P.shape, "x0", x0.shape, x0.dtype)

hidden = []
minislm.forward(gpt2, np.array([ids]), hidden_states=hidden)
assert np.array_equal(hidden[0][0], x0), "forward's first residual stream is E[ids] + P[t]"

# %% [markdown]
# The LM head reuses E (tied weights): logits = h Eᵀ, so a token's score is the
# dot product of the final hidden state with that token's embedding row.
# LLaMA's embedding has no position term:

# %%
E_llama = llama.params[families.embedding_name(llama.config, llama.prefix)]
ids_llama = encode(llama.tokenizer, text)
hidden_llama = []
minislm.forward(llama, np.array([ids_llama]), hidden_states=hidden_llama)
assert np.array_equal(hidden_llama[0][0], E_llama[ids_llama])
print("LLaMA tied head:", llama.config.tied, "| GQA: heads", llama.config.n_head,
      "kv-heads", llama.config.n_kv_head)

# %% [markdown]
# ## Against transformers
# The same folder loaded by `transformers` must give the same token ids and the
# same embedding output (its `hidden_states[0]`).

# %%
try:
    import torch
    import transformers
except ImportError:
    print("transformers not installed (pip install -e '.[reference]'): comparison skipped")
else:
    for name, model, token_ids, ours in (("tiny-gpt2", gpt2, ids, x0),
                                         ("tiny-llama", llama, ids_llama, hidden_llama[0][0])):
        folder = ROOT / "weights" / name
        hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
        assert hf_tok(text)["input_ids"][-len(token_ids):] == token_ids
        hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        with torch.no_grad():
            ref = hf(torch.tensor([token_ids]), output_hidden_states=True).hidden_states[0][0]
        diff = np.abs(ref.numpy() - ours).max()
        print(f"{name}: token ids equal, embedding max |Δ| = {diff:.2e}")
        assert diff < 1e-6
