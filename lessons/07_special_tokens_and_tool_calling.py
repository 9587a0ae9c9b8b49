# %% [markdown]
# # Lesson 07 — Special tokens and tool calling
#
# The voice-assistant thesis turns small LMs into in-car assistants that answer
# with a tool call,
#
#     User: Call John Doe.
#     Assistant: <tool_call>[{"name": "make_call", "arguments": {"contact": "John Doe"}}]</tool_call>
#
# and scores them on three axes (its Table 5.2): **tool** (the right function),
# **syntax** (a well-formed block) and **parameters** (the right arguments).
# Its finding: fine-tuning lifts all three, and giving the delimiters their own
# tokens (`resize_token_embeddings`) helps further.
#
# We repeat that on the tiny LLaMA with the project's own tool-call data
# (`minislm.data.tasks`: 960 training prompts, held-out test split): the base
# model, a full fine-tune on the plain-text format, and the same fine-tune
# after adding `<tool_call>` / `</tool_call>` as tokens.

# %%
from pathlib import Path

import numpy as np

import minislm
from minislm.adapt import special_tokens
from minislm.evaluate.toolcall import evaluate_toolcall, heldout_examples

from common import TOOLCALL_RECIPE, finetune_toolcall, side_by_side

ROOT = Path(__file__).resolve().parents[1]
STEPS, LR, BATCH = 150, 3e-3, 16      # ≈ 2.5 passes over the 960 training examples
base = minislm.load(ROOT / "weights" / "tiny-llama")
test = heldout_examples(60)           # the first 60 test prompts, every category interleaved
print(f"{len(test)} held-out prompts, e.g. {test[0]['prompt']!r} -> {test[0]['response']}")

# %% [markdown]
# ## How the delimiters are spelled
# A byte-level BPE trained on Python docstrings has never seen `<tool_call>`:
# it spells it in pieces the model must emit in the right order. After
# `add_tokens` each delimiter is one id; its embedding row (and LM-head row)
# starts at the mean of the existing rows, so the old tokens' logits are
# unchanged and the new ones start neither favoured nor impossible.

# %%
grown = special_tokens.add_tokens(base)
answer = ' <tool_call>[{"name": "make_call", "arguments": {"contact": "Mom"}}]</tool_call>'
for name, m in (("base tokenizer", base), ("with tool tokens", grown)):
    pieces = m.tokenizer.encode(answer).tokens
    print(f"{name:17s} {len(pieces):3d} tokens: {pieces[:8]} ...")
print(f"vocabulary {base.config.vocab_size} -> {grown.config.vocab_size}")
probe = np.array([base.tokenizer.encode("User: Call Mom.\nAssistant:").ids])
unchanged = np.abs(minislm.forward(grown, probe)[..., :base.config.vocab_size]
                   - minislm.forward(base, probe)).max()
assert unchanged < 1e-5 and special_tokens.token_ids(grown) == [base.config.vocab_size,
                                                                 base.config.vocab_size + 1]

# %% [markdown]
# ## Before and after fine-tuning
# Full fine-tuning, loss on the answer tokens only (the prompt is given), the
# same steps, learning rate and batches for both variants. Evaluation: greedy
# decoding up to the end of the line, parsed with `parse_tool_calls`.

# %%
results = {"base": evaluate_toolcall(base, test, progress=False)}
starts = {"fine-tuned": base, "fine-tuned + tool tokens": grown}
recipe = {**TOOLCALL_RECIPE, "steps": STEPS, "lr": LR, "batch_size": BATCH}
# the two fine-tunes are independent: side by side on two free cores (common.py)
trained = side_by_side(finetune_toolcall, *((start, recipe) for start in starts.values()))
for name, (tuned, losses) in zip(starts, trained):
    print(f"{name}: training loss {losses[0]:.2f} -> {np.mean(losses[-10:]):.2f}")
    results[name] = evaluate_toolcall(tuned, test, progress=False)

print(f"\n{'model':26s} {'tool':>6s} {'syntax':>7s} {'params':>7s} {'all':>6s}")
for name, r in results.items():
    print(f"{name:26s} {r['tool_accuracy']:6.2f} {r['syntax_accuracy']:7.2f} "
          f"{r['parameter_accuracy']:7.2f} {r['accuracy']:6.2f}")
for name, r in results.items():
    sample = r["examples"][0]
    print(f"\n{name}: {sample['prompt']!r}\n  -> {sample['answer'][:110]!r}")

# %% [markdown]
# The base model never writes a tool call (its "tool" score comes only from the
# general-knowledge questions, where *not* calling a tool is right). After
# 150 AdamW steps the tiny model has learnt the format and mostly the tool;
# the single-token delimiters make the format easier still. Copying slot
# values (names, places, numbers) exactly is the hard part for a model of a
# couple of million parameters — parameter extraction was the weakest column
# in the thesis too. (Longer runs help: `minislm finetune --steps 300` reaches
# tool 0.98 / syntax 0.99 / parameters 0.19 on the whole test split.)

# %%
tuned_tool = max(results[k]["tool_accuracy"] for k in results if k != "base")
assert tuned_tool > results["base"]["tool_accuracy"] + 0.2
assert max(results[k]["syntax_accuracy"] for k in results if k != "base") > 0.5
