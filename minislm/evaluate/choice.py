"""Multiple choice by log-likelihood (HellaSwag, Winogrande; voice-assistant thesis Table 6.2).

Each choice i is a (context cᵢ, continuation yᵢ) pair; its score is the
log-likelihood of the continuation tokens given the context

    ℓᵢ = Σ_t log p(yᵢ,t | cᵢ, yᵢ,<t)

and the prediction is argmaxᵢ ℓᵢ (`accuracy`). `accuracy_norm` uses
ℓᵢ / bytes(yᵢ), which stops long endings from being penalised for their
length (lm-evaluation-harness' acc / acc_norm).

Shapes of data accepted (`load_choice_file`):
  * HellaSwag JSONL (`ctx` or `ctx_a` + `ctx_b`, `activity_label`, `endings`,
    `label`): context "activity_label: ctx", continuations " " + ending;
  * HellaSwag text, optionally .bz2 (``shared/data/hellaswag``): six lines per
    task — "activity_label: context", the gold index 0–3, then the four endings;
  * Winogrande JSONL (`sentence` with one "_", `option1`, `option2`, `answer`
    "1"/"2"): "partial" scoring — context = the sentence up to "_" with the
    option filled in, continuation = the rest of the sentence (same for both
    options), so only how well each option fits the rest is compared;
  * generic JSONL: `context`, `choices`, `label` (index);
  * the project's own set (`corpus_choice_set`, `--data corpus` on the command
    line): sentence completion on the held-out test split of the default corpus
    (CPython docstrings of modules the tiny models never saw). Each item is one
    prose sentence of 8–30 words cut after half its words; the true second half
    competes with the second halves of three other sentences drawn at random
    (seeded), the gold position drawn at random too. Chance is 25 %; a model
    that has learned English and Python-docs grammar does clearly better.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.files import read_jsonl, read_lines
from ..errors import InputError
from ..model.forward import forward
from ..tokenizer import encode
from .perplexity import token_nll


@dataclass(frozen=True)
class ChoiceItem:
    """One multiple-choice task: the model scores each context + continuation; `gold` is
    the index of the right one."""
    contexts: tuple[str, ...]          # one context per choice
    continuations: tuple[str, ...]     # one continuation per choice
    gold: int


def _hellaswag_clean(text: str) -> str:
    """lm-evaluation-harness' HellaSwag preprocessing: WikiHow markers out, spaces collapsed."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _gold(value, n_choices: int, where: str, one_based: bool = False) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        g = int(value) - (1 if one_based else 0)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: gold label {value!r} is not an integer") from None
    if not 0 <= g < n_choices:
        raise InputError(f"{where}: gold label {value!r} out of range for {n_choices} choices")
    return g


def _strings(value, where: str, field: str, n: int | None = None) -> tuple[str, ...]:
    if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            and (n is None or len(value) == n)):
        raise InputError(f"{where}: '{field}' must be a non-empty list of strings"
                         + (f" of length {n}" if n else "") + f", found {value!r:.80}")
    return tuple(value)


def _string(row: dict, field: str, where: str) -> str:
    if not isinstance(row.get(field), str):
        raise InputError(f"{where}: '{field}' must be a string, found {row.get(field)!r:.80}")
    return row[field]


def item_from_row(row: dict, where: str) -> ChoiceItem:
    """One JSONL row of any supported shape as a ChoiceItem."""
    if "sentence" in row:                                             # Winogrande
        sentence = _string(row, "sentence", where)
        options = (_string(row, "option1", where), _string(row, "option2", where))
        if sentence.count("_") != 1:
            raise InputError(f"{where}: a Winogrande sentence needs exactly one '_' blank")
        i = sentence.index("_")
        rest = " " + sentence[i + 1:].strip()
        return ChoiceItem(tuple(sentence[:i] + o for o in options), (rest, rest),
                          _gold(row.get("answer"), 2, where, one_based=True))
    if "endings" in row:                                              # HellaSwag
        endings = _strings(row["endings"], where, "endings")
        if "ctx" in row:
            ctx = _string(row, "ctx", where)
        else:
            ctx = _string(row, "ctx_a", where) + " " + _string(row, "ctx_b", where).capitalize()
        if isinstance(row.get("activity_label"), str) and row["activity_label"]:
            ctx = f"{row['activity_label']}: {ctx}"
        return ChoiceItem((_hellaswag_clean(ctx),) * len(endings),
                          tuple(" " + _hellaswag_clean(e) for e in endings),
                          _gold(row.get("label"), len(endings), where))
    if "context" in row and "choices" in row:
        choices = _strings(row["choices"], where, "choices")
        return ChoiceItem((_string(row, "context", where),) * len(choices), choices,
                          _gold(row.get("label", row.get("answer")), len(choices), where))
    raise InputError(f"{where}: unrecognised multiple-choice row; expected HellaSwag "
                     "(ctx, endings, label), Winogrande (sentence, option1, option2, answer) "
                     "or (context, choices, label)")


def load_choice_file(path, limit: int | None = None) -> list[ChoiceItem]:
    """Items from a JSONL file or a HellaSwag six-line text file (.txt or .txt.bz2)."""
    path = Path(path)
    lines = read_lines(path, "multiple-choice file")
    first = next((ln for ln in lines if ln.strip()), "")
    items = []
    if first.lstrip().startswith("{"):
        for lineno, row in read_jsonl(path, "multiple-choice file"):
            items.append(item_from_row(row, f"{path}:{lineno}"))
            if limit is not None and len(items) >= limit:
                break
    else:
        if len(lines) % 6:
            raise InputError(f"{path}: HellaSwag text format has 6 lines per task, found "
                             f"{len(lines)} lines (not a multiple of 6)")
        for k in range(0, len(lines), 6):
            ctx, gold, endings = lines[k], lines[k + 1], lines[k + 2:k + 6]
            items.append(ChoiceItem((ctx,) * 4, tuple(" " + e for e in endings),
                                    _gold(gold, 4, f"{path}:{k + 2}")))
            if limit is not None and len(items) >= limit:
                break
    if not items:
        raise InputError(f"{path}: contains no items")
    return items


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def corpus_choice_set(n_items: int = 100, n_choices: int = 4, seed: int = 0,
                      split: str = "test", documents=None) -> list[ChoiceItem]:
    """Sentence-completion items from the default corpus (see the module docstring);
    `documents` replaces the corpus split by any list of texts."""
    if documents is None:
        from ..data.corpus import default_corpus
        documents = default_corpus()[split]
    sentences = []
    for document in documents:
        for sentence in SENTENCE_END.split(" ".join(document.split())):
            words = sentence.split()
            if 8 <= len(words) <= 30 and sentence[0].isupper() and sentence[-1] == ".":
                sentences.append(words)
    sentences = list({" ".join(w): w for w in sentences}.values())          # unique, in order
    if len(sentences) < n_choices:
        raise InputError(f"only {len(sentences)} usable sentences (8-30 words, capitalised, "
                         f"ending in '.'); need at least {n_choices}")
    rng = np.random.default_rng(seed)
    items = []
    def ending(words):
        return " " + " ".join(words[len(words) // 2:])

    for i in rng.permutation(len(sentences))[:n_items]:
        words = sentences[i]
        cut = len(words) // 2
        endings = [ending(words)]                     # distractors: other, distinct endings
        for j in rng.permutation(len(sentences)):
            if len(endings) == n_choices:
                break
            if ending(sentences[j]) not in endings:
                endings.append(ending(sentences[j]))
        if len(endings) < n_choices:
            raise InputError(f"fewer than {n_choices} distinct sentence endings")
        gold = int(rng.integers(n_choices))
        endings.insert(gold, endings.pop(0))
        context = " ".join(words[:cut])
        items.append(ChoiceItem((context,) * n_choices, tuple(endings), gold))
    return items


def continuation_logprob(model, context: str, continuation: str) -> tuple[float, int]:
    """(Σ log p(continuation tokens | context), tokens read): one forward over both."""
    ctx_ids = encode(model.tokenizer, context)
    whole = encode(model.tokenizer, context + continuation)
    if whole[:len(ctx_ids)] == ctx_ids and len(whole) > len(ctx_ids):
        cont_ids = whole[len(ctx_ids):]
    else:                                  # the merge crossed the boundary: encode apart
        cont_ids = encode(model.tokenizer, continuation)
    if not cont_ids:
        raise InputError(f"empty continuation after tokenization: {continuation!r}")
    ids = (ctx_ids + cont_ids)[-model.config.max_position - 1:]   # keep the end if too long
    ids = np.array(ids, dtype=np.int64)
    logits = forward(model, ids[None, :-1], check_numerics=True)      # [1, T-1, V]
    nll = token_nll(logits, ids[None, 1:])[0]                         # [T-1]
    return -float(nll[-len(cont_ids):].sum(dtype=np.float64)), len(ids)


def evaluate_choice(model, items, progress: bool = True) -> dict:
    """accuracy (argmax Σ log p) and accuracy_norm (per byte) over the items."""
    items = list(items)
    if not items:
        raise InputError("evaluate_choice: no items to evaluate")
    correct = correct_norm = tokens = 0
    for it in tqdm(items, desc="choice", leave=False, disable=not progress):
        scored = [continuation_logprob(model, c, y) for c, y in zip(it.contexts, it.continuations)]
        ll = np.array([s for s, _ in scored])
        tokens += sum(n for _, n in scored)
        n_bytes = np.array([max(len(y.encode("utf-8")), 1) for y in it.continuations])
        correct += int(np.argmax(ll) == it.gold)
        correct_norm += int(np.argmax(ll / n_bytes) == it.gold)
    n = len(items)
    return {"accuracy": correct / n, "accuracy_norm": correct_norm / n, "items": n,
            "tokens": tokens,
            "chance": float(np.mean([1.0 / len(it.continuations) for it in items]))}
