"""Tool-call accuracy: tool, syntax and parameters (voice-assistant thesis §4.4, §5.3.4).

For each held-out example the model continues "User: {prompt}\\nAssistant:"
greedily up to its first line break, and the answer is read with
`minislm.data.tasks.parse_tool_calls`. Three accuracies, as in the thesis'
Table 5.2 (Tool / Syntax / Params):

    tool        the called tool names equal the expected ones, in order
                (for a general-knowledge question: no tool is called)
    syntax      the answer has the expected form: a well-formed
                <tool_call>[{"name": …, "arguments": {…}}]</tool_call> block when a
                tool is expected, plain text without a tool-call tag otherwise
    parameters  over the examples that expect a tool: every call's name and
                arguments equal the expected ones (strings compared after
                lower-casing and stripping, numbers by value)

`accuracy` is the fraction of examples fully right: tool, syntax and (when a
tool is expected) parameters. The default examples are the test split of
`minislm.data.tasks.toolcall_dataset()` (10 % of each category, never trained
on); any JSONL of `{"prompt", "response"}` rows (the generator's format) works too.
"""
from __future__ import annotations

from tqdm import tqdm

from ..data.files import read_jsonl
from ..errors import InputError
from .qa import answer


def _same_value(a, b) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def same_calls(predicted: list[dict], expected: list[dict]) -> bool:
    """Names and arguments equal (see `_same_value`), in order."""
    if len(predicted) != len(expected):
        return False
    for p, e in zip(predicted, expected):
        if p["name"] != e["name"] or set(p["arguments"]) != set(e["arguments"]):
            return False
        if not all(_same_value(p["arguments"][k], v) for k, v in e["arguments"].items()):
            return False
    return True


def score_answer(text: str, expected_calls: list[dict] | None) -> dict:
    """{'tool', 'syntax', 'parameters' (None: no tool expected), 'correct'} of one answer."""
    from ..data.tasks import TOOL_CALL_OPEN, parse_tool_calls
    calls = parse_tool_calls(text)
    if expected_calls is None:                                  # a plain-text answer is expected
        tool = TOOL_CALL_OPEN not in text
        syntax = tool and bool(text.strip())
        return {"tool": tool, "syntax": syntax, "parameters": None, "correct": syntax}
    syntax = calls is not None
    tool = syntax and [c["name"] for c in calls] == [c["name"] for c in expected_calls]
    parameters = syntax and same_calls(calls, expected_calls)
    return {"tool": tool, "syntax": syntax, "parameters": parameters, "correct": parameters}


def load_toolcall_jsonl(path, limit: int | None = None) -> list[dict]:
    """Examples {'prompt', 'response', 'tool_calls', 'category'} from a JSONL file."""
    from ..data.tasks import parse_tool_calls, response_category
    rows = []
    for lineno, row in read_jsonl(path, 'tool-call file (JSONL of {"prompt", "response"})'):
        if not (isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str)):
            raise InputError(f"{path}:{lineno}: expected string fields 'prompt' and 'response'")
        calls = parse_tool_calls(row["response"])
        category = row.get("category")
        rows.append({"prompt": row["prompt"], "response": row["response"], "tool_calls": calls,
                     "category": category if isinstance(category, str)
                     else response_category(row["response"])})
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise InputError(f"{path}: contains no examples")
    return rows


def heldout_examples(limit: int | None = None, seed: int = 0) -> list[dict]:
    """The generator's test split; `limit` keeps the first n (categories are interleaved)."""
    from ..data.tasks import toolcall_dataset
    examples = toolcall_dataset(seed=seed)["test"]
    return examples[:limit] if limit is not None else examples


def evaluate_toolcall(model, examples, max_new_tokens: int = 64, progress: bool = True) -> dict:
    """Tool / syntax / parameter accuracy and the fully-correct fraction (also per category)."""
    from ..data.tasks import render_prompt
    examples = list(examples)
    if not examples:
        raise InputError("evaluate_toolcall: no examples to evaluate")
    scores, per_category, samples, tokens = [], {}, [], 0
    for ex in tqdm(examples, desc="toolcall", leave=False, disable=not progress):
        text, n_new = answer(model, render_prompt(ex["prompt"]), max_new_tokens)
        tokens += n_new
        s = score_answer(text, ex["tool_calls"])
        scores.append(s)
        cat = per_category.setdefault(ex.get("category") or "unknown", [0, 0])
        cat[0] += s["correct"]
        cat[1] += 1
        if len(samples) < 3:
            samples.append({"prompt": ex["prompt"], "answer": text, "expected": ex["response"]})
    with_tool = [s for s in scores if s["parameters"] is not None]
    n = len(scores)
    return {
        "accuracy": sum(s["correct"] for s in scores) / n,
        "tool_accuracy": sum(s["tool"] for s in scores) / n,
        "syntax_accuracy": sum(s["syntax"] for s in scores) / n,
        "parameter_accuracy": (sum(s["parameters"] for s in with_tool) / len(with_tool)
                               if with_tool else None),
        "items": n,
        "tokens": tokens,
        "per_category": {k: v[0] / v[1] for k, v in sorted(per_category.items())},
        "examples": samples,
    }
