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
import json

import numpy as np

import minislm
from common import WEIGHTS, load_tiny
from minislm.model import families
from minislm.model.forward import final_norm
from minislm.tokenizer import decode, encode

gpt2 = load_tiny("gpt2")
llama = load_tiny("llama")
print(gpt2.config)

# %% [markdown]
# ## Text -> pieces -> ids
# The tokenizer is byte-level BPE: it starts from the 256 bytes and merges the
# most frequent pairs learnt from the corpus, so any string can be encoded.
#
# Write it first. The pre-tokenizer cuts the text into words and spells each
# word's UTF-8 bytes as printable characters (a space becomes `Ġ`). Training
# learnt an ordered list of merges (rank 0 was the most frequent pair). Encoding
# a word repeats one step until no adjacent pair is a known merge:
#
#     (a, b) = argmin over adjacent pairs of rank(a, b);   replace "a b" by "ab"

# %%
merges = json.loads(gpt2.tokenizer.to_str())["model"]["merges"]
rank = {tuple(pair): r for r, pair in enumerate(merges)}


def bpe_word(word: str) -> list[str]:
    """The pieces of one pre-tokenized word: merge the lowest-ranked pair until none is left."""
    parts = list(word)
    while len(parts) > 1:
        best, i = min((rank.get(pair, len(rank)), i) for i, pair in enumerate(zip(parts, parts[1:])))
        if best == len(rank):                       # no adjacent pair was ever merged
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


text = "Return the number of items in a container."
words = [w for w, _ in gpt2.tokenizer.pre_tokenizer.pre_tokenize_str(text)]
by_hand = [piece for word in words for piece in bpe_word(word)]
print(f"{len(merges)} merges; words {words}")
assert by_hand == gpt2.tokenizer.encode(text).tokens, "our merge loop must cut like the library"
rare = "Ġmemoizing"                                  # a word the docstrings rarely use
print(f"{rare!r} -> {bpe_word(rare)}")
assert bpe_word(rare) == gpt2.tokenizer.encode(" memoizing").tokens

# %% [markdown]
# The merge loop cuts exactly like the library's tokenizer; from here on we use
# the library, which also maps pieces to ids and back.

# %%
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
# The tiny GPT-2's LM head reuses E (tied weights): logits = h Eᵀ, so a
# token's score is the dot product of the final hidden state with that token's
# embedding row. The tiny LLaMA has its own head matrix (untied), and its
# embedding has no position term:

# %%
streams = []
logits = minislm.forward(gpt2, np.array([ids]), hidden_states=streams)    # [1, T, V]
h = final_norm(gpt2, streams[-1])[0]                                     # last block's output, normed
assert gpt2.config.tied and np.allclose(h @ E.T, logits, atol=1e-4), "tied: logits = h Eᵀ"

E_llama = llama.params[families.embedding_name(llama.config, llama.prefix)]
ids_llama = encode(llama.tokenizer, text)
hidden_llama = []
minislm.forward(llama, np.array([ids_llama]), hidden_states=hidden_llama)
assert np.array_equal(hidden_llama[0][0], E_llama[ids_llama])
assert not llama.config.tied
print("tied head: GPT-2", gpt2.config.tied, "| LLaMA", llama.config.tied,
      "| LLaMA GQA: heads", llama.config.n_head, "kv-heads", llama.config.n_kv_head)

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
        folder = WEIGHTS / name
        hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
        assert hf_tok(text)["input_ids"][-len(token_ids):] == token_ids
        hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        with torch.no_grad():
            ref = hf(torch.tensor([token_ids]), output_hidden_states=True).hidden_states[0][0]
        diff = np.abs(ref.numpy() - ours).max()
        print(f"{name}: token ids equal, embedding max |Δ| = {diff:.2e}")
        assert diff < 1e-6

# %% [markdown]
# ## Exercises (solutions: `lessons/solutions/01_tokens_and_embeddings.py`)
# 1. Keep only the first 1000 of the merges. Predict: every text takes at
#    least as many tokens as before (fewer merges can only leave more pieces),
#    and decoding still gives the text back.
# 2. Encode `"naïve café ☕"`. Predict: it round-trips although the corpus is
#    nearly all ASCII, and it takes at most one token per UTF-8 byte.
# 3. Write the same word at two positions. Predict: GPT-2's first residual
#    rows for the two copies differ by exactly P[t₁] − P[t₂]; LLaMA's are equal.
