"""The shared set-up of the lessons: models, text, one perplexity yardstick, figures,
and the tool-calling model of lesson 07 that the compression lessons (09-15) judge.

    from common import OUT, load_tiny, ppl, calibration, save_figure, pyplot
    from common import toolcall_model, toolcall_score

Everything a lesson writes goes to OUT (default ``lessons/out/``, git-ignored;
``MINISLM_LESSON_OUT`` moves it). Lessons follow the library's BLAS thread policy
and set no thread count themselves.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

import minislm
from minislm.calibration import calibration_batches
from minislm.evaluate.perplexity import perplexity_of_ids

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"
OUT = Path(os.environ.get("MINISLM_LESSON_OUT", ROOT / "lessons" / "out"))

# The yardstick: the first PPL_TOKENS tokens of the corpus' validation split (modules
# the tiny models never trained on), non-overlapping windows of PPL_SEQLEN tokens.
# Every lesson measures with these same windows, so one model prints one number.
PPL_TOKENS, PPL_SEQLEN = 4096, 128

# Lesson 07's recipe for the tool-calling model: the tiny LLaMA with <tool_call> and
# </tool_call> as tokens, fully fine-tuned on the project's tool-call data.
TOOLCALL_RECIPE = {"base": "tiny-llama", "tool_tokens": True, "steps": 150, "lr": 3e-3,
                   "batch_size": 16, "seed": 0}
TOOLCALL_HELDOUT = 30       # held-out prompts toolcall_score greedily answers (seconds)


def out_dir(*parts: str) -> Path:
    """OUT (or a folder below it), created on first use."""
    folder = OUT.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ------------------------------------------------------------------ models and text
def load_tiny(name: str, **options):
    """A shipped model of ``weights/``: "gpt2" or "llama" (or "tiny-gpt2", "tiny-llama")."""
    folder = name if name.startswith("tiny-") else f"tiny-{name}"
    return minislm.load(WEIGHTS / folder, **options)


def corpus(split: str) -> str:
    """One split of the default corpus, kept under OUT/cache: rebuilding it parses the whole
    standard library (several CPU-seconds), and every lesson needs it."""
    from minislm.data.corpus import corpus_text
    key = hashlib.sha256(f"{sys.version}|{sys.base_prefix}".encode()).hexdigest()[:12]
    path = OUT / "cache" / f"corpus-{split}-{key}.txt"
    if path.exists():
        return path.read_text(encoding="utf-8")
    text = corpus_text(split)
    out_dir("cache")
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return text


_yardstick_ids: dict[str, np.ndarray] = {}


def yardstick_ids(model) -> np.ndarray:
    """The PPL_TOKENS token ids of the validation text under the model's tokenizer."""
    key = model.tokenizer.to_str()
    if key not in _yardstick_ids:
        _yardstick_ids[key] = np.array(model.tokenizer.encode(corpus("validation")).ids[:PPL_TOKENS])
    return _yardstick_ids[key]


def ppl(model) -> float:
    """THE perplexity of the lessons: the same validation windows for every model."""
    return perplexity_of_ids(model, yardstick_ids(model), seqlen=PPL_SEQLEN,
                             progress=False).perplexity


def calibration(model, n_samples: int = 8, seqlen: int = PPL_SEQLEN, seed: int = 0) -> np.ndarray:
    """The shared calibration windows [n_samples, seqlen]: seeded random cuts of the train split."""
    return calibration_batches(model, n_samples=n_samples, seqlen=seqlen, seed=seed,
                               text=corpus("train"))


# ------------------------------------------------------------------ figures
def pyplot():
    """matplotlib.pyplot with a file backend, or None (and a note) when matplotlib is absent."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: pip install -e '.[plot]'; figures are skipped)")
        return None
    return plt


def save_figure(fig, name: str) -> Path | None:
    """Write fig as OUT/name.png, print the path and close the figure; None draws nothing."""
    if fig is None:
        print(f"figure {name} skipped (no matplotlib)")
        return None
    path = out_dir() / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    print(f"figure: {path}")
    return path


# ------------------------------------------------------------------ the tool-calling model
def finetune_toolcall(start, recipe: dict = TOOLCALL_RECIPE):
    """(fine-tuned model, losses): the recipe's full fine-tune of `start` on the tool-call data."""
    from minislm.adapt import finetune as ft
    examples = ft.load_examples(start.tokenizer, "toolcall", start.config.max_position)
    return ft.finetune(start, examples, steps=recipe["steps"], lr=recipe["lr"],
                       batch_size=recipe["batch_size"], seed=recipe["seed"], progress=False)


def side_by_side(fn, *argument_tuples) -> list:
    """[fn(*args) for each args], in worker processes when more than one core is free.

    Independent jobs (two fine-tunes of the tiny model, say) share nothing, so one
    process per free core uses the cores fully; splitting each of their small matrix
    products between BLAS threads would not. Under load (`minislm.threads.free_cores`
    is 1) they run one after another. Same results either way: same seeds, one BLAS
    thread per job.
    """
    from minislm.threads import free_cores
    workers = min(len(argument_tuples), free_cores())
    if workers <= 1:
        return [fn(*args) for args in argument_tuples]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(fn, *zip(*argument_tuples)))


def _toolcall_folder(recipe: dict) -> Path:
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return OUT / "toolcall-model" / key


def toolcall_model(recipe: dict = TOOLCALL_RECIPE):
    """Lesson 07's tool-calling model: trained once with `recipe`, then read from
    OUT/toolcall-model/<hash of the recipe>/ (its training losses in training.json)."""
    folder = _toolcall_folder(recipe)
    if (folder / "training.json").exists():
        return minislm.load(folder)
    from minislm.adapt import special_tokens
    start = load_tiny(recipe["base"])
    if recipe["tool_tokens"]:
        start = special_tokens.add_tokens(start)
    return store_toolcall_model(*finetune_toolcall(start, recipe), recipe)


def store_toolcall_model(tuned, losses, recipe: dict = TOOLCALL_RECIPE):
    """Keep a model trained with `recipe` as the cached tool-calling model (lesson 07 trains
    it anyway); a model already cached for the recipe stays. Returns the cached model."""
    folder = _toolcall_folder(recipe)
    if not (folder / "training.json").exists():
        partial = out_dir("toolcall-model") / f"{folder.name}.{os.getpid()}.tmp"
        shutil.rmtree(partial, ignore_errors=True)
        minislm.save(tuned, partial)
        (partial / "training.json").write_text(json.dumps({"recipe": recipe, "losses": losses}))
        try:
            os.replace(partial, folder)
        except OSError:                 # another lesson finished the same recipe first
            shutil.rmtree(partial, ignore_errors=True)
    return minislm.load(folder)


def toolcall_training(recipe: dict = TOOLCALL_RECIPE) -> dict:
    """{"recipe", "losses"} of the cached tool-calling model (trains it if needed)."""
    toolcall_model(recipe)
    return json.loads((_toolcall_folder(recipe) / "training.json").read_text())


def toolcall_heldout() -> list[dict]:
    """The fixed held-out prompts toolcall_score uses (the first of the test split)."""
    from minislm.evaluate.toolcall import heldout_examples
    return heldout_examples(TOOLCALL_HELDOUT)


def toolcall_score(model) -> dict:
    """{"tool", "syntax", "parameters", "all"} accuracy of greedy answers on toolcall_heldout()."""
    from minislm.evaluate.toolcall import evaluate_toolcall
    r = evaluate_toolcall(model, toolcall_heldout(), progress=False)
    return {"tool": r["tool_accuracy"], "syntax": r["syntax_accuracy"],
            "parameters": r["parameter_accuracy"], "all": r["accuracy"]}
