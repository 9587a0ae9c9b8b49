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
import json
import re

import numpy as np

import minislm
from minislm.adapt import special_tokens
from minislm.evaluate.toolcall import evaluate_toolcall, heldout_examples, score_answer

from common import (TOOLCALL_RECIPE, WEIGHTS, finetune_toolcall, load_tiny, side_by_side,
                    store_toolcall_model)

STEPS, LR, BATCH = 150, 3e-3, 16      # ≈ 2.5 passes over the 960 training examples
base = load_tiny("llama")
test = heldout_examples(60)           # the first 60 test prompts, every category interleaved
print(f"{len(test)} held-out prompts, e.g. {test[0]['prompt']!r} -> {test[0]['response']}")

# %% [markdown]
# ## How the delimiters are spelled
# A byte-level BPE trained on Python docstrings has never seen `<tool_call>`:
# it spells it in pieces the model must emit in the right order. After
# `add_tokens` each delimiter is one id; its embedding row (and LM-head row)
# starts at the mean of the existing rows, so the old tokens' logits are
# unchanged and the new ones start neither favoured nor impossible. Written
# first, for the embedding E [V, C] and the untied head W [V, C]:
#
#     E' = [E; ē; ē],   W' = [W; w̄; w̄]       ē, w̄ = the mean row over the V real tokens

# %%
grown = special_tokens.add_tokens(base)
for name in ("model.embed_tokens.weight", "lm_head.weight"):
    E = base.params[name]
    by_hand = np.concatenate([E, np.repeat(E.mean(0, keepdims=True), 2, axis=0)])
    assert np.allclose(grown.params[name], by_hand, atol=1e-7), name
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
# The reference for the tokenizer side: transformers' tokenizer of the same
# folder, given the same two tokens with `add_tokens`, must give the same ids.

# %%
try:
    import transformers
except ImportError:
    print("transformers not installed (pip install -e '.[reference]'): comparison skipped")
else:
    hf_tok = transformers.AutoTokenizer.from_pretrained(WEIGHTS / "tiny-llama")
    hf_tok.add_tokens(list(special_tokens.TOOL_TOKENS))
    hf_ids = hf_tok(answer, add_special_tokens=False)["input_ids"]
    assert hf_ids == grown.tokenizer.encode(answer, add_special_tokens=False).ids
    print(f"transformers' tokenizer + add_tokens: the same {len(hf_ids)} ids")

# %% [markdown]
# ## Scoring one answer, written first
# The three axes of a tool-call answer: read the first `<tool_call>[...]</tool_call>`
# block as JSON (syntax), compare the called names (tool), then names and
# arguments, strings case- and space-insensitively (parameters). There is no
# independent reference for this step: the voice-assistant thesis publishes
# its definitions but no scorer, and its Table 5.2 scores 0.5-3 B models on its
# own data, so its numbers cannot be compared with a 2 M-parameter model's.

# %%
def score_by_hand(text, expected):
    block = re.search(r"<tool_call>(.*?)</tool_call>", text, re.S)
    try:
        calls = json.loads(block.group(1)) if block else None
    except json.JSONDecodeError:
        calls = None
    syntax = isinstance(calls, list) and len(calls) > 0 and all(
        isinstance(c, dict) and set(c) == {"name", "arguments"} for c in calls)
    tool = syntax and [c["name"] for c in calls] == [c["name"] for c in expected]
    same = syntax and len(calls) == len(expected) and all(
        c["name"] == e["name"] and set(c["arguments"]) == set(e["arguments"]) and all(
            str(c["arguments"][k]).strip().lower() == str(v).strip().lower()
            for k, v in e["arguments"].items()) for c, e in zip(calls, expected))
    return {"tool": tool, "syntax": syntax, "parameters": same}


expected = [{"name": "make_call", "arguments": {"contact": "Mom"}}]
for text in (answer, answer.replace("Mom", "mom "), answer.replace("Mom", "Dad"),
             answer.replace("make_call", "send_message"), answer[:-12], "Calling Mom now."):
    ours, library = score_by_hand(text, expected), score_answer(text, expected)
    assert ours == {k: library[k] for k in ours}, (text, ours, library)
print("tool / syntax / parameters by hand = score_answer on six answers")

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
# the tool-token model is the running example of lessons 09-15 (common.toolcall_model)
assert recipe == TOOLCALL_RECIPE and TOOLCALL_RECIPE["tool_tokens"]
store_toolcall_model(*trained[1], TOOLCALL_RECIPE)

print(f"\n{'model':26s} {'tool':>6s} {'syntax':>7s} {'params':>7s} {'all':>6s}")
for name, r in results.items():
    print(f"{name:26s} {r['tool_accuracy']:6.2f} {r['syntax_accuracy']:7.2f} "
          f"{r['parameter_accuracy']:7.2f} {r['accuracy']:6.2f}")
for name, r in results.items():
    sample = r["examples"][0]
    print(f"\n{name}: {sample['prompt']!r}\n  -> {sample['answer'][:110]!r}")

# %% [markdown]
# The base model never writes a correct tool call (its "tool" score comes only
# from the general-knowledge questions, where *not* calling a tool is right).
# After 150 AdamW steps the tiny model has learnt the format and mostly the
# tool. Copying slot values (names, places, numbers) exactly is the hard part
# for a model of a couple of million parameters: parameters is the weakest
# column here, as it was in the thesis.

# %%
tuned = [k for k in results if k != "base"]
assert results["base"]["parameter_accuracy"] == 0
assert max(results[k]["tool_accuracy"] for k in tuned) > results["base"]["tool_accuracy"] + 0.2
assert max(results[k]["syntax_accuracy"] for k in tuned) > 0.5
assert all(results[k]["parameter_accuracy"] < min(results[k]["tool_accuracy"],
                                                  results[k]["syntax_accuracy"]) for k in tuned)

# %% [markdown]
# ## Exercises (solutions: `lessons/solutions/07_special_tokens_and_tool_calling.py`)
# 1. Score every held-out example's own expected response. Predict: 1.0 on all
#    three axes (the scorer accepts what the data generator writes).
# 2. Cut the closing `</tool_call>` off the right answers. Predict: syntax, tool
#    and parameters all drop to 0 on the tool examples.
# 3. Add a third token, `<|user|>`, to the grown model. Predict: the vocabulary
#    grows by one more, the first V + 2 rows are untouched, and the old logits
#    stay the same.
