"""Question answering with the LLaMA thesis' three-tier matching (§3.6.2).

Prompts (closed book tests what the weights remember, open book reading):

    closed:  "Question: {question} Answer:"
    open:    "Context: {context} Question: {question} Answer:"

The model continues greedily for at most `max_new_tokens` (thesis: 1–50)
tokens; the answer is the continuation up to its first line break. It is
correct when, for some gold alias a, the first of these tiers holds:

    1. exact      norm(answer) == norm(a)
    2. substring  the words of norm(a) appear, in order and contiguous, among
                  the words of norm(answer)
    3. fuzzy      |W(answer) ∩ W(a)| / |W(a)| ≥ 0.8   (a of two or more words)   (eq. 3.13)

norm is SQuAD's answer normalisation (lower-case; strip punctuation, the
articles a/an/the and extra whitespace) with one change for numbers: a
punctuation mark between two digits stays ("3.5" is not "35", "1-2" is not
"12"), except a thousands comma, which goes ("1,000" is "1000"). W is the set
of words of the normalised text. The substring tier matches whole words, not
characters: "120" does not contain the answer "12".

Data:
  * any JSONL in the TriviaQA shape (`load_qa_jsonl`): `question`, answers as
    `answer: {"value", "aliases", "normalized_aliases"}` (Hugging Face
    trivia_qa) or `answer`/`answers` as a string or list; an open-book
    context from `context`, else the *shortest* non-empty passage of
    `search_results.search_context` or `entity_pages.wiki_context` (the thesis
    picks the shortest to bound the prompt length);
  * the project's own set (`project_qa_set`), made from the general-knowledge
    category of the tool-call task generator (`minislm.data.tasks`): each
    held-out question ("What is the capital of Peru?") comes with the
    assistant's answer sentence ("The capital of Peru is Lima."), which is
    the open-book context; the short gold answer ("Lima") is read from that
    sentence by the patterns in `ANSWER_PATTERNS` (capitals, authors,
    arithmetic, unit conversions; the free-form science facts have no short
    answer and are left out). No TriviaQA file could be obtained for this
    project, so this is what `minislm eval --task qa` uses by default.

`template="chat"` wraps both prompts in the "User: …\\nAssistant:" format the
shipped tiny models were trained on, so they are asked in the form they know.
"""
from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..data.files import read_jsonl
from ..errors import ConfigError, InputError
from ..model.cache import KVCache
from ..model.forward import forward
from ..tokenizer import decode, encode

FUZZY_THRESHOLD = 0.8
PROMPTS = {
    "thesis": {"closed": "Question: {question} Answer:",
               "open": "Context: {context} Question: {question} Answer:"},
    "chat": {"closed": "User: {question}\nAssistant:",
             "open": "User: Context: {context} Question: {question}\nAssistant:"},
}
# (kind, regex on the generator's answer sentence with the short answer as group "answer")
ANSWER_PATTERNS = (
    ("capital", re.compile(r"^The capital of .+ is (?P<answer>.+)\.$")),
    ("author", re.compile(r"^.+ was written by (?P<answer>.+)\.$")),
    ("arithmetic", re.compile(r"^-?\d+ (?:plus|minus|times) \d+ is (?P<answer>-?\d+)\.$")),
    ("conversion", re.compile(r"^[\d.]+ .+ is about (?P<answer>[\d.,]+) .+\.$")),
)
_PUNCT = re.escape(string.punctuation + "“”‘’–—")
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PUNCT_OUTSIDE_NUMBERS = re.compile(rf"(?<!\d)[{_PUNCT}]|[{_PUNCT}](?!\d)")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class QAItem:
    """One question with its accepted answers, and the passage for open-book QA (or None)."""
    question: str
    answers: tuple[str, ...]       # gold aliases
    context: str | None = None     # open-book passage


def normalize(text: str) -> str:
    """SQuAD normalisation: lower-case; no punctuation (but inside numbers), articles or
    extra whitespace."""
    text = _THOUSANDS_COMMA.sub("", text.lower())
    text = _PUNCT_OUTSIDE_NUMBERS.sub("", text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _contains_words(words: list[str], run: list[str]) -> bool:
    """True when `run` occurs as consecutive whole words of `words`."""
    n = len(run)
    return any(words[i:i + n] == run for i in range(len(words) - n + 1))


def match_tier(answer: str, aliases) -> str | None:
    """'exact', 'substring', 'fuzzy' (the first tier that holds for some alias) or None."""
    a = normalize(answer)
    golds = [g for g in (normalize(x) for x in aliases) if g]
    if any(a == g for g in golds):
        return "exact"
    words = a.split()
    if any(_contains_words(words, g.split()) for g in golds):
        return "substring"
    for g in golds:
        gold_words = set(g.split())
        shared = len(set(words) & gold_words)
        if len(gold_words) >= 2 and shared / len(gold_words) >= FUZZY_THRESHOLD:
            return "fuzzy"
    return None


# ----------------------------------------------------------------------------- data
def _answers_of(row: dict, where: str) -> tuple[str, ...]:
    ans = row.get("answer", row.get("answers"))
    if isinstance(ans, dict):
        aliases = [ans.get("value")] + list(ans.get("aliases") or []) + \
            list(ans.get("normalized_aliases") or [])
    elif isinstance(ans, str):
        aliases = [ans]
    elif isinstance(ans, list):
        aliases = list(ans)
    else:
        raise InputError(f"{where}: expected 'answer' as a string, a list of aliases or "
                         f"{{'value', 'aliases'}}, found {type(ans).__name__}")
    aliases = tuple(dict.fromkeys(str(a) for a in aliases if isinstance(a, str) and a.strip()))
    if not aliases:
        raise InputError(f"{where}: the item has no non-empty answer alias")
    return aliases


def _context_of(row: dict) -> str | None:
    if isinstance(row.get("context"), str) and row["context"].strip():
        return row["context"]
    passages = []
    for outer, inner in (("search_results", "search_context"), ("entity_pages", "wiki_context")):
        block = row.get(outer)
        if isinstance(block, dict) and isinstance(block.get(inner), list):
            passages += [p for p in block[inner] if isinstance(p, str) and p.strip()]
        if passages:
            break
    return min(passages, key=len) if passages else None


def load_qa_jsonl(path, limit: int | None = None) -> list[QAItem]:
    """QA items from a JSONL file in the TriviaQA shape (see the module docstring)."""
    items = []
    for lineno, row in read_jsonl(path, "QA file (JSONL, one question per line)"):
        where = f"{path}:{lineno}"
        if not isinstance(row.get("question"), str):
            raise InputError(f"{where}: expected an object with a string 'question'")
        items.append(QAItem(row["question"], _answers_of(row, where), _context_of(row)))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise InputError(f"{path}: contains no questions")
    return items


@functools.lru_cache(maxsize=4)
def project_qa_set(split: str = "test", seed: int = 0) -> tuple[QAItem, ...]:
    """The project's own QA set: general-knowledge items of the task generator's split."""
    from ..data.tasks import toolcall_dataset
    items = []
    for example in toolcall_dataset(seed=seed)[split]:
        if example["category"] != "general_knowledge":
            continue
        sentence = example["response"]
        for _, pattern in ANSWER_PATTERNS:
            m = pattern.match(sentence)
            if m:
                items.append(QAItem(example["prompt"], (m.group("answer"),), sentence))
                break
    return tuple(items)


# ----------------------------------------------------------------------------- scoring
@functools.lru_cache(maxsize=8)
def _line_break_ids(tokenizer) -> frozenset:
    """Token ids whose text contains a line break: generation stops on them."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    return frozenset(i for i in vocab.values() if "\n" in tokenizer.decode([i]))


def answer(model, prompt: str, max_new_tokens: int = 32) -> tuple[str, int]:
    """(the first non-empty line of the greedy continuation, tokens generated).

    Generation stops at EOS or at a line break that follows some text, so a
    model that starts its answer on a new line is not cut to nothing.
    """
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be a positive integer, found {max_new_tokens!r}")
    ids = encode(model.tokenizer, prompt)
    room = model.config.max_position - max_new_tokens
    if room < 1:
        raise ConfigError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in a "
                          f"context of {model.config.max_position}")
    ids = ids[-room:]                                   # long open-book contexts keep their end
    eos, breaks = set(model.config.eos_ids), _line_break_ids(model.tokenizer)
    cache = KVCache(capacity=len(ids) + max_new_tokens)
    z = forward(model, np.array([ids], dtype=np.int64), cache, check_numerics=True)[0, -1]
    new, text = [], ""
    for _ in range(max_new_tokens):
        token = int(z.argmax())
        if token in eos:
            break
        new.append(token)
        text = decode(model.tokenizer, new)
        if token in breaks and text.strip():
            break
        z = forward(model, np.array([[token]]), cache, check_numerics=True)[0, -1]
    return next((line.strip() for line in text.split("\n") if line.strip()), ""), len(new)


def evaluate_qa(model, items, modes=("closed", "open"), template: str = "thesis",
                max_new_tokens: int = 32, progress: bool = True) -> dict:
    """Accuracy per mode with the count of each matching tier; a few answers as examples."""
    if template not in PROMPTS:
        raise ConfigError(f"unknown QA template {template!r}; expected one of {sorted(PROMPTS)}")
    for mode in modes:
        if mode not in ("closed", "open"):
            raise ConfigError(f"unknown QA mode {mode!r}; expected 'closed' or 'open'")
    items = list(items)
    if not items:
        raise InputError("evaluate_qa: no questions to evaluate")
    result = {"items": len(items), "tokens": 0}
    for mode in modes:
        usable = [it for it in items if mode == "closed" or it.context]
        if not usable:
            continue
        tiers = {"exact": 0, "substring": 0, "fuzzy": 0}
        examples = []
        for it in tqdm(usable, desc=f"qa {mode}", leave=False, disable=not progress):
            prompt = PROMPTS[template][mode].format(question=it.question, context=it.context)
            text, n_new = answer(model, prompt, max_new_tokens)
            result["tokens"] += n_new
            tier = match_tier(text, it.answers)
            if tier:
                tiers[tier] += 1
            if len(examples) < 3:
                examples.append({"question": it.question, "answer": text, "gold": it.answers[0],
                                 "tier": tier})
        result[f"accuracy_{mode}"] = sum(tiers.values()) / len(usable)
        result[f"tiers_{mode}"] = tiers
        result[f"examples_{mode}"] = examples
        result[f"questions_{mode}"] = len(usable)
    # the headline number: closed book (knowledge kept in the weights) when evaluated
    result["accuracy"] = result.get("accuracy_closed", result.get("accuracy_open"))
    return result
